"""Run ACT with its hook points captured and patched: `run_with_cache`, `run_with_patches`.

TransformerLens's names and shapes of call, over the hook points of `act_jax.intermediates`
(the one list of names and shapes):

    out, cache = run_with_cache(model, variables, batch, ["decoder/out"])
    out, cache = run_with_patches(model, variables, batch, {"encoder/out": clean_memory},
                                  names=["actions"])
    out, _ = run_with_hooks(model, variables, batch, [("decoder/layer_0/mlp_hidden", fn)])
    policy = patched_policy(policy, ablate("encoder/input_tokens", [tokens.state]))

A patch is one of
* an array: the hook point's value becomes it (broadcast to the value's shape);
* a pytree callable, such as the patches of `interp.ablation`: its arrays are traced, so calls
  with new arrays of the same shapes reuse one compiled program;
* any other callable `value -> value` (same shape): static, compiled into the program; pass the
  same function object again to reuse the program;
* a list or tuple of the above, applied in order.

Everything is pure: patches go in as arguments of one jitted function, which enters
`act_jax.intermediates.patching` inside itself (see that module for why a trace-time context).
Captures record the value that flowed on, i.e. after the patch at that point.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from act_jax import intermediates as im

Patch = Any  # an array, a callable value -> value, or a list/tuple of them


def valid_names(model, batch_size: int = 1, *, train: bool = False) -> dict[str, tuple]:
    """Hook point name -> shape for `model` (an `ACT`) called on a batch of `batch_size`."""
    return im.expected(model.config, batch_size, train=train)


def broadcasts(shape: tuple, target: tuple) -> bool:
    """Whether an array of `shape` broadcasts to exactly `target`."""
    try:
        return np.broadcast_shapes(tuple(shape), tuple(target)) == tuple(target)
    except ValueError:
        return False


def _is_dynamic(patch) -> bool:
    """Arrays and pytrees of arrays are traced; anything else (a plain function) is static."""
    leaves = jax.tree_util.tree_leaves(patch)
    return all(isinstance(x, (jax.Array, np.ndarray, np.generic, int, float)) for x in leaves)


def check_patches(
    patches: Mapping[str, Patch], shapes: Mapping[str, tuple]
) -> dict[str, tuple[Any, ...]]:
    """Validates `patches` against the hook points `shapes`; returns {name: (patch, ...)}.

    Raises:
        KeyError: an unknown name, with the list of valid ones.
        ValueError: an array patch that does not broadcast to its hook point's shape, or a
            patch object whose `check` rejects the shape (e.g. a token out of range).
        TypeError: a patch that is neither an array nor callable.
    """
    im.select(shapes, list(patches))  # raises KeyError listing the valid names
    out = {}
    for name, given in patches.items():
        seq = tuple(given) if isinstance(given, (list, tuple)) else (given,)
        for p in seq:
            if hasattr(p, "check"):
                p.check(name, shapes[name])
            elif not callable(p):
                if not _is_dynamic(p):
                    raise TypeError(
                        f"patch of {name!r}: expected an array or a callable, got {p!r}"
                    )
                if not broadcasts(np.shape(p), shapes[name]):
                    raise ValueError(
                        f"patch of {name!r}: shape {np.shape(p)} does not broadcast to the hook "
                        f"point's shape {shapes[name]}"
                    )
        out[name] = seq
    return out


def apply_patched(model, variables, inputs, patches, names, *, train, rngs):
    """The traced body: `model.apply` under `patches` ({name: (patch, ...)}), capturing `names`.

    Not jitted itself: callers jit it (or call it inside a jitted function) so that the
    patches are traced with it. Returns (outputs, {name: array}).
    """
    args = (inputs["images"], inputs["state"], inputs.get("actions"), inputs.get("action_is_pad"))
    with im.patching(patches):
        if not names:
            return model.apply(variables, *args, train=train, rngs=rngs), {}
        out, state = model.apply(variables, *args, train=train, rngs=rngs, mutable=[im.COLLECTION])
    return out, im.select(im.flatten(state[im.COLLECTION]), names)


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("static", "names", "train"))
def _run(model, variables, inputs, rngs, dynamic, *, static, names, train):
    merged: dict[str, list] = {}
    for (name, i), p in [*dynamic.items(), *((k[:2], k[2]) for k in static)]:
        merged.setdefault(name, []).append((i, p))
    patches = {n: tuple(p for _, p in sorted(ps, key=lambda ip: ip[0])) for n, ps in merged.items()}
    return apply_patched(model, variables, inputs, patches, names, train=train, rngs=rngs)


def batch_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    if "images" not in batch or "state" not in batch:
        raise KeyError(f"batch needs 'images' and 'state', got keys {sorted(batch)}")
    return {k: batch.get(k) for k in ("images", "state", "actions", "action_is_pad")}


def run_with_patches(
    model,
    variables: Mapping,
    batch: Mapping[str, Any],
    patches: Mapping[str, Patch] | None = None,
    names: Iterable[str] | str | None = None,
    *,
    train: bool = False,
    rngs: Mapping | None = None,
) -> tuple[dict, dict[str, Any]]:
    """Runs `model` on `batch` with `patches` active; pure and jitted once per patch structure.

    Args:
        model: an `act_jax.model.ACT`.
        variables: {"params", "batch_stats"}.
        batch: {"images": {camera: (B, H, W, 3)}, "state": (B, S)} (and "actions",
            "action_is_pad" for `train=True` with the VAE); other keys are ignored.
        patches: {hook point name: patch} (see the module docstring); None or {} for none.
        names: hook points to capture (after their patches); None captures nothing.
        train: training mode (dropout, VAE posterior); needs `rngs` then.
        rngs: e.g. {"dropout": key, "latent": key}.

    Returns:
        (outputs, cache): the model's {"actions" (B, C, A), "mu", "logvar"} and {name: array}.

    Raises:
        KeyError: an unknown name in `patches` or `names`, listing the valid ones.
    """
    inputs = batch_inputs(batch)
    shapes = valid_names(model, np.shape(inputs["state"])[0], train=train)
    names = () if names is None else tuple([names] if isinstance(names, str) else names)
    im.select(shapes, names)
    dynamic, static = {}, []
    for name, seq in check_patches(patches or {}, shapes).items():
        for i, p in enumerate(seq):
            if _is_dynamic(p):
                dynamic[(name, i)] = p
            else:
                static.append((name, i, p))
    return _run(
        model, variables, inputs, rngs, dynamic, static=tuple(static), names=names, train=train
    )


def run_with_cache(
    model,
    variables: Mapping,
    batch: Mapping[str, Any],
    names: Iterable[str] | str | None = None,
    *,
    patches: Mapping[str, Patch] | None = None,
    train: bool = False,
    rngs: Mapping | None = None,
) -> tuple[dict, dict[str, Any]]:
    """(outputs, cache) of `names` (None: every hook point), optionally under `patches`."""
    if names is None:
        names = list(valid_names(model, np.shape(batch["state"])[0], train=train))
    return run_with_patches(model, variables, batch, patches, names, train=train, rngs=rngs)


def run_with_hooks(
    model,
    variables: Mapping,
    batch: Mapping[str, Any],
    fwd_hooks: Sequence[tuple[str, Callable]],
    names: Iterable[str] | str | None = None,
    **kwargs,
) -> tuple[dict, dict[str, Any]]:
    """TransformerLens's form: `fwd_hooks` [(name, fn value -> value)], applied in order."""
    patches: dict[str, list] = {}
    for name, fn in fwd_hooks:
        patches.setdefault(name, []).append(fn)
    return run_with_patches(model, variables, batch, patches, names, **kwargs)


class _PatchedModel:
    """Stands in for an `ACT` inside a `Policy`: its `apply` runs under fixed patches."""

    def __init__(self, model, patches: Mapping[str, Patch]):
        self.model = model
        self.patches = check_patches(patches, valid_names(model, 1))

    def apply(self, variables, *args, **kwargs):
        with im.patching(self.patches):  # entered while the policy's jitted predict traces
            return self.model.apply(variables, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.model, name)


def patched_policy(policy, patches: Mapping[str, Patch]):
    """A copy of an `act_jax.policy.Policy` whose every chunk is predicted under `patches`.

    It shares the weights, normalisation and config, and has the whole Policy API
    (`predict_chunk`, `warmup`, `as_controller`, `retraces_after_warmup`), so sim rollouts run
    with the ablation active, e.g. `run_rollouts(lambda: p.as_controller(make_executor(...)))`.
    The policy runs one observation at a time: patches are checked against batch size 1.
    """
    from act_jax.policy import Policy

    model = _PatchedModel(policy.model, patches)
    return Policy(model, policy.variables, policy.config, policy.norm_stats, step=policy.step)


def patched_predict(policy, patches: Mapping[str, Patch]) -> Callable[[dict], np.ndarray]:
    """`observation -> (chunk_size, action_dim)` in robot units, predicted under `patches`."""
    return patched_policy(policy, patches).predict_chunk
