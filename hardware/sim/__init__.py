"""The simulated world: SO-101 arm, cube and box in MuJoCo, two cameras, a scripted expert.

    from hardware.sim import SimRobot, ScriptedExpert

    arm.py         the arm's MJCF (SO-101 kinematics, simple geoms), servo model, units
    scene.py       table, cube, box, lights, cameras: the full MJCF
    kinematics.py  forward/inverse kinematics of the grasp point
    cube.py        cube start distributions: uniform, named, held_out
    task.py        SimTask, the pick-and-place trial (reset, success, cube poses) as others see it
    robot.py       SimRobot, the `hardware.robot.Robot` of the simulation (and a SimTask)
    expert.py      ScriptedExpert, the simulated teleoperator; `python -m hardware.sim.expert`

Rendering is headless by default (`hardware/__init__.py` sets MUJOCO_GL=egl unless it is set).
The names below are imported on first use, so that `python -m hardware.sim.<module>` runs its
module only once.
"""

import importlib

_EXPORTS = {
    "CubeDistribution": "hardware.sim.cube",
    "HOME": "hardware.sim.robot",
    "ScriptedExpert": "hardware.sim.expert",
    "SimRobot": "hardware.sim.robot",
    "SimTask": "hardware.sim.task",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hardware.sim' has no attribute {name!r}")
