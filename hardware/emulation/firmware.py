"""Servo firmware model: control tables and instruction semantics, pure (no I/O, no threads).

`ServoFirmware` is what the emulator's pty thread calls for every instruction packet it parses:
`handle(packet) -> [status packets]`. Each servo has a byte-level control table (EEPROM and RAM
areas, addresses from `hardware.motors.tables`); present registers are refreshed from a
`JointPhysics` before each read, and goal and torque writes are passed to it.

Rules enforced, as the real firmware does:
- Dynamixel: EEPROM writes with torque on fail with an access error; writes to read-only registers
  too; in position mode a goal outside the position limits fails with a data limit error; an
  overheated servo sets the alert bit, records it in `Hardware_Error_Status` and drops torque until
  a REBOOT; the status return level decides which instructions get a reply.
- Feetech: EEPROM writes while `Lock` = 1 are ignored; goals are clamped to the position limits;
  an overheated servo sets error bit 2 and drops torque.
- Homing: Dynamixel `Present = Actual + Homing_Offset`, Feetech `Present = Actual - Homing_Offset`.
"""

from __future__ import annotations

from collections.abc import Callable

from hardware.emulation.physics import FirstOrderServo, JointPhysics
from hardware.motors import get_protocol
from hardware.motors.packets import Instruction, InstructionPacket, Protocol, StatusPacket
from hardware.motors.tables import EEPROM, ModelSpec, Register, get_model

# Dynamixel error numbers (low 7 bits of the status error byte).
_DXL_INSTRUCTION_ERROR, _DXL_DATA_RANGE, _DXL_DATA_LIMIT, _DXL_ACCESS = 2, 4, 6, 7
_DXL_ALERT = 0x80
_OVERHEAT_BIT_DXL = 1 << 2  # Hardware_Error_Status bit
_OVERHEAT_BIT_FT = 1 << 2  # Feetech status error bit
_TABLE_SIZE = 256


class Servo:
    """One servo's control table (256 bytes) and latched hardware error bits."""

    def __init__(self, motor_id: int, model: ModelSpec, joint: int):
        self.id, self.model, self.joint = motor_id, model, joint
        self.mem = bytearray(_TABLE_SIZE)
        self.hw_error = 0  # Dynamixel Hardware_Error_Status / Feetech latched status bits
        for name, value in model.defaults.items():
            if name in model.table:
                self.set(name, value)
        self.set("Model_Number", model.number)
        self.set("ID", motor_id)

    def reg(self, name: str) -> Register:
        return self.model.table[name]

    def get(self, name: str) -> int:
        r = self.reg(name)
        return get_protocol(self.model.protocol).decode_value(
            r, self.mem[r.address : r.address + r.size]
        )

    def set(self, name: str, value: int) -> None:
        r = self.reg(name)
        self.mem[r.address : r.address + r.size] = get_protocol(self.model.protocol).encode_value(
            r, value
        )


def write_targets(protocol: Protocol, pkt: InstructionPacket) -> list[tuple[int, int, bytes]]:
    """(id, address, data) of each register write a WRITE or SYNC_WRITE packet carries."""
    f = protocol.field_size
    try:
        if pkt.instruction == Instruction.WRITE:
            return [(pkt.id, int.from_bytes(pkt.params[:f], "little"), pkt.params[f:])]
        if pkt.instruction == Instruction.SYNC_WRITE:
            addr, size, rest = protocol.parse_request_fields(pkt.params)
            return [
                (rest[i], addr, rest[i + 1 : i + 1 + size])
                for i in range(0, len(rest) - size, size + 1)
            ]
    except ValueError:
        pass
    return []


class ServoFirmware:
    """The servos of one bus.

    Args:
        protocol: `"dynamixel"` or `"feetech"`.
        motors: motor id -> model key; ids map to physics joints in ascending order.
        physics: what moves the joints; default `FirstOrderServo` starting at 2048 ticks.
        clock: time source; physics advances to `clock()` before each instruction.
    """

    def __init__(
        self,
        protocol: str,
        motors: dict[int, str],
        physics: JointPhysics | None,
        clock: Callable[[], float],
    ):
        self.protocol = get_protocol(protocol)
        self.servos: dict[int, Servo] = {}
        for joint, motor_id in enumerate(sorted(motors)):
            model = get_model(motors[motor_id])
            if model.protocol != self.protocol.name:
                raise ValueError(f"id {motor_id}: {model.name} does not speak {protocol}")
            self.servos[motor_id] = Servo(motor_id, model, joint)
        self.physics = physics or FirstOrderServo([2048.0] * len(self.servos))
        if self.physics.n_joints < len(self.servos):
            raise ValueError(f"physics has {self.physics.n_joints} joints for {len(motors)} motors")
        self.clock = clock
        self._last_t = clock()
        self.error_bits: dict[int, int] = {}  # id -> bits forced into every status (fault knob)

    def get(self, motor_id: int, register: str) -> int:
        """Current value of a register, present values refreshed from the physics."""
        self.advance()
        servo = self.servos[motor_id]
        self._refresh(servo)
        return servo.get(register)

    def move_by_hand(self, motor_id: int, present_ticks: int) -> None:
        servo = self.servos[motor_id]
        self.physics.move_by_hand(servo.joint, self._to_actual(servo, present_ticks))

    def handle(self, pkt: InstructionPacket) -> list[StatusPacket]:
        """Execute one instruction; return the status packets the servos send, in order."""
        return self._handle(pkt)

    def advance(self) -> None:
        """Advance the physics to `clock()` and apply thermal shutdowns."""
        now = self.clock()
        dt = now - self._last_t
        if dt > 0:
            self.physics.advance(dt)
            self._last_t = now
            for servo in self.servos.values():
                self._thermal_check(servo)

    def _thermal_check(self, servo: Servo) -> None:
        temp = self.physics.read(servo.joint).temperature
        limit_name = "Temperature_Limit" if self._dxl else "Max_Temperature_Limit"
        if temp >= servo.get(limit_name) and not servo.hw_error & _OVERHEAT_BIT_DXL:
            servo.hw_error |= _OVERHEAT_BIT_DXL
            shutdown = servo.get("Shutdown") if self._dxl else 0xFF
            if shutdown & _OVERHEAT_BIT_DXL:
                servo.set("Torque_Enable", 0)
                self.physics.set_torque(servo.joint, False)

    @property
    def _dxl(self) -> bool:
        return self.protocol.name == "dynamixel"

    def _to_actual(self, servo: Servo, present: int) -> float:
        offset = servo.get("Homing_Offset")
        return present - offset if self._dxl else present + offset

    def _refresh(self, servo: Servo) -> None:
        r = self.physics.read(servo.joint)
        offset = servo.get("Homing_Offset")
        pos = int(round(r.position))
        present = pos + offset if self._dxl else (pos - offset) % servo.model.resolution
        servo.set("Present_Position", present)
        # Dynamixel reports velocity in 0.229 rpm units, Feetech in encoder steps per second.
        vel = r.velocity / servo.model.resolution * 60 / 0.229 if self._dxl else r.velocity
        servo.set("Present_Velocity", int(max(-32000, min(32000, round(vel)))))
        servo.set("Present_Load", int(round(max(-1.0, min(1.0, r.load)) * 1000)))
        servo.set("Present_Temperature", int(max(0, min(255, round(r.temperature)))))
        servo.set("Moving", int(abs(r.velocity) > 10))
        if self._dxl:
            servo.set("Hardware_Error_Status", servo.hw_error)
        else:
            servo.set("Status", servo.hw_error)

    def _error_byte(self, servo: Servo, number: int = 0) -> int:
        if self._dxl:
            err = number | (_DXL_ALERT if servo.hw_error else 0)
        else:
            err = _OVERHEAT_BIT_FT if servo.hw_error & _OVERHEAT_BIT_DXL else 0
        return err | self.error_bits.get(servo.id, 0)

    def _status(self, servo: Servo, number: int = 0, params: bytes = b"") -> StatusPacket:
        return StatusPacket(servo.id, self._error_byte(servo, number), params)

    def _replies_to_writes(self, servo: Servo) -> bool:
        level = servo.get("Status_Return_Level" if self._dxl else "Response_Status_Level")
        return level >= (2 if self._dxl else 1)

    def _handle(self, pkt: InstructionPacket) -> list[StatusPacket]:
        self.advance()
        ins, proto = pkt.instruction, self.protocol
        if ins == Instruction.PING:
            ids = sorted(self.servos) if pkt.id == proto.broadcast_id and self._dxl else [pkt.id]
            out = []
            for i in ids:
                if i in self.servos:
                    s = self.servos[i]
                    params = s.model.number.to_bytes(2, "little") + bytes(
                        [s.get("Firmware_Version") & 0xFF]
                    )
                    out.append(self._status(s, params=params if self._dxl else b""))
            return out
        if ins == Instruction.SYNC_WRITE or ins == Instruction.SYNC_READ:
            try:
                addr, size, rest = proto.parse_request_fields(pkt.params)
            except ValueError:
                return []
            if ins == Instruction.SYNC_WRITE:
                for motor_id, a, data in write_targets(self.protocol, pkt):
                    if motor_id in self.servos and len(data) == size:
                        self._write(self.servos[motor_id], a, data)
                return []
            out = []
            for motor_id in rest:
                if motor_id in self.servos:
                    out.append(self._read(self.servos[motor_id], addr, size))
            return out
        servo = self.servos.get(pkt.id)
        if servo is None:
            return []  # nobody with that id on the bus (broadcast read/write gets no reply)
        if ins == Instruction.READ:
            try:
                addr, size, _ = proto.parse_request_fields(pkt.params)
            except ValueError:
                return [self._status(servo, _DXL_INSTRUCTION_ERROR)] if self._dxl else []
            return [self._read(servo, addr, size)]
        if ins == Instruction.WRITE:
            f = proto.field_size
            number = self._write(servo, int.from_bytes(pkt.params[:f], "little"), pkt.params[f:])
            return [self._status(servo, number)] if self._replies_to_writes(servo) else []
        if ins == Instruction.REBOOT and self._dxl:
            servo.hw_error = 0
            servo.set("Torque_Enable", 0)
            self.physics.set_torque(servo.joint, False)
            return [self._status(servo)]
        return [self._status(servo, _DXL_INSTRUCTION_ERROR)] if self._dxl else []

    def _read(self, servo: Servo, addr: int, size: int) -> StatusPacket:
        if addr + size > _TABLE_SIZE or size == 0:
            return self._status(servo, _DXL_DATA_RANGE if self._dxl else 0)
        self._refresh(servo)
        return self._status(servo, params=bytes(servo.mem[addr : addr + size]))

    def _write(self, servo: Servo, addr: int, data: bytes) -> int:
        """Apply a write; return the Dynamixel error number (0 = accepted)."""
        if not data or addr + len(data) > _TABLE_SIZE:
            return _DXL_DATA_RANGE
        touched = [
            r
            for r in servo.model.table.values()
            if r.address < addr + len(data) and addr < r.address + r.size
        ]
        torque_on = servo.get("Torque_Enable") == 1
        for r in touched:
            if not r.writable:
                return _DXL_ACCESS if self._dxl else 0
            if r.area == EEPROM:
                if self._dxl and torque_on:
                    return _DXL_ACCESS
                if not self._dxl and servo.get("Lock") == 1:
                    return 0  # locked EEPROM: the write is ignored
        new = bytearray(servo.mem)
        new[addr : addr + len(data)] = data
        goal = servo.reg("Goal_Position")
        if addr <= goal.address < addr + len(data):
            value = self.protocol.decode_value(goal, new[goal.address : goal.address + goal.size])
            lo, hi = servo.get("Min_Position_Limit"), servo.get("Max_Position_Limit")
            if self._dxl and servo.get("Operating_Mode") == 3 and not lo <= value <= hi:
                return _DXL_DATA_LIMIT
            if not self._dxl and (lo or hi) and not lo <= value <= hi:
                value = min(max(value, lo), hi)
                new[goal.address : goal.address + goal.size] = self.protocol.encode_value(
                    goal, value
                )
        servo.mem[:] = new
        enable = servo.get("Torque_Enable")
        if enable and servo.hw_error and self._dxl:
            servo.set("Torque_Enable", 0)  # a Dynamixel in shutdown refuses torque until REBOOT
            return _DXL_ACCESS
        self.physics.set_torque(servo.joint, bool(enable))
        self.physics.set_goal(servo.joint, self._to_actual(servo, servo.get("Goal_Position")))
        return 0
