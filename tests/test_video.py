"""Side-by-side mp4 videos of episodes."""

import cv2
import numpy as np
import pytest

from hardware.recording.episodes import EpisodeMeta, encode_png, write_episode
from hardware.recording.video import main, side_by_side, write_video


def frames(t=12, h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def read_back(path):
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    size = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
    decoded = 0
    while cap.read()[0]:
        decoded += 1
    cap.release()
    return n, decoded, size


def test_video_has_every_frame_and_both_cameras_side_by_side(tmp_path):
    path = write_video(tmp_path / "v.mp4", {"top": frames(), "lateral": frames(seed=1)}, fps=30)
    n, decoded, size = read_back(path)
    assert n == decoded == 12
    assert size == (24, 64)


def test_tiles_keep_camera_order_and_scale_to_one_height():
    top, lat = frames(2, 24, 32), frames(2, 48, 64)
    tiled = side_by_side({"top": top, "lateral": lat}, labels=False)
    assert tiled.shape == (2, 24, 64, 3)
    np.testing.assert_array_equal(tiled[:, :, :32], top)
    big = side_by_side({"top": top}, scale=3, labels=False)
    assert big.shape == (2, 72, 96, 3)


def test_mismatched_cameras_are_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="different numbers of frames"):
        write_video(tmp_path / "v.mp4", {"top": frames(5), "lateral": frames(6)})
    with pytest.raises(ValueError, match="lateral"):
        write_video(tmp_path / "v.mp4", {"top": frames(5), "lateral": frames(5)[..., 0]})


def test_cli_writes_an_episode_video(tmp_path):
    t = 7
    imgs = {c: frames(t, seed=i) for i, c in enumerate(("top", "lateral"))}
    path = write_episode(
        tmp_path,
        state=np.zeros((t, 6)),
        action=np.zeros((t, 6)),
        timestamp=np.arange(t) / 30,
        png={c: [encode_png(f) for f in v] for c, v in imgs.items()},
        meta=EpisodeMeta(episode_index=0),
    )
    main([str(path), "--out", str(tmp_path / "ep.mp4"), "--scale", "2"])
    n, decoded, size = read_back(tmp_path / "ep.mp4")
    assert n == decoded == t and size == (48, 128)
