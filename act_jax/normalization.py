"""Mean/std normalisation of joint states and actions, computed from the training episodes.

ACT normalises `qpos` and `action` with per-dimension mean and standard deviation, clipping the
standard deviation at 1e-2 so that a joint that never moves in the demos (a locked wrist, say)
does not blow up by dividing by ~0. Images are *not* normalised here: the model scales them and
applies the ImageNet statistics itself, so the training pipeline and the policy runtime can never
disagree on image preprocessing.

The statistics travel with every checkpoint (`NormStats.to_dict` is plain JSON), so a policy can
be rebuilt and its actions un-normalised from the checkpoint directory alone. The functions work
on numpy and jax arrays alike (broadcasting over any leading axes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

MIN_STD = 1e-2
"""Lower bound on the per-dimension std, as in the original ACT (`np.clip(std, 1e-2, np.inf)`)."""


@dataclasses.dataclass(frozen=True)
class NormStats:
    """Per-dimension statistics of states and actions.

    Attributes:
      state_mean, state_std: (state_dim,) float32.
      action_mean, action_std: (action_dim,) float32. Stds are already clipped to `MIN_STD`.
    """

    state_mean: np.ndarray
    state_std: np.ndarray
    action_mean: np.ndarray
    action_std: np.ndarray

    def normalize_state(self, state):
        """(..., state_dim) raw units -> (..., state_dim) zero-mean, unit-std."""
        return (state - self.state_mean) / self.state_std

    def normalize_action(self, action):
        """(..., action_dim) raw units -> (..., action_dim) normalised."""
        return (action - self.action_mean) / self.action_std

    def unnormalize_action(self, action):
        """(..., action_dim) normalised (model output) -> (..., action_dim) raw units."""
        return action * self.action_std + self.action_mean

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-serialisable form, stored in checkpoints."""
        return {f.name: [float(v) for v in getattr(self, f.name)] for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[float]]) -> NormStats:
        """Inverse of `to_dict`.

        Raises:
          ValueError: naming the missing or malformed field.
        """
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                raise ValueError(f"normalisation statistics lack the field {f.name!r}")
            values[f.name] = np.asarray(d[f.name], np.float32)
            if values[f.name].ndim != 1:
                raise ValueError(f"normalisation field {f.name!r} must be a vector")
        if values["state_mean"].shape != values["state_std"].shape:
            raise ValueError("state_mean and state_std have different lengths")
        if values["action_mean"].shape != values["action_std"].shape:
            raise ValueError("action_mean and action_std have different lengths")
        return cls(**values)


def compute(
    states: Sequence[np.ndarray], actions: Sequence[np.ndarray], min_std: float = MIN_STD
) -> NormStats:
    """Statistics over every step of the given episodes (each step weighs the same).

    Args:
      states: per episode, (T_i, state_dim) arrays.
      actions: per episode, (T_i, action_dim) arrays.
      min_std: lower bound applied to each std.

    Raises:
      ValueError: if there are no steps, or a value is not finite (naming which array).
    """
    if not states or not actions:
        raise ValueError("cannot compute normalisation statistics from zero episodes")
    stats = {}
    for name, arrays in (("state", states), ("action", actions)):
        x = np.concatenate([np.asarray(a, np.float64) for a in arrays], axis=0)  # (sum T_i, D)
        if not np.isfinite(x).all():
            raise ValueError(f"the episodes' {name} values contain NaN or inf")
        stats[f"{name}_mean"] = x.mean(axis=0).astype(np.float32)
        stats[f"{name}_std"] = np.maximum(x.std(axis=0), min_std).astype(np.float32)
    return NormStats(**stats)
