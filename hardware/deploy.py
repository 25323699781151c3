r"""Drive a real arm with a trained policy: `python -m hardware.deploy`.

    python -m hardware.deploy --checkpoint runs/sim_default --robot so101 --port /dev/ttyACM0 \
        --calibration ~/.config/act-jax/calibration/so101.json --cameras top=0,lateral=2
    python -m hardware.deploy --checkpoint runs/sim_default --robot so101 --emulate --episodes 5

The one module of `hardware` that knows about ACT: it joins `act_jax.policy.Policy` to a
`hardware.arms.ServoArm` through `hardware.arms.episode.run_episode` (the control loop, then
park and torque off however it ends; with `--emulate`, `hardware.emulation.trials.run_trials`).
This module is the app: it checks, loads, compiles and reports. In order:

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

from hardware.arguments import ArgumentError, ArgumentParser, int_in, number_in, warn_once
from hardware.arms import PROFILES, ServoArm, get_profile
from hardware.arms.calibration import ArmCalibration, load_calibration
from hardware.arms.episode import Episode, TorqueNotConfirmed, print_report, run_episode
from hardware.cameras import CameraError, camera_spec_arg, close_cameras, open_cameras
from hardware.control_loop import exit_status, signal_name, stop_signals
from hardware.conventions import parse_camera_size
from hardware.emulation.follower import EmulatedFollower
from hardware.emulation.trials import run_trials
from hardware.motors.bus import MotorBusError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_STOP, EXIT_TORQUE, EXIT_INTERRUPT = 0, 1, 2, 3, 4, 130
PROG = "python -m hardware.deploy"
MAX_FPS = 1000  # Hz: one round trip to six servos takes about 1 ms; no bus keeps up above this


class DeployError(ArgumentError):
    """An argument is invalid; raised before any port or camera is opened."""


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

    world = EmulatedFollower(
        robot,
        calibration,
        image_size=policy.image_size,
        cameras=tuple(policy.cameras),
        clock=clock,
        fps=fps,
    )
    world.start()
    try:
        if on_emulator is not None:
            on_emulator(world.emu)
        return run_trials(
            world,
            lambda: policy.as_controller(make_executor(execution)),
            episodes=episodes,
            seed=seed,
            max_steps=max_steps,
            settle_steps=settle_steps,
            park_pose=park_pose,
        )
    finally:
        world.stop()


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
    camera_size: tuple[int, int] | None = None,
) -> list[Episode]:
    """Opens the cameras (at `camera_size`, HxW, if given), then the arm, and runs one episode
    in real time."""
    from act_jax.execution import make_executor

    h, w = camera_size or (None, None)
    cams = open_cameras(cameras, w, h, fps)
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
        prog=PROG,
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
        help="HEIGHTxWIDTH to request from the cameras, e.g. 480x640 (default: theirs; the "
        "old WIDTHxHEIGHT spelling, e.g. 640x480, is still read, with a warning)",
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


@dataclasses.dataclass
class Plan:
    """A deployment's checked arguments: what `_run` opens and drives."""

    profile: object  # ArmProfile
    calibration: ArmCalibration | None
    cameras: dict[str, int | str] | None
    camera_size: tuple[int, int] | None  # HxW
    park_pose: tuple[float, ...] | None
    policy: object
    execution: str
    max_steps: int


def _camera_size(text: str | None) -> tuple[int, int] | None:
    """--camera-size as HxW; the old WIDTHxHEIGHT spelling is read with a warning."""
    if not text:
        return None
    try:
        return parse_camera_size(text, warn=lambda m: warn_once(PROG, f"--camera-size: {m}"))
    except ValueError as e:
        raise DeployError(f"--camera-size: {e}") from None


def check(args) -> Plan:
    """Every argument checked, and the policy loaded, before anything opens."""
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
    cameras = camera_spec_arg(args.cameras) if args.cameras else None
    size = _camera_size(args.camera_size)
    park_pose = parse_park_pose(args.park_pose)
    policy = load_policy(args.checkpoint, None if cameras is None else list(cameras))
    cfg = policy.config
    execution = args.execution or check_execution(cfg.eval.get("execution", "ensemble:0.01"))
    max_steps = args.max_steps or int(cfg.eval.get("max_steps", 400))
    return Plan(profile, calib, cameras, size, park_pose, policy, execution, max_steps)


def _run(args, plan: Plan) -> tuple[list[Episode], str]:
    """Runs the episodes (emulated, or the real arm); returns them and the clock's note."""
    name = plan.profile.name
    if args.emulate:
        episodes = deploy_emulated(
            plan.policy,
            robot=name,
            calibration=plan.calibration,
            execution=plan.execution,
            episodes=args.episodes,
            seed=args.seed,
            fps=args.fps,
            max_steps=plan.max_steps,
            clock=args.clock,
            park_pose=plan.park_pose,
            on_emulator=lambda emu: print(
                f"emulated {name} on {emu.port} (servo emulator + MuJoCo arm, cube and box)"
            ),
        )
        if args.clock == "virtual":
            return episodes, (
                f"virtual (emulated time advances 1/{args.fps:g} s per tick; wall time is "
                "this CPU's)"
            )
        return episodes, "real (wall clock)"
    episodes = deploy_real(
        plan.policy,
        robot=name,
        port=args.port,
        calibration=plan.calibration,
        cameras=plan.cameras,
        execution=plan.execution,
        fps=args.fps,
        max_steps=plan.max_steps,
        park_pose=plan.park_pose,
        camera_size=plan.camera_size,
    )
    return episodes, "real (wall clock)"


def _main(args) -> int:
    plan = check(args)  # 1. everything checked before anything opens
    t0 = time.perf_counter()
    plan.policy.warmup()  # 2. compile before torque goes on
    print(
        f"policy: {args.checkpoint} (step {plan.policy.step}, cameras "
        f"{list(plan.policy.cameras)}, images {plan.policy.image_size}), compiled in "
        f"{time.perf_counter() - t0:.1f} s; execution {plan.execution}"
    )
    try:
        episodes, note = _run(args, plan)  # 3. run
    except TorqueNotConfirmed as e:
        print(f"deploy: {e}", file=sys.stderr)
        return EXIT_TORQUE
    except KeyboardInterrupt as e:
        print(
            f"stopped by {signal_name(e)}: the arm was left parked with torque off", file=sys.stderr
        )
        return exit_status(e)
    except CameraError as e:  # a camera did not open: the arm was never connected
        print(f"deploy: camera error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except MotorBusError as e:  # the arm did not connect (torque was left off) or the bus failed
        print(f"deploy: servo bus error: {e}", file=sys.stderr)
        return EXIT_ERROR
    print_report(episodes, note)
    print(f"policy retraces after warmup: {plan.policy.retraces_after_warmup}")
    failed = [e.failure for e in episodes if e.failure]
    if failed:
        print(
            f"deploy: {failed[0]}; parked, torque off (read back from every servo)", file=sys.stderr
        )
        return EXIT_ERROR
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
