"""The `hardware` commands on bad input, each in its own process: one line on stderr naming the
option (or the port), exit status 2 for a bad argument (1 for a port that does not open), and
nothing created on disk. Every numeric option has a range (`hardware.arguments`)."""

import subprocess
import sys
from pathlib import Path

import pytest

from hardware.arguments import int_in, number_in

ROOT = Path(__file__).resolve().parents[1]
NO_PORT = "/dev/nonexistent/ttyACM9"
NO_CHECKPOINT = "/nonexistent/run"  # never read: every case fails before the checkpoint loads

CASES = [
    (
        "hardware.record",
        ["--episodes", "0"],
        2,
        "argument --episodes: must be an integer >= 1, got 0",
    ),
    (
        "hardware.record",
        ["--episodes", "1", "--seed", "-1"],
        2,
        "argument --seed: must be an integer >= 0, got -1",
    ),
    (
        "hardware.record",
        ["--episodes", "1", "--max-steps", "0"],
        2,
        "argument --max-steps: must be an integer >= 1, got 0",
    ),
    (
        "hardware.record",
        [
            "--episodes",
            "1",
            "--robot",
            "so101",
            "--teleop",
            "leader",
            "--emulate",
            "--reset-time",
            "nan",
        ],
        2,
        "argument --reset-time: must be a number >= 0, got nan",
    ),
    (
        "hardware.record",
        ["--episodes", "1", "--image-size", "0x32"],
        2,
        "--image-size: image size '0x32': both sides must be positive",
    ),
    (
        "hardware.deploy",
        ["--emulate", "--fps", "nan"],
        2,
        "argument --fps: must be a number in (0, 1000], got nan",
    ),
    ("hardware.deploy", ["--emulate", "--fps", "5000"], 2, "argument --fps: must be a number in"),
    (
        "hardware.deploy",
        ["--emulate", "--episodes", "0"],
        2,
        "argument --episodes: must be an integer >= 1, got 0",
    ),
    ("hardware.deploy", ["--emulate", "--seed", "-2"], 2, "argument --seed: must be an integer"),
    ("hardware.deploy", ["--emulate", "--max-steps", "0"], 2, "argument --max-steps: must be"),
    (
        "hardware.calibrate",
        ["--robot", "so101", "--emulate", "--seed", "-1"],
        2,
        "argument --seed: must be an integer >= 0, got -1",
    ),
    (
        "hardware.calibrate",
        ["--robot", "so101", "--emulate", "--port", NO_PORT],
        2,
        "--port is not used with --emulate",
    ),
    (
        "hardware.calibrate",
        ["--robot", "so101", "--port", NO_PORT],
        1,
        f"calibrate: could not open servo port {NO_PORT}: ",
    ),
    (
        "hardware.emulation",
        ["--robot", "so101", "--seed", "-1"],
        2,
        "argument --seed: must be an integer >= 0, got -1",
    ),
]


@pytest.mark.parametrize(
    "module, argv, status, message",
    CASES,
    ids=[f"{m.split('.')[1]}:{' '.join(a[-2:])}" for m, a, _, _ in CASES],
)
def test_a_bad_argument_is_one_line_naming_it_and_writes_nothing(
    module, argv, status, message, tmp_path
):
    if module == "hardware.deploy":
        argv = ["--checkpoint", NO_CHECKPOINT, "--robot", "so101", *argv]
    if module == "hardware.record":
        argv = [*argv, "--out", str(tmp_path / "episodes")]
    if module == "hardware.calibrate":
        argv = [*argv, "--out", str(tmp_path / "so101.json")]
    done = subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == status, done.stderr[-2000:]
    assert len(done.stderr.splitlines()) == 1 and message in done.stderr, done.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []  # nothing created, in --out or the working directory


def test_ranges_take_what_they_say_and_nothing_else():
    episodes, fps = int_in(1), number_in(0, 1000, low_open=True)
    assert episodes("1") == 1 and fps("1000") == 1000.0 and fps("0.5") == 0.5
    for parse, text in [
        (episodes, "0"),
        (episodes, "1.5"),
        (episodes, "x"),
        (fps, "0"),
        (fps, "1000.5"),
        (fps, "inf"),
        (fps, "-inf"),
        (fps, "nan"),
    ]:
        with pytest.raises(Exception, match=r"must be (an integer >= 1|a number in \(0, 1000\])"):
            parse(text)
