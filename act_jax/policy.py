"""The policy runtime: a checkpoint directory in, robot actions out.

    policy = Policy.from_checkpoint("runs/sim_default")
    policy.warmup()                                   # compile once, before the robot moves
    chunk = policy.predict_chunk(observation)         # (chunk_size, 6), robot units
    controller = policy.as_controller(make_executor("ensemble:0.01"))
    action = controller(observation)                  # (6,), one per control tick

`predict_chunk` is one jitted function of fixed shapes: it normalises the state, runs ACT at
inference (zero latent, no dropout) and un-normalises the actions, so nothing retraces during a
rollout. `trace_count` counts traces; `retraces_after_warmup` is what a test asserts is 0.

Observations are those of every `hardware` robot: {"images": {camera: (H, W, 3) uint8},
"state": (6,) float32} in LeRobot units. Images of another size than the model was trained on
(a real 480x640 camera feeding a 96x128 policy) are resized with area averaging.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from act_jax.execution import Executor, chunk_controller
from act_jax.normalization import NormStats


class Policy:
    """A trained ACT with its normalisation, ready to act.

    Args:
      model: the `act_jax.model.ACT` module.
      variables: {"params", "batch_stats"}.
      config: the experiment ConfigDict the model was trained with.
      norm_stats: state/action statistics of the training data.
      step: the training step of the weights (for reports), -1 if unknown.
    """

    def __init__(self, model, variables, config, norm_stats: NormStats, step: int = -1):
        self.model = model
        self.variables = variables
        self.config = config
        self.norm_stats = norm_stats
        self.step = step
        self.cameras = tuple(config.model.cameras)
        self.image_size = tuple(int(v) for v in config.model.image_size)
        self.trace_count = 0
        self._traces_at_warmup: int | None = None
        stats = {k: jnp.asarray(v) for k, v in norm_stats.to_dict().items()}

        def predict(variables, images, state):
            self.trace_count += 1  # runs only while tracing
            state = (state - stats["state_mean"]) / stats["state_std"]
            out = model.apply(variables, images, state, train=False)
            return out["actions"] * stats["action_std"] + stats["action_mean"]

        self._predict = jax.jit(predict)

    @classmethod
    def from_checkpoint(cls, workdir: str | os.PathLike) -> Policy:
        """Rebuilds the policy from a training workdir (or its checkpoints/ directory) alone."""
        from act_jax.checkpoints import restore_latest
        from act_jax.model import ACT, ACTConfig

        variables, config, norm_stats, step = restore_latest(workdir)
        model = ACT(ACTConfig.from_config(config.model))
        return cls(model, variables, config, norm_stats, step=-1 if step is None else step)

    def load_weights(self, variables: dict, step: int = -1) -> None:
        """Swaps in other weights of the same model ({"params", "batch_stats"}, e.g. a training
        state's): the jitted prediction is reused, nothing recompiles."""
        self.variables, self.step = variables, step

    def _batch(self, observation: dict) -> tuple[dict, np.ndarray]:
        images = observation.get("images", {})
        missing = [c for c in self.cameras if c not in images]
        if missing:
            raise ValueError(
                f"observation lacks camera(s) {missing}; the policy needs {list(self.cameras)}"
            )
        h, w = self.image_size
        batch_images = {}
        for cam in self.cameras:
            img = np.asarray(images[cam])
            if img.ndim != 3 or img.shape[-1] != 3:
                raise ValueError(f"camera {cam!r}: expected an (H, W, 3) image, got {img.shape}")
            if img.shape[:2] != (h, w):
                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
            batch_images[cam] = img[None].astype(np.uint8)
        state = np.asarray(observation["state"], np.float32)
        if state.shape != (self.config.model.state_dim,):
            raise ValueError(
                f"state has shape {state.shape}, expected ({self.config.model.state_dim},)"
            )
        if not np.isfinite(state).all():
            raise ValueError(f"state is not finite: {state}")
        return batch_images, state[None]

    def predict_chunk(self, observation: dict) -> np.ndarray:
        """Returns the (chunk_size, action_dim) chunk of actions, in robot units."""
        images, state = self._batch(observation)
        return np.asarray(self._predict(self.variables, images, state)[0])

    def warmup(self) -> None:
        """Compiles `predict_chunk` with a dummy observation of the right shapes."""
        h, w = self.image_size
        obs = {
            "images": {c: np.zeros((h, w, 3), np.uint8) for c in self.cameras},
            "state": np.asarray(self.norm_stats.state_mean, np.float32),
        }
        self.predict_chunk(obs)
        self._traces_at_warmup = self.trace_count

    @property
    def retraces_after_warmup(self) -> int | None:
        """Traces since `warmup()` (None before it); anything but 0 is a performance bug."""
        if self._traces_at_warmup is None:
            return None
        return self.trace_count - self._traces_at_warmup

    def as_controller(self, executor: Executor) -> Callable[[dict], np.ndarray]:
        """An observation -> (6,) action callable for the control loop, for one episode."""
        return chunk_controller(self.predict_chunk, executor)
