"""Frames of a LeRobot video at given timestamps, decoded with PyAV.

LeRobot encodes camera streams as AV1 (libsvtav1) by default. OpenCV's bundled FFmpeg has no AV1
software decoder (it fails with "Your platform doesn't support hardware accelerated AV1
decoding"), so videos are decoded with PyAV, whose wheels bundle FFmpeg with libdav1d (and
h264, hevc, mpeg4 decoders for datasets recorded with other `vcodec`s).

A LeRobot sample's frame is the video frame nearest the sample's `timestamp`, accepted only when
it is within `tolerance_s` (LeRobot's `decode_video_frames` does the same, default 1e-4 s). A v3.0
video file holds many episodes back to back: an episode's timestamps are offset by its
`from_timestamp` in that file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np


def _decoded(container, stream, start_s: float) -> Iterator[tuple[float, object]]:
    """(time in s, av.VideoFrame) from the keyframe at or before `start_s` onwards."""
    container.seek(max(0, int(start_s / stream.time_base)), stream=stream, backward=True)
    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        yield float(frame.pts * stream.time_base), frame


def frames_at(
    path: str | Path,
    timestamps: Sequence[float],
    tolerance_s: float,
    convert: Callable[[np.ndarray], object],
    *,
    fps: float | None = None,
    where: str = "",
) -> list:
    """Decodes the frames nearest each timestamp of an increasing sequence.

    Frames are decoded in one forward pass from the keyframe before the first timestamp; only the
    frames picked are converted to RGB, so memory stays at two frames.

    Args:
      path: the .mp4 file.
      timestamps: (T,) increasing query times in seconds from the start of the file.
      tolerance_s: the largest accepted |frame time - query time|.
      convert: applied to each picked (H, W, 3) uint8 RGB frame (e.g. resize + PNG-encode).
      fps: if given, the stream's average frame rate must match it.
      where: what the caller reads (dataset field), for error messages.

    Returns:
      T converted frames.

    Raises:
      FileNotFoundError: naming the file, if it is missing.
      ValueError: naming the file and the field, for a frame rate that differs from `fps`, a
        stream PyAV cannot decode, or a timestamp with no frame within `tolerance_s`.
    """
    import av  # PyAV: a heavy import, and only needed when a dataset has videos.

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: video file missing (needed for {where})")
    queries = np.asarray(timestamps, np.float64)
    if len(queries) and np.any(np.diff(queries) < 0):
        raise ValueError(f"{path}: timestamps for {where} are not increasing")
    out = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream (needed for {where})")
            stream = container.streams.video[0]
            rate = stream.average_rate
            if fps is not None and rate is not None and abs(float(rate) - fps) > 1e-3:
                raise ValueError(
                    f"{path}: video runs at {float(rate):g} fps but meta/info.json says "
                    f"fps={fps:g} (field {where})"
                )
            start = float(queries[0]) if len(queries) else 0.0
            frames = _decoded(container, stream, start)
            cur = next(frames, None)
            if start > 0 and (cur is None or cur[0] > start + tolerance_s):
                # The seek overshot (a file with a poor index): decode from the start instead.
                frames = _decoded(container, stream, 0.0)
                cur = next(frames, None)
            prev = None
            for q in queries:
                while cur is not None and cur[0] < q:
                    prev, cur = cur, next(frames, None)
                near = [c for c in (prev, cur) if c is not None]
                if not near:
                    raise ValueError(f"{path}: no frames decoded (needed for {where})")
                t, frame = min(near, key=lambda c: abs(c[0] - q))
                if abs(t - q) > tolerance_s:
                    raise ValueError(
                        f"{path}: no frame within tolerance_s={tolerance_s:g} of t={q:.6f} s for "
                        f"{where} (nearest at {t:.6f} s); the video and the parquet timestamps "
                        "disagree"
                    )
                out.append(convert(frame.to_ndarray(format="rgb24")))
    except av.error.FFmpegError as e:
        raise ValueError(f"{path}: PyAV/FFmpeg cannot decode it ({e}) (needed for {where})") from e
    return out
