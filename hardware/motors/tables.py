"""Control tables as data: register addresses, sizes, memory areas and encodings per servo model.

Addresses follow the vendors' tables as LeRobot transcribes them (`motors/feetech/tables.py`,
`motors/dynamixel/tables.py`) and the ROBOTIS e-manual for the X series. A register's `sign` says
how its bytes map to a signed integer:

- `None`: unsigned.
- `"twos"`: two's complement over the register's width (Dynamixel).
- an int `b`: sign-magnitude with the sign in bit `b` (Feetech STS: bit 11 for `Homing_Offset`,
  bit 15 for positions and velocities, bit 10 for `Present_Load`).

The bus, the calibration and the emulator all read these same tables, so a register is addressed by
name everywhere above the packet layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

EEPROM = "eeprom"
RAM = "ram"


@dataclasses.dataclass(frozen=True)
class Register:
    """One control-table entry.

    Attributes:
        name: LeRobot-style name, e.g. `"Goal_Position"`.
        address: first byte in the control table.
        size: width in bytes (1, 2 or 4), little-endian on the wire.
        area: `EEPROM` (persistent, locked while torque is on) or `RAM`.
        writable: False for read-only registers (model number, present values).
        sign: encoding of negative values, see the module docstring.
    """

    name: str
    address: int
    size: int
    area: str
    writable: bool = True
    sign: int | str | None = None


def _table(*regs: Register) -> dict[str, Register]:
    return {r.name: r for r in regs}


# Dynamixel X series (XL330, XL430), Protocol 2.0. EEPROM is addresses 0..63.
_X_SERIES = _table(
    Register("Model_Number", 0, 2, EEPROM, writable=False),
    Register("Model_Information", 2, 4, EEPROM, writable=False),
    Register("Firmware_Version", 6, 1, EEPROM, writable=False),
    Register("ID", 7, 1, EEPROM),
    Register("Baud_Rate", 8, 1, EEPROM),
    Register("Return_Delay_Time", 9, 1, EEPROM),
    Register("Drive_Mode", 10, 1, EEPROM),
    Register("Operating_Mode", 11, 1, EEPROM),
    Register("Secondary_ID", 12, 1, EEPROM),
    Register("Protocol_Type", 13, 1, EEPROM),
    Register("Homing_Offset", 20, 4, EEPROM, sign="twos"),
    Register("Moving_Threshold", 24, 4, EEPROM),
    Register("Temperature_Limit", 31, 1, EEPROM),
    Register("Max_Voltage_Limit", 32, 2, EEPROM),
    Register("Min_Voltage_Limit", 34, 2, EEPROM),
    Register("PWM_Limit", 36, 2, EEPROM),
    Register("Current_Limit", 38, 2, EEPROM),
    Register("Velocity_Limit", 44, 4, EEPROM),
    Register("Max_Position_Limit", 48, 4, EEPROM),
    Register("Min_Position_Limit", 52, 4, EEPROM),
    Register("Shutdown", 63, 1, EEPROM),
    Register("Torque_Enable", 64, 1, RAM),
    Register("LED", 65, 1, RAM),
    Register("Status_Return_Level", 68, 1, RAM),
    Register("Registered_Instruction", 69, 1, RAM, writable=False),
    Register("Hardware_Error_Status", 70, 1, RAM, writable=False),
    Register("Velocity_I_Gain", 76, 2, RAM),
    Register("Velocity_P_Gain", 78, 2, RAM),
    Register("Position_D_Gain", 80, 2, RAM),
    Register("Position_I_Gain", 82, 2, RAM),
    Register("Position_P_Gain", 84, 2, RAM),
    Register("Bus_Watchdog", 98, 1, RAM, sign="twos"),
    Register("Goal_PWM", 100, 2, RAM, sign="twos"),
    Register("Goal_Current", 102, 2, RAM, sign="twos"),
    Register("Goal_Velocity", 104, 4, RAM, sign="twos"),
    Register("Profile_Acceleration", 108, 4, RAM),
    Register("Profile_Velocity", 112, 4, RAM),
    Register("Goal_Position", 116, 4, RAM, sign="twos"),
    Register("Realtime_Tick", 120, 2, RAM, writable=False),
    Register("Moving", 122, 1, RAM, writable=False),
    Register("Moving_Status", 123, 1, RAM, writable=False),
    Register("Present_PWM", 124, 2, RAM, writable=False, sign="twos"),
    # XL430 calls this Present_Load (0.1 % units); XL330 calls it Present_Current (mA).
    Register("Present_Load", 126, 2, RAM, writable=False, sign="twos"),
    Register("Present_Velocity", 128, 4, RAM, writable=False, sign="twos"),
    Register("Present_Position", 132, 4, RAM, writable=False, sign="twos"),
    Register("Present_Input_Voltage", 144, 2, RAM, writable=False),
    Register("Present_Temperature", 146, 1, RAM, writable=False),
)

# Feetech STS/SMS series (STS3215), protocol 0, little-endian. EEPROM is addresses 0..39.
_STS_SERIES = _table(
    Register("Firmware_Version", 0, 2, EEPROM, writable=False),
    Register("Model_Number", 3, 2, EEPROM, writable=False),
    Register("ID", 5, 1, EEPROM),
    Register("Baud_Rate", 6, 1, EEPROM),
    Register("Return_Delay_Time", 7, 1, EEPROM),
    Register("Response_Status_Level", 8, 1, EEPROM),
    Register("Min_Position_Limit", 9, 2, EEPROM),
    Register("Max_Position_Limit", 11, 2, EEPROM),
    Register("Max_Temperature_Limit", 13, 1, EEPROM),
    Register("Max_Voltage_Limit", 14, 1, EEPROM),
    Register("Min_Voltage_Limit", 15, 1, EEPROM),
    Register("Max_Torque_Limit", 16, 2, EEPROM),
    Register("Phase", 18, 1, EEPROM),
    Register("Unloading_Condition", 19, 1, EEPROM),
    Register("LED_Alarm_Condition", 20, 1, EEPROM),
    Register("P_Coefficient", 21, 1, EEPROM),
    Register("D_Coefficient", 22, 1, EEPROM),
    Register("I_Coefficient", 23, 1, EEPROM),
    Register("Protection_Current", 28, 2, EEPROM),
    Register("Homing_Offset", 31, 2, EEPROM, sign=11),
    Register("Operating_Mode", 33, 1, EEPROM),
    Register("Overload_Torque", 36, 1, EEPROM),
    Register("Torque_Enable", 40, 1, RAM),
    Register("Acceleration", 41, 1, RAM),
    Register("Goal_Position", 42, 2, RAM, sign=15),
    Register("Goal_Time", 44, 2, RAM),
    Register("Goal_Velocity", 46, 2, RAM, sign=15),
    Register("Torque_Limit", 48, 2, RAM),
    Register("Lock", 55, 1, RAM),
    Register("Present_Position", 56, 2, RAM, writable=False, sign=15),
    Register("Present_Velocity", 58, 2, RAM, writable=False, sign=15),
    Register("Present_Load", 60, 2, RAM, writable=False, sign=10),
    Register("Present_Voltage", 62, 1, RAM, writable=False),
    Register("Present_Temperature", 63, 1, RAM, writable=False),
    Register("Status", 65, 1, RAM, writable=False),
    Register("Moving", 66, 1, RAM, writable=False),
    Register("Present_Current", 69, 2, RAM, writable=False),
    Register("Maximum_Acceleration", 85, 1, RAM),
)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A servo model: its protocol, identity and control table.

    Attributes:
        name: LeRobot model key, e.g. `"xl330-m288"`, `"sts3215"`.
        protocol: `"dynamixel"` (Protocol 2.0) or `"feetech"` (SCS/STS protocol 0).
        number: value of `Model_Number`, checked at connect.
        resolution: encoder ticks per turn.
        table: register name -> `Register`.
        defaults: factory values of EEPROM registers, used by the emulator.
        eeprom_end: first RAM address.
    """

    name: str
    protocol: str
    number: int
    resolution: int
    table: Mapping[str, Register]
    defaults: Mapping[str, int]
    eeprom_end: int

    def register(self, name: str) -> Register:
        """The register called `name`; a KeyError that lists the valid names otherwise."""
        try:
            return self.table[name]
        except KeyError:
            raise KeyError(
                f"model {self.name!r} has no register {name!r}; known: {sorted(self.table)}"
            ) from None


_X_DEFAULTS = {
    "Firmware_Version": 52,
    "Baud_Rate": 3,  # 1 Mbaud (factory is 57600; LeRobot's setup writes 1M)
    "Return_Delay_Time": 0,
    "Operating_Mode": 3,
    "Protocol_Type": 2,
    "Moving_Threshold": 10,
    "Temperature_Limit": 70,
    "Max_Voltage_Limit": 70,
    "Min_Voltage_Limit": 35,
    "PWM_Limit": 885,
    "Current_Limit": 1750,
    "Velocity_Limit": 445,
    "Max_Position_Limit": 4095,
    "Min_Position_Limit": 0,
    "Shutdown": 0b0011_0100,  # overheat, electrical shock, overload
    "Status_Return_Level": 2,
    "Position_P_Gain": 800,
    "Position_D_Gain": 0,
    "Present_Input_Voltage": 50,
    "Present_Temperature": 28,
}

_STS_DEFAULTS = {
    "Firmware_Version": 0x0303,
    "Baud_Rate": 0,  # 1 Mbaud
    "Return_Delay_Time": 0,
    "Response_Status_Level": 1,
    "Min_Position_Limit": 0,
    "Max_Position_Limit": 4095,
    "Max_Temperature_Limit": 70,
    "Max_Voltage_Limit": 140,
    "Min_Voltage_Limit": 40,
    "Max_Torque_Limit": 1000,
    "Phase": 0,
    "P_Coefficient": 32,
    "D_Coefficient": 32,
    "I_Coefficient": 0,
    "Protection_Current": 500,
    "Overload_Torque": 80,
    "Torque_Limit": 1000,
    "Lock": 1,
    "Present_Voltage": 120,
    "Present_Temperature": 28,
}

MODELS: dict[str, ModelSpec] = {
    "xl330-m077": ModelSpec("xl330-m077", "dynamixel", 1190, 4096, _X_SERIES, _X_DEFAULTS, 64),
    "xl330-m288": ModelSpec("xl330-m288", "dynamixel", 1200, 4096, _X_SERIES, _X_DEFAULTS, 64),
    "xl430-w250": ModelSpec("xl430-w250", "dynamixel", 1060, 4096, _X_SERIES, _X_DEFAULTS, 64),
    "sts3215": ModelSpec("sts3215", "feetech", 777, 4096, _STS_SERIES, _STS_DEFAULTS, 40),
}
"""Every servo model this package drives, by LeRobot model key."""

MODEL_BY_NUMBER: dict[tuple[str, int], str] = {(m.protocol, m.number): k for k, m in MODELS.items()}

# Baud rate register codes.
DYNAMIXEL_BAUD_CODES = {
    9_600: 0,
    57_600: 1,
    115_200: 2,
    1_000_000: 3,
    2_000_000: 4,
    3_000_000: 5,
    4_000_000: 6,
    4_500_000: 7,
}
FEETECH_BAUD_CODES = {
    1_000_000: 0,
    500_000: 1,
    250_000: 2,
    128_000: 3,
    115_200: 4,
    57_600: 5,
    38_400: 6,
    19_200: 7,
}


def get_model(name: str) -> ModelSpec:
    """The `ModelSpec` for a model key, with a clear error for an unknown one."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown servo model {name!r}; known: {sorted(MODELS)}") from None
