"""OpenCV cameras for real robots, and the `NAME=SOURCE,...` camera spec of the CLIs.

    cams = open_cameras(parse_camera_spec("top=0,lateral=/dev/video2"), 640, 480, 30)
    arm = ServoArm("so101", port, calibration, cameras=cams)      # each tick calls cams[name]()
    ...
    close_cameras(cams)

`OpenCVCamera` wraps `cv2.VideoCapture` with a background thread that grabs continuously and keeps
only the newest frame, so a control tick never waits for the camera's own frame period and never
reads a frame queued seconds ago in the driver's buffer. A frame older than `stale_ms` is an
error naming the camera: a policy must not act on a frozen view. A video file path works too
(frames paced at the file's rate, looping at its end unless `loop=False`, when the capture stops
there as an unplugged camera's would): a replay camera for dry runs and tests.
"""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np

from hardware.arguments import ArgumentError
from hardware.cameras.camera import Camera, CameraError, close_cameras


def parse_camera_spec(spec: str) -> dict[str, int | str]:
    """Parses `"top=0,lateral=2"` or `"top=/dev/video0"` into {name: device index or path}.

    A source made of digits is a device index (`cv2.VideoCapture(2)`); anything else is a path
    (`/dev/video2`, `/dev/v4l/by-id/...`, or a video file).
    """
    cams: dict[str, int | str] = {}
    if not spec or not spec.strip():
        raise ValueError("empty camera spec: expected NAME=SOURCE,..., e.g. top=0,lateral=2")
    for item in spec.split(","):
        name, eq, source = (s.strip() for s in item.partition("="))
        if not eq or not name or not source:
            raise ValueError(
                f"camera spec item {item.strip()!r} in {spec!r}: expected NAME=SOURCE, "
                "e.g. top=0 or top=/dev/video0"
            )
        if name in cams:
            raise ValueError(f"camera {name!r} appears twice in the camera spec {spec!r}")
        cams[name] = int(source) if source.isdigit() else source
    return cams


def camera_spec_arg(spec: str, flag: str = "--cameras") -> dict[str, int | str]:
    """`parse_camera_spec` for a command's `flag`: its errors are `ArgumentError`s naming it."""
    try:
        return parse_camera_spec(spec)
    except ValueError as e:
        raise ArgumentError(f"{flag}: {e}") from None


class OpenCVCamera(Camera):
    """A USB/V4L camera (or video file) read by a background thread; calling it returns the
    newest frame as (H, W, 3) uint8 RGB.

    Args:
      source: device index (0), device path (/dev/video0) or video file path.
      width, height, fps: requested capture format (None: the device's default). Devices may
        round these; `shape` reports what was delivered.
      name: the camera's role (e.g. "top"), used in error messages.
      stale_ms: a frame older than this when read is an error.
      open_timeout_s: how long `connect` waits for the first frame.
      loop: a video file starts again at its end (False: the capture stops there).
      clock: what frames are stamped and aged with (`monotonic()`); default `time`.
    """

    def __init__(
        self,
        source: int | str,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        *,
        name: str = "camera",
        stale_ms: float = 500.0,
        open_timeout_s: float = 5.0,
        loop: bool = True,
        clock=time,
    ):
        self.source, self.name = source, name
        self.width, self.height, self.fps = width, height, fps
        self.stale_ms, self.open_timeout_s = stale_ms, open_timeout_s
        self.loop, self.clock = loop, clock
        self._cap: cv2.VideoCapture | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._stamp = 0.0
        self.frames_grabbed = 0
        self.shape: tuple[int, ...] | None = None

    def __repr__(self) -> str:
        return f"camera {self.name!r} ({self._kind()} {self.source!r})"

    def _kind(self) -> str:
        if isinstance(self.source, int):
            return "index"
        return "device" if str(self.source).startswith("/dev/") else "file"

    def connect(self) -> OpenCVCamera:
        if self._cap is not None:
            return self
        cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"{self!r}: cannot open it (is it plugged in, or in use?)")
        for prop, value in (
            (cv2.CAP_PROP_FRAME_WIDTH, self.width),
            (cv2.CAP_PROP_FRAME_HEIGHT, self.height),
            (cv2.CAP_PROP_FPS, self.fps),
        ):
            if value is not None and self._kind() != "file":
                cap.set(prop, value)
        # A file is read as fast as the disk allows: pace it at its own rate (or the asked fps).
        period = 0.0
        if self._kind() == "file":
            rate = self.fps or cap.get(cv2.CAP_PROP_FPS) or 30.0
            period = 1.0 / rate
        self._cap, self._running = cap, True
        self._thread = threading.Thread(
            target=self._grab, args=(period,), name=f"camera-{self.name}", daemon=True
        )
        self._thread.start()
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._frame is not None or not self._running, timeout=self.open_timeout_s
            ):
                self.disconnect()
                raise CameraError(f"{self!r}: opened, but no frame within {self.open_timeout_s} s")
        if self._frame is None:
            self.disconnect()
            raise CameraError(f"{self!r}: opened, but reading its first frame failed")
        return self

    def _grab(self, period: float) -> None:
        cap = self._cap
        next_t = time.monotonic()
        while self._running:
            ok, bgr = cap.read()
            if not ok and self._kind() == "file" and self.frames_grabbed and self.loop:
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)  # loop the replay
                ok, bgr = cap.read()
            if not ok:
                with self._cond:
                    self._running = False  # device gone: readers see the frame go stale
                    self._cond.notify_all()
                return
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            with self._cond:
                self._frame, self._stamp = rgb, self.clock.monotonic()
                self.frames_grabbed += 1
                self.shape = rgb.shape
                self._cond.notify_all()
            if period:
                next_t += period
                time.sleep(max(0.0, next_t - time.monotonic()))

    def __call__(self) -> np.ndarray:
        """The newest frame, (H, W, 3) uint8 RGB; raises CameraError if it is stale."""
        with self._cond:
            frame, stamp = self._frame, self._stamp
        if frame is None:
            raise CameraError(f"{self!r} is not connected")
        age_ms = 1e3 * (self.clock.monotonic() - stamp)
        if age_ms > self.stale_ms:
            raise CameraError(
                f"{self!r}: newest frame is {age_ms:.0f} ms old (limit {self.stale_ms:.0f} ms)"
                + ("; the capture stopped" if not self._running else "")
            )
        return frame

    def wait_for_frames(self, count: int, timeout_s: float = 10.0) -> bool:
        """Waits until `count` frames were grabbed since connect, or the capture stopped, or
        `timeout_s` passed. Returns whether `count` were grabbed."""
        with self._cond:
            self._cond.wait_for(
                lambda: self.frames_grabbed >= count or not self._running, timeout=timeout_s
            )
            return self.frames_grabbed >= count

    @property
    def capturing(self) -> bool:
        """Whether the grab thread still delivers frames (False once the device is gone)."""
        with self._cond:
            return self._running

    def disconnect(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._frame = None


def open_cameras(
    sources: dict[str, int | str],
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    **options,
) -> dict[str, OpenCVCamera]:
    """Connects one `OpenCVCamera` per {name: source}; on any failure closes those opened."""
    cams: dict[str, OpenCVCamera] = {}
    try:
        for name, source in sources.items():
            cams[name] = OpenCVCamera(source, width, height, fps, name=name, **options).connect()
    except BaseException:
        close_cameras(cams)
        raise
    return cams
