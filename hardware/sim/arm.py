"""The simulated SO-101 arm: our own MJCF with the real arm's kinematics and simple geoms.

Facts taken from the public SO-101 description (TheRobotStudio's CAD via onshape-to-robot, as
published in `mujoco_menagerie/robotstudio_so101` and `so101_new_calib.xml`, Apache-2.0): the
body frames (positions and orientations of each joint), joint axes and ranges, link masses,
centres of mass and inertias, and the STS3215 servo model (position gain, damping, armature,
torque limit). Everything visual is ours: capsules and boxes instead of the 322k-triangle
meshes, so that two cameras render in a few milliseconds.

Joint convention (the SO-101 "new calib", which the real arm's calibration reproduces): every
joint's zero is the middle of its range, so 0 degrees on all five arm joints is the reference
pose (upper arm up, forearm and gripper pointing forward along +x). Units at the robot
interface follow LeRobot:

    arm joints   degrees = radians * 180 / pi   (MuJoCo joint angle, zero at mid-range)
    gripper      0 (closed, joint at -10 deg) .. 100 (open, joint at +100 deg), linear

The gripper is the real one's: a fixed jaw on the wrist-roll body and a moving jaw on a hinge.
Its pads are shaped so that they are parallel, 25 mm apart, at joint angle `GRASP_ANGLE_DEG`:
a 2.5 cm cube is held flat between them by friction. The gripper servo has half the torque of
the others, as LeRobot configures the real one (Max_Torque_Limit = 50%).
"""

from __future__ import annotations

import math

import numpy as np

from hardware.conventions import JOINT_NAMES

# Joint ranges in radians (so101_new_calib.xml), in JOINT_NAMES order.
JOINT_RANGES_RAD = np.array(
    [
        (-1.91986, 1.91986),  # shoulder_pan
        (-1.74533, 1.74533),  # shoulder_lift
        (-1.69, 1.69),  # elbow_flex
        (-1.65806, 1.65806),  # wrist_flex
        (-2.74385, 2.84121),  # wrist_roll
        (-0.17453, 1.74533),  # gripper
    ]
)
JOINT_RANGES_DEG = np.degrees(JOINT_RANGES_RAD)

# STS3215 as a MuJoCo position servo (mujoco_menagerie robotstudio_so101, derived there for the
# LeRobot P gain of 16): torque = clip(kp (target - q) - kv qdot, +-force).
SERVO_KP = 998.22  # N m / rad
SERVO_KV = 2.731  # N m s / rad
SERVO_FORCE = 2.94  # N m, stall torque at 12 V
GRIPPER_FORCE = 0.5 * SERVO_FORCE  # LeRobot sets the gripper's Max_Torque_Limit to 50%
JOINT_DAMPING, JOINT_FRICTIONLOSS, JOINT_ARMATURE = 0.60, 0.052, 0.028

GRASP_ANGLE_DEG = 10.0  # gripper joint angle at which the pads are parallel and 25 mm apart
PAD_GAP = 0.025  # m, between the pads at GRASP_ANGLE_DEG
# Grasp point in the wrist-roll ("gripper") body frame: midway between the pads, 1 cm above
# their lower edge. The expert's inverse kinematics targets this site ("tcp").
TCP_POS = (0.0045, 0.0, -0.09)

ARM_RGBA = "1 0.82 0.12 1"  # the SO-101's printed yellow
SERVO_RGBA = "0.12 0.12 0.12 1"
PAD_RGBA = "0.25 0.25 0.25 1"


def to_lerobot_units(qpos: np.ndarray) -> np.ndarray:
    """Joint angles (radians, MuJoCo) -> LeRobot units. (..., 6) -> (..., 6) float32."""
    qpos = np.asarray(qpos, np.float64)
    out = np.degrees(qpos)
    lo, hi = JOINT_RANGES_RAD[5]
    out[..., 5] = (qpos[..., 5] - lo) / (hi - lo) * 100.0
    return out.astype(np.float32)


def from_lerobot_units(values: np.ndarray) -> np.ndarray:
    """LeRobot units (degrees; gripper 0..100) -> joint angles in radians. (..., 6) -> (..., 6)."""
    values = np.asarray(values, np.float64)
    out = np.radians(values)
    lo, hi = JOINT_RANGES_RAD[5]
    out[..., 5] = lo + values[..., 5] / 100.0 * (hi - lo)
    return out


def gripper_percent(angle_deg: float) -> float:
    """Gripper joint angle in degrees -> LeRobot gripper units (0..100)."""
    lo, hi = JOINT_RANGES_DEG[5]
    return (angle_deg - lo) / (hi - lo) * 100.0


def _quat_z(angle_rad: float) -> str:
    return f"{math.cos(angle_rad / 2):.6f} 0 0 {math.sin(angle_rad / 2):.6f}"


def _joint(name: str) -> str:
    lo, hi = JOINT_RANGES_RAD[JOINT_NAMES.index(name)]
    return f'<joint name="{name}" class="sts3215" range="{lo} {hi}"/>'


def _gripper() -> str:
    """The wrist-roll body (MJCF <body name="gripper">): its servo, the fixed jaw and pad, the
    grasp site `tcp`, and the moving jaw on its hinge. The only part of the arm that collides."""
    # The moving jaw's geoms are written in the wrist-roll body's frame as they should sit when
    # the gripper joint is at GRASP_ANGLE_DEG; the two <frame>s undo the jaw body's transform
    # (hinge at 0.0202 0.0188 -0.0234, rotated +90 deg about x) at that angle.
    grasp = math.radians(GRASP_ANGLE_DEG)
    fixed_face = -0.008  # x of the fixed pad's inner face (wrist-roll frame)
    moving_face = fixed_face + PAD_GAP
    return f"""<body name="gripper" pos="5.55112e-17 -0.0611 0.0181"
                quat="0.0172091 -0.0172091 0.706897 0.706897">
                {_joint("wrist_roll")}
                <inertial pos="0.000214 0.000245 -0.025187" mass="0.087"
                  fullinertia="2.75087e-05 4.33657e-05 3.45059e-05
                    -3.35241e-07 -5.7352e-06 -5.17847e-08"/>
                <geom name="wrist_servo" class="gripper_col" type="box" pos="0.006 0 -0.022"
                  size="0.017 0.016 0.02" rgba="{SERVO_RGBA}"/>
                <!-- The pads stand 0.5 mm proud of their jaws: no coplanar faces to z-fight. -->
                <geom name="fixed_jaw" class="gripper_col" type="box"
                  pos="{fixed_face - 0.0045} 0 -0.066" size="0.004 0.0105 0.0335"
                  rgba="{ARM_RGBA}"/>
                <geom name="fixed_pad" class="pad" type="box"
                  pos="{fixed_face - 0.001} 0 -0.088" size="0.001 0.011 0.012"/>
                <site name="tcp" pos="{TCP_POS[0]} {TCP_POS[1]} {TCP_POS[2]}" size="0.004"
                  rgba="0 1 0 1" group="4"/>
                <body name="moving_jaw" pos="0.0202 0.0188 -0.0234" quat="1 1 0 0">
                  {_joint("gripper")}
                  <inertial pos="-0.001575 -0.0300244 0.0192755" mass="0.012"
                    fullinertia="6.61427e-06 1.89032e-06 5.28738e-06
                      -3.19807e-07 -5.90717e-09 -1.09945e-07"/>
                  <frame quat="{_quat_z(-grasp)}">
                    <frame pos="-0.0202 0.0234 0.0188" quat="1 -1 0 0">
                      <geom name="moving_jaw_link" class="gripper_col" type="box"
                        pos="{moving_face + 0.006} 0 -0.056" size="0.0035 0.009 0.036"
                        rgba="{ARM_RGBA}"/>
                      <geom name="moving_pad" class="pad" type="box"
                        pos="{moving_face + 0.001} 0 -0.088" size="0.001 0.011 0.012"/>
                    </frame>
                  </frame>
                </body>
              </body>"""


def arm_worldbody(pos: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> str:
    """The arm's body tree (MJCF <body> element), its base at `pos` facing +x.

    Body frames, inertials and joint axes are the SO-101's; each link is drawn as a capsule from
    its joint to the next joint plus a dark box for its servo. Only the gripper (`_gripper`)
    collides: the links pass over the table and box, and leaving them out keeps contacts cheap
    and the grasp the only arm contact that matters.
    """
    x, y, z = pos
    return f"""
    <body name="base" pos="{x} {y} {z}" childclass="so101">
      <inertial pos="0.0137179 -5.19711e-05 0.0334843" mass="0.147"
        fullinertia="0.000114686 0.000136117 0.000130364 -4.59787e-07 4.97151e-06 9.75275e-08"/>
      <geom type="cylinder" pos="0.012 0 0.022" size="0.045 0.022" rgba="{ARM_RGBA}"/>
      <geom type="box" pos="0.026 0 0.042" size="0.02 0.016 0.018" rgba="{SERVO_RGBA}"/>
      <body name="shoulder" pos="0.0388353 0 0.0624" quat="0 0 -1 0">
        {_joint("shoulder_pan")}
        <inertial pos="-0.0307604 -1.7e-05 -0.0252713" mass="0.100006"
          fullinertia="8.3759e-05 8.10403e-05 2.39783e-05 7.55525e-08 -1.16342e-06 1.54663e-07"/>
        <geom type="box" pos="-0.025 0 -0.02" size="0.03 0.022 0.02" rgba="{ARM_RGBA}"/>
        <geom type="box" pos="-0.0304 -0.005 -0.054" size="0.014 0.024 0.02" rgba="{SERVO_RGBA}"/>
        <body name="upper_arm" pos="-0.0303992 -0.0182778 -0.0542" quat="1 -1 -1 -1">
          {_joint("shoulder_lift")}
          <inertial pos="-0.089847 -0.008382 0.018409" mass="0.103"
            fullinertia="4.08002e-05 0.000147318 0.000142487
              -1.97819e-05 -4.03016e-08 8.97326e-09"/>
          <geom type="capsule" fromto="0 0 0.018 -0.11257 -0.028 0.018" size="0.014"
            rgba="{ARM_RGBA}"/>
          <body name="lower_arm" pos="-0.11257 -0.028 0" quat="1 0 0 1">
            {_joint("elbow_flex")}
            <inertial pos="-0.098070 0.0032438 0.018283" mass="0.104"
              fullinertia="2.87438e-05 0.000159844 0.00014529
                7.41152e-06 1.26409e-06 -4.90188e-08"/>
            <geom type="box" pos="0 0 0.018" size="0.02 0.016 0.014" rgba="{SERVO_RGBA}"/>
            <geom type="capsule" fromto="0 0 0.018 -0.1349 0.0052 0.018" size="0.012"
              rgba="{ARM_RGBA}"/>
            <body name="wrist" pos="-0.1349 0.0052 0" quat="1 0 0 -1">
              {_joint("wrist_flex")}
              <inertial pos="-0.000103312 -0.0386143 0.0281156" mass="0.079"
                fullinertia="3.68263e-05 2.5391e-05 2.1e-05 1.7893e-08 -5.28128e-08 3.6412e-06"/>
              <geom type="box" pos="0 0 0.018" size="0.016 0.016 0.014" rgba="{SERVO_RGBA}"/>
              <geom type="capsule" fromto="0 -0.01 0.018 0 -0.05 0.018" size="0.013"
                rgba="{ARM_RGBA}"/>
              {_gripper()}
            </body>
          </body>
        </body>
      </body>
    </body>"""


def arm_defaults() -> str:
    """MJCF <default> classes the arm uses (goes inside the model's <default>)."""
    return f"""
    <default class="so101">
      <geom contype="0" conaffinity="0" group="1" density="0"/>
      <default class="sts3215">
        <joint damping="{JOINT_DAMPING}" frictionloss="{JOINT_FRICTIONLOSS}"
          armature="{JOINT_ARMATURE}"/>
        <position kp="{SERVO_KP}" kv="{SERVO_KV}" forcerange="-{SERVO_FORCE} {SERVO_FORCE}"/>
      </default>
      <!-- Stiff contacts (5 ms time constant, the shortest that is stable at dt = 1/480 s):
           with MuJoCo's default (20 ms) the servo's squeeze pushes the pads 7 mm into the
           cube. -->
      <default class="gripper_col">
        <geom contype="1" conaffinity="1" condim="4" friction="1.0 0.02 0.001"
          solref="0.005 1" solimp="0.95 0.99 0.001"/>
      </default>
      <default class="pad">
        <geom contype="1" conaffinity="1" condim="4" friction="1.5 0.02 0.001"
          solref="0.005 1" solimp="0.95 0.99 0.001" rgba="{PAD_RGBA}" priority="1"/>
      </default>
    </default>"""


def arm_actuators() -> str:
    """One position servo per joint, named like the joints, ctrlrange = joint range."""
    lines = []
    for i, name in enumerate(JOINT_NAMES):
        lo, hi = JOINT_RANGES_RAD[i]
        force = GRIPPER_FORCE if name == "gripper" else SERVO_FORCE
        lines.append(
            f'<position name="{name}" joint="{name}" class="sts3215" ctrlrange="{lo} {hi}" '
            f'forcerange="-{force} {force}"/>'
        )
    return "\n    ".join(lines)
