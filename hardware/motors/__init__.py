"""Servo drivers: Dynamixel Protocol 2.0 and Feetech SCS/STS over pyserial.

- `tables`: control tables and servo models as data.
- `packets`, `dynamixel`, `feetech`: pure packet encoding, checksums, value encodings.
- `parser`: streaming parser that classifies each reply as ok / corrupt / timeout.
- `bus`: `MotorBus`, the real serial bus (exclusive open, timeouts from baud, bounded retries).

The bottom layer of `hardware`: it imports nothing from the layers above it (only
`hardware.conventions`). The byte-exact servo emulator is in `hardware.emulation`; the robot
built on these drivers (`ServoArm`, profiles, calibration, safety) is in `hardware.arms`.
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
