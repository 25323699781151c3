"""The control loop: call order, fixed rate and overruns, every way of stopping."""

import numpy as np
import pytest

from hardware.control_loop import run_loop
from hardware.robot import Robot
from hardware.sim import HOME, SimRobot


class LogRobot(Robot):
    """A Robot that logs the calls made to it (the loop's contract, not a robot's physics)."""

    robot_type = "log"

    def __init__(self):
        self.calls = []
        self.position = np.zeros(6, np.float32)
        self._connected = False

    def connect(self):
        self._connected = True

    def disconnect(self):
        self._connected = False

    @property
    def is_connected(self):
        return self._connected

    def get_observation(self):
        self.calls.append("observe")
        return {"images": {}, "state": self.position.copy()}

    def send_action(self, action):
        self.calls.append("send")
        self.position = np.clip(action, -10, 10).astype(np.float32)
        return self.position.copy()


def test_each_tick_observes_decides_sends_in_order():
    robot, seen = LogRobot(), []

    def policy(obs):
        robot.calls.append("policy")
        return obs["state"] + 4

    stats = run_loop(
        robot,
        policy,
        max_steps=3,
        realtime=False,
        on_step=lambda t, o, a, s: seen.append((t, a.copy(), s.copy())),
    )
    assert robot.calls == ["observe", "policy", "send"] * 3
    assert stats.ticks == 3 and stats.stopped_by == "max_steps"
    # on_step sees both the policy's action and what the robot actually sent (clipped).
    assert [t for t, _, _ in seen] == [0, 1, 2]
    np.testing.assert_array_equal(seen[2][1], np.full(6, 12))
    np.testing.assert_array_equal(seen[2][2], np.full(6, 10))
    assert set(stats.latency_ms) == {"observation", "policy", "send", "tick"}


class ManualClock:
    """The `time` module's `monotonic()` and `sleep()` on a clock that moves only when told."""

    def __init__(self):
        self.now, self.sleeps = 100.0, []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_realtime_keeps_the_rate_and_counts_overruns():
    clock, robot = ManualClock(), LogRobot()

    def policy(obs):  # a tick's work takes 5 ms of the 20 ms period
        clock.now += 0.005
        return obs["state"]

    stats = run_loop(robot, policy, fps=50, max_steps=10, realtime=True, clock=clock)
    assert stats.ticks == 10 and stats.overruns == 0
    assert clock.sleeps == pytest.approx([0.015] * 10)  # each tick sleeps to the next grid point
    assert clock.now == pytest.approx(100.2)  # 10 ticks on a 20 ms grid

    def slow(obs):  # 30 ms: longer than the period, every tick
        clock.now += 0.03
        return obs["state"]

    clock.sleeps.clear()
    stats = run_loop(robot, slow, fps=50, max_steps=4, realtime=True, clock=clock)
    assert stats.overruns == 4 and clock.sleeps == []  # no sleeping, no bursting to catch up

    ticks = iter(range(6))

    def late_once(obs):  # tick 3 takes 50 ms, the others 5 ms: the grid restarts after it
        clock.now += 0.05 if next(ticks) == 3 else 0.005
        return obs["state"]

    clock.sleeps.clear()
    stats = run_loop(robot, late_once, fps=50, max_steps=6, realtime=True, clock=clock)
    assert stats.overruns == 1
    assert clock.sleeps == pytest.approx([0.015] * 3 + [0.015] * 2)


def test_flat_out_never_touches_the_clock():
    clock = ManualClock()
    stats = run_loop(LogRobot(), lambda o: o["state"], max_steps=5, realtime=False, clock=clock)
    assert stats.ticks == 5 and stats.overruns == 0 and clock.sleeps == [] and clock.now == 100.0


def test_stops_on_stop_and_on_step():
    robot = LogRobot()
    stats = run_loop(
        robot,
        lambda o: o["state"],
        max_steps=100,
        realtime=False,
        stop=lambda: len(robot.calls) >= 10,
    )
    assert stats.stopped_by == "stop" and stats.ticks == 5
    stats = run_loop(
        robot, lambda o: o["state"], max_steps=100, realtime=False, on_step=lambda t, *_: t == 6
    )
    assert stats.stopped_by == "on_step" and stats.ticks == 7


def test_keyboard_interrupt_runs_on_stop_then_propagates():
    robot, stopped = LogRobot(), []

    def policy(obs):
        if len(robot.calls) > 7:
            raise KeyboardInterrupt
        return obs["state"]

    with pytest.raises(KeyboardInterrupt):
        run_loop(robot, policy, max_steps=100, realtime=False, on_stop=stopped.append)
    assert len(stopped) == 1 and stopped[0].stopped_by == "interrupt"
    assert stopped[0].ticks == 4  # the interrupted tick never sent its action


def test_drives_the_simulated_arm():
    with SimRobot(cameras=()) as robot:
        robot.reset(seed=0)
        target = HOME + np.array([15.0, 0, 0, 0, 0, 0])
        stats = run_loop(robot, lambda obs: target, max_steps=30, realtime=False)
        assert stats.ticks == 30 and robot.time == pytest.approx(1.0, abs=1e-6)
        assert robot.state()[0] == pytest.approx(15.0, abs=0.5)


def test_bad_rate_is_rejected():
    with pytest.raises(ValueError, match="fps"):
        run_loop(LogRobot(), lambda o: o["state"], fps=0, max_steps=1)


def test_stop_signals_arrive_as_one_interrupt_and_the_old_handlers_return():
    import os
    import signal

    from hardware.control_loop import Terminated, exit_status, signal_name, stop_signals

    before = signal.getsignal(signal.SIGTERM)
    caught = []
    with stop_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next statement
            raise AssertionError("SIGTERM was not delivered")
        except KeyboardInterrupt as e:  # what every park-and-torque-off path catches
            caught.append(e)
            os.kill(os.getpid(), signal.SIGHUP)  # a second stop while making the arm safe
    (e,) = caught
    assert isinstance(e, Terminated) and e.signum == signal.SIGTERM
    assert signal_name(e) == "SIGTERM" and exit_status(e) == 143
    ctrl_c = KeyboardInterrupt()
    assert signal_name(ctrl_c) == "interrupt" and exit_status(ctrl_c) == 130
    assert signal.getsignal(signal.SIGTERM) == before


def test_held_for_counts_consecutive_ticks_and_dates_the_run_that_lasted():
    from hardware.control_loop import HeldFor

    held = HeldFor(3, fps=10)
    seen = [held.update(t, ok) for t, ok in enumerate([1, 1, 0, 1, 1, 1, 1])]
    assert seen == [False, False, False, False, False, True, True]
    assert held.time_s == 0.4  # the run that lasted began at tick 3, i.e. after 0.4 s
    assert HeldFor(2, fps=30).time_s is None
    with pytest.raises(ValueError, match="at least 1"):
        HeldFor(0, fps=30)
