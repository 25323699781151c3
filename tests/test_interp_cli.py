"""Every `python -m interp.*` command: bad arguments and missing inputs are one line naming the
option or file (exit 2), a damaged file exits 1, nothing is written first, `--debug` keeps the
traceback. The commands run in-process (their `main(argv)`); one runs as a subprocess."""

import subprocess
import sys

import pytest
from helpers_data import subprocess_env

from act_jax.data import DatasetDamaged
from interp import (
    attention_analysis,
    claims,
    cli,
    collect,
    finetune_compare,
    freeze_finetune,
    kv_memory,
    lookup_study,
    oracles,
    report,
)


def one_line_error(capsys, main, argv, code=2) -> str:
    """Runs `main(argv)`, which must exit with `code` and one line on stderr; returns it."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == code and len(err) == 1, (argv, e.value.code, err)
    return err[0]


def test_bad_numbers_are_refused_while_parsing_before_anything_is_written(tmp_path, capsys):
    out = str(tmp_path / "out")
    ck = ["--checkpoint", str(tmp_path / "none")]
    cases = [
        (report.main, [*ck, "--out", out, "--frame-stride", "0"], "--frame-stride"),
        (report.main, [*ck, "--out", out, "--sim-seed", "-1"], "--sim-seed"),
        (report.main, [*ck, "--out", out, "--execution", "ensemble:-1"], "--execution"),
        (claims.main, ["--collection", out, "--out", out, "--folds", "1"], "--folds"),
        (claims.main, ["--collection", out, "--out", out, "--seed", "x"], "--seed"),
        (collect.main, [*ck, "--names", "decoder/out", "--out", out, "--pca", "0"], "--pca"),
        (collect.main, [*ck, "--names", "a", "--out", out, "--random-init", "-2"], "--random-init"),
        (attention_analysis.main, [*ck, "--out", out, "--frames", "0"], "--frames"),
        (attention_analysis.main, [*ck, "--out", out, "--batch-size", "nan"], "--batch-size"),
        (kv_memory.main, [*ck, "--out", out, "--top-k", "1"], "--top-k"),
        (lookup_study.main, [*ck, "--out", out, "--test", "named", "--starts", "0"], "--starts"),
        (oracles.main, ["--test", "named", "--out", out, "--max-steps", "0"], "--max-steps"),
        (freeze_finetune.main, ["--base", out, "--workdir", out, "--lr", "0"], "--lr"),
        (finetune_compare.main, ["--base", out, "--workdir", out, "--seeds", "-1"], "--seeds"),
    ]
    for main, argv, option in cases:
        line = one_line_error(capsys, main, argv)
        assert line.startswith("python -m interp.") and f"argument {option}" in line, line
    assert list(tmp_path.iterdir()) == []


def test_missing_inputs_are_named_in_one_line_and_nothing_is_written(tmp_path, capsys):
    out, none = tmp_path / "out", str(tmp_path / "none")
    ck = ["--checkpoint", none, "--out", str(out)]
    cases = [
        (report.main, ck, "no checkpoints in"),
        (collect.main, [*ck, "--names", "decoder/out"], "--checkpoint: no checkpoints in"),
        (attention_analysis.main, ck, "--checkpoint: no checkpoints in"),
        (kv_memory.main, ck, "no checkpoints in"),
        (lookup_study.main, [*ck, "--test", "named"], "--checkpoint: no checkpoints in"),
        (claims.main, ["--collection", none, "--out", str(out / "c.json")], "--out:"),
        (claims.main, ["--collection", none, "--out", str(tmp_path / "c.json")], none),
        (oracles.main, ["--test", "named", "--train-dataset", none, "--out", str(out)], none),
        (freeze_finetune.main, ["--base", none, "--workdir", str(out)], "--base: no checkpoints"),
        (finetune_compare.main, ["--base", none, "--workdir", str(out)], "--base: no checkpoints"),
    ]
    for main, argv, said in cases:
        line = one_line_error(capsys, main, argv)
        assert said in line, (argv, line)
    assert list(tmp_path.iterdir()) == []


def test_expected_errors_exit_2_damaged_files_1_and_bugs_keep_their_traceback(capsys):
    p = cli.parser("interp.x", "doc")
    args = p.parse_args([])
    with pytest.raises(SystemExit) as e, cli.expected_errors(p, args, "--names"):
        raise KeyError("unknown intermediate name(s) ['x']")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m interp.x: error: --names: unknown intermediate name(s) ['x']")
    with pytest.raises(SystemExit) as e, cli.expected_errors(p, args):
        raise DatasetDamaged("data/tfds/x: example 3 cannot be read from x.array_record-00000")
    assert e.value.code == 1
    assert capsys.readouterr().err == (
        "python -m interp.x: error: data/tfds/x: example 3 cannot be read from "
        "x.array_record-00000\n"
    )
    with pytest.raises(ZeroDivisionError), cli.expected_errors(p, args):  # a bug
        raise ZeroDivisionError("bug")
    debug = p.parse_args(["--debug"])
    with pytest.raises(FileNotFoundError), cli.expected_errors(p, debug):
        raise FileNotFoundError("no checkpoints in x")


def test_a_command_prints_one_line_and_debug_prints_the_traceback(tmp_path):
    argv = ["--checkpoint", str(tmp_path / "none"), "--names", "decoder/out"]
    argv += ["--out", str(tmp_path / "out")]
    done = subprocess.run(
        [sys.executable, "-m", "interp.collect", *argv],
        capture_output=True,
        text=True,
        env=subprocess_env(tmp_path / "jax_cache"),
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"python -m interp.collect: error: --checkpoint: no checkpoints in {tmp_path / 'none'} "
        f"({tmp_path / 'none' / 'checkpoints'} is missing) (--help for usage)"
    ]
    with pytest.raises(FileNotFoundError, match="no checkpoints in"):
        collect.main([*argv, "--debug"])
    assert not (tmp_path / "out").exists()
