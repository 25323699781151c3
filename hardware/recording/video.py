"""MP4 videos of episodes and rollouts: every camera side by side, one frame per step.

    write_video("ep0.mp4", {"top": top_frames, "lateral": lateral_frames}, fps=30)
    python -m hardware.video data/episodes/sim_demos/episode_000000.npz --out ep0.mp4

Frames are (T, H, W, 3) uint8 RGB per camera, all cameras with the same T; cameras of different
heights are scaled to the first one's height. Encoded with OpenCV's MPEG-4 Part 2 ("mp4v")
codec, which every opencv-python wheel ships (no ffmpeg needed).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from hardware.recording.episodes import read_episode


def side_by_side(
    frames: Mapping[str, np.ndarray], scale: int = 1, labels: bool = True
) -> np.ndarray:
    """Tiles cameras horizontally. {camera: (T, H, W, 3)} -> (T, H', W', 3) uint8 RGB."""
    if not frames:
        raise ValueError("no camera frames to tile")
    lengths = {cam: len(f) for cam, f in frames.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"cameras have different numbers of frames: {lengths}")
    tiles = []
    height = None
    for cam, f in frames.items():
        f = np.asarray(f)
        if f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3:
            raise ValueError(
                f"camera {cam!r}: expected (T, H, W, 3) uint8 frames, got {f.dtype} {f.shape}"
            )
        if scale != 1:
            f = f.repeat(scale, axis=1).repeat(scale, axis=2)
        if height is None:
            height = f.shape[1]
        elif f.shape[1] != height:
            w = round(f.shape[2] * height / f.shape[1])
            f = np.stack([cv2.resize(x, (w, height), interpolation=cv2.INTER_AREA) for x in f])
        if labels:
            f = f.copy()
            size = max(0.35, height / 480)
            for x in f:
                cv2.putText(
                    x,
                    cam,
                    (4, int(16 * size) + 4),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    size * 0.6,
                    (255, 255, 255),
                    1,
                    cv2.LINE_AA,
                )
        tiles.append(f)
    return np.concatenate(tiles, axis=2)


def write_video(
    path: str | os.PathLike,
    frames: Mapping[str, np.ndarray],
    fps: float = 30,
    *,
    scale: int = 1,
    labels: bool = True,
) -> Path:
    """Writes an mp4 with every camera side by side. Returns the path.

    Args:
      frames: camera -> (T, H, W, 3) uint8 RGB.
      fps: playback rate (the recording rate, to play in real time).
      scale: integer upscaling (nearest), for low-resolution policy images.
      labels: write each camera's name in its corner.
    """
    video = side_by_side(frames, scale, labels)
    t, h, w, _ = video.shape
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(os.fspath(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot open {path} for writing an mp4v video of {w}x{h}")
    try:
        for frame in video:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))  # OpenCV wants BGR
    finally:
        writer.release()
    return path


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("episode", help="an episode file (episode_NNNNNN.npz)")
    p.add_argument("--out", default=None, help="mp4 path (default: the episode's name .mp4)")
    p.add_argument("--cameras", default=None, help="comma-separated subset, in tile order")
    p.add_argument("--scale", type=int, default=1, help="integer upscaling (default 1)")
    args = p.parse_args(argv)
    ep = read_episode(args.episode)
    cams = args.cameras.split(",") if args.cameras else list(ep.meta.cameras)
    missing = [c for c in cams if c not in ep.meta.cameras]
    if missing:
        p.error(f"{args.episode} has no camera(s) {missing}; it has {list(ep.meta.cameras)}")
    out = args.out or str(Path(args.episode).with_suffix(".mp4"))
    write_video(out, {c: ep.frames(c) for c in cams}, fps=ep.meta.fps, scale=args.scale)
    print(f"wrote {out}: {len(ep)} frames, success={ep.meta.success}")


if __name__ == "__main__":
    main()
