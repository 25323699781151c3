r"""How concentrated ACT's attention is, and where it comes from: statistics and rollout.

Pure numpy functions over attention weights captured by `act_jax.intermediates.run_with_cache`
(`encoder/layer_{i}/attn_weights` (B, H, N, N), `decoder/layer_{i}/cross_attn_weights`
(B, H, C, N)). Claim 3 of DESIGN.md ("only a few tokens get high attention") becomes a contrast
with what uniform attention over the same N keys would give.

Statistics of one attention row p (a distribution over K keys), computed per frame, head and
query, then summarised (mean and median over frames x queries):

    k50, k90       the fewest keys whose weights sum to >= 50% (90%) of the row: sort the row
                   descending and count until the running sum reaches the level. Uniform rows
                   give ceil(0.5 K) and ceil(0.9 K); a one-hot row gives 1. `fraction` = k / K.
    entropy        -sum_j p_j log p_j / log K, in [0, 1]: 1 for uniform, 0 for one-hot.
    share_<group>  the mass on the latent token, on the state token, and on each camera's pixel
                   tokens (these sum to 1 per row); uniform gives 1/N, 1/N, h*w/N.

"Head" H (one past the last real head) is the head-mean matrix mean_h(A): its statistics are of
that averaged matrix, not averages of the per-head statistics (a head-mean row spreads wider than
any single head whose peaks differ).

Rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"), as composed here:

    A_l' = rownorm(0.5 * mean_h(A_l) + 0.5 * I)       each encoder layer l, residual-corrected
    R    = A_{L-1}' @ ... @ A_1' @ A_0'                 (B, N, N): R[i, j] is the attribution of
                                                         encoder output token i to input token j
    X_d  = mean_h(cross_attn_d) @ R                     (B, C, N): chunk query c of decoder layer d
                                                         over the input tokens [latent, state, px]

What rollout ignores, and why its numbers are indicative only:
* ACT's layers are post-norm, x = LN(x + f(x)): LayerNorm rescales the sum, so the residual and
  the attention branch do not contribute 0.5 / 0.5. The 0.5 is Abnar & Zuidema's convention, not a
  measurement; the FFN and LayerNorm act per token and move no information between tokens, so
  only the attention matrices are composed.
* A weight is not a contribution: the value vectors' norms and the output projection differ per
  token and head, and the head mean weights every head equally.
* The decoder's cross-attention is composed without a residual term because the decoder stream
  entering layer 0 holds no input token (zeros plus learned query embeddings). With several
  decoder layers each layer's cross-attention is composed with R separately; the path through an
  earlier decoder layer's output is not followed.
* Attention is not explanation (Jain & Wallace 2019): rollout says where information could flow,
  not what the actions depend on. Causal tests (ablations, key knock-outs) answer that.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from interp.tokens import TokenIndex

MASS_LEVELS = (0.5, 0.9)
# A running sum within this of the level counts as reaching it: 13 of 26 uniform weights sum to
# 0.5 up to rounding, and should count as 13 tokens, not 14.
_MASS_TOL = 1e-9


def _rows(weights) -> np.ndarray:
    """float64 copy with each row normalised to sum 1 (captured rows already do, up to 1e-7)."""
    w = np.asarray(weights, np.float64)
    if w.ndim < 1 or w.shape[-1] < 1:
        raise ValueError(f"attention weights need a key axis, got shape {w.shape}")
    if (w < 0).any():
        raise ValueError("attention weights must be non-negative")
    total = w.sum(-1, keepdims=True)
    if (total <= 0).any():
        raise ValueError("every attention row needs positive mass")
    return w / total


def tokens_for_mass(weights, mass: float) -> np.ndarray:
    """The fewest keys holding at least `mass` of each row's attention.

    Args:
        weights: (..., K) non-negative rows (normalised here).
        mass: the level, in (0, 1].

    Returns:
        (...,) int counts in 1..K.
    """
    if not 0.0 < mass <= 1.0:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    w = _rows(weights)
    cum = np.cumsum(-np.sort(-w, axis=-1), axis=-1)  # (..., K) running sum, largest first
    return (cum < mass - _MASS_TOL).sum(-1) + 1


def normalised_entropy(weights) -> np.ndarray:
    """Entropy of each row divided by log K: (..., K) -> (...,) in [0, 1]."""
    w = _rows(weights)
    k = w.shape[-1]
    if k < 2:
        raise ValueError("normalised entropy needs at least 2 keys")
    plogp = np.where(w > 0, w * np.log(np.where(w > 0, w, 1.0)), 0.0)
    return -plogp.sum(-1) / np.log(k)


def token_groups(tokens: TokenIndex) -> dict[str, np.ndarray]:
    """Group name -> token indices: "latent", "state", then one per camera (a partition of N)."""
    groups = {"latent": np.array([tokens.latent]), "state": np.array([tokens.state])}
    groups.update({cam: tokens.camera(cam) for cam in tokens.cameras})
    return groups


def shares(weights, tokens: TokenIndex) -> dict[str, np.ndarray]:
    """Attention mass on each token group: (..., N) -> {group: (...,)}, summing to 1 per row."""
    w = _rows(weights)
    if w.shape[-1] != tokens.n_tokens:
        raise ValueError(
            f"shares need rows over the {tokens.n_tokens} encoder tokens, got {w.shape}"
        )
    return {g: w[..., idx].sum(-1) for g, idx in token_groups(tokens).items()}


def site_stats(weights, tokens: TokenIndex | None = None) -> dict[str, np.ndarray]:
    """Per frame, head and query statistics of one attention site.

    Args:
        weights: (B, H, Q, K) attention weights of one layer.
        tokens: the encoder layout; when given and K == N, group shares are included.

    Returns:
        {"k50", "k90", "entropy", ["share_<group>"...]}: each (B, H + 1, Q); index H is the
        head-mean matrix.
    """
    w = _rows(weights)
    if w.ndim != 4:
        raise ValueError(f"expected (B, H, Q, K) attention weights, got shape {w.shape}")
    w = np.concatenate([w, w.mean(1, keepdims=True)], axis=1)  # (B, H + 1, Q, K)
    out = {f"k{round(100 * m)}": tokens_for_mass(w, m) for m in MASS_LEVELS}
    out["entropy"] = normalised_entropy(w)
    if tokens is not None and w.shape[-1] == tokens.n_tokens:
        out.update({f"share_{g}": v for g, v in shares(w, tokens).items()})
    return out


def _mean_median(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "median": float(np.median(values))}


def summarise(stats: dict[str, np.ndarray], n_keys: int, frames=None) -> dict:
    """Mean and median of `site_stats` over frames and queries, per head.

    Args:
        stats: `site_stats` output, arrays (B, H + 1, Q).
        n_keys: K, for the counts as a fraction of the keys.
        frames: optional (B,) bool mask or index array selecting frames (e.g. one task phase).

    Returns:
        {"heads": [per head], "head_mean": {...}}; each entry maps a statistic to
        {"mean", "median"}, counts also to {"fraction_mean", "fraction_median"} (k / K).
    """
    sel = slice(None) if frames is None else frames
    first = next(iter(stats.values()))[sel]
    if first.shape[0] == 0:
        raise ValueError("no frames selected")
    entries = []
    for h in range(first.shape[1]):
        entry = {}
        for name, arr in stats.items():
            v = arr[sel][:, h].ravel()
            entry[name] = _mean_median(v)
            if name[0] == "k":
                entry[name].update({f"fraction_{s}": x / n_keys for s, x in entry[name].items()})
        entries.append(entry)
    return {"heads": entries[:-1], "head_mean": entries[-1]}


def per_query(stats: dict[str, np.ndarray], frames=None) -> dict[str, list[float]]:
    """Head-mean statistics per query, averaged over frames: {stat: [Q floats]}.

    For the decoder's cross-attention the queries are the chunk steps 0..C-1.
    """
    sel = slice(None) if frames is None else frames
    return {name: arr[sel][:, -1].mean(0).tolist() for name, arr in stats.items()}


def uniform_baseline(n_keys: int, tokens: TokenIndex | None = None) -> dict:
    """The statistics of uniform attention over `n_keys` keys (the "few tokens" contrast)."""
    row = np.full(n_keys, 1.0 / n_keys)
    out = {}
    for m in MASS_LEVELS:
        k = int(tokens_for_mass(row, m))
        out[f"k{round(100 * m)}"] = {"count": k, "fraction": k / n_keys}
    out["entropy"] = 1.0
    if tokens is not None and n_keys == tokens.n_tokens:
        out.update({f"share_{g}": float(v) for g, v in shares(row, tokens).items()})
    return out


def residual_attention(weights) -> np.ndarray:
    """rownorm(0.5 * mean_h(A) + 0.5 * I): (B, H, N, N) -> (B, N, N)."""
    w = _rows(weights)
    if w.ndim != 4 or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"expected (B, H, N, N) self-attention weights, got shape {w.shape}")
    a = 0.5 * w.mean(1) + 0.5 * np.eye(w.shape[-1])
    return a / a.sum(-1, keepdims=True)


def encoder_rollout(layer_weights: Sequence) -> np.ndarray:
    """Residual-corrected rollout through the encoder layers, first to last.

    Args:
        layer_weights: [(B, H, N, N)] per encoder layer, in order.

    Returns:
        (B, N, N): row i is encoder output token i's attribution over the input tokens.
    """
    if not layer_weights:
        raise ValueError("rollout needs at least one encoder layer")
    rollout = None
    for w in layer_weights:
        a = residual_attention(w)
        rollout = a if rollout is None else a @ rollout  # later layers multiply on the left
    return rollout


def cross_rollout(cross_weights, enc_rollout: np.ndarray) -> np.ndarray:
    """Each chunk query's attribution over the encoder input tokens.

    Args:
        cross_weights: (B, H, C, N) one decoder layer's cross-attention.
        enc_rollout: (B, N, N) from `encoder_rollout`.

    Returns:
        (B, C, N) mean_h(cross) @ R; rows sum to 1.
    """
    x = _rows(cross_weights)
    if x.ndim != 4 or x.shape[-1] != enc_rollout.shape[-1]:
        raise ValueError(
            f"cross-attention {x.shape} does not match the encoder rollout {enc_rollout.shape}"
        )
    return x.mean(1) @ enc_rollout


def attribution_stats(attribution: np.ndarray, tokens: TokenIndex) -> dict[str, np.ndarray]:
    """`site_stats` of a rollout attribution (B, Q, N), as a single head (no head mean)."""
    stats = site_stats(np.asarray(attribution)[:, None], tokens)
    return {k: v[:, :1] for k, v in stats.items()}  # drop the (identical) head mean


def state_into_pixels(enc_rollout: np.ndarray, tokens: TokenIndex) -> np.ndarray:
    """(B,) mean attribution of the encoder's output pixel tokens to the state input token.

    The rollout side of "arm state is absorbed into pixel tokens": 0 when no attention flows from
    the state token to the pixels; L layers of uniform attention give (1 - 0.5^L) / N.
    """
    return np.asarray(enc_rollout)[:, tokens.pixels(), tokens.state].mean(-1)
