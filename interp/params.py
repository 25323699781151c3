"""Pure functions over ACT's parameter tree: name, select, compare, and say what is trainable.

Parameters are addressed by their "/"-joined path, e.g. `decoder/layer_0/mlp/linear1/kernel`
(stable and semantic, see DESIGN.md). Selections are regular expressions searched in that path,
the same convention as `config.train.frozen`, so a selection made here can be handed to the
trainer unchanged:

    frozen = freeze_all_but(PRESETS["decoder_mlp"])      # -> config.train.frozen
    report = compare(base_params, tuned_params)          # which tensors moved, and how much

Nothing here mutates its inputs or touches model code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from flax import traverse_util

# Trainable sets for fine-tuning experiments (regexes over parameter paths). "decoder_mlp" is
# the original project's MLP-only fine-tune: the decoder FFN (linear1, linear2), the LayerNorm
# after it (norm3, post-norm) and the action head; 6.4% of the seed-size model's parameters.
PRESETS: dict[str, tuple[str, ...]] = {
    "decoder_mlp": (r"^decoder/layer_\d+/(mlp|norm3)/", r"^action_head/"),
    "decoder_cross_attn": (r"^decoder/layer_\d+/(cross_attn|norm2)/", r"^action_head/"),
    "decoder": (r"^decoder/", r"^action_head/"),
    "action_head": (r"^action_head/",),
    # The size-matched control for decoder_mlp: an MLP of the same shape (and the LayerNorm
    # after it) in the first encoder layer, upstream of everything the decoder reads, plus the
    # action head. Equal parameter counts whenever the decoder has one layer (every config here).
    "encoder_mlp": (r"^encoder/layer_0/(mlp|norm2)/", r"^action_head/"),
    "all": (r".",),
}


def flatten(params: Mapping) -> dict[str, np.ndarray]:
    """{"a/b/c": leaf} for a nested param dict (leaves are left as they are)."""
    return {"/".join(k): v for k, v in traverse_util.flatten_dict(dict(params)).items()}


def unflatten(flat: Mapping[str, object]) -> dict:
    """Inverse of `flatten`."""
    return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def resolve(selection: str | Sequence[str]) -> tuple[str, ...]:
    """A preset name, or regexes, as a tuple of regexes (checked to compile).

    Raises:
      ValueError: naming an unknown preset or a regex that does not compile.
    """
    if isinstance(selection, str):
        if selection in PRESETS:
            return PRESETS[selection]
        if re.fullmatch(r"[A-Za-z_]+", selection):  # looks like a name, not a pattern
            raise ValueError(
                f"unknown preset {selection!r}: one of {sorted(PRESETS)}, "
                "or regexes over parameter paths"
            )
        selection = (selection,)
    for pattern in selection:
        try:
            re.compile(pattern)
        except re.error as e:
            raise ValueError(f"bad parameter pattern {pattern!r}: {e}") from None
    return tuple(selection)


def matches(name: str, patterns: Iterable[str]) -> bool:
    return any(re.search(p, name) for p in patterns)


def select(params: Mapping, patterns: Iterable[str]) -> dict[str, np.ndarray]:
    """The flat {path: leaf} of the parameters whose path matches any pattern."""
    patterns = tuple(patterns)
    return {k: v for k, v in flatten(params).items() if matches(k, patterns)}


def freeze_all_but(trainable: Iterable[str]) -> tuple[str, ...]:
    """`config.train.frozen` regexes that freeze every parameter except those matching
    `trainable` (one pattern with a negative lookahead)."""
    alternatives = "|".join(f"(?:{p})" for p in trainable)
    return (rf"^(?!(?:{alternatives}))",) if alternatives else (r".",)


def count(params: Mapping, patterns: Iterable[str] | None = None) -> int:
    """Number of scalar parameters (those matching `patterns`, or all)."""
    leaves = flatten(params) if patterns is None else select(params, patterns)
    return int(sum(np.size(v) for v in leaves.values()))


def module_of(name: str, depth: int = 3) -> str:
    """The module a parameter belongs to, e.g. `decoder/layer_0/mlp` for its linear1 kernel."""
    parts = name.split("/")
    return "/".join(parts[: min(depth, len(parts) - 1)])


def compare(before: Mapping, after: Mapping, depth: int = 3) -> list[dict]:
    """How much each module's parameters moved between two trees of the same structure.

    Returns one row per module (`module_of(path, depth)`), sorted by path: `params` (count),
    `changed` (tensors not bit-identical), `tensors`, and `relative_change`
    ||after - before|| / ||before|| over the module's parameters.

    Raises:
      ValueError: naming the paths present in one tree only, or of different shapes.
    """
    a, b = flatten(before), flatten(after)
    if a.keys() != b.keys():
        only = sorted(a.keys() ^ b.keys())[:5]
        raise ValueError(f"the two param trees differ in paths, e.g. {only}")
    rows: dict[str, dict] = {}
    for name in sorted(a):
        x, y = np.asarray(a[name], np.float64), np.asarray(b[name], np.float64)
        if x.shape != y.shape:
            raise ValueError(f"{name}: shape {x.shape} before, {y.shape} after")
        row = rows.setdefault(
            module_of(name, depth), dict(params=0, tensors=0, changed=0, _d2=0.0, _n2=0.0)
        )
        row["params"] += x.size
        row["tensors"] += 1
        row["changed"] += int(not np.array_equal(x, y))
        row["_d2"] += float(np.sum((y - x) ** 2))
        row["_n2"] += float(np.sum(x**2))
    out = []
    for module, r in rows.items():
        d2, n2 = r.pop("_d2"), r.pop("_n2")
        out.append(
            dict(
                module=module,
                **r,
                relative_change=float(np.sqrt(d2 / n2)) if n2 > 0 else float(d2 > 0),
            )
        )
    return out
