"""Tests of the named intermediates: documented set == sown set, shapes, meaning, zero cost."""

import jax
import numpy as np
import pytest

from act_jax import intermediates as im
from act_jax.model import ACT, ACTConfig, dummy_inputs, init_variables

pytestmark = pytest.mark.usefixtures("fast_jax")  # conftest: cheaper compiles

TINY = ACTConfig(
    cameras=("top", "lateral"),
    image_size=(64, 96),
    dim_model=32,
    n_heads=4,
    dim_feedforward=48,
    n_encoder_layers=2,
    n_decoder_layers=2,
    n_vae_encoder_layers=1,
    chunk_size=6,
    latent_dim=4,
    backbone_width=0.125,
    dropout=0.1,
)
SEED = ACTConfig()  # the seed model: 2 cameras at 480x640, D 512, 3 encoder layers, chunk 100


@pytest.fixture(scope="module")
def setup():
    model = ACT(TINY)
    variables = init_variables(model, jax.random.key(0, impl="rbg"))
    rng = np.random.default_rng(0)
    b = 2
    batch = {
        "images": {c: rng.integers(0, 256, (b, 64, 96, 3), np.uint8) for c in TINY.cameras},
        "state": rng.normal(size=(b, 6)).astype(np.float32),
        "actions": rng.normal(size=(b, 6, 6)).astype(np.float32),
        "action_is_pad": np.arange(6)[None].repeat(b, 0) >= np.array([[4], [6]]),
    }
    return model, variables, batch


def shapes(cache):
    return {k: tuple(v.shape) for k, v in cache.items()}


def test_every_documented_intermediate_is_sown_with_its_shape(setup):
    model, variables, batch = setup
    cache = im.run_with_cache(model, variables, batch)
    assert shapes(cache) == im.expected(TINY, 2)
    rngs = {"dropout": jax.random.key(1), "latent": jax.random.key(2)}
    cache = im.run_with_cache(model, variables, batch, train=True, rngs=rngs)
    assert shapes(cache) == im.expected(TINY, 2, train=True)


def test_seed_model_intermediate_shapes_abstractly():
    model = ACT(SEED)
    images, state = dummy_inputs(SEED, 1)
    variables = jax.eval_shape(
        lambda r, i, s: model.init({"params": r}, i, s, train=False),
        jax.random.key(0),
        images,
        state,
    )
    cache = jax.eval_shape(
        lambda v, i, s: im.run_with_cache(model, v, {"images": i, "state": s}),
        variables,
        images,
        state,
    )
    want = im.expected(SEED, 1)
    assert shapes(cache) == want
    assert want["encoder/layer_0/attn_weights"] == (1, 8, 602, 602)
    assert want["decoder/layer_0/cross_attn_weights"] == (1, 8, 100, 602)
    assert want["backbone/lateral"] == (1, 15, 20, 512)


def test_plain_apply_returns_only_outputs(setup):
    model, variables, batch = setup
    apply = jax.jit(model.apply, static_argnames="train")
    out = apply(variables, batch["images"], batch["state"], train=False)
    assert isinstance(out, dict) and set(out) == {"actions", "mu", "logvar"}
    assert "intermediates" not in variables


def test_names_filter_and_unknown_name_error(setup):
    model, variables, batch = setup
    names = ["decoder/out", "encoder/layer_1/attn_weights"]
    capture = jax.jit(lambda v, b: im.run_with_cache(model, v, b, names))
    assert set(capture(variables, batch)) == set(names)
    with pytest.raises(
        KeyError,
        match=r"unknown intermediate.*decoder/mlp_hidden.*valid names"
        r".*decoder/layer_0/mlp_hidden",
    ):
        im.run_with_cache(model, variables, batch, ["decoder/mlp_hidden"])
    with pytest.raises(KeyError, match=r"only with train=True"):
        im.run_with_cache(model, variables, batch, "vae/mu")  # eval mode has no posterior


def test_intermediates_mean_what_their_names_say(setup):
    model, variables, batch = setup
    rngs = {"dropout": jax.random.key(1), "latent": jax.random.key(2)}
    cache = im.run_with_cache(model, variables, batch)
    params = variables["params"]
    # decoder/out is the action vector: action_head applied to it gives the actions.
    head = params["action_head"]
    np.testing.assert_allclose(
        cache["decoder/out"] @ head["kernel"] + head["bias"], cache["actions"], atol=1e-5
    )
    # The MLP pieces chain: hidden = relu(mlp_in W1 + b1), out = hidden W2 + b2.
    mlp = params["decoder"]["layer_1"]["mlp"]
    hidden = np.maximum(
        cache["decoder/layer_1/mlp_in"] @ mlp["linear1"]["kernel"] + mlp["linear1"]["bias"], 0
    )
    np.testing.assert_allclose(hidden, cache["decoder/layer_1/mlp_hidden"], atol=1e-5)
    np.testing.assert_allclose(
        hidden @ mlp["linear2"]["kernel"] + mlp["linear2"]["bias"],
        cache["decoder/layer_1/mlp_out"],
        atol=1e-5,
    )
    # Each attention row is a distribution over keys.
    for name in ("encoder/layer_0/attn_weights", "decoder/layer_0/cross_attn_weights"):
        np.testing.assert_allclose(cache[name].sum(-1), 1.0, atol=1e-5)
    # Token layout: [latent, state, top pixels, lateral pixels]; the state token is state_proj.
    tokens = cache["encoder/input_tokens"]
    sp = params["state_proj"]
    np.testing.assert_allclose(tokens[:, 1], batch["state"] @ sp["kernel"] + sp["bias"], atol=1e-5)
    # Token 2 + h*w is the first lateral pixel: input_proj of backbone/lateral at (0, 0).
    _, h, w, _ = cache["backbone/lateral"].shape
    ip = params["input_proj"]
    first_lateral = cache["backbone/lateral"][:, 0, 0] @ ip["kernel"][0, 0] + ip["bias"]
    np.testing.assert_allclose(tokens[:, 2 + h * w], first_lateral, atol=1e-4)
    # The VAE encoder gives padded actions zero attention.
    train = im.run_with_cache(model, variables, batch, train=True, rngs=rngs)
    w = train["vae_encoder/layer_0/attn_weights"]  # (B, H, 2 + C, 2 + C)
    pad = np.concatenate([np.zeros((2, 2), bool), batch["action_is_pad"]], axis=1)
    assert np.all(np.asarray(w)[0][..., pad[0]] == 0) and pad[0].any()
