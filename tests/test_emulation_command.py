"""`python -m hardware.emulation`: the emulated arm as a command, answered through our `MotorBus`
and the vendors' SDKs from another process, exactly as a user's tool would reach it.

The port is read from the command's `port:` line (printed once the emulator is serving), so
nothing waits on a timer; the command is stopped with SIGINT and SIGTERM and must exit 0. The
SDK calls go through `helpers_vendor_sdk.SdkLine`, which retries a timed-out call only on a
settled line, so a loaded machine cannot hand a late reply to the next call.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_vendor_sdk import SdkLine

from hardware.arms.profiles import get_profile
from hardware.emulation.emulator import EMULATED_BUS_OPTIONS
from hardware.emulation.serve import FaultsError, describe, main, parse_faults
from hardware.motors.bus import MotorBus

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[1]
# Register addresses from the vendors' e-manuals (not from our tables): the SDK checks are
# independent of `hardware.motors.tables`.
VENDOR = {
    "dynamixel": {
        "sdk": "dynamixel_sdk",
        "version": 2.0,
        "torque": 64,
        "goal": 116,
        "size": 4,
        "present": 132,
        "model": 1060,
    },  # the Koch's id 1 is an XL430-W250
    "feetech": {
        "sdk": "scservo_sdk",
        "version": 0,
        "torque": 40,
        "goal": 42,
        "size": 2,
        "present": 56,
        "model": 777,
    },  # STS3215
}


class Command:
    """`python -m MODULE ARGS` in a subprocess; `port` from its `port:` line."""

    def __init__(self, *args: str, module: str = "hardware.emulation"):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines = []
        for line in self.proc.stdout:  # blocks until the emulator is serving (or the command dies)
            self.lines.append(line)
            if line.startswith("port: "):
                self.port = line.split(": ", 1)[1].strip()
                return
        raise AssertionError(f"no port line; stderr: {self.proc.stderr.read()}")

    def stop(self, sig=signal.SIGINT) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, "".join(self.lines) + out, err


def goals(profile) -> dict[str, int]:
    """Distinct goals inside every joint's default calibrated range."""
    return {name: 1900 + 10 * i for i, name in enumerate(profile.motors())}


def check_motor_bus(port: str, profile) -> None:
    bus = MotorBus(port, profile.motors(), profile.protocol, **EMULATED_BUS_OPTIONS)
    with bus:  # the handshake pings every id and checks its model
        first = next(iter(profile.motors()))
        number = bus.ping(profile.ids[0], budget_s=2.0, patient=True)
        assert number == bus.models[first].number
        bus.write("Torque_Enable", first, 1)
        assert bus.read("Torque_Enable", first) == 1
        bus.sync_write("Goal_Position", goals(profile))
        assert {n: bus.read("Goal_Position", n) for n in profile.motors()} == goals(profile)
        present = bus.sync_read("Present_Position", budget_s=1.0)
        assert present.ok and set(present.values) == set(profile.motors())
        assert not bus.disable_torque()


def check_vendor_sdk(port: str, profile) -> None:
    v = VENDOR[profile.protocol]
    sdk = pytest.importorskip(v["sdk"])
    handler = sdk.PortHandler(port)
    assert handler.openPort() and handler.setBaudRate(profile.baudrate)
    ph = sdk.PacketHandler(v["version"])
    read, write = (
        (ph.read4ByteTxRx, ph.write4ByteTxRx)
        if v["size"] == 4
        else (ph.read2ByteTxRx, ph.write2ByteTxRx)
    )
    line = SdkLine(sdk, handler, profile.protocol, barrier_id=profile.ids[0])
    try:
        model, comm, err = line.call(ph.ping, handler, profile.ids[0])
        assert (model, comm, err) == (v["model"], sdk.COMM_SUCCESS, 0)
        assert line.call(ph.write1ByteTxRx, handler, 2, v["torque"], 1) == (sdk.COMM_SUCCESS, 0)
        assert line.call(write, handler, 2, v["goal"], 2100) == (sdk.COMM_SUCCESS, 0)
        assert line.call(read, handler, 2, v["goal"]) == (2100, sdk.COMM_SUCCESS, 0)
        reader = sdk.GroupSyncRead(handler, ph, v["present"], v["size"])
        assert all(reader.addParam(i) for i in profile.ids)
        assert line.call(reader.txRxPacket) == sdk.COMM_SUCCESS
        assert all(reader.isAvailable(i, v["present"], v["size"]) for i in profile.ids)
        writer = sdk.GroupSyncWrite(handler, ph, v["goal"], v["size"])
        for i in profile.ids:
            assert writer.addParam(i, list((2000 + i).to_bytes(v["size"], "little")))
        assert writer.txPacket() == sdk.COMM_SUCCESS
        # A read after the sync write is answered after it was applied: the emulator serves in
        # order, so reading back needs no wait.
        for i in profile.ids:
            assert line.call(read, handler, i, v["goal"]) == (2000 + i, sdk.COMM_SUCCESS, 0)
        assert line.call(ph.write1ByteTxRx, handler, 2, v["torque"], 0) == (sdk.COMM_SUCCESS, 0)
    finally:
        handler.closePort()


@pytest.mark.parametrize(
    "robot, module", [("so101", "hardware.motors.emulate"), ("koch", "hardware.emulation")]
)
def test_the_command_answers_our_bus_and_the_vendor_sdk(robot, module):
    # hardware.motors.emulate is the spelling of the same command (an exec of it)
    profile = get_profile(robot)
    cmd = Command("--robot", robot, module=module)
    try:
        check_motor_bus(cmd.port, profile)
        check_vendor_sdk(cmd.port, profile)
    finally:
        rc, out, err = cmd.stop(signal.SIGINT if robot == "so101" else signal.SIGTERM)
    assert rc == 0, err
    assert f"{robot}: {profile.protocol} ids [1, 2, 3, 4, 5, 6]" in out
    assert "stopped after" in out and "emulator error" not in err


@pytest.mark.parametrize("robot, bits", [("so100", 0x20), ("koch_leader", 0x80)])
def test_fault_knobs_reach_the_wire(robot, bits):
    profile = get_profile(robot)
    cmd = Command("--robot", robot, "--faults", "dead_ids=6", f"error_bits=4:{bits:#x}")
    try:
        bus = MotorBus(cmd.port, profile.motors(), profile.protocol, **EMULATED_BUS_OPTIONS)
        bus.connect(handshake=False)
        try:
            assert bus.ping(1, budget_s=2.0, patient=True) == bus.models["shoulder_pan"].number
            assert bus.ping(6) is None
            bus.read("Present_Position", "wrist_flex", budget_s=1.0)
            assert bus.last_errors["wrist_flex"] == bits
        finally:
            bus.disconnect()
    finally:
        rc, out, err = cmd.stop()
    assert rc == 0, err
    assert f"faults: dead_ids=6 error_bits=4:{bits:#x}" in out


def test_parse_faults_reads_every_knob():
    words = [
        "drop=0.1",
        "delay=1",
        "delay_s=0.002",
        "corrupt=0.05",
        "truncate=0",
        "split=0.5",
        "garbage=0.01",
        "wrong_id=0.02",
        "forge=0.03",
        "dead_ids=3,5",
        "only_ids=1",
        "error_bits=2:0x20,4:1",
    ]
    faults = parse_faults(words, "so101")
    assert (faults.drop, faults.delay, faults.delay_s, faults.split) == (0.1, 1.0, 0.002, 0.5)
    assert faults.dead_ids == {3, 5} and faults.only_ids == {1}
    assert faults.error_bits == {2: 0x20, 4: 1}
    assert parse_faults(describe(faults).split(), "so101") == faults
    assert describe(parse_faults([], "koch")) == "none"


@pytest.mark.parametrize(
    "words, message",
    [
        (["dorp=0.1"], "--faults dorp=0.1: unknown knob 'dorp'; known: drop, delay"),
        (["drop=1.5"], "--faults drop=1.5: must be in [0, 1]"),
        (["drop=x"], "--faults drop=x: not a number"),
        (["drop"], "--faults drop: write drop=VALUE"),
        (["drop=0.1", "drop=0.2"], "--faults drop: given twice"),
        (["delay_s=-1"], "--faults delay_s=-1: must be in [0, 10]"),
        (["dead_ids=7"], "--faults dead_ids: no servo with id 7 (ids: [1, 2, 3, 4, 5, 6])"),
        (["only_ids=a"], "--faults only_ids: 'a' is not a servo id"),
        (["error_bits=4"], "--faults error_bits=4: write ID:BITS, e.g. 4:0x20"),
        (["error_bits=4:0"], "--faults error_bits=4:0: bits must be in 1..0xFF"),
        (["error_bits=4:zz"], "--faults error_bits=4:zz: 'zz' is not a number"),
    ],
)
def test_bad_fault_knobs_are_refused_in_one_line(words, message, capsys):
    with pytest.raises(FaultsError) as info:
        parse_faults(words, "so101")
    assert str(info.value).startswith(message)
    with pytest.raises(SystemExit) as exit_info:
        main(["--robot", "so101", "--faults", *words])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and message in err
