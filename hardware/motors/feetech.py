"""Feetech SCS/STS protocol 0 (STS3215 in SO-100/SO-101 arms), pure and without I/O.

Frame: `FF FF | ID | LEN | INSTR or ERROR | PARAMS... | CHECKSUM`, where `LEN = len(PARAMS) + 2`
and `CHECKSUM = ~(ID + LEN + INSTR/ERROR + sum(PARAMS)) & 0xFF`. Multi-byte values are
little-endian on STS/SMS. Some registers are sign-magnitude rather than two's complement (see
`hardware.motors.tables`). Register addresses and lengths in read/sync-read params are one byte.
There is no byte stuffing, so `FF FF` may occur inside a payload; the parser copes by checking the
checksum and re-scanning from the next byte when it fails.
"""

from __future__ import annotations

from hardware.motors.packets import InstructionPacket, Protocol, StatusPacket

HEADER = b"\xff\xff"
MAX_LEN = 250  # TXPACKET_MAX_LEN in the vendor SDK

ERROR_BITS = {
    0: "input voltage",
    1: "angle limit",
    2: "overheating",
    3: "over current",
    5: "overload",
}


def checksum(body: bytes | bytearray) -> int:
    """`~sum(ID, LEN, INSTR/ERROR, PARAMS...) & 0xFF`."""
    return (~sum(body)) & 0xFF


class FeetechProtocol(Protocol):
    """SCS/STS protocol 0 framing and checksum."""

    name = "feetech"
    broadcast_id = 0xFE
    max_id = 0xFC
    header = HEADER
    field_size = 1

    def _encode(self, motor_id: int, code: int, params: bytes) -> bytes:
        body = bytes([motor_id, len(params) + 2, code]) + bytes(params)
        if len(body) + 3 > MAX_LEN:
            raise ValueError(f"Feetech packet of {len(body) + 3} bytes exceeds {MAX_LEN}")
        return HEADER + body + bytes([checksum(body)])

    def encode_instruction(self, packet: InstructionPacket) -> bytes:
        return self._encode(packet.id, packet.instruction, packet.params)

    def encode_status(self, packet: StatusPacket) -> bytes:
        return self._encode(packet.id, packet.error, packet.params)

    def frame_length(self, buf, start, status):
        if len(buf) - start < 4:
            return 0
        motor_id = buf[start + 2]
        # An id of 0xFF means the header is really one byte later (FF FF FF ...).
        if motor_id == 0xFF or (status and motor_id > self.max_id):
            return -1
        length = buf[start + 3]
        if length < 2 or length + 4 > MAX_LEN:
            return -1
        return 4 + length

    def decode_frame(self, frame, status):
        if checksum(frame[2:-1]) != frame[-1]:
            return None
        if status:
            return StatusPacket(frame[2], frame[4], bytes(frame[5:-1]))
        return InstructionPacket(frame[2], frame[4], bytes(frame[5:-1]))

    def status_size(self, n_params: int) -> int:
        return 6 + n_params

    def ping_reply_size(self) -> int:
        return 0  # a Feetech ping reply carries no data; the model is read from Model_Number

    def error_names(self, error: int) -> list[str]:
        return [name for bit, name in ERROR_BITS.items() if error & (1 << bit)]


FEETECH = FeetechProtocol()
