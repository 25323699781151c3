"""Emulated servos and arms: the real driver stack runs against them with no hardware.

    firmware.py      ServoFirmware: the servos' control tables and instruction semantics (pure)
    emulator.py      ServoEmulator: that firmware on a pseudo-terminal, with fault knobs;
                     VirtualClock
    physics.py       the JointPhysics interface and FirstOrderServo
    sim_physics.py   SimArmPhysics: the MuJoCo arm (`hardware.sim`) behind the emulator
    emulated_arm.py  a whole Koch or SO-101 arm on a pty (`emulate_arm`, `default_calibration`)
    follower.py      EmulatedFollower: the MuJoCo scene behind the emulator, a `ServoArm` on it
    scripted_user.py ScriptedUser: a simulated person for the calibration procedure
    serve.py         `python -m hardware.emulation --robot so101 [--faults ...]`: an emulated arm
                     on a pty as a standalone command, for LeRobot, the vendor SDKs, any tool

Above `hardware.motors`, `hardware.arms` and `hardware.sim` (an emulated arm has a profile and a
calibration; its physics may be the sim), below recording and the apps.
"""
