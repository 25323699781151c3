"""The simulated world: SO-101 arm, cube and box in MuJoCo, two cameras, a scripted expert.

    from hardware.sim import SimRobot, ScriptedExpert

Rendering is headless by default: unless MUJOCO_GL is already set, it is set to "egl" here,
before MuJoCo is first imported (GLFW, MuJoCo's own default, needs a display).
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from hardware.sim.cube import CubeDistribution  # noqa: E402
from hardware.sim.expert import ScriptedExpert  # noqa: E402
from hardware.sim.robot import HOME, SimRobot  # noqa: E402

__all__ = ["HOME", "CubeDistribution", "ScriptedExpert", "SimRobot"]
