"""Packet encoding against published examples, value encodings, stuffing, control tables."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.motors import get_protocol
from hardware.motors.dynamixel import DYNAMIXEL, crc16, stuff, unstuff
from hardware.motors.feetech import FEETECH, checksum
from hardware.motors.packets import InstructionPacket, StatusPacket
from hardware.motors.tables import MODELS, Register, get_model


def test_crc16_check_value():
    # CRC-16/BUYPASS (poly 0x8005, init 0): the catalogue check value for "123456789".
    assert crc16(b"123456789") == 0xFEE8


def test_dynamixel_matches_emanual_examples():
    # ROBOTIS e-manual, Protocol 2.0: ping id 1, its status (XM430: model 1030, fw 0x26), and a
    # read of 4 bytes at 132 (Present_Position).
    assert DYNAMIXEL.encode_instruction(DYNAMIXEL.ping(1)).hex() == "fffffd0001030001194e"
    status = DYNAMIXEL.encode_status(StatusPacket(1, 0, bytes([0x06, 0x04, 0x26])))
    assert status.hex() == "fffffd000107005500060426655d"
    read = DYNAMIXEL.encode_instruction(DYNAMIXEL.read(1, 132, 4))
    assert read.hex() == "fffffd0001070002840004001d15"


def test_feetech_ping_and_checksum():
    assert FEETECH.encode_instruction(FEETECH.ping(1)).hex() == "ffff010201fb"
    # Read Present_Position (56, 2 bytes) of id 1: LEN = 4.
    pkt = FEETECH.encode_instruction(FEETECH.read(1, 56, 2))
    assert pkt[:6].hex() == "ffff01040238" and pkt[-1] == checksum(pkt[2:-1])


def test_sync_packets_layout():
    sw = FEETECH.encode_instruction(FEETECH.sync_write(42, 2, {1: b"\x00\x08", 2: b"\x10\x08"}))
    # FF FF FE LEN=#ids*(1+n)+4 83 addr n id d d id d d chk
    assert sw[2] == 0xFE and sw[3] == 2 * 3 + 4 and sw[4] == 0x83 and sw[5:7] == bytes([42, 2])
    sr = DYNAMIXEL.encode_instruction(DYNAMIXEL.sync_read(132, 4, [1, 2, 3]))
    assert sr[4] == 0xFE and sr[7] == 0x82 and sr[8:12] == bytes([132, 0, 4, 0])
    assert sr[12:15] == bytes([1, 2, 3])


@given(st.binary(max_size=64))
@settings(max_examples=200, deadline=None)
def test_stuffing_roundtrip_and_no_header(payload):
    s = stuff(payload)
    assert unstuff(s) == payload
    # After stuffing, FF FF FD is always followed by FD, so a header (FF FF FD 00) cannot occur.
    for i in range(len(s) - 3):
        if s[i : i + 3] == b"\xff\xff\xfd":
            assert s[i + 3] == 0xFD


@pytest.mark.parametrize("proto", [DYNAMIXEL, FEETECH])
@given(data=st.data())
@settings(max_examples=100, deadline=None)
def test_value_encoding_roundtrip(proto, data):
    model = get_model("sts3215" if proto is FEETECH else "xl330-m288")
    reg = data.draw(st.sampled_from(list(model.table.values())))
    if reg.sign == "twos":
        v = data.draw(st.integers(-(1 << (8 * reg.size - 1)), (1 << (8 * reg.size - 1)) - 1))
    elif isinstance(reg.sign, int):
        v = data.draw(st.integers(-((1 << reg.sign) - 1), (1 << reg.sign) - 1))
    else:
        v = data.draw(st.integers(0, (1 << (8 * reg.size)) - 1))
    assert proto.decode_value(reg, proto.encode_value(reg, v)) == v


def test_sign_magnitude_layout_and_overflow():
    ho = get_model("sts3215").register("Homing_Offset")
    assert FEETECH.encode_value(ho, -5) == bytes([5, 0x08])  # sign in bit 11
    with pytest.raises(ValueError, match="Homing_Offset"):
        FEETECH.encode_value(ho, 2048)  # LeRobot issue #1296: magnitude over 2047
    load = Register("Present_Load", 60, 2, "ram", False, 10)
    assert FEETECH.decode_value(load, bytes([0xE8, 0x07])) == -1000


def test_tables_are_consistent():
    for model in MODELS.values():
        spans = sorted((r.address, r.address + r.size, r.name) for r in model.table.values())
        for (_a0, a1, n0), (b0, _, n1) in zip(spans, spans[1:], strict=False):
            assert a1 <= b0, f"{model.name}: {n0} overlaps {n1}"
        for r in model.table.values():
            assert (r.area == "eeprom") == (r.address < model.eeprom_end), (model.name, r.name)
    assert get_model("xl430-w250").register("Goal_Position").address == 116
    assert get_model("sts3215").register("Present_Position").address == 56
    with pytest.raises(ValueError, match="unknown servo model"):
        get_model("xl999")
    with pytest.raises(ValueError, match="unknown servo protocol"):
        get_protocol("can")


@pytest.mark.parametrize("proto", [DYNAMIXEL, FEETECH])
def test_instruction_roundtrip_through_decoder(proto):
    pkt = InstructionPacket(3, 0x03, bytes([0xFF, 0xFF, 0xFD, 0x00, 0x01]))
    wire = proto.encode_instruction(pkt)
    assert proto.decode_frame(wire, status=False) == pkt
