"""Forward/inverse kinematics of the simulated SO-101, and its unit conventions."""

import numpy as np
import pytest

from hardware.sim import SimRobot
from hardware.sim.arm import JOINT_RANGES_DEG, from_lerobot_units, to_lerobot_units
from hardware.sim.kinematics import top_down


@pytest.fixture(scope="module")
def kin():
    return SimRobot(cameras=()).kinematics


def test_fk_ik_round_trip_within_1mm(kin):
    # Random configurations of the working range (80% of each joint's travel), i.e. reachable
    # poses by construction; IK starts from a fixed seed, not from the answer.
    rng = np.random.default_rng(0)
    lo, hi = np.radians(JOINT_RANGES_DEG[:5, 0]) * 0.8, np.radians(JOINT_RANGES_DEG[:5, 1]) * 0.8
    seed_q = np.radians([0.0, -30.0, 30.0, 60.0, 0.0])
    errors = []
    for _ in range(100):
        q = rng.uniform(lo, hi)
        pos, rot = kin.fk(q)
        res = kin.ik_global(pos, rot, seed_q)
        got_pos, got_rot = kin.fk(res.q)
        errors.append(np.linalg.norm(got_pos - pos))
        assert np.linalg.norm(got_pos - pos) < 1e-3, (q, res)
        assert np.allclose(got_rot, rot, atol=1e-2)
    assert np.median(errors) < 1e-5


def test_vertical_grasps_reach_the_whole_cube_region(kin):
    seed_q = np.radians([0.0, -30.0, 30.0, 60.0, 0.0])
    for x in (0.14, 0.2, 0.26):
        for y in (-0.1, -0.02, 0.06):
            for z in (0.0145, 0.065):
                res = kin.ik(np.array([x, y, z]), top_down(0.0), seed_q)
                assert res.converged, (x, y, z, res)


def test_lerobot_units_round_trip_and_gripper_scale():
    q = np.radians([10.0, -20.0, 30.0, -40.0, 50.0, 0.0])
    units = to_lerobot_units(q)
    np.testing.assert_allclose(units[:5], [10, -20, 30, -40, 50], atol=1e-4)
    np.testing.assert_allclose(from_lerobot_units(units), q, atol=1e-6)
    closed, opened = np.radians(JOINT_RANGES_DEG[5])
    assert to_lerobot_units(np.array([0, 0, 0, 0, 0, closed]))[5] == pytest.approx(0.0, abs=1e-4)
    assert to_lerobot_units(np.array([0, 0, 0, 0, 0, opened]))[5] == pytest.approx(100.0)
