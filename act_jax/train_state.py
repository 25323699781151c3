"""The train state: created, restored from a workdir's checkpoint, or started from another run.

`read_start` says, reading only, where a run starts (the step to resume and the normalisation
statistics the weights were trained with); `restore_or_init` then makes the state: restored
with its sharding, or initialised directly with it (with `config.train.init_from`'s weights for
a fine-tune).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax.training import train_state
from tqdm import tqdm

from act_jax import checkpoints
from act_jax.config_ranges import ConfigError
from act_jax.model import ACT, ACTConfig, count_params
from act_jax.normalization import NormStats
from act_jax.optim import make_optimizer, param_labels


class TrainState(train_state.TrainState):
    """Flax's TrainState plus the frozen BatchNorm statistics, which no optimiser ever sees."""

    batch_stats: Any = None


def make_model(config: ml_collections.ConfigDict) -> ACT:
    return ACT(ACTConfig.from_config(config.model))


def create_train_state(
    config: ml_collections.ConfigDict, rng: jax.Array, example_batch: dict
) -> TrainState:
    """Initialises parameters (from `example_batch`'s shapes) and the optimiser state."""
    model = make_model(config)
    rngs = dict(zip(("params", "dropout", "latent"), jax.random.split(rng, 3), strict=True))
    variables = model.init(
        rngs,
        example_batch["images"],
        example_batch["state"],
        example_batch["actions"],
        example_batch["action_is_pad"],
        train=True,
    )
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),
        tx=make_optimizer(config.train),
    )


def state_to_dict(state: TrainState) -> dict:
    return {
        "step": state.step,
        "params": state.params,
        "batch_stats": state.batch_stats,
        "opt_state": state.opt_state,
    }


# config.model fields a run may change on resume: the same parameters and numbers either way.
HOW_NOT_WHAT = frozenset({"backbone_conv", "backbone_pool"})


def _check_same_model(
    saved: ml_collections.ConfigDict, config: ml_collections.ConfigDict, workdir: Path
) -> None:
    """A workdir resumes only the model it was started with.

    Fields that change how the model is computed but not what (`HOW_NOT_WHAT`, e.g. which
    convolution backward runs) may differ: the parameters and outputs are the same.
    """
    old = checkpoints.config_from_json(saved.model.to_json()).to_dict()
    new = checkpoints.config_from_json(config.model.to_json()).to_dict()
    diff = [
        f"config.model.{k}: {old.get(k)!r} in the checkpoint, {new.get(k)!r} now"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k) and k not in HOW_NOT_WHAT
    ]
    if diff:
        raise ConfigError(
            f"{workdir} holds checkpoints of a different model; use another "
            "workdir or the same model config:\n  " + "\n  ".join(diff)
        )


def read_start(
    config: ml_collections.ConfigDict, workdir: Path
) -> tuple[int | None, NormStats | None]:
    """Where a run starts, read without writing: (step to resume from or None, the statistics
    the weights were trained with, or None for a new run that computes its own).

    Raises:
      ConfigError: the workdir holds another model, or steps past `num_steps`; `init_from`
        holds another model.
      CheckpointDamaged: the newest step cannot be read (naming the folder to remove).
    """
    tc = config.train
    if checkpoints.checkpoint_dir(workdir).is_dir():
        with contextlib.closing(checkpoints.Checkpointer(workdir, read_only=True)) as ckpt:
            resume_step = ckpt.latest_step()
            if resume_step is not None:
                try:
                    saved_config, norm_stats, _ = ckpt.restore_metadata(resume_step)
                except Exception as e:  # noqa: BLE001 - orbax and json raise many types
                    # Falling back would train on past the damaged step's folder: refuse, and
                    # say which folder to remove to resume from the step before it.
                    earlier = [s for s in ckpt.all_steps() if s < resume_step]
                    raise ckpt.damaged(resume_step, e, fallback=max(earlier, default=None)) from e
                _check_same_model(saved_config, config, workdir)
                if resume_step > tc.num_steps:
                    # Its weights, not this run's, would be what an evaluation of it loads.
                    raise ConfigError(
                        f"{workdir} already holds a checkpoint at step {resume_step}, past "
                        f"config.train.num_steps={tc.num_steps}; use another workdir, or "
                        f"num_steps >= {resume_step} to go on from it"
                    )
                return resume_step, norm_stats
    if tc.init_from:
        # Fine-tuning keeps the statistics the weights were trained with: inputs normalised
        # otherwise would shift under frozen layers, and outputs would change meaning.
        with contextlib.closing(checkpoints.Checkpointer(tc.init_from, read_only=True)) as src:
            init_config, norm_stats, _ = src.restore_metadata()
        _check_same_model(init_config, config, Path(tc.init_from))
        return None, norm_stats
    return None, None


def restore_or_init(
    config: ml_collections.ConfigDict,
    ckpt: checkpoints.Checkpointer,
    resume_step: int | None,
    example_batch: dict,
    repl: jax.sharding.Sharding,
) -> TrainState:
    """The state at `resume_step` restored from `ckpt`, or a new one (with `init_from`'s weights
    when set), created directly with its sharding. `example_batch` gives the global shapes."""
    tc = config.train
    init_rng = jax.random.split(jax.random.key(tc.seed))[0]
    init = lambda r: create_train_state(
        config, r, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), example_batch)
    )
    abstract = jax.eval_shape(init, init_rng)
    with_sharding = lambda tree: jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl), tree
    )
    if resume_step is not None:
        state = abstract.replace(
            **ckpt.restore(resume_step, with_sharding(state_to_dict(abstract)))
        )
        tqdm.write(f"resuming from {ckpt.directory / str(resume_step)}")
        return state
    state = jax.jit(init, out_shardings=repl)(init_rng)
    if tc.init_from:
        target = with_sharding({"params": abstract.params, "batch_stats": abstract.batch_stats})
        variables, _, _, from_step = checkpoints.restore_latest(tc.init_from, target)
        state = state.replace(**variables)
        tqdm.write(f"weights from {tc.init_from} (step {from_step})")
    return state


def describe_model(state: TrainState, frozen: tuple[str, ...], mesh) -> str:
    """ "model: N params (M trainable); D device(s) <platform>", then " in P processes" when
    there are several."""
    labels = param_labels(state.params, frozen)
    trainable = jax.tree.map(lambda x, lab: x if lab != "frozen" else None, state.params, labels)
    return (
        f"model: {count_params(state.params):,} params ({count_params(trainable):,} trainable); "
        f"{mesh.devices.size} device(s) {jax.devices()[0].platform}"
        + (f" in {jax.process_count()} processes" if jax.process_count() > 1 else "")
    )
