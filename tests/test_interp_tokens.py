"""interp.tokens: the token layout matches what the model actually assembles."""

import jax
import numpy as np
import pytest

from act_jax import intermediates as im
from act_jax.model import ACT, ACTConfig, init_variables
from interp.tokens import TokenIndex

pytestmark = pytest.mark.usefixtures("fast_jax")  # conftest: cheaper compiles

CFG = ACTConfig(
    cameras=("top", "lateral"),
    image_size=(64, 96),
    dim_model=16,
    n_heads=2,
    dim_feedforward=16,
    n_encoder_layers=1,
    n_decoder_layers=1,
    chunk_size=4,
    latent_dim=4,
    backbone_width=0.125,
)


def test_counts_for_the_cpu_default_and_the_seed_architecture():
    assert TokenIndex.for_config(ACTConfig(image_size=(96, 128))).n_tokens == 26
    seed = TokenIndex.for_config(ACTConfig())
    assert seed.n_tokens == 602 and seed.grid == (15, 20)
    assert seed.pixel("lateral", 0, 0) == 2 + 300 and seed.label(2 + 300 + 21) == "lateral(1,1)"


def test_pixel_tokens_are_the_backbone_cells_projected_row_major():
    """Token `pixel(cam, r, c)` of `encoder/input_tokens` is input_proj(backbone/cam[r, c])."""
    model = ACT(CFG)
    variables = init_variables(model, jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {
        "images": {c: rng.integers(0, 256, (1, 64, 96, 3), np.uint8) for c in CFG.cameras},
        "state": rng.normal(size=(1, 6)).astype(np.float32),
    }
    cache = im.run_with_cache(model, variables, batch)
    tokens = TokenIndex.for_config(CFG)
    proj = variables["params"]["input_proj"]
    x = np.asarray(cache["encoder/input_tokens"])[0]  # (N, D)
    assert x.shape[0] == tokens.n_tokens
    for cam in CFG.cameras:
        feats = np.asarray(cache[f"backbone/{cam}"])[0]  # (h, w, C)
        assert feats.shape[:2] == tokens.grid
        kernel = np.asarray(proj["kernel"]).reshape(-1, CFG.dim_model)  # 1x1 conv: (C, D)
        want = feats @ kernel + np.asarray(proj["bias"])  # (h, w, D)
        got = x[tokens.camera(cam)].reshape(*tokens.grid, -1)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(
            tokens.to_grid(np.arange(tokens.n_tokens), cam).ravel(), tokens.camera(cam)
        )
    state = variables["params"]["state_proj"]
    want_state = batch["state"][0] @ np.asarray(state["kernel"]) + np.asarray(state["bias"])
    np.testing.assert_allclose(x[tokens.state], want_state, rtol=1e-5, atol=1e-5)


def test_bad_names_and_cells_are_clear_errors():
    tokens = TokenIndex.for_config(CFG)
    with pytest.raises(KeyError, match="cameras"):
        tokens.camera("wrist")
    with pytest.raises(IndexError, match="outside"):
        tokens.pixel("top", *tokens.grid)
    with pytest.raises(ValueError, match="tokens"):
        tokens.to_grid(np.zeros(3), "top")
    assert tokens.labels()[:3] == ["latent", "state", "top(0,0)"]
