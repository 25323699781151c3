"""The control loop: observation -> policy -> action at a fixed rate, for every robot.

The same loop records teleoperated demonstrations (`hardware.record`), evaluates policies in
simulation (`act_jax.evaluate`) and drives the real arm (`hardware.deploy`). The policy is a
plain callable, observation dict -> (6,) action, so the loop knows nothing of ACT.

    stats = run_loop(robot, policy, fps=30, max_steps=300, realtime=True)

Each tick: `observation = robot.get_observation()`, `action = policy(observation)`,
`sent = robot.send_action(action)`, then `on_step(t, observation, action, sent)`. With
`realtime=True` the loop sleeps until the next tick of a fixed 1/fps grid and counts overruns
(ticks that ended after the next one was due; the grid then restarts from now rather than
bursting to catch up). The grid runs on `clock` (anything with the `time` module's `monotonic()`
and `sleep()`: the `time` module itself, or an emulator's virtual clock; latencies are always
measured on `time.perf_counter`). With `realtime=False` it runs as fast as it can: a simulator
advances its own clock in `send_action`, so sim time stays exact and wall time is not wasted.

The loop stops at `max_steps`, when `stop()` returns True (checked before each tick), when
`on_step` returns True, or on KeyboardInterrupt, which is re-raised after `on_stop` (if given)
has run, so a recorder can close its episode and a real robot can be left safe.

SIGTERM and SIGHUP (a service manager, `timeout`, a closed terminal, a container stop) take the
same path as Ctrl-C inside `stop_signals()`: the handler raises `Terminated`, a
KeyboardInterrupt that remembers its signal, so every `except KeyboardInterrupt` that parks an
arm or discards a half-written episode runs for them too, and `exit_status` gives 128 + signal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import time
from collections.abc import Callable, Iterator

import numpy as np


@dataclasses.dataclass
class LoopStats:
    """What a run of the loop did and how long its parts took.

    Latencies are in milliseconds over all ticks: observation (read sensors/render), policy,
    send (write targets; in simulation this includes the physics), and the whole tick.
    """

    ticks: int = 0
    overruns: int = 0
    stopped_by: str = "max_steps"  # max_steps | stop | on_step | interrupt
    wall_s: float = 0.0
    latency_ms: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        tick = self.latency_ms.get("tick", {})
        return (
            f"{self.ticks} ticks in {self.wall_s:.2f} s, stopped by {self.stopped_by}, "
            f"{self.overruns} overruns, tick p50 {tick.get('p50', float('nan')):.1f} ms "
            f"p99 {tick.get('p99', float('nan')):.1f} ms"
        )

    @classmethod
    def merge(cls, all_stats: list[LoopStats]) -> LoopStats:
        """Several runs' stats in one: percentiles are tick-weighted means of the runs' (no raw
        samples are kept), max is the max."""
        merged = cls(
            ticks=sum(s.ticks for s in all_stats),
            overruns=sum(s.overruns for s in all_stats),
            wall_s=sum(s.wall_s for s in all_stats),
        )
        for part in all_stats[0].latency_ms:
            rows = [(s.latency_ms[part], s.ticks) for s in all_stats if s.latency_ms.get(part)]
            w = np.array([t for _, t in rows], float)
            merged.latency_ms[part] = {
                k: (
                    float(max(r[k] for r, _ in rows))
                    if k == "max"
                    else float(np.average([r[k] for r, _ in rows], weights=w))
                )
                for k in rows[0][0]
            }
        return merged


def _percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    a = 1e3 * np.asarray(samples)
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
        "mean": float(a.mean()),
    }


def run_loop(
    robot,
    policy: Callable[[dict], np.ndarray],
    *,
    fps: float = 30,
    max_steps: int,
    realtime: bool = True,
    on_step: Callable[[int, dict, np.ndarray, np.ndarray], bool | None] | None = None,
    stop: Callable[[], bool] | None = None,
    on_stop: Callable[[LoopStats], None] | None = None,
    clock=time,
) -> LoopStats:
    """Runs `policy` on `robot` for up to `max_steps` ticks (see the module docstring).

    Args:
      robot: a connected `hardware.robot.Robot`.
      policy: observation dict -> (6,) action in LeRobot units.
      fps: control rate in Hz.
      max_steps: the most ticks to run.
      realtime: keep a fixed rate (True, real hardware) or run flat out (False, simulation).
      on_step: called after each tick with (tick index, observation, action, sent action);
        returning True ends the loop.
      stop: polled before each tick; returning True ends the loop.
      on_stop: called once when the loop ends for any reason, interrupt included.
      clock: what the fixed-rate grid sleeps on (`monotonic()`, `sleep(s)`); default `time`.

    Returns:
      LoopStats.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    period = 1.0 / fps
    stats = LoopStats()
    times = {"observation": [], "policy": [], "send": [], "tick": []}
    start = time.perf_counter()
    next_tick = clock.monotonic()
    try:
        for t in range(max_steps):
            if stop is not None and stop():
                stats.stopped_by = "stop"
                break
            t0 = time.perf_counter()
            observation = robot.get_observation()
            t1 = time.perf_counter()
            action = np.asarray(policy(observation))
            t2 = time.perf_counter()
            sent = robot.send_action(action)
            t3 = time.perf_counter()
            times["observation"].append(t1 - t0)
            times["policy"].append(t2 - t1)
            times["send"].append(t3 - t2)
            stats.ticks = t + 1
            done = on_step(t, observation, action, sent) if on_step is not None else None
            times["tick"].append(time.perf_counter() - t0)
            if done:
                stats.stopped_by = "on_step"
                break
            if realtime:
                next_tick += period
                delay = next_tick - clock.monotonic()
                if delay > 0:
                    clock.sleep(delay)
                else:
                    stats.overruns += 1
                    next_tick = clock.monotonic()
    except KeyboardInterrupt as e:
        stats.stopped_by = signal_name(e)
        raise
    finally:
        stats.wall_s = time.perf_counter() - start
        stats.latency_ms = {k: _percentiles(v) for k, v in times.items()}
        if on_stop is not None:
            on_stop(stats)
    return stats


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class HeldFor:
    """Whether a condition (the sim's success check) has held for `ticks` consecutive control
    ticks, and when the current run of it began. Feed it every tick with `update`."""

    def __init__(self, ticks: int, fps: float):
        if ticks < 1:
            raise ValueError(f"a condition must hold for at least 1 tick, got {ticks}")
        self.ticks, self.fps = ticks, fps
        self.run = 0
        self.since_s: float | None = None  # start of the current run, seconds from tick 0

    def update(self, t: int, ok: bool) -> bool:
        """Tick `t` (0-based) saw the condition `ok`; returns whether it has now held long
        enough."""
        self.run = self.run + 1 if ok else 0
        if self.run == 1:
            self.since_s = (t + 1) / self.fps
        return self.done

    @property
    def done(self) -> bool:
        return self.run >= self.ticks

    @property
    def time_s(self) -> float | None:
        """When the condition began to hold for good, or None if it has not held long enough."""
        return self.since_s if self.done else None


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, delivered as an interrupt (see the module docstring)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


def signal_name(interrupt: BaseException) -> str:
    """The signal's name ("SIGTERM", "SIGHUP") for a `Terminated`, "interrupt" for Ctrl-C."""
    if isinstance(interrupt, Terminated):
        return signal.Signals(interrupt.signum).name
    return "interrupt"


def exit_status(interrupt: BaseException) -> int:
    """128 + the signal number, as a shell reports a process ended by it (130 for Ctrl-C)."""
    return 128 + (interrupt.signum if isinstance(interrupt, Terminated) else signal.SIGINT)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """While active, SIGTERM and SIGHUP raise `Terminated` in the main thread; the previous
    handlers come back after. Only one stop is delivered: a second signal while the arm is
    being made safe is ignored, so a repeated `kill` cannot cut the park short."""
    delivered = []

    def handler(signum, frame):
        if delivered:
            return
        delivered.append(signum)
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
