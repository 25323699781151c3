"""The simulated world: SO-101 arm, cube and box in MuJoCo, two cameras, a scripted expert.

    from hardware.sim import SimRobot, ScriptedExpert
"""

from hardware.sim.cube import CubeDistribution
from hardware.sim.robot import HOME, SimRobot

__all__ = ["HOME", "CubeDistribution", "SimRobot"]
