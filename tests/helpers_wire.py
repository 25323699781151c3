"""Assertions over an emulator's wire log that hold however the host's timing falls."""

from __future__ import annotations


def assert_torque_off_last(emu, ids=range(1, 7)) -> None:
    """Every servo ends with torque off, written after the last goal, and never turned back on.

    The order of the torque-off writes is not asserted: a read-back that times out on a loaded
    host makes the bus write 0 to that servo again, so one servo may appear twice, out of order.
    """
    goals = emu.writes("Goal_Position")
    last_goal = goals[-1][0] if goals else float("-inf")
    after = [(i, v) for t, i, v in emu.writes("Torque_Enable") if t >= last_goal]
    assert all(v == 0 for _, v in after), after
    assert sorted({i for i, _ in after}) == sorted(ids), after
    assert [emu.get(i, "Torque_Enable") for i in ids] == [0] * len(list(ids))
