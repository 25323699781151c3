"""Patches that ablate tokens and knock keys out of one attention site, for `interp.hooks`.

    t = TokenIndex.for_config(model.config)
    ablate("encoder/input_tokens", [t.state])                       # zero the state token
    ablate("encoder/layer_0/out", t.camera("top"), "mean", reference=cache["encoder/layer_0/out"])
    knock_out_keys(["decoder/layer_0/cross_attn"], [t.state])        # state unseen by the decoder
    knock_out_keys(attention_sites(model.config, "encoder"), [t.state])

Each helper returns `{hook point name: patch}`, ready for `run_with_patches` (merge several with
`{**a, **b}`, or give a name a list of patches). The patches are flax struct dataclasses: their
token masks and reference arrays are pytree leaves, traced like any argument, so a sweep over
tokens or reference sets runs one compiled program.

Tokens are positions along axis 1 of a (B, T, D) hook point: encoder tokens for `encoder/*`
(address them with `interp.tokens.TokenIndex`), chunk steps for `decoder/*` and `actions`. They
may be given as indices or as a (T,) bool mask; `tokens=None` means the whole value, the only
choice for hook points of another rank (backbone maps, attention maps, the VAE's mu/logvar).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from interp.hooks import broadcasts

MODES = ("zero", "mean", "resample")
_ATTN = ("attn", "self_attn", "cross_attn")  # attention sites: <site>_{logits,weights,probs}


def _token_mask(tokens, length: int):
    """(T,) bool mask from indices or a mask; a traced mask passes through."""
    tokens = jnp.asarray(tokens)
    if tokens.dtype == jnp.bool_:
        return tokens
    return jnp.zeros(length, bool).at[tokens].set(True)


def _check_tokens(name: str, tokens, length: int, what: str) -> None:
    """Raises ValueError for a mask of the wrong length or an index outside 0..length-1."""
    if tokens is None:
        return
    shape, dtype = np.shape(tokens), getattr(tokens, "dtype", np.asarray(tokens).dtype)
    if dtype == np.bool_:
        if shape[-1:] != (length,):
            raise ValueError(f"{name}: a token mask needs {length} {what}, got shape {shape}")
        return
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"{name}: tokens must be int indices or a bool mask, got dtype {dtype}")
    if (
        isinstance(tokens, np.ndarray)
        and tokens.size
        and not (0 <= tokens.min() and tokens.max() < length)
    ):
        raise ValueError(f"{name}: tokens {tokens.tolist()} outside 0..{length - 1} ({what})")


@struct.dataclass
class TokenPatch:
    """value[:, tokens] <- source[:, tokens] (or the whole value when `tokens` is None).

    Attributes:
        tokens: (k,) int indices or (T,) bool mask on axis 1, or None for the whole value.
        source: replacement broadcast to the value's shape ("replace"), or (R, ...) reference
            activations of which each batch row takes a random one ("resample").
        key: jax random key of "resample"; None otherwise.
        mode: "replace" or "resample" (static).
    """

    tokens: Any
    source: Any
    key: Any = None
    mode: str = struct.field(pytree_node=False, default="replace")

    def check(self, name: str, shape: tuple) -> None:
        """Called by `run_with_patches` with the hook point's shape, before tracing."""
        if self.tokens is not None and len(shape) != 3:
            raise ValueError(
                f"{name} has shape {shape}: tokens address axis 1 of (B, T, D) hook points; "
                "use tokens=None (the whole value) here"
            )
        if self.tokens is not None:
            _check_tokens(name, self.tokens, shape[1], "positions on axis 1")
        want = tuple(shape[1:])
        src = np.shape(self.source)
        ok = src[1:] == want if self.mode == "resample" else broadcasts(src, shape)
        if not ok:
            raise ValueError(f"{name}: reference of shape {src} does not fit the value {shape}")

    def __call__(self, value):
        if self.mode == "resample":
            rows = jax.random.randint(self.key, (value.shape[0],), 0, self.source.shape[0])
            new = jnp.asarray(self.source)[rows]
        else:
            new = jnp.broadcast_to(jnp.asarray(self.source, value.dtype), value.shape)
        if self.tokens is None:
            return new.astype(value.dtype)
        keep = _token_mask(self.tokens, value.shape[1])
        keep = keep.reshape((1, -1) + (1,) * (value.ndim - 2))
        return jnp.where(keep, new.astype(value.dtype), value)


@struct.dataclass
class KeyKnockout:
    """Attention logits (B, H, Q, K) <- float32's most negative value at the `keys` columns.

    Exactly what the key-padding mask does, so the knocked-out keys get zero weight at this site
    only; the token still exists, is a query, and is seen at every other site. (If every key of
    a row is knocked out, the softmax of that row is uniform, as with a fully padded row.)
    """

    keys: Any  # (k,) int indices or (K,) bool mask
    queries: Any = None  # the query rows it applies to (indices or (Q,) mask); None: all

    def check(self, name: str, shape: tuple) -> None:
        if not name.endswith("_logits") or len(shape) != 4:
            raise ValueError(f"{name}: key knock-out applies to attention logits (*_logits)")
        _check_tokens(name, self.keys, shape[-1], "keys")
        if self.queries is not None:
            _check_tokens(name, self.queries, shape[-2], "queries")

    def __call__(self, logits):
        drop = _token_mask(self.keys, logits.shape[-1])[None, None, None, :]
        if self.queries is not None:
            drop = drop & _token_mask(self.queries, logits.shape[-2])[None, None, :, None]
        return jnp.where(drop, jnp.finfo(logits.dtype).min, logits)


def _as_tokens(tokens):
    if tokens is None or isinstance(tokens, jax.Array):
        return tokens
    return np.atleast_1d(np.asarray(tokens))


def ablate(
    name: str,
    tokens: Sequence[int] | np.ndarray | None = None,
    mode: str = "zero",
    *,
    reference=None,
    key: jax.Array | None = None,
) -> dict[str, TokenPatch]:
    """A patch that ablates `tokens` of hook point `name`.

    Args:
        name: a hook point (checked when the patch is used).
        tokens: positions on axis 1 (indices or bool mask), None for the whole value.
        mode: "zero" sets them to 0; "mean" to the mean over `reference`'s examples; "resample"
            gives each batch row the activation of one example of `reference` drawn with `key`
            (the same example for all of a row's tokens).
        reference: (R, ...) activations of `name` captured on reference inputs (e.g. the
            `run_with_cache` of a batch of real frames), needed by "mean" and "resample".
        key: jax random key, needed by "resample".

    Returns:
        {name: TokenPatch}.
    """
    if mode not in MODES:
        raise ValueError(f"ablate: unknown mode {mode!r}; choose one of {list(MODES)}")
    if mode != "zero" and reference is None:
        raise ValueError(f"ablate({name!r}, mode={mode!r}) needs `reference` activations")
    if mode == "resample" and key is None:
        raise ValueError(f"ablate({name!r}, mode='resample') needs a random `key`")
    tokens = _as_tokens(tokens)
    if mode == "zero":
        return {name: TokenPatch(tokens, np.zeros((), np.float32))}
    reference = jnp.asarray(reference)
    if mode == "mean":
        return {name: TokenPatch(tokens, reference.mean(axis=0, keepdims=True))}
    return {name: TokenPatch(tokens, reference, key, mode="resample")}


def attention_sites(config, which: str = "all") -> list[str]:
    """The attention-logit hook points of an `ACTConfig`: "encoder", "cross", "decoder_self",
    "vae" or "all" (the encoder tokens are keys at "encoder" and "cross" sites only)."""
    groups = {
        "encoder": [f"encoder/layer_{i}/attn" for i in range(config.n_encoder_layers)],
        "cross": [f"decoder/layer_{i}/cross_attn" for i in range(config.n_decoder_layers)],
        "decoder_self": [f"decoder/layer_{i}/self_attn" for i in range(config.n_decoder_layers)],
        "vae": [f"vae_encoder/layer_{i}/attn" for i in range(config.n_vae_encoder_layers)],
    }
    groups["all"] = [s for g in ("encoder", "cross", "decoder_self", "vae") for s in groups[g]]
    if which not in groups:
        raise ValueError(f"attention_sites: unknown group {which!r}; choose one of {list(groups)}")
    return [f"{s}_logits" for s in groups[which]]


def knock_out_keys(
    sites: Iterable[str] | str,
    tokens: Sequence[int] | np.ndarray,
    *,
    queries: Sequence[int] | np.ndarray | None = None,
) -> dict[str, KeyKnockout]:
    """Removes `tokens` as keys at each attention site in `sites`, and nowhere else.

    Args:
        sites: attention-logit hook points, e.g. "decoder/layer_0/cross_attn_logits"; the
            "_logits" suffix may be left off ("encoder/layer_1/attn").
        tokens: key positions (encoder tokens for encoder and cross sites, via `TokenIndex`).
        queries: only these query rows lose the keys (e.g. the pixel tokens of encoder
            self-attention, so that the state token still reads itself); None: every query.

    Returns:
        {site logits name: KeyKnockout}.
    """
    sites = [sites] if isinstance(sites, str) else list(sites)
    names = [s if s.endswith("_logits") else f"{s}_logits" for s in sites]
    bad = [s for s in names if s.rsplit("/", 1)[-1].removesuffix("_logits") not in _ATTN]
    if bad:
        raise ValueError(
            f"knock_out_keys: {bad} are not attention sites; sites end in "
            f"{sorted(f'{a}_logits' for a in _ATTN)}"
        )
    q = None if queries is None else _as_tokens(queries)
    return {n: KeyKnockout(_as_tokens(tokens), q) for n in names}
