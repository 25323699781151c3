"""The servo emulator at the byte level, through a real pyserial port on its pty."""

import contextlib
import time

import pytest
import serial

from hardware.emulation.emulator import Faults, ServoEmulator, VirtualClock
from hardware.emulation.physics import FirstOrderServo
from hardware.motors.bus import Motor, MotorBus
from hardware.motors.dynamixel import DYNAMIXEL, crc16
from hardware.motors.feetech import FEETECH
from hardware.motors.packets import Outcome
from hardware.motors.parser import classify

pytestmark = pytest.mark.timeout(60)


def exchange(port, request: bytes, n: int, timeout=0.5) -> bytes:
    with serial.Serial(port, 1_000_000, timeout=timeout, exclusive=True) as ser:
        ser.write(request)
        return ser.read(n)


def test_dynamixel_ping_reply_is_byte_exact():
    with ServoEmulator("dynamixel", {1: "xl330-m288"}) as emu:
        reply = exchange(emu.port, bytes.fromhex("fffffd0001030001194e"), 14)
    body = bytes.fromhex("fffffd0001070055") + bytes([0, 1200 & 0xFF, 1200 >> 8, 52])
    assert reply == body + crc16(body).to_bytes(2, "little")


def test_feetech_read_model_number_is_byte_exact():
    with ServoEmulator("feetech", {1: "sts3215"}) as emu:
        reply = exchange(emu.port, FEETECH.encode_instruction(FEETECH.read(1, 3, 2)), 8)
    # FF FF id LEN=4 err=0 777=0x0309 little-endian, checksum ~(1+4+0+9+3) & 0xFF
    assert reply == bytes([0xFF, 0xFF, 1, 4, 0, 0x09, 0x03, (~(1 + 4 + 9 + 3)) & 0xFF])


@contextlib.contextmanager
def bus_for(emu, proto, ids, model, patient=True):
    """An open bus to the emulator. Patient (`MotorBus.patient`) unless a test counts retries:
    these tests are about what the firmware does, and the emulator is a thread of this process,
    which a loaded host can keep waiting longer than the control loop's tight budget allows
    (seen: a temperature read timing out at load 10)."""
    bus = MotorBus(emu.port, {f"m{i}": Motor(i, model) for i in ids}, proto, latency_s=0.004)
    with bus, contextlib.ExitStack() as patience:
        if patient:
            patience.enter_context(bus.patient())
        yield bus


def test_homing_offset_sign_conventions():
    for proto, model, expect in [
        ("dynamixel", "xl430-w250", 2048 + 100),
        ("feetech", "sts3215", 2048 - 100),
    ]:
        with ServoEmulator(proto, {1: model}) as emu:
            emu.set(1, "Homing_Offset", 100)
            with bus_for(emu, proto, [1], model) as bus:
                assert bus.read("Present_Position", "m1") == expect


def test_dynamixel_goal_outside_limits_is_refused_in_position_mode():
    with ServoEmulator("dynamixel", {1: "xl430-w250"}) as emu:
        emu.set(1, "Max_Position_Limit", 3000)
        emu.set(1, "Torque_Enable", 1)
        wire = DYNAMIXEL.encode_instruction(DYNAMIXEL.write(1, 116, (3500).to_bytes(4, "little")))
        reply = classify(DYNAMIXEL, [exchange(emu.port, wire, 11)], 1, 0)
        assert reply.packet.error == 6  # data limit error
        assert emu.get(1, "Goal_Position") == 0
        emu.set(1, "Operating_Mode", 4)  # extended position: firmware limits do not apply
        reply = classify(DYNAMIXEL, [exchange(emu.port, wire, 11)], 1, 0)
        assert reply.packet.error == 0 and emu.get(1, "Goal_Position") == 3500


def test_feetech_goal_clamped_and_eeprom_lock():
    with (
        ServoEmulator("feetech", {1: "sts3215"}) as emu,
        bus_for(emu, "feetech", [1], "sts3215") as bus,
    ):
        bus.write("Homing_Offset", "m1", 50)  # Lock = 1 (factory): silently not stored
        assert emu.get(1, "Homing_Offset") == 0
        bus.write("Lock", "m1", 0)
        bus.write("Homing_Offset", "m1", -50)
        bus.write("Max_Position_Limit", "m1", 3000)
        assert emu.get(1, "Homing_Offset") == -50
        bus.write("Goal_Position", "m1", 4000)
        assert emu.get(1, "Goal_Position") == 3000


def test_dynamixel_overheat_under_stall_needs_reboot():
    clock = VirtualClock()
    physics = FirstOrderServo([2048.0], heat_rate=30.0)
    with (
        ServoEmulator(
            "dynamixel", {1: "xl330-m288"}, physics=physics, clock=clock.monotonic
        ) as emu,
        bus_for(emu, "dynamixel", [1], "xl330-m288") as bus,
    ):
        physics.obstruct(0, 1900, 2100)
        bus.write("Goal_Position", "m1", 3000)
        bus.enable_torque()
        temps = []
        for _ in range(40):
            clock.advance(1.0)
            temps.append(bus.read("Present_Temperature", "m1"))
            if bus.last_errors.get("m1", 0) & 0x80:
                break
        assert temps[-1] >= 70 and temps == sorted(temps)  # heated while stalled
        # The error register is read from the emulator's table, not over the bus: on a loaded
        # host a late reply to the last temperature read (one byte, like this register, and
        # indistinguishable on the wire) can land as this read's reply.
        assert emu.get(1, "Hardware_Error_Status") == 0b100  # overheating
        assert emu.get(1, "Torque_Enable") == 0
        with pytest.raises(Exception, match="access error"):
            bus.enable_torque()
        bus.reboot("m1")
        assert emu.get(1, "Hardware_Error_Status") == 0


def test_corrupt_instruction_is_logged_and_ignored():
    with ServoEmulator("feetech", {1: "sts3215"}) as emu:
        wire = bytearray(FEETECH.encode_instruction(FEETECH.ping(1)))
        wire[-1] ^= 0x01
        assert exchange(emu.port, bytes(wire), 6, timeout=0.05) == b""
        time.sleep(0.05)
        assert emu.wire_log[-1].packet is None and emu.wire_log[-1].raw == bytes(wire)


def test_status_return_level_and_broadcast():
    with ServoEmulator("dynamixel", {1: "xl330-m288", 2: "xl330-m288"}) as emu:
        emu.set(1, "Status_Return_Level", 1)  # reply to ping and read only
        wire = DYNAMIXEL.encode_instruction(DYNAMIXEL.write(1, 65, b"\x01"))
        assert exchange(emu.port, wire, 11, timeout=0.05) == b""
        assert emu.get(1, "LED") == 1
        # Broadcast ping: every servo answers, in id order.
        replies = exchange(emu.port, DYNAMIXEL.encode_instruction(DYNAMIXEL.ping(0xFE)), 28)
        assert classify(DYNAMIXEL, [replies], 2, 3).outcome is Outcome.OK
        assert replies[4] == 1 and replies[18] == 2


def test_faults_are_seeded():
    def run(seed):
        with (
            ServoEmulator("feetech", {1: "sts3215"}, seed=seed) as emu,
            bus_for(emu, "feetech", [1], "sts3215", patient=False) as bus,
        ):
            emu.faults, bus.max_retries = Faults(drop=0.3, corrupt=0.2), 0
            n = len(emu.fault_log)
            for _ in range(40):
                bus.sync_read("Present_Position")
            return emu.fault_log[n:]

    assert run(1) == run(1) and run(1) != run(2)


def test_split_and_delayed_replies_reach_the_bus():
    faults = Faults(split=1.0, delay=1.0, delay_s=0.002)
    with ServoEmulator("dynamixel", {i: "xl330-m288" for i in (1, 2, 3)}, faults=faults) as emu:
        with bus_for(emu, "dynamixel", [1, 2, 3], "xl330-m288", patient=False) as bus:
            # Room for a host that keeps the emulator's thread waiting (the bus returns as soon
            # as every reply is whole), so that one attempt is the bus's doing, not the load's.
            bus.latency_s = 0.5
            result = bus.sync_read("Present_Position")
            assert result.values == {"m1": 2048, "m2": 2048, "m3": 2048}
            assert result.attempts == 1


def test_wire_drives_the_simulated_arm():
    # The MuJoCo arm behind the emulator: a goal written over the wire moves the simulated joint,
    # and the present position read back over the wire follows it.
    import numpy as np

    from hardware.arms import get_profile
    from hardware.emulation.emulated_arm import default_calibration, emulate_arm
    from hardware.emulation.sim_physics import SimArmPhysics
    from hardware.sim.robot import SimRobot

    calib = default_calibration("so101")
    robot = SimRobot(cameras=(), step_on_action=False)
    clock = VirtualClock()
    emu = emulate_arm(
        "so101",
        calibration=calib,
        clock=clock.monotonic,
        physics=SimArmPhysics(robot, calib, "feetech"),
    ).start()
    profile = get_profile("so101")
    try:
        with MotorBus(emu.port, profile.motors(), "feetech", latency_s=0.008) as bus:
            start = calib.to_units(
                [bus.sync_read("Present_Position").values[n] for n in profile.motors()]
            )
            np.testing.assert_allclose(start, robot.state(), atol=0.1)  # sim's HOME pose
            target = np.array([20.0, -30.0, 30.0, 60.0, 10.0, 60.0])
            ticks = calib.to_ticks(target)
            bus.sync_write(
                "Goal_Position", dict(zip(profile.motors(), map(int, ticks), strict=True))
            )
            bus.enable_torque()
            clock.advance(1.5)
            emu.advance_physics()
            np.testing.assert_allclose(robot.state(), target, atol=0.5)  # the sim moved
            read = bus.sync_read("Present_Position")
            assert read.ok
            back = calib.to_units([read.values[n] for n in profile.motors()])
            np.testing.assert_allclose(back, robot.state(), atol=0.1)  # and the wire says so
            # Torque off on the shoulder: the limp arm falls under gravity.
            bus.write("Torque_Enable", "shoulder_lift", 0)
            clock.advance(0.5)
            emu.advance_physics()
            assert abs(robot.state()[1] - target[1]) > 5.0
    finally:
        emu.stop()


def test_firmware_without_a_pty():
    # The firmware model is pure: instruction in, status packets out.
    from hardware.emulation.firmware import ServoFirmware

    fw = ServoFirmware("dynamixel", {1: "xl430-w250", 2: "xl430-w250"}, None, lambda: 0.0)
    assert fw.handle(DYNAMIXEL.write(1, 64, b"\x01"))[0].error == 0  # torque on
    assert fw.handle(DYNAMIXEL.write(1, 20, (5).to_bytes(4, "little")))[0].error == 7  # EEPROM
    assert fw.handle(DYNAMIXEL.write(2, 20, (5).to_bytes(4, "little")))[0].error == 0
    replies = fw.handle(DYNAMIXEL.sync_read(20, 4, [1, 2]))
    assert [(r.id, int.from_bytes(r.params, "little")) for r in replies] == [(1, 0), (2, 5)]
    assert fw.handle(DYNAMIXEL.write(7, 64, b"\x01")) == []  # nobody with id 7
    assert fw.handle(DYNAMIXEL.sync_write(116, 4, {1: bytes(4)})) == []  # no reply by protocol


def test_calibrating_the_simulated_arm_by_hand():
    # move_by_hand on the MuJoCo arm: the calibration procedure runs on the simulated arm too.
    import numpy as np

    from hardware.emulation.emulated_arm import default_calibration, emulate_arm
    from hardware.emulation.sim_physics import SimArmPhysics
    from hardware.sim.robot import SimRobot

    calib = default_calibration("so101")
    robot = SimRobot(cameras=(), step_on_action=False)
    physics = SimArmPhysics(robot, calib, "feetech")
    clock = VirtualClock()  # frozen time: the limp joint has no time to sag
    emu = emulate_arm("so101", calibration=calib, physics=physics, clock=clock.monotonic).start()
    try:
        emu.move_by_hand(3, int(calib.to_ticks(np.array([0, 0, 45.0, 0, 0, 50]))[2]))
        assert abs(robot.state()[2] - 45.0) < 0.1
        assert (
            abs(
                emu.get(3, "Present_Position") - calib.to_ticks(np.array([0, 0, 45.0, 0, 0, 50]))[2]
            )
            <= 1
        )
    finally:
        emu.stop()
