"""hardware: the world the policy acts in.

Servo protocols and buses, cameras, calibration, safety, robots (real and simulated in MuJoCo),
teleoperation and recording, the control loop. Knows nothing of ACT, except `hardware.deploy`.
"""
