"""`SimRobot`: the simulated SO-101 in its pick-and-place scene, behind the `Robot` interface.

    with SimRobot(image_size=(96, 128)) as robot:
        obs = robot.reset(seed=0)                 # cube drawn from the start distribution
        sent = robot.send_action(obs["state"])    # hold still for one control period
        robot.success()                           # cube at rest inside the box, released

Control runs at 30 Hz: `send_action` sets the six servo targets and advances the physics by one
control period (16 steps of 1/480 s). A driver that keeps its own time (the servo emulator)
builds the robot with `step_on_action=False` and calls `step_physics(dt)` itself; with
`cameras=()` nothing is ever rendered.

Units are LeRobot's (see `hardware.sim.arm`): joint zero at mid-range, degrees, gripper 0..100.
Physics is deterministic: the same reset seed and the same actions give the same states and the
same images.
"""

from __future__ import annotations

import hashlib

import cv2
import mujoco
import numpy as np

from hardware.conventions import CAMERA_NAMES, FPS, JOINT_NAMES
from hardware.robot import Robot, check_action
from hardware.sim.arm import JOINT_RANGES_DEG, from_lerobot_units, to_lerobot_units
from hardware.sim.cube import CubeDistribution
from hardware.sim.kinematics import Kinematics
from hardware.sim.scene import CONTROL_FPS, SUBSTEPS, SceneConfig, build_scene_xml
from hardware.sim.task import SimTask

# Rest pose between episodes: upper arm leaning back, gripper raised 17 cm over the near edge of
# the workspace and half open, hiding no start position of the cube from either camera.
# Degrees; gripper 0..100.
HOME = np.array([0.0, -100.0, 40.0, 90.0, 0.0, 30.0])
SETTLE_S = 0.1  # physics time after a reset, so that every episode starts at rest

# The range each action entry is clipped to (LeRobot units).
ACTION_LOW = np.append(JOINT_RANGES_DEG[:5, 0], 0.0)
ACTION_HIGH = np.append(JOINT_RANGES_DEG[:5, 1], 100.0)


class SimRobot(Robot, SimTask):
    """The simulated arm (MuJoCo) with a top and a lateral camera, and the pick-and-place trial
    around it (a `SimTask`).

    Args:
      image_size: (height, width) of every camera image; at most (480, 640).
      cameras: which cameras to render, a subset of ("top", "lateral"); () renders nothing.
      distribution: cube start distribution: "uniform", "named", "held_out" or a
        `CubeDistribution`.
      seed: seeds the draws of resets called without a seed.
      scene: sizes and poses of the scene's objects.
      step_on_action: whether `send_action` advances the physics by one control period.
      supersample: render at this multiple of image_size and average down: anti-aliased
        images for about twice the rendering time (1.2 vs 0.5 ms a camera at 96x128 on this
        CPU, more when other jobs compete for it). Off by default: the speed budget is 5 ms a
        tick for physics and both cameras.
    """

    robot_type = "sim_so101"

    def __init__(
        self,
        image_size: tuple[int, int] = (480, 640),
        cameras: tuple[str, ...] = CAMERA_NAMES,
        distribution: str | CubeDistribution = "uniform",
        seed: int | None = None,
        scene: SceneConfig | None = None,
        step_on_action: bool = True,
        supersample: int = 1,
    ):
        h, w = (int(v) for v in image_size)
        if not (0 < h <= 480 and 0 < w <= 640):
            raise ValueError(f"image_size {image_size} must be (height, width) within (480, 640)")
        if supersample < 1 or supersample * h > 480 or supersample * w > 640:
            raise ValueError(f"supersample {supersample} x image_size {image_size} exceeds 480x640")
        self.supersample = int(supersample)
        unknown = set(cameras) - set(CAMERA_NAMES)
        if unknown:
            raise ValueError(f"unknown camera(s) {sorted(unknown)}: the sim has {CAMERA_NAMES}")
        self.image_size = (h, w)
        self.cameras = tuple(cameras)
        self.fps = FPS
        assert FPS == CONTROL_FPS
        self.distribution = CubeDistribution.make(distribution)
        self.scene = scene or SceneConfig()
        self.step_on_action = step_on_action
        self._rng = np.random.default_rng(seed)
        xml = build_scene_xml(self.scene)
        # Identifies the world (geometry, cameras, physics): stored with recordings, so that
        # a recording is never resumed in a changed scene.
        self.scene_hash = hashlib.sha1(xml.encode()).hexdigest()[:12]
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        self._renderer: mujoco.Renderer | None = None
        self._connected = False
        self._kinematics: Kinematics | None = None
        m = self.model
        self._qadr = np.array([m.joint(n).qposadr[0] for n in JOINT_NAMES])
        self._vadr = np.array([m.joint(n).dofadr[0] for n in JOINT_NAMES])
        self._act = np.array([m.actuator(n).id for n in JOINT_NAMES])
        cube_joint = m.joint("cube")
        self._cube_q = cube_joint.qposadr[0]
        self._cube_v = cube_joint.dofadr[0]
        self._cube_geom = m.geom("cube").id
        self._cube_body = m.body("cube").id
        self._tcp_site = m.site("tcp").id
        arm_root = m.body("base").id
        self._arm_bodies = {b for b in range(m.nbody) if self._in_subtree(b, arm_root)}
        self.cube_start_pose = np.full(7, np.nan)
        self.location_id = -1
        self.last_seed = -1
        self._reset_state(HOME, self.distribution.corners(self.scene.cube_size)[-1])

    def _in_subtree(self, body: int, root: int) -> bool:
        while body > 0:
            if body == root:
                return True
            body = self.model.body_parentid[body]
        return False

    # --- Robot interface ---------------------------------------------------------------------

    def connect(self) -> None:
        if self._connected:
            return
        if self.cameras:
            h, w = self.image_size
            # One renderer serves every camera: they share a size. Shadows and reflections
            # cost ~40 ms a frame on a CPU renderer and add nothing a policy needs.
            k = self.supersample
            self._renderer = mujoco.Renderer(self.model, k * h, k * w)
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        self._connected = True

    def disconnect(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._connected = False

    @property
    def is_connected(self) -> bool:
        return self._connected

    def get_observation(self) -> dict:
        if not self._connected:
            raise RuntimeError("SimRobot is not connected: use `with SimRobot(...) as robot:`")
        images = {cam: self.render(cam) for cam in self.cameras}
        return {"images": images, "state": self.state()}

    def send_action(self, action: np.ndarray) -> np.ndarray:
        a = check_action(action, "SimRobot")
        sent = np.clip(a, ACTION_LOW, ACTION_HIGH)
        self.data.ctrl[self._act] = from_lerobot_units(sent)
        if self.step_on_action:
            mujoco.mj_step(self.model, self.data, nstep=SUBSTEPS)
        return sent.astype(np.float32)

    # --- what only the simulation has ----------------------------------------------------------

    @property
    def num_locations(self) -> int:
        """Named locations of the start distribution (0 for a uniform region)."""
        return self.distribution.num_locations

    @property
    def time(self) -> float:
        """Simulated seconds since the last reset."""
        return float(self.data.time)

    @property
    def kinematics(self) -> Kinematics:
        if self._kinematics is None:
            self._kinematics = Kinematics(self.model)
        return self._kinematics

    def reset(
        self,
        seed: int | None = None,
        cube_pose: np.ndarray | None = None,
        location: int | None = None,
    ) -> dict | None:
        """Puts the arm at HOME and the cube at a start pose; returns the first observation.

        Args:
          seed: seeds the draw of the cube pose (None: the robot's own generator draws one).
          cube_pose: (7,) x, y, z, qw, qx, qy, qz to use instead of a draw.
          location: index of a location of a named/held_out distribution.

        Returns:
          The observation, or None when the robot is not connected (physics-only use).
        """
        if seed is None:
            seed = int(self._rng.integers(2**31))
        self.last_seed = int(seed)
        pose, loc_id = self.distribution.sample(
            np.random.default_rng(seed), self.scene.cube_size, location
        )
        if cube_pose is not None:
            pose = np.asarray(cube_pose, np.float64)
            if pose.shape != (7,):
                raise ValueError(f"cube_pose must be (7,) x,y,z,qw,qx,qy,qz, got {pose.shape}")
            loc_id = -1
        self._reset_state(HOME, pose)
        self.location_id = loc_id
        self.cube_start_pose = self.cube_pose()
        return self.get_observation() if self._connected else None

    def _reset_state(self, joints: np.ndarray, cube_pose: np.ndarray) -> None:
        mujoco.mj_resetData(self.model, self.data)
        q = from_lerobot_units(joints)
        self.data.qpos[self._qadr] = q
        self.data.ctrl[self._act] = q
        self.data.qpos[self._cube_q : self._cube_q + 7] = cube_pose
        self.data.qpos[self._cube_q + 3 : self._cube_q + 7] /= np.linalg.norm(cube_pose[3:])
        mujoco.mj_forward(self.model, self.data)
        self.step_physics(SETTLE_S)
        self.data.time = 0.0

    def step_physics(self, dt: float) -> None:
        """Advances the physics by `dt` seconds (rounded to whole physics steps), no rendering."""
        n = int(round(dt / self.model.opt.timestep))
        if n > 0:
            mujoco.mj_step(self.model, self.data, nstep=n)

    def set_targets(self, targets: np.ndarray) -> np.ndarray:
        """Sets the servo targets (LeRobot units) without advancing time. Returns them clipped."""
        a = np.clip(check_action(targets, "SimRobot"), ACTION_LOW, ACTION_HIGH)
        self.data.ctrl[self._act] = from_lerobot_units(a)
        return a.astype(np.float32)

    def state(self) -> np.ndarray:
        """(6,) float32 measured joint positions in LeRobot units (no rendering)."""
        return to_lerobot_units(self.data.qpos[self._qadr])

    def joint_velocities(self) -> np.ndarray:
        """(6,) joint velocities, degrees per second (gripper: its joint, also degrees/s)."""
        return np.degrees(self.data.qvel[self._vadr]).astype(np.float32)

    def render(self, camera: str) -> np.ndarray:
        """One camera's current view, (H, W, 3) uint8 RGB."""
        if self._renderer is None:
            raise RuntimeError("no renderer: connect first, with at least one camera")
        self._renderer.update_scene(self.data, camera=camera)
        img = self._renderer.render()
        if self.supersample > 1:
            h, w = self.image_size
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        return img

    def segmentation(self, camera: str) -> np.ndarray:
        """Which geom each pixel of a camera shows: (H, W) int32 geom ids, -1 for none."""
        if self._renderer is None:
            raise RuntimeError("no renderer: connect first, with at least one camera")
        self._renderer.enable_segmentation_rendering()
        try:
            self._renderer.update_scene(self.data, camera=camera)
            seg = self._renderer.render()
        finally:
            self._renderer.disable_segmentation_rendering()
        k = self.supersample
        return np.where(seg[..., 1] == mujoco.mjtObj.mjOBJ_GEOM, seg[..., 0], -1)[::k, ::k]

    def cube_pixels(self, camera: str) -> int:
        """How many pixels of a camera's image show the cube (occlusion included)."""
        return int((self.segmentation(camera) == self._cube_geom).sum())

    def cube_pose(self) -> np.ndarray:
        """(7,) the cube's x, y, z (m) and quaternion w, x, y, z."""
        return self.data.qpos[self._cube_q : self._cube_q + 7].copy()

    def tool_point(self) -> np.ndarray:
        """(3,) where the `tcp` site (midway between the gripper pads) is now, metres."""
        return self.data.site_xpos[self._tcp_site].copy()

    def box_pose(self) -> np.ndarray:
        """(7,) the box's centre on the table and its orientation (fixed)."""
        b = self.model.body("box")
        return np.concatenate([b.pos, b.quat]).astype(np.float64)

    def cube_in_gripper_contact(self) -> bool:
        """Whether the cube touches any part of the arm."""
        for c in self.data.contact[: self.data.ncon]:
            g1, g2 = c.geom1, c.geom2
            if self._cube_geom in (g1, g2):
                other = g2 if g1 == self._cube_geom else g1
                if self.model.geom_bodyid[other] in self._arm_bodies:
                    return True
        return False

    def success(self) -> bool:
        """The cube rests inside the box and nothing of the arm touches it."""
        pos = self.data.qpos[self._cube_q : self._cube_q + 3]
        box = self.model.body("box").pos
        half_inner = self.scene.box_inner / 2
        inside = (
            abs(pos[0] - box[0]) < half_inner
            and abs(pos[1] - box[1]) < half_inner
            and pos[2] < self.scene.box_wall_height
        )
        speed = np.linalg.norm(self.data.qvel[self._cube_v : self._cube_v + 3])
        return bool(inside and speed < 0.02 and not self.cube_in_gripper_contact())
