"""Calibrate a Koch or SO-100/SO-101 arm: `python -m hardware.calibrate --robot so101 --port ...`.

The procedure (LeRobot's, with the wrap check added):
1. Torque off; homing offsets cleared; position limits opened to the full turn.
2. You hold the arm in the middle of its range and press Enter: each joint's homing offset is set so
   that it reads mid-turn (2047) there, which puts the encoder's 0/4095 wrap half a turn away.
3. You move every joint (except full-turn ones: Koch pan and wrist roll, SO-101 wrist roll) through
   its whole range and press Enter: the minimum and maximum are recorded live.
4. Ranges are checked against the wrap, written to the servos' EEPROM position limits, and saved
   atomically as JSON. `ServoArm` checks that EEPROM against this file at every connect.

`--emulate` runs the whole procedure on an emulated arm with a scripted "user", to see it work.
The library functions never prompt; only `main` talks to a person.

Exit status: 0 saved, 1 the port did not open, the bus failed or the sweep was refused (one line
naming the port or the joint; nothing saved), 2 invalid arguments, 130 Ctrl-C (nothing saved).
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hardware.arguments import ArgumentParser, int_in
from hardware.arms.calibration import (
    ArmCalibration,
    CalibrationError,
    JointCalibration,
    check_range,
    half_turn_offset,
)
from hardware.arms.profiles import PROFILES, ArmProfile, get_profile
from hardware.conventions import JOINT_NAMES
from hardware.emulation.emulated_arm import emulate_arm
from hardware.motors.bus import MotorBus, MotorBusError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPT = 0, 1, 2, 130


def default_path(robot: str) -> Path:
    root = os.environ.get(
        "ACT_JAX_CALIBRATION", Path.home() / ".config" / "act-jax" / "calibration"
    )
    return Path(root) / f"{robot}.json"


def calibrate(
    bus: MotorBus,
    profile: ArmProfile,
    wait_for_user: Callable[[str], None],
    sweep_done: Callable[[], bool],
    on_sample: Callable[[dict[str, int], dict[str, int], dict[str, int]], None] | None = None,
    poll_s: float = 0.02,
) -> ArmCalibration:
    """Run the procedure on a connected bus; return the calibration (also written to EEPROM).

    Args:
        bus: connected `MotorBus` with motors named `JOINT_NAMES`.
        profile: the arm profile (which joints are full-turn).
        wait_for_user: shows an instruction and returns when the user is ready.
        sweep_done: polled during the range sweep; True ends it.
        on_sample: called with (present, mins, maxs) at every sweep sample, for a live display.
        poll_s: seconds between sweep samples.
    """
    resolution = bus.models[JOINT_NAMES[0]].resolution
    bus.disable_torque()
    for name in JOINT_NAMES:
        bus.write("Homing_Offset", name, 0)
        bus.write("Min_Position_Limit", name, 0)
        bus.write("Max_Position_Limit", name, resolution - 1)
    wait_for_user("Move the arm to the MIDDLE of its range of motion, then press Enter.")
    actual = bus.read_all("Present_Position")
    offsets = {n: half_turn_offset(profile.protocol, actual[n], resolution) for n in JOINT_NAMES}
    for name, offset in offsets.items():
        bus.write("Homing_Offset", name, offset)
    present = bus.read_all("Present_Position")
    mins, maxs = dict(present), dict(present)
    swept = [n for n in JOINT_NAMES if n not in profile.full_turn]
    wait_for_user(
        f"Move {', '.join(swept)} one by one through their ENTIRE range; press Enter when done."
    )
    while not sweep_done():
        result = bus.sync_read("Present_Position", budget_s=0.05)
        for name, value in result.values.items():
            mins[name] = min(mins[name], value)
            maxs[name] = max(maxs[name], value)
        if on_sample is not None:
            on_sample(result.values, mins, maxs)
        time.sleep(poll_s)
    joints = {}
    for name, motor_id in zip(JOINT_NAMES, profile.ids, strict=True):
        if name in profile.full_turn:
            lo, hi = 0, resolution - 1
        else:
            lo, hi = mins[name], maxs[name]
            check_range(name, lo, hi, resolution)
        joints[name] = JointCalibration(motor_id, 0, offsets[name], lo, hi)
    for name, j in joints.items():
        bus.write("Min_Position_Limit", name, j.range_min)
        bus.write("Max_Position_Limit", name, j.range_max)
    return ArmCalibration(profile.name, joints, resolution)


class ScriptedUser:
    """A simulated person for an emulated arm: holds it mid-range (with the servos mounted at
    random angles), then sweeps each joint through a range of motion of its own."""

    def __init__(self, emu, profile: ArmProfile, seed: int = 0, sweep_samples: int = 40):
        self.emu, self.profile = emu, profile
        rng = np.random.default_rng(seed)
        self.mount = rng.integers(0, 4096, 6)  # actual encoder reading at mid-range
        self.half = rng.integers(700, 1300, 6)  # half range of motion, ticks
        self.samples, self.k = sweep_samples, 0
        self.steps: list[str] = []

    def wait_for_user(self, message: str) -> None:
        self.steps.append(message)
        if "MIDDLE" in message:
            for i, motor_id in enumerate(self.profile.ids):
                self.emu.set(motor_id, "Homing_Offset", 0)
                self.emu.move_by_hand(motor_id, int(self.mount[i]))

    def sweep_done(self) -> bool:
        phase = 2 * np.pi * self.k / self.samples
        for i, motor_id in enumerate(self.profile.ids):
            present = 2047 + int(round(self.half[i] * np.sin(phase + i)))
            self.emu.move_by_hand(motor_id, present)
        self.k += 1
        return self.k > self.samples


def _stdin_enter_pressed() -> bool:
    ready, _, _ = select.select([sys.stdin], [], [], 0)
    if ready:
        sys.stdin.readline()
        return True
    return False


_SHORT = dict(zip(JOINT_NAMES, ("pan", "lift", "elbow", "wflex", "wroll", "grip"), strict=True))


def _show(present, mins, maxs) -> None:
    """One live line: min < present < max ticks per joint."""
    cells = [
        f"{_SHORT[n]:>5} {mins[n]:4d}<{present.get(n, -1):4d}<{maxs[n]:4d}" for n in JOINT_NAMES
    ]
    print("\r" + " | ".join(cells), end="", flush=True)


def main(argv=None) -> int:
    parser = ArgumentParser(
        prog="python -m hardware.calibrate",
        description="Calibrate a Koch or SO-100/SO-101 arm: set homing offsets, record ranges, "
        "write them to the servos' EEPROM and save them atomically as JSON.",
    )
    parser.add_argument("--robot", required=True, choices=sorted(PROFILES), help="arm profile")
    parser.add_argument("--port", help="serial port, e.g. /dev/ttyACM0 (not with --emulate)")
    parser.add_argument(
        "--out",
        type=Path,
        help="calibration file (default: "
        "$ACT_JAX_CALIBRATION or ~/.config/act-jax/calibration/<robot>.json)",
    )
    parser.add_argument(
        "--emulate",
        action="store_true",
        help="run on an emulated arm with a scripted user (a demonstration)",
    )
    parser.add_argument(
        "--seed", type=int_in(0), default=0, help="--emulate: mounting offsets seed"
    )
    args = parser.parse_args(argv)
    profile = get_profile(args.robot)
    out = args.out or default_path(profile.name)
    emu = None
    if args.emulate and args.port:
        parser.error("--port is not used with --emulate (the emulator makes the port)")
    if args.emulate:
        emu = emulate_arm(profile).start()
        port = emu.port
        user = ScriptedUser(emu, profile, seed=args.seed)
        wait, done = (lambda m: (print(m), user.wait_for_user(m))), user.sweep_done
    elif args.port:
        port = args.port
        wait, done = (lambda m: input(m + " ")), _stdin_enter_pressed
    else:
        parser.error("--port is required unless --emulate is given")
    bus = MotorBus(port, profile.motors(), profile.protocol, profile.baudrate)
    try:
        try:
            with bus:
                calib = calibrate(bus, profile, wait, done, on_sample=_show)
        except (MotorBusError, CalibrationError) as e:  # a port that does not open, a bad sweep
            print(f"calibrate: {e} Nothing was saved.", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print("calibrate: interrupted; nothing was saved", file=sys.stderr)
            return EXIT_INTERRUPT
        print()
        path = calib.save(out)
        lo, hi = calib.limits()
        for name, a, b in zip(JOINT_NAMES, lo, hi, strict=True):
            unit = "%" if name == "gripper" else "deg"
            print(f"  {name:>14}: {a:8.1f} .. {b:7.1f} {unit}")
        print(f"saved {path}")
        return EXIT_OK
    finally:
        if emu is not None:
            emu.stop()


if __name__ == "__main__":
    sys.exit(main())
