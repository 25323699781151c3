"""The one list of ACT's named intermediates (hook points an analyst can capture or patch).

Every name is the "/"-joined path of a value in the flax "intermediates" collection, so the
names here, the hook points in the model and what `run_with_cache` returns can never disagree:
the model passes each value through `hook` below, and tests check that the captured set equals
`expected`.

A hook point records its value (`sow`) and, while a patch for its name is active (`patching`),
replaces it first; the replaced value is what flows on through the network and what is recorded.

Capturing and patching cost nothing unless asked for: `Module.sow` is a no-op when the
"intermediates" collection is not mutable, and with no patch active a hook returns its input
unchanged, so a plain `model.apply(variables, ...)` traces to the same program as without hooks.

Names (B batch, N encoder tokens, C chunk, D dim, H heads, F ffn dim, h x w feature map):

    backbone/<camera>                       (B, h, w, C_backbone)  ResNet layer4 feature map
    encoder/input_tokens                    (B, N, D)  [latent, state, cam0 pixels row-major, ...]
    encoder/pos_embed                       (1, N, D)  added to encoder Q/K and cross-attn keys
    encoder/layer_{i}/attn_logits           (B, H, N, N)  float32
    encoder/layer_{i}/attn_weights          (B, H, N, N)
    encoder/layer_{i}/attn_probs            (B, H, N, N)
    encoder/layer_{i}/out                   (B, N, D)
    encoder/out                             (B, N, D)  memory the decoder attends to
    decoder/layer_{i}/self_attn_logits      (B, H, C, C)  float32
    decoder/layer_{i}/self_attn_weights     (B, H, C, C)
    decoder/layer_{i}/self_attn_probs       (B, H, C, C)
    decoder/layer_{i}/cross_attn_logits     (B, H, C, N)  float32
    decoder/layer_{i}/cross_attn_weights    (B, H, C, N)
    decoder/layer_{i}/cross_attn_probs      (B, H, C, N)
    decoder/layer_{i}/mlp_in                (B, C, D)
    decoder/layer_{i}/mlp_hidden            (B, C, F)  after the ReLU
    decoder/layer_{i}/mlp_out               (B, C, D)
    decoder/layer_{i}/out                   (B, C, D)
    decoder/out                             (B, C, D)  the "action vector" fed to action_head
    actions                                 (B, C, action_dim)
    vae/mu, vae/logvar                      (B, latent)   training with the VAE only
    vae_encoder/layer_{i}/attn_logits       (B, H, 2 + C, 2 + C)   training with the VAE only
    vae_encoder/layer_{i}/attn_weights      (B, H, 2 + C, 2 + C)   training with the VAE only
    vae_encoder/layer_{i}/attn_probs        (B, H, 2 + C, 2 + C)   training with the VAE only
    vae_encoder/layer_{i}/out               (B, 2 + C, D)          training with the VAE only

Attention, per head (queries x keys): `*_logits` are q.k / sqrt(D/H) after the key-padding mask
(masked keys hold float32's most negative value, so they get exactly zero weight) and before the
softmax; `*_weights` are the softmax, before attention dropout; `*_probs` are after dropout
(scaled by 1 / (1 - rate) where kept) and are what multiplies V. In inference `*_probs` equals
`*_weights`. A patch of the logits (e.g. a key knock-out) flows through the softmax; a patch of
the weights flows through dropout.

Why patches are a trace-time context (`patching`), not a "patches" variable collection or
`nn.intercept_methods`: a patch may be a function (zero a token, knock out a key), which no
variable collection can hold; and several hook points (logits, MLP hidden) sit inside a module
method, where method interception cannot reach without an extra identity submodule per name.
The context is read only while JAX traces, so a patch becomes part of the traced program: its
arrays as tracers of the traced function's arguments, its functions as static Python. That keeps
a patched run pure and jittable, provided the context is entered *inside* the function that is
jitted (as `interp.hooks.run_with_patches` does), so that the jit cache key (argument shapes
and the static patch structure) covers the patches; a jitted function entered from outside a
`patching` block would keep whatever it was first traced with. Flax's own `intercept_methods` is
a trace-time context with the same rule.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

COLLECTION = "intermediates"
ATTENTION_KINDS = ("logits", "weights", "probs")  # the three hook points of every attention

# name -> patches applied in order; set only while a patched function is being traced.
_ACTIVE: contextvars.ContextVar[Mapping[str, Sequence] | None] = contextvars.ContextVar(
    "act_jax_patches", default=None
)


def sow(module: nn.Module, name: str, value) -> None:
    """Stores `value` under `name` in the module's scope; a no-op unless capturing.

    Keeps the single latest value (not flax's default tuple), so a captured entry is an array.
    """
    module.sow(COLLECTION, name, value, init_fn=lambda: None, reduce_fn=lambda _, new: new)


@contextlib.contextmanager
def patching(patches: Mapping[str, Sequence[Any]]) -> Iterator[None]:
    """While active (at trace time), hook point `name` applies `patches[name]` in order.

    A patch is an array (broadcast to the value's shape: the value becomes it) or a callable
    `value -> new value` of the same shape. Names are not checked here (the model cannot know
    which hook points a call reaches); `interp.hooks.run_with_patches` checks them against
    `expected`. Enter it inside the function that is jitted (see the module docstring).
    """
    token = _ACTIVE.set({name: tuple(ps) for name, ps in patches.items()})
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def _full_name(module: nn.Module, name: str) -> str:
    return "/".join((*module.path, name))


def any_patched(module: nn.Module, names: Iterable[str]) -> bool:
    """Whether a patch is active for any of the hook points `names` of `module`."""
    active = _ACTIVE.get()
    return bool(active) and any(_full_name(module, n) in active for n in names)


def hook(module: nn.Module, name: str, value):
    """The hook point `name` of `module`: applies any active patch, records, returns the value."""
    active = _ACTIVE.get()
    if active:
        full = _full_name(module, name)
        for patch in active.get(full, ()):
            value = _apply(full, patch, value)
    sow(module, name, value)
    return value


def hooks(module: nn.Module, prefix: str) -> Callable[[str, Any], Any]:
    """`kind, value -> value` for a sub-layer: hook point `prefix + kind` of `module`."""
    return lambda kind, value: hook(module, prefix + kind, value)


def _apply(name: str, patch, value):
    if callable(patch):
        new = patch(value)
        if getattr(new, "shape", None) != value.shape:
            raise ValueError(
                f"patch of {name!r} returned shape {getattr(new, 'shape', type(new))}, "
                f"expected {value.shape}"
            )
    else:
        new = jnp.broadcast_to(jnp.asarray(patch), value.shape)
    return new.astype(value.dtype)


def expected(config: Any, batch_size: int, *, train: bool = False) -> dict[str, tuple]:
    """Documented name -> shape for a model built from `config` (an `ACTConfig`).

    Args:
        config: needs cameras, image_size, backbone_width, dim_model, n_heads, dim_feedforward,
            n_encoder_layers, n_decoder_layers, n_vae_encoder_layers, chunk_size, action_dim,
            latent_dim, use_vae.
        batch_size: B.
        train: with `train and use_vae` the VAE entries are included.
    """
    from act_jax.resnet import feature_shape  # late: resnet imports nothing from here

    b, d, heads, c = batch_size, config.dim_model, config.n_heads, config.chunk_size
    fh, fw, fc = feature_shape(config.image_size, config.backbone_width)
    n = 2 + len(config.cameras) * fh * fw
    shapes: dict[str, tuple] = {f"backbone/{cam}": (b, fh, fw, fc) for cam in config.cameras}
    shapes["encoder/input_tokens"] = (b, n, d)
    shapes["encoder/pos_embed"] = (1, n, d)
    for i in range(config.n_encoder_layers):
        for kind in ATTENTION_KINDS:
            shapes[f"encoder/layer_{i}/attn_{kind}"] = (b, heads, n, n)
        shapes[f"encoder/layer_{i}/out"] = (b, n, d)
    shapes["encoder/out"] = (b, n, d)
    for i in range(config.n_decoder_layers):
        p = f"decoder/layer_{i}"
        for kind in ATTENTION_KINDS:
            shapes[f"{p}/self_attn_{kind}"] = (b, heads, c, c)
            shapes[f"{p}/cross_attn_{kind}"] = (b, heads, c, n)
        shapes[f"{p}/mlp_in"] = (b, c, d)
        shapes[f"{p}/mlp_hidden"] = (b, c, config.dim_feedforward)
        shapes[f"{p}/mlp_out"] = (b, c, d)
        shapes[f"{p}/out"] = (b, c, d)
    shapes["decoder/out"] = (b, c, d)
    shapes["actions"] = (b, c, config.action_dim)
    if train and config.use_vae:
        shapes["vae/mu"] = (b, config.latent_dim)
        shapes["vae/logvar"] = (b, config.latent_dim)
        for i in range(config.n_vae_encoder_layers):
            for kind in ATTENTION_KINDS:
                shapes[f"vae_encoder/layer_{i}/attn_{kind}"] = (b, heads, 2 + c, 2 + c)
            shapes[f"vae_encoder/layer_{i}/out"] = (b, 2 + c, d)
    return shapes


def flatten(collection: Mapping) -> dict[str, Any]:
    """Nested "intermediates" collection -> {"a/b/c": array}."""
    return traverse_util.flatten_dict(dict(collection), sep="/")


def select(cache: Mapping[str, Any], names: Iterable[str] | None) -> dict[str, Any]:
    """Picks `names` from a flat cache; an unknown name raises KeyError listing the valid ones."""
    if names is None:
        return dict(cache)
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in cache]
    if unknown:
        hint = ""
        if any(n.startswith("vae") for n in unknown):
            hint = " (vae/* and vae_encoder/* exist only with train=True and use_vae)"
        raise KeyError(
            f"unknown intermediate name(s) {unknown}{hint}; valid names for this model and "
            "call: " + ", ".join(sorted(cache))
        )
    return {n: cache[n] for n in names}


def run_with_cache(
    model: nn.Module,
    variables: Mapping,
    batch: Mapping[str, Any],
    names: Iterable[str] | None = None,
    *,
    train: bool = False,
    rngs: Mapping | None = None,
) -> dict[str, Any]:
    """Runs `model` on `batch` (jitted) and returns the requested intermediates by name.

    Args:
        model: an `ACT` module.
        variables: {"params": ..., "batch_stats": ...}.
        batch: {"images": {camera: (B, H, W, 3)}, "state": (B, S)} and, for `train=True` with the
            VAE, "actions" (B, C, A) and "action_is_pad" (B, C). Other keys are ignored.
        names: names to return (see the module docstring); None returns all of them.
        train: run in training mode (dropout, VAE posterior); needs `rngs` then.
        rngs: e.g. {"dropout": key, "latent": key} for `train=True`.

    Returns:
        {name: array}. Intermediates not requested are dead code to XLA and never computed
        beyond what the requested ones need.

    Raises:
        KeyError: a requested name does not exist, with the list of valid names.
    """
    names = None if names is None else tuple([names] if isinstance(names, str) else names)
    inputs = {k: batch.get(k) for k in ("images", "state", "actions", "action_is_pad")}
    return _capture(model, variables, inputs, rngs, names=names, train=train)


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("names", "train"))
def _capture(model, variables, inputs, rngs, *, names, train):
    _, state = model.apply(
        variables,
        inputs["images"],
        inputs["state"],
        inputs["actions"],
        inputs["action_is_pad"],
        train=train,
        rngs=rngs,
        mutable=[COLLECTION],
    )
    return select(flatten(state[COLLECTION]), names)
