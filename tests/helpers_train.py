"""What the trainer's tests share: the tiny config on a dataset, metrics by step, and two
`python -m act_jax.train` processes joined by jax.distributed."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers_data import subprocess_env

from act_jax import checkpoints
from configs import tiny

ROOT = Path(__file__).resolve().parents[1]


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
