"""The recorder: a robot and a teleoperator through the control loop, one episode file at a time
(`hardware.recording.episodes`), for the TFDS builder in `datasets/episodes`.

    with SimRobot(image_size=(96, 128)) as robot:
        record(robot, ScriptedExpert(robot), "data/episodes/sim_demos", episodes=50, seed=0)

Per step an episode holds both camera images, the state and the action actually sent, and the
timestamp; per episode the cube's start pose, its location id, success, fps and robot type
(`EpisodeMeta`). Durable and resumable: each episode is written atomically when it ends, and
recording again into the same directory appends after the last complete episode (refused if the
settings differ), first recording again any index whose file is damaged or missing, so the
numbering never has a gap (`_resume`). Deterministic in simulation: episode i resets the sim with
`episode_seed(seed, i)` and its timestamps are sim time. The command line, with its arguments
and exit statuses, is `python -m hardware.record`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hardware.control_loop import run_loop
from hardware.recording.episodes import (
    EpisodeDamaged,
    EpisodeMeta,
    check_archive,
    encode_png,
    episode_index,
    list_episodes,
    read_episode,
    set_aside,
    write_episode,
)
from hardware.sim.expert import ScriptedExpert
from hardware.sim.robot import SimRobot

DEFAULT_MAX_STEPS = 400  # a guard; the expert's episodes end by themselves after ~170 ticks


def episode_seed(seed: int, index: int) -> int:
    """The reset seed of episode `index` of a recording started with `seed` (31-bit)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] >> 1)


def record_episode(
    robot, teleop, *, max_steps: int, realtime: bool, on_tick: Callable[[], None] | None = None
) -> dict:
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
        robot,
        teleop,
        fps=robot.fps,
        max_steps=max_steps,
        realtime=realtime,
        on_step=on_step,
        stop=lambda: teleop.done,
    )
    return dict(
        state=np.stack(states),
        action=np.stack(actions),
        timestamp=np.asarray(stamps),
        png=png,
        stats=stats,
        success_step=success_step if has_success else None,
    )


def _resume(out: Path, settings: dict, episodes: int) -> list[int]:
    """The episode indices still to record in `out` for `episodes` in all, in order.

    What is there is checked first: every file's archive is complete (`check_archive`, cheap),
    and the last file and the first good one are read in full (their CRC-32s; the first gives
    the settings). A damaged file is moved into `out/damaged/`, named on stderr (no data is
    deleted), and its index is recorded again, as is an index whose file is missing: the
    numbering never has a gap. The other indices follow the last good episode.

    Raises:
      ValueError: the recording there was made with other settings (it would mix datasets).
    """
    paths = list_episodes(out)
    good, damaged, first = set(), [], None
    for k, path in enumerate(paths):
        try:
            if first is None or k == len(paths) - 1:
                meta = read_episode(path).meta
                first = meta if first is None else first
            else:
                check_archive(path)
            good.add(episode_index(path))
        except EpisodeDamaged as e:
            damaged.append(e)
    recorded = first.extra.get("recording", {}) if first is not None else settings
    diff = {k: (recorded.get(k), v) for k, v in settings.items() if recorded.get(k) != v}
    if diff:
        details = ", ".join(f"{k}: recorded {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise ValueError(
            f"{out} holds a recording with other settings ({details}); "
            "use another --out or the same settings to resume"
        )
    for e in damaged:
        again = f"; episode {e.index} is recorded again" if e.index < episodes else ""
        print(f"record: {e}; moved to {set_aside(e.path)}{again}", file=sys.stderr, flush=True)
    return [i for i in range(episodes) if i not in good]


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
    """Records episodes until `out_dir` holds `episodes` of them, indices 0 to `episodes` - 1
    (resuming: see `_resume`).

    Args:
      robot: a connected Robot; a simulated one (with `reset`) is reset with
        `episode_seed(seed, i)` before episode i, and for a named/held-out distribution the
        locations are cycled in order.
      teleop: the Teleoperator that produces the actions.
      realtime: run at a fixed rate (default: True for real robots, False in simulation).
      settings: recording settings stored with each episode and checked on resume.
      rig: for a servo arm, the `hardware.recording.teleop_rig.TeleopRig`: it runs the time between
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
    settings = dict(
        settings or {}, seed=seed, robot_type=robot.robot_type, cameras=list(robot.cameras)
    )
    if getattr(robot, "scene_hash", None):
        settings["scene_hash"] = robot.scene_hash
    if getattr(teleop, "settings", None):
        settings["teleop_settings"] = dict(teleop.settings)
    todo = _resume(out, settings, episodes)
    written, oks = [], []
    bar = tqdm(
        total=episodes,
        desc="record",
        unit="ep",
        disable=not progress or rig is not None,
        initial=episodes - len(todo),
    )
    k = 0
    while k < len(todo):
        i = todo[k]
        ep_seed = episode_seed(seed, i)
        location_id, cube_pose = -1, (float("nan"),) * 7
        if rig is not None:
            choice = rig.reset(i, ep_seed, robot, teleop, can_redo=bool(written))
            if choice == "quit":
                break
            if choice == "redo":
                k -= 1
                i = todo[k]
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
        ep = record_episode(
            robot,
            teleop,
            max_steps=max_steps,
            realtime=realtime,
            on_tick=rig.on_tick if rig is not None else None,
        )
        success = False
        extra = {"recording": settings}
        if realtime or rig is not None:  # wall-clock timing is worth keeping, not reproducible
            extra["loop"] = ep["stats"].summary()
        if is_sim:
            success = bool(robot.success())
            location_id = int(robot.location_id)
            cube_pose = tuple(float(v) for v in robot.cube_start_pose)
            extra.update(
                box_pose=robot.box_pose().tolist(),
                success_step=ep["success_step"],
                cube_end_pose=robot.cube_pose().tolist(),
            )
            plan = getattr(teleop, "plan", None)
            if plan is not None:
                extra["phase_starts"] = plan.phase_starts
        outcome = rig.outcome(ep_seed) if rig is not None else {}
        success = outcome.get("success", success)
        extra.update(outcome.get("extra", {}))
        meta = EpisodeMeta(
            episode_index=i,
            fps=float(robot.fps),
            robot_type=robot.robot_type,
            success=success,
            cube_start_pose=outcome.get("cube_start_pose", cube_pose),
            location_id=location_id,
            seed=outcome.get("seed", ep_seed if is_sim else -1),
            cameras=tuple(robot.cameras),
            extra=extra,
        )
        written.append(
            write_episode(
                out,
                state=ep["state"],
                action=ep["action"],
                timestamp=ep["timestamp"],
                png=ep["png"],
                meta=meta,
            )
        )
        oks.append(success)
        if rig is not None:
            verdict = {True: "success", False: "no success"}[success]
            print(
                f"episode {i}: {ep['stats'].summary()}; {verdict} "
                f"({outcome['extra']['success_by']})",
                flush=True,
            )
        bar.update(1)
        bar.set_postfix(success=f"{sum(oks)}/{len(written)}", steps=len(ep["state"]))
        k += 1
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
    robot = SimRobot(image_size=tuple(image_size), distribution=distribution, seed=seed)
    expert = ScriptedExpert(robot, seed=seed)
    settings = {"image_size": list(image_size), "distribution": distribution, "teleop": "expert"}
    with robot:
        record(robot, expert, out_dir, episodes, seed=seed, settings=settings, progress=progress)
    return Path(out_dir)
