"""Transformer parts of ACT: attention, feed-forward, encoder/decoder layers, position tables.

The layers follow DETR/ACT (and LeRobot's port of it) operation for operation, so that weights
converted from a LeRobot checkpoint give the same numbers:

* position embeddings are added to queries and keys only, never to values;
* post-norm (`x = norm(x + sublayer(x))`) by default, pre-norm as an option;
* dropout on the attention weights, after the FFN activation and on every residual branch,
  as in PyTorch's `nn.TransformerEncoderLayer`;
* q/k/v/out projections are separate `Dense(D)` layers (`q_proj`, `k_proj`, `v_proj`,
  `out_proj`), so PyTorch's stacked `in_proj_weight` (3D, D) maps onto them row block by row
  block, and their init reproduces `xavier_uniform_` on that stacked (3D, D) matrix.

Axis names used in shape comments: B batch, Q query tokens, K key tokens, D model dim,
H heads, F feed-forward dim. All tensors are batch-first.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from act_jax import intermediates as im

# Xavier-uniform, as ACT/DETR apply to every >1-D transformer weight.
xavier_uniform = nn.initializers.xavier_uniform()
# PyTorch initialises q, k and v as ONE (3D, D) matrix; Xavier on that shape has limit
# sqrt(6 / (D + 3D)), which is variance_scaling(0.5, fan_avg) on each (D, D) block.
xavier_uniform_qkv = nn.initializers.variance_scaling(0.5, "fan_avg", "uniform")


# A sub-layer's hook point callback, `hook(kind, x) -> x`; its parent layer names the points.
Hook = Callable[[str, jax.Array], jax.Array] | None


def _no_hook(kind, x):
    return x


def sine_table_1d(length: int, dim: int) -> np.ndarray:
    """Fixed 1-D sinusoidal table of the VAE encoder (ACT's `pos_table`, LeRobot's buffer).

    Entry (p, j) is p / 10000^(2 floor(j/2) / dim), with sin on even and cos on odd j.

    Returns:
        (length, dim) float32 numpy array (a constant, not a parameter).
    """
    pos = np.arange(length, dtype=np.float64)[:, None]
    inv_freq = 10000.0 ** (2 * (np.arange(dim) // 2) / dim)
    table = pos / inv_freq  # (length, dim)
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return table.astype(np.float32)


def sine_table_2d(height: int, width: int, dim: int, temperature: float = 10000.0) -> np.ndarray:
    """DETR's normalised 2-D sine embedding for an (h, w) feature map, flattened row-major.

    Positions are 1-based (a cumsum of ones), divided by the last index (+1e-6) and scaled by
    2*pi. Each axis gets dim/2 channels of interleaved sin/cos; the result is cat(pos_y, pos_x).

    Returns:
        (height * width, dim) float32 numpy array.
    """
    if dim % 2:
        raise ValueError(f"dim_model must be even for the 2-D sine embedding, got {dim}")
    half = dim // 2
    eps, scale = 1e-6, 2 * math.pi
    y = np.arange(1, height + 1, dtype=np.float64)
    x = np.arange(1, width + 1, dtype=np.float64)
    y = y / (y[-1] + eps) * scale
    x = x / (x[-1] + eps) * scale
    inv_freq = temperature ** (2 * (np.arange(half) // 2) / half)

    def embed(p: np.ndarray) -> np.ndarray:  # (n,) -> (n, half), interleaved sin/cos
        e = p[:, None] / inv_freq
        return np.stack([np.sin(e[:, 0::2]), np.cos(e[:, 1::2])], axis=-1).reshape(len(p), half)

    pos_y = np.broadcast_to(embed(y)[:, None, :], (height, width, half))
    pos_x = np.broadcast_to(embed(x)[None, :, :], (height, width, half))
    return np.concatenate([pos_y, pos_x], axis=-1).reshape(height * width, dim).astype(np.float32)


class Attention(nn.Module):
    """Multi-head scaled dot-product attention that also returns its weights.

    Attributes:
        dim: model dim D (also the q/k/v/out width, as in `nn.MultiheadAttention`).
        n_heads: number of heads H; D must divide by H.
        dropout: dropout rate on the attention weights (rng "dropout", train only).
        dtype: compute dtype; softmax is always done in float32.
    """

    dim: int
    n_heads: int
    dropout: float = 0.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self, query, key, value, key_padding_mask=None, *, deterministic: bool, hook: Hook = None
    ):
        """Attends `query` tokens over `key`/`value` tokens.

        Args:
            query: (B, Q, D) queries (position embedding already added by the caller).
            key: (B, K, D) keys (position embedding already added by the caller).
            value: (B, K, D) values (never carry a position embedding).
            key_padding_mask: optional (B, K) bool, True for keys to ignore.
            deterministic: disables dropout.
            hook: `hook(kind, x) -> x`, called with "logits" (B, H, Q, K) float32 after the
                key-padding mask, "weights" (B, H, Q, K) after the softmax and "probs" after
                dropout (what multiplies V); the parent layer names and patches them.

        Returns:
            out (B, Q, D) and weights (B, H, Q, K) (after masking, before dropout).
        """
        hook = hook or _no_hook
        b, q_len, _ = query.shape
        k_len = key.shape[1]
        h, dh = self.n_heads, self.dim // self.n_heads

        def proj(name, x, init):
            y = nn.Dense(self.dim, dtype=self.dtype, kernel_init=init, name=name)(x)
            return y.reshape(b, x.shape[1], h, dh)  # (B, T, H, D/H)

        q = proj("q_proj", query, xavier_uniform_qkv)
        k = proj("k_proj", key, xavier_uniform_qkv)
        v = proj("v_proj", value, xavier_uniform_qkv)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(dh)
        if key_padding_mask is not None:
            keep = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, K)
            logits = jnp.where(keep, logits, jnp.finfo(jnp.float32).min)
        logits = hook("logits", logits)
        weights = hook("weights", jax.nn.softmax(logits, axis=-1))  # (B, H, Q, K)
        probs = hook("probs", nn.Dropout(self.dropout)(weights, deterministic=deterministic))
        out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(self.dtype), v)
        out = out.reshape(b, q_len, self.dim)
        out = nn.Dense(self.dim, dtype=self.dtype, kernel_init=xavier_uniform, name="out_proj")(out)
        assert weights.shape == (b, h, q_len, k_len)
        return out, weights


class FeedForward(nn.Module):
    """Position-wise MLP: linear1 -> ReLU -> dropout -> linear2 (PyTorch's layer FFN).

    The post-ReLU hidden activations go through the parent's `hook` ("hidden"), so the decoder
    layer names, records and patches them as `mlp_hidden`; they are returned too.
    """

    dim: int
    hidden_dim: int
    dropout: float = 0.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, *, deterministic: bool, hook: Hook = None):
        """Args: x (B, T, D); hook(kind, x) -> x, called with "hidden".

        Returns: out (B, T, D), hidden (B, T, F) after the ReLU (and the hook).
        """
        dense = dict(dtype=self.dtype, kernel_init=xavier_uniform)
        hidden = nn.relu(nn.Dense(self.hidden_dim, name="linear1", **dense)(x))
        hidden = (hook or _no_hook)("hidden", hidden)
        y = nn.Dropout(self.dropout)(hidden, deterministic=deterministic)
        return nn.Dense(self.dim, name="linear2", **dense)(y), hidden


def _with_pos(x, pos):
    return x if pos is None else x + pos.astype(x.dtype)


class EncoderLayer(nn.Module):
    """Self-attention + FFN block of the ACT encoder (also used by the VAE encoder).

    Hook points (under its own path, e.g. `encoder/layer_0/`): `attn_logits`, `attn_weights`,
    `attn_probs` (B, H, N, N) and `out` (B, N, D).
    """

    dim: int
    n_heads: int
    ffn_dim: int
    dropout: float
    pre_norm: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, pos=None, key_padding_mask=None, *, deterministic: bool):
        """Args: x (B, N, D); pos (B or 1, N, D) added to Q/K; key_padding_mask (B, N) bool."""
        drop = nn.Dropout(self.dropout, deterministic=deterministic)
        norm1 = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name="norm1")
        norm2 = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name="norm2")
        attn = Attention(self.dim, self.n_heads, self.dropout, self.dtype, name="self_attn")
        mlp = FeedForward(self.dim, self.ffn_dim, self.dropout, self.dtype, name="mlp")

        h = norm1(x) if self.pre_norm else x
        qk = _with_pos(h, pos)
        a, _ = attn(
            qk, qk, h, key_padding_mask, deterministic=deterministic, hook=im.hooks(self, "attn_")
        )
        x = x + drop(a)
        h = norm2(x) if self.pre_norm else norm1(x)
        x = x if self.pre_norm else h
        f, _ = mlp(h, deterministic=deterministic)
        x = x + drop(f)
        if not self.pre_norm:
            x = norm2(x)
        return im.hook(self, "out", x)


class DecoderLayer(nn.Module):
    """Self-attention over the action queries, cross-attention to the encoder, then the FFN.

    Hook points (under e.g. `decoder/layer_0/`): `self_attn_{logits,weights,probs}` (B, H, C, C),
    `cross_attn_{logits,weights,probs}` (B, H, C, N), `mlp_in` (B, C, D), `mlp_hidden`
    (B, C, F), `mlp_out` (B, C, D) and `out` (B, C, D).
    """

    dim: int
    n_heads: int
    ffn_dim: int
    dropout: float
    pre_norm: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, memory, query_pos, memory_pos, *, deterministic: bool):
        """Runs one decoder layer.

        Args:
            x: (B, C, D) decoder stream (zeros entering the first layer, as in ACT).
            memory: (B, N, D) encoder output.
            query_pos: (1, C, D) learned query position embedding (added to Q/K, Q).
            memory_pos: (B or 1, N, D) encoder position embedding (added to cross-attn keys).
            deterministic: disables dropout.

        Returns:
            (B, C, D)
        """
        drop = nn.Dropout(self.dropout, deterministic=deterministic)
        norms = [nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name=f"norm{i}") for i in (1, 2, 3)]
        self_attn = Attention(self.dim, self.n_heads, self.dropout, self.dtype, name="self_attn")
        cross_attn = Attention(self.dim, self.n_heads, self.dropout, self.dtype, name="cross_attn")
        mlp = FeedForward(self.dim, self.ffn_dim, self.dropout, self.dtype, name="mlp")

        # Pre-norm normalises each sub-layer's input; post-norm normalises after each residual.
        h = norms[0](x) if self.pre_norm else x
        qk = _with_pos(h, query_pos)
        a, _ = self_attn(qk, qk, h, deterministic=deterministic, hook=im.hooks(self, "self_attn_"))
        x = x + drop(a)
        if self.pre_norm:
            h = norms[1](x)
        else:
            x = h = norms[0](x)
        a, _ = cross_attn(
            _with_pos(h, query_pos),
            _with_pos(memory, memory_pos),
            memory,
            deterministic=deterministic,
            hook=im.hooks(self, "cross_attn_"),
        )
        x = x + drop(a)
        if self.pre_norm:
            h = norms[2](x)
        else:
            x = h = norms[1](x)
        h = im.hook(self, "mlp_in", h)
        f, _ = mlp(h, deterministic=deterministic, hook=im.hooks(self, "mlp_"))
        f = im.hook(self, "mlp_out", f)
        x = x + drop(f)
        if not self.pre_norm:
            x = norms[2](x)
        return im.hook(self, "out", x)


class Encoder(nn.Module):
    """The ACT transformer encoder over [latent, state, pixel tokens].

    Hook points `input_tokens` (B, N, D) and `out` (B, N, D); each layer's under `layer_{i}/`.
    (`encoder/pos_embed` is hooked by `ACT.encode`, because the decoder's cross-attention keys
    use it too.) A final LayerNorm (`norm`) exists only in pre-norm, as in DETR/LeRobot.
    """

    n_layers: int
    dim: int
    n_heads: int
    ffn_dim: int
    dropout: float
    pre_norm: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, tokens, pos, *, deterministic: bool):
        """Args: tokens (B, N, D); pos (1, N, D). Returns: memory (B, N, D)."""
        x = im.hook(self, "input_tokens", tokens)
        for i in range(self.n_layers):
            x = EncoderLayer(
                self.dim,
                self.n_heads,
                self.ffn_dim,
                self.dropout,
                self.pre_norm,
                self.dtype,
                name=f"layer_{i}",
            )(x, pos, deterministic=deterministic)
        if self.pre_norm:
            x = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name="norm")(x)
        return im.hook(self, "out", x)


class Decoder(nn.Module):
    """The ACT decoder: `chunk` zero queries with learned position embeddings (`query_pos_embed`).

    Hook point `out` (B, C, D), the normed output that `action_head` reads (the "action vector").
    """

    n_layers: int
    chunk: int
    dim: int
    n_heads: int
    ffn_dim: int
    dropout: float
    pre_norm: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, memory, memory_pos, *, deterministic: bool):
        """Args: memory (B, N, D); memory_pos (1, N, D). Returns: (B, C, D)."""
        query_pos = self.param(
            "query_pos_embed", nn.initializers.normal(1.0), (self.chunk, self.dim)
        )[None]  # (1, C, D); N(0, 1) like PyTorch's nn.Embedding
        x = jnp.zeros((memory.shape[0], self.chunk, self.dim), self.dtype)  # ACT's tgt = 0
        for i in range(self.n_layers):
            x = DecoderLayer(
                self.dim,
                self.n_heads,
                self.ffn_dim,
                self.dropout,
                self.pre_norm,
                self.dtype,
                name=f"layer_{i}",
            )(x, memory, query_pos, memory_pos, deterministic=deterministic)
        x = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name="norm")(x)
        return im.hook(self, "out", x)
