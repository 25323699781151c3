"""One run of a controller on a servo arm, after which the arm is always parked with torque off.

    episode = run_episode(arm, controller, fps=30, max_steps=400, realtime=True)

Connects the arm (torque on at the present pose), runs `hardware.control_loop.run_loop`, and on
the way out, whatever ended the run (its end, a protective stop, a camera that went stale,
Ctrl-C, SIGTERM), parks the arm where it started (or at `park_pose`) and turns torque off, read
back from every servo. A protective stop and a camera failure end the episode with their reason;
an interrupt is re-raised once the arm is safe; a servo that did not read back torque off turns
whatever ended the run into `TorqueNotConfirmed`, naming it. Used by `hardware.deploy`; knows
nothing of policies (the controller is a plain callable, observation -> action).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable

import numpy as np

from hardware.arms.servo_arm import ProtectiveStop, ServoArm, park_at_start, torque_off_problem
from hardware.cameras.camera import CameraError
from hardware.control_loop import LoopStats, run_loop, signal_name


class TorqueNotConfirmed(RuntimeError):
    """The run ended (for the reason in the message) and some servo did not read back torque
    off; raised by `run_episode` after the arm was disconnected."""


@dataclasses.dataclass
class Episode:
    """What one run of a controller did."""

    stats: LoopStats
    stop_reason: str | None = None  # protective stop reason, None if the run ended normally
    failure: str | None = None  # a camera failed mid-run (the arm was then parked, torque off)
    seed: int | None = None  # a simulated trial's reset seed
    success: bool | None = None  # a simulated trial: its success check held for `settle` ticks
    time_to_success_s: float | None = None


def run_episode(
    arm: ServoArm,
    controller: Callable[[dict], np.ndarray],
    *,
    fps: float,
    max_steps: int,
    realtime: bool,
    park_pose: tuple[float, ...] | None = None,
    on_step: Callable | None = None,
    clock=None,
) -> Episode:
    """Connects `arm`, runs `controller` on it, and always leaves it parked with torque off.

    `clock` is what a real-time loop sleeps on (default: the arm's own clock).

    Raises:
      TorqueNotConfirmed: however the episode ended, if a servo did not read back torque off
        (chained to the exception that ended it, if any).
    """
    box: dict[str, LoopStats] = {}
    stop_reason = failure = None
    try:
        with arm:  # connect: torque on at the present pose; exit: park, torque off
            print("arm connected, torque on: running the policy", file=sys.stderr, flush=True)
            park_at_start(arm, park_pose)
            try:
                run_loop(
                    arm,
                    controller,
                    fps=fps,
                    max_steps=max_steps,
                    realtime=realtime,
                    on_step=on_step,
                    on_stop=lambda s: box.setdefault("stats", s),
                    clock=clock or arm.clock,
                )
            except ProtectiveStop as e:
                stop_reason = str(e)
                box["stats"].stopped_by = "protective stop"
            except CameraError as e:  # a frozen view: stop acting on it, park, torque off
                failure = f"camera error: {e}"
                box["stats"].stopped_by = "camera error"
            except KeyboardInterrupt as e:
                done = box["stats"].summary() if "stats" in box else "0 ticks"
                print(f"{signal_name(e)} after {done}; parking, then torque off", file=sys.stderr)
                raise
    except BaseException as e:
        problem = torque_off_problem(arm)
        if problem:
            why = (
                f"stopped by {signal_name(e)}"
                if isinstance(e, KeyboardInterrupt)
                else f"{type(e).__name__}: {e}"
            )
            raise TorqueNotConfirmed(f"{why}; {problem}") from e
        raise
    problem = torque_off_problem(arm)
    if problem:
        why = f"PROTECTIVE STOP: {stop_reason}" if stop_reason else failure or "the run ended"
        raise TorqueNotConfirmed(f"{why}; {problem}")
    return Episode(box["stats"], stop_reason, failure=failure)


def print_report(episodes: list[Episode], clock_note: str, out=None) -> None:
    """Per-episode outcomes, then the per-part tick latencies over all their ticks."""
    out = out or sys.stdout
    for i, ep in enumerate(episodes):
        parts = [f"episode {i}"]
        if ep.seed is not None:
            parts.append(f"seed {ep.seed}")
        if ep.success is not None:
            parts.append(
                f"success after {ep.time_to_success_s:.2f} s" if ep.success else "no success"
            )
        parts.append(ep.stats.summary())
        if ep.stop_reason:
            parts.append(f"PROTECTIVE STOP: {ep.stop_reason}")
        if ep.failure:
            parts.append(ep.failure)
        print(": ".join(parts[:1]) + ": " + ", ".join(parts[1:]), file=out)
    stats = (
        episodes[-1].stats if len(episodes) == 1 else LoopStats.merge([e.stats for e in episodes])
    )
    if len(episodes) > 1:
        print(
            f"latency over {len(episodes)} episodes (p50/p90/p99: tick-weighted means of the "
            "episodes' percentiles):",
            file=out,
        )
    for part in ("observation", "policy", "send", "tick"):
        lat = stats.latency_ms.get(part)
        if lat:
            print(
                f"  {part:>11} ms: p50 {lat['p50']:6.1f}  p90 {lat['p90']:6.1f}  "
                f"p99 {lat['p99']:6.1f}  max {lat['max']:6.1f}",
                file=out,
            )
    if any(e.success is not None for e in episodes):
        k = sum(bool(e.success) for e in episodes)
        print(f"success {k}/{len(episodes)} (sim success check)", file=out)
    print(f"clock: {clock_note}", file=out)
