"""Dynamixel Protocol 2.0 (ROBOTIS X series: XL330, XL430), pure and without I/O.

Frame: `FF FF FD 00 | ID | LEN_L LEN_H | INSTR | PARAMS... | CRC_L CRC_H`, where
`LEN = len(INSTR + stuffed PARAMS) + 2`. A status packet has `INSTR = 0x55` followed by an `ERROR`
byte. The CRC is CRC-16 with polynomial 0x8005, initial value 0, no reflection (the "BUYPASS"
variant), over every byte from the header to the byte before the CRC, *after* stuffing.
Byte stuffing keeps the header out of the payload: after every `FF FF FD` inside INSTR..PARAMS an
extra `FD` is inserted (and removed again when decoding).
"""

from __future__ import annotations

from hardware.motors.packets import InstructionPacket, Protocol, StatusPacket

HEADER = b"\xff\xff\xfd\x00"
STATUS = 0x55
MAX_LEN = 1024  # longer than any packet a 6-motor arm needs; bounds what a corrupt LEN can claim


def _make_crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _make_crc_table()


def crc16(data: bytes | bytearray, crc: int = 0) -> int:
    """CRC-16/BUYPASS (poly 0x8005, init 0) as used by Protocol 2.0; table driven."""
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


def stuff(payload: bytes) -> bytes:
    """Insert `FD` after each `FF FF FD` so the header cannot appear inside a packet."""
    out = bytearray()
    for b in payload:
        out.append(b)
        if b == 0xFD and len(out) >= 3 and out[-3] == 0xFF and out[-2] == 0xFF:
            out.append(0xFD)
    return bytes(out)


def unstuff(payload: bytes) -> bytes:
    """Remove the `FD` that follows each `FF FF FD` (inverse of `stuff`)."""
    out = bytearray()
    i = 0
    while i < len(payload):
        b = payload[i]
        out.append(b)
        i += 1
        if (
            b == 0xFD
            and len(out) >= 3
            and out[-3] == 0xFF
            and out[-2] == 0xFF
            and i < len(payload)
            and payload[i] == 0xFD
        ):
            i += 1  # the stuffing byte
    return bytes(out)


# Error byte: bit 7 is the hardware alert (details in Hardware_Error_Status); bits 0..6 a number.
_ERROR_NUMBERS = {
    1: "result fail",
    2: "instruction error",
    3: "CRC error",
    4: "data range error",
    5: "data length error",
    6: "data limit error",
    7: "access error",
}
# Hardware_Error_Status (address 70) bits.
HARDWARE_ERROR_BITS = {
    0: "input voltage",
    2: "overheating",
    3: "motor encoder",
    4: "electrical shock",
    5: "overload",
}
ALERT = 0x80


class DynamixelProtocol(Protocol):
    """Protocol 2.0 framing, CRC and stuffing."""

    name = "dynamixel"
    broadcast_id = 0xFE
    max_id = 252
    header = HEADER
    field_size = 2

    def _encode(self, motor_id: int, body: bytes) -> bytes:
        body = stuff(body)
        length = len(body) + 2
        frame = HEADER + bytes([motor_id]) + length.to_bytes(2, "little") + body
        return frame + crc16(frame).to_bytes(2, "little")

    def encode_instruction(self, packet: InstructionPacket) -> bytes:
        return self._encode(packet.id, bytes([packet.instruction]) + bytes(packet.params))

    def encode_status(self, packet: StatusPacket) -> bytes:
        return self._encode(packet.id, bytes([STATUS, packet.error]) + bytes(packet.params))

    def frame_length(self, buf, start, status):
        if len(buf) - start < 7:
            return 0
        motor_id = buf[start + 4]
        if motor_id > 0xFE or (status and motor_id > self.max_id):
            return -1
        length = buf[start + 5] | (buf[start + 6] << 8)
        if length < (4 if status else 3) or length > MAX_LEN:
            return -1
        if len(buf) - start >= 8 and status and buf[start + 7] != STATUS:
            return -1
        return 7 + length

    def decode_frame(self, frame, status):
        if crc16(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
            return None
        body = unstuff(bytes(frame[7:-2]))
        if status:
            if len(body) < 2 or body[0] != STATUS:
                return None
            return StatusPacket(frame[4], body[1], body[2:])
        if not body:
            return None
        return InstructionPacket(frame[4], body[0], body[1:])

    def status_size(self, n_params: int) -> int:
        return 11 + n_params

    def ping_reply_size(self) -> int:
        return 3  # model number (2) + firmware version (1)

    def error_names(self, error: int) -> list[str]:
        names = []
        if error & ALERT:
            names.append("hardware alert (see Hardware_Error_Status)")
        number = error & 0x7F
        if number:
            names.append(_ERROR_NUMBERS.get(number, f"error {number}"))
        return names


def hardware_error_names(status: int) -> list[str]:
    """Names of the bits set in `Hardware_Error_Status`."""
    return [name for bit, name in HARDWARE_ERROR_BITS.items() if status & (1 << bit)]


DYNAMIXEL = DynamixelProtocol()
