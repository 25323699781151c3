"""Tests of the attention statistics, rollout, overlays and the end-to-end attention analysis."""

import math

import cv2
import jax
import numpy as np
import pytest

from act_jax import intermediates as im
from act_jax.model import ACT, ACTConfig, init_variables
from interp import attention as A
from interp import overlays
from interp.attention_analysis import analyse_attention
from interp.tokens import TokenIndex

pytestmark = pytest.mark.usefixtures("fast_jax")  # conftest: cheaper compiles

TINY = ACTConfig(
    cameras=("top", "lateral"),
    image_size=(64, 96),
    dim_model=32,
    n_heads=4,
    dim_feedforward=48,
    n_encoder_layers=2,
    n_decoder_layers=1,
    chunk_size=6,
    use_vae=False,
    backbone_width=0.125,
)
TOKENS = TokenIndex.for_config(TINY)  # 2 + 2 cameras x (2 x 3) = 14 tokens


def random_rows(rng, shape):
    w = rng.random(shape) ** 4
    return w / w.sum(-1, keepdims=True)


@pytest.mark.parametrize("n", [1, 7, 26, 602])
def test_one_hot_rows_need_one_token_and_have_zero_entropy(n):
    w = np.zeros((3, n))
    w[np.arange(3), [0, n // 2, n - 1]] = 1.0
    assert (A.tokens_for_mass(w, 0.5) == 1).all()
    assert (A.tokens_for_mass(w, 0.9) == 1).all()
    if n > 1:
        np.testing.assert_allclose(A.normalised_entropy(w), 0.0, atol=1e-12)


@pytest.mark.parametrize("n", [2, 10, 26, 101, 602])
def test_uniform_rows_need_ceil_of_the_mass_and_have_entropy_one(n):
    w = np.full((2, 3, n), 1.0 / n, np.float32)  # float32, as captured
    assert (A.tokens_for_mass(w, 0.5) == math.ceil(0.5 * n)).all()
    assert (A.tokens_for_mass(w, 0.9) == math.ceil(0.9 * n)).all()
    np.testing.assert_allclose(A.normalised_entropy(w), 1.0, atol=1e-6)
    base = A.uniform_baseline(n)
    assert base["k50"] == {"count": math.ceil(0.5 * n), "fraction": math.ceil(0.5 * n) / n}
    assert base["k90"]["count"] == math.ceil(0.9 * n) and base["entropy"] == 1.0


def test_tokens_for_mass_on_a_hand_made_row():
    row = np.array([0.05, 0.4, 0.05, 0.3, 0.2])  # sorted: 0.4, 0.3, 0.2, 0.05, 0.05
    assert A.tokens_for_mass(row, 0.5) == 2  # 0.4 < 0.5 <= 0.7
    assert A.tokens_for_mass(row, 0.9) == 3  # 0.9 reached exactly by 0.4 + 0.3 + 0.2
    assert A.tokens_for_mass(row, 0.91) == 4
    assert A.tokens_for_mass(row * 3, 0.5) == 2  # unnormalised rows are normalised first
    with pytest.raises(ValueError, match="mass"):
        A.tokens_for_mass(row, 0.0)
    with pytest.raises(ValueError, match="positive mass"):
        A.tokens_for_mass(np.zeros(4), 0.5)


def test_shares_partition_the_mass_by_token_group():
    rng = np.random.default_rng(0)
    w = random_rows(rng, (2, 3, TOKENS.n_tokens))
    s = A.shares(w, TOKENS)
    assert list(s) == ["latent", "state", "top", "lateral"]
    np.testing.assert_allclose(sum(s.values()), 1.0, atol=1e-12)
    np.testing.assert_allclose(s["state"], w[..., 1])
    np.testing.assert_allclose(s["lateral"], w[..., 8:].sum(-1))  # 2 + 6 top tokens first
    base = A.uniform_baseline(TOKENS.n_tokens, TOKENS)
    assert base["share_state"] == pytest.approx(1 / 14) and base["share_top"] == pytest.approx(
        6 / 14
    )
    with pytest.raises(ValueError, match="14 encoder tokens"):
        A.shares(w[..., :5], TOKENS)


def test_site_stats_adds_the_head_mean_and_summarise_counts_it_separately():
    n = TOKENS.n_tokens
    w = np.zeros((2, 2, 3, n))
    w[:, 0, :, 1] = 1.0  # head 0: every query on the state token
    w[:, 1] = 1.0 / n  # head 1: uniform
    stats = A.site_stats(w, TOKENS)
    assert stats["k90"].shape == (2, 3, 3)
    assert (stats["k90"][:, 0] == 1).all() and (stats["k90"][:, 1] == math.ceil(0.9 * n)).all()
    np.testing.assert_allclose(stats["share_state"][:, 2], 0.5 + 0.5 / n)  # the head mean
    summary = A.summarise(stats, n)
    assert len(summary["heads"]) == 2
    assert summary["heads"][0]["k50"] == {
        "mean": 1.0,
        "median": 1.0,
        "fraction_mean": 1 / n,
        "fraction_median": 1 / n,
    }
    assert summary["heads"][1]["entropy"]["mean"] == pytest.approx(1.0)
    assert summary["head_mean"]["share_state"]["mean"] == pytest.approx(0.5 + 0.5 / n)
    one = A.summarise(stats, n, frames=np.array([True, False]))
    assert one["heads"][0]["k90"]["mean"] == 1.0
    with pytest.raises(ValueError, match="no frames"):
        A.summarise(stats, n, frames=np.array([False, False]))
    assert A.per_query(stats)["k90"] == [A.tokens_for_mass(w[0].mean(0), 0.9)[0]] * 3


def test_rollout_of_identity_attention_is_identity():
    n = 9
    eye = np.broadcast_to(np.eye(n), (2, 4, n, n))
    np.testing.assert_allclose(
        A.encoder_rollout([eye, eye, eye]), np.broadcast_to(np.eye(n), (2, n, n))
    )


def test_rollout_of_a_two_layer_example_matches_a_hand_computation():
    # Two heads per layer. Head means: layer 0 rows (.5, .5, 0), (1, 0, 0), (0, 0, 1); layer 1
    # rows (0, 0, 1), (0, 1, 0), (.5, 0, .5).
    l0 = np.array([[[[1, 0, 0], [1, 0, 0], [0, 0, 1]], [[0, 1, 0], [1, 0, 0], [0, 0, 1]]]], float)
    l1 = np.array([[[[0, 0, 1], [0, 1, 0], [0, 0, 1]], [[0, 0, 1], [0, 1, 0], [1, 0, 0]]]], float)
    r0 = np.array([[0.75, 0.25, 0], [0.5, 0.5, 0], [0, 0, 1]])  # 0.5 * a0 + 0.5 * I
    r1 = np.array([[0.5, 0, 0.5], [0, 1, 0], [0.25, 0, 0.75]])  # 0.5 * a1 + 0.5 * I
    want = r1 @ r0  # later layer on the left
    np.testing.assert_allclose(want[0], [0.375, 0.125, 0.5])  # written out by hand
    np.testing.assert_allclose(want[2], [0.1875, 0.0625, 0.75])
    got = A.encoder_rollout([l0, l1])
    np.testing.assert_allclose(got[0], want)
    np.testing.assert_allclose(got.sum(-1), 1.0)
    cross = np.array([[[[0, 1, 0], [0.5, 0, 0.5]]]])  # (1, 1 head, C=2, N=3)
    np.testing.assert_allclose(A.cross_rollout(cross, got)[0], [want[1], (want[0] + want[2]) / 2])


def test_uniform_rollout_and_state_into_pixels():
    n = TOKENS.n_tokens
    uniform = np.full((1, 2, n, n), 1.0 / n)
    rollout = A.encoder_rollout([uniform] * 3)  # (0.5 U + 0.5 I)^3 = I/8 + 7/8 U
    np.testing.assert_allclose(rollout[0], np.eye(n) / 8 + 7 / 8 / n)
    np.testing.assert_allclose(A.state_into_pixels(rollout, TOKENS), (1 - 0.5**3) / n)
    eye = np.broadcast_to(np.eye(n), (1, 2, n, n))
    assert A.state_into_pixels(A.encoder_rollout([eye]), TOKENS)[0] == 0.0


def test_overlay_rgb_keeps_the_image_size_and_marks_the_hot_cell():
    image = np.full((64, 96, 3), 128, np.uint8)
    grid = np.zeros((2, 3))
    grid[1, 2] = 1.0
    out = overlays.overlay_rgb(image, grid)
    assert out.shape == image.shape and out.dtype == np.uint8
    hot, cold = out[48, 80], out[10, 10]  # inside cell (1, 2) and inside cell (0, 0)
    assert not np.array_equal(hot, cold)
    assert (out[32:, 64:] == hot).all()  # the cell is one block of 32 x 32 pixels


def decode_png(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


@pytest.fixture(scope="module")
def analysis():
    model = ACT(TINY)
    variables = init_variables(model, jax.random.key(0, impl="rbg"))
    rng = np.random.default_rng(0)
    b = 5
    batch = {
        "images": {c: rng.integers(0, 256, (b, 64, 96, 3), np.uint8) for c in TINY.cameras},
        "state": rng.normal(size=(b, 6)).astype(np.float32),
    }
    phases = ["reach", "reach", "carry", "release", "carry"]
    summary, pngs = analyse_attention(model, variables, batch, TOKENS, phases, batch_size=2)
    return model, variables, batch, summary, pngs


def test_analysis_runs_end_to_end_and_matches_the_captured_weights(analysis):
    model, variables, batch, summary, pngs = analysis
    assert summary["n_frames"] == 5 and summary["n_tokens"] == 14
    assert summary["phases"] == {"reach": 2, "carry": 2, "release": 1}
    cross = "decoder/layer_0/cross_attn_weights"
    assert set(summary["sites"]) == {
        "encoder/layer_0/attn_weights",
        "encoder/layer_1/attn_weights",
        cross,
    }
    # Recompute one number straight from run_with_cache: the mini-batching lost nothing.
    cache = im.run_with_cache(
        model,
        variables,
        batch,
        [cross, "encoder/layer_0/attn_weights", "encoder/layer_1/attn_weights"],
    )
    w = np.asarray(cache[cross], np.float64)
    site = summary["sites"][cross]
    assert site["all"]["heads"][2]["k90"]["mean"] == pytest.approx(
        A.tokens_for_mass(w[:, 2], 0.9).mean()
    )
    assert len(site["per_query"]["k90"]) == TINY.chunk_size
    carry = site["by_phase"]["carry"]["head_mean"]["share_state"]["mean"]
    assert carry == pytest.approx(w[[2, 4]].mean(1)[..., 1].mean(), rel=1e-6)
    rollout = A.cross_rollout(
        w, A.encoder_rollout([cache[f"encoder/layer_{i}/attn_weights"] for i in range(2)])
    )
    got = summary["rollout"][cross]["all"]["share_top"]["mean"]
    assert got == pytest.approx(rollout[..., TOKENS.camera("top")].sum(-1).mean(), rel=1e-6)
    shares = sum(
        site["all"]["head_mean"][f"share_{g}"]["mean"]
        for g in ("latent", "state", "top", "lateral")
    )
    assert shares == pytest.approx(1.0)
    assert summary["uniform"]["k90"]["count"] == 13
    assert summary["rollout"]["uniform"]["state_into_pixels"] == pytest.approx(0.75 / 14)
    import json

    json.dumps(summary)  # JSON-ready: no numpy scalars or arrays left


def test_analysis_figures_are_pngs_of_the_expected_size(analysis):
    *_, pngs = analysis
    assert set(pngs) == {
        "attention_summary.png",
        "decoder_queries.png",
        "overlay_phases.png",
        "overlay_frames.png",
    }
    assert decode_png(pngs["attention_summary.png"]).shape == (800, 1200, 3)
    assert decode_png(pngs["decoder_queries.png"]).shape == (400, 1200, 3)
    w, h = overlays.overlay_figsize(3, 4, TINY.image_size)  # 3 phases, 2 kinds x 2 cameras
    for name in ("overlay_phases.png", "overlay_frames.png"):
        img = decode_png(pngs[name])
        assert img.shape == (round(h * overlays.DPI), round(w * overlays.DPI), 3)
        assert img.std() > 10  # something was drawn


def test_analysis_rejects_mismatched_phases_and_tokens(analysis):
    model, variables, batch, *_ = analysis
    with pytest.raises(ValueError, match="3 labels for 5 frames"):
        analyse_attention(model, variables, batch, TOKENS, ["a", "b", "c"])
    other = TokenIndex(cameras=("top",), grid=(2, 3))
    with pytest.raises(ValueError, match="do not describe"):
        analyse_attention(model, variables, batch, other)


def test_cli_on_a_checkpoint_and_dataset_writes_json_and_pngs(tmp_path):
    import json

    import jax.numpy as jnp
    from helpers_data import build_dataset

    from act_jax import checkpoints, normalization, train
    from configs import tiny
    from interp.attention_analysis import main

    dataset = build_dataset(tmp_path / "data", num_episodes=2, steps=6)
    config = tiny.get_config()
    _, shapes = checkpoints._abstract_variables(config, None)
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), shapes)
    opt_state = train.make_optimizer(config.train).init(variables["params"])
    stats = normalization.NormStats(
        np.zeros(6, np.float32),
        np.ones(6, np.float32),
        np.zeros(6, np.float32),
        np.ones(6, np.float32),
    )
    state = {"step": jnp.int32(1), **variables, "opt_state": opt_state}
    checkpoints.save(tmp_path / "run", 1, state, config, stats)
    out = tmp_path / "out"
    args = [
        "--checkpoint",
        str(tmp_path / "run"),
        "--out",
        str(out),
        "--frames",
        "5",
        "--dataset",
        str(dataset),
        "--batch-size",
        "4",
    ]
    assert main(args) == 0
    summary = json.loads((out / "attention.json").read_text())
    assert summary["n_frames"] == 5 and summary["n_tokens"] == 4  # 32x32 images: one cell each
    assert sum(summary["phases"].values()) == 5 and len(summary["frames"]["phase"]) == 5
    assert summary["frames"]["episode"][0] == 0 and summary["frames"]["step"][-1] == 6
    assert summary["command"].startswith("python -m interp.attention_analysis --checkpoint")
    for name in ("attention_summary", "decoder_queries", "overlay_phases", "overlay_frames"):
        decode_png((out / f"{name}.png").read_bytes())
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tmp_path / "none"), "--out", str(out)])
