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

What differs between a simulated arm, an emulated rig and a real leader -> follower rig is a
`Mode`: whether ticks keep the wall clock, the `SimTask` (if any) that is reset before each
episode and says how it went, what runs between episodes (the operator's prompt, an emulated
hand going home), and a hook per tick (an emulated rig's virtual clock). The rigs of
`hardware.recording.teleop_rig` build theirs; a `SimRobot` is its own task (`sim_mode`).
"""

from __future__ import annotations

import dataclasses
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
from hardware.sim.task import SimTask
from hardware.teleop import Teleoperator

DEFAULT_MAX_STEPS = 400  # a guard; the expert's episodes end by themselves after ~170 ticks


def episode_seed(seed: int, index: int) -> int:
    """The reset seed of episode `index` of a recording started with `seed` (31-bit)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] >> 1)


@dataclasses.dataclass
class Mode:
    """How a recording runs its episodes and judges them.

    Attributes:
      realtime: ticks keep the wall clock (a real arm); otherwise they run flat out and the
        timestamps are t / fps (a simulated or emulated one).
      task: the trial reset before each episode (`episode_seed(seed, i)`, named locations in
        turn) whose success and cube poses go into the episode; None on a real rig.
      between: the time before episode i, given (i, robot, teleop, can_redo): returns "record",
        "redo" (delete the last episode and record it again) or "quit". None: no pause.
      on_tick: runs after every recorded tick (an emulated rig advances its clock there).
      success_by: who judges success, stored and printed per episode ("sim check"; on a real rig
        the operator: an episode that is kept counts as a success). None: the task, silently.
      settings: what the set-up adds to the recording's settings (checked on resume).
    """

    realtime: bool
    task: SimTask | None = None
    between: Callable[[int, object, Teleoperator, bool], str] | None = None
    on_tick: Callable[[], None] | None = None
    success_by: str | None = None
    settings: dict = dataclasses.field(default_factory=dict)

    @property
    def narrated(self) -> bool:
        """A line per episode (a person watches) instead of a progress bar."""
        return self.success_by is not None


def sim_mode(robot: SimRobot) -> Mode:
    """A simulated arm that is its own task: flat out, its scene identified in the settings."""
    return Mode(realtime=False, task=robot, settings={"scene_hash": robot.scene_hash})


def default_mode(robot) -> Mode:
    """`sim_mode` for a robot that is a `SimTask`; otherwise a real robot at its fixed rate."""
    return sim_mode(robot) if isinstance(robot, SimTask) else Mode(realtime=True)


def record_episode(
    robot,
    teleop,
    *,
    max_steps: int,
    realtime: bool,
    on_tick: Callable[[], None] | None = None,
    task: SimTask | None = None,
) -> dict:
    """Runs one episode from the robot's current (just reset) state.

    `on_tick` runs after each recorded tick (an emulated rig advances its virtual clock there).

    Returns:
      dict(state (T, 6), action (T, 6), timestamp (T,), png {camera: T PNG bytes}, stats,
      success_step: first tick after which `task.success()` held, -1 if never, None without a
      task).
    """
    states, actions, stamps = [], [], []
    png = {cam: [] for cam in robot.cameras}
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
        if task is not None and success_step < 0 and task.success():
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
        success_step=success_step if task is not None else None,
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


def episode_meta(
    i: int, ep_seed: int, ep: dict, robot, teleop: Teleoperator, mode: Mode, settings: dict
) -> EpisodeMeta:
    """The metadata of episode `i` just recorded: from the task when there is one (success,
    location, cube poses), from the operator on a real rig (kept: a success), and what the
    teleoperator adds (`episode_extra`)."""
    extra = {"recording": settings}
    if mode.realtime or mode.narrated:  # wall-clock timing is worth keeping, not reproducible
        extra["loop"] = ep["stats"].summary()
    # Without a task, success is the operator's: an episode they kept (a real rig's mode names
    # them in `success_by`); a robot with neither records none.
    success = mode.task is None and mode.success_by is not None
    location_id, cube_pose = -1, (float("nan"),) * 7
    if mode.task is not None:
        outcome = mode.task.outcome()
        success, location_id = outcome["success"], outcome["location_id"]
        cube_pose = outcome["cube_start_pose"]
        extra.update(
            box_pose=outcome["box_pose"],
            success_step=ep["success_step"],
            cube_end_pose=outcome["cube_end_pose"],
        )
    extra.update(teleop.episode_extra())
    if mode.success_by is not None:
        extra["success_by"] = mode.success_by
    return EpisodeMeta(
        episode_index=i,
        fps=float(robot.fps),
        robot_type=robot.robot_type,
        success=success,
        cube_start_pose=cube_pose,
        location_id=location_id,
        seed=ep_seed if mode.task is not None else -1,
        cameras=tuple(robot.cameras),
        extra=extra,
    )


def _settings(robot, teleop: Teleoperator, mode: Mode, settings: dict | None, seed: int) -> dict:
    """The recording's settings: the caller's, the set-up's, the robot's and the teleoperator's."""
    out = dict(settings or {}, seed=seed, robot_type=robot.robot_type, cameras=list(robot.cameras))
    out.update(mode.settings)
    if teleop.settings:
        out["teleop_settings"] = dict(teleop.settings)
    return out


def record(
    robot,
    teleop: Teleoperator,
    out_dir: str | Path,
    episodes: int,
    *,
    seed: int = 0,
    max_steps: int = DEFAULT_MAX_STEPS,
    mode: Mode | None = None,
    settings: dict | None = None,
    progress: bool = True,
) -> list[Path]:
    """Records episodes until `out_dir` holds `episodes` of them, indices 0 to `episodes` - 1
    (resuming: see `_resume`).

    Args:
      robot: a connected Robot.
      teleop: the Teleoperator that produces the actions.
      mode: how episodes run and are judged (`Mode`); default `default_mode(robot)`: a
        `SimRobot` is reset with `episode_seed(seed, i)` before episode i (named locations
        cycled in order) and runs flat out, any other robot at its fixed rate.
      settings: recording settings stored with each episode and checked on resume.

    Returns:
      The paths of the episodes written by this call (not those re-recorded).
    """
    out, mode = Path(out_dir), mode or default_mode(robot)
    settings = _settings(robot, teleop, mode, settings, seed)
    todo = _resume(out, settings, episodes)
    written, oks = [], []
    bar = tqdm(
        total=episodes,
        desc="record",
        unit="ep",
        disable=not progress or mode.narrated,
        initial=episodes - len(todo),
    )
    k = 0
    while k < len(todo):
        if mode.between is not None:
            choice = mode.between(todo[k], robot, teleop, bool(written))
            if choice == "quit":
                break
            if choice == "redo":
                k -= 1
                written.pop().unlink()
                oks.pop()
                print(f"episode {todo[k]} deleted: recording it again", flush=True)
        i = todo[k]
        path, ep, meta = _record_one(
            robot, teleop, out, i, episode_seed(seed, i), mode, max_steps, settings
        )
        written.append(path)
        oks.append(meta.success)
        if mode.narrated:
            verdict = "success" if meta.success else "no success"
            print(
                f"episode {i}: {ep['stats'].summary()}; {verdict} ({mode.success_by})", flush=True
            )
        bar.update(1)
        bar.set_postfix(success=f"{sum(oks)}/{len(written)}", steps=len(ep["state"]))
        k += 1
    bar.close()
    return written


def _record_one(
    robot, teleop, out: Path, i: int, ep_seed: int, mode: Mode, max_steps: int, settings: dict
):
    """Resets the task (if any) and the teleoperator, records episode `i`, writes its file."""
    if mode.narrated:
        print(f"recording episode {i}", flush=True)
    if mode.task is not None:
        mode.task.reset(seed=ep_seed, location=mode.task.start_location(i))
    teleop.reset()
    ep = record_episode(
        robot,
        teleop,
        max_steps=max_steps,
        realtime=mode.realtime,
        on_tick=mode.on_tick,
        task=mode.task,
    )
    meta = episode_meta(i, ep_seed, ep, robot, teleop, mode, settings)
    path = write_episode(
        out,
        state=ep["state"],
        action=ep["action"],
        timestamp=ep["timestamp"],
        png=ep["png"],
        meta=meta,
    )
    return path, ep, meta


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
