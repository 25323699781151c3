"""Checkpoints are deployable artifacts: weights, config and statistics from the directory alone;
writes are atomic and only the newest N are kept."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers_data import fast_compiles

from act_jax import checkpoints, normalization, train
from configs import tiny


@pytest.fixture(scope="module", autouse=True)
def _fast(tmp_path_factory):
    with fast_compiles(tmp_path_factory.getbasetemp() / "jax_cache"):
        yield


def stats():
    return normalization.NormStats(np.arange(6, dtype=np.float32), np.ones(6, np.float32),
                                   -np.arange(6, dtype=np.float32), np.full(6, 2.0, np.float32))


def small_state(value=1.0):
    params = {"backbone": {"w": jnp.full((3,), value)}, "head": {"w": jnp.full((2, 2), value)}}
    tx = train.make_optimizer(tiny.get_config().train)
    return {"step": jnp.int32(7), "params": params, "batch_stats": {"bn": {"mean": jnp.zeros(3)}},
            "opt_state": tx.init(params)}


def abstract(tree):
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), tree)


def test_round_trip_with_config_and_statistics(tmp_path):
    state, config = small_state(0.5), tiny.get_config()
    checkpoints.save(tmp_path, 7, state, config, stats())
    ckpt = checkpoints.Checkpointer(tmp_path, read_only=True)
    got = ckpt.restore(None, abstract(state))
    jax.tree.map(np.testing.assert_array_equal, got, state)
    assert type(got["opt_state"]) is type(state["opt_state"])  # optax states come back typed
    got_config, got_stats, step = ckpt.restore_metadata()
    assert step == 7
    assert got_config == config and got_config.model.image_size == (32, 32)  # tuples stay tuples
    np.testing.assert_array_equal(got_stats.action_std, stats().action_std)
    # Policy-only restore reads the weights and never touches the optimiser state.
    only = ckpt.restore(7, abstract({k: state[k] for k in ("params", "batch_stats")}))
    assert set(only) == {"params", "batch_stats"}


def test_keeps_the_newest_n_and_ignores_a_crashed_save(tmp_path):
    ckpt = checkpoints.Checkpointer(tmp_path, keep=2)
    for step in range(1, 5):
        ckpt.save(step, small_state(step), tiny.get_config(), stats())
    ckpt.close()
    assert checkpoints.Checkpointer(tmp_path, read_only=True).all_steps() == [3, 4]
    # A save killed mid-write leaves only a temporary directory: never taken for a checkpoint,
    # and removed by the next training run (orbax cleans up before its first save).
    crashed = tmp_path / "checkpoints" / "5.orbax-checkpoint-tmp-1234567"
    (crashed / "variables").mkdir(parents=True)
    assert checkpoints.Checkpointer(tmp_path, read_only=True).latest_step() == 4
    ckpt = checkpoints.Checkpointer(tmp_path, keep=2)
    ckpt.save(5, small_state(5), tiny.get_config(), stats())
    ckpt.close()
    assert not crashed.exists()
    assert checkpoints.Checkpointer(tmp_path, read_only=True).all_steps() == [4, 5]


def test_load_policy_params_rebuilds_a_working_policy(tmp_path):
    config = tiny.get_config()
    h, w = config.model.image_size
    c, a = config.model.chunk_size, config.model.action_dim
    # Weights of the right shapes (random values: what matters is that they come back exactly).
    _, shapes = checkpoints._abstract_variables(config, None)
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), shapes)
    tx = train.make_optimizer(config.train)
    state = {"step": jnp.int32(3), **variables, "opt_state": tx.init(variables["params"])}
    checkpoints.save(tmp_path / "run", 3, state, config, stats())
    state = train.TrainState(step=3, apply_fn=None, tx=tx, opt_state=None, **variables)

    model, variables, got_config, got_stats = checkpoints.load_policy_params(tmp_path / "run")
    assert got_config.model == config.model
    jax.tree.map(np.testing.assert_array_equal, variables["params"], state.params)
    np.testing.assert_array_equal(got_stats.state_mean, stats().state_mean)
    images = {cam: np.full((1, h, w, 3), 128, np.uint8) for cam in config.model.cameras}
    out = jax.jit(lambda v, i, s: model.apply(v, i, s, train=False))(variables, images,
                                                                     np.zeros((1, 6), np.float32))
    assert out["actions"].shape == (1, c, a)
    # The same call through restore_latest, and through the checkpoints/ directory itself.
    again, _, _, step = checkpoints.restore_latest(tmp_path / "run" / "checkpoints")
    assert step == 3
    jax.tree.map(np.testing.assert_array_equal, again["params"], variables["params"])


def test_no_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nothing")):
        checkpoints.load_policy_params(tmp_path / "nothing")
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no finished checkpoint"):
        checkpoints.restore_latest(tmp_path / "empty")
