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
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state
from tqdm import tqdm

from act_jax import checkpoints, data, normalization, sharding, sim_demos
from act_jax.config_ranges import ConfigError, check_ranges
from act_jax.model import ACT, ACTConfig, act_loss, count_params
from hardware.recording.episodes import EpisodeDamaged
from hardware.recording.folder_lock import FolderBusy, lock_folder


class TrainState(train_state.TrainState):
    """Flax's TrainState plus the frozen BatchNorm statistics, which no optimiser ever sees."""

    batch_stats: Any = None


# ----------------------------------------------------------------------------- optimiser


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


# ----------------------------------------------------------------------------- state and steps


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


def state_to_dict(state: TrainState) -> dict:
    return {
        "step": state.step,
        "params": state.params,
        "batch_stats": state.batch_stats,
        "opt_state": state.opt_state,
    }


# ----------------------------------------------------------------------------- logging


class MetricWriter:
    """Scalars to `<workdir>/metrics.jsonl` and TensorBoard event files (process 0 only).

    On a resume from step `start`, rows logged after `start` by the run that was cut short (the
    steps after its last checkpoint, which this run trains again) are dropped first, so every
    step appears once.
    """

    def __init__(self, workdir: Path, enabled: bool = True, start: int = 0):
        self.enabled = enabled
        if enabled:
            from tensorboardX import SummaryWriter

            path = workdir / "metrics.jsonl"
            if start > 0 and path.exists():
                _drop_rows_after(path, start)
            self._tb = SummaryWriter(os.fspath(workdir / "tb"))
            self._jsonl = open(path, "a")  # noqa: SIM115 - closed in close()

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        for k, v in scalars.items():
            self._tb.add_scalar(k, v, step)
        self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


def _drop_rows_after(path: Path, step: int) -> None:
    """Rewrites metrics.jsonl (atomically) without the rows of steps after `step`."""
    keep = []
    for line in path.read_text().splitlines():
        try:
            row_step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by the crash
        if row_step <= step:
            keep.append(line + "\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(keep))
    os.replace(tmp, path)


class _StopRequest:
    """Turns the first SIGINT/SIGTERM into a flag the loop checks between steps (so a checkpoint
    is never taken from a half-donated state); a second one raises KeyboardInterrupt at once."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("stop requested: saving a checkpoint after this step (Ctrl-C again to abort)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class TrainingInterrupted(KeyboardInterrupt):
    """Raised after the checkpoint for a Ctrl-C / SIGTERM has been saved."""


@dataclasses.dataclass
class TrainResult:
    state: TrainState
    step: int
    train_metrics: dict[str, float]  # the last logged window, averaged
    val_metrics: dict[str, float]  # the last validation
    train_step_compilations: int  # 1 unless something forced a retrace


# ----------------------------------------------------------------------------- the loop


def _check_same_model(
    saved: ml_collections.ConfigDict, config: ml_collections.ConfigDict, workdir: Path
) -> None:
    """A workdir resumes only the model it was started with."""
    old = checkpoints.config_from_json(saved.model.to_json()).to_dict()
    new = checkpoints.config_from_json(config.model.to_json()).to_dict()
    diff = [
        f"config.model.{k}: {old.get(k)!r} in the checkpoint, {new.get(k)!r} now"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]
    if diff:
        raise ConfigError(
            f"{workdir} holds checkpoints of a different model; use another "
            "workdir or the same model config:\n  " + "\n  ".join(diff)
        )


def check_config(config: ml_collections.ConfigDict, mesh=None) -> ACTConfig:
    """Everything about `config` that can be checked without touching the disk.

    The model (`ACTConfig`), the range of every numeric field (`act_jax.config_ranges`), the decode
    options, the schedule and, given the `mesh`, that the batch splits over it.

    Raises:
      ConfigError: naming the `config.<section>.<field>` that cannot work.
    """
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


def _global_spec(local_batch: dict) -> dict:
    """Shapes of the global batch, from this process's rows."""
    n = jax.process_count()
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct((x.shape[0] * n, *x.shape[1:]), x.dtype), local_batch
    )


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    eval_fn: Callable[[TrainState, int], dict] | None = None,
) -> TrainResult:
    """Trains (or resumes training) until `config.train.num_steps`.

    Args:
      config: the experiment config (see configs/sim_default.py).
      workdir: where checkpoints and metrics go; an existing checkpoint there is resumed.
      eval_fn: `eval_fn(state, step) -> {name: float}`, called every `config.eval.every_steps`
        (e.g. success rate of sim rollouts); its results are logged as `eval/<name>`. The policy
        is `state.apply_fn` with `{"params": state.params, "batch_stats": state.batch_stats}`;
        its normalisation statistics are in `<workdir>/norm_stats.json`, written before step 0.

    Returns:
      The final state and the last logged metrics.

    Raises:
      ConfigError: a config that cannot work (nothing is written), or one that does not fit the
        checkpoints already in `workdir`.
      FloatingPointError: naming the step, when a loss or gradient is not finite (the bad state is
        not saved; the newest checkpoint is the last good one).
      TrainingInterrupted: after Ctrl-C / SIGTERM, once the checkpoint is saved.
    """
    tc = config.train
    workdir = Path(workdir)
    sharding.maybe_initialize_distributed(tc.distributed)
    mesh = sharding.make_mesh()
    model_config = check_config(config, mesh)  # a bad config fails before anything is written
    decode = data.decode_options(config.data)
    is_main = jax.process_index() == 0
    workdir.mkdir(parents=True, exist_ok=True)
    repl, batch_sharding = sharding.replicated(mesh), sharding.batch_sharding(mesh)

    # Everything below releases the checkpoint manager (and its threads) however it ends.
    with contextlib.ExitStack() as cleanup:
        if is_main:  # a second training on this workdir stops here, naming the first
            cleanup.enter_context(lock_folder(workdir, f"training to step {tc.num_steps}"))
        ckpt = cleanup.enter_context(
            contextlib.closing(checkpoints.Checkpointer(workdir, tc.keep_checkpoints))
        )
        resume_step = ckpt.latest_step()
        if resume_step is not None:
            try:
                saved_config, norm_stats, _ = ckpt.restore_metadata(resume_step)
            except Exception as e:  # noqa: BLE001 - orbax and json raise many types for one cause
                # Falling back here would train on past the damaged step's folder: refuse, and
                # say which folder to remove to resume from the step before it.
                earlier = [s for s in ckpt.all_steps() if s < resume_step]
                raise ckpt.damaged(resume_step, e, fallback=max(earlier, default=None)) from e
            _check_same_model(saved_config, config, workdir)
            if resume_step > tc.num_steps:
                # Its weights, not this run's, would be what an evaluation of the workdir loads.
                raise ConfigError(
                    f"{workdir} already holds a checkpoint at step {resume_step}, past "
                    f"config.train.num_steps={tc.num_steps}; use another workdir, or "
                    f"num_steps >= {resume_step} to go on from it"
                )
        elif tc.init_from:
            # Fine-tuning keeps the statistics the weights were trained with: inputs normalised
            # otherwise would shift under frozen layers, and outputs would change meaning.
            source = checkpoints.Checkpointer(tc.init_from, read_only=True)
            try:
                init_config, norm_stats, _ = source.restore_metadata()
            finally:
                source.close()
            _check_same_model(init_config, config, Path(tc.init_from))

        # ---- Data.
        dataset_dir = data.ensure_dataset(config.data, model_config.image_size)
        episodes = data.load_episodes(
            dataset_dir,
            model_config.cameras,
            model_config.image_size,
            model_config.state_dim,
            model_config.action_dim,
            **decode,
        )
        train_ids, val_ids = data.split_episodes(len(episodes), config.data.val_fraction, tc.seed)
        train_eps, val_eps = [episodes[i] for i in train_ids], [episodes[i] for i in val_ids]
        if resume_step is None and not tc.init_from:
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
        sampler = data.ChunkSampler(
            train_eps,
            norm_stats,
            max_shift=config.data.augment.max_shift,
            brightness=config.data.augment.brightness,
            **rows,
        )
        val_batches = []
        if val_eps and tc.eval_every > 0 and config.data.val_batches > 0:
            val_batches = [
                jax.tree.map(lambda x: jax.make_array_from_process_local_data(batch_sharding, x), b)
                for b in data.ChunkSampler(val_eps, norm_stats, **rows).fixed_batches(
                    config.data.val_batches
                )
            ]
        if is_main:  # For people and eval hooks (checkpoints carry both as well).
            (workdir / "config.json").write_text(checkpoints.config_to_json(config))
            (workdir / "norm_stats.json").write_text(json.dumps(norm_stats.to_dict(), indent=1))
        tqdm.write(
            f"data: {dataset_dir}: {len(train_eps)} train episodes ({sampler.num_frames} "
            f"frames), {len(val_eps)} validation episodes"
        )

        # ---- State: restored, or initialised directly with its sharding.
        rng = jax.random.key(tc.seed)
        init_rng, step_rng = jax.random.split(rng)
        spec = _global_spec(sampler.batch(0))
        init = lambda r: create_train_state(
            config, r, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), spec)
        )
        abstract = jax.eval_shape(init, init_rng)
        if resume_step is not None:
            target = jax.tree.map(
                lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl),
                state_to_dict(abstract),
            )
            state = abstract.replace(**ckpt.restore(resume_step, target))
            tqdm.write(f"resuming from {ckpt.directory / str(resume_step)}")
        else:
            state = jax.jit(init, out_shardings=repl)(init_rng)
            if tc.init_from:
                target = jax.tree.map(
                    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl),
                    {"params": abstract.params, "batch_stats": abstract.batch_stats},
                )
                variables, _, _, from_step = checkpoints.restore_latest(tc.init_from, target)
                state = state.replace(**variables)
                tqdm.write(f"weights from {tc.init_from} (step {from_step})")
        trainable = count_params(
            jax.tree.map(
                lambda x, lab: x if lab != "frozen" else None,
                abstract.params,
                param_labels(abstract.params, tuple(tc.frozen)),
            )
        )
        tqdm.write(
            f"model: {count_params(abstract.params):,} params ({trainable:,} trainable); "
            f"{mesh.devices.size} device(s) {jax.devices()[0].platform}"
        )

        # ---- Steps: compiled once each.
        p_train_step = jax.jit(
            functools.partial(train_step, kl_weight=tc.kl_weight),
            in_shardings=(repl, batch_sharding, repl),
            out_shardings=(repl, repl),
            donate_argnums=0,
        )
        p_eval_step = jax.jit(eval_step, in_shardings=(repl, batch_sharding), out_shardings=repl)
        lr_fn = make_schedule(tc, tc.lr)
        if config.eval.every_steps > 0 and eval_fn is None:
            tqdm.write("config.eval.every_steps > 0 but no eval_fn was given: rollouts are skipped")

        start = int(jax.device_get(state.step))
        writer = cleanup.enter_context(contextlib.closing(MetricWriter(workdir, is_main, start)))
        window: list[tuple[int, dict]] = []  # (step, device metrics) since the last fetch
        last_train: dict[str, float] = {}
        last_val: dict[str, float] = {}
        tick = [time.perf_counter(), start]

        def fetch_and_check() -> dict[str, float]:
            """Fetches the window's metrics (one transfer), fails on a non-finite value."""
            fetched = jax.device_get([m for _, m in window])
            for (step, _), m in zip(window, fetched, strict=True):
                bad = sorted(k for k, v in m.items() if not np.isfinite(v))
                if bad:
                    ckpt.wait()
                    raise FloatingPointError(
                        f"non-finite {', '.join(bad)} at step {step} (loss={m['loss']}): training "
                        f"stopped; the newest checkpoint, step {ckpt.latest_step()} in "
                        f"{ckpt.directory}, is the last good state. Lower config.train.lr or check "
                        "the data"
                    )
            mean = {f"train/{k}": float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
            last_step = window[-1][0]
            window.clear()
            now = time.perf_counter()
            mean["train/steps_per_s"] = (last_step + 1 - tick[1]) / max(now - tick[0], 1e-9)
            mean["train/lr"] = float(lr_fn(last_step))
            tick[:] = [now, last_step + 1]
            return mean

        with (
            _StopRequest() as stop,
            data.Prefetcher(sampler.batch, start, tc.num_steps, batch_sharding) as batches,
            tqdm(
                total=tc.num_steps,
                initial=start,
                desc="train",
                unit="step",
                disable=not is_main,
                dynamic_ncols=True,
            ) as bar,
        ):
            for step, batch in batches:
                state, metrics = p_train_step(state, batch, step_rng)
                window.append((step, metrics))
                done = step + 1
                bar.update(1)
                checkpoint_now = done % tc.checkpoint_every == 0 or done == tc.num_steps
                if done % tc.log_every == 0 or checkpoint_now or stop.requested:
                    last_train = fetch_and_check()
                    writer.write(done, last_train)
                    bar.set_postfix(
                        loss=f"{last_train['train/loss']:.4f}", l1=f"{last_train['train/l1']:.4f}"
                    )
                if val_batches and done % tc.eval_every == 0:
                    l1 = jax.device_get([p_eval_step(state, b)["l1"] for b in val_batches])
                    last_val = {"val/l1": float(np.mean(l1))}
                    writer.write(done, last_val)
                    tqdm.write(f"step {done}: validation L1 {last_val['val/l1']:.4f}")
                if (
                    eval_fn is not None
                    and config.eval.every_steps > 0
                    and done % config.eval.every_steps == 0
                ):
                    results = {f"eval/{k}": float(v) for k, v in eval_fn(state, done).items()}
                    writer.write(done, results)
                if stop.requested:
                    if window:
                        last_train = fetch_and_check()
                    ckpt.save(done, state_to_dict(state), config, norm_stats)
                    ckpt.wait()
                    raise TrainingInterrupted(
                        f"interrupted after step {done}; checkpoint saved in {ckpt.directory}. "
                        "Run the same command again to resume"
                    )
                if checkpoint_now:
                    ckpt.save(done, state_to_dict(state), config, norm_stats)
        return TrainResult(
            state, int(jax.device_get(state.step)), last_train, last_val, p_train_step._cache_size()
        )


# ----------------------------------------------------------------------------- command line


def main(argv):
    del argv
    from absl import flags, logging

    if not flags.FLAGS["verbosity"].present:  # orbax logs every file it writes at INFO
        logging.set_verbosity(logging.WARNING)

    config, workdir = flags.FLAGS.config, flags.FLAGS.workdir
    try:  # before demos are recorded, an evaluation is built or the workdir is made
        check_config(config)
    except ConfigError as e:
        if flags.FLAGS.debug:
            raise
        print(f"train: {e}", file=sys.stderr)
        sys.exit(2)
    eval_fn = None
    if config.eval.every_steps > 0:
        # Rollouts need the simulator, which lives in `hardware`; act_jax may use it to evaluate.
        from act_jax.evaluate import make_train_eval_fn

        eval_fn = make_train_eval_fn(config, workdir)
    # Recording demos is the recorder's job, run here (the command line), not by the trainer.
    sim_demos.record_missing_demos(config.data, config.model.image_size)
    try:
        result = train_and_evaluate(config, workdir, eval_fn)
    except TrainingInterrupted as e:
        print(e, file=sys.stderr)
        sys.exit(130)
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
        # 2: the workdir holds another model or steps past num_steps; 1: busy or damaged.
        sys.exit(2 if isinstance(e, ConfigError) else 1)
    workdir = Path(workdir)
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
