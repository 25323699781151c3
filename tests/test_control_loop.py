"""The control loop: call order, fixed rate and overruns, every way of stopping."""

import time

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


def test_realtime_keeps_the_rate_and_counts_overruns():
    robot = LogRobot()
    t0 = time.perf_counter()
    stats = run_loop(robot, lambda o: o["state"], fps=50, max_steps=10, realtime=True)
    assert time.perf_counter() - t0 >= 9 * 0.02 - 1e-3  # 10 ticks on a 20 ms grid
    assert stats.overruns <= 2  # a loaded CI machine may preempt a tick now and then

    def slow(obs):
        time.sleep(0.03)  # longer than the 20 ms period
        return obs["state"]

    stats = run_loop(robot, slow, fps=50, max_steps=4, realtime=True)
    assert stats.overruns == 4
    assert stats.latency_ms["policy"]["p50"] >= 29


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
