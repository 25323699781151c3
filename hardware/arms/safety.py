"""Host-side safety between the policy and the servo bus. Always on; knows nothing of ACT.

- `SafetyGuard.filter(action, now)` turns whatever the policy produced into a safe goal: wrong
  shape or non-finite values are rejected, values are clamped to the calibrated range minus a
  margin, and each joint may move at most `max_step` per tick from the last *sent* command (as
  ros2_control's saturation limiter does). A rejected or late action holds the last safe command;
  `max_rejects` in a row latch a protective stop. The returned goal is finite and inside the limits
  whatever the input: that is the property the tests check.
- `ThermalMonitor` grades temperature and load readings into ok / warn / derate / stop.
- `deferred_sigint()` keeps a second Ctrl-C from cutting the park and torque-off sequence short.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import signal
import threading

import numpy as np

from hardware.control_loop import STOP_SIGNALS

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SafetyConfig:
    """Safety limits. Units are LeRobot's: degrees for arm joints, 0..100 for the gripper.

    Attributes:
        margin: kept inside each end of the calibrated range.
        max_step: largest change per tick and joint (10 per tick = 300 deg/s at 30 Hz); a float
            or 6 values.
        max_rejects: K; this many rejected or late actions in a row latch a protective stop.
        max_action_age_s: an action older than this (from its observation) counts as late.
        comm_fail_ticks: ticks without a fresh position for some joint before a protective stop.
        max_jump: a present position that moved more than this per tick (3x a servo's top speed)
            is held back as implausible, e.g. a mangled reply whose 8-bit checksum happened to
            match; it is accepted when the next reading confirms it.
        temp_warn, temp_derate, temp_stop: degrees Celsius thresholds.
        max_temp_step: degrees between two readings of a joint beyond which a reading needs
            confirmation by the next one.
        load_derate, load_stop: |load| thresholds as a fraction of maximum torque.
        derate_factor: multiplies `max_step` of a derated joint.
        exit_mode: `"hold"` (keep the pose, then torque off) or `"park"` (move to `park_pose`
            first) when the robot disconnects.
        park_pose: 6 values in LeRobot units, for `exit_mode="park"`.
        park_time_s: longest time a park may take before torque goes off anyway.
    """

    margin: float = 2.0
    max_step: float | tuple[float, ...] = 10.0
    max_rejects: int = 3
    max_action_age_s: float = 0.1
    comm_fail_ticks: int = 3
    max_jump: float = 30.0
    temp_warn: float = 55.0
    temp_derate: float = 60.0
    temp_stop: float = 65.0
    max_temp_step: float = 10.0
    load_derate: float = 0.8
    load_stop: float = 1.01  # off by default: a stalled gripper holding a cube reads ~1
    derate_factor: float = 0.5
    exit_mode: str = "hold"
    park_pose: tuple[float, ...] | None = None
    park_time_s: float = 3.0

    def __post_init__(self):
        if self.exit_mode not in ("hold", "park"):
            raise ValueError(
                f"SafetyConfig.exit_mode must be 'hold' or 'park', got {self.exit_mode!r}"
            )
        if self.exit_mode == "park" and (self.park_pose is None or len(self.park_pose) != 6):
            raise ValueError("SafetyConfig.park_pose needs 6 values when exit_mode='park'")
        steps = np.broadcast_to(np.asarray(self.max_step, np.float64), (6,))
        if not np.all(np.isfinite(steps)) or np.any(steps <= 0):
            raise ValueError(f"SafetyConfig.max_step must be positive and finite: {self.max_step}")
        if self.max_rejects < 1 or self.comm_fail_ticks < 1:
            raise ValueError("SafetyConfig.max_rejects and comm_fail_ticks must be >= 1")


class Status(enum.StrEnum):
    """What the guard did with one action."""

    OK = "ok"  # sent as given
    LIMITED = "limited"  # clamped to the range and/or rate limited
    REJECTED = "rejected"  # wrong shape or non-finite: last safe command held
    LATE = "late"  # too old: last safe command held
    STOPPED = "stopped"  # protective stop latched: last safe command held


@dataclasses.dataclass(frozen=True)
class SafeCommand:
    """A goal that may go to the wire. `goal` is (6,) float64, finite, inside the limits."""

    goal: np.ndarray
    status: Status
    reason: str = ""


class SafetyGuard:
    """Filters actions into safe goals.

    Args:
        lower, upper: (6,) calibrated range in LeRobot units.
        config: `SafetyConfig`.
    """

    def __init__(self, lower, upper, config: SafetyConfig | None = None):
        self.config = config or SafetyConfig()
        lo, hi = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
        if (
            lo.shape != (6,)
            or hi.shape != (6,)
            or not np.all(np.isfinite(lo + hi))
            or np.any(lo >= hi)
        ):
            raise ValueError(f"SafetyGuard needs finite (6,) limits with lower < upper: {lo}, {hi}")
        m = self.config.margin
        mid = (lo + hi) / 2
        self.lower = np.minimum(lo + m, mid)
        self.upper = np.maximum(hi - m, mid)
        self.base_step = np.broadcast_to(np.asarray(self.config.max_step, np.float64), (6,)).copy()
        self.step = self.base_step.copy()
        self.last: np.ndarray | None = None
        self.rejects_in_row = 0
        self.stop_reason: str | None = None
        self.counts = {s: 0 for s in Status}

    @property
    def stopped(self) -> bool:
        return self.stop_reason is not None

    def reset(self, present) -> None:
        """Start from the measured pose (clamped into the limits); clears a latched stop."""
        p = np.asarray(present, np.float64)
        if p.shape != (6,) or not np.all(np.isfinite(p)):
            raise ValueError(f"SafetyGuard.reset needs 6 finite present positions, got {p}")
        self.last = np.clip(p, self.lower, self.upper)
        self.rejects_in_row = 0
        self.stop_reason = None
        self.step = self.base_step.copy()

    def stop(self, reason: str) -> None:
        """Latch a protective stop (idempotent; the first reason is kept)."""
        if self.stop_reason is None:
            self.stop_reason = reason
            log.error("protective stop: %s", reason)

    def derate(self, joint: int, derated: bool) -> None:
        """Slow one joint down (or restore it) while it runs hot or heavily loaded."""
        factor = self.config.derate_factor if derated else 1.0
        self.step[joint] = self.base_step[joint] * factor

    def _hold(self, status: Status, reason: str) -> SafeCommand:
        self.counts[status] += 1
        if status is not Status.STOPPED:
            self.rejects_in_row += 1
            if self.rejects_in_row >= self.config.max_rejects:
                self.stop(f"{self.rejects_in_row} bad actions in a row (last: {reason})")
                status = Status.STOPPED  # the K-th bad action is the one that stops
        return SafeCommand(self.last.copy(), status, reason)

    def filter(self, action, now: float, stamp: float | None = None) -> SafeCommand:
        """Make `action` safe.

        Args:
            action: what the policy produced; anything (validated here).
            now: current time, seconds.
            stamp: time of the observation the action was computed from; an action older than
                `max_action_age_s` is late.

        Returns:
            `SafeCommand` whose `goal` is always finite and inside `[lower, upper]`.
        """
        if self.last is None:
            raise RuntimeError("SafetyGuard.filter before reset(present)")
        if self.stopped:
            return self._hold(Status.STOPPED, self.stop_reason)
        try:
            a = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            return self._hold(Status.REJECTED, f"not numeric: {type(action).__name__}")
        if a.shape != (6,):
            return self._hold(Status.REJECTED, f"shape {a.shape}, expected (6,)")
        if not np.all(np.isfinite(a)):
            return self._hold(
                Status.REJECTED, f"non-finite values at {np.flatnonzero(~np.isfinite(a)).tolist()}"
            )
        if stamp is not None and now - stamp > self.config.max_action_age_s:
            return self._hold(Status.LATE, f"action {1000 * (now - stamp):.0f} ms old")
        goal = np.clip(a, self.lower, self.upper)
        goal = np.clip(goal, self.last - self.step, self.last + self.step)
        goal = np.clip(goal, self.lower, self.upper)  # last is inside, so this only guards rounding
        limited = not np.array_equal(goal, a)
        self.rejects_in_row = 0
        self.last = goal
        status = Status.LIMITED if limited else Status.OK
        self.counts[status] += 1
        return SafeCommand(goal.copy(), status)


class Level(enum.IntEnum):
    OK = 0
    WARN = 1
    DERATE = 2
    STOP = 3


class ThermalMonitor:
    """Grades temperature and load per joint; fed one joint per tick (round robin).

    A level counts only when two consecutive readings of the joint reach it, and a temperature
    jump larger than `max_temp_step` needs a second reading to confirm it: heat builds over
    seconds, so this costs a few ticks and keeps one mangled reply from stopping the arm.
    """

    def __init__(self, config: SafetyConfig | None = None):
        self.config = config or SafetyConfig()
        self.levels: dict[str, Level] = {}
        self._raw: dict[str, Level] = {}
        self._temp: dict[str, float] = {}
        self._suspect: dict[str, float] = {}

    def update(self, joint: str, temperature: float, load: float) -> Level:
        # A temperature that jumped further than a servo heats between two readings is held
        # back until the next reading confirms it (a mangled reply must not stop the arm).
        step = self.config.max_temp_step
        prev = self._temp.get(joint)
        confirmed = False
        if prev is not None and abs(temperature - prev) > step:
            suspect = self._suspect.get(joint)
            if suspect is None or abs(temperature - suspect) > step:
                self._suspect[joint] = temperature
                return self.levels.get(joint, Level.OK)
            confirmed = True
        self._suspect.pop(joint, None)
        self._temp[joint] = temperature
        raw = self._grade(temperature, load)
        level = raw if confirmed else min(raw, self._raw.get(joint, Level.OK))
        self._raw[joint] = raw
        if level != self.levels.get(joint, Level.OK) and level >= Level.WARN:
            log.warning("%s: %.0f C, load %.2f -> %s", joint, temperature, load, level.name)
        self.levels[joint] = level
        return level

    def _grade(self, temperature: float, load: float) -> Level:
        c = self.config
        level = Level.OK
        if temperature >= c.temp_warn:
            level = Level.WARN
        if temperature >= c.temp_derate or abs(load) >= c.load_derate:
            level = Level.DERATE
        if temperature >= c.temp_stop or abs(load) >= c.load_stop:
            level = Level.STOP
        return level


@contextlib.contextmanager
def deferred_sigint():
    """Ignore SIGINT (Ctrl-C) inside the block, so teardown cannot be skipped; log each press.

    SIGTERM and SIGHUP are held back the same way, then delivered once the block is done (the
    arm is safe by then): a stop asked for during a park ends the process after the park.
    Works only in the main thread (where Python delivers signals); elsewhere it is a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed = []
    held = []

    def handler(signum, frame):
        pressed.append(signum)
        log.warning("Ctrl-C during shutdown ignored: the arm is being made safe first")

    def hold(signum, frame):
        held.append(signum)
        log.warning(
            "%s during shutdown held back: the arm is being made safe first",
            signal.Signals(signum).name,
        )

    previous = {signal.SIGINT: signal.signal(signal.SIGINT, handler)}
    previous.update({s: signal.signal(s, hold) for s in STOP_SIGNALS})
    try:
        yield pressed
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if held:
            signal.raise_signal(held[0])
