r"""Records demonstrations: a robot and a teleoperator through the control loop, one episode file
at a time (`hardware.episodes`), for the TFDS builder in `datasets/episodes`.

    python -m hardware.record --robot sim --teleop expert --episodes 50 \
        --out data/episodes/sim_demos --image-size 96x128 --seed 0
    python -m act_jax_datasets.episodes --episodes data/episodes/sim_demos --data-dir data/tfds

(or add `--build-tfds data/tfds` to the first command to do both). Per step an episode holds
both camera images, the state and the action actually sent, and the timestamp; per episode the
cube's start pose, its location id, success, fps and robot type (`EpisodeMeta`).

Durable and resumable: each episode is written atomically when it ends, so killing the recorder
loses at most the episode in progress, and running the same command again appends after the
last complete episode. Deterministic in simulation: episode i resets the sim with a seed
derived from (--seed, i) and its timestamps are sim time, so the same command gives the same
files, whether it ran in one go or was resumed. Simulated recording runs as fast as it can
(no sleeping); a real robot runs at its fixed rate.

New robots and teleoperators plug in with `register_robot(name, factory)` and
`register_teleop(name, factory)`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hardware.control_loop import run_loop
from hardware.episodes import (
    EpisodeMeta,
    encode_png,
    list_episodes,
    next_episode_index,
    read_episode,
    write_episode,
)

DEFAULT_MAX_STEPS = 400  # a guard; the expert's episodes end by themselves after ~170 ticks


def episode_seed(seed: int, index: int) -> int:
    """The reset seed of episode `index` of a recording started with `seed` (31-bit)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] >> 1)


def parse_image_size(text: str) -> tuple[int, int]:
    """ "96x128" -> (96, 128): height x width."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"image size {text!r} must be HEIGHTxWIDTH, e.g. 96x128") from None
    return h, w


def record_episode(robot, teleop, *, max_steps: int, realtime: bool) -> dict:
    """Runs one episode from the robot's current (just reset) state.

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


ROBOTS: dict[str, Callable] = {"sim": _make_sim}
TELEOPS: dict[str, Callable] = {"expert": _make_expert}


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
) -> list[Path]:
    """Records episodes until `out_dir` holds `episodes` of them (resuming after the last one).

    Args:
      robot: a connected Robot; a simulated one (with `reset`) is reset with
        `episode_seed(seed, i)` before episode i, and for a named/held-out distribution the
        locations are cycled in order.
      teleop: the Teleoperator that produces the actions.
      realtime: run at a fixed rate (default: True for real robots, False in simulation).
      settings: recording settings stored with each episode and checked on resume.

    Returns:
      The paths of the episodes written by this call.
    """
    out = Path(out_dir)
    is_sim = hasattr(robot, "reset") and hasattr(robot, "cube_start_pose")
    realtime = (not is_sim) if realtime is None else realtime
    settings = dict(settings or {}, seed=seed, robot_type=robot.robot_type,
                    cameras=list(robot.cameras))
    if getattr(robot, "scene_hash", None):
        settings["scene_hash"] = robot.scene_hash
    if getattr(teleop, "settings", None):
        settings["teleop_settings"] = dict(teleop.settings)
    _check_resume(out, settings)
    start = next_episode_index(out)
    written, successes = [], 0
    bar = tqdm(range(start, episodes), desc="record", unit="ep", disable=not progress,
               initial=start, total=episodes)
    for i in bar:
        ep_seed = episode_seed(seed, i)
        location_id, cube_pose = -1, (float("nan"),) * 7
        if is_sim:
            n_loc = robot.num_locations
            robot.reset(seed=ep_seed, location=(i % n_loc) if n_loc else None)
        teleop.reset()
        ep = record_episode(robot, teleop, max_steps=max_steps, realtime=realtime)
        success = False
        extra = {"recording": settings}
        if realtime:  # wall-clock timing is worth keeping on hardware, and not reproducible
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
        meta = EpisodeMeta(
            episode_index=i, fps=float(robot.fps), robot_type=robot.robot_type, success=success,
            cube_start_pose=cube_pose, location_id=location_id,
            seed=ep_seed if is_sim else -1, cameras=tuple(robot.cameras), extra=extra,
        )
        written.append(write_episode(out, state=ep["state"], action=ep["action"],
                                     timestamp=ep["timestamp"], png=ep["png"], meta=meta))
        successes += success
        bar.set_postfix(success=f"{successes}/{len(written)}", steps=len(ep["state"]))
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


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--robot", default="sim", help=f"one of {sorted(ROBOTS)} (default sim)")
    p.add_argument("--teleop", default="expert", help=f"one of {sorted(TELEOPS)} (default expert)")
    p.add_argument("--episodes", type=int, required=True, help="total episodes wanted in --out")
    p.add_argument("--out", default="data/episodes/sim_demos", help="episode directory")
    p.add_argument("--image-size", default="480x640", help="HEIGHTxWIDTH (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="recording seed (default %(default)s)")
    p.add_argument("--distribution", default="uniform", choices=("uniform", "named", "held_out"),
                   help="cube start distribution (sim; default %(default)s)")
    p.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS,
                   help="ticks before an episode is cut (default %(default)s)")
    p.add_argument("--build-tfds", metavar="DATA_DIR", default=None,
                   help="afterwards, build the TFDS dataset act_episodes/NAME under DATA_DIR")
    p.add_argument("--name", default="sim_demos", help="TFDS config name (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.robot not in ROBOTS:
        p.error(f"unknown --robot {args.robot!r}: choose from {sorted(ROBOTS)}")
    if args.teleop not in TELEOPS:
        p.error(f"unknown --teleop {args.teleop!r}: choose from {sorted(TELEOPS)}")
    try:
        args.image_size = parse_image_size(args.image_size)
    except ValueError as e:
        p.error(str(e))
    robot = ROBOTS[args.robot](args)
    settings = {"image_size": list(args.image_size), "distribution": args.distribution,
                "teleop": args.teleop}
    with robot, TELEOPS[args.teleop](robot, args) as teleop:
        written = record(robot, teleop, args.out, args.episodes, seed=args.seed,
                         max_steps=args.max_steps, settings=settings,
                         progress=not args.no_progress)
    n = len(list_episodes(args.out))
    print(f"wrote {len(written)} episodes; {args.out} now holds {n}")
    if args.build_tfds:
        from act_jax_datasets.episodes import build  # datasets reads what hardware writes

        print(f"built {build(args.out, args.build_tfds, args.name)}")


if __name__ == "__main__":
    main()
