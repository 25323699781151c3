r"""Faults on the servo bus against the whole deploy stack: what ends each run, and is the torque
off at the end?

    python bench/fault_matrix.py --checkpoint runs/sim_default \
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
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
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


def run_row(policy, faults: dict, max_steps: int, seed: int) -> dict:
    from hardware.deploy import deploy_emulated
    from hardware.emulation.emulator import Faults

    held = {}
    knobs = {k: v for k, v in faults.items() if k != "unplug_after_s"}

    def on_emulator(emu):
        held["emu"] = emu
        emu.faults = Faults(**knobs)
        if "unplug_after_s" in faults:
            threading.Timer(faults["unplug_after_s"], emu.unplug).start()

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
        reason, ticks = ep.stop_reason, ep.stats.ticks
    except Exception as e:  # what the app would report as an error
        outcome, reason, ticks = "error", f"{type(e).__name__}: {e}", None
    emu = held["emu"]
    torque = {i: int(emu.get(i, "Torque_Enable")) for i in sorted(emu.servos)}
    return {
        "outcome": outcome,
        "reason": reason,
        "ticks": ticks,
        "torque_on_at_exit": sum(torque.values()),
        "servos": len(torque),
        "wall_s": round(time.time() - t0, 1),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max-steps", type=int, default=150, help="ticks per episode")
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--no-load", action="store_true", help="skip the rows with busy loops")
    args = p.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    from act_jax.policy import Policy

    policy = Policy.from_checkpoint(args.checkpoint)
    policy.warmup()
    rows = []
    for loaded in (False,) if args.no_load else (False, True):
        stop = multiprocessing.Event()
        busy = [
            multiprocessing.Process(target=_busy, args=(stop,), daemon=True)
            for _ in range(os.cpu_count() if loaded else 0)
        ]
        for b in busy:
            b.start()
        try:
            for name, faults in ROWS:
                r = run_row(policy, faults, args.max_steps, args.seed)
                shown = {k: (sorted(v) if isinstance(v, set) else v) for k, v in faults.items()}
                r.update(
                    fault=name,
                    knobs={k: str(v) for k, v in shown.items()},
                    cpu_loaded=loaded,
                    load_avg=os.getloadavg(),
                )
                rows.append(r)
                print(
                    f"{'loaded' if loaded else 'as is':7s} {name:22s} {str(shown):38s} "
                    f"{r['outcome']:16s} torque on {r['torque_on_at_exit']}/{r['servos']}  "
                    f"{(r['reason'] or '')[:70]}",
                    flush=True,
                )
        finally:
            stop.set()
            for b in busy:
                b.join()
    doc = {
        "command": "python bench/fault_matrix.py " + " ".join(argv or sys.argv[1:]),
        "checkpoint": args.checkpoint,
        "max_steps": args.max_steps,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
