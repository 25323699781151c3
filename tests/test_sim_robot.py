"""The simulated arm behind the Robot interface: cameras, units, servos, determinism, success."""

import numpy as np
import pytest

from hardware.conventions import CAMERA_NAMES
from hardware.sim import HOME, CubeDistribution, SimRobot

SMALL = (48, 64)


@pytest.fixture(scope="module")
def robot():
    with SimRobot(image_size=SMALL) as r:
        yield r


def test_observation_layout_and_units(robot):
    obs = robot.reset(seed=0)
    assert set(obs["images"]) == set(CAMERA_NAMES)
    for img in obs["images"].values():
        assert img.shape == (*SMALL, 3) and img.dtype == np.uint8
    assert obs["state"].shape == (6,) and obs["state"].dtype == np.float32
    np.testing.assert_allclose(obs["state"], HOME, atol=0.5)  # at rest, degrees / gripper %


def test_cameras_render_non_blank_different_images(robot):
    obs = robot.reset(seed=1)
    top, lateral = obs["images"]["top"], obs["images"]["lateral"]
    for img in (top, lateral):
        assert img.std() > 10  # not a flat colour
    assert np.abs(top.astype(int) - lateral.astype(int)).mean() > 10


@pytest.mark.parametrize("kind", ["uniform", "named", "held_out"])
def test_cube_visible_in_both_cameras_at_every_extreme_start(kind):
    # Corners and centre of the uniform region (a convex region seen by fixed cameras) or every
    # location of a discrete distribution, at the lowest resolution a policy would use.
    with SimRobot(image_size=SMALL, distribution=kind) as r:
        poses = r.distribution.corners(r.scene.cube_size)
        if kind == "uniform":  # and some draws from inside the region
            rng = np.random.default_rng(0)
            poses += [r.distribution.sample(rng, r.scene.cube_size)[0] for _ in range(10)]
        for pose in poses:
            r.reset(cube_pose=pose)
            for cam in CAMERA_NAMES:
                assert r.cube_pixels(cam) >= 6, (kind, pose[:2], cam)
                # ... and it shows up as red pixels in the RGB image too.
                img = r.render(cam).astype(int)
                red = (img[..., 0] > 120) & (img[..., 1] < 60) & (img[..., 2] < 60)
                assert red.sum() >= 4, (kind, pose[:2], cam)


def test_send_action_clips_and_returns_what_was_sent(robot):
    robot.reset(seed=0)
    sent = robot.send_action(np.array([500.0, 0.0, 0.0, 0.0, 0.0, 150.0]))
    assert sent[0] == pytest.approx(110.0, abs=0.01)  # shoulder_pan range is +-110 deg
    assert sent[5] == 100.0
    with pytest.raises(ValueError, match="shape"):
        robot.send_action(np.zeros(5))
    with pytest.raises(ValueError, match="elbow_flex"):
        robot.send_action(np.array([0, 0, np.nan, 0, 0, 0]))


def test_stiff_servos_track_a_step_target(robot):
    robot.reset(seed=0)
    target = HOME + np.array([20.0, 15.0, -15.0, -10.0, 30.0, 0.0])
    for _ in range(30):  # one second
        robot.send_action(target)
    np.testing.assert_allclose(robot.state()[:5], target[:5], atol=1.0)


def test_physics_and_images_are_deterministic():
    rng = np.random.default_rng(0)
    actions = HOME + rng.normal(0, 5, size=(20, 6))
    runs = []
    for _ in range(2):
        with SimRobot(image_size=SMALL) as r:
            r.reset(seed=7)
            for a in actions:
                r.send_action(a)
            obs = r.get_observation()
            runs.append((obs["state"], obs["images"]["top"], r.cube_pose()))
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_physics_only_robot_for_external_drivers():
    r = SimRobot(cameras=(), step_on_action=False)
    with r:
        r.reset(seed=0)
        before = r.state()
        r.send_action(HOME + [30, 0, 0, 0, 0, 0])
        assert r.time == 0.0 and np.allclose(r.state(), before)  # no time passes by itself
        r.step_physics(0.5)
        assert r.time == pytest.approx(0.5, abs=1e-3)
        assert r.state()[0] == pytest.approx(30.0, abs=1.0)
        assert r.get_observation()["images"] == {}


def test_reset_locations_and_ids():
    r = SimRobot(cameras=(), distribution="named")
    assert r.num_locations == 5
    r.reset(seed=0, location=3)
    assert r.location_id == 3
    np.testing.assert_allclose(r.cube_start_pose[:2], CubeDistribution.make("named").locations[3])
    with pytest.raises(ValueError, match="out of range"):
        r.reset(location=5)
    h = SimRobot(cameras=(), distribution="held_out")
    h.reset(seed=0, location=0)
    assert h.location_id == 5  # held-out ids follow the named ones
    u = SimRobot(cameras=())
    u.reset(seed=0)
    assert u.location_id == -1 and u.num_locations == 0
    with pytest.raises(ValueError, match="unknown cube distribution"):
        SimRobot(distribution="everywhere")


def test_success_needs_the_cube_at_rest_inside_the_box():
    r = SimRobot(cameras=())
    r.reset(seed=0)
    assert not r.success()
    box = r.box_pose()
    inside = np.array([box[0], box[1], 0.03, 1, 0, 0, 0])
    r.reset(cube_pose=inside)  # dropped from 3 cm into the box, settles within a second
    r.step_physics(1.0)
    assert r.success()
    r.reset(cube_pose=np.array([box[0], box[1] + 0.08, 0.0125, 1, 0, 0, 0]))  # beside it
    r.step_physics(0.5)
    assert not r.success()


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(ValueError, match="image_size"):
        SimRobot(image_size=(720, 1280))
    with pytest.raises(ValueError, match="unknown camera"):
        SimRobot(cameras=("wrist",))


def test_servo_torques_stay_within_sts3215_limits(robot):
    from hardware.sim.arm import GRIPPER_FORCE, SERVO_FORCE

    robot.reset(seed=0)
    peak = np.zeros(6)
    for _ in range(10):  # a violent step: every joint saturates
        robot.send_action(HOME + np.array([60.0, 60.0, -60.0, -60.0, 90.0, -30.0]))
        peak = np.maximum(peak, np.abs(robot.data.actuator_force))
    assert peak[:5].max() == pytest.approx(SERVO_FORCE, rel=1e-6)
    assert peak[5] <= GRIPPER_FORCE + 1e-9


def test_supersampled_rendering_keeps_the_requested_size():
    with SimRobot(image_size=SMALL, supersample=2) as r:
        obs = r.reset(seed=0)
        assert obs["images"]["top"].shape == (*SMALL, 3)
        assert r.segmentation("top").shape == SMALL and r.cube_pixels("top") > 0
    with pytest.raises(ValueError, match="supersample"):
        SimRobot(image_size=(480, 640), supersample=2)
