"""Forward and inverse kinematics of the simulated SO-101, on MuJoCo's own model.

The kinematic chain is the MJCF's (so FK here and the physics never disagree). The controlled
point is the `tcp` site, midway between the gripper pads. Poses are a position (3,) in metres
and a rotation matrix (3, 3) whose columns are the tcp frame's axes in the world; the tool
points along the frame's -z axis, and its x axis is the direction in which the jaws close.

The arm has five joints before the gripper, so not every 6-D pose is reachable: position plus a
tool direction in the arm's vertical plane plus a roll about it is. `top_down(yaw)` builds the
orientation of a vertical grasp (tool pointing down) whose jaws close along the horizontal
direction `yaw` (radians from +x); it is reachable anywhere in the workspace, since the pan
joint turns the arm's plane and the roll joint turns the jaws.

`ik` is damped least squares on the full pose error (position + rotation vector), from a seed
configuration, with joint limits enforced at every iteration; `ik_position_error` reports how
well it did. Angles here are radians, over the 5 arm joints (the gripper is not part of IK).
"""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

from hardware.sim.arm import JOINT_RANGES_RAD

ARM_DOF = 5


def top_down(yaw: float) -> np.ndarray:
    """Rotation (3, 3) of a tool pointing straight down, jaws closing along angle `yaw`."""
    c, s = np.cos(yaw), np.sin(yaw)
    x = np.array([c, s, 0.0])  # closing direction
    z = np.array([0.0, 0.0, 1.0])  # tool points along -z
    return np.stack([x, np.cross(z, x), z], axis=1)


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Rotation vector (3,) taking `current` to `target`, in world coordinates."""
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, (target @ current.T).ravel())
    vel = np.empty(3)
    mujoco.mju_quat2Vel(vel, quat, 1.0)
    return vel


@dataclasses.dataclass
class IKResult:
    q: np.ndarray  # (5,) radians
    position_error: float  # metres
    rotation_error: float  # radians
    iterations: int

    @property
    def converged(self) -> bool:
        return self.position_error < 1e-4 and self.rotation_error < 1e-3


class Kinematics:
    """FK/IK for the arm in a compiled scene model (uses its own MjData, never the sim's)."""

    def __init__(self, model: mujoco.MjModel, site: str = "tcp"):
        self.model = model
        self.data = mujoco.MjData(model)
        self.site_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site)
        if self.site_id < 0:
            raise ValueError(f"model has no site named {site!r}")
        names = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
        joints = [model.joint(n) for n in names]
        self.qpos_adr = np.array([j.qposadr[0] for j in joints])
        self.dof_adr = np.array([j.dofadr[0] for j in joints])
        self.lower, self.upper = JOINT_RANGES_RAD[:ARM_DOF, 0], JOINT_RANGES_RAD[:ARM_DOF, 1]
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def _set(self, q: np.ndarray) -> None:
        self.data.qpos[self.qpos_adr] = q
        mujoco.mj_kinematics(self.model, self.data)

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Arm joints (5,) radians -> tcp position (3,) and rotation (3, 3)."""
        self._set(np.asarray(q, np.float64))
        return (
            self.data.site_xpos[self.site_id].copy(),
            self.data.site_xmat[self.site_id].reshape(3, 3).copy(),
        )

    def ik(
        self,
        position: np.ndarray,
        rotation: np.ndarray,
        seed: np.ndarray,
        *,
        max_iters: int = 200,
        damping: float = 1e-3,
        rotation_weight: float = 0.1,
        max_step: float = 0.3,
    ) -> IKResult:
        """Joint angles (5,) that put the tcp at `position` with `rotation`, starting at `seed`.

        Args:
          position: (3,) target, metres. rotation: (3, 3) target frame.
          seed: (5,) start configuration; the solution stays on its branch (elbow up/down).
          rotation_weight: metres per radian when trading rotation against position error.
          max_step: largest change of any joint per iteration, radians.
        """
        q = np.clip(np.asarray(seed, np.float64).copy(), self.lower, self.upper)
        w = np.array([1.0, 1.0, 1.0] + [rotation_weight] * 3)
        it = 0
        for it in range(max_iters):  # noqa: B007 (reported below)
            self._set(q)
            err_p = position - self.data.site_xpos[self.site_id]
            err_r = rotation_error(rotation, self.data.site_xmat[self.site_id].reshape(3, 3))
            if np.linalg.norm(err_p) < 1e-6 and np.linalg.norm(err_r) < 1e-5:
                break
            mujoco.mj_comPos(self.model, self.data)
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site_id)
            jac = np.vstack([self._jacp, self._jacr])[:, self.dof_adr] * w[:, None]  # (6, 5)
            err = np.concatenate([err_p, err_r]) * w
            # Active set: a joint at a limit that the step would push further out is frozen, so
            # the others take up the error instead of the step being lost to clipping.
            free = np.ones(ARM_DOF, bool)
            for _ in range(ARM_DOF):
                j = jac * free
                dq = j.T @ np.linalg.solve(j @ j.T + damping**2 * np.eye(6), err)
                blocked = free & (((q <= self.lower) & (dq < 0)) | ((q >= self.upper) & (dq > 0)))
                if not blocked.any():
                    break
                free &= ~blocked
            # A bounded step keeps far-from-solution iterations from jumping between branches.
            dq *= min(1.0, max_step / max(np.abs(dq).max(), 1e-12))
            q = np.clip(q + dq, self.lower, self.upper)
        pos, rot = self.fk(q)
        return IKResult(
            q=q,
            position_error=float(np.linalg.norm(position - pos)),
            rotation_error=float(np.linalg.norm(rotation_error(rotation, rot))),
            iterations=it + 1,
        )

    def ik_global(
        self,
        position: np.ndarray,
        rotation: np.ndarray,
        seed: np.ndarray | None = None,
        *,
        restarts: int = 16,
        rng_seed: int = 0,
        **kwargs,
    ) -> IKResult:
        """`ik` from `seed`, then from deterministic random restarts until one converges.

        Returns the converged result, or the one with the smallest position error.
        """
        rng = np.random.default_rng(rng_seed)
        starts = [] if seed is None else [np.asarray(seed, np.float64)]
        starts += [rng.uniform(self.lower, self.upper) for _ in range(restarts)]
        best = None
        for q0 in starts:
            res = self.ik(position, rotation, q0, **kwargs)
            if res.converged:
                return res
            if best is None or res.position_error < best.position_error:
                best = res
        return best
