"""The `--config` command line's expected errors in one line, exit status 2, not a traceback.

    app.run(main, flags_parser=config_cli.flags_parser("train"))

absl and `ml_collections.config_flags` report a bad flag value in two lines but an unknown
config field, a missing config file or a config run from outside the repository as 30-55-line
tracebacks (the file is loaded lazily, so a missing one fails at first use, far from the flag).
`flags_parser` parses the flags and loads the config up front, and turns those errors into one
line naming the flag, the field or the file. An error it does not recognise (a bug in a config
file, say) keeps its traceback, and so does every error with `--debug`. An override under a
field's old name (`act_jax.config_ranges.RENAMED`) is given the new name, with a one-line warning.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from act_jax.config_ranges import RENAMED, renamed_warning

EXIT_USAGE = 2


def _config_path(argv: list[str]) -> str | None:
    """The value of --config in `argv`, as given."""
    for i, a in enumerate(argv):
        if a.startswith("--config="):
            return a.split("=", 1)[1]
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def explain(e: BaseException, argv: list[str]) -> str | None:
    """One line for an expected error while parsing `argv`, or None (then it is a bug).

    Args:
      e: what parsing the flags or loading the config raised.
      argv: the command line, program name first.
    """
    from absl import flags

    path = _config_path(argv)
    if isinstance(e, flags.Error):  # a bad or missing flag value: absl's message is one line
        return str(e).splitlines()[0]
    if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] == "configs":
        root = Path(path).resolve().parent.parent if path else Path.cwd()
        return (
            f"--config {path}: {e}: the configs import each other as `configs.<name>`; run "
            f"from the repository root (cd {root}) or set PYTHONPATH={root}"
        )
    if isinstance(e, OSError) and path is not None and not Path(path.split(":")[0]).is_file():
        return f"--config {path}: no such file"
    if isinstance(e, (KeyError, AttributeError)):
        # An override names a field the config does not have: find it on the command line.
        missing = str(e.args[0] if e.args else e).strip("'\"")
        if isinstance(e.__context__, KeyError) and e.__context__.args:
            missing = str(e.__context__.args[0]).strip("'\"")
        for a in argv:
            if a.startswith("--config.") and missing in a.split("=", 1)[0].split(".")[1:]:
                flag = a.split("=", 1)[0]
                return f"{flag}: no field config.{flag[len('--config.') :]} in {path}"
    return None


def renamed_flags(argv: list[str], prog: str) -> list[str]:
    """`argv` with each `--config.<old name>` override given the field's new name, warning once
    per flag on stderr (`act_jax.config_ranges.RENAMED`)."""
    out = []
    for a in argv:
        flag, eq, value = a.partition("=")
        old = flag.removeprefix("--config.")
        if flag.startswith("--config.") and old in RENAMED:
            print(f"{prog}: {renamed_warning(old, RENAMED[old], '--config.')}", file=sys.stderr)
            a = f"--config.{RENAMED[old]}{eq}{value}"
        out.append(a)
    return out


def flags_parser(prog: str) -> Callable[[list[str]], list[str]]:
    """An absl `flags_parser` for `app.run`: parses, loads `--config`, and reports in one line.

    Args:
      prog: the name messages start with, e.g. "train".
    """

    def parse(argv: list[str]) -> list[str]:
        from absl import flags

        argv = renamed_flags(argv, prog)
        sys.argv[1:] = argv[1:]  # config_flags finds the override flags to define in sys.argv
        try:
            rest = flags.FLAGS(argv)
            config = flags.FLAGS["config"].value
            if config is not None:
                list(config.keys())  # a config that failed to load raises its error on use
            return rest
        except Exception as e:  # noqa: BLE001 - explain() keeps what it does not recognise
            message = None if "--debug" in argv else explain(e, argv)
            if message is None:
                raise
            print(f"{prog}: {message}", file=sys.stderr)
            sys.exit(EXIT_USAGE)

    return parse
