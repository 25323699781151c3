"""Checkpoints: a deployable artifact (weights + config + normalisation) that runs resume from.

Layout, one orbax step directory per saved step (writes are atomic: orbax writes
`<step>.orbax-checkpoint-tmp` and renames it when complete, so a crash never leaves a half
checkpoint that looks finished):

    <workdir>/checkpoints/<step>/
        variables/    {"params", "batch_stats"}: all the policy needs
        train/        {"step", "opt_state"}: only to resume training
        config/       the full experiment ConfigDict, as JSON
        norm_stats/   `NormStats.to_dict()`, as JSON

Every step carries its config and statistics, so any one of them rebuilds the policy alone:

    model, variables, config, norm_stats = load_policy_params("runs/sim_default")
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from act_jax.normalization import NormStats

SUBDIR = "checkpoints"


class _DropReadOnlyNotice(logging.Filter):
    """Orbax warns "Given directory is read only" every time a read-only manager opens: that is
    what was asked for, and the line would look like a problem in every evaluation's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Given directory is read only" not in record.getMessage()


logging.getLogger("absl").addFilter(_DropReadOnlyNotice())


def checkpoint_dir(workdir: str | os.PathLike) -> Path:
    """`<workdir>/checkpoints`, or `workdir` itself when it already is such a directory."""
    workdir = Path(workdir).absolute()
    return workdir if workdir.name == SUBDIR else workdir / SUBDIR


def config_to_json(config: ml_collections.ConfigDict) -> str:
    return config.to_json(sort_keys=True)


def config_from_json(text: str | Mapping) -> ml_collections.ConfigDict:
    """Inverse of `config_to_json`; JSON lists come back as tuples (config fields are tuples)."""

    def tuples(x):
        if isinstance(x, Mapping):
            return {k: tuples(v) for k, v in x.items()}
        if isinstance(x, list):
            return tuple(tuples(v) for v in x)
        return x

    d = json.loads(text) if isinstance(text, str) else text
    return ml_collections.ConfigDict(tuples(d))


class CheckpointDamaged(FileNotFoundError):
    """A checkpoint step that exists but cannot be read (named with its folder). A kind of
    FileNotFoundError: to a caller it is as if no usable checkpoint were there, so every CLI
    that names a missing checkpoint in one line names a damaged one the same way."""


class Checkpointer:
    """An orbax `CheckpointManager` for one workdir, keeping the last `keep` steps.

    Saves are asynchronous (the device-to-host copy is done when `save` returns, the disk write
    continues on a thread); call `close()` before exiting so the last one is finalised.
    """

    def __init__(self, workdir: str | os.PathLike, keep: int = 3, *, read_only: bool = False):
        self.directory = checkpoint_dir(workdir)
        if read_only and not self.directory.is_dir():
            raise FileNotFoundError(f"no checkpoints in {workdir} ({self.directory} is missing)")
        if read_only:
            options = ocp.CheckpointManagerOptions(
                read_only=True, create=False, save_interval_steps=0, max_to_keep=None
            )
        else:
            # Leftovers of a save that crashed mid-write (`<step>.orbax-checkpoint-tmp-*`) are
            # removed rather than mistaken for data; finished steps are renamed into place.
            options = ocp.CheckpointManagerOptions(max_to_keep=keep, cleanup_tmp_directories=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(
        self,
        step: int,
        state: Mapping[str, Any],
        config: ml_collections.ConfigDict,
        norm_stats: NormStats,
    ) -> None:
        """Saves `state` = {"params", "batch_stats", "step", "opt_state"} at `step`."""
        self._manager.save(
            int(step),
            args=ocp.args.Composite(
                variables=ocp.args.StandardSave(
                    {"params": state["params"], "batch_stats": state["batch_stats"]}
                ),
                train=ocp.args.StandardSave(
                    {"step": state["step"], "opt_state": state["opt_state"]}
                ),
                config=ocp.args.JsonSave(json.loads(config_to_json(config))),
                norm_stats=ocp.args.JsonSave(norm_stats.to_dict()),
            ),
            force=True,
        )

    def restore_metadata(self, step: int | None = None):
        """(config, norm_stats, step) of `step` (default: the latest)."""
        step = self._resolve(step)
        got = self._manager.restore(
            step,
            args=ocp.args.Composite(
                config=ocp.args.JsonRestore(), norm_stats=ocp.args.JsonRestore()
            ),
        )
        return config_from_json(got["config"]), NormStats.from_dict(got["norm_stats"]), step

    def restore(self, step: int | None, target: Mapping[str, Any]) -> dict:
        """Restores the state at `step` into the abstract `target` (same keys as `save`'s state,
        leaves `jax.ShapeDtypeStruct` with shardings). Only the items `target` needs are read:
        without "opt_state" the training state is not touched."""
        step = self._resolve(step)
        items = {
            "variables": ocp.args.StandardRestore(
                {"params": target["params"], "batch_stats": target["batch_stats"]}
            )
        }
        if "opt_state" in target:
            items["train"] = ocp.args.StandardRestore(
                {"step": target["step"], "opt_state": target["opt_state"]}
            )
        got = self._manager.restore(step, args=ocp.args.Composite(**items))
        out = dict(got["variables"])
        if "train" in got:
            out.update(got["train"])
        return out

    def step_dir(self, step: int) -> Path:
        return self.directory / str(step)

    def damaged(
        self, step: int, error: BaseException, *, fallback: int | None
    ) -> CheckpointDamaged:
        """The error for a step that cannot be read: its folder, the cause, and what to do."""
        what = f"checkpoint {self.step_dir(step)} is damaged ({type(error).__name__}: {error})"
        if fallback is None:
            return CheckpointDamaged(f"{what}; no earlier step to fall back to")
        return CheckpointDamaged(
            f"{what}; remove that folder to go on from step {fallback} "
            f"(rm -r {self.step_dir(step)})"
        )

    def newest_intact(self, load: Callable[[int], Any]) -> tuple[Any, int]:
        """(load(step), step) for the newest step that loads, newest first. Each damaged step
        is named on stderr with its cause; `CheckpointDamaged` lists them all if none loads."""
        steps = sorted(self.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no finished checkpoint in {self.directory}")
        problems = []
        for k, step in enumerate(steps):
            try:
                out = load(step)
            except Exception as e:  # noqa: BLE001 - orbax and json raise many types for one cause
                problems.append(f"{self.step_dir(step)}: {type(e).__name__}: {e}")
                if k + 1 < len(steps):
                    print(
                        f"warning: {problems[-1]}\n  falling back to step {steps[k + 1]}",
                        file=sys.stderr,
                    )
                continue
            return out, step
        raise CheckpointDamaged(
            f"no intact checkpoint in {self.directory}:\n  " + "\n  ".join(problems)
        )

    def _resolve(self, step: int | None) -> int:
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no finished checkpoint in {self.directory}")
        return step

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def save(
    workdir: str | os.PathLike,
    step: int,
    state: Mapping[str, Any],
    config: ml_collections.ConfigDict,
    norm_stats: NormStats,
    keep: int = 3,
) -> Path:
    """One blocking save (see `Checkpointer.save`). Returns the checkpoint directory."""
    ckpt = Checkpointer(workdir, keep)
    try:
        ckpt.save(step, state, config, norm_stats)
    finally:
        ckpt.close()
    return ckpt.directory / str(step)


def _abstract_variables(config: ml_collections.ConfigDict, sharding: jax.sharding.Sharding):
    """Shapes of {"params", "batch_stats"} for `config.model`, from `jax.eval_shape` of init."""
    import jax.numpy as jnp

    from act_jax.model import ACT, ACTConfig

    model_config = ACTConfig.from_config(config.model)
    model = ACT(model_config)
    h, w = model_config.image_size
    images = {c: jax.ShapeDtypeStruct((1, h, w, 3), jnp.uint8) for c in model_config.cameras}
    state = jax.ShapeDtypeStruct((1, model_config.state_dim), jnp.float32)
    actions = jax.ShapeDtypeStruct(
        (1, model_config.chunk_size, model_config.action_dim), jnp.float32
    )
    is_pad = jax.ShapeDtypeStruct((1, model_config.chunk_size), jnp.bool_)
    rngs = {k: jax.random.key(0) for k in ("params", "dropout", "latent")}
    shapes = jax.eval_shape(
        lambda i, s, a, p: model.init(rngs, i, s, a, p, train=True), images, state, actions, is_pad
    )
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), dict(shapes)
    )
    return model, {"params": abstract["params"], "batch_stats": abstract.get("batch_stats", {})}


def restore_latest(workdir: str | os.PathLike, target: Mapping[str, Any] | None = None):
    """Restores the newest finished checkpoint.

    Args:
      workdir: the training workdir (or its `checkpoints/` directory).
      target: abstract training state (see `Checkpointer.restore`); None restores the policy
        variables only, shaped from the stored config, on the first local device.

    Returns:
      (state or variables, config, norm_stats, step).

    Raises:
      FileNotFoundError: naming the directory, when it holds no finished checkpoint.
      CheckpointDamaged: no step loads (each is named with its cause). A damaged newest step
        is named on stderr and the next older one is used.
    """
    ckpt = Checkpointer(workdir, read_only=True)

    def load(step):
        config, norm_stats, _ = ckpt.restore_metadata(step)
        want = target
        if want is None:
            _, want = _abstract_variables(
                config, jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            )
        return ckpt.restore(step, want), config, norm_stats

    try:
        (state, config, norm_stats), step = ckpt.newest_intact(load)
        return state, config, norm_stats, step
    finally:
        ckpt.close()


def load_policy_params(workdir: str | os.PathLike):
    """Everything the policy runtime needs, from a checkpoint directory alone.

    Returns:
      (model, variables, config, norm_stats): the `ACT` module, {"params", "batch_stats"}, the
      experiment ConfigDict and the `NormStats` to normalise states and un-normalise actions.
    """
    from act_jax.model import ACT, ACTConfig

    variables, config, norm_stats, _ = restore_latest(workdir)
    return ACT(ACTConfig.from_config(config.model)), variables, config, norm_stats
