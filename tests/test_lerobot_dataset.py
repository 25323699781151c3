"""LeRobot datasets (v2.1 and v3.0 layouts, AV1 videos) convert into `act_episodes` faithfully.

The datasets are written here with our own small writer that follows LeRobot's format (the real
package is cross-checked in bench/lerobot_dataset_roundtrip.py): parquet through pyarrow, AV1
videos through PyAV's libsvtav1, LeRobot's default codec.
"""

import json

import av
import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from act_jax.data import load_episodes
from act_jax_datasets.episodes import load
from act_jax_datasets.lerobot import build, parse_camera_map, parse_image_size
from hardware.conventions import JOINT_NAMES

FPS = 30
H, W = 48, 64
LENGTHS = (9, 12)
CAMERAS = {"top": "observation.images.laptop", "lateral": "observation.images.phone"}
# The dataset's joint order differs from ours, with LeRobot 0.x names: the builder reorders.
DATASET_JOINTS = (
    "gripper",
    "shoulder_pan",
    "shoulder_lift",
    "elbow_flex",
    "wrist_flex",
    "wrist_roll",
)
TO_OURS = [DATASET_JOINTS.index(j) for j in JOINT_NAMES]


def _frame(cam: int, ep: int, t: int) -> np.ndarray:
    """A smooth frame (codec-friendly) with a bright block that moves with t."""
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([x * 3, y * 4, np.full_like(x, 60 + 50 * cam + 20 * ep)], -1)
    img[8:24, 4 * t : 4 * t + 12] = 250
    return img.astype(np.uint8)


def _encode(path, frames):
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libsvtav1", rate=FPS, options={"crf": "20", "preset": "12"})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())


def _rows(ep, length, start, rng):
    return pa.table(
        {
            "observation.state": pa.array(
                list(rng.normal(size=(length, 6)).astype(np.float32) * 40),
                pa.list_(pa.float32(), 6),
            ),
            "action": pa.array(
                list(rng.normal(size=(length, 6)).astype(np.float32) * 40),
                pa.list_(pa.float32(), 6),
            ),
            "timestamp": pa.array(np.arange(length, dtype=np.float32) / np.float32(FPS)),
            "frame_index": pa.array(np.arange(length)),
            "episode_index": pa.array(np.full(length, ep)),
            "index": pa.array(start + np.arange(length)),
            "task_index": pa.array(np.zeros(length, np.int64)),
        }
    )


def _info(version, data_path, video_path):
    names = [f"{j}.pos" for j in DATASET_JOINTS]
    video = {
        "dtype": "video",
        "shape": [H, W, 3],
        "names": ["height", "width", "channels"],
        "info": {
            "video.height": H,
            "video.width": W,
            "video.codec": "av1",
            "video.pix_fmt": "yuv420p",
            "video.is_depth_map": False,
            "video.fps": FPS,
            "video.channels": 3,
            "has_audio": False,
        },
    }
    scalar = lambda dt: {"dtype": dt, "shape": [1], "names": None}
    return {
        "codebase_version": version,
        "robot_type": "so101_follower",
        "total_episodes": len(LENGTHS),
        "total_frames": sum(LENGTHS),
        "total_tasks": 1,
        "chunks_size": 1000,
        "fps": FPS,
        "splits": {"train": f"0:{len(LENGTHS)}"},
        "data_path": data_path,
        "video_path": video_path,
        "features": {
            "observation.state": {"dtype": "float32", "shape": [6], "names": names},
            "action": {"dtype": "float32", "shape": [6], "names": names},
            **{key: video for key in CAMERAS.values()},
            "timestamp": scalar("float32"),
            "frame_index": scalar("int64"),
            "episode_index": scalar("int64"),
            "index": scalar("int64"),
            "task_index": scalar("int64"),
        },
    }


def write_lerobot(root, version, seed=0):
    """Writes a 2-episode, 2-camera LeRobot dataset; returns what each episode holds."""
    rng = np.random.default_rng(seed)
    tables = [_rows(e, n, sum(LENGTHS[:e]), rng) for e, n in enumerate(LENGTHS)]
    frames = {
        c: [[_frame(c, e, t) for t in range(n)] for e, n in enumerate(LENGTHS)]
        for c in range(len(CAMERAS))
    }
    (root / "meta").mkdir(parents=True)
    if version == "v2.1":
        info = _info(
            version,
            "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        )
        for e, table in enumerate(tables):
            (root / "data/chunk-000").mkdir(parents=True, exist_ok=True)
            pq.write_table(table, root / f"data/chunk-000/episode_{e:06d}.parquet")
            for c, key in enumerate(CAMERAS.values()):
                _encode(root / f"videos/chunk-000/{key}/episode_{e:06d}.mp4", frames[c][e])
        lines = lambda rows: "".join(json.dumps(r) + "\n" for r in rows)
        (root / "meta/episodes.jsonl").write_text(
            lines(
                {"episode_index": e, "tasks": ["pick the cube"], "length": n}
                for e, n in enumerate(LENGTHS)
            )
        )
        (root / "meta/tasks.jsonl").write_text(lines([{"task_index": 0, "task": "pick the cube"}]))
        (root / "meta/episodes_stats.jsonl").write_text(
            lines(
                {
                    "episode_index": e,
                    "stats": {
                        "action": {
                            "min": np.min(t["action"].to_pylist(), 0).tolist(),
                            "max": np.max(t["action"].to_pylist(), 0).tolist(),
                            "count": [len(t)],
                        }
                    },
                }
                for e, t in enumerate(tables)
            )
        )
    else:  # v3.0: both episodes in one data file and one video file per camera
        info = _info(
            version,
            "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        )
        (root / "data/chunk-000").mkdir(parents=True)
        pq.write_table(pa.concat_tables(tables), root / "data/chunk-000/file-000.parquet")
        for c, key in enumerate(CAMERAS.values()):
            _encode(root / f"videos/{key}/chunk-000/file-000.mp4", sum(frames[c], []))
        eps = {
            "episode_index": list(range(len(LENGTHS))),
            "tasks": [["pick the cube"]] * 2,
            "length": list(LENGTHS),
            "data/chunk_index": [0, 0],
            "data/file_index": [0, 0],
            "dataset_from_index": [0, LENGTHS[0]],
            "dataset_to_index": [LENGTHS[0], 21],
        }
        for key in CAMERAS.values():
            eps |= {
                f"videos/{key}/chunk_index": [0, 0],
                f"videos/{key}/file_index": [0, 0],
                f"videos/{key}/from_timestamp": [0.0, LENGTHS[0] / FPS],
                f"videos/{key}/to_timestamp": [LENGTHS[0] / FPS, sum(LENGTHS) / FPS],
            }
        (root / "meta/episodes/chunk-000").mkdir(parents=True)
        pq.write_table(pa.table(eps), root / "meta/episodes/chunk-000/file-000.parquet")
        pq.write_table(
            pa.table({"task_index": [0], "__index_level_0__": ["pick the cube"]}),
            root / "meta/tasks.parquet",
        )
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return tables, frames


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_lerobot_dataset_converts_faithfully(tmp_path, version):
    tables, frames = write_lerobot(tmp_path / "lr", version)
    size = (24, 32)
    conv = build(
        tmp_path / "lr",
        tmp_path / "tfds",
        "lr",
        image_size=size,
        camera_map={"top": CAMERAS["top"], "lateral": "phone"},
    )
    assert conv.dataset_dir == tmp_path / "tfds/act_episodes/lr/1.1.0"
    assert (conv.episodes, conv.frames) == (2, sum(LENGTHS))
    assert any("reordered" in n for n in conv.notes), conv.notes
    eps = load_episodes(conv.dataset_dir, list(CAMERAS), size, 6, 6)
    source = load(conv.dataset_dir)
    assert source.dataset_info.metadata["joint_names"] == list(JOINT_NAMES)
    for e, ep in enumerate(eps):
        meta = source[e]["episode_metadata"]
        assert (ep.episode_index, meta["fps"], meta["task"]) == (e, FPS, b"pick the cube")
        for field, col in (("state", "observation.state"), ("action", "action")):
            want = np.array(tables[e][col].to_pylist(), np.float32)[:, TO_OURS]
            np.testing.assert_array_equal(getattr(ep, field), want)
        np.testing.assert_allclose(source[e]["timestamp"], np.arange(LENGTHS[e]) / FPS, atol=1e-6)
        for c, cam in enumerate(CAMERAS):
            got = ep.images[cam].astype(np.float32)
            ref = np.stack(
                [cv2.resize(f, size[::-1], interpolation=cv2.INTER_AREA) for f in frames[c][e]]
            ).astype(np.float32)
            err = np.abs(got - ref).mean(axis=(1, 2, 3))  # (T,) per frame
            assert err.max() < 6, f"{cam} episode {e}: frame errors {err}"
            # Each frame is the one at its timestamp, not a neighbour (the block moves 4 px/step).
            off_by_one = np.abs(got[1:] - ref[:-1]).mean(axis=(1, 2, 3))
            assert (err[1:] < off_by_one).all()


def _edit_info(root, fn):
    info = json.loads((root / "meta/info.json").read_text())
    fn(info)
    (root / "meta/info.json").write_text(json.dumps(info))


def test_errors_name_the_file_and_field(tmp_path):
    root = tmp_path / "lr"
    write_lerobot(root, "v2.1")
    build_ = lambda: build(root, tmp_path / "tfds", "bad")

    _edit_info(root, lambda i: i["features"].pop("action"))
    with pytest.raises(ValueError, match=r"meta/info.json: features\['action'\] missing"):
        build_()
    write_lerobot(tmp_path / "fresh", "v2.1")
    (root / "meta/info.json").write_text((tmp_path / "fresh/meta/info.json").read_text())

    _edit_info(root, lambda i: i.update(fps=15))
    with pytest.raises(ValueError, match=r"episode_000000.parquet.*'timestamp'.*fps=15"):
        build_()
    _edit_info(root, lambda i: i.update(fps=FPS))

    video = root / "videos/chunk-000/observation.images.phone/episode_000001.mp4"
    video.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{video}.*observation\.images\.phone"):
        build_()

    with pytest.raises(ValueError, match=r"camera 'top'.*observation.images.wrist"):
        build(root, tmp_path / "tfds", "bad", camera_map={"top": "wrist"})


def test_parsers():
    assert parse_image_size("96x128") == (96, 128)
    assert parse_camera_map(["top=laptop,lateral=observation.images.phone"]) == {
        "top": "laptop",
        "lateral": "observation.images.phone",
    }
    with pytest.raises(ValueError, match="HxW"):
        parse_image_size("96")
    with pytest.raises(ValueError, match="NAME=FEATURE"):
        parse_camera_map(["top"])
