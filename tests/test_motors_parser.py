"""Fuzz of the streaming parser for both protocols (hypothesis).

Whatever bytes arrive, and however they are split, each expected reply ends as OK with the value
that was sent, CORRUPT, or TIMEOUT: never an exception, never a hang, never a wrong value.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardware.motors.dynamixel import DYNAMIXEL
from hardware.motors.feetech import FEETECH
from hardware.motors.packets import Outcome, StatusPacket
from hardware.motors.parser import ReplyCollector, StreamParser, classify

PROTOCOLS = pytest.mark.parametrize("proto", [DYNAMIXEL, FEETECH], ids=["dynamixel", "feetech"])
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
pytestmark = pytest.mark.timeout(120)

ids = st.integers(0, 252)
params = st.binary(min_size=0, max_size=8)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in points + [len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


@PROTOCOLS
@FUZZ
@given(
    noise=st.binary(max_size=300),
    cuts=st.lists(st.integers(0, 400), max_size=6),
    motor_id=ids,
    n=st.integers(0, 8),
)
def test_random_bytes_never_raise(proto, noise, cuts, motor_id, n):
    reply = classify(proto, split(noise, cuts), motor_id, n)
    assert reply.outcome in (Outcome.OK, Outcome.CORRUPT, Outcome.TIMEOUT)
    if reply.outcome is Outcome.OK:
        # Only possible if the noise really contains that packet.
        assert proto.encode_status(reply.packet) in noise
    elif not noise:
        assert reply.outcome is Outcome.TIMEOUT


@PROTOCOLS
@FUZZ
@given(
    motor_id=ids,
    error=st.integers(0, 255),
    data=params,
    prefix=st.binary(max_size=40),
    suffix=st.binary(max_size=40),
    cuts=st.lists(st.integers(0, 200), max_size=8),
)
def test_valid_packet_among_noise(proto, motor_id, error, data, prefix, suffix, cuts):
    sent = StatusPacket(motor_id, error, data)
    stream = prefix + proto.encode_status(sent) + suffix
    reply = classify(proto, split(stream, cuts), motor_id, len(data))
    assert reply.outcome in (Outcome.OK, Outcome.CORRUPT)
    if reply.outcome is Outcome.OK:
        assert reply.packet == sent
    if 0xFF not in prefix:
        # Without a header byte in the prefix nothing can shadow the real packet.
        assert reply.packet == sent


@PROTOCOLS
@FUZZ
@given(
    motor_id=ids,
    data=params,
    bit=st.integers(0, 10_000),
    cuts=st.lists(st.integers(0, 200), max_size=5),
)
def test_single_bit_flip_is_never_a_wrong_value(proto, motor_id, data, bit, cuts):
    sent = StatusPacket(motor_id, 0, data)
    wire = bytearray(proto.encode_status(sent))
    bit %= 8 * len(wire)
    wire[bit // 8] ^= 1 << (bit % 8)
    reply = classify(proto, split(bytes(wire), cuts), motor_id, len(data))
    assert reply.outcome in (Outcome.OK, Outcome.CORRUPT, Outcome.TIMEOUT)
    if reply.outcome is Outcome.OK:
        assert reply.packet == sent


@PROTOCOLS
@FUZZ
@given(
    values=st.lists(st.binary(min_size=4, max_size=4), min_size=6, max_size=6),
    gaps=st.lists(st.binary(max_size=6).filter(lambda b: 0xFF not in b), min_size=7, max_size=7),
    cuts=st.lists(st.integers(0, 300), max_size=12),
)
def test_sync_read_replies_with_noise_between(proto, values, gaps, cuts):
    stream = gaps[0]
    for i, v in enumerate(values):
        stream += proto.encode_status(StatusPacket(i + 1, 0, v)) + gaps[i + 1]
    collector = ReplyCollector(proto, {i + 1: 4 for i in range(6)})
    for chunk in split(stream, cuts):
        collector.feed(chunk)
    results = collector.results()
    assert all(r.outcome is Outcome.OK for r in results.values())
    assert [results[i + 1].packet.params for i in range(6)] == values


@PROTOCOLS
def test_false_header_with_long_length_does_not_hide_reply(proto):
    # Garbage that looks like the start of a long frame, then the real reply.
    fake = proto.header + bytes([1, 200, 0]) if proto is DYNAMIXEL else b"\xff\xff\x01\xf0"
    real = StatusPacket(1, 0, b"\x00\x08")
    reply = classify(proto, [fake + proto.encode_status(real)], 1, 2)
    assert reply.outcome is Outcome.OK and reply.packet == real


@PROTOCOLS
def test_classification_vocabulary(proto):
    good = proto.encode_status(StatusPacket(2, 0, b"\x01\x02"))
    assert classify(proto, [], 2, 2).outcome is Outcome.TIMEOUT
    assert classify(proto, [good[:-1]], 2, 2).outcome is Outcome.CORRUPT  # truncated
    assert classify(proto, [good], 3, 2).outcome is Outcome.CORRUPT  # wrong id answered
    assert classify(proto, [good], 2, 4).outcome is Outcome.CORRUPT  # wrong length
    assert classify(proto, [good[:3], good[3:]], 2, 2).packet.params == b"\x01\x02"


@PROTOCOLS
@FUZZ
@given(noise=st.binary(max_size=200), cuts=st.lists(st.integers(0, 300), max_size=6))
def test_instruction_parser_never_raises(proto, noise, cuts):
    parser = StreamParser(proto, status=False)
    for chunk in split(noise, cuts):
        for ev in parser.feed(chunk):
            assert ev.outcome in (Outcome.OK, Outcome.CORRUPT)
    assert parser.pending <= len(noise)


def test_dynamixel_stuffed_payload_survives_splits():
    data = b"\xff\xff\xfd\x00\xff\xff\xfd"
    sent = StatusPacket(5, 0, data)
    wire = DYNAMIXEL.encode_status(sent)
    assert len(wire) == DYNAMIXEL.status_size(len(data)) + 2  # two stuffing bytes
    for cut in range(len(wire) + 1):
        assert classify(DYNAMIXEL, [wire[:cut], wire[cut:]], 5, len(data)).packet == sent


@PROTOCOLS
def test_reply_under_wrong_id_is_withheld(proto):
    # Servo 4's reply arrives carrying id 6 (valid checksum), in servo 4's slot of the sync read.
    def status(i, v):
        return proto.encode_status(StatusPacket(i, 0, bytes([v, 0])))

    expected = {i: 2 for i in range(1, 7)}
    stream = status(1, 1) + status(2, 2) + status(3, 3) + status(6, 4) + status(5, 5) + status(6, 6)
    collector = ReplyCollector(proto, expected)
    collector.feed(stream)
    results = collector.results()
    assert results[6].outcome is Outcome.CORRUPT  # never the value 4
    assert results[4].outcome is Outcome.CORRUPT
    assert [results[i].packet.params[0] for i in (1, 2, 3)] == [1, 2, 3]
