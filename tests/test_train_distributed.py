"""Data-parallel training: 4 devices in one process, and 2 processes joined by jax.distributed,
each give the losses and weights of one device (conftest's straight_run); what goes wrong in a
distributed start is one line."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest
from helpers_data import subprocess_env
from helpers_train import ROOT, assert_same_run, finish, start_two_processes

from act_jax import checkpoints, sharding, train

pytestmark = pytest.mark.usefixtures("fast_jax")  # conftest: cheaper compiles


def test_four_devices_match_one(straight_run, dataset_dir, cache_dir, tmp_path):
    code = textwrap.dedent(f"""
        import sys, jax
        sys.path.insert(0, "tests")
        from helpers_train import tiny_config
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
