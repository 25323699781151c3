"""Real arms: the servo arm and the leader arm, their calibration, safety layer and profiles.

    servo_arm.py    ServoArm, the `Robot` of a Koch / SO-100 / SO-101 follower; ProtectiveStop
    leader_arm.py   LeaderArm, a leader arm read as a `Teleoperator`
    calibration.py  ArmCalibration (JSON), the checks of a calibration against the servos
    calibration_procedure.py  `calibrate`: homing offsets and ranges measured on a connected bus
    safety.py       SafetyGuard, ThermalMonitor, deferred Ctrl-C
    profiles.py     what differs between arm builds (ids, servo models, protocol, setup writes)

Built on the drivers in `hardware.motors`; nothing here imports emulation, sim or recording.
"""

from hardware.arms.leader_arm import LeaderArm
from hardware.arms.profiles import PROFILES, ArmProfile, get_profile
from hardware.arms.servo_arm import ProtectiveStop, ReadReport, ServoArm

__all__ = [
    "PROFILES",
    "ArmProfile",
    "LeaderArm",
    "ProtectiveStop",
    "ReadReport",
    "ServoArm",
    "get_profile",
]
