"""The scripted expert: succeeds, and is a function of the cube's start pose and time only."""

import numpy as np
import pytest

from hardware.control_loop import run_loop
from hardware.sim import CubeDistribution, ScriptedExpert, SimRobot
from hardware.sim.expert import PHASES, grasp_yaw, plan_pick_and_place
from hardware.sim.kinematics import top_down


@pytest.fixture(scope="module")
def robot():
    with SimRobot(cameras=()) as r:
        yield r


def run_episode(robot, expert, seed, **reset):
    robot.reset(seed=seed, **reset)
    expert.reset()
    stats = run_loop(robot, expert, max_steps=400, realtime=False, stop=lambda: expert.done)
    return stats


@pytest.mark.parametrize("seed", [100, 101, 102, 103])
def test_expert_succeeds_from_random_starts(robot, seed):
    expert = ScriptedExpert(robot)
    stats = run_episode(robot, expert, seed)
    assert robot.success(), robot.cube_pose()
    assert 135 <= stats.ticks <= 180  # 4.5-6 s at 30 fps


def test_expert_succeeds_at_a_held_out_location():
    with SimRobot(cameras=(), distribution="held_out") as r:
        expert = ScriptedExpert(r)
        run_episode(r, expert, 0, location=4)  # outside the named locations' hull
        assert r.success()


def test_plan_depends_only_on_start_pose_and_seed(robot):
    expert = ScriptedExpert(robot)
    robot.reset(seed=5)
    expert.reset()
    first = expert.plan.actions.copy()
    robot.send_action(robot.state() + 10)  # whatever happened before does not matter
    robot.reset(seed=5)
    expert.reset()
    np.testing.assert_array_equal(expert.plan.actions, first)
    # Observations are ignored: the action is the plan's row for this tick.
    a0 = expert.get_action({"state": np.zeros(6), "images": {}})
    np.testing.assert_array_equal(a0, first[0])
    robot.reset(seed=6)
    expert.reset()
    assert not np.array_equal(expert.plan.actions[:10], first[:10])


def test_plan_structure_is_the_same_every_time(robot):
    expert = ScriptedExpert(robot)
    for seed in (1, 2, 3):
        robot.reset(seed=seed)
        expert.reset()
        starts = expert.plan.phase_starts
        assert list(starts) == [name for name, _ in PHASES]
        assert list(starts.values()) == sorted(starts.values())
        g = expert.plan.actions[:, 5]
        close, lift = starts["close"], starts["lift"]
        assert g[lift - 1] == 0.0 and g[close - 1] > 40  # open on descent, closed by the lift
        steps = np.abs(np.diff(expert.plan.actions[:, :5], axis=0)).max()
        # Smooth: below 240 deg/s, within an STS3215's no-load speed (~270 deg/s at 12 V).
        assert steps < 8.0


def test_grasp_yaw_is_across_cube_faces_and_near_radial():
    yaw = grasp_yaw(np.array([1.0, 0, 0, 0]), np.array([0.2, 0.1]))
    assert yaw == pytest.approx(0.0)  # radial is 26.6 deg, faces every 90 deg
    q = np.array([np.cos(np.pi / 8), 0, 0, np.sin(np.pi / 8)])  # cube turned by 45 deg
    assert grasp_yaw(q, np.array([0.2, 0.1])) == pytest.approx(np.pi / 4)


def test_expert_grasps_a_turned_cube():
    dist = CubeDistribution(yaw_range_deg=(35.0, 40.0))
    with SimRobot(cameras=(), distribution=dist) as r:
        expert = ScriptedExpert(r)
        run_episode(r, expert, 0)
        assert r.success()


@pytest.mark.slow
@pytest.mark.parametrize("distribution", ["uniform", "named", "held_out"])
def test_expert_succeeds_98_percent_of_100_random_starts(distribution):
    """The issue's bar, in full (the default suite runs a handful of starts above)."""
    from hardware.sim.expert import evaluate

    summary = evaluate(100, seed=5000, distribution=distribution, progress=False)
    assert summary["successes"] >= 98, summary["failures"]


def replay_aimed_at(robot, seed, aim_offset, **plan_kwargs):
    """Plans from a cube position that is off by aim_offset (x, y), as an imitation might be."""
    robot.reset(seed=seed)
    aimed = robot.cube_start_pose.copy()
    aimed[:2] += aim_offset
    plan = plan_pick_and_place(
        robot, aimed, robot.box_pose(), np.random.default_rng(0), **plan_kwargs
    )
    for action in [*plan.actions, *[plan.actions[-1]] * 20]:
        robot.send_action(action)
    return robot.success()


@pytest.mark.parametrize("seed", [7, 8])
def test_grasp_tolerates_aiming_past_the_cube_towards_the_fixed_jaw(robot, seed):
    robot.reset(seed=seed)
    closing = top_down(grasp_yaw(robot.cube_start_pose[3:], robot.cube_start_pose[:2]))[:2, 0]
    # 4 mm too far along the closing direction: the fixed pad's side of the cube.
    off = 0.004 * closing
    assert replay_aimed_at(robot, seed, off)
    assert replay_aimed_at(robot, seed, -off)
    # Aimed at the centre (no clearance), the same error puts the fixed pad on top of the cube.
    assert not replay_aimed_at(robot, seed, off, clearance=0.0)
    assert replay_aimed_at(robot, seed, np.zeros(2), clearance=0.0)
