"""Tests of the ACT model: seed-size shapes and parameter count, parameter tree, inputs, loss,
position embeddings, and that a tiny model overfits one batch.

The seed-size checks use `jax.eval_shape` (abstract init/apply), so nothing big is computed.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from act_jax import intermediates as im
from act_jax.model import ACT, ACTConfig, act_loss, count_params, dummy_inputs, init_variables
from act_jax.resnet import feature_shape
from act_jax.transformer import sine_table_1d, sine_table_2d
from configs import seed

SEED = ACTConfig(
    cameras=("top", "lateral"),
    image_size=(480, 640),
    dim_model=512,
    n_heads=8,
    dim_feedforward=3200,
    n_encoder_layers=4,
    n_decoder_layers=1,
    n_vae_encoder_layers=4,
    chunk_size=100,
    latent_dim=32,
    backbone_width=1.0,
)
TINY = ACTConfig(
    cameras=("top", "lateral"),
    image_size=(32, 48),
    dim_model=32,
    n_heads=4,
    dim_feedforward=64,
    n_encoder_layers=2,
    n_decoder_layers=1,
    n_vae_encoder_layers=1,
    chunk_size=5,
    latent_dim=4,
    backbone_width=0.125,
    dropout=0.0,
)
# LeRobot's ACT (D 512, FFN 3200, 4 encoder + 4 VAE layers, 1 decoder layer, chunk 100, 6-D
# state/action): sum of its nn.Parameters. torchvision's FrozenBatchNorm2d keeps weight/bias as
# buffers, so they are not counted (they live in our "batch_stats"). The seed project's notebook
# quotes 51,597,238: that is this number + 48 normalisation stats that old LeRobot stored as
# frozen nn.Parameters inside the policy (mean+std of state 12, action 12+12, two cameras 2*6).
LEROBOT_ACT_PARAMS = 51_597_190
OLD_LEROBOT_NORMALIZATION_PARAMS = 12 + 12 + 12 + 2 * 6
SEED_PARAMS = 51_597_190  # configs/seed.py: LeRobot's architecture, 4 encoder layers


def abstract_variables(config, batch_size=1):
    images, state = dummy_inputs(config, batch_size)
    model = ACT(config)
    return jax.eval_shape(
        lambda r, i, s: model.init({"params": r}, i, s, train=False),
        jax.random.key(0),
        images,
        state,
    )


def batch(config, batch_size, seed=0):
    rng = np.random.default_rng(seed)
    h, w = config.image_size
    images = {
        c: rng.integers(0, 256, (batch_size, h, w, 3), dtype=np.uint8) for c in config.cameras
    }
    state = rng.normal(size=(batch_size, config.state_dim)).astype(np.float32)
    actions = rng.normal(size=(batch_size, config.chunk_size, config.action_dim))
    pad = np.zeros((batch_size, config.chunk_size), bool)
    pad[0, config.chunk_size // 2 :] = True  # the first sample's chunk runs past the episode end
    return images, state, actions.astype(np.float32), pad


@functools.cache
def jit_apply(config):
    """A jitted `ACT(config).apply` (eager flax runs op by op and is slow on CPU)."""
    return jax.jit(ACT(config).apply, static_argnames=("train", "mutable"))


@pytest.fixture(scope="module")
def tiny_variables():
    return init_variables(ACT(TINY), jax.random.key(0, impl="rbg"))


def test_seed_config_feature_map_tokens_and_param_count():
    assert feature_shape((480, 640), 1.0) == (15, 20, 512)
    variables = abstract_variables(SEED)
    images, state = dummy_inputs(SEED, 1)
    _, captured = jax.eval_shape(
        lambda v, i, s: ACT(SEED).apply(v, i, s, train=False, mutable=["intermediates"]),
        variables,
        images,
        state,
    )
    flat = im.flatten(captured["intermediates"])
    assert flat["backbone/top"].shape == (1, 15, 20, 512)
    assert flat["encoder/input_tokens"].shape == (1, 602, 512)  # 1 + 1 + 300 + 300
    # configs/seed.py builds this same architecture (the model fields that size it).
    assert ACTConfig.from_config(seed.get_config().model) == SEED
    # The seed config has the 4 encoder layers the seed project's config file set (its write-up
    # says 3): LeRobot's count, 51.6M, and the seed notebook's 51,597,238 with old LeRobot's
    # normalisation buffers.
    assert count_params(variables["params"]) == SEED_PARAMS == LEROBOT_ACT_PARAMS
    assert LEROBOT_ACT_PARAMS + OLD_LEROBOT_NORMALIZATION_PARAMS == 51_597_238
    # One encoder layer (self-attention, FFN, 2 LayerNorms) at D 512 / FFN 3200 is 4,333,184
    # parameters: the 3 layers of the write-up would be 47,264,006.
    layer = 4 * 512 * 512 + 4 * 512 + 2 * 512 * 3200 + 3200 + 512 + 4 * 512
    assert layer == 4_333_184
    three_layers = dataclasses.replace(SEED, n_encoder_layers=3)
    assert count_params(abstract_variables(three_layers)["params"]) == SEED_PARAMS - layer


def test_param_count_does_not_depend_on_cameras_and_backbone_has_only_convs():
    one_cam = ACTConfig(**{**TINY.__dict__, "cameras": ("top",)})
    v1, v2 = abstract_variables(one_cam), abstract_variables(TINY)
    assert count_params(v1["params"]) == count_params(v2["params"])
    backbone = traverse_util.flatten_dict(v2["params"]["backbone"], sep="/")
    assert all(k.endswith("kernel") for k in backbone), "frozen BN must not be in params"
    stats = traverse_util.flatten_dict(v2["batch_stats"]["backbone"], sep="/")
    assert {k.rsplit("/", 1)[1] for k in stats} == {"scale", "bias", "mean", "var"}


def test_parameter_tree_paths_and_shapes():
    params = abstract_variables(SEED)["params"]
    flat = {k: v.shape for k, v in traverse_util.flatten_dict(params, sep="/").items()}
    assert set(params) == {
        "backbone",
        "input_proj",
        "state_proj",
        "latent_proj",
        "pos_embed_1d",
        "encoder",
        "decoder",
        "vae_encoder",
        "action_head",
    }
    expected = {
        "backbone/conv1/kernel": (7, 7, 3, 64),
        "backbone/layer4/block_0/downsample_conv/kernel": (1, 1, 256, 512),
        "backbone/layer1/block_1/conv2/kernel": (3, 3, 64, 64),
        "input_proj/kernel": (1, 1, 512, 512),
        "pos_embed_1d": (2, 512),
        "latent_proj/kernel": (32, 512),
        "encoder/layer_2/self_attn/q_proj/kernel": (512, 512),
        "encoder/layer_2/self_attn/out_proj/bias": (512,),
        "encoder/layer_0/mlp/linear1/kernel": (512, 3200),
        "decoder/layer_0/cross_attn/k_proj/kernel": (512, 512),
        "decoder/layer_0/mlp/linear2/kernel": (3200, 512),
        "decoder/layer_0/norm3/scale": (512,),
        "decoder/norm/scale": (512,),
        "decoder/query_pos_embed": (100, 512),
        "vae_encoder/cls_embed": (1, 512),
        "vae_encoder/layer_3/self_attn/v_proj/kernel": (512, 512),
        "vae_encoder/latent_output_proj/kernel": (512, 64),
        "action_head/kernel": (512, 6),
    }
    assert {k: flat[k] for k in expected} == expected
    assert "encoder/norm/scale" not in flat  # post-norm: no final encoder LayerNorm (DETR)
    pre = abstract_variables(ACTConfig(**{**TINY.__dict__, "pre_norm": True}))["params"]
    assert "norm" in pre["encoder"] and "norm" in pre["vae_encoder"]


def test_inference_is_deterministic_with_zero_latent(tiny_variables):
    apply = jit_apply(TINY)
    images, state, _, _ = batch(TINY, 2)
    out = apply(tiny_variables, images, state, train=False)  # needs no rngs
    assert out["mu"] is None and out["logvar"] is None
    assert out["actions"].shape == (2, TINY.chunk_size, TINY.action_dim)
    assert out["actions"].dtype == jnp.float32
    again = apply(tiny_variables, images, state, train=False)
    np.testing.assert_array_equal(out["actions"], again["actions"])
    # The encode/decode halves (for caching encoder outputs) compose to the same model.
    model = ACT(TINY)

    @jax.jit
    def split(v, images, state):
        memory, pos = model.apply(v, images, state, method=ACT.encode, train=False)
        assert memory.shape == (2, 2 + 2 * 1 * 2, TINY.dim_model) and pos.shape[0] == 1
        return model.apply(v, memory, pos, method=ACT.decode, train=False)

    np.testing.assert_allclose(split(tiny_variables, images, state), out["actions"], atol=1e-6)


def test_use_vae_false_has_no_vae_and_needs_no_latent_rng(tiny_variables):
    config = ACTConfig(**{**TINY.__dict__, "use_vae": False})
    assert "vae_encoder" not in abstract_variables(config)["params"]
    params = {k: v for k, v in tiny_variables["params"].items() if k != "vae_encoder"}
    images, state, actions, pad = batch(TINY, 2)
    out = jit_apply(config)(
        {"params": params, "batch_stats": tiny_variables["batch_stats"]},
        images,
        state,
        actions,
        pad,
        train=True,
        rngs={"dropout": jax.random.key(2)},
    )
    assert out["mu"] is None and np.isfinite(out["actions"]).all()


def test_vae_ignores_padded_actions_and_batch_norm_stays_frozen(tiny_variables):
    apply = functools.partial(
        jit_apply(TINY), train=True, rngs={"latent": jax.random.key(3)}, mutable=("batch_stats",)
    )
    images, state, actions, pad = batch(TINY, 2)
    out, new_vars = apply(tiny_variables, images, state, actions, pad)
    changed = np.where(pad[..., None], actions + 100.0, actions)
    out2, _ = apply(tiny_variables, images, state, changed, pad)
    np.testing.assert_allclose(out["mu"], out2["mu"], atol=1e-5)
    np.testing.assert_allclose(out["logvar"], out2["logvar"], atol=1e-5)
    # Without the mask the same change does move the posterior of the padded sample.
    no_mask, _ = apply(tiny_variables, images, state, changed, np.zeros_like(pad))
    assert not np.allclose(out2["mu"][0], no_mask["mu"][0], atol=1e-3)
    # Frozen batch-norm: even a train-mode call that allows it never rewrites the statistics.
    jax.tree_util.tree_map(
        np.testing.assert_array_equal, new_vars["batch_stats"], tiny_variables["batch_stats"]
    )


def test_loss_masks_padding_and_averages_over_valid_elements():
    pred = jnp.zeros((2, 4, 3))
    target = jnp.ones((2, 4, 3))
    target = target.at[0, 2:].set(1000.0)  # padded: must not count
    pad = jnp.zeros((2, 4), bool).at[0, 2:].set(True)
    mu, logvar = jnp.array([[1.0, 0.0]]), jnp.array([[0.0, math.log(2.0)]])
    loss, m = act_loss({"actions": pred, "mu": mu, "logvar": logvar}, target, pad, 10.0)
    assert m["l1"] == pytest.approx(1.0)
    kl = 0.5 * 1.0 + 0.5 * (2.0 - 1.0 - math.log(2.0))  # closed form N(mu, var) || N(0, 1)
    assert m["kl"] == pytest.approx(kl, rel=1e-6)
    assert loss == pytest.approx(1.0 + 10.0 * kl, rel=1e-6)
    _, m = act_loss({"actions": pred, "mu": None, "logvar": None}, target, None, 10.0)
    assert m["kl"] == 0.0 and m["l1"] == pytest.approx((18 + 6 * 1000) / 24)


def test_bad_inputs_raise_clear_errors(tiny_variables):
    model = ACT(TINY)
    images, state, actions, _ = batch(TINY, 2)
    with pytest.raises(ValueError, match=r"missing \['lateral'\]"):
        model.apply(tiny_variables, {"top": images["top"]}, state, train=False)
    wrong = {**images, "lateral": np.zeros((2, 480, 640, 3), np.uint8)}
    with pytest.raises(ValueError, match=r"images\['lateral'\].*\(2, 32, 48, 3\).*\(2, 480, 640"):
        model.apply(tiny_variables, wrong, state, train=False)
    with pytest.raises(ValueError, match=r"state: expected shape \(B, 6\)"):
        model.apply(tiny_variables, images, state[:, :4], train=False)
    with pytest.raises(ValueError, match="actions are required"):
        model.apply(tiny_variables, images, state, train=True, rngs={"latent": jax.random.key(0)})
    with pytest.raises(ValueError, match=r"actions: expected shape \(2, 5, 6\)"):
        model.apply(tiny_variables, images, state, actions[:, :3], train=False)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match=r"config.model.dim_model=30.*n_heads=4"):
        ACTConfig(dim_model=30, n_heads=4)
    with pytest.raises(ValueError, match=r"config.model.image_size"):
        ACTConfig(image_size=(480,))
    with pytest.raises(ValueError, match=r"config.model.dtype"):
        ACTConfig(dtype="float16")
    fields = dict(TINY.__dict__)
    assert ACTConfig.from_config({**fields, "cameras": ["top", "lateral"]}) == TINY
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['n_encoder_layer'\]"):
        ACTConfig.from_config({**fields, "n_encoder_layer": 2})
    fields.pop("latent_dim")
    with pytest.raises(ValueError, match=r"missing field\(s\) \['latent_dim'\]"):
        ACTConfig.from_config(fields)


def test_sine_tables_follow_the_detr_and_act_formulas():
    h, w, d = 3, 4, 8
    table = sine_table_2d(h, w, d).reshape(h, w, d)
    # First D/2 channels depend only on the row, the rest only on the column.
    np.testing.assert_array_equal(table[:, :1, : d // 2], table[:, 1:2, : d // 2])
    np.testing.assert_array_equal(table[:1, :, d // 2 :], table[1:2, :, d // 2 :])
    y = (np.arange(1, h + 1) / (h + 1e-6)) * 2 * np.pi  # 1-based, normalised by the last index
    x = (np.arange(1, w + 1) / (w + 1e-6)) * 2 * np.pi
    freq1 = 10000 ** (2 / (d // 2))  # channel pair (2, 3) of each half
    np.testing.assert_allclose(table[:, 0, 0], np.sin(y), atol=1e-6)
    np.testing.assert_allclose(table[:, 0, 1], np.cos(y), atol=1e-6)
    np.testing.assert_allclose(table[:, 0, 3], np.cos(y / freq1), atol=1e-6)
    np.testing.assert_allclose(table[0, :, 4], np.sin(x), atol=1e-6)
    np.testing.assert_allclose(table[0, :, 6], np.sin(x / freq1), atol=1e-6)
    t1 = sine_table_1d(5, 4)
    np.testing.assert_allclose(t1[:, 0], np.sin(np.arange(5)), atol=1e-6)
    np.testing.assert_allclose(t1[:, 3], np.cos(np.arange(5) / 100.0), atol=1e-6)


def test_bfloat16_compute_returns_float32_actions(tiny_variables):
    images, state, _, _ = batch(TINY, 1)
    out = jit_apply(ACTConfig(**{**TINY.__dict__, "dtype": "bfloat16"}))(
        tiny_variables, images, state, train=False
    )
    ref = jit_apply(TINY)(tiny_variables, images, state, train=False)
    assert out["actions"].dtype == jnp.float32
    np.testing.assert_allclose(out["actions"], ref["actions"], atol=0.1)


def test_tiny_model_overfits_one_batch(tiny_variables):
    model = ACT(TINY)
    images, state, actions, pad = batch(TINY, 4)
    params, stats = tiny_variables["params"], tiny_variables["batch_stats"]
    tx = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(1e-3))  # clip as LeRobot

    @jax.jit
    def step(params, opt_state, rng):
        def loss_fn(p):
            out = model.apply(
                {"params": p, "batch_stats": stats},
                images,
                state,
                actions,
                pad,
                train=True,
                rngs={"dropout": rng, "latent": rng},
            )
            return act_loss(out, actions, pad, kl_weight=1e-2)

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics

    opt_state = tx.init(params)
    first = None
    for i in range(200):
        params, opt_state, metrics = step(params, opt_state, jax.random.key(i))
        first = float(metrics["l1"]) if first is None else first
    last = float(metrics["l1"])
    assert last < first / 10, (first, last)


def _np_attention(p, q_in, k_in, v_in, heads):
    def proj(name, x):
        y = x @ p[name]["kernel"] + p[name]["bias"]
        return y.reshape(*x.shape[:2], heads, -1)

    q, k, v = proj("q_proj", q_in), proj("k_proj", k_in), proj("v_proj", v_in)
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    out = np.einsum("bhqk,bkhd->bqhd", w, v).reshape(*q_in.shape)
    return out @ p["out_proj"]["kernel"] + p["out_proj"]["bias"]


def _np_layer_norm(p, x):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * p["scale"] + p["bias"]


def _np_ffn(p, x):
    h = np.maximum(x @ p["linear1"]["kernel"] + p["linear1"]["bias"], 0)
    return h @ p["linear2"]["kernel"] + p["linear2"]["bias"]


def test_post_norm_layers_match_a_numpy_reference_with_pos_on_q_and_k_only():
    from act_jax.transformer import DecoderLayer, EncoderLayer

    rng = np.random.default_rng(0)
    b, n, c, d, heads = 2, 5, 3, 8, 2
    x, pos = rng.normal(size=(b, n, d)), rng.normal(size=(1, n, d))
    tgt, qpos = rng.normal(size=(b, c, d)), rng.normal(size=(1, c, d))

    def random_params(module, *args):
        params = module.init(jax.random.key(0), *args, deterministic=True)["params"]
        # Perturb everything (biases 0 and LayerNorm scales 1 would hide swapped tensors).
        return jax.tree_util.tree_map(lambda a: np.asarray(a) + rng.normal(size=a.shape), params)

    enc = EncoderLayer(d, heads, 16, dropout=0.0)
    p = random_params(enc, x, pos)
    got = enc.apply({"params": p}, x, pos, deterministic=True)
    x1 = _np_layer_norm(p["norm1"], x + _np_attention(p["self_attn"], x + pos, x + pos, x, heads))
    want = _np_layer_norm(p["norm2"], x1 + _np_ffn(p["mlp"], x1))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

    dec = DecoderLayer(d, heads, 16, dropout=0.0)
    p = random_params(dec, tgt, x, qpos, pos)
    got = dec.apply({"params": p}, tgt, x, qpos, pos, deterministic=True)
    t1 = tgt + _np_attention(p["self_attn"], tgt + qpos, tgt + qpos, tgt, heads)
    t1 = _np_layer_norm(p["norm1"], t1)
    t2 = _np_layer_norm(
        p["norm2"], t1 + _np_attention(p["cross_attn"], t1 + qpos, x + pos, x, heads)
    )
    want = _np_layer_norm(p["norm3"], t2 + _np_ffn(p["mlp"], t2))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
