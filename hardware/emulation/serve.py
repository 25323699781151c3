"""A standalone emulated arm on a pseudo-terminal, for LeRobot, the vendor SDKs or your own tools:

    python -m hardware.emulation --robot so101
    python -m hardware.emulation --robot koch --faults drop=0.05 corrupt=0.01 dead_ids=6 \
        error_bits=4:0x20

prints `port: /dev/pts/N` (open it at 1 Mbaud as you would `/dev/ttyACM0`) and answers as the
arm's servos (`emulate_arm`, first-order joint physics, `default_calibration` in the EEPROM)
until Ctrl-C or SIGTERM; then it prints how many packets it received and exits 0 (1 if the
emulator recorded an internal error).

`--faults` takes the knobs of `hardware.emulation.emulator.Faults`, the ones the tests use, as
KEY=VALUE words: probabilities (`drop`, `delay`, `corrupt`, `truncate`, `split`, `garbage`,
`wrong_id`, `forge`) in [0, 1], `delay_s` in seconds, id sets (`dead_ids`, `only_ids`) as
`3,5`, and `error_bits` as `ID:BITS[,ID:BITS]` (BITS decimal or 0x..). A bad knob is refused in
one line, exit status 2.

Why `python -m hardware.emulation` and not `python -m hardware.motors.emulate`: `hardware.motors`
is the driver layer, the bottom of `hardware`, and imports nothing above it (DESIGN.md, checked by
tests/test_import_graph.py, which counts late imports too); the emulator sits two layers higher,
over the arm profiles and calibrations. A command that starts it belongs with it.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading

from hardware.arguments import ArgumentParser, int_in
from hardware.arms.profiles import PROFILES, ArmProfile, get_profile
from hardware.emulation.emulated_arm import emulate_arm
from hardware.emulation.emulator import Faults, ServoEmulator

PROBABILITIES = ("drop", "delay", "corrupt", "truncate", "split", "garbage", "wrong_id", "forge")
ID_SETS = ("dead_ids", "only_ids")


class FaultsError(ValueError):
    """A `--faults` word that does not name a knob or whose value is out of range."""


def _number(key: str, text: str, lo: float, hi: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FaultsError(f"--faults {key}={text}: not a number") from None
    if not lo <= value <= hi:
        raise FaultsError(f"--faults {key}={text}: must be in [{lo:g}, {hi:g}]")
    return value


def _motor_id(key: str, text: str, ids: tuple[int, ...]) -> int:
    try:
        motor_id = int(text, 0)
    except ValueError:
        raise FaultsError(f"--faults {key}: {text!r} is not a servo id") from None
    if motor_id not in ids:
        raise FaultsError(f"--faults {key}: no servo with id {motor_id} (ids: {list(ids)})")
    return motor_id


def _error_bits(text: str, ids: tuple[int, ...]) -> dict[int, int]:
    out = {}
    for item in text.split(","):
        motor, sep, bits = item.partition(":")
        if not sep:
            raise FaultsError(f"--faults error_bits={text}: write ID:BITS, e.g. 4:0x20")
        try:
            value = int(bits, 0)
        except ValueError:
            raise FaultsError(f"--faults error_bits={text}: {bits!r} is not a number") from None
        if not 0 < value <= 0xFF:
            raise FaultsError(f"--faults error_bits={text}: bits must be in 1..0xFF")
        out[_motor_id("error_bits", motor, ids)] = value
    return out


def parse_faults(words: list[str], profile: str | ArmProfile) -> Faults:
    """`["drop=0.1", "dead_ids=3,5", "error_bits=4:0x20"]` -> `Faults`; ids checked against
    the arm's. Raises `FaultsError` naming the word."""
    ids = get_profile(profile).ids
    known = [f.name for f in dataclasses.fields(Faults)]
    values: dict[str, object] = {}
    for word in words:
        key, sep, text = word.partition("=")
        if key not in known:
            raise FaultsError(f"--faults {word}: unknown knob {key!r}; known: {', '.join(known)}")
        if not sep or not text:
            raise FaultsError(f"--faults {word}: write {key}=VALUE")
        if key in values:
            raise FaultsError(f"--faults {key}: given twice")
        if key in PROBABILITIES:
            values[key] = _number(key, text, 0.0, 1.0)
        elif key == "delay_s":
            values[key] = _number(key, text, 0.0, 10.0)
        elif key in ID_SETS:
            values[key] = {_motor_id(key, t, ids) for t in text.split(",")}
        else:
            values[key] = _error_bits(text, ids)
    return Faults(**values)


def describe(faults: Faults) -> str:
    """The knobs that differ from no faults at all, as the words `parse_faults` reads."""
    words = []
    for f in dataclasses.fields(Faults):
        value, default = getattr(faults, f.name), getattr(Faults(), f.name)
        if value == default or (f.name == "delay_s" and not faults.delay):
            continue
        if isinstance(value, set):
            value = ",".join(str(i) for i in sorted(value))
        elif isinstance(value, dict):
            value = ",".join(f"{i}:{b:#x}" for i, b in sorted(value.items()))
        words.append(f"{f.name}={value}")
    return " ".join(words) or "none"


def serve(emu: ServoEmulator, stop: threading.Event) -> int:
    """Run a started emulator until `stop` is set; returns the exit status (1 on emulator errors).
    The emulator is stopped on return."""
    try:
        while not stop.wait(0.5):  # the timeout keeps the main thread responsive to signals
            pass
    finally:
        emu.stop()
    print(f"stopped after {len(emu.wire_log)} instruction packets", flush=True)
    for error in emu.errors:
        print(f"emulator error: {error}", file=sys.stderr)
    return 1 if emu.errors else 0


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m hardware.emulation",
        description="Emulate an arm's servos on a pseudo-terminal until Ctrl-C; prints the port.",
    )
    parser.add_argument("--robot", required=True, choices=sorted(PROFILES), help="arm profile")
    parser.add_argument(
        "--faults",
        nargs="+",
        default=[],
        action="extend",
        metavar="KEY=VALUE",
        help="fault knobs, e.g. drop=0.05 corrupt=0.01 delay=0.1 delay_s=0.005 dead_ids=6 "
        "only_ids=1,2 error_bits=4:0x20",
    )
    parser.add_argument("--seed", type=int_in(0), default=0, help="seed of the fault draws")
    args = parser.parse_args(argv)
    try:
        faults = parse_faults(args.faults, args.robot)
    except FaultsError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    profile = get_profile(args.robot)
    emu = emulate_arm(profile, faults=faults, seed=args.seed).start()
    print(
        f"{profile.name}: {profile.protocol} ids {list(profile.ids)} at "
        f"{profile.baudrate} baud; faults: {describe(faults)}"
    )
    print(f"port: {emu.port}", flush=True)
    return serve(emu, stop)


if __name__ == "__main__":
    sys.exit(main())
