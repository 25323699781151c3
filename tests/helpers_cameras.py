"""Camera test material: a short video file that `OpenCVCamera` replays."""

import numpy as np


def write_test_video(path):
    """10 frames of 64x48 at 30 fps into `path` (mp4): red, with a green band that widens."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48))
    for k in range(10):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[..., 2] = 200  # red in BGR
        frame[:, : 6 * k + 4, 1] = 255
        writer.write(frame)
    writer.release()
    return path
