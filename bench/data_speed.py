"""Training-data throughput and memory: frames decoded into memory vs held as PNG (lazy).

    nice -n 19 .venv/bin/python bench/data_speed.py --threads 1,2,4  # -> bench/results/

For each shape it records a small dataset with the scripted sim expert (`--frames sim`, rendered
frames that compress like real ones; `--frames synthetic` uses tests/helpers_data.py's frames, a
quarter of each random noise, the worst case for PNG) and builds the TFDS dataset, then, each in
a fresh process so resident memory is its own:

- `memory`: `load_episodes(decode="memory")` then `ChunkSampler.batch` (a gather of arrays);
- `lazy` for each `--threads`: PNG bytes held, each batch's frames decoded on that many threads.

Shapes: the CPU default (2x96x128, batch 32, chunk 30) and the seed config (2x480x640, batch 8,
chunk 100). Reported per run: load seconds, image bytes held, resident memory after imports and
after loading, peak RSS, batches/s (after 3 warm-up batches, no augmentation). The size of the seed
config's whole dataset (its `data.record_episodes` demos at the recorded episodes' mean length:
100 of ~156 steps with sim frames) is extrapolated from the recorded one. Also timed: reading one
episode record from array_record, which is what fetching a single frame from disk would cost (a
record is a whole episode), the reason lazy mode keeps the PNG bytes in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {  # name: (image size, batch, chunk, episodes, steps for synthetic frames)
    "cpu_default": ((96, 128), 32, 30, 8, 150),
    "seed": ((480, 640), 8, 100, 4, 100),
}


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory now (VmRSS) or at its peak (VmHWM), MiB. Read from
    /proc: `ru_maxrss` would include the parent's memory, inherited across fork + exec."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def make_dataset(root: Path, shape: str, frames: str) -> Path:
    """Records (or writes) and builds the dataset for one shape under `root`."""
    from act_jax_datasets.episodes import build

    size, _, _, episodes, steps = SHAPES[shape]
    out = root / f"{shape}_{frames}"
    if frames == "sim":
        os.environ.setdefault("MUJOCO_GL", "egl")
        from hardware.recording.recorder import record_sim_dataset

        record_sim_dataset(out / "episodes", episodes, size, seed=0, progress=False)
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        from helpers_data import write_episodes

        write_episodes(out / "episodes", num_episodes=episodes, steps=steps, image_size=size)
    return build(out / "episodes", out / "tfds", shape)


def record_read_ms(dataset_dir: Path) -> float:
    """Mean time to read and parse one episode record (PNG bytes kept, nothing decoded)."""
    from act_jax.data import png_source

    source = png_source(dataset_dir)
    t = time.perf_counter()
    for i in range(len(source)):
        source[i]
    return 1e3 * (time.perf_counter() - t) / len(source)


def child(spec: dict) -> dict:
    """One (shape, mode, threads) run, in its own process."""
    import numpy as np

    from act_jax import data, normalization

    size, batch, chunk = spec["image_size"], spec["batch"], spec["chunk"]
    rss_imports = rss_mb()
    t = time.perf_counter()
    episodes = data.load_episodes(
        spec["dataset_dir"],
        ("top", "lateral"),
        size,
        6,
        6,
        decode=spec["mode"],
        decode_threads=spec["threads"],
    )
    load_s = time.perf_counter() - t
    stats = normalization.compute([e.state for e in episodes], [e.action for e in episodes])
    sampler = data.ChunkSampler(
        episodes, stats, chunk, batch, seed=0, decode_threads=spec["threads"]
    )
    for step in range(3):
        sampler.batch(step)
    t = time.perf_counter()
    for step in range(3, 3 + spec["batches"]):
        sampler.batch(step)
    seconds = time.perf_counter() - t
    frames = sum(len(e) for e in episodes)
    return spec | {
        "frames": frames,
        "load_s": load_s,
        "held_image_mb": data.held_image_bytes(episodes) / 2**20,
        "decoded_mb_per_frame_pair": 2 * int(np.prod(size)) * 3 / 2**20,
        "rss_after_imports_mb": rss_imports,
        "rss_after_load_mb": rss_mb(),
        "peak_rss_mb": rss_mb("VmHWM"),
        "batches_per_s": spec["batches"] / seconds,
        "frames_decoded_per_s": (
            spec["batches"] * batch * 2 / seconds if spec["mode"] == "lazy" else None
        ),
    }


def seed_dataset(seed_runs: list[dict]) -> dict:
    """The images the seed config's whole dataset would hold, per mode: its
    `data.record_episodes` episodes at the recorded episodes' mean length (the sim expert's
    demos, or the synthetic steps), from the bytes per frame measured here."""
    sys.path.insert(0, str(ROOT))
    from configs import seed

    episodes = int(seed.get_config().data.record_episodes)
    steps = seed_runs[0]["frames"] / SHAPES["seed"][3]
    per_frame = {r["mode"]: r["held_image_mb"] / r["frames"] for r in seed_runs}
    return {
        "episodes": episodes,
        "steps_per_episode": steps,
        "held_gib": {m: v * episodes * steps / 1024 for m, v in per_frame.items()},
    }


def run_child(spec: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--threads", default="1,2,4", help="comma-separated decode thread counts for the lazy runs"
    )
    p.add_argument("--batches", type=int, default=40, help="timed batches per run")
    p.add_argument("--shapes", default=",".join(SHAPES), help=f"of {sorted(SHAPES)}")
    p.add_argument("--frames", choices=["sim", "synthetic"], default="sim")
    p.add_argument("--workdir", default="", help="keep the datasets here (default: a temp dir)")
    p.add_argument("--out", default="bench/results/data_speed.json")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    threads = [int(n) for n in args.threads.split(",")]
    results = {
        "load_average": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "frames": args.frames,
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workdir or tmp)
        for shape in args.shapes.split(","):
            size, batch, chunk, _, _ = SHAPES[shape]
            dataset_dir = make_dataset(root, shape, args.frames)
            read_ms = record_read_ms(dataset_dir)
            results.setdefault("record_read_ms", {})[shape] = read_ms
            print(f"{shape}: one episode record read + parsed in {read_ms:.1f} ms", flush=True)
            base = dict(
                shape=shape,
                dataset_dir=str(dataset_dir),
                image_size=list(size),
                batch=batch,
                chunk=chunk,
                batches=args.batches,
            )
            for mode, n in [("memory", max(threads))] + [("lazy", n) for n in threads]:
                r = run_child(base | dict(mode=mode, threads=n))
                results["runs"].append(r)
                print(
                    f"{shape:12s} {mode:6s} threads={n}: {r['batches_per_s']:7.1f} batches/s, "
                    f"load {r['load_s']:.2f} s, images held {r['held_image_mb']:.1f} MiB "
                    f"({r['frames']} frames), RSS {r['rss_after_imports_mb']:.0f} -> "
                    f"{r['rss_after_load_mb']:.0f} MiB, peak {r['peak_rss_mb']:.0f} MiB",
                    flush=True,
                )
    seed_runs = [r for r in results["runs"] if r["shape"] == "seed"]
    if seed_runs:
        results["seed_dataset"] = seed_dataset(seed_runs)
        d = results["seed_dataset"]
        print(
            f"seed config's {d['episodes']} episodes of ~{d['steps_per_episode']:.0f} steps, "
            "images held: " + ", ".join(f"{m} {v:.1f} GiB" for m, v in d["held_gib"].items())
        )
    results["load_average_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
