"""Trains variants of the CPU default config side by side and measures their sim success rate.

This is how `configs/sim_default.py` was chosen: each variant is `configs/sim_default.py` plus
overrides, trained for `--steps` steps while `act_jax.evaluate.make_train_eval_fn` runs sim
rollouts every `--eval-every` steps. Variants run as parallel processes (on a GPU machine they
share the GPU; here, the CPU cores), after the demos are recorded (in parallel shards).

    python bench/sweep_sim.py --out runs/sweep --episodes 48 --steps 6000 --eval-every 2000 \
        --variant base: --variant small:model.dim_model=128,model.dim_feedforward=512

To run without TensorFlow Datasets installed (the GPU machine), the variants read the recorded
episode files directly instead of a built TFDS dataset: same frames, same sampler, same trainer.
Results: `<out>/sweep.json` and a table on stdout (success rate at each evaluation, wall time).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_overrides(text: str) -> dict:
    """ "model.dim_model=128,train.lr=3e-4" -> {"model.dim_model": 128, "train.lr": 0.0003}."""
    out = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def load_episode_files(dirs, cameras, image_size, state_dim, action_dim):
    """`act_jax.data.load_episodes` for raw episode files (no TFDS needed)."""
    import numpy as np

    from act_jax.data import EpisodeData
    from hardware.recording.episodes import list_episodes, read_episode

    episodes = []
    for d in dirs:
        for path in list_episodes(d):
            ep = read_episode(path)
            images = {cam: ep.frames(cam) for cam in cameras}
            for cam, f in images.items():
                if f.shape[1:3] != tuple(image_size):
                    raise ValueError(f"{path}: camera {cam} frames are {f.shape[1:3]}")
            episodes.append(
                EpisodeData(
                    len(episodes),
                    images,
                    ep.state.astype(np.float32),
                    ep.action.astype(np.float32),
                    ep.meta.success,
                )
            )
    if not episodes:
        raise FileNotFoundError(f"no episodes in {dirs}")
    return episodes


def run_one(args) -> None:
    """Child process: trains one variant with rollout evaluation."""
    sys.path.insert(0, str(ROOT))
    from act_jax import data, prepare_data, train
    from act_jax.evaluate import make_train_eval_fn
    from configs import sim_default

    config = sim_default.get_config()
    config.train.num_steps = args.steps
    config.train.checkpoint_every = args.steps
    config.train.val_loss_every = args.eval_every
    config.eval.rollout_every = args.eval_every
    config.eval.episodes = args.eval_episodes
    config.update_from_flattened_dict(parse_overrides(args.overrides))
    dirs = sorted(str(p) for p in Path(args.episodes_root).glob("shard_*"))
    prepare_data.ensure_dataset = lambda data_config, image_size: Path(args.episodes_root)
    data.load_episodes = lambda _dir, *a, **_decode: load_episode_files(dirs, *a)
    t0 = time.time()
    train.train_and_evaluate(config, args.workdir, make_train_eval_fn(config, args.workdir))
    Path(args.workdir, "wall_s.txt").write_text(f"{time.time() - t0:.1f}\n")


def record(out: Path, episodes: int, shards: int, image_size: str) -> None:
    procs = []
    per = -(-episodes // shards)
    for k in range(shards):
        n = min(per, episodes - k * per)
        if n <= 0:
            break
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hardware.record",
                    "--robot",
                    "sim",
                    "--teleop",
                    "expert",
                    "--episodes",
                    str(n),
                    "--out",
                    str(out / f"shard_{k}"),
                    "--seed",
                    str(100 + k),
                    "--image-size",
                    image_size,
                    "--no-progress",
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
        )
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError("recording failed")


def summarize(out: Path, variants: dict[str, str]) -> dict:
    rows = {}
    for name, overrides in variants.items():
        workdir = out / name
        evals, val = {}, {}
        metrics = workdir / "metrics.jsonl"
        for line in metrics.read_text().splitlines() if metrics.exists() else []:
            m = json.loads(line)
            if "eval/success_rate" in m:
                evals[m["step"]] = m["eval/success_rate"]
            if "val/l1" in m:
                val[m["step"]] = m["val/l1"]
        wall = workdir / "wall_s.txt"
        rows[name] = {
            "overrides": overrides,
            "success_rate": evals,
            "val_l1": val,
            "wall_s": float(wall.read_text()) if wall.exists() else None,
        }
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", help="output directory (required)")
    p.add_argument("--episodes", type=int, default=48, help="demos to record (default 48)")
    p.add_argument("--shards", type=int, default=4, help="parallel recorders (default 4)")
    p.add_argument("--image-size", default="96x128")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument("--eval-episodes", type=int, default=30)
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:field=value,... (repeatable; 'base:' is the config as is)",
    )
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--overrides", default="", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--episodes-root", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        return run_one(args)
    if not args.out:
        p.error("--out is required")

    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    variants = dict(v.split(":", 1) for v in (args.variant or ["base:"]))
    t0 = time.time()
    if not any(out.glob("episodes/shard_*/episode_*.npz")):
        record(out / "episodes", args.episodes, args.shards, args.image_size)
    print(f"recorded in {time.time() - t0:.0f} s", flush=True)
    procs = {}
    for name, overrides in variants.items():
        log = open(out / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        procs[name] = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--one",
                name,
                "--overrides",
                overrides,
                "--workdir",
                str(out / name),
                "--episodes-root",
                str(out / "episodes"),
                "--steps",
                str(args.steps),
                "--eval-every",
                str(args.eval_every),
                "--eval-episodes",
                str(args.eval_episodes),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, XLA_PYTHON_CLIENT_MEM_FRACTION=f"{0.8 / len(variants):.2f}"),
        )
    while any(p.poll() is None for p in procs.values()):
        time.sleep(10)
        rows = summarize(out, variants)
        (out / "sweep.json").write_text(json.dumps(rows, indent=1))
    rows = summarize(out, variants)
    (out / "sweep.json").write_text(json.dumps(rows, indent=1))
    for name, r in rows.items():
        rc = procs[name].returncode
        print(
            f"{name:>12} rc={rc} success {r['success_rate']} val_l1 {r['val_l1']} "
            f"wall {r['wall_s']} s  [{r['overrides']}]"
        )


if __name__ == "__main__":
    main()
