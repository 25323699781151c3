"""Cross-check: a dataset written by the real LeRobot converts to `act_episodes` faithfully.

    bash bench/lerobot_env.sh                              # once: the LeRobot venv
    .venv/bin/python bench/lerobot_dataset_roundtrip.py    # videos (AV1) and images variants
    .venv/bin/python bench/lerobot_dataset_roundtrip.py --size 480x640   # camera-sized frames

Two steps in two interpreters:
1. `--make DIR`, run by the LeRobot venv's python (this script starts it): LeRobot's own
   `LeRobotDataset.create(...)`, `add_frame` per step, `save_episode` per episode and `finalize()`
   write a dataset (format v3.0 in lerobot 0.4.x: several episodes per data/video file) with two
   cameras, so101-style joint names (`shoulder_pan.pos`, ...) and random state/action. Then
   `LeRobotDataset(root=DIR)[i]` reads every frame back through LeRobot's own decoder; what was
   written and what LeRobot reads are saved to DIR/reference.npz.
2. In the project's .venv: `act_jax_datasets.lerobot.build` converts DIR (no resizing), and
   `act_jax.data.load_episodes` reads the result. Compared: state/action (bit for bit against what
   was added), timestamps, fps, task, and every frame against LeRobot's own decoding (should be
   identical: the same frame of the same stream) and against the frame that was added (AV1 loss).
Writes bench/results/lerobot_dataset_roundtrip_<HxW>.json; exits 1 on a mismatch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DEFAULT_LEROBOT_PY = BENCH / ".venvs" / "lerobot" / "bin" / "python"
JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
CAMERAS = ("top", "lateral")
LENGTHS = (20, 31, 25)
H, W, FPS = 96, 128, 30


def frame(cam: int, ep: int, t: int):
    """A smooth frame with a block that moves with t (so a neighbour frame is told apart)."""
    import numpy as np

    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([x * 2, y * 2, np.full_like(x, 40 + 60 * cam + 30 * ep)], -1)
    img[20:44, 3 * t % (W - 16) : 3 * t % (W - 16) + 16] = 250
    return img.astype(np.uint8)


# ---------------------------------------------------------------- step 1 (LeRobot venv)
def _decode_video_frames(video_path, timestamps, tolerance_s, backend=None):
    """LeRobot's `decode_video_frames_torchvision` (nearest frame, `tolerance_s`), on PyAV.

    The venv's torchvision 0.29 has no `io.VideoReader` and torchcodec needs system FFmpeg
    libraries, so LeRobot's own decoder cannot run here: this stands in for its last step only
    (LeRobotDataset still picks the file and shifts the timestamps by `from_timestamp`).
    """
    import av
    import numpy as np
    import torch

    with av.open(str(video_path)) as c:
        s = c.streams.video[0]
        frames = [(float(f.pts * s.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(s)]
    ts = np.array([t for t, _ in frames])
    out = []
    for q in timestamps:
        k = int(np.argmin(np.abs(ts - q)))
        assert abs(ts[k] - q) < tolerance_s, (video_path, q, ts[k])
        out.append(torch.from_numpy(frames[k][1]).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


def make(root: Path, use_videos: bool, seed: int) -> None:
    import numpy as np
    from lerobot.datasets.lerobot_dataset import CODEBASE_VERSION, LeRobotDataset

    names = [f"{j}.pos" for j in JOINTS]
    kind = "video" if use_videos else "image"
    features = {
        "observation.state": {"dtype": "float32", "shape": (6,), "names": names},
        "action": {"dtype": "float32", "shape": (6,), "names": names},
        **{
            f"observation.images.{c}": {
                "dtype": kind,
                "shape": (H, W, 3),
                "names": ["height", "width", "channels"],
            }
            for c in CAMERAS
        },
    }
    ds = LeRobotDataset.create(
        "local/roundtrip",
        fps=FPS,
        features=features,
        root=root,
        robot_type="so101_follower",
        use_videos=use_videos,
    )
    rng = np.random.default_rng(seed)
    written = {}
    for e, n in enumerate(LENGTHS):
        state = (rng.normal(size=(n, 6)) * 30).astype(np.float32)
        action = (rng.normal(size=(n, 6)) * 30).astype(np.float32)
        for t in range(n):
            ds.add_frame(
                {
                    "observation.state": state[t],
                    "action": action[t],
                    "task": "pick",
                    **{f"observation.images.{c}": frame(i, e, t) for i, c in enumerate(CAMERAS)},
                }
            )
        ds.save_episode()
        written[f"ep{e}/state"], written[f"ep{e}/action"] = state, action
    ds.finalize()

    import lerobot.datasets.lerobot_dataset as lerobot_dataset

    lerobot_dataset.decode_video_frames = _decode_video_frames
    back = LeRobotDataset("local/roundtrip", root=root)
    for e, n in enumerate(LENGTHS):
        start = int(sum(LENGTHS[:e]))
        items = [back[start + t] for t in range(n)]
        written[f"lerobot/ep{e}/timestamp"] = np.array([float(it["timestamp"]) for it in items])
        for c in CAMERAS:  # LeRobot hands out float CHW in [0, 1]
            written[f"lerobot/ep{e}/{c}"] = np.stack(
                [
                    (it[f"observation.images.{c}"].permute(1, 2, 0).numpy() * 255).round()
                    for it in items
                ]
            ).astype(np.uint8)
    written["codebase_version"] = np.array(CODEBASE_VERSION)
    np.savez(root / "reference.npz", **written)


# ---------------------------------------------------------------- step 2 (our venv)
def check(root: Path, tfds_dir: Path) -> dict:
    import numpy as np

    from act_jax.data import load_episodes
    from act_jax_datasets.episodes import load
    from act_jax_datasets.lerobot import build

    ref = np.load(root / "reference.npz")
    t0 = time.perf_counter()
    conv = build(root, tfds_dir, "roundtrip")
    seconds = time.perf_counter() - t0
    print(conv)
    eps = load_episodes(conv.dataset_dir, CAMERAS, (H, W), 6, 6)
    source = load(conv.dataset_dir)
    result = {
        "codebase_version": str(ref["codebase_version"]),
        "size": [H, W],
        "episodes": len(eps),
        "frames": sum(len(e) for e in eps),
        "convert_s": round(seconds, 2),
        "ok": True,
    }
    problems = []
    vs_lerobot, vs_written = [], []
    for e, ep in enumerate(eps):
        meta = source[e]["episode_metadata"]
        if (meta["fps"], meta["task"]) != (FPS, b"pick"):
            problems.append(f"episode {e}: fps/task {meta['fps']}/{meta['task']}")
        for f in ("state", "action"):
            if not np.array_equal(getattr(ep, f), ref[f"ep{e}/{f}"]):
                problems.append(f"episode {e}: {f} differs")
        if not np.allclose(source[e]["timestamp"], ref[f"lerobot/ep{e}/timestamp"], atol=1e-6):
            problems.append(f"episode {e}: timestamps differ")
        for i, c in enumerate(CAMERAS):
            got = ep.images[c].astype(np.int16)
            vs_lerobot.append(np.abs(got - ref[f"lerobot/ep{e}/{c}"]).max())
            added = np.stack([frame(i, e, t) for t in range(len(ep))]).astype(np.int16)
            err = np.abs(got - added).mean(axis=(1, 2, 3))
            vs_written.append(err.max())
            # The frame at each timestamp, not a neighbour.
            if len(ep) > 1 and not (err[1:] < np.abs(got[1:] - added[:-1]).mean((1, 2, 3))).all():
                problems.append(f"episode {e} camera {c}: a frame is closer to its neighbour")
    result["max_abs_diff_vs_lerobot_decoding"] = int(max(vs_lerobot))
    result["max_mean_abs_diff_vs_added_frames"] = round(float(max(vs_written)), 3)
    if max(vs_lerobot) > 0:
        problems.append(f"frames differ from LeRobot's own decoding by up to {max(vs_lerobot)}")
    if max(vs_written) > 8:
        problems.append(f"frames differ from those added by {max(vs_written):.2f} on average")
    result["problems"] = problems
    result["ok"] = not problems
    return result


def main(argv=None) -> int:
    global H, W  # --size sets the frame size for both steps
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--make", type=Path, help=argparse.SUPPRESS)  # step 1, in the LeRobot venv
    p.add_argument("--images", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--lerobot-python", type=Path, default=DEFAULT_LEROBOT_PY)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default=f"{H}x{W}", help="HxW of the frames (default %(default)s)")
    p.add_argument(
        "--out", type=Path, help="default: bench/results/lerobot_dataset_roundtrip_<HxW>.json"
    )
    args = p.parse_args(argv)
    H, W = (int(v) for v in args.size.split("x"))
    if args.make:
        make(args.make, use_videos=not args.images, seed=args.seed)
        return 0
    if not args.lerobot_python.exists():
        sys.exit(f"{args.lerobot_python} missing: run `bash bench/lerobot_env.sh` first")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("videos", "images"):
            root = Path(tmp) / variant
            cmd = [
                str(args.lerobot_python),
                __file__,
                "--make",
                str(root),
                "--seed",
                str(args.seed),
                "--size",
                args.size,
            ]
            cmd += ["--images"] if variant == "images" else []
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"LeRobot step failed:\n{proc.stderr[-4000:]}")
            make_s = time.perf_counter() - t0
            results[variant] = {
                **check(root, Path(tmp) / "tfds"),
                "lerobot_make_s": round(make_s, 1),
            }
            shutil.rmtree(Path(tmp) / "tfds")
            print(f"{variant}: {json.dumps(results[variant])}")
    args.out = args.out or BENCH / "results" / f"lerobot_dataset_roundtrip_{args.size}.json"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
