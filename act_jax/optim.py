"""The optimiser: AdamW with ACT's separate backbone rate, clipping, a schedule, frozen params.

Freezing is config data (`config.train.frozen`, regexes over "/"-joined parameter paths) that
labels parameters for `optax.partition`, never a forked trainer.
"""

from __future__ import annotations

import re

import jax
import optax


def make_schedule(train_config, peak: float) -> optax.Schedule:
    """Linear warmup from 0 to `peak`, then constant or cosine decay to 0 at num_steps."""
    warmup, total = train_config.warmup_steps, train_config.num_steps
    if train_config.schedule == "constant":
        after = optax.constant_schedule(peak)
    elif train_config.schedule == "cosine":
        after = optax.cosine_decay_schedule(peak, max(total - warmup, 1))
    else:
        raise ValueError(
            f"config.train.schedule={train_config.schedule!r}: must be 'constant' or 'cosine'"
        )
    if warmup <= 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def param_labels(params, frozen: tuple[str, ...] = ()):
    """Labels each parameter "frozen" (its "/"-joined path matches a `frozen` regex), "backbone"
    (top-level key "backbone", ACT's separate backbone learning rate) or "default"."""
    patterns = [re.compile(p) for p in frozen]

    def label(path, _):
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        if any(p.search(name) for p in patterns):
            return "frozen"
        return "backbone" if name.split("/")[0] == "backbone" else "default"

    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(train_config) -> optax.GradientTransformation:
    """AdamW with separate backbone rate, global-norm clipping, and frozen parameters untouched.

    Frozen gradients are zeroed *before* clipping so that, as in PyTorch where frozen tensors
    have no gradient, they do not count towards the global norm.
    """
    frozen = tuple(train_config.frozen)

    def adamw(peak):
        return optax.adamw(
            make_schedule(train_config, peak),
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            weight_decay=train_config.weight_decay,
        )

    is_frozen = lambda params: jax.tree.map(
        lambda lab: lab == "frozen", param_labels(params, frozen)
    )
    return optax.chain(
        optax.masked(optax.set_to_zero(), is_frozen),
        optax.clip_by_global_norm(train_config.grad_clip),
        optax.partition(
            {
                "default": adamw(train_config.lr),
                "backbone": adamw(train_config.lr_backbone),
                "frozen": optax.set_to_zero(),
            },
            lambda params: param_labels(params, frozen),
        ),
    )
