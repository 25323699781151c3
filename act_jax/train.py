r"""Trains ACT: one jitted, data-parallel step, orbax checkpoints, automatic resume.

    python -m act_jax.train --config configs/sim_default.py --workdir runs/sim_default
    python -m act_jax.train --config configs/sim_default.py --workdir runs/x \
        --config.train.num_steps=500 --config.data.augment.max_shift=4

Running again with the same workdir resumes from the newest checkpoint: parameters, optimiser
state and step are restored, the normalisation statistics come from the checkpoint, and the data
order is the one an uninterrupted run would have had (batches are a function of seed and step),
so an interrupted run ends where a straight one would. Ctrl-C (or SIGTERM) finishes the current
step, saves a checkpoint and exits with status 130; a second Ctrl-C aborts at once.

The workdir gets `checkpoints/` (see act_jax/checkpoints.py), `metrics.jsonl` (one JSON object per
log line), TensorBoard event files in `tb/`, and `config.json` / `norm_stats.json` for reading.

Several processes (`jax.distributed`) run the same command, joined by
`--config.train.distributed=True` or by `JAX_COORDINATOR_ADDRESS` / `JAX_NUM_PROCESSES` /
`JAX_PROCESS_ID` (`act_jax.sharding.maybe_initialize_distributed`); process 0 alone locks the
workdir, records missing demos and writes the files above (checkpoints: every process its part).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import jax
import ml_collections
import optax
from tqdm import tqdm

from act_jax import checkpoints, data, normalization, prepare_data, sharding, train_loop
from act_jax.config_ranges import ConfigError, apply_renamed, check_ranges
from act_jax.model import ACTConfig, act_loss
from act_jax.normalization import NormStats

# The trainer's parts, importable from here as tests and tools do (`train.create_train_state`).
from act_jax.optim import make_optimizer, make_schedule, param_labels
from act_jax.train_loop import TrainingInterrupted
from act_jax.train_state import (
    TrainState,
    create_train_state,
    describe_model,
    make_model,
    read_start,
    restore_or_init,
    state_to_dict,
)
from hardware.recording.episodes import EpisodeDamaged
from hardware.recording.folder_lock import FolderBusy, lock_folder

__all__ = [
    "ConfigError",
    "TrainResult",
    "TrainState",
    "TrainingInterrupted",
    "check_config",
    "create_train_state",
    "eval_step",
    "make_data",
    "make_model",
    "make_optimizer",
    "make_schedule",
    "param_labels",
    "read_start",
    "restore_or_init",
    "state_to_dict",
    "train_and_evaluate",
    "train_step",
]


def train_step(state: TrainState, batch: dict, rng: jax.Array, kl_weight: float):
    """One optimiser step. The dropout and latent keys are `fold_in(rng, state.step)`.

    Returns:
      (new state, {"loss", "l1", "kl", "grad_norm", "param_norm"} scalars).
    """
    step_rng = jax.random.fold_in(rng, state.step)
    dropout_rng, latent_rng = jax.random.split(step_rng)

    def loss_fn(params):
        outputs = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            batch["images"],
            batch["state"],
            batch["actions"],
            batch["action_is_pad"],
            train=True,
            rngs={"dropout": dropout_rng, "latent": latent_rng},
        )
        return act_loss(outputs, batch["actions"], batch["action_is_pad"], kl_weight)

    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads)
    metrics = dict(
        metrics, grad_norm=optax.tree.norm(grads), param_norm=optax.tree.norm(state.params)
    )
    return state, metrics


def eval_step(state: TrainState, batch: dict) -> dict:
    """Validation metrics at inference settings (no dropout, zero latent): {"l1"}."""
    outputs = state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats},
        batch["images"],
        batch["state"],
        train=False,
    )
    _, metrics = act_loss(outputs, batch["actions"], batch["action_is_pad"], 0.0)
    return {"l1": metrics["l1"]}


@dataclasses.dataclass
class TrainResult:
    state: TrainState
    step: int
    train_metrics: dict[str, float]  # the last logged window, averaged
    val_metrics: dict[str, float]  # the last validation
    train_step_traces: int  # 1 unless something forced a retrace (a recompilation)


# ----------------------------------------------------------------------------- checks


def check_config(config: ml_collections.ConfigDict, mesh=None) -> ACTConfig:
    """Everything about `config` that can be checked without touching the disk.

    Fields under their old names are moved to the new ones first (`apply_renamed`). Then the
    model (`ACTConfig`), the range of every numeric field (`act_jax.config_ranges`), the decode
    options, the schedule and, given the `mesh`, that the batch splits over it.

    Raises:
      ConfigError: naming the `config.<section>.<field>` that cannot work.
    """
    apply_renamed(config)
    try:
        model_config = ACTConfig.from_config(config.model)
        check_ranges(config)
        data.decode_options(config.data)
        make_schedule(config.train, config.train.lr)
        if mesh is not None:
            sharding.check_batch_size(config.train.batch_size, mesh)
    except ConfigError:
        raise
    except ValueError as e:  # these checks read only the config: every ValueError is about it
        raise ConfigError(str(e)) from None
    return model_config


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass
class TrainData:
    """What `make_data` gives the loop."""

    sampler: data.ChunkSampler  # the training episodes' batches
    val_batches: list[dict]  # on the devices; empty when there is no validation loss
    norm_stats: NormStats


def make_data(
    config: ml_collections.ConfigDict,
    model_config: ACTConfig,
    norm_stats: NormStats | None,
    batch_sharding: jax.sharding.Sharding,
) -> TrainData:
    """Builds the dataset if it is missing (`prepare_data.ensure_dataset`), reads and checks it,
    splits it by episode and makes the samplers. Writes nothing but a dataset that was missing.

    Args:
      norm_stats: the statistics to normalise with (a resumed run's or `init_from`'s); None:
        computed from the training episodes.
    """
    tc = config.train
    # One process builds a missing dataset; the others read it once it is there (a filesystem
    # every process sees, as for the workdir).
    if jax.process_index() == 0:
        dataset_dir = prepare_data.ensure_dataset(config.data, model_config.image_size)
    sharding.sync("dataset")
    if jax.process_index() > 0:
        dataset_dir = prepare_data.ensure_dataset(config.data, model_config.image_size)
    episodes = data.load_episodes(
        dataset_dir,
        model_config.cameras,
        model_config.image_size,
        model_config.state_dim,
        model_config.action_dim,
        **data.decode_options(config.data),
    )
    train_ids, val_ids = data.split_episodes(len(episodes), config.data.val_fraction, tc.seed)
    train_eps, val_eps = [episodes[i] for i in train_ids], [episodes[i] for i in val_ids]
    if norm_stats is None:
        norm_stats = normalization.compute(
            [e.state for e in train_eps], [e.action for e in train_eps]
        )
    rows = dict(
        chunk_size=model_config.chunk_size,
        batch_size=tc.batch_size,
        seed=tc.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    augment = config.data.augment
    sampler = data.ChunkSampler(
        train_eps, norm_stats, max_shift=augment.max_shift, brightness=augment.brightness, **rows
    )
    val_batches = []
    if val_eps and tc.val_loss_every > 0 and config.data.val_batches > 0:
        val_sampler = data.ChunkSampler(val_eps, norm_stats, **rows)
        val_batches = [
            jax.tree.map(lambda x: jax.make_array_from_process_local_data(batch_sharding, x), b)
            for b in val_sampler.fixed_batches(config.data.val_batches)
        ]
    tqdm.write(
        f"data: {dataset_dir}: {len(train_eps)} train episodes ({sampler.num_frames} frames), "
        f"{len(val_eps)} validation episodes"
    )
    return TrainData(sampler, val_batches, norm_stats)


def _global_spec(local_batch: dict) -> dict:
    """Shapes of the global batch, from this process's rows."""
    n = jax.process_count()
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct((x.shape[0] * n, *x.shape[1:]), x.dtype), local_batch
    )


# ----------------------------------------------------------------------------- train


def compile_steps(config: ml_collections.ConfigDict, mesh) -> tuple[train_loop.Steps, Callable]:
    """The train and eval steps, jitted once each with their shardings, and the train step's
    Python function, whose `traces` counts how often it was traced (`counting_traces`)."""
    tc = config.train
    repl, batch_sharding = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    step = train_loop.counting_traces(functools.partial(train_step, kl_weight=tc.kl_weight))
    return train_loop.Steps(
        train=jax.jit(
            step,
            in_shardings=(repl, batch_sharding, repl),
            out_shardings=(repl, repl),
            donate_argnums=0,
        ),
        eval=jax.jit(eval_step, in_shardings=(repl, batch_sharding), out_shardings=repl),
        lr=make_schedule(tc, tc.lr),
        rng=jax.random.split(jax.random.key(tc.seed))[1],
    ), step


def _checkpointer(config, workdir: Path, resume_step: int | None) -> checkpoints.Checkpointer:
    """The workdir's checkpoints, opened for writing, still at `resume_step` (`read_start` read
    it before the lock was taken, when the workdir was new)."""
    ckpt = checkpoints.Checkpointer(workdir, config.train.keep_checkpoints)
    if ckpt.latest_step() != resume_step:
        ckpt.close()
        raise FolderBusy(
            f"{workdir}: another training saved a checkpoint while this one started; run "
            "again to resume from it"
        )
    return ckpt


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    eval_fn: Callable[[TrainState, int], dict] | None = None,
) -> TrainResult:
    """Trains (or resumes training) until `config.train.num_steps`; returns the final state and
    the last logged metrics.

    In order: the config is checked; an existing workdir is locked; where the run starts is read
    (`read_start`); the data is made and checked (`make_data`); only then is a new workdir made
    (bad input leaves nothing on disk); the state is restored or initialised (`restore_or_init`)
    and the loop runs (`act_jax.train_loop.run_loop`).

    Args:
      config: the experiment config (see configs/sim_default.py).
      workdir: where checkpoints and metrics go; an existing checkpoint there is resumed.
      eval_fn: `eval_fn(state, step) -> {name: float}`, called every `config.eval.rollout_every`
        (e.g. success rate of sim rollouts); its results are logged as `eval/<name>`. The policy
        is `state.apply_fn` with `{"params": state.params, "batch_stats": state.batch_stats}`;
        its normalisation statistics are in `<workdir>/norm_stats.json`, written before step 0.

    Raises:
      ConfigError: a config that cannot work, or one that does not fit the checkpoints already
        in `workdir`.
      FolderBusy: another process trains in `workdir` (naming its pid).
      FloatingPointError: naming the step, when a loss or gradient is not finite (the bad state is
        not saved; the newest checkpoint is the last good one).
      TrainingInterrupted: after Ctrl-C / SIGTERM, once the checkpoint is saved.
    """
    tc = config.train
    workdir = Path(workdir)
    sharding.maybe_initialize_distributed(tc.distributed)
    mesh = sharding.make_mesh()
    model_config = check_config(config, mesh)
    is_main = jax.process_index() == 0
    repl, batch_sharding = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    lock = lambda: lock_folder(workdir, f"training to step {tc.num_steps}")

    # Everything below releases the lock and the checkpoint manager however it ends.
    with contextlib.ExitStack() as cleanup:
        locked = is_main and workdir.is_dir()
        if locked:  # a second training on this workdir stops here, naming the first
            cleanup.enter_context(lock())
        resume_step, norm_stats = read_start(config, workdir)
        train_data = make_data(config, model_config, norm_stats, batch_sharding)
        if is_main and not locked:
            cleanup.enter_context(lock())  # makes the workdir
        workdir.mkdir(parents=True, exist_ok=True)
        ckpt = cleanup.enter_context(
            contextlib.closing(_checkpointer(config, workdir, resume_step))
        )
        norm_stats = train_data.norm_stats
        if is_main:  # For people and eval hooks (checkpoints carry both as well).
            (workdir / "config.json").write_text(checkpoints.config_to_json(config))
            (workdir / "norm_stats.json").write_text(json.dumps(norm_stats.to_dict(), indent=1))
        spec = _global_spec(train_data.sampler.batch(0))
        state = restore_or_init(config, ckpt, resume_step, spec, repl)
        tqdm.write(describe_model(state, tuple(tc.frozen), mesh))
        steps, traced = compile_steps(config, mesh)
        start = int(jax.device_get(state.step))
        writer = cleanup.enter_context(
            contextlib.closing(train_loop.MetricWriter(workdir, is_main, start))
        )
        state, last_train, last_val = train_loop.run_loop(
            config,
            state,
            steps,
            train_data.sampler,
            train_data.val_batches,
            ckpt=ckpt,
            save=lambda done, s: ckpt.save(done, state_to_dict(s), config, norm_stats),
            writer=writer,
            eval_fn=eval_fn,
            batch_sharding=batch_sharding,
            show_progress=is_main,
        )
        return TrainResult(
            state, int(jax.device_get(state.step)), last_train, last_val, traced.traces
        )


# ----------------------------------------------------------------------------- command line

# Exit statuses of `python -m act_jax.train`: 2 for input it cannot use (a bad config, a workdir
# of another model or busy with another training), 1 for damaged files, 130 for Ctrl-C.
EXIT_BAD_INPUT, EXIT_DAMAGED, EXIT_INTERRUPTED = 2, 1, 130


def _exit(code: int) -> NoReturn:
    """`sys.exit(code)`; in a multi-process run the process leaves at once instead: jax's exit
    handler would wait for the other processes, which may be waiting for this one (at the
    dataset's barrier, say). Once it is gone, jax.distributed stops them too."""
    if jax.distributed.is_initialized():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main(argv):
    del argv
    from absl import flags, logging

    if not flags.FLAGS["verbosity"].present:  # orbax logs every file it writes at INFO
        logging.set_verbosity(logging.WARNING)

    config, workdir = flags.FLAGS.config, flags.FLAGS.workdir
    try:  # before demos are recorded, an evaluation is built or the workdir is made
        # First of all: jax.distributed must start before any other JAX computation.
        sharding.maybe_initialize_distributed(config.train.distributed)
        check_config(config)
    except ConfigError as e:
        if flags.FLAGS.debug:
            raise
        print(f"train: {e}", file=sys.stderr)
        _exit(EXIT_BAD_INPUT)
    eval_fn = None
    if config.eval.rollout_every > 0:
        # Rollouts need the simulator, which lives in `hardware`; act_jax may use it to evaluate.
        from act_jax.evaluate import make_train_eval_fn

        eval_fn = make_train_eval_fn(config, workdir)
    # Recording demos is the recorder's job, run here (the command line), not by the trainer;
    # in a multi-process run by process 0 alone (the others wait for the dataset in make_data).
    if jax.process_index() == 0:
        prepare_data.record_missing_demos(config.data, config.model.image_size)
    try:
        result = train_and_evaluate(config, workdir, eval_fn)
    except TrainingInterrupted as e:
        print(e, file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)  # every process saved: jax's exit handler is safe
    except (
        ConfigError,
        FolderBusy,
        checkpoints.CheckpointDamaged,
        EpisodeDamaged,
        data.DatasetDamaged,
    ) as e:
        if flags.FLAGS.debug:
            raise
        print(f"train: {e}", file=sys.stderr)
        _exit(EXIT_BAD_INPUT if isinstance(e, (ConfigError, FolderBusy)) else EXIT_DAMAGED)
    workdir = Path(workdir)
    if jax.process_index() > 0:
        return
    print(
        f"trained to step {result.step}: checkpoint {checkpoints.checkpoint_dir(workdir)}/"
        f"{result.step}; metrics {workdir / 'metrics.jsonl'}; "
        f"TensorBoard: tensorboard --logdir {workdir / 'tb'}"
    )


if __name__ == "__main__":
    from absl import app, flags
    from ml_collections import config_flags

    from act_jax import config_cli

    config_flags.DEFINE_config_file(
        "config",
        None,
        "Experiment config file (configs/*.py); override fields with "
        "--config.<section>.<field>=value.",
        lock_config=True,
    )
    flags.DEFINE_string(
        "workdir",
        None,
        "Directory for checkpoints and metrics; an existing checkpoint there is resumed.",
    )
    flags.DEFINE_bool(
        "debug",
        False,
        "A traceback for expected errors too (a bad flag or "
        "config value, a busy or damaged workdir), not just a one-line message.",
    )
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, flags_parser=config_cli.flags_parser("train"))
