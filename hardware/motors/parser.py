"""Streaming packet parser and reply classification, for both protocols. Pure: no I/O, never raises.

`StreamParser` takes bytes as they arrive, in any split, and emits one event per complete frame:
OK with the decoded packet, or CORRUPT with the raw frame when its checksum/CRC fails. Garbage
before a header is skipped. After a bad frame it re-scans from the next byte, so a good packet
hidden behind a false header (garbage that happens to contain `FF FF`) is still found. When the
frame at the front is incomplete it also looks ahead for a later complete, valid frame, so a false
header that claims a long length cannot hold back a good reply until the timeout.

`ReplyCollector` sits on top: it knows which ids must answer and with how many data bytes, and at
the end classifies each one as OK / CORRUPT / TIMEOUT. That is the only vocabulary the bus sees.
"""

from __future__ import annotations

import dataclasses

from hardware.motors.packets import InstructionPacket, Outcome, Protocol, StatusPacket


@dataclasses.dataclass(frozen=True)
class ParseEvent:
    """One complete frame: OK with `packet`, or CORRUPT with `raw` (the failed frame)."""

    outcome: Outcome
    packet: StatusPacket | InstructionPacket | None = None
    raw: bytes = b""


class StreamParser:
    """Incremental framer for status (servo -> host) or instruction (host -> servo) packets.

    Args:
        protocol: the wire format.
        status: True to parse status packets, False for instruction packets (the emulator).
        max_buffer: bytes kept at most; older bytes are dropped as garbage, which bounds memory
            and time if a line streams noise.
    """

    def __init__(self, protocol: Protocol, status: bool = True, max_buffer: int = 4096):
        self.protocol = protocol
        self.status = status
        self.max_buffer = max_buffer
        self._buf = bytearray()
        self.discarded = 0  # garbage bytes skipped so far

    @property
    def pending(self) -> int:
        """Bytes held that do not (yet) form a complete frame."""
        return len(self._buf)

    def reset(self) -> None:
        self._buf.clear()
        self.discarded = 0

    def _drop(self, n: int) -> None:
        self.discarded += n
        del self._buf[:n]

    def _complete_valid_at(self, k: int) -> bool:
        n = self.protocol.frame_length(self._buf, k, self.status)
        if n <= 0 or k + n > len(self._buf):
            return False
        return self.protocol.decode_frame(bytes(self._buf[k : k + n]), self.status) is not None

    def _lookahead(self) -> int | None:
        header = self.protocol.header
        k = self._buf.find(header, 1)
        while k >= 0:
            if self._complete_valid_at(k):
                return k
            k = self._buf.find(header, k + 1)
        return None

    def feed(self, data: bytes | bytearray) -> list[ParseEvent]:
        """Add bytes; return the events for every frame they complete (possibly none)."""
        self._buf += data
        if len(self._buf) > self.max_buffer:
            self._drop(len(self._buf) - self.max_buffer)
        header = self.protocol.header
        events: list[ParseEvent] = []
        while self._buf:
            i = self._buf.find(header)
            if i < 0:
                # Keep the longest tail that could still become a header.
                keep = 0
                for n in range(min(len(header) - 1, len(self._buf)), 0, -1):
                    if self._buf[-n:] == header[:n]:
                        keep = n
                        break
                self._drop(len(self._buf) - keep)
                break
            if i:
                self._drop(i)
            n = self.protocol.frame_length(self._buf, 0, self.status)
            if n < 0:
                self._drop(1)
                continue
            if n == 0 or n > len(self._buf):
                k = self._lookahead()
                if k is None:
                    break
                self._drop(k)
                continue
            frame = bytes(self._buf[:n])
            packet = self.protocol.decode_frame(frame, self.status)
            if packet is None:
                events.append(ParseEvent(Outcome.CORRUPT, raw=frame))
                self._drop(1)  # a good frame may start inside the bad one
                continue
            events.append(ParseEvent(Outcome.OK, packet=packet, raw=frame))
            del self._buf[:n]
        return events


@dataclasses.dataclass(frozen=True)
class Reply:
    """Classified reply of one motor: `packet` is set only when `outcome` is OK."""

    outcome: Outcome
    packet: StatusPacket | None = None


class ReplyCollector:
    """Gathers the status packets that one instruction should produce.

    Args:
        protocol: the wire format.
        expected: motor id -> number of data bytes its reply must carry. A reply with the right
            id but another length is treated as corrupt (a bit flip in LEN can yield a frame whose
            checksum happens to match).
    """

    def __init__(self, protocol: Protocol, expected: dict[int, int]):
        self.expected = dict(expected)
        self._position = {i: k for k, i in enumerate(expected)}
        self.parser = StreamParser(protocol, status=True)
        self.replies: dict[int, StatusPacket] = {}
        self.suspect: set[int] = set()
        self.bytes_seen = 0
        self.bad_frames = 0
        self.wrong_ids: list[int] = []

    @property
    def done(self) -> bool:
        return len(self.replies) == len(self.expected)

    @property
    def missing(self) -> list[int]:
        return [i for i in self.expected if i not in self.replies]

    def feed(self, data: bytes | bytearray) -> None:
        self.bytes_seen += len(data)
        for ev in self.parser.feed(data):
            if ev.outcome is not Outcome.OK:
                self.bad_frames += 1
                continue
            pkt = ev.packet
            if pkt.id not in self.expected:
                self.wrong_ids.append(pkt.id)
            elif len(pkt.params) != self.expected[pkt.id]:
                self.bad_frames += 1
            else:
                self._accept(pkt)

    def _accept(self, pkt: StatusPacket) -> None:
        # Servos answer a sync read in the order of its id list. A valid-looking reply that
        # contradicts an earlier one, or arrives out of that order, may be another servo's reply
        # under a wrong id (a misconfigured servo, or a corruption that kept the checksum valid):
        # every reply it casts doubt on is withheld rather than risk returning a wrong value.
        if pkt.id in self.suspect:
            return
        if pkt.id in self.replies:
            if self.replies[pkt.id] != pkt:
                self.suspect.add(pkt.id)
                del self.replies[pkt.id]
            return
        pos = self._position[pkt.id]
        later = [i for i in self.replies if self._position[i] > pos]
        if later:
            self.suspect.update(later + [pkt.id])
            for i in later:
                del self.replies[i]
            return
        self.replies[pkt.id] = pkt

    def results(self) -> dict[int, Reply]:
        """Outcome per expected id, given everything fed so far (call at the deadline)."""
        noisy = self.bad_frames > 0 or self.parser.discarded > 0 or self.parser.pending > 0
        noisy = noisy or bool(self.wrong_ids) or bool(self.suspect)
        out = {}
        for i in self.expected:
            if i in self.replies:
                out[i] = Reply(Outcome.OK, self.replies[i])
            else:
                out[i] = Reply(Outcome.CORRUPT if noisy else Outcome.TIMEOUT)
        return out


def classify(protocol: Protocol, chunks: list[bytes], motor_id: int, n_params: int) -> Reply:
    """Classify the bytes received after one request to `motor_id` (pure; for tests and tools)."""
    collector = ReplyCollector(protocol, {motor_id: n_params})
    for chunk in chunks:
        collector.feed(chunk)
        if collector.done:
            break
    return collector.results()[motor_id]
