"""Packet types and the interface both servo protocols implement (pure: no I/O).

A `Protocol` turns requests (ping, read, write, sync read, sync write) into instruction bytes,
frames and checks status bytes, and encodes register values. `DynamixelProtocol`
(`hardware.motors.dynamixel`) and `FeetechProtocol` (`hardware.motors.feetech`) implement it; the
streaming parser (`hardware.motors.parser`), the bus and the emulator are written against it.
"""

from __future__ import annotations

import abc
import dataclasses
import enum

from hardware.motors.tables import Register


class Instruction(enum.IntEnum):
    """Instruction codes shared by Dynamixel Protocol 2.0 and Feetech SCS/STS."""

    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    FACTORY_RESET = 0x06
    REBOOT = 0x08
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83
    BULK_READ = 0x92
    BULK_WRITE = 0x93


@dataclasses.dataclass(frozen=True)
class InstructionPacket:
    """Host -> servo. `params` are the unstuffed parameter bytes."""

    id: int
    instruction: int
    params: bytes = b""


@dataclasses.dataclass(frozen=True)
class StatusPacket:
    """Servo -> host. `error` is the raw error byte; `params` the unstuffed data bytes."""

    id: int
    error: int
    params: bytes = b""


class Outcome(enum.Enum):
    """How one expected reply ended: a good packet, bytes that were not one, or silence."""

    OK = "ok"
    CORRUPT = "corrupt"
    TIMEOUT = "timeout"


class Protocol(abc.ABC):
    """Wire format of one servo family. Subclasses are stateless; use the module singletons."""

    name: str
    broadcast_id: int
    max_id: int
    header: bytes
    # Register address and length fields in read/sync-read params: 1 byte (Feetech), 2 (Dynamixel).
    field_size: int

    # -- framing -------------------------------------------------------------------------------
    @abc.abstractmethod
    def frame_length(self, buf: bytes | bytearray, start: int, status: bool) -> int:
        """Total frame length for a header at `buf[start]`.

        Returns 0 when more bytes are needed to know, -1 when the bytes after the header cannot
        begin a valid frame (bad reserved byte, id or length), else the length in bytes.
        """

    @abc.abstractmethod
    def decode_frame(self, frame: bytes, status: bool) -> StatusPacket | InstructionPacket | None:
        """Decode one complete frame; None if its checksum/CRC fails."""

    @abc.abstractmethod
    def encode_instruction(self, packet: InstructionPacket) -> bytes:
        """Bytes on the wire for an instruction packet."""

    @abc.abstractmethod
    def encode_status(self, packet: StatusPacket) -> bytes:
        """Bytes on the wire for a status packet (what a servo sends)."""

    @abc.abstractmethod
    def status_size(self, n_params: int) -> int:
        """Length on the wire of a status packet with `n_params` data bytes (before stuffing)."""

    @abc.abstractmethod
    def error_names(self, error: int) -> list[str]:
        """Human-readable names of the bits set in a status error byte."""

    @abc.abstractmethod
    def ping_reply_size(self) -> int:
        """Number of params in a ping reply."""

    # -- values --------------------------------------------------------------------------------
    def encode_value(self, reg: Register, value: int) -> bytes:
        """Little-endian bytes of `value` for `reg`; a ValueError names the register on overflow."""
        value = int(value)
        bits = 8 * reg.size
        if reg.sign == "twos":
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            if not lo <= value <= hi:
                raise ValueError(f"{reg.name}: {value} outside [{lo}, {hi}]")
            raw = value & ((1 << bits) - 1)
        elif isinstance(reg.sign, int):
            mag_max = (1 << reg.sign) - 1
            if abs(value) > mag_max:
                raise ValueError(f"{reg.name}: magnitude of {value} exceeds {mag_max}")
            raw = abs(value) | ((1 << reg.sign) if value < 0 else 0)
        else:
            if not 0 <= value < (1 << bits):
                raise ValueError(f"{reg.name}: {value} outside [0, {(1 << bits) - 1}]")
            raw = value
        return raw.to_bytes(reg.size, "little")

    def decode_value(self, reg: Register, data: bytes) -> int:
        """Integer value of `reg` from its little-endian bytes."""
        raw = int.from_bytes(data[: reg.size], "little")
        if reg.sign == "twos":
            bits = 8 * reg.size
            return raw - (1 << bits) if raw & (1 << (bits - 1)) else raw
        if isinstance(reg.sign, int):
            mag = raw & ((1 << reg.sign) - 1)
            return -mag if raw & (1 << reg.sign) else mag
        return raw

    # -- requests ------------------------------------------------------------------------------
    def _field(self, value: int) -> bytes:
        return int(value).to_bytes(self.field_size, "little")

    def ping(self, motor_id: int) -> InstructionPacket:
        return InstructionPacket(motor_id, Instruction.PING)

    def read(self, motor_id: int, address: int, size: int) -> InstructionPacket:
        return InstructionPacket(
            motor_id, Instruction.READ, self._field(address) + self._field(size)
        )

    def write(self, motor_id: int, address: int, data: bytes) -> InstructionPacket:
        return InstructionPacket(motor_id, Instruction.WRITE, self._field(address) + bytes(data))

    def sync_read(self, address: int, size: int, ids: list[int]) -> InstructionPacket:
        params = self._field(address) + self._field(size) + bytes(ids)
        return InstructionPacket(self.broadcast_id, Instruction.SYNC_READ, params)

    def sync_write(self, address: int, size: int, data: dict[int, bytes]) -> InstructionPacket:
        body = b"".join(bytes([i]) + bytes(d) for i, d in data.items())
        for i, d in data.items():
            if len(d) != size:
                raise ValueError(f"sync write to id {i}: {len(d)} bytes, expected {size}")
        return InstructionPacket(
            self.broadcast_id,
            Instruction.SYNC_WRITE,
            self._field(address) + self._field(size) + body,
        )

    def parse_request_fields(self, params: bytes) -> tuple[int, int, bytes]:
        """Split read/sync params into (address, size, rest)."""
        f = self.field_size
        if len(params) < 2 * f:
            raise ValueError("params too short for address and size")
        addr = int.from_bytes(params[:f], "little")
        size = int.from_bytes(params[f : 2 * f], "little")
        return addr, size, params[2 * f :]
