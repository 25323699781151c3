"""The range of every numeric field of an experiment config, checked before anything is written.

    check_ranges(config)  # ConfigError: "config.data.val_fraction=1.5: must be a number in [0, 1)"

`act_jax.train.check_config` runs this with the checks that other modules own (`config.model` is
`ACTConfig`'s, `data.decode` is `act_jax.data`'s, `train.schedule` is `make_schedule`'s), first
thing in `python -m act_jax.train`: before demos are recorded, an evaluation is built or the
workdir is made. A field a config does not have (an older `config.json`) is not checked; NaN is
in no range.

Renamed fields (`RENAMED`) are accepted under their old names for one release: `apply_renamed`
moves them (an older `config.json`, a variant config, a script), and `act_jax.config_cli`
rewrites old `--config.<field>` flags; each says so in one line on stderr.
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import Any

from hardware.arguments import describe_range

INT, NUMBER = "an integer", "a number"

# "section.field": (kind, low, high, low_open, high_open); None: unbounded on that side.
RANGES: dict[str, tuple[str, float | None, float | None, bool, bool]] = {
    "train.seed": (INT, 0, None, False, False),
    "train.batch_size": (INT, 1, None, False, False),
    "train.num_steps": (INT, 0, None, False, False),
    "train.lr": (NUMBER, 0, None, False, False),
    "train.lr_backbone": (NUMBER, 0, None, False, False),
    "train.weight_decay": (NUMBER, 0, None, False, False),
    "train.grad_clip": (NUMBER, 0, None, True, False),  # 0 would scale every gradient to 0
    "train.kl_weight": (NUMBER, 0, None, False, False),
    "train.warmup_steps": (INT, 0, None, False, False),
    "train.log_every": (INT, 1, None, False, False),
    "train.val_loss_every": (INT, 0, None, False, False),
    "train.checkpoint_every": (INT, 1, None, False, False),
    "train.keep_checkpoints": (INT, 1, None, False, False),
    "data.val_fraction": (NUMBER, 0, 1, False, True),  # 1 would leave nothing to train on
    "data.val_batches": (INT, 0, None, False, False),
    "data.memory_budget_gb": (NUMBER, 0, None, False, False),
    "data.record_episodes": (INT, 0, None, False, False),
    "data.record_seed": (INT, 0, None, False, False),
    "data.augment.max_shift": (INT, 0, None, False, False),
    "data.augment.brightness": (NUMBER, 0, 1, False, True),  # a gain in [1 - b, 1 + b] stays > 0
    "eval.rollout_every": (INT, 0, None, False, False),
    "eval.episodes": (INT, 1, None, False, False),
    "eval.seed": (INT, 0, None, False, False),
    "eval.max_steps": (INT, 1, None, False, False),
}


# Old name -> new name, accepted until the next release. The two evaluation cadences had names
# that did not say which evaluation they were.
RENAMED = {
    "train.eval_every": "train.val_loss_every",  # validation loss on held-out episodes
    "eval.every_steps": "eval.rollout_every",  # success rate of sim rollouts
    # Cube placement is `--locations` in every CLI; the config field now says so too.
    "data.record_distribution": "data.record_locations",
}


def renamed_warning(old: str, new: str, prefix: str = "config.") -> str:
    """The one-line warning for a field given under its old name."""
    return f"warning: {prefix}{old} is the old name of {prefix}{new}; it goes in the next release"


def apply_renamed(config, warn: bool = True) -> None:
    """Moves every field `config` has under an old name (`RENAMED`) to its new name, in place,
    with a one-line warning on stderr (`warn=False`: silently, for a config a checkpoint saved,
    which nobody is to edit). The old name wins: it is the one that was set."""
    for old, new in RENAMED.items():
        section, old_field = old.split(".")
        new_field = new.split(".")[1]
        node = config.get(section)
        if node is None or old_field not in node:
            continue
        value = node[old_field]
        with config.unlocked():
            del node[old_field]
            node[new_field] = value
        if warn:
            print(renamed_warning(old, new), file=sys.stderr)


def get_field(config, name: str, default: Any = None) -> Any:
    """`config.<name>` ("section.field"), or its value under an old name (`RENAMED`) in a config
    saved before the rename (a checkpoint's), or `default`. Reads only; nothing is moved."""
    olds = [old for old, new in RENAMED.items() if new == name]
    for dotted in (name, *olds):
        section, field = dotted.split(".")
        node = config.get(section)
        if node is not None and field in node:
            return node[field]
    return default


class ConfigError(ValueError):
    """A config value that cannot work; the message names `config.<section>.<field>`."""


def _in_range(value: Any, kind: str, low, high, low_open: bool, high_open: bool) -> bool:
    if isinstance(value, bool) or not isinstance(
        value, numbers.Integral if kind == INT else numbers.Real
    ):
        return False
    if not math.isfinite(value):
        return False
    if low is not None and (value <= low if low_open else value < low):
        return False
    return high is None or (value < high if high_open else value <= high)


_MISSING = object()


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        if not hasattr(node, "get") or part not in node:
            return _MISSING
        node = node[part]
    return node


def check_ranges(config) -> None:
    """Raises `ConfigError` for the first field of `RANGES` whose value is out of its range."""
    for dotted, rule in RANGES.items():
        value = _get(config, dotted)
        if value is not _MISSING and not _in_range(value, *rule):
            raise ConfigError(f"config.{dotted}={value!r}: must be {describe_range(*rule)}")
