r"""Drive a real arm with a trained policy: `python -m hardware.deploy`.

    python -m hardware.deploy --checkpoint runs/sim_default --robot so101 --port /dev/ttyACM0 \
        --calibration ~/.config/act-jax/calibration/so101.json --cameras top=0,lateral=2
    python -m hardware.deploy --checkpoint runs/sim_default --robot so101 --emulate --episodes 5

The one module of `hardware` that knows about ACT: it joins `act_jax.policy.Policy` to a
`hardware.arms.ServoArm` through `hardware.control_loop.run_loop`. In order:

1. Validate everything before any port or camera opens: the execution spec, the calibration file
   (it must be this robot's), the camera spec, the checkpoint, and that the camera names are the
   ones the checkpoint was trained with.
2. Load the policy and compile it (`warmup`) while the arm is still limp.
3. Open the cameras, connect the arm (torque on, goal := present pose), run the loop in real time.
4. On the way out, always (end of run, protective stop, Ctrl-C): park at the pose the arm started
   from (or `--park-pose`), then torque off, read back from every servo; `ServoArm.disconnect`
   defers Ctrl-C while it does. Then print per-tick latencies and the policy's retrace count. A
   protective stop (a NaN action, a lost servo, overheating) prints its reason and exits with
   status 3. A servo that did not read back torque off is named, and the exit status is 4
   whatever ended the run: the arm may still be energised.

`--emulate` needs no hardware: the byte-exact servo emulator runs on a pseudo-terminal with the
MuJoCo scene (arm, cube, box) behind it (`SimArmPhysics`), the arm's cameras render that scene,
and the policy drives it through the real stack: pyserial, protocol, `MotorBus`, calibration,
`SafetyGuard`. Each episode resets the cube (`--seed` + episode) and the servos' temperatures, and
reports success by the sim's own check. By default the emulated time is a virtual clock advanced
1/fps per tick, so a slow CPU runs the same 30 Hz control as a fast one, only slower than the wall
clock; `--clock real` runs against the wall clock instead (overruns then show how far this machine
is from 30 Hz).

Exit status: 0 done, 1 a camera or the servo bus failed, 2 invalid arguments (nothing was opened),
3 protective stop, 4 torque off not confirmed by every servo (they are named; this overrides the
others), 130 Ctrl-C (128 + the signal for SIGTERM, SIGHUP).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hardware.arguments import ArgumentError, ArgumentParser, int_in, number_in
from hardware.arms import PROFILES, ProtectiveStop, ServoArm, get_profile
from hardware.arms.calibration import ArmCalibration, load_calibration
from hardware.arms.servo_arm import park_at_start, torque_off_problem
from hardware.cameras import CameraError, camera_spec_arg, close_cameras, open_cameras
from hardware.control_loop import (
    HeldFor,
    LoopStats,
    exit_status,
    run_loop,
    signal_name,
    stop_signals,
)
from hardware.emulation.follower import EmulatedFollower
from hardware.motors.bus import MotorBusError

EXIT_OK, EXIT_USAGE, EXIT_STOP, EXIT_TORQUE, EXIT_INTERRUPT = 0, 2, 3, 4, 130
MAX_FPS = 1000  # Hz: one round trip to six servos takes about 1 ms; no bus keeps up above this


class DeployError(ArgumentError):
    """An argument is invalid; raised before any port or camera is opened."""


class TorqueNotConfirmed(RuntimeError):
    """The run ended (for the reason in the message) and some servo did not read back torque
    off; raised by `run_episode` after the arm was disconnected."""


@dataclasses.dataclass
class Episode:
    """What one run of the policy did."""

    stats: LoopStats
    stop_reason: str | None = None  # protective stop reason, None if the run ended normally
    failure: str | None = None  # a camera failed mid-run (the arm was then parked, torque off)
    seed: int | None = None  # --emulate: the cube's reset seed
    success: bool | None = None  # --emulate: the sim's success check held for `settle` ticks
    time_to_success_s: float | None = None


# -- validation (nothing opened) ------------------------------------------------------------------
def check_execution(spec: str) -> str:
    from act_jax.execution import make_executor

    try:
        make_executor(spec)
    except ValueError as e:
        raise DeployError(f"--execution: {e}") from None
    return spec


def parse_park_pose(text: str | None) -> tuple[float, ...] | None:
    """None (park where the arm started) or 6 comma-separated values in LeRobot units."""
    if text is None or text == "start":
        return None
    try:
        pose = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise DeployError(f"--park-pose {text!r}: expected 6 comma-separated numbers") from None
    if len(pose) != 6 or not np.all(np.isfinite(pose)):
        raise DeployError(f"--park-pose {text!r}: expected 6 finite values, got {len(pose)}")
    return pose


def load_policy(checkpoint: str | Path, cameras: list[str] | None):
    """Loads the policy and checks that `cameras` (if given) are the ones it was trained with."""
    from act_jax.policy import Policy

    path = Path(checkpoint)
    if not path.exists():
        raise DeployError(f"--checkpoint {path}: no such directory")
    try:
        policy = Policy.from_checkpoint(path)
    except FileNotFoundError as e:
        raise DeployError(f"--checkpoint {path}: {e}") from None
    if cameras is not None and sorted(cameras) != sorted(policy.cameras):
        raise DeployError(
            f"--cameras names {sorted(cameras)} do not match the cameras checkpoint {path} was "
            f"trained with: {list(policy.cameras)}"
        )
    return policy


# -- running --------------------------------------------------------------------------------------
def run_episode(
    arm: ServoArm,
    controller: Callable[[dict], np.ndarray],
    *,
    fps: float,
    max_steps: int,
    realtime: bool,
    park_pose: tuple[float, ...] | None = None,
    on_step: Callable | None = None,
) -> Episode:
    """Connects `arm`, runs `controller` on it, and always leaves it parked with torque off.

    A protective stop ends the episode with its reason; Ctrl-C is re-raised once the arm is safe.

    Raises:
      TorqueNotConfirmed: however the episode ended, if a servo did not read back torque off
        (chained to the exception that ended it, if any).
    """
    box: dict[str, LoopStats] = {}
    stop_reason = failure = None
    try:
        with arm:  # connect: torque on at the present pose; exit: park, torque off
            print("arm connected, torque on: running the policy", file=sys.stderr, flush=True)
            park_at_start(arm, park_pose)
            try:
                run_loop(
                    arm,
                    controller,
                    fps=fps,
                    max_steps=max_steps,
                    realtime=realtime,
                    on_step=on_step,
                    on_stop=lambda s: box.setdefault("stats", s),
                )
            except ProtectiveStop as e:
                stop_reason = str(e)
                box["stats"].stopped_by = "protective stop"
            except CameraError as e:  # a frozen view: stop acting on it, park, torque off
                failure = f"camera error: {e}"
                box["stats"].stopped_by = "camera error"
            except KeyboardInterrupt as e:
                done = box["stats"].summary() if "stats" in box else "0 ticks"
                print(f"{signal_name(e)} after {done}; parking, then torque off", file=sys.stderr)
                raise
    except BaseException as e:
        problem = torque_off_problem(arm)
        if problem:
            why = (
                f"stopped by {signal_name(e)}"
                if isinstance(e, KeyboardInterrupt)
                else f"{type(e).__name__}: {e}"
            )
            raise TorqueNotConfirmed(f"{why}; {problem}") from e
        raise
    problem = torque_off_problem(arm)
    if problem:
        why = f"PROTECTIVE STOP: {stop_reason}" if stop_reason else failure or "the run ended"
        raise TorqueNotConfirmed(f"{why}; {problem}")
    return Episode(box["stats"], stop_reason, failure=failure)


def print_report(episodes: list[Episode], policy, clock_note: str, out=None) -> None:
    """Per-tick latency stats of all ticks, per-episode outcomes and the policy's retraces."""
    out = out or sys.stdout
    for i, ep in enumerate(episodes):
        parts = [f"episode {i}"]
        if ep.seed is not None:
            parts.append(f"seed {ep.seed}")
        if ep.success is not None:
            parts.append(
                f"success after {ep.time_to_success_s:.2f} s" if ep.success else "no success"
            )
        parts.append(ep.stats.summary())
        if ep.stop_reason:
            parts.append(f"PROTECTIVE STOP: {ep.stop_reason}")
        if ep.failure:
            parts.append(ep.failure)
        print(": ".join(parts[:1]) + ": " + ", ".join(parts[1:]), file=out)
    stats = episodes[-1].stats if len(episodes) == 1 else _merge([e.stats for e in episodes])
    if len(episodes) > 1:
        print(
            f"latency over {len(episodes)} episodes (p50/p90/p99: tick-weighted means of the "
            "episodes' percentiles):",
            file=out,
        )
    for part in ("observation", "policy", "send", "tick"):
        lat = stats.latency_ms.get(part)
        if lat:
            print(
                f"  {part:>11} ms: p50 {lat['p50']:6.1f}  p90 {lat['p90']:6.1f}  "
                f"p99 {lat['p99']:6.1f}  max {lat['max']:6.1f}",
                file=out,
            )
    if any(e.success is not None for e in episodes):
        k = sum(bool(e.success) for e in episodes)
        print(f"success {k}/{len(episodes)} (sim success check)", file=out)
    print(f"clock: {clock_note}", file=out)
    print(f"policy retraces after warmup: {policy.retraces_after_warmup}", file=out)


def _merge(all_stats: list[LoopStats]) -> LoopStats:
    """Several episodes' stats in one: percentiles are tick-weighted means of the episodes'
    (LoopStats keeps no raw samples), max is the max."""
    merged = LoopStats(
        ticks=sum(s.ticks for s in all_stats),
        overruns=sum(s.overruns for s in all_stats),
        wall_s=sum(s.wall_s for s in all_stats),
    )
    for part in all_stats[0].latency_ms:
        rows = [(s.latency_ms[part], s.ticks) for s in all_stats if s.latency_ms.get(part)]
        w = np.array([t for _, t in rows], float)
        merged.latency_ms[part] = {
            k: (
                float(max(r[k] for r, _ in rows))
                if k == "max"
                else float(np.average([r[k] for r, _ in rows], weights=w))
            )
            for k in rows[0][0]
        }
    return merged


def deploy_emulated(
    policy,
    *,
    robot: str = "so101",
    calibration: ArmCalibration | None = None,
    execution: str = "ensemble:0.01",
    episodes: int = 1,
    seed: int = 0,
    fps: float = 30,
    max_steps: int = 400,
    clock: str = "virtual",
    settle_steps: int = 5,
    park_pose: tuple[float, ...] | None = None,
    on_emulator: Callable | None = None,
) -> list[Episode]:
    """Runs `policy` through the servo stack on the emulated arm in the MuJoCo scene.

    Args:
      policy: a warmed-up `act_jax.policy.Policy` (anything with `cameras`, `image_size` and
        `as_controller(executor)`).
      robot, calibration: the arm profile and the calibration written into the emulated EEPROM
        (default `default_calibration(robot)`).
      clock: "virtual" (emulated time advances 1/fps per tick) or "real" (the wall clock).
      settle_steps: the sim's success check must hold this many ticks in a row.
      on_emulator: called with the started `ServoEmulator` (tests read its wire log).

    Returns:
      One `Episode` per episode, with `success` from `SimRobot.success()`.
    """
    from act_jax.execution import make_executor

    rig = EmulatedFollower(
        robot,
        calibration,
        image_size=policy.image_size,
        cameras=tuple(policy.cameras),
        clock=clock,
        fps=fps,
    )
    rig.start()
    if on_emulator is not None:
        on_emulator(rig.emu)
    results = []
    try:
        arm = rig.arm()
        for i in range(episodes):
            rig.reset(seed + i)
            held = HeldFor(settle_steps, fps)

            def on_step(t, observation, action, sent, held=held):
                rig.tick()
                return held.update(t, rig.success())

            ep = run_episode(
                arm,
                policy.as_controller(make_executor(execution)),
                fps=fps,
                max_steps=max_steps,
                realtime=rig.vclock is None,
                park_pose=park_pose,
                on_step=on_step,
            )
            ep.seed, ep.success, ep.time_to_success_s = seed + i, held.done, held.time_s
            results.append(ep)
            if ep.stop_reason or ep.failure:
                break
    finally:
        rig.stop()
    return results


def deploy_real(
    policy,
    *,
    robot: str,
    port: str,
    calibration: ArmCalibration,
    cameras: dict[str, int | str],
    execution: str,
    fps: float,
    max_steps: int,
    park_pose: tuple[float, ...] | None = None,
    width: int | None = None,
    height: int | None = None,
) -> list[Episode]:
    """Opens the cameras, then the arm, and runs one episode in real time."""
    from act_jax.execution import make_executor

    cams = open_cameras(cameras, width, height, fps)
    try:
        arm = ServoArm(robot, port, calibration, cameras=cams)
        return [
            run_episode(
                arm,
                policy.as_controller(make_executor(execution)),
                fps=fps,
                max_steps=max_steps,
                realtime=True,
                park_pose=park_pose,
            )
        ]
    finally:
        close_cameras(cams)


# -- CLI ------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m hardware.deploy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="training workdir (or its checkpoints/)")
    p.add_argument("--robot", required=True, choices=sorted(PROFILES), help="arm profile")
    p.add_argument("--port", help="serial port, e.g. /dev/ttyACM0 (not with --emulate)")
    p.add_argument(
        "--calibration",
        help="the arm's calibration JSON (python -m hardware.calibrate); with "
        "--emulate, optional: written into the emulated servos' EEPROM",
    )
    p.add_argument(
        "--cameras",
        help="NAME=SOURCE,... e.g. top=0,lateral=2 or top=/dev/video0 "
        "(names must be the checkpoint's; not with --emulate)",
    )
    p.add_argument(
        "--camera-size",
        default=None,
        help="WIDTHxHEIGHT to request from the cameras (default: theirs)",
    )
    p.add_argument(
        "--execution",
        default=None,
        help="open_loop | receding:N | ensemble[:M] (default: the checkpoint config's)",
    )
    p.add_argument(
        "--max-steps",
        type=int_in(1),
        default=None,
        help="ticks per episode (default: the checkpoint config's eval.max_steps)",
    )
    p.add_argument(
        "--fps",
        type=number_in(0, MAX_FPS, low_open=True),
        default=30.0,
        help=f"control rate, in (0, {MAX_FPS}] Hz (default %(default)s)",
    )
    p.add_argument(
        "--park-pose",
        default=None,
        help="6 comma-separated values to park at before torque off "
        "(default: the pose the arm started from)",
    )
    p.add_argument(
        "--emulate",
        action="store_true",
        help="no hardware: servo emulator + MuJoCo scene behind the real servo stack",
    )
    p.add_argument(
        "--episodes", type=int_in(1), default=1, help="--emulate: episodes (cube resets)"
    )
    p.add_argument("--seed", type=int_in(0), default=0, help="--emulate: cube seed of episode 0")
    p.add_argument(
        "--clock",
        choices=("virtual", "real"),
        default="virtual",
        help="--emulate: emulated time advances 1/fps per tick (virtual), or is the "
        "wall clock (real)",
    )
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with stop_signals():  # SIGTERM and SIGHUP park and turn torque off, as Ctrl-C does
            return _main(args)
    except ArgumentError as e:
        print(f"deploy: error: {e}", file=sys.stderr)
        return EXIT_USAGE


def _main(args) -> int:
    # 1. Everything checked before anything opens.
    profile = get_profile(args.robot)
    if args.emulate:
        for flag in ("port", "cameras", "camera_size"):
            if getattr(args, flag) is not None:
                raise DeployError(
                    f"--{flag.replace('_', '-')} is not used with --emulate (the "
                    "emulator makes the port; the sim renders the cameras)"
                )
    else:
        missing = [f"--{f}" for f in ("port", "calibration", "cameras") if not getattr(args, f)]
        if missing:
            raise DeployError(f"{', '.join(missing)} required for a real arm (or use --emulate)")
        if args.episodes != 1:
            raise DeployError("--episodes is for --emulate (a real arm runs one episode)")
    if args.execution is not None:
        check_execution(args.execution)
    calib = load_calibration(args.calibration, profile.name) if args.calibration else None
    cameras = None
    if args.cameras:
        cameras = camera_spec_arg(args.cameras)
    size = None
    if args.camera_size:
        try:
            size = tuple(int(v) for v in args.camera_size.lower().split("x"))
        except ValueError:
            size = ()
        if len(size) != 2 or min(size) <= 0:
            raise DeployError(f"--camera-size {args.camera_size!r}: expected WIDTHxHEIGHT")
    park_pose = parse_park_pose(args.park_pose)
    policy = load_policy(args.checkpoint, None if cameras is None else list(cameras))
    cfg = policy.config
    execution = args.execution or check_execution(cfg.eval.get("execution", "ensemble:0.01"))
    max_steps = args.max_steps or int(cfg.eval.get("max_steps", 400))

    # 2. Compile before torque goes on.
    t0 = time.perf_counter()
    policy.warmup()
    print(
        f"policy: {args.checkpoint} (step {policy.step}, cameras {list(policy.cameras)}, "
        f"images {policy.image_size}), compiled in {time.perf_counter() - t0:.1f} s; "
        f"execution {execution}"
    )

    # 3. Run.
    try:
        if args.emulate:
            episodes = deploy_emulated(
                policy,
                robot=profile.name,
                calibration=calib,
                execution=execution,
                episodes=args.episodes,
                seed=args.seed,
                fps=args.fps,
                max_steps=max_steps,
                clock=args.clock,
                park_pose=park_pose,
                on_emulator=lambda emu: print(
                    f"emulated {profile.name} on {emu.port} "
                    "(servo emulator + MuJoCo arm, cube and box)"
                ),
            )
            note = (
                f"virtual (emulated time advances 1/{args.fps:g} s per tick; wall time is "
                "this CPU's)"
                if args.clock == "virtual"
                else "real (wall clock)"
            )
        else:
            episodes = deploy_real(
                policy,
                robot=profile.name,
                port=args.port,
                calibration=calib,
                cameras=cameras,
                execution=execution,
                fps=args.fps,
                max_steps=max_steps,
                park_pose=park_pose,
                width=size[0] if size else None,
                height=size[1] if size else None,
            )
            note = "real (wall clock)"
    except TorqueNotConfirmed as e:
        print(f"deploy: {e}", file=sys.stderr)
        return EXIT_TORQUE
    except KeyboardInterrupt as e:
        print(
            f"stopped by {signal_name(e)}: the arm was left parked with torque off", file=sys.stderr
        )
        return exit_status(e)
    except CameraError as e:
        print(f"deploy: camera error: {e}", file=sys.stderr)
        return 1
    except MotorBusError as e:  # the arm did not connect (torque was left off) or the bus failed
        print(f"deploy: servo bus error: {e}", file=sys.stderr)
        return 1
    print_report(episodes, policy, note)
    failed = [e.failure for e in episodes if e.failure]
    if failed:
        print(
            f"deploy: {failed[0]}; parked, torque off (read back from every servo)", file=sys.stderr
        )
        return 1
    stopped = [e.stop_reason for e in episodes if e.stop_reason]
    if stopped:
        print(
            f"deploy: PROTECTIVE STOP: {stopped[0]} (torque off, read back from every servo)",
            file=sys.stderr,
        )
        return EXIT_STOP
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
