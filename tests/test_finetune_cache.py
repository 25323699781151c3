"""The cached fine-tune path equals the masked one, and a fine-tune moves only what it may."""

import jax
import numpy as np
import pytest
from helpers_data import build_dataset

from act_jax import normalization, train
from act_jax.data import ChunkSampler, load_episodes
from configs import tiny
from interp import finetune_cache as F
from interp import params as P

pytestmark = pytest.mark.usefixtures("fast_jax")  # conftest: cheaper compiles


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    config = tiny.get_config()
    config.model.dropout = 0.0  # the one thing the two paths may differ in
    config.train.frozen = P.freeze_all_but(P.PRESETS["decoder_mlp"])
    config.train.num_steps = 6
    dataset = build_dataset(tmp_path_factory.mktemp("ft"), num_episodes=3, steps=12)
    m = config.model
    episodes = load_episodes(dataset, m.cameras, m.image_size, m.state_dim, m.action_dim)
    stats = normalization.compute([e.state for e in episodes], [e.action for e in episodes])
    sampler = ChunkSampler(episodes, stats, m.chunk_size, config.train.batch_size, seed=3)
    state = train.create_train_state(config, jax.random.key(0), sampler.batch(0))
    return config, sampler, state


def test_the_cached_path_equals_the_masked_path_step_for_step(setup):
    config, sampler, state0 = setup
    rng = jax.random.key(7)
    masked, cached = state0, state0
    step = jax.jit(lambda s, b, r: train.train_step(s, b, r, 0.0))
    for k in range(4):
        masked, m_metrics = step(masked, sampler.batch(k), rng)
    model = train.make_model(config)
    variables = {"params": state0.params, "batch_stats": state0.batch_stats}
    memory, pos = F.encode_all(model, variables, sampler, batch_size=8, progress=False)
    assert memory.shape[0] == sampler.num_frames
    cached, rows = F.train_on_cache(
        cached, sampler, memory, pos, 4, rng, log_every=1, progress=False
    )
    flat_m, flat_c, flat_0 = (P.flatten(s.params) for s in (masked, cached, state0))
    trainable = set(P.select(state0.params, P.PRESETS["decoder_mlp"]))
    for name, v in flat_0.items():
        if name in trainable:
            np.testing.assert_allclose(
                flat_c[name], flat_m[name], rtol=2e-5, atol=2e-6, err_msg=name
            )
            assert not np.array_equal(flat_c[name], v), f"{name} did not train"
        else:  # frozen: bit-identical in both paths
            np.testing.assert_array_equal(flat_c[name], v, err_msg=name)
            np.testing.assert_array_equal(flat_m[name], v, err_msg=name)
    assert rows[-1]["step"] == 4
    assert rows[-1]["train/loss"] == pytest.approx(float(m_metrics["loss"]), rel=1e-4)


def test_the_optimizer_holds_state_for_trainable_leaves_only(setup):
    _, _, state = setup
    trainable = P.count(state.params, P.PRESETS["decoder_mlp"])
    sizes = [np.size(x) for x in jax.tree.leaves(state.opt_state) if np.ndim(x) > 0]
    # AdamW's two moments, each the size of the trainable set; nothing for the frozen ones.
    assert sum(sizes) == 2 * trainable


def test_what_cannot_train_on_cached_memory_is_refused_with_the_reason(setup):
    config, _, state = setup
    assert F.cache_blocker(config, P.PRESETS["decoder_mlp"], state.params) is None
    assert "before the decoder" in F.cache_blocker(config, P.PRESETS["encoder_mlp"], state.params)
    vae = config.copy_and_resolve_references()
    vae.model.use_vae = True
    assert "use_vae" in F.cache_blocker(vae, P.PRESETS["decoder_mlp"], state.params)
    aug = config.copy_and_resolve_references()
    aug.data.augment.max_shift = 2
    assert "augment" in F.cache_blocker(aug, P.PRESETS["action_head"], state.params)
