"""Ranges for the numeric options of every `hardware` command, as argparse `type=`s.

    p.add_argument("--episodes", type=int_in(1), ...)
    p.add_argument("--fps", type=number_in(0, 1000, low_open=True), ...)

A value out of range fails while argparse parses, before anything is opened or written, with
argparse's one line naming the option and exit status 2:

    python -m hardware.record: error: argument --episodes: must be an integer >= 1, got 0

Numbers must be finite (NaN and inf are in no range). In the contracts layer so that every
layer's command can use them (`hardware.emulation` sits below the apps); `ArgumentError` is what
the checks of a layer's arguments raise (`hardware.arms.calibration.load_calibration`,
`hardware.cameras.camera_spec_arg`), before anything opens.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable


def describe_range(kind: str, low, high, low_open: bool = False, high_open: bool = False) -> str:
    """ "a number in [0, 1)", "an integer >= 1", "a number > 0" (high=None: no upper bound)."""
    if high is None:
        return f"{kind} {'>' if low_open else '>='} {low:g}"
    return f"{kind} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def _range_type(kind: str, convert, low, high, low_open: bool, high_open: bool):
    need = describe_range(kind, low, high, low_open, high_open)

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {need}, got {text!r}") from None
        ok = (
            math.isfinite(value)
            and (value > low if low_open else value >= low)
            and (high is None or (value < high if high_open else value <= high))
        )
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {need}, got {text}")
        return value

    parse.__name__ = need  # what argparse would name the type in its messages
    return parse


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (no upper bound with high=None)."""
    return _range_type("an integer", int, low, high, False, False)


def number_in(
    low: float, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> Callable[[str], float]:
    """An argparse type: a finite float in [low, high]; `low_open`/`high_open` exclude an end."""
    return _range_type("a number", float, low, high, low_open, high_open)


_WARNED: set[str] = set()


def warn_once(prog: str, message: str) -> None:
    """`PROG: warning: MESSAGE` on stderr, the first time this process says it."""
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"{prog}: warning: {message}", file=sys.stderr, flush=True)


def deprecated_alias(new: str) -> type[argparse.Action]:
    """An argparse `action=` for an old option spelling that still works as `new` (give it the
    same `dest` and `type`): using it stores the value and warns once that it is deprecated.

        p.add_argument("--locations", dest="locations", type=spec_arg)
        p.add_argument("--distribution", dest="locations", type=spec_arg,
                       action=deprecated_alias("--locations"), help=argparse.SUPPRESS)
    """

    class DeprecatedAlias(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            warn_once(
                parser.prog,
                f"{option_string} is deprecated and will be removed: use {new} (same values)",
            )
            setattr(namespace, self.dest, values)

    return DeprecatedAlias


class ArgumentError(ValueError):
    """An argument is invalid; raised before any port or camera is opened. The message names the
    flag (and the file, if one is involved); the apps print it as their one-line error."""


class ArgumentParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose errors are one line, `PROG: error: MESSAGE`, exit 2.

    argparse's usage block (5-10 lines for these commands) would bury the line that names the
    option; `--help` still prints it.
    """

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (--help for usage)\n")
