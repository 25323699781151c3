"""Byte-exact servo emulator on a pseudo-terminal: Dynamixel Protocol 2.0 or Feetech STS.

A thread owns the master side of a pty; the code under test opens the slave path with real
`serial.Serial`, exactly as it would open `/dev/ttyUSB0`. Each emulated servo has a byte-level
control table (EEPROM and RAM areas, addresses from `hardware.motors.tables`) and answers ping,
read, write, sync read, sync write and reboot with correctly framed status packets. Motion comes
from a `JointPhysics` (first-order servos, or the MuJoCo arm): goals written over the wire move
joints, present positions read over the wire come from the physics.

Servo rules the emulator enforces, as the real firmware does:
- Dynamixel: EEPROM writes with torque on fail with an access error; writes to read-only registers
  too; in position mode a goal outside the position limits fails with a data limit error; an
  overheated servo sets the alert bit, records it in `Hardware_Error_Status` and drops torque until
  a REBOOT.
- Feetech: EEPROM writes while `Lock` = 1 are ignored; goals are clamped to the position limits;
  an overheated servo sets error bit 2 and drops torque.
- Homing: Dynamixel `Present = Actual + Homing_Offset`, Feetech `Present = Actual - Homing_Offset`.

Fault knobs (`Faults`), all drawn from one seeded RNG so a run is reproducible: drop, delay,
corrupt a byte, truncate, split across writes, garbage before the reply, reply from a wrong id,
forged data with a valid checksum,
forced error bits, dead ids, and `unplug()` (closes the master, so the host sees EIO).
Every instruction packet received goes into a timestamped wire log.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import select
import threading
import time
import tty
from collections.abc import Callable

from hardware.motors import get_protocol
from hardware.motors.packets import Instruction, InstructionPacket, Outcome, StatusPacket
from hardware.motors.parser import StreamParser
from hardware.motors.physics import FirstOrderServo, JointPhysics
from hardware.motors.tables import EEPROM, ModelSpec, Register, get_model

log = logging.getLogger(__name__)

# Dynamixel error numbers (low 7 bits of the status error byte).
_DXL_INSTRUCTION_ERROR, _DXL_DATA_RANGE, _DXL_DATA_LIMIT, _DXL_ACCESS = 2, 4, 6, 7
_DXL_ALERT = 0x80
_OVERHEAT_BIT_DXL = 1 << 2  # Hardware_Error_Status bit
_OVERHEAT_BIT_FT = 1 << 2  # Feetech status error bit
_TABLE_SIZE = 256


class VirtualClock:
    """A clock that moves only when told: lets a 30 Hz loop and the emulator's physics run faster
    than real time. Has the `time` module's `monotonic()` and `sleep()`."""

    def __init__(self, start: float = 0.0):
        self.t = float(start)
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self.t

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.t += max(0.0, float(seconds))

    advance = sleep


@dataclasses.dataclass
class Faults:
    """Fault injection knobs. Probabilities apply per reply; mutate them while running.

    Attributes:
        drop: probability a reply is not sent.
        delay: probability a reply is held back by `delay_s`.
        delay_s: seconds of delay.
        corrupt: probability one byte of the reply gets a random bit flipped.
        truncate: probability the reply is cut short.
        split: probability the reply is written in two parts with a short gap.
        garbage: probability random bytes precede the reply.
        wrong_id: probability the reply carries another id (with a valid checksum).
        forge: probability the reply's data bytes are replaced by random ones *with* a valid
            checksum: what a checksum collision on a noisy line delivers.
        dead_ids: ids that never answer (unplugged cable on one servo).
        error_bits: id -> bits OR-ed into every status error byte of that id.
        only_ids: if set, the probabilistic faults hit only these ids.
    """

    drop: float = 0.0
    delay: float = 0.0
    delay_s: float = 0.005
    corrupt: float = 0.0
    truncate: float = 0.0
    split: float = 0.0
    garbage: float = 0.0
    wrong_id: float = 0.0
    forge: float = 0.0
    dead_ids: set[int] = dataclasses.field(default_factory=set)
    error_bits: dict[int, int] = dataclasses.field(default_factory=dict)
    only_ids: set[int] | None = None


@dataclasses.dataclass(frozen=True)
class WireEntry:
    """One received instruction frame: time, raw bytes, decoded packet (None if corrupt)."""

    t: float
    raw: bytes
    packet: InstructionPacket | None


class _Servo:
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


class ServoEmulator:
    """Emulated servos on one bus, behind a pty.

    Args:
        protocol: `"dynamixel"` or `"feetech"`.
        motors: motor id -> model key (e.g. `{1: "xl430-w250", 3: "xl330-m288"}`); ids map to
            physics joints in ascending order.
        physics: what moves the joints; default `FirstOrderServo` starting mid-range (2048).
        faults: fault knobs (default: none).
        seed: seeds every fault draw.
        clock: time source in seconds; physics advances to `clock()` at each packet. Pass a virtual
            clock to run control loops faster than real time.

    Use as a context manager, or `start()` / `stop()`. `port` is the slave device path.
    """

    def __init__(
        self,
        protocol: str,
        motors: dict[int, str],
        physics: JointPhysics | None = None,
        faults: Faults | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.protocol = get_protocol(protocol)
        self.servos: dict[int, _Servo] = {}
        for joint, motor_id in enumerate(sorted(motors)):
            model = get_model(motors[motor_id])
            if model.protocol != self.protocol.name:
                raise ValueError(f"id {motor_id}: {model.name} does not speak {protocol}")
            self.servos[motor_id] = _Servo(motor_id, model, joint)
        self.physics = physics or FirstOrderServo([2048.0] * len(self.servos))
        if self.physics.n_joints < len(self.servos):
            raise ValueError(f"physics has {self.physics.n_joints} joints for {len(motors)} motors")
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.clock = clock
        self._last_t = clock()
        self.wire_log: list[WireEntry] = []
        self.fault_log: list[tuple[int, list[str]]] = []  # (id, faults applied) per reply
        self.errors: list[str] = []  # exceptions inside the emulator (tests assert it stays empty)
        self._lock = threading.RLock()
        self._master = self._slave = -1
        self._thread: threading.Thread | None = None
        self._running = False
        self.port = ""

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> ServoEmulator:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: bytes pass untouched
        self.port = os.ttyname(self._slave)
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="servo-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        for fd in (self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = -1

    def __enter__(self) -> ServoEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def unplug(self) -> None:
        """Pull the USB cable: close both pty ends, so the host's next read or write fails."""
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1

    # -- state access for tests and tools --------------------------------------------------------
    def get(self, motor_id: int, register: str) -> int:
        """Current value of a register (present values refreshed from physics)."""
        with self._lock:
            self._advance()
            servo = self.servos[motor_id]
            self._refresh(servo)
            return servo.get(register)

    def set(self, motor_id: int, register: str, value: int) -> None:
        """Set a register directly (no access checks): factory state or a tampered EEPROM."""
        with self._lock:
            self.servos[motor_id].set(register, value)

    def advance_physics(self) -> None:
        """Bring the physics up to `clock()` now (after a test jumps a virtual clock)."""
        with self._lock:
            self._advance()

    def move_by_hand(self, motor_id: int, present_ticks: int) -> None:
        """Move a limp joint so that its Present_Position reads `present_ticks`."""
        with self._lock:
            servo = self.servos[motor_id]
            self.physics.move_by_hand(servo.joint, self._to_actual(servo, present_ticks))

    def writes(self, register: str) -> list[tuple[float, int, int]]:
        """(t, id, value) of every write or sync write received that set `register`."""
        out = []
        for entry in list(self.wire_log):
            pkt = entry.packet
            if pkt is None:
                continue
            for motor_id, addr, data in self._write_targets(pkt):
                servo = self.servos.get(motor_id)
                if servo is None or register not in servo.model.table:
                    continue
                r = servo.reg(register)
                if addr <= r.address and r.address + r.size <= addr + len(data):
                    off = r.address - addr
                    value = self.protocol.decode_value(r, data[off : off + r.size])
                    out.append((entry.t, motor_id, value))
        return out

    def _write_targets(self, pkt: InstructionPacket) -> list[tuple[int, int, bytes]]:
        f = self.protocol.field_size
        try:
            if pkt.instruction == Instruction.WRITE:
                return [(pkt.id, int.from_bytes(pkt.params[:f], "little"), pkt.params[f:])]
            if pkt.instruction == Instruction.SYNC_WRITE:
                addr, size, rest = self.protocol.parse_request_fields(pkt.params)
                return [
                    (rest[i], addr, rest[i + 1 : i + 1 + size])
                    for i in range(0, len(rest) - size, size + 1)
                ]
        except ValueError:
            pass
        return []

    # -- the serving thread ----------------------------------------------------------------------
    def _serve(self) -> None:
        parser = StreamParser(self.protocol, status=False)
        while self._running:
            try:
                ready, _, _ = select.select([self._master], [], [], 0.01)
                if not ready:
                    with self._lock:
                        self._advance()  # keep physics current between packets
                    continue
                data = os.read(self._master, 4096)
            except OSError:
                break  # host closed or unplugged
            for ev in parser.feed(data):
                t = self.clock()
                if ev.outcome is not Outcome.OK:
                    self.wire_log.append(WireEntry(t, ev.raw, None))
                    continue  # a servo ignores a packet whose checksum fails
                self.wire_log.append(WireEntry(t, ev.raw, ev.packet))
                try:
                    with self._lock:
                        replies = self._handle(ev.packet)
                    for reply in replies:
                        self._send(reply)
                except Exception as e:  # a bug here must not silently kill the bus: record it
                    log.exception("servo emulator failed on %s", ev.packet)
                    self.errors.append(f"{ev.packet}: {e!r}")

    def _advance(self) -> None:
        now = self.clock()
        dt = now - self._last_t
        if dt > 0:
            self.physics.advance(dt)
            self._last_t = now
            for servo in self.servos.values():
                self._thermal_check(servo)

    def _thermal_check(self, servo: _Servo) -> None:
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

    def _to_actual(self, servo: _Servo, present: int) -> float:
        offset = servo.get("Homing_Offset")
        return present - offset if self._dxl else present + offset

    def _refresh(self, servo: _Servo) -> None:
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

    def _error_byte(self, servo: _Servo, number: int = 0) -> int:
        if self._dxl:
            err = number | (_DXL_ALERT if servo.hw_error else 0)
        else:
            err = _OVERHEAT_BIT_FT if servo.hw_error & _OVERHEAT_BIT_DXL else 0
        return err | self.faults.error_bits.get(servo.id, 0)

    def _status(self, servo: _Servo, number: int = 0, params: bytes = b"") -> StatusPacket:
        return StatusPacket(servo.id, self._error_byte(servo, number), params)

    def _replies_to_writes(self, servo: _Servo) -> bool:
        level = servo.get("Status_Return_Level" if self._dxl else "Response_Status_Level")
        return level >= (2 if self._dxl else 1)

    def _handle(self, pkt: InstructionPacket) -> list[StatusPacket]:
        self._advance()
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
                for motor_id, a, data in self._write_targets(pkt):
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

    def _read(self, servo: _Servo, addr: int, size: int) -> StatusPacket:
        if addr + size > _TABLE_SIZE or size == 0:
            return self._status(servo, _DXL_DATA_RANGE if self._dxl else 0)
        self._refresh(servo)
        return self._status(servo, params=bytes(servo.mem[addr : addr + size]))

    def _write(self, servo: _Servo, addr: int, data: bytes) -> int:
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

    def _send(self, reply: StatusPacket) -> None:
        f, rng = self.faults, self.rng
        applied: list[str] = []
        self.fault_log.append((reply.id, applied))
        if reply.id in f.dead_ids:
            applied.append("dead")
            return
        hit = f.only_ids is None or reply.id in f.only_ids
        if hit and rng.random() < f.drop:
            applied.append("drop")
            return
        if hit and rng.random() < f.wrong_id:
            others = [i for i in range(1, 253) if i != reply.id]
            reply = dataclasses.replace(reply, id=rng.choice(others))
            applied.append("wrong_id")
        if hit and reply.params and rng.random() < f.forge:
            reply = dataclasses.replace(reply, params=rng.randbytes(len(reply.params)))
            applied.append("forge")
        data = bytearray(self.protocol.encode_status(reply))
        if hit and rng.random() < f.corrupt:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            applied.append("corrupt")
        if hit and rng.random() < f.truncate:
            data = data[: rng.randrange(1, len(data))]
            applied.append("truncate")
        if hit and rng.random() < f.garbage:
            data = bytearray(rng.randbytes(rng.randrange(1, 12))) + data
            applied.append("garbage")
        if hit and rng.random() < f.delay:
            time.sleep(f.delay_s)
            applied.append("delay")
        try:
            if hit and rng.random() < f.split and len(data) > 1:
                cut = rng.randrange(1, len(data))
                os.write(self._master, data[:cut])
                time.sleep(0.0005)
                os.write(self._master, data[cut:])
                applied.append("split")
            else:
                os.write(self._master, data)
        except OSError:
            pass  # host gone
