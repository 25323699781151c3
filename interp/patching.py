"""Activation patching between a clean and a corrupt input, per site and token, both ways.

    t = TokenIndex.for_config(model.config)
    sweep = patch_sweep(model, variables, clean, corrupt,
                        sites=["encoder/input_tokens", "encoder/layer_0/out", "encoder/out"],
                        tokens=[t.latent, t.state, t.camera("top"), t.camera("lateral")])
    sweep.denoising  # (sites, token groups)

Corrupt inputs should be real frames that differ in one factor (the cube elsewhere), not noise
(Zhang and Nanda 2023, arXiv 2309.16042): the effect then measures how much of that factor's
influence on the actions passes through a (site, token).

The metric. With a_clean and a_corrupt the predicted action chunks (B, C, A, in the model's
normalised action units) and d = a_clean - a_corrupt, pooled over the batch:

    denoising[s, g] = <a_patched - a_corrupt, d> / <d, d>,
        a_patched: the corrupt input run with the clean activation patched in at (s, g);
    noising[s, g]   = <a_clean - a_patched, d> / <d, d>,
        a_patched: the clean input run with the corrupt activation patched in at (s, g).

That is the projection of the patch's displacement onto the clean-minus-corrupt direction, as a
fraction of its length: 1 when the patch moves the actions all the way (denoising: back to clean;
noising: over to corrupt), 0 when it does not move them along d (a move orthogonal to d scores
0). Both are reported because they differ when a site is necessary but not sufficient (Heimersheim
and Nanda 2024, arXiv 2404.15255). When clean and corrupt give the same actions (<d, d> = 0) the
fraction is undefined and every entry is NaN (never a division by zero).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from act_jax import intermediates as im
from interp.ablation import TokenPatch
from interp.hooks import apply_patched, batch_inputs, run_with_cache, valid_names


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """Effects of `patch_sweep` (see the module docstring for the metric).

    Attributes:
        denoising: (S, G) fraction restored when clean activations enter the corrupt run.
        noising: (S, G) fraction reproduced when corrupt activations enter the clean run.
        sites: the S hook point names.
        tokens: the G token groups (tuples of positions on axis 1).
        change: <d, d>, the squared size of the clean-to-corrupt change (0: effects are NaN).
    """

    denoising: np.ndarray
    noising: np.ndarray
    sites: tuple[str, ...]
    tokens: tuple[tuple[int, ...], ...]
    change: float


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("site",))
def _patched_actions(model, variables, inputs, source, masks, *, site):
    """(G, B, C, A) actions of `inputs` with `source` (B, T, D) patched in at each mask (T,)."""

    def one(mask):
        patches = {site: (TokenPatch(mask, source),)}
        out, _ = apply_patched(model, variables, inputs, patches, (), train=False, rngs=None)
        return out["actions"]

    return jax.lax.map(one, masks)  # one program, one token group at a time (bounded memory)


def _groups(tokens, length: int) -> tuple[tuple[int, ...], ...]:
    if tokens is None:
        return tuple((i,) for i in range(length))
    groups = tuple(tuple(int(i) for i in np.atleast_1d(g)) for g in tokens)
    for g in groups:
        if not g or min(g) < 0 or max(g) >= length:
            raise ValueError(
                f"patch_sweep: token group {list(g)} is empty or outside 0..{length - 1}"
            )
    return groups


def _fraction(num: np.ndarray, den: float) -> np.ndarray:
    return np.full(num.shape, np.nan) if den == 0 else num / den


def patch_sweep(
    model,
    variables: Mapping,
    clean: Mapping[str, Any],
    corrupt: Mapping[str, Any],
    sites: Sequence[str],
    tokens: Sequence[int | Sequence[int]] | None = None,
) -> SweepResult:
    """Patches every (site, token group) clean -> corrupt and corrupt -> clean.

    Args:
        model: an `act_jax.model.ACT` (run in inference mode).
        variables: {"params", "batch_stats"}.
        clean, corrupt: batches {"images", "state"} of the same batch size B; row b of one is
            paired with row b of the other.
        sites: (B, T, D) hook points, e.g. "encoder/input_tokens", "encoder/layer_{i}/out",
            "encoder/out", "decoder/layer_{i}/out" (whose positions are chunk steps).
        tokens: token groups (an index, or a sequence of indices patched together), e.g. from
            `interp.tokens.TokenIndex`; None: each position of axis 1 on its own (all sites must
            then have the same T).

    Returns:
        A `SweepResult` with (S, G) `denoising` and `noising` effects.

    Raises:
        KeyError: an unknown site, listing the valid names.
        ValueError: a site without a token axis, mismatched batches, or a token out of range.
    """
    sites = tuple(sites)
    b = np.shape(clean["state"])[0]
    if np.shape(corrupt["state"])[0] != b:
        raise ValueError(f"clean has batch {b}, corrupt {np.shape(corrupt['state'])[0]}")
    shapes = im.select(valid_names(model, b), sites)
    not_tokens = {s: shp for s, shp in shapes.items() if len(shp) != 3}
    if not_tokens:
        raise ValueError(f"patch_sweep sites need a (B, T, D) shape; got {not_tokens}")
    lengths = {shp[1] for shp in shapes.values()}
    if tokens is None and len(lengths) > 1:
        raise ValueError(f"sites have different token counts {sorted(lengths)}; pass `tokens`")
    groups = _groups(tokens, min(lengths))
    clean_out, clean_cache = run_with_cache(model, variables, clean, sites)
    corrupt_out, corrupt_cache = run_with_cache(model, variables, corrupt, sites)
    a_clean = np.asarray(clean_out["actions"], np.float64)
    a_corrupt = np.asarray(corrupt_out["actions"], np.float64)
    d = a_clean - a_corrupt
    den = float(np.sum(d * d))
    denoising, noising = [], []
    for site in sites:
        masks = np.zeros((len(groups), shapes[site][1]), bool)
        for g, group in enumerate(groups):
            masks[g, list(group)] = True
        into_corrupt = _patched_actions(
            model,
            variables,
            batch_inputs(corrupt),
            clean_cache[site],
            jnp.asarray(masks),
            site=site,
        )
        into_clean = _patched_actions(
            model,
            variables,
            batch_inputs(clean),
            corrupt_cache[site],
            jnp.asarray(masks),
            site=site,
        )
        into_corrupt = np.asarray(into_corrupt, np.float64)  # (G, B, C, A)
        into_clean = np.asarray(into_clean, np.float64)
        denoising.append(_fraction(np.einsum("gbca,bca->g", into_corrupt - a_corrupt, d), den))
        noising.append(_fraction(np.einsum("gbca,bca->g", a_clean - into_clean, d), den))
    return SweepResult(np.stack(denoising), np.stack(noising), sites, groups, den)
