"""`hardware.cameras`: the OpenCV camera on a real video file (grab thread, RGB, stale frames
named on a virtual clock), camera specs and sizes. The stale camera mid-deploy is in
`tests/test_deploy.py`."""

import numpy as np
import pytest
from helpers_cameras import write_test_video

from hardware.cameras import CameraError, OpenCVCamera, parse_camera_spec
from hardware.emulation.emulator import VirtualClock


def test_opencv_camera_reads_a_video_file(tmp_path):
    path = write_test_video(tmp_path / "cam.mp4")
    with OpenCVCamera(str(path), name="top") as cam:
        first = cam()
        assert first.shape == (48, 64, 3) and first.dtype == np.uint8
        assert first[..., 0].mean() > 150 and first[..., 2].mean() < 60  # RGB, not BGR
        # The grab thread keeps going at the file's 30 fps, and loops: 15 frames of a 10-frame file.
        assert cam.wait_for_frames(15) and cam.capturing
    with pytest.raises(CameraError, match="camera 'top' .*not connected"):
        cam()


def test_stale_and_missing_cameras_are_named(tmp_path):
    with pytest.raises(CameraError, match=r"camera 'lateral' \(file '.*missing.mp4'\): cannot"):
        OpenCVCamera(str(tmp_path / "missing.mp4"), name="lateral").connect()
    path = write_test_video(tmp_path / "short.mp4")
    clock = VirtualClock(50.0)  # frames are stamped and aged on it
    with OpenCVCamera(str(path), name="top", stale_ms=100, loop=False, clock=clock) as cam:
        assert not cam.wait_for_frames(11)  # the file's 10 frames, then the capture stops
        assert cam.frames_grabbed == 10 and not cam.capturing
        clock.advance(0.0625)
        cam()  # 62 ms old: served
        clock.advance(0.0625)
        with pytest.raises(CameraError, match=r"camera 'top' .*: newest frame is 125 ms old "):
            cam()


def test_camera_size_is_hxw_and_the_old_spelling_still_reads_with_a_warning():
    from hardware.conventions import parse_camera_size

    warned = []
    assert parse_camera_size("480x640", warned.append) == (480, 640) and warned == []
    assert parse_camera_size("640x480", warned.append) == (480, 640)  # WIDTHxHEIGHT, as it was
    assert warned == [
        "camera size '640x480' read as the old WIDTHxHEIGHT spelling, i.e. 480x640 "
        "(HxW); write 480x640: sizes are HEIGHTxWIDTH everywhere"
    ]
    with pytest.raises(ValueError, match="expected HxW"):
        parse_camera_size("640")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "empty camera spec"),
        ("top", "'top' in 'top': expected NAME=SOURCE"),
        ("top=0,=1", "'=1'"),
        ("top=0,top=1", "camera 'top' appears twice"),
    ],
)
def test_camera_spec_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_camera_spec(spec)


def test_camera_spec():
    assert parse_camera_spec("top=0, lateral=/dev/video2") == {"top": 0, "lateral": "/dev/video2"}
