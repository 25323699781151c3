"""The recorded-episode format: one self-contained `.npz` file per episode, written atomically.

Real teleoperation and simulated demos are recorded through the same writer, so the TFDS builder
in `datasets/episodes` reads one format. An episode file holds (T = number of steps):

    state                    (T, 6) float32   joint positions, degrees; gripper 0..100
    action                   (T, 6) float32   commanded joint targets, same units
    timestamp                (T,)   float64   seconds since the episode started
    images/<camera>/png      (N,)   uint8     the T PNG-encoded frames, concatenated
    images/<camera>/offsets  (T+1,) int64     frame t is png[offsets[t]:offsets[t+1]]
    meta                     (M,)   uint8     UTF-8 JSON: see `EpisodeMeta`

Frames are PNG (lossless) so that a dataset reads back exactly what was recorded. A file is
written under a temporary name, flushed to disk and renamed into place: a crash mid-write leaves
every earlier episode intact and no half-written file under an episode name.

A file damaged afterwards (truncated by a copy, a bit flipped on disk: the archive's CRC-32s
catch it) raises `EpisodeDamaged`, naming the path, the episode index and what is wrong. Nothing
here deletes one: `set_aside` moves it into a `damaged/` folder next to it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from hardware.conventions import CAMERA_NAMES, FPS, JOINT_NAMES

FORMAT_VERSION = 1
_NAME = re.compile(r"^episode_(\d{6})\.npz$")
DAMAGED_DIR = "damaged"  # where `set_aside` moves damaged files, inside the episode directory


class EpisodeDamaged(ValueError):
    """An episode file that cannot be read back: empty, truncated or corrupt.

    Attributes:
      path: the file.
      index: the episode index its name gives (None if the name is not an episode's).
      problem: what is wrong, in words.
    """

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path, self.problem = Path(path), problem
        self.index = episode_index(self.path)
        which = "episode file" if self.index is None else f"episode {self.index}"
        super().__init__(f"{self.path}: {which} is damaged: {problem}")


def _problem(path: Path, e: Exception) -> str:
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes)"
    if isinstance(e, zipfile.BadZipFile) and "CRC" in str(e):
        return f"corrupt data, a checksum does not match ({e})"
    if isinstance(e, zipfile.BadZipFile) and "not a zip file" in str(e):
        return f"not a complete .npz archive, truncated? ({size} bytes)"
    return f"{type(e).__name__}: {e}"


@dataclasses.dataclass
class EpisodeMeta:
    """Per-episode metadata, stored as JSON inside the episode file.

    Attributes:
      episode_index: position of the episode in its recording session.
      fps: control/recording rate in Hz.
      robot_type: e.g. "sim_so101", "koch", "so101".
      success: whether the episode achieved the task (the sim knows; a person says so on hardware).
      cube_start_pose: (7,) cube position x, y, z (m) and quaternion w, x, y, z at reset;
        NaN if unknown.
      location_id: index of the named start location, -1 for a sample from a continuous region.
      seed: the reset seed (sim), -1 if none.
      task: a short natural-language description.
      cameras: camera names, in the order the policy sees them.
      joint_names: names of the 6 state/action entries.
      extra: anything else a recorder wants to keep (must be JSON-serialisable).
    """

    episode_index: int
    fps: float = FPS
    robot_type: str = "unknown"
    success: bool = False
    cube_start_pose: tuple[float, ...] = (float("nan"),) * 7
    location_id: int = -1
    seed: int = -1
    task: str = "pick up the cube and place it in the box"
    cameras: tuple[str, ...] = CAMERA_NAMES
    joint_names: tuple[str, ...] = JOINT_NAMES
    extra: dict = dataclasses.field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["cube_start_pose"] = [None if np.isnan(v) else float(v) for v in self.cube_start_pose]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EpisodeMeta:
        d = json.loads(text)
        d["cube_start_pose"] = tuple(float("nan") if v is None else v for v in d["cube_start_pose"])
        d["cameras"] = tuple(d["cameras"])
        d["joint_names"] = tuple(d["joint_names"])
        return cls(**d)


@dataclasses.dataclass
class Episode:
    """One recorded episode, with frames still PNG-encoded (decode with `frames`)."""

    state: np.ndarray  # (T, 6) float32
    action: np.ndarray  # (T, 6) float32
    timestamp: np.ndarray  # (T,) float64
    png: dict[str, list[bytes]]  # camera -> T PNG byte strings
    meta: EpisodeMeta

    def __len__(self) -> int:
        return len(self.state)

    def frames(self, camera: str) -> np.ndarray:
        """Decodes one camera's frames. Returns (T, H, W, 3) uint8 RGB."""
        return np.stack([decode_png(b) for b in self.png[camera]])


def encode_png(rgb: np.ndarray) -> bytes:
    """Encodes an (H, W, 3) uint8 RGB image as PNG bytes (fast compression level)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    ok, buf = cv2.imencode(".png", rgb[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("cv2 could not PNG-encode a frame")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """Decodes PNG bytes to an (H, W, 3) uint8 RGB image."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("corrupt PNG frame")
    return bgr[..., ::-1].copy()


def episode_path(directory: str | os.PathLike, index: int) -> Path:
    return Path(directory) / f"episode_{index:06d}.npz"


def write_episode(
    directory: str | os.PathLike,
    *,
    state: np.ndarray,
    action: np.ndarray,
    timestamp: np.ndarray,
    png: Mapping[str, Sequence[bytes]],
    meta: EpisodeMeta,
) -> Path:
    """Writes one episode atomically and durably. Returns its path.

    Raises:
      ValueError: naming the field whose length or shape is inconsistent.
    """
    state = np.asarray(state, np.float32)
    action = np.asarray(action, np.float32)
    timestamp = np.asarray(timestamp, np.float64)
    t = len(state)
    if t == 0:
        raise ValueError("an episode needs at least one step")
    dim = len(meta.joint_names)
    for name, arr in (("state", state), ("action", action)):
        if arr.shape != (t, dim):
            raise ValueError(f"{name} has shape {arr.shape}, expected ({t}, {dim})")
    if timestamp.shape != (t,):
        raise ValueError(f"timestamp has shape {timestamp.shape}, expected ({t},)")
    if set(png) != set(meta.cameras):
        raise ValueError(f"frames for cameras {sorted(png)} but meta.cameras is {meta.cameras}")
    arrays = {"state": state, "action": action, "timestamp": timestamp}
    for cam, frames in png.items():
        if len(frames) != t:
            raise ValueError(f"camera {cam!r} has {len(frames)} frames for {t} steps")
        lengths = np.fromiter((len(f) for f in frames), np.int64, count=t)
        arrays[f"images/{cam}/offsets"] = np.concatenate([[0], np.cumsum(lengths)])
        arrays[f"images/{cam}/png"] = np.frombuffer(b"".join(frames), np.uint8)
    arrays["meta"] = np.frombuffer(meta.to_json().encode(), np.uint8)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = episode_path(directory, meta.episode_index)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with open(tmp, "wb") as f:
        f.write(buf.getbuffer())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return final


def read_episode(path: str | os.PathLike) -> Episode:
    """Reads one episode file (every byte: a damaged one fails its CRC-32 check here).

    Raises:
      EpisodeDamaged: naming the file, its index and what is wrong (a ValueError).
      FileNotFoundError: there is no such file.
    """
    path = Path(path)
    try:
        with np.load(path) as z:
            meta = EpisodeMeta.from_json(z["meta"].tobytes().decode())
            png = {}
            for cam in meta.cameras:
                blob = z[f"images/{cam}/png"].tobytes()
                off = z[f"images/{cam}/offsets"]
                png[cam] = [blob[off[i] : off[i + 1]] for i in range(len(off) - 1)]
            return Episode(z["state"], z["action"], z["timestamp"], png, meta)
    except FileNotFoundError:
        raise
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise EpisodeDamaged(path, _problem(path, e)) from e


def check_archive(path: str | os.PathLike) -> None:
    """The cheap check: the archive is complete (its directory at the end of the file reads and
    lists the episode's arrays). Catches an empty or truncated file, not a flipped bit.

    Raises:
      EpisodeDamaged: naming the file.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            missing = {"state.npy", "action.npy", "timestamp.npy", "meta.npy"} - set(z.namelist())
    except FileNotFoundError:
        raise
    except (OSError, zipfile.BadZipFile) as e:
        raise EpisodeDamaged(path, _problem(path, e)) from e
    if missing:
        raise EpisodeDamaged(path, f"the archive has no {', '.join(sorted(missing))}")


def set_aside(path: str | os.PathLike) -> Path:
    """Moves a (damaged) episode file into `damaged/` beside it, never over another file.
    Returns where it went."""
    path = Path(path)
    folder = path.parent / DAMAGED_DIR
    folder.mkdir(exist_ok=True)
    target, k = folder / path.name, 1
    while target.exists():
        k += 1
        target = folder / f"{path.stem}.{k}{path.suffix}"
    os.replace(path, target)
    return target


def list_episodes(directory: str | os.PathLike) -> list[Path]:
    """Episode files in a directory, in index order (temporary files are ignored)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _NAME.match(p.name))


def iter_episodes(directory: str | os.PathLike) -> Iterator[Episode]:
    for path in list_episodes(directory):
        yield read_episode(path)


def episode_index(path: str | os.PathLike) -> int | None:
    """The index in an episode file's name (`episode_000012.npz` -> 12), None for another name."""
    m = _NAME.match(Path(path).name)
    return int(m.group(1)) if m else None


def next_episode_index(directory: str | os.PathLike) -> int:
    """The index after the last complete episode (0 for an empty or missing directory)."""
    paths = list_episodes(directory)
    return int(_NAME.match(paths[-1].name).group(1)) + 1 if paths else 0
