r"""Records demonstrations: a robot and a teleoperator through the control loop, one episode file
at a time (`hardware.episodes`), for the TFDS builder in `datasets/episodes`.

    python -m hardware.record --robot sim --teleop expert --episodes 50 \
        --out data/episodes/sim_demos --image-size 96x128 --seed 0
    python -m act_jax_datasets.episodes --episodes data/episodes/sim_demos --data-dir data/tfds

(or add `--build-tfds data/tfds` to the first command to do both). Per step an episode holds
both camera images, the state and the action actually sent, and the timestamp; per episode the
cube's start pose, its location id, success, fps and robot type (`EpisodeMeta`).

A real arm is recorded by teleoperation: a person moves a leader arm and the follower follows
(`hardware.teleop_rig`). The state is the follower's joint positions, the action the leader's
pose as sent to the follower (after its safety guard), the frames the cameras':

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

Exit status: 0 done, 1 a camera or servo bus failed, 2 invalid arguments (nothing was opened),
3 protective stop (the episode in progress is discarded), 130 Ctrl-C.

New robots and teleoperators plug in with `register_robot(name, factory)` and
`register_teleop(name, factory)`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hardware.arms import ProtectiveStop
from hardware.cameras import CameraError
from hardware.control_loop import run_loop
from hardware.conventions import parse_image_size
from hardware.episodes import (
    EpisodeMeta,
    encode_png,
    list_episodes,
    next_episode_index,
    read_episode,
    write_episode,
)
from hardware.motors.bus import MotorBusError

DEFAULT_MAX_STEPS = 400  # a guard; the expert's episodes end by themselves after ~170 ticks


def episode_seed(seed: int, index: int) -> int:
    """The reset seed of episode `index` of a recording started with `seed` (31-bit)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] >> 1)


def record_episode(robot, teleop, *, max_steps: int, realtime: bool,
                   on_tick: Callable[[], None] | None = None) -> dict:
    """Runs one episode from the robot's current (just reset) state.

    `on_tick` runs after each recorded tick (an emulated rig advances its virtual clock there).

    Returns:
      dict(state (T, 6), action (T, 6), timestamp (T,), png {camera: T PNG bytes}, stats,
      success_step: first tick after which `robot.success()` held, or -1 / None if unknown).
    """
    states, actions, stamps = [], [], []
    png = {cam: [] for cam in robot.cameras}
    has_success = callable(getattr(robot, "success", None))
    success_step = -1
    start = time.perf_counter()

    def on_step(t, observation, action, sent):
        nonlocal success_step
        states.append(np.asarray(observation["state"], np.float32))
        actions.append(np.asarray(sent, np.float32))
        # Simulated episodes use sim time, so that they are bit-for-bit reproducible.
        stamps.append(t / robot.fps if not realtime else time.perf_counter() - start)
        for cam in robot.cameras:
            png[cam].append(encode_png(observation["images"][cam]))
        if has_success and success_step < 0 and robot.success():
            success_step = t
        if on_tick is not None:
            on_tick()
        return None

    stats = run_loop(
        robot, teleop, fps=robot.fps, max_steps=max_steps, realtime=realtime,
        on_step=on_step, stop=lambda: teleop.done,
    )
    return dict(
        state=np.stack(states), action=np.stack(actions), timestamp=np.asarray(stamps),
        png=png, stats=stats, success_step=success_step if has_success else None,
    )


def _make_sim(args) -> object:
    from hardware.sim import SimRobot

    return SimRobot(image_size=args.image_size, distribution=args.distribution, seed=args.seed)


def _make_expert(robot, args) -> object:
    from hardware.sim.expert import ScriptedExpert

    if robot.robot_type != "sim_so101":
        raise ValueError("--teleop expert drives only the simulated arm (--robot sim)")
    return ScriptedExpert(robot, seed=args.seed)


def _make_arm(args) -> object:
    return args.rig.follower()  # `args.rig`: the `TeleopRig` that main opened


def _make_leader(robot, args) -> object:
    return args.rig.leader(robot)


ROBOTS: dict[str, Callable] = {"sim": _make_sim, "so101": _make_arm, "so100": _make_arm,
                               "koch": _make_arm}
TELEOPS: dict[str, Callable] = {"expert": _make_expert, "leader": _make_leader}
ARMS = ("so101", "so100", "koch")  # servo arms: recorded with --teleop leader, via a TeleopRig


def register_robot(name: str, factory: Callable) -> None:
    """Adds a `--robot` choice: factory(args) -> Robot."""
    ROBOTS[name] = factory


def register_teleop(name: str, factory: Callable) -> None:
    """Adds a `--teleop` choice: factory(robot, args) -> Teleoperator."""
    TELEOPS[name] = factory


def _check_resume(out: Path, settings: dict) -> None:
    """Refuses to append to a recording made with different settings (it would mix datasets)."""
    paths = list_episodes(out)
    if not paths:
        return
    first = read_episode(paths[0]).meta.extra.get("recording", {})
    diff = {k: (first.get(k), v) for k, v in settings.items() if first.get(k) != v}
    if diff:
        details = ", ".join(f"{k}: recorded {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"{out} holds a recording with other settings ({details}); "
                         "use another --out or the same settings to resume")


def record(
    robot,
    teleop,
    out_dir: str | Path,
    episodes: int,
    *,
    seed: int = 0,
    max_steps: int = DEFAULT_MAX_STEPS,
    realtime: bool | None = None,
    settings: dict | None = None,
    progress: bool = True,
    rig=None,
) -> list[Path]:
    """Records episodes until `out_dir` holds `episodes` of them (resuming after the last one).

    Args:
      robot: a connected Robot; a simulated one (with `reset`) is reset with
        `episode_seed(seed, i)` before episode i, and for a named/held-out distribution the
        locations are cycled in order.
      teleop: the Teleoperator that produces the actions.
      realtime: run at a fixed rate (default: True for real robots, False in simulation).
      settings: recording settings stored with each episode and checked on resume.
      rig: for a servo arm, the `hardware.teleop_rig.TeleopRig`: it runs the time between
        episodes (`rig.reset`: the scene is reset; it may ask to record the last episode again,
        or to stop), times emulated ticks (`rig.on_tick`) and says how an episode went
        (`rig.outcome`). Ctrl-C inside an episode discards that episode only.

    Returns:
      The paths of the episodes written by this call (not those re-recorded).
    """
    out = Path(out_dir)
    is_sim = hasattr(robot, "reset") and hasattr(robot, "cube_start_pose")
    if rig is not None:
        realtime = rig.realtime
    realtime = (not is_sim) if realtime is None else realtime
    settings = dict(settings or {}, seed=seed, robot_type=robot.robot_type,
                    cameras=list(robot.cameras))
    if getattr(robot, "scene_hash", None):
        settings["scene_hash"] = robot.scene_hash
    if getattr(teleop, "settings", None):
        settings["teleop_settings"] = dict(teleop.settings)
    _check_resume(out, settings)
    start = next_episode_index(out)
    written, oks = [], []
    bar = tqdm(total=episodes, desc="record", unit="ep", disable=not progress or rig is not None,
               initial=start)
    i = start
    while i < episodes:
        ep_seed = episode_seed(seed, i)
        location_id, cube_pose = -1, (float("nan"),) * 7
        if rig is not None:
            choice = rig.reset(i, ep_seed, robot, teleop, can_redo=bool(written))
            if choice == "quit":
                break
            if choice == "redo":
                i -= 1
                ep_seed = episode_seed(seed, i)
                written.pop().unlink()
                oks.pop()
                print(f"episode {i} deleted: recording it again", flush=True)
        if rig is not None:
            print(f"recording episode {i}", flush=True)
        if is_sim:
            n_loc = robot.num_locations
            robot.reset(seed=ep_seed, location=(i % n_loc) if n_loc else None)
        teleop.reset()
        ep = record_episode(robot, teleop, max_steps=max_steps, realtime=realtime,
                            on_tick=rig.on_tick if rig is not None else None)
        success = False
        extra = {"recording": settings}
        if realtime or rig is not None:  # wall-clock timing is worth keeping, not reproducible
            extra["loop"] = ep["stats"].summary()
        if is_sim:
            success = bool(robot.success())
            location_id = int(robot.location_id)
            cube_pose = tuple(float(v) for v in robot.cube_start_pose)
            extra.update(box_pose=robot.box_pose().tolist(), success_step=ep["success_step"],
                         cube_end_pose=robot.cube_pose().tolist())
            plan = getattr(teleop, "plan", None)
            if plan is not None:
                extra["phase_starts"] = plan.phase_starts
        outcome = rig.outcome(ep_seed) if rig is not None else {}
        success = outcome.get("success", success)
        extra.update(outcome.get("extra", {}))
        meta = EpisodeMeta(
            episode_index=i, fps=float(robot.fps), robot_type=robot.robot_type, success=success,
            cube_start_pose=outcome.get("cube_start_pose", cube_pose), location_id=location_id,
            seed=outcome.get("seed", ep_seed if is_sim else -1), cameras=tuple(robot.cameras),
            extra=extra,
        )
        written.append(write_episode(out, state=ep["state"], action=ep["action"],
                                     timestamp=ep["timestamp"], png=ep["png"], meta=meta))
        oks.append(success)
        if rig is not None:
            verdict = {True: "success", False: "no success"}[success]
            print(f"episode {i}: {ep['stats'].summary()}; {verdict} "
                  f"({outcome['extra']['success_by']})", flush=True)
        bar.update(1)
        bar.set_postfix(success=f"{sum(oks)}/{len(written)}", steps=len(ep["state"]))
        i += 1
    bar.close()
    return written


def record_sim_dataset(
    out_dir: str | Path,
    episodes: int,
    image_size: tuple[int, int] = (96, 128),
    seed: int = 0,
    distribution: str = "uniform",
    progress: bool = True,
) -> Path:
    """Records (or completes) `episodes` scripted-expert demos in simulation. Returns out_dir.

    The same arguments always give the same files; an interrupted call is resumed by calling
    it again.
    """
    from hardware.sim import SimRobot
    from hardware.sim.expert import ScriptedExpert

    robot = SimRobot(image_size=tuple(image_size), distribution=distribution, seed=seed)
    expert = ScriptedExpert(robot, seed=seed)
    settings = {"image_size": list(image_size), "distribution": distribution, "teleop": "expert"}
    with robot:
        record(robot, expert, out_dir, episodes, seed=seed, settings=settings, progress=progress)
    return Path(out_dir)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hardware.record", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--robot", default="sim", help=f"one of {sorted(ROBOTS)} (default sim)")
    p.add_argument("--teleop", default="expert", help=f"one of {sorted(TELEOPS)} (default expert)")
    p.add_argument("--episodes", type=int, required=True, help="total episodes wanted in --out")
    p.add_argument("--out", default="data/episodes/sim_demos", help="episode directory")
    p.add_argument("--image-size", default="480x640",
                   help="HEIGHTxWIDTH: rendered (sim, --emulate) or asked of the cameras "
                   "(default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="recording seed (default %(default)s)")
    p.add_argument("--distribution", default="uniform", choices=("uniform", "named", "held_out"),
                   help="cube start distribution (sim; default %(default)s)")
    p.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS,
                   help="ticks before an episode is cut; a leader-arm episode lasts this long "
                   "(default %(default)s = 13.3 s at 30 fps)")
    p.add_argument("--build-tfds", metavar="DATA_DIR", default=None,
                   help="afterwards, build the TFDS dataset act_episodes/NAME under DATA_DIR")
    p.add_argument("--name", default="sim_demos", help="TFDS config name (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    arm = p.add_argument_group("servo arms (--robot so101|so100|koch --teleop leader)")
    arm.add_argument("--port", help="the follower's serial port, e.g. /dev/ttyACM0")
    arm.add_argument("--calibration", help="the follower's calibration JSON "
                     "(python -m hardware.calibrate); optional with --emulate")
    arm.add_argument("--cameras", help="NAME=SOURCE,... e.g. top=0,lateral=2")
    arm.add_argument("--leader-port", help="the leader's serial port, e.g. /dev/ttyACM1")
    arm.add_argument("--leader-calibration", help="the leader's calibration JSON; optional "
                     "with --emulate")
    arm.add_argument("--reset-time", type=float, default=None, metavar="S",
                     help="seconds to reset the scene between episodes, instead of asking "
                     "(Enter / r / q) on the terminal")
    arm.add_argument("--emulate", action="store_true",
                     help="no hardware: the follower is the MuJoCo scene behind the servo "
                     "emulator, the leader an emulated arm moved by a scripted hand")
    return p


EXIT_OK, EXIT_ERROR, EXIT_STOP, EXIT_INTERRUPT = 0, 1, 3, 130


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.robot not in ROBOTS:
        p.error(f"unknown --robot {args.robot!r}: choose from {sorted(ROBOTS)}")
    if args.teleop not in TELEOPS:
        p.error(f"unknown --teleop {args.teleop!r}: choose from {sorted(TELEOPS)}")
    if args.teleop == "expert" and args.robot in ARMS:
        p.error(f"unknown --robot {args.robot!r} for --teleop expert (the scripted expert drives "
                f"only --robot sim): record a {args.robot} arm with --teleop leader")
    try:
        args.image_size = parse_image_size(args.image_size)
    except ValueError as e:
        p.error(str(e))
    settings = {"image_size": list(args.image_size), "distribution": args.distribution,
                "teleop": args.teleop}
    arm_flags = [f for f in ("port", "calibration", "cameras", "leader_port",
                             "leader_calibration", "reset_time", "emulate") if getattr(args, f)]
    if args.robot in ARMS or args.teleop == "leader":
        from hardware.setup_arms import ArgumentError
        from hardware.teleop_rig import TeleopRig, check_args

        try:
            rig_settings = check_args(args)  # before any port or camera opens
        except ArgumentError as e:
            p.error(str(e))
        del settings["distribution"]
        rig = TeleopRig(rig_settings)
    elif arm_flags:
        p.error(f"--{arm_flags[0].replace('_', '-')} is for a servo arm (--robot so101|so100|"
                "koch --teleop leader)")
    else:
        rig = None
    with contextlib.ExitStack() as stack:
        try:
            if rig is not None:
                args.rig = stack.enter_context(rig)
                settings.update(rig.settings)
            robot = stack.enter_context(ROBOTS[args.robot](args))
            teleop = stack.enter_context(TELEOPS[args.teleop](robot, args))
            written = record(robot, teleop, args.out, args.episodes, seed=args.seed,
                             max_steps=args.max_steps, settings=settings,
                             progress=not args.no_progress, rig=rig)
        except KeyboardInterrupt:
            kept = len(list_episodes(args.out))
            print(f"interrupted: the episode in progress (if any) was discarded; {args.out} "
                  f"holds {kept} complete episodes", file=sys.stderr)
            stack.close()  # the follower parks, then torque off
            if rig is not None:
                print("the follower was left parked with torque off", file=sys.stderr)
            return EXIT_INTERRUPT
        except ProtectiveStop as e:  # the follower already holds or has torque off
            stack.close()
            print(f"record: PROTECTIVE STOP: {e}; the episode in progress was discarded",
                  file=sys.stderr)
            return EXIT_STOP
        except (CameraError, MotorBusError) as e:
            stack.close()
            print(f"record: {type(e).__name__}: {e}", file=sys.stderr)
            return EXIT_ERROR
    n = len(list_episodes(args.out))
    print(f"wrote {len(written)} episodes; {args.out} now holds {n}")
    if args.build_tfds:
        from act_jax_datasets.episodes import build  # datasets reads what hardware writes

        print(f"built {build(args.out, args.build_tfds, args.name)}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
