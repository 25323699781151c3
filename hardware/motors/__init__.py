"""Servo stack: Dynamixel Protocol 2.0 and Feetech SCS/STS over pyserial.

- `tables`: control tables and servo models as data.
- `packets`, `dynamixel`, `feetech`: pure packet encoding, checksums, value encodings.
- `parser`: streaming parser that classifies each reply as ok / corrupt / timeout.
- `bus`: `MotorBus`, the real serial bus (exclusive open, timeouts from baud, bounded retries).
- `firmware`: `ServoFirmware`, the servos' control tables and instruction semantics (pure).
- `emulator`: `ServoEmulator`, that firmware on a pseudo-terminal, with fault knobs.
- `physics`: the `JointPhysics` interface and `FirstOrderServo`; `sim_physics`: `SimArmPhysics`,
  the MuJoCo arm behind the emulator.
- `emulated_arm`: a whole Koch or SO-101 arm on a pty (`emulate_arm`, `default_calibration`).

The robot built on these (`ServoArm`, profiles) is in `hardware.arms`; calibration in
`hardware.calibration` and `python -m hardware.calibrate`; safety in `hardware.safety`.
"""

from hardware.motors.dynamixel import DYNAMIXEL
from hardware.motors.feetech import FEETECH
from hardware.motors.packets import Protocol


def get_protocol(name: str) -> Protocol:
    """`"dynamixel"` or `"feetech"` -> the protocol singleton."""
    protocols = {"dynamixel": DYNAMIXEL, "feetech": FEETECH}
    try:
        return protocols[name]
    except KeyError:
        raise ValueError(f"unknown servo protocol {name!r}; known: {sorted(protocols)}") from None
