"""The `Camera` interface: what a robot calls each tick for the newest frame of one view.

    with camera:                   # connect ... disconnect
        frame = camera()           # (H, W, 3) uint8 RGB, the newest frame

A robot holds its cameras as {name: Camera} and calls each once per observation. Implemented by
`OpenCVCamera` (USB/V4L devices and video files, `hardware.cameras.opencv`) and `SimCamera` (one
view of the MuJoCo scene, `hardware.cameras.sim_camera`).
"""

from __future__ import annotations

import abc

import numpy as np


class CameraError(RuntimeError):
    """A camera could not be opened, or stopped delivering frames."""


class Camera(abc.ABC):
    """One camera view, a context manager; calling it returns the newest frame.

    Attributes:
      name: the camera's role (e.g. "top"), used in error messages.
    """

    name: str = "camera"

    def connect(self) -> Camera:  # noqa: B027 (optional hook: a rendered view opens nothing)
        """Opens the device and waits for a first frame. Returns self."""
        return self

    def disconnect(self) -> None:  # noqa: B027 (optional hook)
        """Releases the device. Idempotent."""

    @abc.abstractmethod
    def __call__(self) -> np.ndarray:
        """The newest frame, (H, W, 3) uint8 RGB; raises `CameraError` if there is none fresh."""

    def __enter__(self) -> Camera:
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.disconnect()


def close_cameras(cameras: dict) -> None:
    """Disconnects every camera of {name: Camera}."""
    for cam in cameras.values():
        cam.disconnect()
