"""The trainer: resume is exact, the step compiles once, 4 devices agree with 1, bad input fails
clearly. Runs the real `train_and_evaluate` on a tiny ACT and a tiny TFDS dataset (32x32 frames)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers_data import build_dataset, fast_compiles, subprocess_env

from act_jax import checkpoints, data, sharding, train, train_loop
from configs import tiny

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "jax_cache"


@pytest.fixture(scope="module", autouse=True)
def _fast(cache_dir):
    with fast_compiles(cache_dir):
        yield


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("data"), num_episodes=4, steps=12)


def tiny_config(dataset_dir, **train_overrides):
    config = tiny.get_config()
    config.data.dataset_dir = str(dataset_dir)
    config.train.log_every = 1  # per-step metrics, to compare runs step by step
    config.train.checkpoint_every = 4  # = num_steps: the interrupt makes the only mid-run save
    config.eval.rollout_every = 2
    for k, v in train_overrides.items():
        setattr(config.train, k, v)
    return config


def read_metrics(workdir):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return {(r["step"], k): v for r in map(json.loads, lines) for k, v in r.items() if k != "step"}


def assert_trees_equal(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


@pytest.fixture(scope="module")
def straight_run(dataset_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight")
    result = train.train_and_evaluate(
        tiny_config(dataset_dir), workdir, eval_fn=lambda state, step: {"calls": step}
    )
    return workdir, result


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


def test_four_devices_match_one(straight_run, dataset_dir, cache_dir, tmp_path):
    code = textwrap.dedent(f"""
        import sys, jax
        sys.path.insert(0, "tests")
        from test_train import tiny_config
        from act_jax import train
        assert jax.device_count() == 4, jax.devices()
        train.train_and_evaluate(tiny_config({str(dataset_dir)!r}), {str(tmp_path)!r},
                                 eval_fn=lambda state, step: {{"calls": step}})
    """)
    env = subprocess_env(cache_dir, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(tmp_path, straight_run)


def assert_same_run(workdir, straight_run):
    """`workdir`'s losses are straight_run's (step by step, to float tolerance), and its step-4
    checkpoint restores onto this 1-device process (orbax reshards) with straight_run's weights."""
    straight_dir, straight = straight_run
    one, other = read_metrics(straight_dir), read_metrics(workdir)
    compared = [
        k
        for k in one
        if k[1] in ("train/loss", "train/l1", "train/kl", "train/grad_norm", "val/l1")
    ]
    assert len(compared) == 4 * 4 + 2  # every step's training losses, validation at 2 and 4
    for key in compared:
        assert other[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key
    # Weights agree to a few learning rates only: Adam scales each update to ~lr whatever the
    # gradient's size, so a weight whose gradient is ~0 moves by float noise times lr/lr.
    variables, _, _, step = checkpoints.restore_latest(workdir)
    assert step == 4
    atol = 4 * tiny.get_config().train.lr
    jax.tree.map(
        lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-3, atol=atol),
        variables["params"],
        jax.device_get(straight.state.params),
    )


def start_two_processes(cache_dir, *args: str) -> list[subprocess.Popen]:
    """`python -m act_jax.train --config=configs/tiny.py ARGS` as processes 0 and 1 of one run,
    joined by jax.distributed through the environment (gloo all-reduces on the CPU)."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        address = f"localhost:{s.getsockname()[1]}"
    command = [sys.executable, "-m", "act_jax.train", "--config=configs/tiny.py", *args]
    return [
        subprocess.Popen(
            command,
            env=subprocess_env(
                cache_dir,
                JAX_COORDINATOR_ADDRESS=address,
                JAX_NUM_PROCESSES="2",
                JAX_PROCESS_ID=str(i),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        for i in range(2)
    ]


def finish(procs: list[subprocess.Popen]) -> list[str]:
    """Each process's output, once both have exited (killed after 5 minutes)."""
    try:
        return [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()


def test_two_processes_match_one(straight_run, dataset_dir, cache_dir, tmp_path):
    # The command line itself, twice: each process feeds its 2 rows of the global batch of 4.
    # straight_run is the one process (its rollouts are a counter: they change nothing).
    args = [
        f"--config.data.dataset_dir={dataset_dir}",
        f"--workdir={tmp_path}",
        "--config.train.log_every=1",
        "--config.train.checkpoint_every=4",
        "--config.eval.rollout_every=0",
    ]
    procs = start_two_processes(cache_dir, *args)
    outputs = finish(procs)
    for i, (p, out) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"process {i}:\n{out[-3000:]}"
        assert f"distributed: process {i} of 2, 1 local device(s) of 2" in out, out[-3000:]
        assert "2 device(s) cpu in 2 processes" in out
    assert "trained to step 4" in outputs[0] and "trained to step" not in outputs[1]
    # Both processes wrote their part of the checkpoint (orbax, one file set each).
    assert {"ocdbt.process_0", "ocdbt.process_1"} <= {
        f.name for f in (tmp_path / "checkpoints" / "4" / "variables").iterdir()
    }
    assert_same_run(tmp_path, straight_run)


@pytest.mark.slow
def test_two_processes_stop_together_and_resume(dataset_dir, cache_dir, tmp_path):
    # Ctrl-C in process 1 alone, at a step of its own: both save the same step and stop (130).
    args = [
        f"--config.data.dataset_dir={dataset_dir}",
        f"--workdir={tmp_path}",
        "--config.train.num_steps=1000",
        "--config.train.log_every=2",
        "--config.train.val_loss_every=1",  # a line per step from process 1 too
        "--config.eval.rollout_every=0",
    ]
    procs = start_two_processes(cache_dir, *args)
    seen = []
    for line in procs[1].stdout:
        seen.append(line)
        if line.startswith("step 3: validation L1"):
            procs[1].send_signal(signal.SIGINT)
            break
    outputs = finish(procs)
    outputs[1] = "".join(seen) + outputs[1]
    stopped = [re.search(r"interrupted after step (\d+)", out) for out in outputs]
    for i, (p, out, m) in enumerate(zip(procs, outputs, stopped, strict=True)):
        assert p.returncode == 130 and m, f"process {i}:\n{out[-3000:]}"
    step = int(stopped[0][1])
    assert int(stopped[1][1]) == step and step % 2 == 0 and step >= 4  # the next log step
    assert checkpoints.Checkpointer(tmp_path, read_only=True).latest_step() == step
    # Run again: both processes resume from that step, to two steps past it.
    procs = start_two_processes(
        cache_dir,
        *args[:2],
        "--config.eval.rollout_every=0",
        f"--config.train.num_steps={step + 2}",
    )
    outputs = finish(procs)
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0 and f"resuming from {tmp_path}/checkpoints/{step}" in out, out
    assert f"trained to step {step + 2}" in outputs[0]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train/loss" in r] == list(range(2, step + 3, 2))


def test_a_busy_workdir_stops_both_processes(dataset_dir, cache_dir, tmp_path):
    # Process 0 alone takes the lock; it stops in one line and its peer, waiting for it at
    # the dataset, stops with it rather than waiting for jax's exit handler.
    from hardware.recording.folder_lock import lock_folder

    with lock_folder(tmp_path, "the other training"):
        procs = start_two_processes(
            cache_dir, f"--config.data.dataset_dir={dataset_dir}", f"--workdir={tmp_path}"
        )
        outputs = finish(procs)
    assert procs[0].returncode == 2, outputs[0][-3000:]
    assert f"train: {tmp_path} is in use: pid {os.getpid()} (the other training)" in outputs[0]
    assert procs[1].returncode != 0
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"JAX_NUM_PROCESSES": "two"}, r"JAX_NUM_PROCESSES='two': must be an integer >= 1"),
        ({"JAX_NUM_PROCESSES": "0"}, r"JAX_NUM_PROCESSES='0': must be an integer >= 1"),
        ({"JAX_PROCESS_ID": "-1"}, r"JAX_PROCESS_ID='-1': must be an integer >= 0"),
        (
            {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
            r"JAX_PROCESS_ID=2: must be below JAX_NUM_PROCESSES=2",
        ),
    ],
)
def test_bad_distributed_variables_are_named(environ, message):
    with pytest.raises(train.ConfigError, match=message):
        sharding.maybe_initialize_distributed(False, environ)
    assert not sharding.maybe_initialize_distributed(False, {})  # no variable: one process


def test_a_process_without_its_coordinator_stops_in_one_line(tmp_path):
    # Before anything else: no dataset read, no workdir made (JAX has not started yet).
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="0")
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "act_jax.train", "--config=configs/tiny.py"]
        + [f"--workdir={tmp_path / 'run'}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        "train: jax.distributed.initialize: coordinator_address should be defined. Set "
        "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID (or run under SLURM / "
        "Open MPI, whose variables jax reads)"
    ]
    assert not (tmp_path / "run").exists()


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
