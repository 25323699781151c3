r"""Records demonstrations: a robot and a teleoperator through the control loop, one episode file
at a time (`hardware.recording.episodes`), for the TFDS builder in `datasets/episodes`.

    python -m hardware.record --robot sim --teleop expert --episodes 50 \
        --out data/episodes/sim_demos --image-size 96x128 --seed 0 --locations uniform
    python -m act_jax_datasets.episodes --episodes data/episodes/sim_demos --data-dir data/tfds

(or add `--build-tfds data/tfds` to the first command to do both). Per step an episode holds
both camera images, the state and the action actually sent, and the timestamp; per episode the
cube's start pose, its location id, success, fps and robot type (`EpisodeMeta`).

A real arm is recorded by teleoperation: a person moves a leader arm and the follower follows
(`hardware.recording.teleop_rig`). The state is the follower's joint positions, the action the
leader's pose as sent to the follower (after its safety guard), the frames the cameras':

    python -m hardware.record --robot so101 --teleop leader --episodes 50 \
        --out data/episodes/so101_demos --port /dev/ttyACM0 --calibration so101.json \
        --leader-port /dev/ttyACM1 --leader-calibration so101_leader.json \
        --cameras top=0,lateral=2
    python -m hardware.record --robot so101 --teleop leader --emulate --episodes 10 \
        --out data/episodes/emulated --image-size 96x128

`--robot so101 | so100 | koch` (a Koch's leader is a `koch_leader`). Every argument is checked
before any port or camera opens. Episodes run in real time at 30 fps for `--max-steps` ticks.
Between episodes the follower keeps following the leader, unrecorded, while you put the arm back
and reset the scene; then Enter records the next episode, `r` + Enter deletes the last one and
records it again, `q` + Enter stops; or `--reset-time S` gives S seconds and goes on by itself.
An episode you keep counts as a success. `--emulate` needs no hardware: the follower is the
MuJoCo scene behind the servo emulator, the leader a second emulated arm that a scripted hand
moves along the scripted expert's plan, so the demos are real pick-and-place through the whole
servo stack, with success from the sim's check (emulated time: a virtual clock, 1/fps a tick).

Durable and resumable: each episode is written atomically when it ends, so killing the recorder
loses at most the episode in progress, and running the same command again appends after the
last complete episode. Ctrl-C discards the episode in progress and, on an arm, parks the
follower where it started and turns its torque off. Deterministic in simulation: episode i
resets the sim with a seed derived from (--seed, i) and its timestamps are sim time, so the same
command gives the same files, whether it ran in one go or was resumed. Simulated recording runs
as fast as it can (no sleeping); a real robot runs at its fixed rate.

One recorder at a time per `--out` (a lock on `<out>/.lock`): a second one exits 2, naming the
first one's pid, before it opens anything.

Exit status: 0 done, 1 a camera or servo bus failed, 2 invalid arguments or a busy `--out`
(nothing was opened), 3 protective stop (the episode in progress is discarded), 4 the follower's
torque off was not read back from every servo (they are named; this overrides the others), 130
Ctrl-C (128 + the signal for SIGTERM, SIGHUP).

The cube's start distribution is `--locations SPEC` (as in `python -m act_jax.evaluate` and
`python -m interp.freeze_finetune`); `--distribution SPEC`, its old name, still works and says
once that it is deprecated.

New robots and teleoperators plug in with `register_robot(name, factory)` and
`register_teleop(name, factory)`; a robot that is a `hardware.sim.SimTask` is recorded as the
simulated arm is (reset per episode, success from its check). This module is the app: it checks
the arguments, opens what they ask for and hands it to the recorder
(`hardware.recording.recorder`) with the `Mode` of the set-up.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
from collections.abc import Callable

from hardware.arguments import (
    ArgumentError,
    ArgumentParser,
    deprecated_alias,
    int_in,
    number_in,
)
from hardware.arms import ProtectiveStop
from hardware.arms.calibration import load_calibration
from hardware.arms.servo_arm import torque_off_problem
from hardware.cameras import CameraError, camera_spec_arg
from hardware.control_loop import exit_status, signal_name, stop_signals
from hardware.conventions import parse_image_size
from hardware.motors.bus import MotorBusError
from hardware.recording.emulated_rig import EmulatedRig
from hardware.recording.episodes import list_episodes
from hardware.recording.folder_lock import FolderBusy, lock_folder
from hardware.recording.recorder import DEFAULT_MAX_STEPS, default_mode, record
from hardware.recording.teleop_rig import LEADER_PROFILE, HardwareRig, TeleopRig, TeleopSettings
from hardware.sim.cube import SPEC_HELP, distribution_arg
from hardware.sim.expert import ScriptedExpert
from hardware.sim.robot import SimRobot


def _make_sim(args) -> object:
    return SimRobot(image_size=args.image_size, distribution=args.locations, seed=args.seed)


def _make_expert(robot, args) -> object:
    if robot.robot_type != "sim_so101":
        raise ValueError("--teleop expert drives only the simulated arm (--robot sim)")
    return ScriptedExpert(robot, seed=args.seed)


ROBOTS: dict[str, Callable] = {"sim": _make_sim}
TELEOPS: dict[str, Callable] = {"expert": _make_expert}
ARMS = ("so101", "so100", "koch")  # servo arms: recorded with --teleop leader, through a rig
LEADER = "leader"
ARM_FLAGS = (
    "port",
    "calibration",
    "cameras",
    "leader_port",
    "leader_calibration",
    "reset_time",
    "emulate",
)


def register_robot(name: str, factory: Callable) -> None:
    """Adds a `--robot` choice: factory(args) -> Robot."""
    ROBOTS[name] = factory


def register_teleop(name: str, factory: Callable) -> None:
    """Adds a `--teleop` choice: factory(robot, args) -> Teleoperator."""
    TELEOPS[name] = factory


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _check_ports(args) -> None:
    """With --emulate no ports or cameras; without it all of them, and two different ports."""
    if args.emulate:
        given = [f for f in ("port", "leader_port", "cameras") if getattr(args, f)]
        if given:
            raise ArgumentError(
                f"{_flag(given[0])} is not used with --emulate (the "
                "emulators make the ports; the sim renders the cameras)"
            )
        return
    missing = [
        _flag(f)
        for f in ("port", "calibration", "cameras", "leader_port", "leader_calibration")
        if not getattr(args, f)
    ]
    if missing:
        raise ArgumentError(
            f"{', '.join(missing)} required to record with a leader arm (or use --emulate)"
        )
    if args.port == args.leader_port:
        raise ArgumentError(
            f"--port and --leader-port are both {args.port}: the follower "
            "and the leader are two buses"
        )


def check_args(args) -> TeleopSettings:
    """Checks the arguments of a leader -> follower recording; opens nothing.

    Raises:
      ArgumentError: naming the flag (and the file) that is wrong.
    """
    if args.robot not in LEADER_PROFILE:
        raise ArgumentError(
            f"--teleop leader drives a servo arm: --robot one of "
            f"{sorted(LEADER_PROFILE)}, not {args.robot!r}"
        )
    leader = LEADER_PROFILE[args.robot]
    _check_ports(args)
    calib = lcalib = None
    if args.calibration:
        calib = load_calibration(args.calibration, args.robot)
    if args.leader_calibration:
        if args.calibration and str(args.calibration) == str(args.leader_calibration):
            raise ArgumentError(
                f"--calibration and --leader-calibration are the same file "
                f"({args.calibration}): calibrate each arm and pass its own file"
            )
        lcalib = load_calibration(args.leader_calibration, leader, "--leader-calibration")
    cameras = camera_spec_arg(args.cameras) if args.cameras else None
    return TeleopSettings(
        args.robot,
        leader,
        calib,
        lcalib,
        args.port,
        args.leader_port,
        cameras,
        tuple(args.image_size),
        args.reset_time,
        bool(args.emulate),
        args.seed,
    )


def make_rig(settings: TeleopSettings) -> TeleopRig:
    """The rig the settings ask for: emulated (`settings.emulate`) or on hardware."""
    return EmulatedRig(settings) if settings.emulate else HardwareRig(settings)


def build_tfds(episodes: str, data_dir: str, name: str) -> int:
    """Runs the TFDS builder's own command on the episodes just recorded; returns its status.

    A separate process, not an import: `datasets` reads the episode format that `hardware`
    writes, so `hardware` must not import `datasets` (that edge would close a package cycle).
    The builder's command line is the contract, the same one a person runs by hand.
    """
    cmd = [
        sys.executable,
        "-m",
        "act_jax_datasets.episodes",
        "--episodes",
        str(episodes),
        "--data-dir",
        str(data_dir),
        "--name",
        name,
    ]
    done = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, text=True)
    print(done.stdout, end="", flush=True)  # "built PATH", through this process's stdout
    return done.returncode


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m hardware.record",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--robot", default="sim", help=f"one of {sorted(ROBOTS) + list(ARMS)} (default sim)"
    )
    p.add_argument(
        "--teleop", default="expert", help=f"one of {sorted(TELEOPS) + [LEADER]} (default expert)"
    )
    p.add_argument(
        "--episodes", type=int_in(1), required=True, help="total episodes wanted in --out"
    )
    p.add_argument("--out", default="data/episodes/sim_demos", help="episode directory")
    p.add_argument(
        "--image-size",
        default="480x640",
        help="HEIGHTxWIDTH: rendered (sim, --emulate) or asked of the cameras "
        "(default %(default)s)",
    )
    p.add_argument("--seed", type=int_in(0), default=0, help="recording seed (default %(default)s)")
    p.add_argument(
        "--locations",
        default="uniform",
        type=distribution_arg,
        metavar="SPEC",
        help=f"cube start distribution (sim): {SPEC_HELP} (default %(default)s)",
    )
    p.add_argument(
        "--distribution",
        dest="locations",
        type=distribution_arg,
        action=deprecated_alias("--locations"),
        help=argparse.SUPPRESS,  # the old name of --locations
    )
    p.add_argument(
        "--max-steps",
        type=int_in(1),
        default=DEFAULT_MAX_STEPS,
        help="ticks before an episode is cut; a leader-arm episode lasts this long "
        "(default %(default)s = 13.3 s at 30 fps)",
    )
    p.add_argument(
        "--build-tfds",
        metavar="DATA_DIR",
        default=None,
        help="afterwards, build the TFDS dataset act_episodes/NAME under DATA_DIR",
    )
    p.add_argument("--name", default="sim_demos", help="TFDS config name (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    arm = p.add_argument_group("servo arms (--robot so101|so100|koch --teleop leader)")
    arm.add_argument("--port", help="the follower's serial port, e.g. /dev/ttyACM0")
    arm.add_argument(
        "--calibration",
        help="the follower's calibration JSON "
        "(python -m hardware.calibrate); optional with --emulate",
    )
    arm.add_argument("--cameras", help="NAME=SOURCE,... e.g. top=0,lateral=2")
    arm.add_argument("--leader-port", help="the leader's serial port, e.g. /dev/ttyACM1")
    arm.add_argument(
        "--leader-calibration", help="the leader's calibration JSON; optional with --emulate"
    )
    arm.add_argument(
        "--reset-time",
        type=number_in(0),
        default=None,
        metavar="S",
        help="seconds to reset the scene between episodes, instead of asking "
        "(Enter / r / q) on the terminal",
    )
    arm.add_argument(
        "--emulate",
        action="store_true",
        help="no hardware: the follower is the MuJoCo scene behind the servo "
        "emulator, the leader an emulated arm moved by a scripted hand",
    )
    return p


EXIT_OK, EXIT_ERROR, EXIT_ARGS, EXIT_STOP, EXIT_TORQUE, EXIT_INTERRUPT = 0, 1, 2, 3, 4, 130


def check(p: argparse.ArgumentParser, args) -> tuple[dict, TeleopRig | None]:
    """Every check before anything opens (`p.error` on the first that fails): returns the
    recording's settings, and the rig for a servo arm (None in simulation)."""
    if args.robot not in ROBOTS and args.robot not in ARMS:
        p.error(f"unknown --robot {args.robot!r}: choose from {sorted(ROBOTS) + list(ARMS)}")
    if args.teleop not in TELEOPS and args.teleop != LEADER:
        p.error(f"unknown --teleop {args.teleop!r}: choose from {sorted(TELEOPS) + [LEADER]}")
    if args.teleop == "expert" and args.robot in ARMS:
        p.error(
            f"unknown --robot {args.robot!r} for --teleop expert (the scripted expert drives "
            f"only --robot sim): record a {args.robot} arm with --teleop leader"
        )
    try:
        args.image_size = parse_image_size(args.image_size)
    except ValueError as e:
        p.error(f"--image-size: {e}")
    if args.robot in ARMS or args.teleop == LEADER:
        try:
            rig = make_rig(check_args(args))
        except ArgumentError as e:
            p.error(str(e))
        return {"image_size": list(args.image_size), "teleop": args.teleop}, rig
    arm_flags = [f for f in ARM_FLAGS if getattr(args, f)]
    if arm_flags:
        p.error(
            f"{_flag(arm_flags[0])} is for a servo arm (--robot so101|so100|koch --teleop leader)"
        )
    # "distribution" is the key recordings store (and compare on resume) for --locations.
    return {
        "image_size": list(args.image_size),
        "distribution": args.locations,
        "teleop": args.teleop,
    }, None


def _record(args, settings: dict, rig: TeleopRig | None) -> tuple[object, list | None, int | None]:
    """Opens the rig (or makes the robot), records, and makes the follower safe however that
    ends. Returns (robot, episodes written or None, exit status or None)."""
    robot = None
    with contextlib.ExitStack() as stack:
        try:
            if rig is not None:
                stack.enter_context(rig)
                robot, mode = rig.follower(), rig.mode()
                stack.enter_context(robot)
                teleop = stack.enter_context(rig.leader(robot))
            else:
                robot = stack.enter_context(ROBOTS[args.robot](args))
                teleop = stack.enter_context(TELEOPS[args.teleop](robot, args))
                mode = default_mode(robot)
            written = record(
                robot,
                teleop,
                args.out,
                args.episodes,
                seed=args.seed,
                max_steps=args.max_steps,
                mode=mode,
                settings=settings,
                progress=not args.no_progress,
            )
        except KeyboardInterrupt as e:
            kept = len(list_episodes(args.out))
            print(
                f"stopped by {signal_name(e)}: the episode in progress (if any) was "
                f"discarded; {args.out} holds {kept} complete episodes",
                file=sys.stderr,
            )
            stack.close()  # the follower parks, then torque off
            if rig is not None and torque_off_problem(robot) is None:
                print("the follower was left parked with torque off", file=sys.stderr)
            return robot, None, exit_status(e)
        except ProtectiveStop as e:  # the follower already holds or has torque off
            stack.close()
            print(
                f"record: PROTECTIVE STOP: {e}; the episode in progress was discarded",
                file=sys.stderr,
            )
            return robot, None, EXIT_STOP
        except (CameraError, MotorBusError) as e:
            stack.close()
            print(f"record: {type(e).__name__}: {e}", file=sys.stderr)
            return robot, None, EXIT_ERROR
    return robot, written, None


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    settings, rig = check(p, args)
    # One recorder per --out: a second one stops here, naming the first, before any port opens.
    held = contextlib.ExitStack()
    try:
        held.enter_context(lock_folder(args.out, f"recording {args.episodes} episodes"))
    except FolderBusy as e:
        print(f"record: --out {e}", file=sys.stderr)
        return EXIT_ARGS
    with held, stop_signals():
        robot, written, status = _record(args, settings, rig)
    if status is None:
        n = len(list_episodes(args.out))
        print(f"wrote {len(written)} episodes; {args.out} now holds {n}")
    problem = torque_off_problem(robot)  # read back when the follower disconnected
    if problem:
        print(f"record: {problem}", file=sys.stderr)
        return EXIT_TORQUE
    if status is not None:
        return status
    if args.build_tfds:
        return build_tfds(args.out, args.build_tfds, args.name)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
