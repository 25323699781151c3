"""Action execution strategies: how a stream of predicted chunks becomes one action per tick.

ACT predicts a chunk of `C` future actions from each observation. Three ways to execute them:

- `OpenLoop`: query once, execute the whole chunk, query again (ACT without ensembling).
- `RecedingHorizon(n)`: query every `n` ticks and execute the first `n` actions of each chunk
  (LeRobot's `n_action_steps`); `n = C` is open loop, `n = 1` re-plans every tick.
- `TemporalEnsemble(m)`: query every tick; the action for tick `t` is the weighted mean of every
  chunk's prediction for `t`, with weights `exp(-m * i)` where `i = 0` is the *oldest* prediction
  (ACT's convention: older predictions weigh slightly more; ACT uses m = 0.01).

Each executor is a small state machine with the same interface:

    executor.reset()
    for t in range(T):
        action = executor.step(lambda: policy(observation))   # calls the policy only when needed

Chunks are (C, A) arrays; actions are (A,) arrays, in whatever units the policy returns.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import numpy as np


class Executor(abc.ABC):
    """Turns predicted chunks into one action per tick."""

    def __init__(self):
        self.reset()

    @abc.abstractmethod
    def reset(self) -> None:
        """Forgets all chunks (call at the start of every episode)."""

    @abc.abstractmethod
    def step(self, predict: Callable[[], np.ndarray]) -> np.ndarray:
        """Returns this tick's action, calling `predict()` (-> (C, A)) only when a chunk is due."""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """A short description for logs, e.g. "receding_horizon(n=10)"."""


class RecedingHorizon(Executor):
    """Executes the first `n` actions of each chunk, then queries again."""

    def __init__(self, n: int):
        if n < 1:
            raise ValueError(f"receding horizon n must be >= 1, got {n}")
        self.n = n
        super().__init__()

    def reset(self) -> None:
        self._chunk: np.ndarray | None = None
        self._i = 0

    def step(self, predict):
        if self._chunk is None or self._i >= self._limit:
            self._chunk = _check_chunk(predict())
            self._i = 0
        action = self._chunk[self._i]
        self._i += 1
        return action

    @property
    def _limit(self) -> int:
        return min(self.n, len(self._chunk))

    @property
    def name(self) -> str:
        return f"receding_horizon(n={self.n})"


class OpenLoop(RecedingHorizon):
    """Executes each whole chunk open loop, then queries again."""

    def __init__(self):
        super().__init__(n=1)

    @property
    def _limit(self) -> int:
        return len(self._chunk)

    @property
    def name(self) -> str:
        return "open_loop"


class TemporalEnsemble(Executor):
    """Queries every tick and averages all predictions for the current tick.

    Args:
      m: decay of the weights `exp(-m * i)`, `i = 0` the oldest prediction for this tick.
    """

    def __init__(self, m: float = 0.01):
        if not np.isfinite(m) or m < 0:
            raise ValueError(
                f"temporal ensemble coefficient must be finite and >= 0, got {m} (weights are "
                "exp(-m * i) with i = 0 the oldest prediction; for the newest chunk only, use "
                "'receding:1')"
            )
        self.m = float(m)
        super().__init__()

    def reset(self) -> None:
        self._t = 0
        self._chunks: list[tuple[int, np.ndarray]] = []  # (tick the chunk was predicted, chunk)

    def step(self, predict):
        self._chunks.append((self._t, _check_chunk(predict())))
        # Keep only chunks that still cover this tick; they are ordered oldest first.
        self._chunks = [(s, c) for s, c in self._chunks if self._t - s < len(c)]
        preds = np.stack([c[self._t - s] for s, c in self._chunks])  # (K, A), oldest first
        weights = np.exp(-self.m * np.arange(len(preds)))
        self._t += 1
        return (weights[:, None] * preds).sum(0) / weights.sum()

    @property
    def name(self) -> str:
        return f"temporal_ensemble(m={self.m:g})"


def chunk_controller(
    predict_chunk: Callable[[dict], np.ndarray], executor: Executor
) -> Callable[[dict], np.ndarray]:
    """An observation -> action callable for one episode: `executor` (reset here) turns the
    chunks `predict_chunk(observation)` returns into one action a control tick."""
    executor.reset()
    return lambda observation: executor.step(lambda: predict_chunk(observation))


def _check_chunk(chunk) -> np.ndarray:
    chunk = np.asarray(chunk)
    if chunk.ndim != 2 or len(chunk) == 0:
        raise ValueError(f"a predicted chunk must be (C, A) with C >= 1, got shape {chunk.shape}")
    return chunk


def make_executor(spec: str) -> Executor:
    """Builds an executor from a short spec string (used by configs and CLIs).

    Specs: "open_loop", "receding:N" (e.g. "receding:10"), "ensemble" or "ensemble:M"
    (e.g. "ensemble:0.01").
    """
    kind, _, arg = spec.partition(":")
    try:
        if kind == "open_loop" and not arg:
            return OpenLoop()
        if kind == "receding":
            return RecedingHorizon(int(arg))
        if kind == "ensemble":
            return TemporalEnsemble(float(arg) if arg else 0.01)
    except ValueError as e:
        raise ValueError(f"bad execution spec {spec!r}: {e}") from e
    raise ValueError(
        f"unknown execution spec {spec!r}: use 'open_loop', 'receding:N' or 'ensemble[:M]'"
    )
