r"""Faults on the servo bus against the whole deploy and record stacks: what ends each run, is the
torque off at the end, and which recorded episodes are kept?

    nice python bench/fault_matrix.py --checkpoint runs/sim_default \
        --out bench/reference_results/fault_matrix.json

Each row is one `hardware.deploy` episode on the emulated arm (`deploy_emulated`: pyserial on a
pty, the protocol, `MotorBus`, calibration, the safety guard, the MuJoCo scene), with one fault
of `hardware.emulation.emulator.Faults` at a rate, on every servo, from the first tick: none,
drop, delay (50 ms), corrupt, truncate, wrong id, dead servo 3, overload error bits on servo 2,
and the USB cable pulled after 2 s. Every row runs twice: on the machine as it is, and with a
busy loop per core beside it (`--no-load` skips that). Per row: the outcome (completed /
protective stop / error, with the reason), the ticks run, and the torque of every servo as the
emulator's control table holds it after the run (what the arm would do). An unplugged arm
cannot be told to let go: its row shows what the servos kept.

The record rows (`--apps record`, on by default) put the same faults on the follower's bus of an
emulated teleoperation recording (`hardware.record --robot so101 --teleop leader --emulate`: the
`EmulatedRig`, a scripted hand on the emulated leader, the recorder with the rig's `Mode`), asking
for `--record-episodes` episodes into a fresh folder: their extra column is the episodes kept
(complete files on disk: the episode a fault interrupts is discarded, the earlier ones stay).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROWS = (
    ("none", {}),
    ("drop", {"drop": 0.05}),
    ("drop", {"drop": 0.3}),
    ("delay 50 ms", {"delay": 0.05, "delay_s": 0.05}),
    ("delay 50 ms", {"delay": 0.5, "delay_s": 0.05}),
    ("corrupt", {"corrupt": 0.05}),
    ("corrupt", {"corrupt": 0.3}),
    ("truncate", {"truncate": 0.05}),
    ("truncate", {"truncate": 0.3}),
    ("wrong id", {"wrong_id": 0.05}),
    ("wrong id", {"wrong_id": 0.3}),
    ("dead servo 3", {"dead_ids": {3}}),
    ("overload on servo 2", {"error_bits": {2: 0x20}}),
    ("unplug after 2 s", {"unplug_after_s": 2.0}),
)


def _busy(stop):
    while not stop.is_set():
        pass


def _inject(emu, faults: dict) -> None:
    """Puts `faults` on an emulator's bus from now on (the unplug after its delay)."""
    from hardware.emulation.emulator import Faults

    emu.faults = Faults(**{k: v for k, v in faults.items() if k != "unplug_after_s"})
    if "unplug_after_s" in faults:
        threading.Timer(faults["unplug_after_s"], emu.unplug).start()


def _torque(emu) -> dict[int, int]:
    return {i: int(emu.get(i, "Torque_Enable")) for i in sorted(emu.servos)}


def run_record_row(faults: dict, episodes: int, max_steps: int, seed: int, out: Path) -> dict:
    """One emulated teleoperation recording of `episodes` episodes with `faults` on the
    follower's bus; the outcome as `hardware.record` reports it, and the episodes kept."""
    import contextlib

    from hardware.arms import ProtectiveStop
    from hardware.arms.servo_arm import torque_off_problem
    from hardware.recording.emulated_rig import EmulatedRig
    from hardware.recording.episodes import list_episodes
    from hardware.recording.recorder import record
    from hardware.recording.teleop_rig import TeleopSettings

    settings = TeleopSettings("so101", "so101", None, None, image_size=(96, 128), emulate=True)
    rig, t0, ticks, robot = (
        EmulatedRig(dataclasses.replace(settings, seed=seed)),
        time.time(),
        None,
        None,
    )
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(rig)
            emu = rig.follower_world.emu
            _inject(emu, faults)
            robot = stack.enter_context(rig.follower())
            teleop = stack.enter_context(rig.leader(robot))
            written = record(
                robot,
                teleop,
                out,
                episodes,
                seed=seed,
                max_steps=max_steps,
                mode=rig.mode(),
                settings={"image_size": [96, 128], "teleop": "leader"},
                progress=False,
            )
            outcome, reason, ticks = "completed", None, len(written)
    except ProtectiveStop as e:
        outcome, reason = "protective stop", str(e)
    except Exception as e:  # what the app would report as an error
        outcome, reason = "error", f"{type(e).__name__}: {e}"
    torque = _torque(emu)
    return {
        "outcome": outcome,
        "reason": reason,
        "torque_problem": torque_off_problem(robot),  # what record names, exiting 4
        "ticks": None,
        "episodes_asked": episodes,
        "episodes_written_this_run": ticks,
        "episodes_kept": len(list_episodes(out)),
        "torque_on_at_exit": sum(torque.values()),
        "servos": len(torque),
        "wall_s": round(time.time() - t0, 1),
    }


def run_row(policy, faults: dict, max_steps: int, seed: int) -> dict:
    from hardware.deploy import deploy_emulated

    held = {}

    def on_emulator(emu):
        held["emu"] = emu
        _inject(emu, faults)

    t0 = time.time()
    try:
        eps = deploy_emulated(
            policy,
            episodes=1,
            seed=seed,
            max_steps=max_steps,
            clock="real",
            on_emulator=on_emulator,
        )
        ep = eps[0]
        outcome = "protective stop" if ep.stop_reason else "completed"
        reason, ticks, latency = ep.stop_reason, ep.stats.ticks, ep.stats.latency_ms
    except Exception as e:  # what the app would report as an error
        outcome, reason, ticks, latency = "error", f"{type(e).__name__}: {e}", None, None
    torque = _torque(held["emu"])
    return {
        "outcome": outcome,
        "reason": reason,
        "ticks": ticks,
        "torque_on_at_exit": sum(torque.values()),
        "servos": len(torque),
        "episodes_kept": None,  # deploy records nothing
        "wall_s": round(time.time() - t0, 1),
        # Per part of the tick (observation: servo read + camera render; policy; send), ms.
        "latency_ms": latency,
    }


def _busy_loops(loaded: bool):
    """Starts a busy loop per core if `loaded`; returns the function that stops them."""
    stop = multiprocessing.Event()
    busy = [
        multiprocessing.Process(target=_busy, args=(stop,), daemon=True)
        for _ in range(os.cpu_count() if loaded else 0)
    ]
    for b in busy:
        b.start()

    def done():
        stop.set()
        for b in busy:
            b.join()

    return done


def _print(r: dict) -> None:
    kept = "" if r["episodes_kept"] is None else f"kept {r['episodes_kept']}  "
    print(
        f"{r['app']:6s} {'loaded' if r['cpu_loaded'] else 'as is':7s} {r['fault']:20s} "
        f"{str(r['knobs']):36s} {r['outcome']:16s} torque on {r['torque_on_at_exit']}/"
        f"{r['servos']}  {kept}{(r['reason'] or '')[:60]}",
        flush=True,
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max-steps", type=int, default=150, help="deploy: ticks per episode")
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--no-load", action="store_true", help="skip the rows with busy loops")
    p.add_argument("--apps", default="deploy,record", help="deploy, record or both")
    p.add_argument("--record-episodes", type=int, default=2, help="record: episodes asked for")
    p.add_argument("--record-max-steps", type=int, default=250, help="record: ticks an episode")
    names = sorted({name for name, _ in ROWS})
    p.add_argument(
        "--faults", default="", help=f"comma-separated row names to run (default all: {names})"
    )
    p.add_argument(
        "--trials", type=int, default=1, help="runs of each row, seeds --seed, --seed + 1, ..."
    )
    args = p.parse_args(argv)
    apps = args.apps.split(",")
    wanted = [f for f in args.faults.split(",") if f]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        p.error(f"--faults: unknown {unknown}; known: {names}")
    if args.trials < 1:
        p.error(f"--trials: must be >= 1, got {args.trials}")
    rows_run = [(n, f) for n, f in ROWS if not wanted or n in wanted]
    os.environ.setdefault("MUJOCO_GL", "egl")
    policy = None
    if "deploy" in apps:
        from act_jax.policy import Policy

        policy = Policy.from_checkpoint(args.checkpoint)
        policy.warmup()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for loaded in (False,) if args.no_load else (False, True):
            stop = _busy_loops(loaded)
            try:
                for app in apps:
                    for k, (name, faults) in enumerate(rows_run * args.trials):
                        seed = args.seed + k // len(rows_run)
                        if app == "deploy":
                            r = run_row(policy, faults, args.max_steps, seed)
                        else:
                            out = Path(tmp) / f"{int(loaded)}_{k}"
                            r = run_record_row(
                                faults, args.record_episodes, args.record_max_steps, seed, out
                            )
                        shown = {
                            k: (sorted(v) if isinstance(v, set) else v) for k, v in faults.items()
                        }
                        r.update(
                            app=app,
                            fault=name,
                            knobs={k: str(v) for k, v in shown.items()},
                            seed=seed,
                            cpu_loaded=loaded,
                            load_avg=os.getloadavg(),
                        )
                        rows.append(r)
                        _print(r)
            finally:
                stop()
    doc = {
        "command": "python bench/fault_matrix.py " + " ".join(argv or sys.argv[1:]),
        "checkpoint": args.checkpoint,
        "max_steps": args.max_steps,
        "record_episodes": args.record_episodes,
        "record_max_steps": args.record_max_steps,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
