"""Closed-loop evaluation of a policy in the simulated pick-and-place world.

    python -m act_jax.evaluate --checkpoint runs/sim_default --episodes 50

Runs rollouts in the MuJoCo sim (`hardware.sim`) through the same control loop that drives the
real arm, and reports the success rate with a 95% Wilson confidence interval, per cube location,
and the mean time to success. Writes `eval/<name>/results.json` and mp4 videos of the first few
rollouts (both cameras side by side) into the checkpoint directory unless `--out` says otherwise.

Evaluation is deterministic for a fixed checkpoint and seeds: episode `i` resets the sim with
seed `seed + i`, and the policy is deterministic at inference (zero latent, no dropout).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from act_jax.execution import make_executor
from hardware.sim.cube import distribution_arg

POLICY_KINDS = ("act", "alt")


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% for z = 1.96).

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0 or n successes,
    which is where a good policy lives.
    """
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclasses.dataclass
class Rollout:
    """One evaluation episode."""

    episode: int
    seed: int
    location_id: int
    success: bool
    steps: int  # control ticks run
    time_to_success_s: float | None  # seconds until success() first held, None on failure
    cube_start_pose: list[float]
    policy_ms_p50: float  # median latency of a policy call (ms), including chunk queries
    policy_ms_max: float
    # At the first tick whose gripper command fell below half open
    # (`hardware.sim.expert.GRASP_COMMAND`), the tool point (m) measured, and the one the
    # commanded joints put it at (forward kinematics): where the policy chose to grasp, which a
    # jaw landing on the cube does not move. None: it never closed.
    grasp_point: list[float] | None = None
    grasp_target: list[float] | None = None


@dataclasses.dataclass
class Episode:
    """What `rollout` saw of one episode."""

    success: bool
    ticks: int
    time_to_success_s: float | None
    latencies_s: list[float]
    grasp_point: np.ndarray | None  # (3,) see `Rollout.grasp_point`
    grasp_target: np.ndarray | None  # (3,) see `Rollout.grasp_target`
    frames: dict[str, list[np.ndarray]] | None  # camera -> (H, W, 3) frames, when recorded
    stats: object = None  # the control loop's `LoopStats` (ticks, per-part latencies)


def path_safe(name: str) -> str:
    """`name` with the spec characters that some filesystems and shells dislike in paths
    (`:`, `~`, `,`) replaced: "held_out~3mm,3deg" -> "held_out-3mm-3deg"."""
    for ch in ":~,":
        name = name.replace(ch, "-")
    return name


def summarize(rollouts: Sequence[Rollout]) -> dict:
    """Success rate with its 95% interval, overall and per cube location."""

    def block(rs):
        k, n = sum(r.success for r in rs), len(rs)
        lo, hi = wilson_interval(k, n)
        times = [r.time_to_success_s for r in rs if r.success]
        return {
            "episodes": n,
            "successes": k,
            "success_rate": k / n if n else float("nan"),
            "ci95": [lo, hi],
            "mean_time_to_success_s": float(np.mean(times)) if times else None,
        }

    out = block(rollouts)
    locations = sorted({r.location_id for r in rollouts})
    if locations != [-1]:
        out["per_location"] = {
            str(loc): block([r for r in rollouts if r.location_id == loc]) for loc in locations
        }
    return out


def rollout(
    robot, policy, *, max_steps: int, settle_steps: int = 5, record: bool = False
) -> Episode:
    """Runs one episode from the robot's current reset state until success or `max_steps`.

    Success must hold for `settle_steps` consecutive ticks (the cube at rest in the box). With
    `record`, the camera frames are kept.
    """
    from hardware.control_loop import HeldFor, run_loop
    from hardware.sim.arm import from_lerobot_units
    from hardware.sim.expert import GRASP_COMMAND

    frames = {cam: [] for cam in robot.cameras} if record else None
    latencies: list[float] = []
    held = HeldFor(settle_steps, robot.fps)
    grasp = target = None

    def timed_policy(observation):
        t0 = time.perf_counter()
        action = policy(observation)
        latencies.append(time.perf_counter() - t0)
        return action

    def on_step(t, observation, action, sent):
        nonlocal grasp, target
        if frames is not None:
            for cam, img in observation["images"].items():
                frames[cam].append(img)
        if grasp is None and sent[5] < GRASP_COMMAND:
            grasp = robot.tool_point()
            target = robot.kinematics.fk(from_lerobot_units(sent)[:5])[0]
        return held.update(t, robot.success())

    stats = run_loop(
        robot, timed_policy, fps=robot.fps, max_steps=max_steps, realtime=False, on_step=on_step
    )
    return Episode(held.done, stats.ticks, held.time_s, latencies, grasp, target, frames, stats)


def _listed(v: np.ndarray | None) -> list[float] | None:
    return None if v is None else [float(x) for x in v]


def run_rollouts(
    make_policy: Callable[[], Callable[[dict], np.ndarray]],
    robot,
    *,
    episodes: int,
    seed: int = 1000,
    max_steps: int = 400,
    settle_steps: int = 5,
    locations: Sequence[int] | None = None,
    video_dir: Path | None = None,
    videos: int = 0,
    progress: bool = True,
) -> list[Rollout]:
    """Runs `episodes` rollouts of a policy in a simulated robot.

    Args:
      make_policy: returns a fresh per-episode policy callable, observation -> (6,) action (it owns
        its executor state, so it must be rebuilt or reset for every episode).
      robot: a connected `hardware.sim.SimRobot` (a `Robot` that is also a `SimTask`).
      episodes: number of rollouts; episode i resets with seed `seed + i`.
      max_steps: ticks before a rollout counts as a failure.
      settle_steps: success must hold for this many consecutive ticks.
      locations: if given, named cube location ids cycled over the episodes.
      video_dir, videos: write mp4s of the first `videos` rollouts there.
    """
    from hardware.recording.video import write_video

    rollouts = []
    bar = tqdm(range(episodes), desc="evaluate", unit="ep", disable=not progress)
    for i in bar:
        location = None if locations is None else int(locations[i % len(locations)])
        robot.reset(seed=seed + i, location=location)
        ep = rollout(
            robot,
            make_policy(),
            max_steps=max_steps,
            settle_steps=settle_steps,
            record=i < videos and video_dir is not None,
        )
        lat_ms = 1e3 * np.asarray(ep.latencies_s or [0.0])
        rollouts.append(
            Rollout(
                episode=i,
                seed=seed + i,
                location_id=robot.location_id,
                success=ep.success,
                steps=ep.ticks,
                time_to_success_s=ep.time_to_success_s,
                cube_start_pose=[float(v) for v in robot.cube_start_pose],
                policy_ms_p50=float(np.median(lat_ms)),
                policy_ms_max=float(lat_ms.max()),
                grasp_point=_listed(ep.grasp_point),
                grasp_target=_listed(ep.grasp_target),
            )
        )
        if ep.frames is not None:
            write_video(
                video_dir / f"rollout_{i:03d}_{'success' if ep.success else 'failure'}.mp4",
                {cam: np.stack(f) for cam, f in ep.frames.items()},
                fps=robot.fps,
            )
        bar.set_postfix(success=f"{sum(r.success for r in rollouts)}/{len(rollouts)}")
    return rollouts


def _lookup_table(cfg):
    """The action lookup table (`act_jax.lookup_table`) over the training dataset of `cfg`."""
    from act_jax.data import dataset_dir_for
    from act_jax.lookup_table import ActionLookupTable

    dataset = dataset_dir_for(cfg.data)
    if not dataset.exists():
        raise FileNotFoundError(f"no training dataset at {dataset} for the lookup table")
    return ActionLookupTable.from_dataset(dataset, cfg)


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    episodes: int = 50,
    seed: int = 1000,
    execution: str | None = None,
    distribution: str | None = None,
    max_steps: int | None = None,
    videos: int = 3,
    out: str | Path | None = None,
    progress: bool = True,
    policy_kind: str = "act",
) -> dict:
    """Evaluates a checkpoint directory in simulation and writes results.json (+ videos).

    `policy_kind="alt"` evaluates the action lookup table (`act_jax.lookup_table`) over the
    checkpoint's training dataset instead of the network, with the same config, execution and
    starts."""
    from act_jax.policy import Policy
    from hardware.sim import CubeDistribution, SimRobot

    if policy_kind not in POLICY_KINDS:
        raise ValueError(f"policy kind {policy_kind!r} is not one of {POLICY_KINDS}")
    policy = Policy.from_checkpoint(checkpoint)
    cfg = policy.config
    step = policy.step
    execution = execution or cfg.eval.get("execution", "ensemble:0.01")
    distribution = distribution or cfg.eval.get("distribution", "uniform")
    max_steps = max_steps or cfg.eval.get("max_steps", 400)
    make_executor(execution)  # validate the specs before anything is read or written
    CubeDistribution.make(distribution)
    if policy_kind == "alt":
        policy = _lookup_table(cfg)
    if out is None:  # e.g. eval/uniform_ensemble-0.01
        prefix = "" if policy_kind == "act" else f"{policy_kind}_"
        out = Path(checkpoint) / "eval" / path_safe(f"{prefix}{distribution}_{execution}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if policy_kind == "act":
        policy.warmup()

    robot = SimRobot(
        image_size=tuple(cfg.model.image_size),
        cameras=tuple(cfg.model.cameras),
        distribution=distribution,
    )
    locations = list(range(robot.num_locations)) if robot.num_locations else None
    t0 = time.time()
    with robot:
        rollouts = run_rollouts(
            lambda: policy.as_controller(make_executor(execution)),
            robot,
            episodes=episodes,
            seed=seed,
            max_steps=max_steps,
            locations=locations,
            video_dir=out,
            videos=videos,
            progress=progress,
        )
    summary = summarize(rollouts)
    summary.update(
        checkpoint=str(checkpoint),
        step=step,
        policy=policy_kind,
        execution=execution,
        distribution=distribution,
        seed=seed,
        max_steps=max_steps,
        wall_time_s=time.time() - t0,
        policy_retraces_after_warmup=getattr(policy, "retraces_after_warmup", None),
        rollouts=[dataclasses.asdict(r) for r in rollouts],
    )
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    summary["out_dir"] = str(out)
    return summary


def make_train_eval_fn(config, workdir: str | Path):
    """The rollout evaluation that training runs every `config.eval.rollout_every` steps.

    Returns `eval_fn(state, step) -> {"success_rate", "ci95_low", "ci95_high"}` over
    `config.eval.episodes` sim rollouts (seeds from `config.eval.seed`, so every evaluation of a
    run sees the same cube poses). The sim and the jitted policy are built once, on first use;
    later calls only swap in the new weights (`Policy.load_weights`), so nothing recompiles.
    The sim's renderer is opened for each evaluation and closed after it.
    """
    from act_jax.model import ACT, ACTConfig
    from act_jax.normalization import NormStats
    from act_jax.policy import Policy
    from hardware.sim import SimRobot

    ev = config.eval
    execution = ev.get("execution", "ensemble:0.01")
    make_executor(execution)
    held: dict = {}

    def eval_fn(state, step: int) -> dict:
        if not held:
            stats = NormStats.from_dict(json.loads((Path(workdir) / "norm_stats.json").read_text()))
            model = ACT(ACTConfig.from_config(config.model))
            held["policy"] = Policy(model, None, config, stats)
            held["robot"] = SimRobot(
                image_size=tuple(config.model.image_size),
                cameras=tuple(config.model.cameras),
                distribution=ev.get("distribution", "uniform"),
            )
        policy, robot = held["policy"], held["robot"]
        policy.load_weights({"params": state.params, "batch_stats": state.batch_stats}, step)
        with robot:
            rollouts = run_rollouts(
                lambda: policy.as_controller(make_executor(execution)),
                robot,
                episodes=ev.episodes,
                seed=ev.seed,
                max_steps=ev.get("max_steps", 400),
                progress=False,
            )
        s = summarize(rollouts)
        tqdm.write(
            f"step {step}: sim success {s['successes']}/{s['episodes']} "
            f"({100 * s['success_rate']:.0f}%, 95% CI {100 * s['ci95'][0]:.0f}-"
            f"{100 * s['ci95'][1]:.0f}%)"
        )
        return {
            "success_rate": s["success_rate"],
            "ci95_low": s["ci95"][0],
            "ci95_high": s["ci95"][1],
        }

    return eval_fn


def execution_arg(text: str) -> str:
    """argparse `type=` for a chunk execution spec: the spec, or a one-line error."""
    try:
        make_executor(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def main(argv=None):
    from hardware.arguments import ArgumentParser, int_in

    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="training workdir (or checkpoint dir)")
    p.add_argument("--episodes", type=int_in(1), default=50, help="rollouts (default %(default)s)")
    p.add_argument(
        "--seed", type=int_in(0), default=1000, help="seed of episode 0 (default %(default)s)"
    )
    p.add_argument(
        "--execution",
        default=None,
        type=execution_arg,
        metavar="SPEC",
        help="open_loop | receding:N | ensemble[:M] (default: the checkpoint config's)",
    )
    p.add_argument(
        "--locations",
        default=None,
        metavar="SPEC",
        type=distribution_arg,
        help="cube start distribution: uniform | named | held_out | grid:RxC, optionally "
        "jittered, e.g. held_out~3mm,3deg (default: the checkpoint config's)",
    )
    p.add_argument(
        "--policy",
        default="act",
        choices=POLICY_KINDS,
        help="act: the checkpoint's network (default); alt: the action lookup table "
        "over its training frames (act_jax.lookup_table), the lookup baseline",
    )
    p.add_argument("--max-steps", type=int_in(1), default=None, help="ticks before a rollout fails")
    p.add_argument("--videos", type=int_in(0), default=3, help="mp4s of the first N rollouts")
    p.add_argument("--out", default=None, help="output dir (default CHECKPOINT/eval/...)")
    args = p.parse_args(argv)
    try:
        s = evaluate_checkpoint(
            args.checkpoint,
            episodes=args.episodes,
            seed=args.seed,
            execution=args.execution,
            distribution=args.locations,
            max_steps=args.max_steps,
            videos=args.videos,
            out=args.out,
            policy_kind=args.policy,
        )
    except FileNotFoundError as e:  # a missing or damaged checkpoint (CheckpointDamaged)
        p.error(f"--checkpoint: {e}")
    lo, hi = s["ci95"]
    print(
        f"success {s['successes']}/{s['episodes']} = {100 * s['success_rate']:.1f}% "
        f"(95% CI {100 * lo:.1f}-{100 * hi:.1f}%), {s['distribution']}, {s['execution']}, "
        + (
            "the lookup table over the checkpoint's training frames"
            if args.policy == "alt"
            else f"weights of step {s['step']}"
        )
    )
    if s["mean_time_to_success_s"] is not None:
        print(f"mean time to success {s['mean_time_to_success_s']:.2f} s")
    for loc, b in s.get("per_location", {}).items():
        print(f"  location {loc}: {b['successes']}/{b['episodes']}")
    print(f"results: {s['out_dir']}/results.json; videos: {s['out_dir']}/*.mp4")


if __name__ == "__main__":
    main()
