"""SafetyGuard: whatever the policy emits, the goal is finite, inside the limits, rate limited."""

import os
import signal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hardware.arms.safety import (
    Level,
    SafetyConfig,
    SafetyGuard,
    Status,
    ThermalMonitor,
    deferred_sigint,
)

LOWER = np.array([-110, -100, -97, -95, -180, 0.0])
UPPER = np.array([110, 100, 97, 95, 180, 100.0])
STEP = 10.0

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
actions = st.one_of(
    hnp.arrays(np.float64, (6,), elements=floats),
    hnp.arrays(np.float64, st.sampled_from([(5,), (7,), (1, 6), (6, 1), ()]), elements=floats),
    hnp.arrays(np.float32, (6,), elements=st.floats(width=32, allow_nan=True)),
    st.just(None),
    st.just("six"),
    st.lists(floats, min_size=6, max_size=6),
)


def make_guard(**kw):
    kw.setdefault("margin", 0.0)
    guard = SafetyGuard(LOWER, UPPER, SafetyConfig(max_step=STEP, **kw))
    guard.reset(np.zeros(6))
    return guard


@given(seq=st.lists(actions, min_size=1, max_size=30))
@settings(max_examples=300, deadline=None)
def test_goal_always_finite_in_range_and_rate_limited(seq):
    guard = make_guard(max_rejects=10**6)
    last = guard.last.copy()
    for t, action in enumerate(seq):
        cmd = guard.filter(action, now=t / 30)
        assert cmd.goal.shape == (6,) and np.all(np.isfinite(cmd.goal))
        assert np.all(cmd.goal >= guard.lower) and np.all(cmd.goal <= guard.upper)
        assert np.all(np.abs(cmd.goal - last) <= STEP + 1e-9)
        a = np.asarray(action, dtype=object)
        ok_input = a.shape == (6,) and all(
            isinstance(x, (int, float, np.floating)) and np.isfinite(x) for x in a
        )
        if not ok_input:
            assert cmd.status is Status.REJECTED and np.array_equal(cmd.goal, last)
        last = cmd.goal


@pytest.mark.parametrize(
    "bad",
    [
        np.full(6, np.nan),
        np.array([0, 0, 0, 0, 0, np.nan]),
        np.array([np.inf, 0, 0, 0, 0, 0]),
        np.array([-np.inf] * 6),
        np.zeros(5),
        np.zeros((2, 6)),
        None,
    ],
)
def test_bad_actions_hold_last_safe_and_stop_after_k(bad):
    guard = make_guard(max_rejects=3)
    good = guard.filter(np.array([5, 5, 5, 5, 5, 50.0]), now=0.0)
    assert good.status is Status.LIMITED  # the gripper step 0 -> 50 was rate limited to 10
    statuses = [guard.filter(bad, now=t).status for t in (1, 2, 3)]
    assert statuses == [Status.REJECTED, Status.REJECTED, Status.STOPPED]
    assert guard.stopped and "3 bad actions in a row" in guard.stop_reason
    after = guard.filter(np.zeros(6), now=4)  # a good action cannot undo a latched stop
    assert after.status is Status.STOPPED and np.array_equal(after.goal, good.goal)
    guard.reset(np.zeros(6))
    assert not guard.stopped


def test_a_good_action_resets_the_reject_count():
    guard = make_guard(max_rejects=3)
    for t in range(10):
        guard.filter(np.full(6, np.nan), now=t)
        guard.filter(np.zeros(6), now=t + 0.5)
    assert not guard.stopped and guard.counts[Status.REJECTED] == 10


def test_clamp_margin_and_huge_values():
    guard = make_guard(margin=2.0)
    for _ in range(100):
        cmd = guard.filter(np.array([1e9, -1e9, 1e300, -1e300, 1e9, 1e9]), now=0)
    np.testing.assert_allclose(cmd.goal, [108, -98, 95, -93, 178, 98])


def test_step_jump_of_90_degrees_is_spread_over_ticks():
    guard = make_guard()
    goals = []
    for t in range(12):
        goals.append(guard.filter(np.array([90, 0, 0, 0, 0, 0.0]), now=t).goal[0])
    assert goals[:9] == [10 * (i + 1) for i in range(9)] and goals[9:] == [90, 90, 90]


def test_late_action_holds():
    guard = make_guard(max_action_age_s=0.05, max_rejects=2)
    cmd = guard.filter(np.ones(6), now=1.0, stamp=0.9)
    assert cmd.status is Status.LATE and np.array_equal(cmd.goal, np.zeros(6))
    assert guard.filter(np.ones(6), now=1.0, stamp=0.99).status is Status.OK
    guard.filter(np.ones(6), now=2.0, stamp=0.0)
    assert guard.filter(np.ones(6), now=3.0, stamp=0.0).status is Status.STOPPED


def test_derate_slows_one_joint():
    guard = make_guard(derate_factor=0.5)
    guard.derate(5, True)
    cmd = guard.filter(np.array([50, 0, 0, 0, 0, 50.0]), now=0)
    np.testing.assert_allclose(cmd.goal, [10, 0, 0, 0, 0, 5])
    guard.derate(5, False)
    assert guard.filter(np.array([50, 0, 0, 0, 0, 50.0]), now=1).goal[5] == 15


def test_thermal_levels():
    mon = ThermalMonitor(
        SafetyConfig(temp_warn=50, temp_derate=55, temp_stop=60, load_derate=0.8, load_stop=0.95)
    )

    def twice(joint, temp, load):
        first = mon.update(joint, temp, load)
        return first, mon.update(joint, temp, load)

    assert twice("gripper", 30, 0.1) == (Level.OK, Level.OK)
    assert twice("gripper", 52, 0.1) == (Level.OK, Level.WARN)
    assert twice("gripper", 40, 0.85) == (Level.WARN, Level.DERATE)
    assert twice("gripper", 61, 0.0) == (Level.DERATE, Level.STOP)
    assert twice("elbow_flex", 30, -0.99) == (Level.OK, Level.STOP)
    # One wild reading (a mangled reply) between normal ones changes nothing.
    assert [mon.update("wrist_flex", t, 0) for t in (30, 255, 30)] == [Level.OK] * 3


def test_config_validation():
    with pytest.raises(ValueError, match="park_pose"):
        SafetyConfig(exit_mode="park")
    with pytest.raises(ValueError, match="exit_mode"):
        SafetyConfig(exit_mode="drop")
    with pytest.raises(ValueError, match="max_step"):
        SafetyConfig(max_step=float("nan"))
    with pytest.raises(ValueError, match="lower < upper"):
        SafetyGuard(np.zeros(6), np.zeros(6))
    with pytest.raises(RuntimeError, match="reset"):
        SafetyGuard(LOWER, UPPER).filter(np.zeros(6), now=0)


def test_deferred_sigint_swallows_ctrl_c():
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN under nohup, else Python's default
    with deferred_sigint() as pressed:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
    assert len(pressed) == 2
    assert signal.getsignal(signal.SIGINT) is before


def test_a_stop_signal_during_teardown_waits_for_the_teardown():
    from hardware.control_loop import Terminated, stop_signals

    steps = []
    with stop_signals(), pytest.raises(Terminated) as e:
        with deferred_sigint():
            os.kill(os.getpid(), signal.SIGTERM)  # held back: the park goes on
            steps.append("parked")
            steps.append("torque off")
    assert steps == ["parked", "torque off"] and e.value.signum == signal.SIGTERM
