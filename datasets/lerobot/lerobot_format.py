"""Reads a LeRobot dataset directory (format v2.0/v2.1 or v3.0) on local disk, episode by episode.

The two layouts (`codebase_version` in meta/info.json; paths are info.json's `data_path` and
`video_path` templates):

    v2.x  meta/info.json, meta/episodes.jsonl ({"episode_index", "tasks", "length"} per line),
          meta/tasks.jsonl, meta/episodes_stats.jsonl,
          data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet   (one episode each)
          videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4
          where episode_chunk = episode_index // chunks_size; a video starts at t = 0.
    v3.0  meta/info.json, meta/tasks.parquet, meta/episodes/chunk-XXX/file-XXX.parquet with,
          per episode: length, tasks, data/{chunk,file}_index, dataset_{from,to}_index and
          videos/<video_key>/{chunk_index, file_index, from_timestamp, to_timestamp},
          data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet     (many episodes each)
          videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4  (episodes back
          to back: an episode's frame at `timestamp` is at from_timestamp + timestamp)

Data parquet rows carry `observation.state`, `action` (fixed-size float lists), `timestamp`,
`frame_index`, `episode_index`, `index`, `task_index`. Image features of dtype "image" (datasets
made with `use_videos=False`) are stored in the parquet rows as {"bytes", "path"} structs.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from act_jax_datasets.lerobot.video import frames_at
from hardware.conventions import JOINT_NAMES

SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
STATE_KEY = "observation.state"
ACTION_KEY = "action"
IMAGE_PREFIX = "observation.images."
# LeRobot robots name joints "shoulder_pan.pos" (0.x), "main_shoulder_pan" (older Koch/SO-100
# datasets) or plain "shoulder_pan".
_JOINT_AFFIX = re.compile(r"^(main_|follower_|leader_)|(\.pos)$")


def canonical_joint_name(name: str) -> str:
    """'shoulder_pan.pos' / 'main_shoulder_pan' -> 'shoulder_pan'."""
    return _JOINT_AFFIX.sub("", str(name).strip().lower())


def _read_json(path: Path):
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; not a LeRobot dataset directory?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (a v2.x dataset lists its episodes there)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _vectors(table: pa.Table, column: str, dim: int, where: str) -> np.ndarray:
    """A list<float> column as a (rows, dim) float32 array."""
    if column not in table.column_names:
        raise ValueError(f"{where}: no column {column!r} (columns: {table.column_names})")
    col = table.column(column).combine_chunks()
    if not (
        pa.types.is_list(col.type)
        or pa.types.is_fixed_size_list(col.type)
        or pa.types.is_large_list(col.type)
    ):
        raise ValueError(f"{where}: column {column!r} is {col.type}, expected a list of floats")
    flat = np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float32)
    if flat.size != len(col) * dim:
        raise ValueError(
            f"{where}: column {column!r} rows are not all of length {dim} "
            "(meta/info.json features shape)"
        )
    return flat.reshape(len(col), dim)


@dataclasses.dataclass(frozen=True)
class Camera:
    """One camera of the output dataset and where its frames come from."""

    name: str  # our camera name, e.g. "top"
    key: str  # the LeRobot feature, e.g. "observation.images.laptop"
    kind: str  # "video" or "image"
    shape: tuple[int, int, int]  # (H, W, C) from meta/info.json


@dataclasses.dataclass
class EpisodeRef:
    """Where one episode's rows and frames are (the v3.0 fields are unused for v2.x)."""

    index: int
    length: int
    tasks: list[str]
    data_file: Path
    video_files: dict[str, Path]  # LeRobot video key -> file
    video_offsets: dict[str, float]  # LeRobot video key -> from_timestamp (v3.0), 0 for v2.x


@dataclasses.dataclass
class LerobotEpisode:
    """One episode read from the LeRobot dataset (T steps), joints in our order."""

    index: int
    task: str
    state: np.ndarray  # (T, D) float32
    action: np.ndarray  # (T, D) float32
    timestamp: np.ndarray  # (T,) float64
    frames: dict[str, list]  # our camera name -> T converted frames


class LerobotSource:
    """A LeRobot dataset on disk: metadata checked on open, episodes read on demand.

    Args:
      root: the dataset directory (holding meta/info.json).
      camera_map: our camera name -> LeRobot feature key ("observation.images.laptop", or just
        "laptop"). Default: every `observation.images.<name>` becomes camera `<name>`.
      tolerance_s: largest accepted gap between a parquet timestamp and its video frame, and
        between consecutive timestamps and 1/fps.
      keep_joint_order: accept state/action names that are not a permutation of our
        JOINT_NAMES, keeping the dataset's order (otherwise that is an error).

    Raises:
      FileNotFoundError / ValueError naming the file and field at fault.
    """

    def __init__(
        self,
        root: str | Path,
        camera_map: Mapping[str, str] | None = None,
        tolerance_s: float = 1e-4,
        keep_joint_order: bool = False,
    ):
        self.root = Path(root)
        self.tolerance_s = float(tolerance_s)
        self.info_path = self.root / "meta" / "info.json"
        info = self.info = _read_json(self.info_path)
        where = str(self.info_path)
        self.version = str(info.get("codebase_version", ""))
        if self.version not in SUPPORTED_VERSIONS:
            raise ValueError(
                f"{where}: codebase_version={self.version!r}; this converter reads "
                f"{', '.join(SUPPORTED_VERSIONS)} (convert older datasets with "
                "LeRobot's own conversion scripts first)"
            )
        for field in ("fps", "features", "data_path"):
            if field not in info:
                raise ValueError(f"{where}: field {field!r} missing")
        self.fps = float(info["fps"])
        self.robot_type = str(info.get("robot_type") or "unknown")
        features = info["features"]
        for key in (STATE_KEY, ACTION_KEY):
            if key not in features:
                raise ValueError(
                    f"{where}: features[{key!r}] missing (features: "
                    f"{sorted(features)}); ACT needs the arm state and the action"
                )
        self.state_dim = int(np.prod(features[STATE_KEY]["shape"]))
        self.action_dim = int(np.prod(features[ACTION_KEY]["shape"]))
        self.cameras = self._cameras(features, camera_map)
        if any(c.kind == "video" for c in self.cameras) and "video_path" not in info:
            raise ValueError(f"{where}: field 'video_path' missing, but features has videos")
        self.notes: list[str] = []
        self.joint_names, self.permutation = self._joint_order(features, keep_joint_order)
        self.episodes = self._episode_refs()
        self._table_cache: tuple[Path, pa.Table] | None = None

    # -- metadata --------------------------------------------------------------------------

    def _cameras(self, features: dict, camera_map: Mapping[str, str] | None) -> list[Camera]:
        images = {k: v for k, v in features.items() if v.get("dtype") in ("video", "image")}
        if camera_map is None:
            camera_map = {
                k.removeprefix(IMAGE_PREFIX): k for k in images if k.startswith(IMAGE_PREFIX)
            }
        cams = []
        for name, key in camera_map.items():
            key = key if key in features else IMAGE_PREFIX + key
            if key not in images:
                raise ValueError(
                    f"{self.info_path}: camera {name!r} maps to features[{key!r}], which is not an "
                    f"image or video feature (there are: {sorted(images)})"
                )
            shape = tuple(int(s) for s in images[key]["shape"])
            names = images[key].get("names") or []
            if list(names)[:1] == ["channels"]:  # (C, H, W) in some older datasets
                shape = shape[1:] + shape[:1]
            cams.append(Camera(name, key, images[key]["dtype"], shape))
        if not cams:
            raise ValueError(
                f"{self.info_path}: no camera features (observation.images.*); "
                f"features are {sorted(features)}"
            )
        return cams

    def _joint_order(self, features: dict, keep: bool) -> tuple[tuple[str, ...], np.ndarray]:
        """Our joint names for state/action and the column permutation into that order."""
        names = {k: features[k].get("names") for k in (STATE_KEY, ACTION_KEY)}
        if isinstance(names[STATE_KEY], dict):  # older datasets: {"motors": [...]}
            names = {k: next(iter(v.values())) for k, v in names.items()}
        canon = {k: [canonical_joint_name(n) for n in (v or [])] for k, v in names.items()}
        if canon[STATE_KEY] != canon[ACTION_KEY]:
            raise ValueError(
                f"{self.info_path}: features[{STATE_KEY!r}].names {names[STATE_KEY]} "
                f"and features[{ACTION_KEY!r}].names {names[ACTION_KEY]} differ"
            )
        got = canon[STATE_KEY]
        if sorted(got) == sorted(JOINT_NAMES):
            perm = np.array([got.index(j) for j in JOINT_NAMES])
            if got != list(JOINT_NAMES):
                self.notes.append(
                    f"joints reordered from the dataset's {names[STATE_KEY]} to {list(JOINT_NAMES)}"
                )
            return JOINT_NAMES, perm
        msg = (
            f"{self.info_path}: features[{STATE_KEY!r}].names are {names[STATE_KEY]}, not a "
            f"permutation of our joints {list(JOINT_NAMES)}"
        )
        if not keep:
            raise ValueError(
                msg + "; pass keep_joint_order=True (--keep-joint-order) to keep "
                "the dataset's order as is"
            )
        self.notes.append(msg + "; kept as is (--keep-joint-order)")
        dim = self.state_dim
        return tuple(got) if len(got) == dim else tuple(
            f"joint_{i}" for i in range(dim)
        ), np.arange(dim)

    def _episode_refs(self) -> list[EpisodeRef]:
        info = self.info
        videos = [c.key for c in self.cameras if c.kind == "video"]
        refs = []
        if self.version.startswith("v2"):
            chunks_size = int(info.get("chunks_size", 1000))
            for row in _read_jsonl(self.root / "meta" / "episodes.jsonl"):
                i = int(row["episode_index"])
                chunk = i // chunks_size
                refs.append(
                    EpisodeRef(
                        i,
                        int(row["length"]),
                        list(row.get("tasks") or []),
                        self.root / info["data_path"].format(episode_chunk=chunk, episode_index=i),
                        {
                            k: self.root
                            / info["video_path"].format(
                                episode_chunk=chunk, video_key=k, episode_index=i
                            )
                            for k in videos
                        },
                        dict.fromkeys(videos, 0.0),
                    )
                )
        else:
            files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
            if not files:
                raise FileNotFoundError(
                    f"{self.root / 'meta' / 'episodes'}: no "
                    "chunk-XXX/file-XXX.parquet (v3.0 episode metadata)"
                )
            for f in files:
                table = pq.read_table(f)
                cols = table.column_names
                need = ["episode_index", "length", "data/chunk_index", "data/file_index"]
                need += [
                    f"videos/{k}/{s}"
                    for k in videos
                    for s in ("chunk_index", "file_index", "from_timestamp")
                ]
                for c in need:
                    if c not in cols:
                        raise ValueError(f"{f}: column {c!r} missing (v3.0 episode metadata)")
                keep = [c for c in cols if not c.startswith("stats/")]
                for row in table.select(keep).to_pylist():
                    path = lambda tmpl, **kw: self.root / tmpl.format(**kw)
                    refs.append(
                        EpisodeRef(
                            int(row["episode_index"]),
                            int(row["length"]),
                            list(row.get("tasks") or []),
                            path(
                                info["data_path"],
                                chunk_index=row["data/chunk_index"],
                                file_index=row["data/file_index"],
                            ),
                            {
                                k: path(
                                    info["video_path"],
                                    video_key=k,
                                    chunk_index=row[f"videos/{k}/chunk_index"],
                                    file_index=row[f"videos/{k}/file_index"],
                                )
                                for k in videos
                            },
                            {k: float(row[f"videos/{k}/from_timestamp"]) for k in videos},
                        )
                    )
        if not refs:
            raise ValueError(f"{self.root}: the dataset lists no episodes")
        return sorted(refs, key=lambda r: r.index)

    # -- episodes --------------------------------------------------------------------------

    def _rows(self, ref: EpisodeRef) -> pa.Table:
        """The episode's parquet rows, in frame order."""
        if not ref.data_file.exists():
            raise FileNotFoundError(f"{ref.data_file}: data file of episode {ref.index} missing")
        if self._table_cache is None or self._table_cache[0] != ref.data_file:
            self._table_cache = (ref.data_file, pq.read_table(ref.data_file))
        table = self._table_cache[1]
        if "episode_index" in table.column_names:
            table = table.filter(pc.equal(table.column("episode_index"), ref.index))
        if "frame_index" in table.column_names:
            table = table.sort_by("frame_index")
        if len(table) != ref.length:
            raise ValueError(
                f"{ref.data_file}: episode {ref.index} has {len(table)} rows but the "
                f"episode metadata says length={ref.length}"
            )
        return table

    def read(self, ref: EpisodeRef, convert: Callable[[np.ndarray], object]) -> LerobotEpisode:
        """Reads one episode; `convert` maps each (H, W, 3) uint8 RGB frame (e.g. to PNG)."""
        table = self._rows(ref)
        where = f"{ref.data_file} (episode {ref.index})"
        state = _vectors(table, STATE_KEY, self.state_dim, where)[:, self.permutation]
        action = _vectors(table, ACTION_KEY, self.action_dim, where)[:, self.permutation]
        if "timestamp" not in table.column_names:
            raise ValueError(f"{where}: no column 'timestamp'")
        ts = np.asarray(table.column("timestamp").to_numpy(), np.float64)
        if len(ts) > 1:
            step = np.diff(ts)
            # float32 timestamps: allow their rounding on top of the tolerance.
            bad = np.abs(step - 1 / self.fps) > self.tolerance_s + 4e-7 * max(1.0, ts[-1])
            if bad.any():
                k = int(np.argmax(bad))
                raise ValueError(
                    f"{where}: field 'timestamp' steps by {step[k]:.6f} s at frame {k}, but "
                    f"{self.info_path} says fps={self.fps:g} (1/fps = {1 / self.fps:.6f} s)"
                )
        frames = {}
        for cam in self.cameras:
            field = f"features[{cam.key!r}] (camera {cam.name!r}, episode {ref.index})"
            if cam.kind == "video":
                frames[cam.name] = frames_at(
                    ref.video_files[cam.key],
                    ts + ref.video_offsets[cam.key],
                    self.tolerance_s,
                    convert,
                    fps=self.fps,
                    where=field,
                )
            else:
                if cam.key not in table.column_names:
                    raise ValueError(f"{where}: no column {cam.key!r} for camera {cam.name!r}")
                frames[cam.name] = [
                    convert(_decode_image(cell, where, cam.key))
                    for cell in table.column(cam.key).to_pylist()
                ]
        task = ref.tasks[0] if ref.tasks else ""
        return LerobotEpisode(ref.index, task, state, action, ts, frames)


def _decode_image(cell, where: str, key: str) -> np.ndarray:
    """An image feature's parquet cell ({"bytes", "path"}) as (H, W, 3) uint8 RGB."""
    data = cell.get("bytes") if isinstance(cell, dict) else None
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if bgr is None:
        raise ValueError(f"{where}: column {key!r} holds an image that cannot be decoded")
    return bgr[..., ::-1]
