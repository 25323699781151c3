"""Cameras: the `Camera` interface, OpenCV devices (and video files), simulated views.

    camera.py      Camera (the interface), CameraError, close_cameras
    opencv.py      OpenCVCamera, open_cameras, parse_camera_spec ("top=0,lateral=2")
    sim_camera.py  SimCamera, sim_cameras: views of the MuJoCo scene

Imports nothing from the other layers of `hardware`.
"""

from hardware.cameras.camera import Camera, CameraError, close_cameras
from hardware.cameras.opencv import OpenCVCamera, open_cameras, parse_camera_spec
from hardware.cameras.sim_camera import SimCamera, sim_cameras

__all__ = [
    "Camera",
    "CameraError",
    "OpenCVCamera",
    "SimCamera",
    "close_cameras",
    "open_cameras",
    "parse_camera_spec",
    "sim_cameras",
]
