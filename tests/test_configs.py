"""Configs: every file builds a valid model, is locked against typos, and says how to run it;
the train command names a bad config or a busy workdir in one line (exit 2), renamed fields
keep their old names for one release."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags
from ml_collections import config_flags

from act_jax.model import ACTConfig
from configs import seed, sim_default, tiny

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.py"))


def run_train(*argv, cwd=ROOT):
    """`python -m act_jax.train *argv` in its own process, run from `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "act_jax.train", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def parse(*argv):
    """Parses flags exactly as `python -m act_jax.train` does (lock_config=True)."""
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "config", flag_values=fv, lock_config=True)
    fv(["train", *argv])
    return fv.config


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_builds_a_model_and_documents_its_command(path):
    config = parse(f"--config={path}")
    assert set(config.model) == {f.name for f in dataclasses.fields(ACTConfig)}
    ACTConfig.from_config(config.model)
    assert set(config) == {"model", "data", "train", "eval"}
    doc = __import__(f"configs.{path.stem}", fromlist=["get_config"]).__doc__
    assert f"python -m act_jax.train --config configs/{path.name}" in doc


def test_configs_are_locked_against_unknown_keys():
    config = parse(f"--config={ROOT / 'configs/sim_default.py'}")
    config.train.lr = 3e-4  # what --config.train.lr=3e-4 does
    assert config.train.lr == 3e-4
    with pytest.raises(AttributeError, match="lrr"):
        config.train.lrr = 1.0
    with pytest.raises(AttributeError, match="chunk"):
        config.model.chunk = 10


@pytest.mark.parametrize(
    "argv, cwd, message",
    [
        (
            ["--config.train.not_a_field=1"],
            ROOT,
            "train: --config.train.not_a_field: no field config.train.not_a_field"
            " in configs/tiny.py",
        ),
        (["--config.nope.x=1"], ROOT, "train: --config.nope.x: no field config.nope.x in "),
        (["--config.train.lr=abc"], ROOT, "train: flag --config.train.lr=abc: could not convert"),
        (
            ["--config.data.val_fraction=1.5"],
            ROOT,
            "train: config.data.val_fraction=1.5: must be a number in [0, 1)",
        ),
        (
            ["--config.train.num_steps=-1"],
            ROOT,
            "train: config.train.num_steps=-1: must be an integer >= 0",
        ),
        (["--config=configs/nope.py"], ROOT, "train: --config configs/nope.py: no such file"),
        (
            ["--config", str(ROOT / "configs/tiny.py")],
            "elsewhere",
            "No module named 'configs': the configs import each other as `configs.<name>`;"
            " run from "
            f"the repository root (cd {ROOT}) or set PYTHONPATH={ROOT}",
        ),
    ],
    ids=[
        "unknown_field",
        "unknown_section",
        "bad_value",
        "val_fraction",
        "num_steps",
        "missing_file",
        "other_directory",
    ],
)
def test_the_command_line_names_a_bad_config_in_one_line_and_writes_nothing(
    argv, cwd, message, tmp_path
):
    workdir = tmp_path / "never_written"
    if not any(a.startswith("--config=") or a == "--config" for a in argv):
        argv = ["--config", "configs/tiny.py", *argv]
    proc = run_train(*argv, "--workdir", str(workdir), cwd=tmp_path if cwd == "elsewhere" else cwd)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(proc.stderr.splitlines()) == 1 and message in proc.stderr, proc.stderr[-2000:]
    assert not workdir.exists()


def test_seed_config_is_the_seed_architecture():
    c = seed.get_config()
    m = c.model
    assert m.cameras == ("top", "lateral") and m.image_size == (480, 640)
    # ResNet18 has stride 32: 15 x 20 = 300 tokens per camera, + latent + state = 602.
    assert 2 + len(m.cameras) * (m.image_size[0] // 32) * (m.image_size[1] // 32) == 602
    assert (m.dim_model, m.n_heads, m.dim_feedforward) == (512, 8, 3200)
    assert (m.n_encoder_layers, m.n_decoder_layers, m.n_vae_encoder_layers) == (4, 1, 4)
    assert (m.chunk_size, m.backbone_width, m.latent_dim, m.dropout) == (100, 1.0, 32, 0.1)
    t = c.train
    assert (t.batch_size, t.lr, t.lr_backbone, t.weight_decay) == (8, 1e-5, 1e-5, 1e-4)
    assert (t.grad_clip, t.kl_weight, t.schedule) == (10.0, 10.0, "constant")


def test_variants_change_only_what_differs():
    base = sim_default.get_config().to_dict()
    for variant in (seed.get_config().to_dict(), tiny.get_config().to_dict()):
        assert variant.keys() == base.keys()
        for section in base:
            assert variant[section].keys() == base[section].keys(), section


def test_old_field_names_still_work_with_a_one_line_warning(capsys):
    from act_jax import checkpoints, config_cli
    from act_jax.config_ranges import apply_renamed, get_field

    # On the command line: the flag is given its new name.
    argv = config_cli.renamed_flags(
        ["train", "--config.train.eval_every=7", "--config.eval.every_steps", "9"], "train"
    )
    assert argv == ["train", "--config.train.val_loss_every=7", "--config.eval.rollout_every", "9"]
    assert capsys.readouterr().err.splitlines() == [
        f"train: warning: --config.{old} is the old name of --config.{new}; it goes in the next "
        "release"
        for old, new in (
            ("train.eval_every", "train.val_loss_every"),
            ("eval.every_steps", "eval.rollout_every"),
        )
    ]
    # In a config saved before the rename (an older config.json) or set by a script: moved.
    old = tiny.get_config().to_dict()
    old["train"]["eval_every"] = old["train"].pop("val_loss_every") + 3
    old["eval"]["every_steps"] = 0
    old["data"]["record_distribution"] = "named"
    del old["data"]["record_locations"]
    old_config = checkpoints.config_from_json(old)
    # Read-only access finds a field under its old name and moves nothing.
    assert get_field(old_config, "data.record_locations") == "named"
    assert get_field(old_config, "data.nothing_here", "x") == "x"
    apply_renamed(old_config)
    assert (old_config.train.val_loss_every, old_config.eval.rollout_every) == (5, 0)
    assert "eval_every" not in old_config.train and "every_steps" not in old_config.eval
    expected = tiny.get_config()
    expected.train.val_loss_every, expected.eval.rollout_every = 5, 0
    expected.data.record_locations = "named"
    assert old_config.to_dict() == expected.to_dict()
    assert len(capsys.readouterr().err.splitlines()) == 3
    apply_renamed(old_config)  # once moved, nothing more to say
    assert capsys.readouterr().err == ""
    # A checkpoint's saved config is moved silently (nobody is to edit it).
    saved = checkpoints.config_from_json(old)
    apply_renamed(saved, warn=False)
    assert saved.to_dict() == expected.to_dict() and capsys.readouterr().err == ""


def test_the_train_command_takes_an_old_name_as_the_new_one(tmp_path):
    workdir = tmp_path / "never_written"
    proc = run_train(
        "--config", "configs/tiny.py", "--config.train.eval_every=-1", "--workdir", str(workdir)
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == [
        "train: warning: --config.train.eval_every is the old name of --config.train."
        "val_loss_every; it goes in the next release",
        "train: config.train.val_loss_every=-1: must be an integer >= 0",
    ]
    assert not workdir.exists()


def test_the_train_command_on_a_busy_workdir_exits_2_in_one_line(tmp_path):
    # Status 2, as `hardware.record` on a busy --out: busy is input the command cannot use.
    from hardware.recording.folder_lock import lock_folder

    workdir = tmp_path / "run"
    argv = ["--config", "configs/tiny.py", "--workdir", str(workdir)]
    argv += [
        f"--config.data.dataset_dir={tmp_path / 'never_read'}",
        "--config.eval.rollout_every=0",
    ]
    with lock_folder(workdir, "the other training"):
        proc = run_train(*argv)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == [
        f"train: {workdir} is in use: pid {os.getpid()} (the other training); wait for it to "
        "finish, or use another folder"
    ]
    assert [p.name for p in workdir.iterdir()] == [".lock"]  # the holder's, nothing else
