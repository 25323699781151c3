"""`python -m act_jax.convert`: LeRobot ACT folders (0.4.x processor files and v2.x buffers) become
project checkpoints whose chunks equal LeRobot's pipeline, and bad input is refused in one line.

The folders are written by tests/helpers_lerobot.py in LeRobot's layouts; the reference chunk is
our network with LeRobot's normaliser arithmetic (transcribed there), since the network itself is
held to LeRobot's by bench/parity_lerobot.py. Checkpoints written by LeRobot itself, with its own
chunks, are tests/test_convert_fixtures.py's. One-camera cases and interp.report are slow checks.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers_lerobot import lerobot_chunk, lerobot_folder, random_variables, tiny_config

from act_jax import convert
from act_jax.convert_lerobot import read_safetensors, write_safetensors
from act_jax.policy import Policy

MEAN_STD = {"VISUAL": "MEAN_STD", "STATE": "MEAN_STD", "ACTION": "MEAN_STD"}
MIN_MAX = {"VISUAL": "MEAN_STD", "STATE": "MIN_MAX", "ACTION": "MIN_MAX"}
TOL = 1e-4
PRE_STATS = "policy_preprocessor_step_3_normalizer_processor.safetensors"
SLOW = pytest.mark.slow
_VARIABLES = {}


# conftest: cheaper compiles
pytestmark = [pytest.mark.timeout(600), pytest.mark.usefixtures("fast_jax")]


def weights(names: tuple[str, ...]):
    """(config with LeRobot's camera names, variables), one init per camera count."""
    config = tiny_config(cameras=names)
    if len(names) not in _VARIABLES:
        _VARIABLES[len(names)] = random_variables(config)
    return config, _VARIABLES[len(names)]


def make_folder(path, keys, modes, layout="0.4", **kw):
    config, variables = weights(tuple(k.rsplit(".", 1)[-1] for k in keys))
    folder = lerobot_folder(
        path, config, variables, camera_keys=keys, modes=modes, layout=layout, **kw
    )
    return config, variables, folder


def observation(config, folder, seed=1):
    rng = np.random.default_rng(seed)
    st = folder["stats"]["observation.state"]
    state = rng.uniform(st["min"], st["max"]).astype(np.float32)
    state[-1] = st["min"][-1]  # the constant joint sits where it always was
    images = {
        c: rng.integers(0, 256, (*config.image_size, 3), dtype=np.uint8) for c in config.cameras
    }
    return images, state


TWO = ["observation.images.top", "observation.images.lateral"]
CASES = [  # layout, modes, LeRobot camera keys, --cameras; two-camera cases share one compile
    pytest.param(
        "0.4",
        MEAN_STD,
        ["observation.images.laptop", "observation.images.phone"],
        "laptop=top,phone=lateral",
        id="0.4-mean_std-2cam",
    ),
    pytest.param("v2", MIN_MAX, TWO, None, id="v2-min_max-2cam"),
    pytest.param(
        "0.4",
        {"VISUAL": "MEAN_STD", "STATE": "QUANTILES", "ACTION": "QUANTILE10"},
        TWO[::-1],
        None,
        id="0.4-quantiles-2cam",
    ),
    pytest.param(
        "0.4", {"VISUAL": "MEAN_STD", "ACTION": "MEAN_STD"}, TWO, None, id="0.4-state_identity"
    ),
    # one camera: a second compile; LeRobot-made one-camera checkpoints are
    # tests/test_convert_fixtures.py's
    pytest.param(
        "0.4", MIN_MAX, ["observation.images.top"], None, id="0.4-min_max-1cam", marks=SLOW
    ),
    pytest.param(
        "v2", MEAN_STD, ["observation.images.front"], "front=top", id="v2-mean_std-1cam", marks=SLOW
    ),
]


@pytest.mark.parametrize("layout, modes, keys, cameras", CASES)
def test_imported_policy_matches_lerobots_pipeline(tmp_path, capsys, layout, modes, keys, cameras):
    config, variables, folder = make_folder(tmp_path / "pretrained_model", keys, modes, layout)
    argv = ["--from-lerobot", str(tmp_path / "pretrained_model"), "--out", str(tmp_path / "w")]
    assert convert.main(argv + (["--cameras", cameras] if cameras else [])) == 0
    assert "a project checkpoint" in capsys.readouterr().out
    policy = Policy.from_checkpoint(tmp_path / "w")
    mapping = convert.parse_camera_map(cameras)
    ours = tuple(mapping.get(c, c) for c in config.cameras)
    assert policy.cameras == ours  # renamed, LeRobot's order kept
    images, state = observation(config, folder)
    got = policy.predict_chunk(
        {"images": dict(zip(ours, images.values(), strict=True)), "state": state}
    )
    want = lerobot_chunk(folder, config, variables, images, state)
    assert got.shape == (config.chunk_size, config.action_dim)
    assert np.abs(got - want).max() < TOL, np.abs(got - want).max()
    saved = json.loads((tmp_path / "w" / "config.json").read_text())
    assert saved["lerobot"]["cameras"] == dict(zip(ours, keys, strict=True))
    assert saved["eval"]["execution"] == "open_loop"
    assert saved["data"]["record_episodes"] == 0


@pytest.fixture(scope="module")
def good_folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("lerobot") / "pretrained_model"
    make_folder(path, ["observation.images.top", "observation.images.lateral"], MIN_MAX)
    return path


def _edit_json(path, **changes):
    content = json.loads(path.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("/")
        node = content
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[last] = value
    path.write_text(json.dumps(content))


def _edit_tensors(path, **changes):
    """Set (or, for None, delete) tensors of a safetensors file."""
    tensors = read_safetensors(path)
    for key, value in changes.items():
        if value is None:
            del tensors[key]
        else:
            tensors[key] = value
    write_safetensors(path, tensors)


def _break(folder, how):
    """Damage a copy of a good folder in one way."""
    if how == "not_act":
        _edit_json(folder / "config.json", type="diffusion")
    elif how == "no_config":
        (folder / "config.json").unlink()
    elif how == "no_postprocessor":
        (folder / "policy_postprocessor.json").unlink()
    elif how == "no_state_file":
        (folder / PRE_STATS).unlink()
    elif how == "no_stats":
        for p in folder.glob("policy_*"):
            p.unlink()
    elif how == "image_identity":
        _edit_json(
            folder / "policy_preprocessor.json", **{"steps/3/config/norm_map/VISUAL": "IDENTITY"}
        )
    elif how == "image_stats":
        _edit_tensors(
            folder / PRE_STATS,
            **{"observation.images.top.mean": np.full((3, 1, 1), 0.5, np.float32)},
        )
    elif how == "unknown_mode":
        _edit_json(
            folder / "policy_postprocessor.json", **{"steps/0/config/norm_map/ACTION": "QUANTILE5"}
        )
    elif how == "missing_min":
        _edit_tensors(folder / PRE_STATS, **{"observation.state.min": None})
    elif how == "bad_shape":
        _edit_tensors(
            folder / "model.safetensors", **{"model.action_head.bias": np.zeros(7, np.float32)}
        )


BAD = [  # how, extra argv, the phrase the one line holds
    ("not_act", [], "type='diffusion', not a LeRobot ACT policy"),
    ("no_config", [], "config.json: not found"),
    ("no_postprocessor", [], "policy_postprocessor.json: not found"),
    ("no_state_file", [], "policy_preprocessor_step_3_normalizer_processor.safetensors: not found"),
    ("no_stats", [], "no normalisation statistics"),
    ("image_identity", [], "observation.images.top (VISUAL) uses mode IDENTITY"),
    ("image_stats", [], "observation.images.top (VISUAL, MEAN_STD) has mean [0.5, 0.5, 0.5]"),
    ("unknown_mode", [], "action (ACTION) uses normalisation mode QUANTILE5"),
    ("missing_min", [], "no min/max statistics for observation.state, whose STATE mode is MIN_MAX"),
    ("bad_shape", [], "action_head/bias"),
    (None, ["--cameras", "wrist=top"], "--cameras names ['wrist'], which the LeRobot checkpoint"),
    (None, ["--cameras", "top=lateral,lateral=lateral"], "['lateral'] given to two cameras"),
    (None, ["--cameras", "top"], "--cameras 'top': write FROM=TO pairs"),
]


@pytest.mark.parametrize("how, extra, phrase", BAD, ids=[b[0] or b[1][1] for b in BAD])
def test_bad_input_is_one_line_and_writes_nothing(
    good_folder, tmp_path, capsys, how, extra, phrase
):
    folder = tmp_path / "pretrained_model"
    shutil.copytree(good_folder, folder)
    _break(folder, how)
    out = tmp_path / "w"
    assert convert.main(["--from-lerobot", str(folder), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and phrase in err, err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["pretrained_model"]


def test_unmapped_cameras_and_a_used_out_are_refused(tmp_path, capsys):
    folder = tmp_path / "pretrained_model"
    make_folder(folder, ["observation.images.laptop"], MEAN_STD)
    assert convert.main(["--from-lerobot", str(folder), "--out", str(tmp_path / "w")]) == 2
    assert (
        "camera 'laptop' of the LeRobot checkpoint does not map to one of ours ['top', "
        "'lateral']: pass --cameras laptop=top" in capsys.readouterr().err
    )
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    argv = [
        "--from-lerobot",
        str(folder),
        "--out",
        str(tmp_path / "used"),
        "--cameras",
        "laptop=top",
    ]
    assert convert.main(argv) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pretrained_model", "used"]


def test_evaluate_runs_on_an_imported_checkpoint(tmp_path):
    from act_jax.evaluate import evaluate_checkpoint

    # No constant joint here: the sim's joints move, and a zero range would send them far out.
    folder = tmp_path / "pretrained_model"
    make_folder(
        folder,
        ["observation.images.top", "observation.images.lateral"],
        MIN_MAX,
        constant_last=False,
    )
    assert convert.main(["--from-lerobot", str(folder), "--out", str(tmp_path / "w")]) == 0
    result = evaluate_checkpoint(
        tmp_path / "w", episodes=1, max_steps=3, videos=0, out=tmp_path / "eval", progress=False
    )
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert result["episodes"] == saved["episodes"] == 1
    assert result["policy_retraces_after_warmup"] == 0


@pytest.mark.slow
def test_interp_report_runs_on_an_imported_checkpoint(tmp_path, capsys):
    """`python -m interp.report --checkpoint IMPORTED --dataset D` (an imported checkpoint has
    no dataset of its own): 4 sim demos at the checkpoint's 32x32, few frames and ticks."""
    from act_jax import prepare_data
    from configs import tiny
    from interp import report

    data = tiny.get_config().data
    data.tfds_data_dir, data.episodes_dir = str(tmp_path / "tfds"), str(tmp_path / "episodes")
    data.record_episodes, data.record_locations = 4, "uniform"
    prepare_data.record_missing_demos(data, (32, 32))
    dataset = prepare_data.ensure_dataset(data, (32, 32))
    folder = tmp_path / "pretrained_model"
    keys = ["observation.images.top", "observation.images.lateral"]
    make_folder(folder, keys, MEAN_STD, constant_last=False)
    assert convert.main(["--from-lerobot", str(folder), "--out", str(tmp_path / "w")]) == 0
    out = tmp_path / "report"
    small = ["--frame-stride", "4", "--attention-frames", "8", "--sim-starts", "2"]
    small += ["--max-steps", "15", "--batch-size", "8"]
    argv = ["--checkpoint", str(tmp_path / "w"), "--out", str(out), "--dataset", str(dataset)]
    assert report.main(argv + small) == 0
    assert "wrote" in capsys.readouterr().out
    numbers = json.loads((out / "report.json").read_text())["numbers"]
    assert {"claim_1", "claim_2", "claim_3"} <= set(numbers["verdicts"])
    assert (out / "report.html").stat().st_size > 0


# ---------------------------------------------------------------- export
def project_checkpoint(workdir, **model):
    """A project checkpoint as training writes it: the base config with a tiny full-width model,
    random weights, statistics with stds clipped as `normalization.compute` clips them."""
    from act_jax import checkpoints
    from act_jax.normalization import MIN_STD, NormStats

    config_model = tiny_config(**model)
    config = convert.experiment_config(
        convert.load_base_config(convert.DEFAULT_BASE_CONFIG),
        config_model,
        {"execution": "ensemble:0.01", "optimizer": {}},
    )
    del config["lerobot"]
    rng = np.random.default_rng(3)
    stats = NormStats(
        rng.normal(0, 30, 6).astype(np.float32),
        np.maximum(rng.uniform(0, 20, 6), MIN_STD).astype(np.float32),
        rng.normal(0, 30, 6).astype(np.float32),
        np.full(6, MIN_STD, np.float32),
    )
    variables = random_variables(config_model, seed=5)
    checkpoints.save(workdir, 7, {**variables, "step": 7, "opt_state": {}}, config, stats)
    return config_model, variables, stats


def test_round_trip_gives_identical_params_and_statistics(tmp_path, capsys):
    from act_jax.checkpoints import restore_latest
    from act_jax.model import ACTConfig

    config, variables, stats = project_checkpoint(tmp_path / "w")
    assert convert.main(["--to-lerobot", str(tmp_path / "w"), "--out", str(tmp_path / "d")]) == 0
    assert "lerobot 0.4.4 layout" in capsys.readouterr().out
    d = tmp_path / "d"
    assert sorted(p.name for p in d.iterdir()) == [
        "config.json",
        "model.safetensors",
        "policy_postprocessor.json",
        "policy_postprocessor_step_0_unnormalizer_processor.safetensors",
        "policy_preprocessor.json",
        "policy_preprocessor_step_3_normalizer_processor.safetensors",
    ]
    pre = json.loads((d / "policy_preprocessor.json").read_text())
    assert [s["registry_name"] for s in pre["steps"]] == [
        "rename_observations_processor",
        "to_batch_processor",
        "device_processor",
        "normalizer_processor",
    ]
    lerobot = json.loads((d / "config.json").read_text())
    assert (lerobot["n_action_steps"], lerobot["temporal_ensemble_coeff"]) == (1, 0.01)
    assert lerobot["normalization_mapping"] == MEAN_STD
    assert convert.main(["--from-lerobot", str(d), "--out", str(tmp_path / "w2")]) == 0
    back, back_config, back_stats, _ = restore_latest(tmp_path / "w2")
    assert ACTConfig.from_config(back_config.model) == config
    assert back_config.eval.execution == "ensemble:0.01"
    for a, b in zip(jax_leaves(back), jax_leaves(variables), strict=True):
        np.testing.assert_array_equal(a, b)
    for name, value in stats.to_dict().items():
        np.testing.assert_array_equal(back_stats.to_dict()[name], value)


def jax_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_exported_processors_give_our_chunk(tmp_path):
    """LeRobot's arithmetic on the exported files (eps and statistics as written) and our policy
    on the original checkpoint give the same chunk."""
    from act_jax.lerobot_normalization import read_processors

    config, variables, _ = project_checkpoint(tmp_path / "w")
    assert convert.main(["--to-lerobot", str(tmp_path / "w"), "--out", str(tmp_path / "d")]) == 0
    pre, post = read_processors(tmp_path / "d")
    folder = {
        "stats": {**pre.stats, "action": post.stats["action"]},
        "modes": MEAN_STD,
        "layout": "0.4",
    }
    assert pre.eps == post.eps == 0.0
    rng = np.random.default_rng(2)
    images = {
        c: rng.integers(0, 256, (*config.image_size, 3), dtype=np.uint8) for c in config.cameras
    }
    state = rng.normal(0, 30, 6).astype(np.float32)
    want = lerobot_chunk(folder, config, variables, images, state)
    got = Policy.from_checkpoint(tmp_path / "w").predict_chunk({"images": images, "state": state})
    assert np.abs(got - want).max() < TOL


def test_an_imported_checkpoint_exports_with_its_camera_names(tmp_path):
    folder = tmp_path / "pretrained_model"
    make_folder(folder, ["observation.images.laptop", "observation.images.phone"], MEAN_STD)
    argv = [
        "--from-lerobot",
        str(folder),
        "--out",
        str(tmp_path / "w"),
        "--cameras",
        "laptop=top,phone=lateral",
    ]
    assert convert.main(argv) == 0
    assert convert.main(["--to-lerobot", str(tmp_path / "w"), "--out", str(tmp_path / "d")]) == 0
    assert list(json.loads((tmp_path / "d" / "config.json").read_text())["input_features"]) == [
        "observation.state",
        "observation.images.laptop",
        "observation.images.phone",
    ]
    argv = [
        "--to-lerobot",
        str(tmp_path / "w"),
        "--out",
        str(tmp_path / "e"),
        "--cameras",
        "top=wrist",
    ]
    assert convert.main(argv) == 0
    assert list(json.loads((tmp_path / "e" / "config.json").read_text())["input_features"]) == [
        "observation.state",
        "observation.images.wrist",
        "observation.images.phone",
    ]


def test_a_narrow_backbone_is_refused_saying_what_to_train(tmp_path, capsys):
    project_checkpoint(tmp_path / "w", backbone_width=0.25)
    assert convert.main(["--to-lerobot", str(tmp_path / "w"), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "backbone_width=0.25: LeRobot's ACT builds a full torchvision ResNet18" in err
    assert "train with --config.model.backbone_width=1.0" in err
    assert not (tmp_path / "d").exists()
