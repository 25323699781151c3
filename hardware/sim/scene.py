"""The pick-and-place scene: table, SO-101 arm, a red cube, an open blue box, two cameras.

World frame: z up, the table top at z = 0, the arm's base at the origin facing +x. The cube
starts in front of the arm (see `hardware.sim.cube`) and goes into the box, which sits at a
fixed pose to the arm's left (+y), so the place location is always the same.

Cameras (both fixed, aimed with `look_at`):
    top      overhead, looking down at the workspace; image up = +x, image right = -y
    lateral  from the arm's right side, looking across the workspace towards the box

Rendering is for speed: no shadows or reflections (the renderer turns them off), no
multisampling (on a CPU renderer 2x MSAA costs 10x at 480x640; `SimRobot(supersample=2)`
anti-aliases more cheaply by rendering at twice the size and averaging down), a plain matte
table, and saturated colours so that the cube stays a clear blob of red even at 48x64 pixels.
The offscreen buffer is 640x480, the largest size the cameras render at.

`build_scene_xml(SceneConfig())` returns the MJCF text; `python -m hardware.sim.snapshot --out
scene.xml` writes it for inspection in MuJoCo's viewer, `--snapshot scene.png` saves what the
two cameras see at a reset (a command apart from this module, which `SimRobot` imports).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hardware.sim.arm import arm_actuators, arm_defaults, arm_worldbody

CONTROL_FPS = 30
SUBSTEPS = 16  # physics steps per control step: dt = 1/480 s keeps the stiff servos stable


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """Sizes and poses of the scene's objects (metres, kilograms).

    Attributes:
      cube_size: edge length of the cube.
      cube_mass: its mass (a 2.5 cm hardwood cube is ~12 g; heavier is a harder grasp).
      box_center: (x, y) of the box's centre on the table.
      box_inner: inner edge length of the (square) box.
      box_wall_height, box_wall_thickness: walls of the box.
      top_camera, lateral_camera: (eye (3,), target (3,), vertical field of view in degrees,
        the world direction that should point up in the image).
    """

    cube_size: float = 0.025
    cube_mass: float = 0.015
    box_center: tuple[float, float] = (0.17, 0.165)
    box_inner: float = 0.075
    box_wall_height: float = 0.035
    box_wall_thickness: float = 0.005
    # The overhead camera sits a little in front of the workspace, tilted back towards the arm,
    # so that the arm's raised rest pose does not hide any start position of the cube.
    top_camera: tuple = ((0.33, 0.045, 0.48), (0.18, 0.045, 0.0), 33.0, (1.0, 0.0, 0.0))
    lateral_camera: tuple = ((0.2, -0.34, 0.25), (0.18, 0.05, 0.06), 44.0, (0.0, 0.0, 1.0))


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> str:
    """MJCF `xyaxes` for a camera at `eye` looking at `target` (image up as close to `up`)."""
    eye, target, up = (np.asarray(v, np.float64) for v in (eye, target, up))
    forward = target - eye
    forward /= np.linalg.norm(forward)
    if abs(forward @ up) > 0.999:
        raise ValueError(f"camera at {eye} looks along its up direction {up}")
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, forward)
    return " ".join(f"{v:.6f}" for v in (*right, *cam_up))


def _box_walls(cfg: SceneConfig) -> str:
    h, t, a = cfg.box_wall_height, cfg.box_wall_thickness, cfg.box_inner / 2
    walls = [
        (a + t / 2, 0.0, t / 2, a + t),
        (-a - t / 2, 0.0, t / 2, a + t),
        (0.0, a + t / 2, a + t, t / 2),
        (0.0, -a - t / 2, a + t, t / 2),
    ]
    lines = [f'<geom name="box_floor" class="box" pos="0 0 {t / 2}" size="{a} {a} {t / 2}"/>']
    for i, (x, y, sx, sy) in enumerate(walls):
        lines.append(
            f'<geom name="box_wall{i}" class="box" pos="{x} {y} {h / 2}" size="{sx} {sy} {h / 2}"/>'
        )
    return "\n      ".join(lines)


def build_scene_xml(cfg: SceneConfig | None = None) -> str:
    """The complete MJCF model of the scene."""
    cfg = cfg or SceneConfig()
    c = cfg.cube_size / 2
    bx, by = cfg.box_center
    cams = []
    for name, (eye, target, fovy, up) in (
        ("top", cfg.top_camera),
        ("lateral", cfg.lateral_camera),
    ):
        ex, ey, ez = eye
        cams.append(
            f'<camera name="{name}" pos="{ex} {ey} {ez}" xyaxes="{look_at(eye, target, up)}" '
            f'fovy="{fovy}"/>'
        )
    cams = "\n    ".join(cams)
    return f"""<mujoco model="so101_pick_place">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{1.0 / (CONTROL_FPS * SUBSTEPS):.10f}" integrator="implicitfast"
    cone="elliptic" impratio="10"/>
  <visual>
    <global offwidth="640" offheight="480"/>
    <quality shadowsize="0" offsamples="0"/>
    <headlight ambient="0.3 0.3 0.3" diffuse="0.3 0.3 0.3" specular="0 0 0"/>
    <map znear="0.01" zfar="10"/>
  </visual>
  <default>
    {arm_defaults()}
    <default class="scene">
      <geom contype="1" conaffinity="1" condim="3" friction="0.8 0.01 0.001"/>
      <default class="box">
        <geom type="box" rgba="0.12 0.35 0.85 1"/>
      </default>
    </default>
  </default>
  <asset>
    <texture name="sky" type="skybox" builtin="flat" rgb1="0.35 0.37 0.4" rgb2="0.35 0.37 0.4"
      width="32" height="32"/>
    <material name="table" rgba="0.78 0.76 0.72 1" specular="0" shininess="0"/>
    <material name="cube" rgba="0.9 0.05 0.05 1" specular="0.1"/>
  </asset>
  <worldbody>
    <light name="key" directional="true" pos="0 0 2" dir="0.2 0.3 -1" castshadow="false"
      diffuse="0.45 0.45 0.45" specular="0 0 0"/>
    <geom name="table" class="scene" type="box" pos="0.15 0.05 -0.02" size="0.45 0.45 0.02"
      material="table"/>
    {arm_worldbody()}
    <body name="cube" pos="0.2 0 {c}">
      <freejoint name="cube"/>
      <geom name="cube" class="scene" type="box" size="{c} {c} {c}" mass="{cfg.cube_mass}"
        material="cube" condim="4" friction="1.0 0.02 0.001" solref="0.005 1"
        solimp="0.95 0.99 0.001"/>
    </body>
    <body name="box" pos="{bx} {by} 0" childclass="scene">
      {_box_walls(cfg)}
    </body>
    {cams}
  </worldbody>
  <actuator>
    {arm_actuators()}
  </actuator>
</mujoco>
"""
