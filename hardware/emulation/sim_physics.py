"""`SimArmPhysics`: the MuJoCo arm (`hardware.sim.SimRobot`) behind the servo emulator.

With it, goal positions written over the (emulated) wire become the simulated servos' targets,
and the present positions read back are the simulated joints' angles, through the same
calibration a real arm uses. So the whole real stack (pyserial, protocol, bus, calibration,
safety, `ServoArm`) can drive the simulated arm, and the sim and the real arm share one action
space by construction.

Mapping per joint: actual ticks <-> present ticks (the servo's homing rule) <-> LeRobot units
(the calibration's formulas, without clipping) <-> the sim's targets and joint angles. Torque off
zeroes the joint's position actuator, so a limp joint really falls under gravity. Temperature
follows the same heat-with-load-squared model as `FirstOrderServo`, driven by the actuator force.
"""

from __future__ import annotations

import mujoco
import numpy as np

from hardware.arms.calibration import ArmCalibration
from hardware.conventions import JOINT_NAMES
from hardware.emulation.physics import JointReading
from hardware.sim.arm import from_lerobot_units
from hardware.sim.robot import SimRobot


class SimArmPhysics:
    """`JointPhysics` over a `SimRobot` built with `cameras=()` and `step_on_action=False`.

    Args:
        robot: the simulated arm; its physics is advanced only by the emulator.
        calibration: maps ticks to LeRobot units (the same file a real arm would use).
        protocol: `"dynamixel"` or `"feetech"` (the homing-offset sign rule).
        heat_rate, cool_tau, ambient: thermal model, as in `FirstOrderServo`.
    """

    def __init__(
        self,
        robot: SimRobot,
        calibration: ArmCalibration,
        protocol: str,
        heat_rate: float = 2.0,
        cool_tau: float = 120.0,
        ambient: float = 28.0,
    ):
        if robot.step_on_action:
            raise ValueError("SimArmPhysics needs SimRobot(step_on_action=False): it owns time")
        self.robot, self.calibration = robot, calibration
        self.n_joints = 6
        self._sign = 1 if protocol == "dynamixel" else -1  # present = actual + sign * offset
        joints = list(calibration.joints.values())
        self._offset = np.array([j.homing_offset for j in joints], np.float64)
        self._lo = np.array([j.range_min for j in joints], np.float64)
        self._hi = np.array([j.range_max for j in joints], np.float64)
        self._flip = np.array([j.drive_mode == 1 for j in joints])
        self._k = (calibration.resolution - 1) / 360.0  # ticks per degree
        m = robot.model
        self._act = np.array([m.actuator(n).id for n in JOINT_NAMES])  # JOINT_NAMES order
        self._qadr = np.array([m.joint(n).qposadr[0] for n in JOINT_NAMES])
        self._dof = np.array([m.joint(n).dofadr[0] for n in JOINT_NAMES])
        self._gain = m.actuator_gainprm[self._act, 0].copy()
        self._bias = m.actuator_biasprm[self._act, 1:3].copy()
        self._force = m.actuator_forcerange[self._act, 1].copy()
        self._goal_units = robot.state().astype(np.float64)
        self._pending = 0.0
        self.temp = np.full(6, float(ambient))
        self.heat_rate, self.cool_tau, self.ambient = heat_rate, cool_tau, ambient

    # ticks <-> units, both directions without clipping (the sim may sit past a range end)
    def _units(self, present: np.ndarray) -> np.ndarray:
        mid = (self._lo + self._hi) / 2
        deg = np.where(self._flip, -1, 1) * (present - mid) / self._k
        pct = (present - self._lo) / (self._hi - self._lo) * 100.0
        pct = np.where(self._flip, 100.0 - pct, pct)
        return np.where(np.arange(6) == 5, pct, deg)

    def _present(self, units: np.ndarray) -> np.ndarray:
        mid = (self._lo + self._hi) / 2
        t_deg = np.where(self._flip, -units, units) * self._k + mid
        pct = np.where(self._flip, 100.0 - units, units)
        t_pct = self._lo + pct / 100.0 * (self._hi - self._lo)
        return np.where(np.arange(6) == 5, t_pct, t_deg)

    def _actual_to_present(self, actual):
        return np.asarray(actual, np.float64) + self._sign * self._offset

    # -- JointPhysics ----------------------------------------------------------------------------
    def set_goal(self, joint: int, ticks: float) -> None:
        present = self._actual_to_present(np.full(6, float(ticks)))
        self._goal_units[joint] = self._units(present)[joint]
        self.robot.set_targets(self._goal_units)

    def set_torque(self, joint: int, enabled: bool) -> None:
        m, a = self.robot.model, self._act[joint]
        m.actuator_gainprm[a, 0] = self._gain[joint] if enabled else 0.0
        m.actuator_biasprm[a, 1:3] = self._bias[joint] if enabled else 0.0

    def advance(self, dt: float) -> None:
        self._pending += dt
        step = self.robot.model.opt.timestep
        n = int(self._pending / step)
        if n > 0:
            self.robot.step_physics(n * step)
            self._pending -= n * step
            load = self._load()
            heat = self.heat_rate * load**2 - (self.temp - self.ambient) / self.cool_tau
            self.temp = self.temp + heat * n * step

    def _load(self) -> np.ndarray:
        force = self.robot.data.actuator_force[self._act]
        return np.clip(force / self._force, -1.0, 1.0)

    def read(self, joint: int) -> JointReading:
        present = self._present(self.robot.state().astype(np.float64))
        actual = present - self._sign * self._offset
        vel = self.robot.joint_velocities().astype(np.float64) * self._k
        return JointReading(
            float(actual[joint]),
            float(vel[joint]),
            float(self._load()[joint]),
            float(self.temp[joint]),
        )

    def move_by_hand(self, joint: int, ticks: float) -> None:
        present = self._actual_to_present(np.full(6, float(ticks)))
        units = self.robot.state().astype(np.float64)
        units[joint] = self._units(present)[joint]
        self.robot.data.qpos[self._qadr[joint]] = from_lerobot_units(units)[joint]
        self.robot.data.qvel[self._dof[joint]] = 0.0
        mujoco.mj_forward(self.robot.model, self.robot.data)
