"""Policy runtime in closed loop: no retracing after warm-up, deterministic evaluation."""

import jax
import numpy as np
import pytest

from act_jax.evaluate import run_rollouts
from act_jax.execution import make_executor
from act_jax.model import ACT, ACTConfig, init_variables
from act_jax.normalization import NormStats
from act_jax.policy import Policy
from configs import tiny
from hardware.sim import SimRobot

IMAGE_SIZE = (32, 32)


@pytest.fixture(scope="module")
def policy():
    config = tiny.get_config()
    model = ACT(ACTConfig.from_config(config.model))
    variables = init_variables(model, jax.random.key(0, impl="rbg"))
    stats = NormStats(
        state_mean=np.array([0, -60, 40, 60, 0, 50], np.float32),
        state_std=np.full(6, 30, np.float32),
        action_mean=np.array([0, -60, 40, 60, 0, 50], np.float32),
        action_std=np.full(6, 30, np.float32),
    )
    return Policy(model, variables, config, stats)


@pytest.fixture(scope="module")
def robot():
    with SimRobot(image_size=IMAGE_SIZE) as r:
        yield r


def test_predict_chunk_shape_and_units(policy, robot):
    obs = robot.reset(seed=0)
    chunk = policy.predict_chunk(obs)
    assert chunk.shape == (policy.config.model.chunk_size, 6)
    assert np.isfinite(chunk).all()


@pytest.mark.parametrize("execution", ["ensemble:0.01", "receding:4", "open_loop"])
def test_rollout_never_retraces_after_warmup(policy, robot, execution):
    policy.warmup()
    run_rollouts(
        lambda: policy.as_controller(make_executor(execution)),
        robot,
        episodes=2,
        max_steps=20,
        progress=False,
    )
    assert policy.retraces_after_warmup == 0


def test_evaluation_is_deterministic(policy, robot):
    def once():
        rs = run_rollouts(
            lambda: policy.as_controller(make_executor("ensemble:0.01")),
            robot,
            episodes=2,
            max_steps=15,
            seed=7,
            progress=False,
        )
        return [(r.success, r.steps, r.cube_start_pose) for r in rs], robot.state()

    assert _equal(once(), once())


def _equal(a, b):
    (ra, sa), (rb, sb) = a, b
    return ra == rb and np.array_equal(sa, sb)


def test_larger_camera_images_are_resized(policy, robot):
    obs = robot.reset(seed=1)
    big = {
        **obs,
        "images": {c: np.repeat(np.repeat(im, 2, 0), 2, 1) for c, im in obs["images"].items()},
    }
    assert policy.predict_chunk(big).shape == policy.predict_chunk(obs).shape


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"images": {"top": np.zeros((32, 32, 3), np.uint8)}}, "lateral"),
        ({"state": np.full(6, np.nan, np.float32)}, "not finite"),
        ({"state": np.zeros(5, np.float32)}, "shape"),
    ],
)
def test_bad_observations_are_clear_errors(policy, robot, bad, match):
    obs = {**robot.reset(seed=0), **bad}
    with pytest.raises(ValueError, match=match):
        policy.predict_chunk(obs)


@pytest.mark.slow  # 51 s: training with rollouts; the eval pieces are tested on their own
def test_training_logs_sim_success_rate_every_eval_period(tmp_path):
    """The trainer's rollout hook: `eval/success_rate` lands in metrics.jsonl at each period."""
    import json

    from act_jax.evaluate import make_train_eval_fn
    from act_jax.train import train_and_evaluate
    from tests.helpers_data import build_dataset

    config = tiny.get_config()
    config.data.dataset_dir = str(build_dataset(tmp_path / "data", image_size=IMAGE_SIZE))
    config.train.num_steps = 4
    config.eval.rollout_every = 2
    config.eval.episodes = 2
    config.eval.max_steps = 10
    workdir = tmp_path / "run"
    train_and_evaluate(config, workdir, make_train_eval_fn(config, workdir))
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    evals = {r["step"]: r for r in rows if "eval/success_rate" in r}
    assert sorted(evals) == [2, 4]
    for r in evals.values():
        assert 0.0 <= r["eval/ci95_low"] <= r["eval/success_rate"] <= r["eval/ci95_high"] <= 1.0
