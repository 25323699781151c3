"""Checkpoints are deployable artifacts: weights, config and statistics from the directory alone;
writes are atomic and only the newest N are kept."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from act_jax import checkpoints, normalization, train
from configs import tiny

pytestmark = pytest.mark.usefixtures("fast_jax")  # conftest: cheaper compiles


def stats():
    return normalization.NormStats(
        np.arange(6, dtype=np.float32),
        np.ones(6, np.float32),
        -np.arange(6, dtype=np.float32),
        np.full(6, 2.0, np.float32),
    )


def small_state(value=1.0):
    params = {"backbone": {"w": jnp.full((3,), value)}, "head": {"w": jnp.full((2, 2), value)}}
    tx = train.make_optimizer(tiny.get_config().train)
    return {
        "step": jnp.int32(7),
        "params": params,
        "batch_stats": {"bn": {"mean": jnp.zeros(3)}},
        "opt_state": tx.init(params),
    }


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
    out = jax.jit(lambda v, i, s: model.apply(v, i, s, train=False))(
        variables, images, np.zeros((1, 6), np.float32)
    )
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


def _two_policy_steps(workdir):
    """Steps 3 and 5 of one model, with different weights; returns both variable trees."""
    config = tiny.get_config()
    _, shapes = checkpoints._abstract_variables(config, None)
    tx = train.make_optimizer(config.train)
    saved = {}
    for step in (3, 5):
        draw = np.random.default_rng(step).normal
        v = jax.tree.map(lambda s, draw=draw: jnp.asarray(draw(size=s.shape), s.dtype), shapes)
        state = {"step": jnp.int32(step), **v, "opt_state": tx.init(v["params"])}
        checkpoints.save(workdir, step, state, config, stats())
        saved[step] = v
    return config, saved


@pytest.mark.parametrize("damage", ["truncate_config", "truncate_arrays"])
def test_a_damaged_newest_step_is_named_and_the_one_before_is_used(damage, tmp_path, capsys):
    run = tmp_path / "run"
    _, saved = _two_policy_steps(run)
    step5 = run / "checkpoints" / "5"
    if damage == "truncate_config":
        victims = [p for p in (step5 / "config").rglob("*") if p.is_file()]
    else:
        victims = [
            p for p in (step5 / "variables").rglob("*") if p.is_file() and p.stat().st_size > 100
        ]
    assert victims
    for p in victims:
        p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3])
    variables, _, _, step = checkpoints.restore_latest(run)
    assert step == 3
    jax.tree.map(np.testing.assert_array_equal, variables["params"], saved[3]["params"])
    err = capsys.readouterr().err
    assert str(step5) in err and "falling back to step 3" in err
    from act_jax.policy import Policy

    assert Policy.from_checkpoint(run).step == 3  # the step of the weights it holds


def test_a_damaged_only_step_and_a_damaged_resume_are_refused_with_the_folder(tmp_path):
    run = tmp_path / "run"
    config, _ = _two_policy_steps(run)
    for step in (3, 5):
        for p in (run / "checkpoints" / str(step) / "config").rglob("*"):
            if p.is_file():
                p.write_bytes(b"{")
    with pytest.raises(checkpoints.CheckpointDamaged) as e:
        checkpoints.load_policy_params(run)
    for step in ("3", "5"):
        assert str(run / "checkpoints" / step) in str(e.value)
    # Training would go on past a damaged step: it refuses and names the folder to remove.
    with pytest.raises(checkpoints.CheckpointDamaged, match=r"rm -r .*checkpoints/5\)"):
        train.train_and_evaluate(config, run)


def test_evaluate_cli_names_a_missing_checkpoint_and_bad_counts(tmp_path, capsys):
    from act_jax import evaluate

    for argv, message in (
        (["--checkpoint", str(tmp_path / "none")], f"--checkpoint: no checkpoints in {tmp_path}"),
        (
            ["--checkpoint", str(tmp_path), "--episodes", "0"],
            "argument --episodes: must be an integer >= 1, got 0",
        ),
        (
            ["--checkpoint", str(tmp_path), "--videos", "-1"],
            "argument --videos: must be an integer >= 0, got -1",
        ),
        (["--checkpoint", str(tmp_path), "--seed", "-3"], "argument --seed: must be an integer"),
        (["--checkpoint", str(tmp_path), "--execution", "ensemble:-1"], "argument --execution"),
    ):
        with pytest.raises(SystemExit) as e:
            evaluate.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "eval").exists()


def test_evaluate_refuses_a_bad_spec_for_a_real_checkpoint_before_writing(tmp_path, capsys):
    from act_jax import evaluate

    run = tmp_path / "run"
    _two_policy_steps(run)
    for spec, message in (
        (dict(execution="ensemble:-1000"), "ensemble"),
        (dict(distribution="nowhere"), "nowhere"),
    ):
        with pytest.raises(ValueError, match=message):
            evaluate.evaluate_checkpoint(run, episodes=1, videos=0, progress=False, **spec)
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--checkpoint", str(run), "--execution", "ensemble:-1000"])
    assert e.value.code == 2 and "argument --execution" in capsys.readouterr().err
    assert not (run / "eval").exists()  # no empty eval/<name> for a run that never started
