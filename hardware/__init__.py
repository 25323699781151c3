"""hardware: the world the policy acts in.

Servo protocols and buses, cameras, calibration, safety, robots (real and simulated in MuJoCo),
teleoperation and recording, the control loop. Knows nothing of ACT, except `hardware.deploy`.

Rendering is headless by default: unless MUJOCO_GL is already set, it is set to "egl" here,
before any layer first imports MuJoCo (GLFW, MuJoCo's own default, needs a display).
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
