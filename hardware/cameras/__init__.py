"""Cameras: the `Camera` interface, OpenCV devices (and video files), simulated views.

    camera.py      Camera (the interface), CameraError, close_cameras
    opencv.py      OpenCVCamera, open_cameras, parse_camera_spec ("top=0,lateral=2"),
                   camera_spec_arg (the same for a command's flag)
    sim_camera.py  SimCamera, sim_cameras: views of the MuJoCo scene

Imports nothing from the other layers of `hardware` (only the contracts: `hardware.arguments`).
"""

from hardware.cameras.camera import Camera, CameraError, close_cameras
from hardware.cameras.opencv import (
    OpenCVCamera,
    camera_spec_arg,
    open_cameras,
    parse_camera_spec,
)
from hardware.cameras.sim_camera import SimCamera, sim_cameras

__all__ = [
    "Camera",
    "CameraError",
    "OpenCVCamera",
    "SimCamera",
    "camera_spec_arg",
    "close_cameras",
    "open_cameras",
    "parse_camera_spec",
    "sim_cameras",
]
