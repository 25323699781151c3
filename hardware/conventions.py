"""Conventions shared by every robot, recorder and dataset: they are API.

Units follow LeRobot so that data and checkpoints cross into and out of its ecosystem cleanly:
joint positions in degrees, the gripper in 0..100 (0 closed, 100 open), 30 frames per second.
"""

from collections.abc import Callable

JOINT_NAMES: tuple[str, ...] = (
    "shoulder_pan",
    "shoulder_lift",
    "elbow_flex",
    "wrist_flex",
    "wrist_roll",
    "gripper",
)
"""Order of the 6 entries of every `state` and `action` vector."""

CAMERA_NAMES: tuple[str, ...] = ("top", "lateral")
"""Default camera names: an overhead view and a side view."""

FPS: int = 30
"""Control and recording rate, in Hz."""

GRIPPER_RANGE: tuple[float, float] = (0.0, 100.0)
"""Gripper units: 0 is fully closed, 100 fully open."""

STATE_DIM: int = len(JOINT_NAMES)
ACTION_DIM: int = len(JOINT_NAMES)


def parse_image_size(text: str) -> tuple[int, int]:
    """ "96x128" -> (96, 128): image sizes are written height x width everywhere.

    Raises:
      ValueError: naming the text, unless it is two positive integers joined by "x".
    """
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"image size {text!r}: expected HxW (HEIGHTxWIDTH), e.g. 96x128") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"image size {text!r}: both sides must be positive")
    return h, w


def parse_camera_size(text: str, warn: Callable[[str], None] | None = None) -> tuple[int, int]:
    """A camera format, HxW like every image size (`parse_image_size`): "480x640" -> (480, 640).

    The old spelling of the cameras' size was WIDTHxHEIGHT ("640x480"). Cameras deliver formats
    wider than tall, so a first number larger than the second is read that way for one release:
    it is swapped, and `warn` is told how to write it now.

    Raises:
      ValueError: naming the text, unless it is two positive integers joined by "x".
    """
    h, w = parse_image_size(text)
    if h > w:
        if warn is not None:
            warn(
                f"camera size {text!r} read as the old WIDTHxHEIGHT spelling, i.e. {w}x{h} "
                f"(HxW); write {w}x{h}: sizes are HEIGHTxWIDTH everywhere"
            )
        h, w = w, h
    return h, w
