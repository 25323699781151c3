"""Calibrate a Koch or SO-100/SO-101 arm: `python -m hardware.calibrate --robot so101 --port ...`.

The app: it opens the port, runs the procedure (`hardware.arms.calibration_procedure`: you hold
the arm mid-range and press Enter, then move every joint through its whole range and press
Enter), and saves the calibration atomically as JSON. `ServoArm` checks the servos' EEPROM
against this file at every connect.

`--emulate` runs the whole procedure on an emulated arm with a scripted "user"
(`hardware.emulation.scripted_user`), to see it work. The procedure never prompts; only `main`
talks to a person.

Exit status: 0 saved, 1 the port did not open, the bus failed or the sweep was refused (one line
naming the port or the joint; nothing saved), 2 invalid arguments, 130 Ctrl-C (nothing saved).
"""

from __future__ import annotations

import os
import select
import sys
from pathlib import Path

from hardware.arguments import ArgumentParser, int_in
from hardware.arms.calibration import CalibrationError
from hardware.arms.calibration_procedure import calibrate
from hardware.arms.profiles import PROFILES, get_profile
from hardware.conventions import JOINT_NAMES
from hardware.emulation.emulated_arm import emulate_arm
from hardware.emulation.scripted_user import ScriptedUser
from hardware.motors.bus import MotorBus, MotorBusError

# `calibrate` and `ScriptedUser` lived here before the procedure moved into `hardware.arms`; the
# names stay importable from the app for scripts that use them.
__all__ = ["ScriptedUser", "calibrate", "default_path", "main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPT = 0, 1, 2, 130


def default_path(robot: str) -> Path:
    root = os.environ.get(
        "ACT_JAX_CALIBRATION", Path.home() / ".config" / "act-jax" / "calibration"
    )
    return Path(root) / f"{robot}.json"


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
