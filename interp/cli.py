"""`python -m interp.*` command lines: expected errors in one line, `--debug` for a traceback.

    p = cli.parser("interp.collect", __doc__)
    p.add_argument("--frame-stride", type=int_in(1), default=1)  # hardware.arguments ranges
    args = p.parse_args(argv)
    with cli.expected_errors(p, args, "--checkpoint"):
        network = load_network(args.checkpoint)

A bad option value fails while parsing (`hardware.arguments.ArgumentParser`: one line, exit
status 2). An expected error after parsing, inside `expected_errors`, is one line naming what is
wrong (a missing dataset or checkpoint, an unknown intermediate name, a directory that is not a
collection): exit status 2, the input named on the command line is unusable. A damaged file
(`DatasetDamaged`, `CheckpointDamaged`, `EpisodeDamaged`) or a busy workdir (`FolderBusy`) exits
1, as `python -m act_jax.train` does. With `--debug` every error keeps its traceback; errors of
other types always do (they are bugs).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

from hardware.arguments import ArgumentParser

EXIT_USAGE = 2
EXIT_DAMAGED = 1

# What a user's input can cause (FileNotFoundError includes a damaged checkpoint;
# NotADirectoryError and FileExistsError are OSErrors about a path they named).
EXPECTED = (FileNotFoundError, FileExistsError, NotADirectoryError, ValueError, KeyError)


def parser(module: str, description: str | None) -> ArgumentParser:
    """An `ArgumentParser` for `python -m <module>` with one-line errors and `--debug`."""
    p = ArgumentParser(
        prog=f"python -m {module}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--debug",
        action="store_true",
        help="a traceback for expected errors too (bad input, a missing or damaged file), "
        "not only the one-line message",
    )
    return p


def _damaged() -> tuple[type[BaseException], ...]:
    # Late: these modules import orbax and the recorder, which a command needs only on error.
    from act_jax.checkpoints import CheckpointDamaged
    from act_jax.data import DatasetDamaged
    from hardware.recording.episodes import EpisodeDamaged
    from hardware.recording.folder_lock import FolderBusy

    return CheckpointDamaged, DatasetDamaged, EpisodeDamaged, FolderBusy


def message(e: BaseException) -> str:
    """The error's own sentence (a KeyError's without the quotes `str` adds)."""
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    return str(e)


@contextlib.contextmanager
def expected_errors(p: argparse.ArgumentParser, args, what: str = "") -> Iterator[None]:
    """Turns an expected error inside the block into one line (module docstring).

    Args:
      p: the command's parser (its `prog` starts the line).
      args: the parsed arguments (their `debug`).
      what: names the option the error is about, e.g. "--checkpoint" ("" when the message
        names it already).
    """
    try:
        yield
    except Exception as e:  # noqa: BLE001 - what is not expected is raised again, unchanged
        damaged = _damaged()
        if not isinstance(e, (*EXPECTED, *damaged)) or getattr(args, "debug", False):
            raise
        text = f"{what}: {message(e)}" if what else message(e)
        if isinstance(e, damaged):
            p.exit(EXIT_DAMAGED, f"{p.prog}: error: {text}\n")
        p.error(text)
