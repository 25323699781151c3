"""interp.hooks / ablation / patching: every hook point captures and patches, on a tiny ACT."""

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from ml_collections import ConfigDict

from act_jax import intermediates as im
from act_jax.model import ACT, ACTConfig, init_variables
from act_jax.normalization import NormStats
from act_jax.policy import Policy
from act_jax.transformer import EncoderLayer
from interp.ablation import ablate, attention_sites, knock_out_keys
from interp.hooks import patched_policy, run_with_cache, run_with_hooks, run_with_patches
from interp.patching import patch_sweep
from interp.tokens import TokenIndex

pytestmark = pytest.mark.usefixtures("fast_jax")  # conftest: cheaper compiles

CFG = ACTConfig(
    cameras=("top", "lateral"),
    image_size=(32, 64),  # a 1 x 2 feature map: N = 2 + 2 * 2 = 6 tokens
    dim_model=16,
    n_heads=2,
    dim_feedforward=24,
    n_encoder_layers=2,
    n_decoder_layers=2,
    n_vae_encoder_layers=1,
    chunk_size=4,
    latent_dim=4,
    backbone_width=0.125,
    dropout=0.1,
)
B = 2
RNGS = {"dropout": jax.random.key(1), "latent": jax.random.key(2)}


def make_batch(seed):
    rng = np.random.default_rng(seed)
    return {
        "images": {c: rng.integers(0, 256, (B, 32, 64, 3), np.uint8) for c in CFG.cameras},
        "state": rng.normal(size=(B, 6)).astype(np.float32),
        "actions": rng.normal(size=(B, 4, 6)).astype(np.float32),
        "action_is_pad": np.array([[0, 0, 0, 1], [0, 0, 0, 0]], bool),
    }


@pytest.fixture(scope="module")
def setup():
    model = ACT(CFG)
    variables = init_variables(model, jax.random.key(0, impl="rbg"))
    # Init has zero biases, so the first decoder layer's values (v_proj of ACT's zero queries)
    # are 0 and its self-attention has no effect; a nudge of every weight makes it a generic net.
    rng = np.random.default_rng(9)
    params = jax.tree_util.tree_map(
        lambda x: np.asarray(x) + 0.05 * rng.normal(size=x.shape).astype(np.float32),
        variables["params"],
    )
    variables = {**variables, "params": params}
    return model, variables, make_batch(0)


@struct.dataclass
class Nudge:
    """value + on * noise: a traced switch, so one program serves every name."""

    on: jax.Array
    noise: jax.Array

    def __call__(self, value):
        return value + self.on * self.noise


@pytest.mark.parametrize(
    "train",
    [False, pytest.param(True, marks=pytest.mark.slow)],  # train=True: 31 s
)
def test_every_documented_name_is_captured_and_patched_and_flows_on(setup, train):
    model, variables, batch = setup
    rngs = RNGS if train else None
    shapes = im.expected(CFG, B, train=train)
    out, clean = run_with_cache(model, variables, batch, train=train, rngs=rngs)
    assert {k: v.shape for k, v in clean.items()} == shapes
    rng = np.random.default_rng(1)
    noise = {n: rng.normal(size=s).astype(np.float32) for n, s in shapes.items()}
    # Eval names are covered in eval mode; train mode adds the VAE's own names.
    names = [n for n in shapes if train == n.startswith("vae")]
    for name in names:
        patches = {n: Nudge(jnp.float32(n == name), noise[n]) for n in shapes}
        got, cache = run_with_cache(
            model, variables, batch, patches=patches, train=train, rngs=rngs
        )
        # Recorded after the patch (upstream of `name` is unchanged) ...
        np.testing.assert_allclose(cache[name], clean[name] + noise[name], rtol=1e-5, atol=1e-5)
        # ... and the replaced value flows on: logits into their softmax, the rest to the
        # actions. (Logits of the first decoder self-attention cannot reach the actions: its
        # values are all v_proj(0), so any distribution over them gives the same mix.)
        then = name.replace("_logits", "_weights") if name.endswith("_logits") else "actions"
        change = np.abs(np.asarray(cache[then]) - np.asarray(clean[then])).max()
        assert change > 1e-4, f"patching {name} did not reach {then}"


def test_patching_in_the_captured_values_leaves_actions_unchanged(setup):
    model, variables, batch = setup
    out, clean = run_with_cache(model, variables, batch)
    got, _ = run_with_patches(model, variables, batch, dict(clean))  # every name at once
    assert np.abs(np.asarray(got["actions"]) - np.asarray(out["actions"])).max() < 1e-6


def test_ablations_change_actions_and_replace_only_their_tokens(setup):
    model, variables, batch = setup
    t = TokenIndex.for_config(CFG)
    site = "encoder/input_tokens"
    out, clean = run_with_cache(model, variables, batch, [site])
    _, ref = run_with_cache(model, variables, make_batch(5), [site])
    cases = {
        "zero": (ablate(site, [t.state]), np.zeros((B, CFG.dim_model))),
        "mean": (
            ablate(site, [t.state], "mean", reference=ref[site]),
            np.broadcast_to(np.asarray(ref[site])[:, t.state].mean(0), (B, CFG.dim_model)),
        ),
    }
    for mode, (patch, want) in cases.items():
        got, cache = run_with_patches(model, variables, batch, patch, [site])
        np.testing.assert_allclose(cache[site][:, t.state], want, atol=1e-6, err_msg=mode)
        others = np.delete(np.arange(t.n_tokens), t.state)
        np.testing.assert_array_equal(cache[site][:, others], np.asarray(clean[site])[:, others])
        assert np.abs(np.asarray(got["actions"]) - np.asarray(out["actions"])).max() > 1e-4
    patch = ablate(site, t.camera("top"), "resample", reference=ref[site], key=jax.random.key(3))
    _, cache = run_with_patches(model, variables, batch, patch, [site])
    top = np.asarray(cache[site])[:, t.camera("top")]
    for row in top:  # each row took one reference example's top tokens
        assert any(np.allclose(row, r) for r in np.asarray(ref[site])[:, t.camera("top")])


def test_knocking_out_a_key_everywhere_equals_removing_the_token(setup):
    """With key t dropped at every encoder and cross-attention site, no other token and no
    action query ever sees t: the actions equal a run on the sequence without token t."""
    model, variables, batch = setup
    t = TokenIndex.for_config(CFG)
    sites = attention_sites(CFG, "encoder") + attention_sites(CFG, "cross")
    got, cache = run_with_patches(
        model,
        variables,
        batch,
        knock_out_keys(sites, [t.state]),
        ["decoder/layer_0/cross_attn_weights"],
    )
    assert np.all(np.asarray(cache["decoder/layer_0/cross_attn_weights"])[..., t.state] == 0)
    _, clean = run_with_cache(
        model, variables, batch, ["encoder/input_tokens", "encoder/pos_embed"]
    )
    keep = np.delete(np.arange(t.n_tokens), t.state)
    tokens = np.asarray(clean["encoder/input_tokens"])[:, keep]
    pos = np.asarray(clean["encoder/pos_embed"])[:, keep]
    memory = model.apply(
        variables, tokens, pos, method=lambda m, x, p: m.encoder(x, p, deterministic=True)
    )
    want = model.apply(variables, memory, pos, method=ACT.decode, train=False)
    np.testing.assert_allclose(got["actions"], want, atol=1e-5)


def test_knock_out_at_one_site_is_the_key_padding_mask_there_only(setup):
    model, variables, batch = setup
    t = TokenIndex.for_config(CFG)
    names = [
        "encoder/input_tokens",
        "encoder/pos_embed",
        "encoder/layer_0/out",
        "encoder/layer_1/attn_weights",
        "decoder/layer_0/cross_attn_weights",
    ]
    _, cache = run_with_patches(
        model, variables, batch, knock_out_keys("encoder/layer_0/attn", [t.state]), names
    )
    layer = EncoderLayer(CFG.dim_model, CFG.n_heads, CFG.dim_feedforward, CFG.dropout)
    mask = np.zeros((B, t.n_tokens), bool)
    mask[:, t.state] = True
    want = layer.apply(
        {"params": variables["params"]["encoder"]["layer_0"]},
        cache["encoder/input_tokens"],
        cache["encoder/pos_embed"],
        mask,
        deterministic=True,
    )
    np.testing.assert_allclose(cache["encoder/layer_0/out"], want, atol=1e-6)
    for later in names[3:]:  # the token is still a key everywhere else
        assert np.all(np.asarray(cache[later])[..., t.state] > 0), later


def test_knock_out_for_some_queries_leaves_the_other_rows_alone(setup):
    """Pixel queries lose the state key; the latent and state rows attend exactly as before."""
    model, variables, batch = setup
    t = TokenIndex.for_config(CFG)
    site = "encoder/layer_0/attn_weights"
    _, clean = run_with_cache(model, variables, batch, [site])
    patch = knock_out_keys("encoder/layer_0/attn", [t.state], queries=t.pixels())
    _, cache = run_with_patches(model, variables, batch, patch, [site])
    w, w0 = np.asarray(cache[site]), np.asarray(clean[site])  # (B, H, Q, K)
    assert np.all(w[:, :, t.pixels(), t.state] == 0)
    np.testing.assert_allclose(w[:, :, : t.pixels()[0]], w0[:, :, : t.pixels()[0]], atol=1e-6)
    assert np.all(w0[:, :, t.pixels(), t.state] > 0)
    with pytest.raises(ValueError, match="queries"):
        run_with_patches(
            model, variables, batch, knock_out_keys("encoder/layer_0/attn", [1], queries=[99])
        )


def test_run_with_patches_traces_once_and_rejects_bad_patches(setup):
    model, variables, batch = setup
    t = TokenIndex.for_config(CFG)
    traces = []

    def counter(value):  # a static patch: Python runs it only while tracing
        traces.append(value.shape)
        return value

    outs = []
    for seed in range(3):  # new arrays, same shapes
        memory = np.random.default_rng(seed).normal(size=(B, t.n_tokens, 16)).astype(np.float32)
        patches = {
            "encoder/out": memory,
            "decoder/out": counter,
            **ablate("encoder/input_tokens", [seed % t.n_tokens]),
        }
        out, _ = run_with_patches(model, variables, batch, patches, ["actions"])
        outs.append(np.asarray(out["actions"]))
    assert len(traces) == 1
    assert np.abs(outs[0] - outs[1]).max() > 1e-4  # the new arrays were used
    _, hooked = run_with_hooks(
        model,
        variables,
        batch,
        [("actions", lambda a: a * 0), ("actions", lambda a: a + 1)],
        ["actions"],
    )
    np.testing.assert_array_equal(hooked["actions"], 1.0)  # several hooks on a name, in order
    with pytest.raises(
        KeyError,
        match=r"unknown intermediate.*layer_9/out.*valid names.*encoder/layer_1/attn_logits",
    ):
        run_with_patches(model, variables, batch, {"encoder/layer_9/out": 0.0})
    with pytest.raises(KeyError, match="only with train=True"):
        run_with_patches(model, variables, batch, {"vae/mu": 0.0})
    with pytest.raises(ValueError, match="does not broadcast"):
        run_with_patches(model, variables, batch, {"encoder/out": np.zeros((3, 6, 16))})
    with pytest.raises(ValueError, match="outside 0..5"):
        run_with_patches(model, variables, batch, ablate("encoder/out", [6]))
    with pytest.raises(ValueError, match="attention sites"):
        knock_out_keys("encoder/layer_0/out", [1])


@pytest.mark.slow  # 30 s
def test_patch_sweep_full_memory_restores_one_and_identical_inputs_give_nan(setup):
    model, variables, batch = setup
    t = TokenIndex.for_config(CFG)
    corrupt = make_batch(7)
    everything = [np.arange(t.n_tokens)]
    sweep = patch_sweep(model, variables, batch, corrupt, ["encoder/out"], everything)
    assert sweep.change > 0
    np.testing.assert_allclose(sweep.denoising, [[1.0]], atol=1e-5)
    np.testing.assert_allclose(sweep.noising, [[1.0]], atol=1e-5)
    sites = ["encoder/input_tokens", "encoder/layer_0/out"]
    sweep = patch_sweep(model, variables, batch, corrupt, sites)  # every token on its own
    assert sweep.denoising.shape == sweep.noising.shape == (2, t.n_tokens)
    # One entry by hand: the clean state token of layer 0's output patched into the corrupt run.
    out_clean, clean = run_with_cache(model, variables, batch, sites)
    out_corr, corr = run_with_cache(model, variables, corrupt, sites)
    is_state = np.arange(t.n_tokens)[None, :, None] == t.state
    patch = {sites[1]: np.where(is_state, clean[sites[1]], corr[sites[1]])}
    a_p = np.asarray(run_with_patches(model, variables, corrupt, patch)[0]["actions"])
    a_clean, a_corr = np.asarray(out_clean["actions"]), np.asarray(out_corr["actions"])
    d = a_clean - a_corr
    want = np.sum((a_p - a_corr) * d) / np.sum(d * d)
    np.testing.assert_allclose(sweep.denoising[1, t.state], want, rtol=1e-4, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by zero
        same = patch_sweep(model, variables, batch, batch, sites, [[t.state], t.camera("top")])
    assert same.change == 0 and np.isnan(same.denoising).all() and np.isnan(same.noising).all()


def test_inactive_hooks_add_no_operations(setup, monkeypatch):
    """A plain apply traces to the same program as a model whose hook points do nothing."""
    model, variables, batch = setup

    def jaxpr():
        apply = lambda v, i, s: model.apply(v, i, s, train=False)  # noqa: E731
        return str(jax.make_jaxpr(apply)(variables, batch["images"], batch["state"]))

    hooked = jaxpr()
    monkeypatch.setattr(im, "hook", lambda module, name, value: value)
    monkeypatch.setattr(im, "hooks", lambda module, prefix: lambda kind, value: value)
    assert hooked == jaxpr()


def test_patched_policy_predicts_under_the_patch_without_retracing(setup):
    model, variables, batch = setup
    t = TokenIndex.for_config(CFG)
    stats = NormStats(*(np.full(6, v, np.float32) for v in (1.0, 2.0, -1.0, 3.0)))
    config = ConfigDict({"model": dataclasses.asdict(CFG)})
    policy = Policy(model, variables, config, stats)
    patches = ablate("encoder/input_tokens", [t.state])
    patched = patched_policy(policy, patches)
    patched.warmup()
    obs = [
        {"images": {c: batch["images"][c][b] for c in CFG.cameras}, "state": batch["state"][b]}
        for b in range(B)
    ]
    chunks = [patched.predict_chunk(o) for o in obs]
    assert patched.retraces_after_warmup == 0
    # The same as run_with_patches on the normalised state, un-normalised.
    norm = {
        "images": {c: v[:1] for c, v in batch["images"].items()},
        "state": (batch["state"][:1] - 1.0) / 2.0,
    }
    out, _ = run_with_patches(model, variables, norm, patches)
    np.testing.assert_allclose(chunks[0], np.asarray(out["actions"])[0] * 3.0 - 1.0, atol=1e-5)
    assert np.abs(chunks[0] - policy.predict_chunk(obs[0])).max() > 1e-3  # the patch acted
