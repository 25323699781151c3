"""Differential checks against the vendors' own Python SDKs (skipped when they are absent).

The ROBOTIS `dynamixel_sdk` and Feetech `scservo_sdk` talk to our emulator over its pty as they
would to real servos: if the emulator's bytes were off by one, the vendor parsers would reject
them. The instruction bytes the SDKs send are compared with our encoder's, byte for byte.
"""

import time

import pytest

from hardware.motors.dynamixel import DYNAMIXEL
from hardware.motors.emulator import ServoEmulator
from hardware.motors.feetech import FEETECH

pytestmark = pytest.mark.timeout(60)
KOCH = {1: "xl430-w250", 2: "xl430-w250", 3: "xl330-m288", 4: "xl330-m288", 5: "xl330-m288",
        6: "xl330-m288"}


def goal_writes(emu, n=6, timeout=1.0):
    """The last `n` Goal_Position values written (a sync write has no reply: wait for it)."""
    deadline = time.monotonic() + timeout
    while len(emu.writes("Goal_Position")) < n and time.monotonic() < deadline:
        time.sleep(0.005)
    return [v for _, _, v in emu.writes("Goal_Position")][-n:]


def retry(sdk, fn, *args):
    """Call an SDK TxRx function, retrying a timeout (LeRobot's num_retry): the emulator is a
    thread on a shared machine, and the SDK's own timeout is a fixed 34 ms."""
    for _ in range(5):
        result = fn(*args)
        codes = result if isinstance(result, tuple) else (result,)
        if sdk.COMM_RX_TIMEOUT not in codes:
            return result
    return result


def sent_frames(emu, n):
    assert all(e.packet is not None for e in emu.wire_log[-n:]), "emulator saw a corrupt frame"
    return [e.raw for e in emu.wire_log[-n:]]


def test_dynamixel_sdk_against_emulator():
    sdk = pytest.importorskip("dynamixel_sdk")
    with ServoEmulator("dynamixel", KOCH) as emu:
        port = sdk.PortHandler(emu.port)
        assert port.openPort() and port.setBaudRate(1_000_000)
        ph = sdk.PacketHandler(2.0)
        try:
            model, comm, err = retry(sdk, ph.ping, port, 3)
            assert (model, comm, err) == (1200, sdk.COMM_SUCCESS, 0)
            assert sent_frames(emu, 1) == [DYNAMIXEL.encode_instruction(DYNAMIXEL.ping(3))]
            assert retry(sdk, ph.write1ByteTxRx, port, 1, 64, 1)[:1] == (sdk.COMM_SUCCESS,)
            assert retry(sdk, ph.write4ByteTxRx, port, 1, 116, 1500) == (sdk.COMM_SUCCESS, 0)
            assert sent_frames(emu, 1) == [DYNAMIXEL.encode_instruction(
                DYNAMIXEL.write(1, 116, (1500).to_bytes(4, "little")))]
            value, comm, err = retry(sdk, ph.read4ByteTxRx, port, 1, 116)
            assert (value, comm, err) == (1500, sdk.COMM_SUCCESS, 0)
            # EEPROM write with torque on: the SDK decodes our error byte as an access error.
            comm, err = retry(sdk, ph.write4ByteTxRx, port, 1, 20, 5)
            assert comm == sdk.COMM_SUCCESS and err == 7
            # Sync read of all six Present_Position, and a sync write of Goal_Position.
            reader = sdk.GroupSyncRead(port, ph, 132, 4)
            for i in KOCH:
                assert reader.addParam(i)
            assert retry(sdk, reader.txRxPacket) == sdk.COMM_SUCCESS
            assert sent_frames(emu, 1) == [DYNAMIXEL.encode_instruction(
                DYNAMIXEL.sync_read(132, 4, list(KOCH)))]
            data = [reader.getData(i, 132, 4) for i in KOCH]
            assert 1500 <= data[0] <= 2048 and data[1:] == [2048] * 5  # id 1 is moving to 1500
            writer = sdk.GroupSyncWrite(port, ph, 116, 4)
            for i in KOCH:
                assert writer.addParam(i, list((1000 + i).to_bytes(4, "little")))
            assert writer.txPacket() == sdk.COMM_SUCCESS
            assert goal_writes(emu, 7)[1:] == [1001, 1002, 1003, 1004, 1005, 1006]
            found, comm = ph.broadcastPing(port)
            assert comm == sdk.COMM_SUCCESS and sorted(found) == list(KOCH)
            assert found[1][0] == 1060 and found[3][0] == 1200
        finally:
            port.closePort()


def test_feetech_sdk_against_emulator():
    sdk = pytest.importorskip("scservo_sdk")
    ids = list(range(1, 7))
    with ServoEmulator("feetech", {i: "sts3215" for i in ids}) as emu:
        port = sdk.PortHandler(emu.port)
        assert port.openPort() and port.setBaudRate(1_000_000)
        ph = sdk.PacketHandler(0)  # STS: little-endian
        try:
            model, comm, err = retry(sdk, ph.ping, port, 2)  # ping, then a read of Model_Number
            assert (model, comm, err) == (777, sdk.COMM_SUCCESS, 0)
            assert sent_frames(emu, 2) == [
                FEETECH.encode_instruction(FEETECH.ping(2)),
                FEETECH.encode_instruction(FEETECH.read(2, 3, 2))]
            unlock = retry(sdk, ph.write1ByteTxRx, port, 1, 55, 0)  # Lock = 0
            assert unlock == (sdk.COMM_SUCCESS, 0)
            assert retry(sdk, ph.write2ByteTxRx, port, 1, 42, 1800) == (sdk.COMM_SUCCESS, 0)
            assert sent_frames(emu, 1) == [FEETECH.encode_instruction(
                FEETECH.write(1, 42, (1800).to_bytes(2, "little")))]
            assert retry(sdk, ph.read2ByteTxRx, port, 1, 42) == (1800, sdk.COMM_SUCCESS, 0)
            reader = sdk.GroupSyncRead(port, ph, 56, 2)
            for i in ids:
                assert reader.addParam(i)
            assert retry(sdk, reader.txRxPacket) == sdk.COMM_SUCCESS
            assert sent_frames(emu, 1) == [FEETECH.encode_instruction(
                FEETECH.sync_read(56, 2, ids))]
            assert [reader.getData(i, 56, 2) for i in ids] == [2048] * 6
            writer = sdk.GroupSyncWrite(port, ph, 42, 2)
            for i in ids:
                assert writer.addParam(i, list((1500 + i).to_bytes(2, "little")))
            assert writer.txPacket() == sdk.COMM_SUCCESS
            assert goal_writes(emu, 7)[1:] == [1501, 1502, 1503, 1504, 1505, 1506]
            emu.faults.error_bits[4] = 0x20
            value, comm, err = retry(sdk, ph.read2ByteTxRx, port, 4, 56)
            assert comm == sdk.COMM_SUCCESS and err == 0x20
            assert "Overload" in ph.getRxPacketError(err)
        finally:
            port.closePort()
