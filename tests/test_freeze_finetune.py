"""interp.freeze_finetune end to end on a tiny model: sim demos, fine-tune, four evaluations."""

import json

import numpy as np
import pytest
from helpers_data import tiny_sim_run

from act_jax import train
from configs import tiny
from interp import freeze_finetune
from interp import params as P

pytestmark = pytest.mark.usefixtures("fast_jax")  # conftest: cheaper compiles


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A tiny policy trained 2 steps on 2 sim demos at the named locations."""
    return tiny_sim_run(tmp_path_factory.mktemp("base"), episodes=2, distribution="named")


def test_only_the_trainable_set_moves_and_everything_is_reported(base_run, tmp_path):
    workdir = tmp_path / "ft"
    code = freeze_finetune.main(
        [
            "--base",
            str(base_run),
            "--workdir",
            str(workdir),
            "--trainable",
            "decoder_mlp",
            "--locations",
            "held_out",
            "--demos",
            "2",
            "--steps",
            "2",
            "--lr",
            "1e-3",
            "--eval-episodes",
            "1",
            "--max-steps",
            "10",
            "--data-root",
            str(tmp_path / "data"),
        ]
    )
    assert code == 0
    result = json.loads((workdir / "freeze_finetune.json").read_text())
    assert result["frozen_unchanged"] and result["frozen_moved"] == []
    assert result["finetune_loss"]["last"]["step"] == 2 and not result["replay_old"]
    assert result["wall_time_s"] > 0
    moved = {r["module"] for r in result["param_change"] if r["changed"]}
    assert moved == {"action_head", "decoder/layer_0/mlp", "decoder/layer_0/norm3"}
    # Evaluation starts are jittered (3 mm, 3 deg): every rollout an independent outcome.
    assert result["before"]["new"]["distribution"] == "held_out~3mm,3deg"
    assert result["before"]["old"]["distribution"] == "named~3mm,3deg"
    for tag in ("before", "after"):
        for which in ("new", "old"):
            assert result[tag][which]["episodes"] == 1
    assert 0 < result["trainable_params"] < result["total_params"]
    report = (workdir / "freeze_finetune.html").read_text()
    assert "<svg" in report and "<td>5</td>" in report  # the first held-out location's row
    # The fine-tuned run kept the base's normalisation statistics.
    assert json.loads((workdir / "norm_stats.json").read_text()) == json.loads(
        (base_run / "norm_stats.json").read_text()
    )


@pytest.mark.slow  # 24 s; the cached path without replay runs in the default suite
def test_the_cached_path_replaying_old_places_moves_only_the_trainable_set(base_run, tmp_path):
    workdir = tmp_path / "ft_cached"
    code = freeze_finetune.main(
        [
            "--base",
            str(base_run),
            "--workdir",
            str(workdir),
            "--trainable",
            "decoder_mlp",
            "--locations",
            "held_out",
            "--replay-old",
            "--cached",
            "--demos",
            "3",
            "--steps",
            "3",
            "--lr",
            "1e-3",
            "--eval-episodes",
            "1",
            "--max-steps",
            "10",
            "--data-root",
            str(tmp_path / "data"),
        ]
    )
    assert code == 0
    result = json.loads((workdir / "freeze_finetune.json").read_text())
    assert result["cached"] and result["replay_old"]
    assert result["demo_locations"] == "named+held_out"
    assert result["frozen_unchanged"]
    moved = {r["module"] for r in result["param_change"] if r["changed"]}
    assert moved == {"action_head", "decoder/layer_0/mlp", "decoder/layer_0/norm3"}
    assert result["finetune_loss"]["last"]["step"] == 3
    assert result["after"]["new"]["episodes"] == 1  # the cached run's checkpoint evaluates


def test_the_cached_path_refuses_what_it_cannot_train(base_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        freeze_finetune.main(
            [
                "--base",
                str(base_run),
                "--workdir",
                str(tmp_path / "x"),
                "--trainable",
                "encoder_mlp",
                "--cached",
            ]
        )
    assert e.value.code == 2 and "before the decoder" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_trainable_that_matches_nothing_is_refused_before_any_work(base_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        freeze_finetune.main(
            [
                "--base",
                str(base_run),
                "--workdir",
                str(tmp_path / "x"),
                "--trainable",
                "^nothing_here/",
            ]
        )
    assert e.value.code == 2
    assert "matches no parameter" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_unknown_preset_and_missing_base_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        freeze_finetune.main(
            [
                "--base",
                str(tmp_path),
                "--workdir",
                str(tmp_path / "x"),
                "--trainable",
                "decoder_ffn",
            ]
        )
    assert "unknown preset 'decoder_ffn'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        freeze_finetune.main(["--base", str(tmp_path / "none"), "--workdir", str(tmp_path / "x")])
    assert "--base" in capsys.readouterr().err


def test_compare_asks_the_cache_blocker_which_presets_train_on_cached_memory(base_run):
    from interp import finetune_compare

    presets = ["action_head", "decoder_mlp", "encoder_mlp", "decoder"]
    assert finetune_compare.cacheable(base_run, presets) == {
        "action_head": True,
        "decoder_mlp": True,
        "encoder_mlp": False,  # lies before the decoder: what cache_blocker refuses
        "decoder": True,
    }


def _held_out_config(seed: int):
    return freeze_finetune.build_config(
        tiny.get_config(),
        base=__import__("pathlib").Path("runs/b"),
        trainable=P.PRESETS["decoder"],
        locations="held_out",
        demos=5,
        steps=10,
        lr=1e-4,
        seed=seed,
    )


def test_build_config_freezes_the_complement():
    config = _held_out_config(seed=3)
    assert config.train.init_from == "runs/b" and config.train.num_steps == 10
    assert config.data.record_locations == "held_out" and config.data.record_episodes == 5
    labels = P.flatten(
        train.param_labels(
            {"decoder": {"w": np.ones(1)}, "encoder": {"w": np.ones(1)}}, config.train.frozen
        )
    )
    assert labels == {"decoder/w": "default", "encoder/w": "frozen"}


def test_build_config_turns_rollouts_off_on_a_base_with_the_old_cadence_name():
    # A base trained before the rename stores `eval.every_steps`; the old name must not win.
    old = tiny.get_config()
    with old.unlocked():
        old.eval.every_steps = old.eval.rollout_every + 5
        del old.eval["rollout_every"]
    kw = dict(trainable=P.PRESETS["decoder"], locations="named", demos=2, steps=4, lr=1e-4, seed=0)
    config = freeze_finetune.build_config(old, base=__import__("pathlib").Path("runs/b"), **kw)
    assert config.eval.rollout_every == 0 and "every_steps" not in config.eval


@pytest.mark.slow  # a minute: four fine-tunes; each piece it drives is tested above
def test_compare_runs_every_preset_and_seed_once_and_reuses_the_base_evaluation(base_run, tmp_path):
    from interp import finetune_compare

    workdir = tmp_path / "cmp"
    argv = [
        "--base",
        str(base_run),
        "--workdir",
        str(workdir),
        "--presets",
        "action_head",
        "encoder_mlp",
        "--seeds",
        "0",
        "1",
        "--",
        "--locations",
        "held_out",
        "--demos",
        "2",
        "--steps",
        "2",
        "--eval-episodes",
        "1",
        "--max-steps",
        "10",
        "--data-root",
        str(tmp_path / "data"),
    ]
    assert finetune_compare.main(argv) == 0
    doc = json.loads((workdir / "compare.json").read_text())
    assert set(doc["presets"]) == {"action_head", "encoder_mlp"}
    assert doc["presets"]["action_head"]["cached"] and not doc["presets"]["encoder_mlp"]["cached"]
    assert set(doc["presets"]["encoder_mlp"]["new"]["per_seed"]) == {"0", "1"}
    assert all(t > 0 for t in doc["presets"]["encoder_mlp"]["wall_time_s"])
    runs = sorted(p.name for p in workdir.iterdir() if p.is_dir())
    assert runs == ["action_head_s0", "action_head_s1", "encoder_mlp_s0", "encoder_mlp_s1"]
    # The base was evaluated once: every later run reused those numbers.
    results = {r: json.loads((workdir / r / "freeze_finetune.json").read_text()) for r in runs}
    reused = sorted(r for r, v in results.items() if "--reuse-before" in v["command"])
    assert reused == runs[1:]
    assert all(v["before"] == results[runs[0]]["before"] for v in results.values())
    assert "<img" in (workdir / "compare.html").read_text()
    mtime = (workdir / "action_head_s0" / "freeze_finetune.json").stat().st_mtime_ns
    assert finetune_compare.main(argv) == 0  # a finished comparison is reused, not rerun
    assert (workdir / "action_head_s0" / "freeze_finetune.json").stat().st_mtime_ns == mtime


def _summary(before_new, **per_seed):
    presets = {
        p: {
            "new": {
                "per_seed": dict(enumerate(r)),
                "mean": np.mean(r),
                "min": min(r),
                "max": max(r),
            }
        }
        for p, r in per_seed.items()
    }
    return {"before": {"new": before_new, "old": 1.0}, "presets": presets}


def test_the_fine_tune_verdict_rule():
    from interp.finetune_compare import verdict

    def rule(before=0.2, **kw):
        return verdict(_summary(before, **kw))["verdict"]

    three = dict(action_head=[0.3, 0.4, 0.2], encoder_mlp=[0.5, 0.3, 0.4])
    assert rule(decoder_mlp=[0.6, 0.7, 0.8], **three) == "favours the MLP"
    # One seed of the MLP no better than the best seed of the control: not separated.
    assert rule(decoder_mlp=[0.5, 0.7, 0.8], **three) == "undecided"
    assert rule(decoder_mlp=[0.2, 0.5, 0.4], **three) == "against the MLP"
    assert rule(decoder_mlp=[0.6, 0.7], **three) == "invalid"  # two seeds
    assert rule(before=0.95, decoder_mlp=[1.0, 1.0, 1.0], **three) == "invalid"
    assert rule(decoder_mlp=[0.6, 0.7, 0.8], action_head=[0.1] * 3) == "invalid"  # no control


def test_each_seed_records_its_own_demos():
    assert len({_held_out_config(seed).data.episodes_dir for seed in (0, 1)}) == 2
