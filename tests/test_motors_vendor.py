"""Differential checks against the vendors' own Python SDKs (skipped when they are absent).

The ROBOTIS `dynamixel_sdk` and Feetech `scservo_sdk` talk to our emulator over its pty as they
would to real servos: if the emulator's bytes were off by one, the vendor parsers would reject
them. The instruction bytes the SDKs send are compared with our encoder's, byte for byte.

Robust under CPU load without timers: a call that times out is retried only once the line has
settled (`helpers_vendor_sdk.SdkLine`: every late reply consumed, up to a barrier read's), and a
sync write (no reply) is known to be applied once a later barrier read is answered.
"""

import pytest
from helpers_vendor_sdk import BARRIER_ADDRESS, BARRIER_SIZE, SdkLine

from hardware.emulation.emulator import ServoEmulator
from hardware.motors.dynamixel import DYNAMIXEL
from hardware.motors.feetech import FEETECH

pytestmark = pytest.mark.timeout(60)
KOCH = {
    1: "xl430-w250",
    2: "xl430-w250",
    3: "xl330-m288",
    4: "xl330-m288",
    5: "xl330-m288",
    6: "xl330-m288",
}


def goal_writes(emu, line, n=6):
    """The last `n` Goal_Position values written (a sync write has no reply: `line.sync()`
    returns once the emulator has served everything sent before it)."""
    line.sync()
    return [v for _, _, v in emu.writes("Goal_Position")][-n:]


def sent_frames(emu, n):
    """The raw bytes of the last `n` instruction frames the emulator received."""
    assert all(e.packet is not None for e in emu.wire_log[-n:]), "emulator saw a corrupt frame"
    return [e.raw for e in emu.wire_log[-n:]]


def test_dynamixel_sdk_against_emulator():
    sdk = pytest.importorskip("dynamixel_sdk")
    with ServoEmulator("dynamixel", KOCH) as emu:
        port = sdk.PortHandler(emu.port)
        assert port.openPort() and port.setBaudRate(1_000_000)
        ph = sdk.PacketHandler(2.0)
        line = SdkLine(sdk, port, "dynamixel", barrier_id=1)
        try:
            model, comm, err = line.call(ph.ping, port, 3)
            assert (model, comm, err) == (1200, sdk.COMM_SUCCESS, 0)
            assert sent_frames(emu, 1) == [DYNAMIXEL.encode_instruction(DYNAMIXEL.ping(3))]
            assert line.call(ph.write1ByteTxRx, port, 1, 64, 1)[:1] == (sdk.COMM_SUCCESS,)
            assert line.call(ph.write4ByteTxRx, port, 1, 116, 1500) == (sdk.COMM_SUCCESS, 0)
            assert sent_frames(emu, 1) == [
                DYNAMIXEL.encode_instruction(DYNAMIXEL.write(1, 116, (1500).to_bytes(4, "little")))
            ]
            value, comm, err = line.call(ph.read4ByteTxRx, port, 1, 116)
            assert (value, comm, err) == (1500, sdk.COMM_SUCCESS, 0)
            # EEPROM write with torque on: the SDK decodes our error byte as an access error.
            comm, err = line.call(ph.write4ByteTxRx, port, 1, 20, 5)
            assert comm == sdk.COMM_SUCCESS and err == 7
            # Sync read of all six Present_Position, and a sync write of Goal_Position.
            reader = sdk.GroupSyncRead(port, ph, 132, 4)
            for i in KOCH:
                assert reader.addParam(i)
            assert line.call(reader.txRxPacket) == sdk.COMM_SUCCESS
            assert sent_frames(emu, 1) == [
                DYNAMIXEL.encode_instruction(DYNAMIXEL.sync_read(132, 4, list(KOCH)))
            ]
            data = [reader.getData(i, 132, 4) for i in KOCH]
            assert 1500 <= data[0] <= 2048 and data[1:] == [2048] * 5  # id 1 is moving to 1500
            writer = sdk.GroupSyncWrite(port, ph, 116, 4)
            for i in KOCH:
                assert writer.addParam(i, list((1000 + i).to_bytes(4, "little")))
            assert writer.txPacket() == sdk.COMM_SUCCESS
            assert goal_writes(emu, line, 7)[1:] == [1001, 1002, 1003, 1004, 1005, 1006]
            # The SDK collects broadcast replies for a fixed ~800 ms: under load some may come
            # later, so a short list is retried on a settled line.
            found, comm = line.call(ph.broadcastPing, port, done=lambda r: len(r[0]) == len(KOCH))
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
        line = SdkLine(sdk, port, "feetech", barrier_id=1)
        try:
            model, comm, err = line.call(ph.ping, port, 2)  # ping, then a read of Model_Number
            assert (model, comm, err) == (777, sdk.COMM_SUCCESS, 0)
            assert sent_frames(emu, 2) == [
                FEETECH.encode_instruction(FEETECH.ping(2)),
                FEETECH.encode_instruction(FEETECH.read(2, 3, 2)),
            ]
            unlock = line.call(ph.write1ByteTxRx, port, 1, 55, 0)  # Lock = 0
            assert unlock == (sdk.COMM_SUCCESS, 0)
            assert line.call(ph.write2ByteTxRx, port, 1, 42, 1800) == (sdk.COMM_SUCCESS, 0)
            assert sent_frames(emu, 1) == [
                FEETECH.encode_instruction(FEETECH.write(1, 42, (1800).to_bytes(2, "little")))
            ]
            assert line.call(ph.read2ByteTxRx, port, 1, 42) == (1800, sdk.COMM_SUCCESS, 0)
            reader = sdk.GroupSyncRead(port, ph, 56, 2)
            for i in ids:
                assert reader.addParam(i)
            assert line.call(reader.txRxPacket) == sdk.COMM_SUCCESS
            assert sent_frames(emu, 1) == [
                FEETECH.encode_instruction(FEETECH.sync_read(56, 2, ids))
            ]
            assert [reader.getData(i, 56, 2) for i in ids] == [2048] * 6
            writer = sdk.GroupSyncWrite(port, ph, 42, 2)
            for i in ids:
                assert writer.addParam(i, list((1500 + i).to_bytes(2, "little")))
            assert writer.txPacket() == sdk.COMM_SUCCESS
            assert goal_writes(emu, line, 7)[1:] == [1501, 1502, 1503, 1504, 1505, 1506]
            emu.faults.error_bits[4] = 0x20
            value, comm, err = line.call(ph.read2ByteTxRx, port, 4, 56)
            assert comm == sdk.COMM_SUCCESS and err == 0x20
            assert "Overload" in ph.getRxPacketError(err)
        finally:
            port.closePort()


def test_a_late_reply_is_consumed_before_the_sdk_retries():
    # A late reply made certain: while the test holds the emulator's lock the servo cannot
    # answer, so the SDK's ping times out, and the reply goes out once the lock is released.
    sdk = pytest.importorskip("scservo_sdk")
    with ServoEmulator("feetech", {i: "sts3215" for i in range(1, 7)}) as emu:
        port = sdk.PortHandler(emu.port)
        assert port.openPort() and port.setBaudRate(1_000_000)
        ph = sdk.PacketHandler(0)
        line = SdkLine(sdk, port, "feetech", barrier_id=1)
        try:
            with emu.lock:
                assert ph.ping(port, 2)[1] == sdk.COMM_RX_TIMEOUT
            # Unsettled, the SDK takes that late reply for its next ping's and then the next
            # ping's reply (no data) for Model_Number: sdk 1.0.0 raises IndexError on it.
            try:
                unsettled = ph.ping(port, 2)
            except IndexError:
                unsettled = "IndexError"
            assert unsettled != (777, sdk.COMM_SUCCESS, 0)
            line.settle()
            attempts = []

            def ping_first_one_late():
                attempts.append(1)
                if len(attempts) > 1:
                    return ph.ping(port, 2)
                with emu.lock:
                    return ph.ping(port, 2)

            assert line.call(ping_first_one_late) == (777, sdk.COMM_SUCCESS, 0)
            # The first attempt is late by construction; on a loaded host a retry can time out
            # too (the SDK's own timeout is tight). Whatever the count, every retry came after
            # a settle, and the answer is the right one.
            assert len(attempts) >= 2 and line.settles == 1 + (len(attempts) - 1)
            assert line.call(ph.read2ByteTxRx, port, 2, 3) == (777, sdk.COMM_SUCCESS, 0)
        finally:
            port.closePort()


class ScriptedLine:
    """A pty whose "servo" answers each instruction packet with the next scripted byte string,
    and a barrier read (`helpers_vendor_sdk`) with a good reply of its size."""

    def __init__(self, proto):
        import os
        import threading
        import tty

        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.proto, self.queue, self.running = proto, [], True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import os
        import select

        from hardware.motors.packets import Instruction, StatusPacket
        from hardware.motors.parser import StreamParser

        parser = StreamParser(self.proto, status=False)
        while self.running:
            if not select.select([self.master], [], [], 0.01)[0]:
                continue
            for ev in parser.feed(os.read(self.master, 4096)):
                pkt = ev.packet
                barrier = self.proto.read(pkt.id, BARRIER_ADDRESS, BARRIER_SIZE) if pkt else None
                if pkt is not None and pkt.instruction == Instruction.READ and pkt == barrier:
                    reply = StatusPacket(pkt.id, 0, bytes(BARRIER_SIZE))
                    os.write(self.master, self.proto.encode_status(reply))
                elif self.queue:
                    os.write(self.master, self.queue.pop(0))

    def close(self):
        import os

        self.running = False
        self.thread.join()
        os.close(self.master)
        os.close(self.slave)


@pytest.mark.parametrize("name", ["dynamixel", "feetech"])
def test_reply_classification_agrees_with_vendor_sdk(name):
    # The same reply bytes go to the vendor SDK (over a pty) and to our parser: valid, noise
    # before it, truncated, one bit flipped, another id. Both must say OK with the same value,
    # or both not OK. One class differs, in our favour: a reply with FEWER data bytes than asked
    # for (valid checksum). Both SDKs return COMM_SUCCESS and a value made of bytes beyond the
    # packet; our parser calls it corrupt.
    import random

    from hardware.motors.packets import Outcome, StatusPacket
    from hardware.motors.parser import classify

    sdk = pytest.importorskip("dynamixel_sdk" if name == "dynamixel" else "scservo_sdk")
    proto, n, addr = (DYNAMIXEL, 4, 132) if name == "dynamixel" else (FEETECH, 2, 56)
    line = ScriptedLine(proto)
    port = sdk.PortHandler(line.port)
    assert port.openPort() and port.setBaudRate(1_000_000)
    ph = sdk.PacketHandler(2.0 if name == "dynamixel" else 0)
    read = ph.read4ByteTxRx if name == "dynamixel" else ph.read2ByteTxRx
    sdk_line = SdkLine(sdk, port, name, barrier_id=1)
    rng = random.Random(0)
    short_accepted_by_sdk = 0
    try:
        for k in range(48):
            value = rng.randbytes(n)
            good = proto.encode_status(StatusPacket(1, 0, value))
            kind = k % 6
            if kind == 0:
                stream = good
            elif kind == 1:  # noise without header bytes before the reply
                stream = bytes(rng.choice([0, 1, 0x55, 0xFD]) for _ in range(4)) + good
            elif kind == 2:
                stream = good[: rng.randrange(1, len(good))]
            elif kind == 3:
                b = bytearray(good)
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
                stream = bytes(b)
            elif kind == 4:
                stream = proto.encode_status(StatusPacket(2, 0, value))
            else:
                stream = proto.encode_status(StatusPacket(1, 0, value[:-1]))
            ours = classify(proto, [stream], 1, n)
            for _ in range(5):  # a loaded machine can make the SDK's 34 ms timeout expire
                line.queue = [stream]
                got, comm, _ = read(port, 1, addr)
                # Whatever the SDK left unread (a late or a broken reply) is consumed, so the
                # next read starts on a clean line.
                sdk_line.settle()
                if not (ours.outcome is Outcome.OK and comm == sdk.COMM_RX_TIMEOUT):
                    break
            if kind == 5:
                assert ours.outcome is Outcome.CORRUPT
                short_accepted_by_sdk += comm == sdk.COMM_SUCCESS
                continue
            assert (ours.outcome is Outcome.OK) == (comm == sdk.COMM_SUCCESS), (kind, stream.hex())
            if comm == sdk.COMM_SUCCESS:
                assert int.from_bytes(ours.packet.params, "little") == got
    finally:
        port.closePort()
        line.close()
    # With dynamixel-sdk 4.1.0 and feetech-servo-sdk 1.0.0, short_accepted_by_sdk is 8 of 8:
    # not asserted, so that a fixed SDK does not fail this test.
