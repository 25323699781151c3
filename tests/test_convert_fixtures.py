"""Checkpoints written by LeRobot itself, imported with `python -m act_jax.convert --from-lerobot`,
give LeRobot's own chunks from raw observations through `act_jax.policy`, within 1e-4 (max abs).

The fixtures (tests/fixtures/lerobot/) were made by bench/lerobot_fixtures.py in the LeRobot
venv (lerobot 0.4.4): one and two cameras, MEAN_STD and MIN_MAX state/action normalisation, each
with LeRobot's `postprocessor(policy.predict_action_chunk(preprocessor(obs)))` for two raw
observations. Their model.safetensors is rebuilt from its numpy recipe, byte for byte the file
LeRobot saved (its sha256 is checked). No torch here.

Two slow checks run LeRobot itself when bench/.venvs/lerobot exists (`bash bench/lerobot_env.sh`)
and skip otherwise: the fixtures regenerated now must be the stored ones, and a project
checkpoint exported with `--to-lerobot` must load and run in LeRobot's pipeline
(bench/lerobot_export_check.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from bench import lerobot_fixtures as fx

MODEL_TOL = 2e-5  # before the postprocessor: float32 rounding, free of the action scale
FAST = "cam2_min_max"  # the default run's case (two cameras, MIN_MAX); the other three are slow


# conftest: cheaper compiles
pytestmark = [pytest.mark.timeout(600), pytest.mark.usefixtures("fast_jax")]


def check(name: str, folder, workdir) -> dict:
    """fx.parity (the import through the command's main, our policy on the raw observations)
    held to LeRobot's chunks."""
    r = fx.parity(folder, name, workdir)
    spec = fx.spec(name)
    assert r["shape"] == [fx.N_OBS, spec["chunk_size"], spec["action_dim"]]
    assert r["cameras"] == (["top"] if len(spec["cameras"]) == 1 else ["top", "lateral"])
    assert r["normalization"] == spec["modes"]
    assert r["max_abs_diff"] < fx.TOL, (name, r)
    assert r["model_space_max_abs_diff"] < MODEL_TOL, (name, r)
    return r


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=() if n == FAST else pytest.mark.slow) for n in sorted(fx.FIXTURES)],
)
def test_imported_lerobot_checkpoint_gives_lerobots_chunk(tmp_path, name):
    folder = tmp_path / name
    shutil.copytree(fx.DEFAULT_OUT / name, folder)
    fx.rebuild_model(folder, folder / fx.MODEL_FILE)
    check(name, folder, tmp_path / "w")


def test_the_recipe_rebuilds_only_lerobots_file(tmp_path):
    """A changed recipe or header is refused: the rebuilt bytes are LeRobot's or nothing."""
    folder = tmp_path / FAST
    shutil.copytree(fx.DEFAULT_OUT / FAST, folder)
    recipe = json.loads((folder / fx.RECIPE_FILE).read_text())
    (folder / fx.RECIPE_FILE).write_text(json.dumps({**recipe, "seed": recipe["seed"] + 1}))
    with pytest.raises(ValueError, match="not LeRobot's"):
        fx.rebuild_model(folder, tmp_path / "model.safetensors")
    assert not (tmp_path / "model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.skipif(
    not fx.LEROBOT_PY.exists(), reason="no LeRobot venv (bash bench/lerobot_env.sh)"
)
def test_fixtures_still_match_lerobot_live(tmp_path):
    """LeRobot, run again now, writes the same files and chunks, and the folder it writes (its
    own model.safetensors, not the rebuilt one) imports to our chunk within 1e-4."""
    fresh = tmp_path / "fresh"
    proc = subprocess.run(
        [str(fx.LEROBOT_PY), fx.__file__, "--check", str(fresh)],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, r in report.items():
        assert r["model_sha256_identical"] and r["obs_identical"], (name, r)
        assert all(r["files_identical"].values()), (name, r)
        assert r["chunk_max_abs_diff"] < 1e-6, (name, r)
        check(name, fresh / name, tmp_path / f"w_{name}")


@pytest.mark.slow
@pytest.mark.skipif(
    not fx.LEROBOT_PY.exists(), reason="no LeRobot venv (bash bench/lerobot_env.sh)"
)
def test_an_export_runs_in_lerobot_live(tmp_path):
    """bench/lerobot_export_check.py: the exported folder loads with LeRobot's from_pretrained and
    make_pre_post_processors, LeRobot's chunk matches ours, and the round trip is exact."""
    from bench import lerobot_export_check

    assert lerobot_export_check.main(["--out", str(tmp_path / "check.json")]) == 0
    record = json.loads((tmp_path / "check.json").read_text())
    assert record["lerobot"]["state_dict_equal"] and record["max_abs_diff"] < fx.TOL
    assert record["round_trip_params_identical"] and record["round_trip_stats_identical"]
