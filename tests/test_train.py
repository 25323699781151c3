"""The trainer: resume is exact, the step compiles once, bad input fails clearly. Runs the real
`train_and_evaluate` on a tiny ACT and a tiny TFDS dataset (32x32 frames); the dataset and the
uninterrupted reference run are conftest's. Devices and processes: test_train_distributed.py."""

import json
import os
import signal

import jax
import numpy as np
import pytest
from helpers_data import build_dataset
from helpers_train import assert_trees_equal, read_metrics, tiny_config

from act_jax import checkpoints, data, train, train_loop
from configs import tiny

pytestmark = pytest.mark.usefixtures("fast_jax")  # conftest: cheaper compiles


def test_interrupted_run_resumes_to_the_same_state(straight_run, dataset_dir, tmp_path):
    straight_dir, straight = straight_run
    assert straight.step == 4

    # The eval hook is where the "Ctrl-C" lands: a real SIGINT through the trainer's handler.
    def interrupt_at_2(state, step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return {"calls": step}

    config = tiny_config(dataset_dir)
    with pytest.raises(train.TrainingInterrupted, match="after step 2"):
        train.train_and_evaluate(config, tmp_path, eval_fn=interrupt_at_2)
    assert checkpoints.Checkpointer(tmp_path, read_only=True).all_steps() == [2]

    resumed = train.train_and_evaluate(config, tmp_path, eval_fn=interrupt_at_2)
    assert resumed.step == 4
    assert_trees_equal(resumed.state.params, straight.state.params)
    assert_trees_equal(resumed.state.opt_state, straight.state.opt_state)
    # Same losses step by step (steps 3-4 ran in the resumed process), same validation.
    comparable = lambda m: {k: v for k, v in m.items() if k[1] != "train/steps_per_s"}
    assert comparable(read_metrics(tmp_path)) == comparable(read_metrics(straight_dir))
    assert (tmp_path / "tb").is_dir() and any((tmp_path / "tb").iterdir())
    assert checkpoints.config_from_json((tmp_path / "config.json").read_text()) == config
    assert json.loads((tmp_path / "norm_stats.json").read_text()) == json.loads(
        (straight_dir / "norm_stats.json").read_text()
    )
    # No retrace after the first step, in a fresh run and in a resumed one.
    assert straight.train_step_traces == 1
    assert resumed.train_step_traces == 1


def test_the_trace_counter_sees_a_retrace():
    # What train_step_traces == 1 above rests on: a new input shape traces (and compiles) again.
    double = train_loop.counting_traces(lambda x: 2 * x)
    jitted = jax.jit(double)
    jitted(np.ones(2, np.float32))
    jitted(np.ones(2, np.float32))
    assert double.traces == 1
    jitted(np.ones(3, np.float32))
    assert double.traces == 2


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(dataset_dir, tmp_path, monkeypatch):
    original = data.ChunkSampler.batch

    def corrupt_step_2(self, step):  # a NaN in the data at step 2: same program, bad values
        batch = original(self, step)
        if step == 2:
            batch["state"] = np.full_like(batch["state"], np.nan)
        return batch

    monkeypatch.setattr(data.ChunkSampler, "batch", corrupt_step_2)
    config = tiny_config(dataset_dir, checkpoint_every=1)
    with pytest.raises(FloatingPointError, match=r"non-finite .* at step 2 .* step 2 in"):
        train.train_and_evaluate(config, tmp_path)
    assert checkpoints.Checkpointer(tmp_path, read_only=True).latest_step() == 2


def test_wrong_image_size_names_camera_and_shapes(dataset_dir, tmp_path):
    config = tiny_config(dataset_dir)
    config.model.image_size = (64, 48)
    with pytest.raises(ValueError, match=r"camera 'top' frames are \(32, 32, 3\).*\(64, 48, 3\)"):
        train.train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # data that cannot be used leaves no workdir


def test_missing_dataset_names_the_path(tmp_path):
    config = tiny_config(tmp_path / "no_such_dataset")
    with pytest.raises(FileNotFoundError, match="no_such_dataset"):
        train.train_and_evaluate(config, tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_empty_episode_directory_is_a_clear_error(tmp_path):
    config = tiny_config("")
    config.data.tfds_data_dir = str(tmp_path / "tfds")
    config.data.episodes_dir = str(tmp_path / "episodes")
    (tmp_path / "episodes").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no episode files in .*episodes"):
        train.train_and_evaluate(config, tmp_path / "work")


def test_missing_camera_is_named(dataset_dir, tmp_path):
    config = tiny_config(dataset_dir)
    config.model.cameras = ("top", "wrist")
    with pytest.raises(ValueError, match="no camera 'wrist'"):
        train.train_and_evaluate(config, tmp_path)


def test_resuming_a_different_model_lists_the_fields(straight_run, dataset_dir):
    straight_dir, _ = straight_run
    config = tiny_config(dataset_dir)
    config.model.dim_model = 64
    with pytest.raises(ValueError, match=r"config.model.dim_model: 32 in the checkpoint, 64 now"):
        train.train_and_evaluate(config, straight_dir)


def test_a_workdir_past_num_steps_is_refused(straight_run, dataset_dir):
    straight_dir, _ = straight_run
    config = tiny_config(dataset_dir, num_steps=2)
    with pytest.raises(ValueError, match=r"checkpoint at step 4, past config.train.num_steps=2"):
        train.train_and_evaluate(config, straight_dir)


def test_frozen_parameters_do_not_move_and_backbone_has_its_own_rate():
    params = {
        "backbone": {"conv1": {"kernel": np.ones((3, 3))}},
        "decoder": {
            "layer_0": {"mlp": {"linear1": {"kernel": np.ones((2, 4))}}},
            "norm": {"scale": np.ones(2)},
        },
        "action_head": {"kernel": np.ones((2, 6))},
    }
    config = tiny.get_config()
    config.train.warmup_steps = 0
    config.train.lr, config.train.lr_backbone = 1e-3, 1e-5
    config.train.frozen = (r"^decoder/layer_\d+/mlp/",)
    labels = train.param_labels(params, tuple(config.train.frozen))
    assert labels["decoder"]["layer_0"]["mlp"]["linear1"]["kernel"] == "frozen"
    assert labels["backbone"]["conv1"]["kernel"] == "backbone"
    assert labels["action_head"]["kernel"] == "default"
    tx = train.make_optimizer(config.train)
    grads = jax.tree.map(np.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    size = lambda u: float(np.abs(np.asarray(u)).max())
    # Adam's first step moves every weight by ~lr (plus lr * weight_decay).
    assert size(updates["decoder"]["layer_0"]["mlp"]["linear1"]["kernel"]) == 0
    assert size(updates["backbone"]["conv1"]["kernel"]) == pytest.approx(1e-5, rel=0.01)
    assert size(updates["action_head"]["kernel"]) == pytest.approx(1e-3, rel=0.01)
    assert size(updates["decoder"]["norm"]["scale"]) == pytest.approx(1e-3, rel=0.01)


def test_init_from_starts_a_new_run_from_trained_weights(straight_run, dataset_dir, tmp_path):
    straight_dir, straight = straight_run
    config = tiny_config(dataset_dir, init_from=str(straight_dir), num_steps=0)
    result = train.train_and_evaluate(config, tmp_path)
    assert result.step == 0  # a new run (fresh optimiser, step 0) ...
    assert_trees_equal(result.state.params, straight.state.params)  # ... with the old weights


def test_fine_tuning_keeps_the_statistics_its_weights_were_trained_with(
    straight_run, tmp_path_factory, tmp_path
):
    straight_dir, _ = straight_run
    other = build_dataset(tmp_path_factory.mktemp("other"), num_episodes=3, steps=9, seed=7)
    config = tiny_config(other, init_from=str(straight_dir), num_steps=0)
    train.train_and_evaluate(config, tmp_path)
    assert json.loads((tmp_path / "norm_stats.json").read_text()) == json.loads(
        (straight_dir / "norm_stats.json").read_text()
    )


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("train.checkpoint_every", 0, r"config.train.checkpoint_every=0: must be an integer >= 1"),
        ("train.lr", -1.0, r"config.train.lr=-1.0: must be a number >= 0"),
        ("train.lr", float("nan"), r"config.train.lr=nan: must be a number >= 0"),
        ("train.grad_clip", 0.0, r"config.train.grad_clip=0.0: must be a number > 0"),
        (
            "train.schedule",
            "linear",
            r"config.train.schedule='linear': must be 'constant' or 'cosine'",
        ),
        ("data.val_fraction", 1.0, r"config.data.val_fraction=1.0: must be a number in \[0, 1\)"),
        (
            "data.augment.brightness",
            -0.5,
            r"config.data.augment.brightness=-0.5: must be a number in",
        ),
        ("eval.episodes", 0, r"config.eval.episodes=0: must be an integer >= 1"),
        ("model.dropout", 1.0, r"config.model.dropout=1.0: must be in \[0, 1\)"),
    ],
)
def test_bad_training_settings_are_named_and_nothing_is_written(
    dataset_dir, tmp_path, field, value, message
):
    config = tiny_config(dataset_dir)
    *sections, name = field.split(".")
    node = config
    for s in sections:
        node = node[s]
    node[name] = value
    workdir = tmp_path / "run"
    with pytest.raises(train.ConfigError, match=message):
        train.train_and_evaluate(config, workdir)
    assert not workdir.exists()  # no workdir, no checkpoints/, no lock for a config that cannot run


def test_a_second_training_on_a_busy_workdir_names_the_first(dataset_dir, tmp_path):
    from hardware.recording.folder_lock import FolderBusy, lock_folder

    with lock_folder(tmp_path, "the other training"):
        with pytest.raises(FolderBusy, match=rf"pid {os.getpid()} \(the other training\)"):
            train.train_and_evaluate(tiny_config(dataset_dir), tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists() and not (tmp_path / "checkpoints").exists()
    # Released with its holder: the workdir is free again.
    assert train.train_and_evaluate(tiny_config(dataset_dir, num_steps=2), tmp_path).step == 2


def test_metrics_after_a_crash_are_not_repeated_on_resume(straight_run, dataset_dir, tmp_path):
    straight_dir, _ = straight_run

    def interrupt_at_2(state, step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return {"calls": step}

    config = tiny_config(dataset_dir)
    with pytest.raises(train.TrainingInterrupted):
        train.train_and_evaluate(config, tmp_path, eval_fn=interrupt_at_2)
    # A crash after the step-2 checkpoint: steps 3 and 4 were logged, the last line cut short.
    before = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert before and all(r["step"] <= 2 for r in before)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "train/loss": 9.0}\n{"step": 4, "train/loss": 9.0}\n{"step": 4, "tr')
    train.train_and_evaluate(config, tmp_path, eval_fn=interrupt_at_2)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # The rows up to the restored step as they were, then only rows the resumed run wrote.
    assert rows[: len(before)] == before
    first = rows[len(before)]
    assert first["step"] == 3 and first.get("train/loss") != 9.0  # trained again, not the crash's
    assert all(r["step"] > 2 for r in rows[len(before) :]) and rows[-1]["step"] == 4
    keys = [(r["step"], k) for r in rows for k in r if k != "step"]
    assert len(keys) == len(set(keys))  # each step's metric once
    comparable = lambda m: {k: v for k, v in m.items() if k[1] != "train/steps_per_s"}
    assert comparable(read_metrics(tmp_path)) == comparable(read_metrics(straight_dir))
