"""The training loop: steps from the prefetcher, metrics fetched every N steps, checkpoints, Ctrl-C.

`act_jax.train.train_and_evaluate` restores or initialises the state, makes the data and compiles
the steps; `run_loop` then runs steps `start .. num_steps - 1`. Per step it may, in this order:
log the training metrics (`config.train.log_every`, one device-to-host transfer for the window
since the last log; a non-finite value stops training), compute the validation loss
(`config.train.val_loss_every`), run the rollout evaluation (`config.eval.rollout_every`), and
save a checkpoint (`config.train.checkpoint_every` and the last step). Rows of `metrics.jsonl`
carry the number of steps done (`step + 1`), the same number as the checkpoint they go with.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from act_jax import data, sharding


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


class StopRequest:
    """Turns the first SIGINT/SIGTERM into a flag the loop checks between steps (so a checkpoint
    is never taken from a half-donated state); a second one raises KeyboardInterrupt at once.

    With several processes (a scheduler's SIGTERM reaches each at its own step) they stop
    together: `now` asks all of them at log and checkpoint steps, and stops every one there
    when any was asked.
    """

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        when = "this step" if jax.process_count() == 1 else "the next log step, with every process"
        tqdm.write(f"stop requested: saving a checkpoint after {when} (Ctrl-C again to abort)")

    def now(self, sync_point: bool) -> bool:
        """Whether to stop after this step. `sync_point`: a step every process syncs at (the
        same steps in each); only there is a multi-process run asked (one all-gather)."""
        if jax.process_count() == 1:
            return self.requested
        if not sync_point:
            return False
        return bool(np.any(multihost_utils.process_allgather(np.asarray(self.requested))))

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


def counting_traces(fn: Callable) -> Callable:
    """`fn`, counting in its `traces` attribute how often it runs as Python: under `jax.jit` that
    is once per trace (a new input shape, dtype or sharding), so more than 1 means a retrace."""

    def traced(*args, **kwargs):
        traced.traces += 1
        return fn(*args, **kwargs)

    traced.traces = 0
    return traced


@dataclasses.dataclass
class Steps:
    """What the loop runs: the jitted steps, the schedule it logs and the key it trains with."""

    train: Callable  # (state, batch, rng) -> (state, metrics), donating state
    eval: Callable  # (state, batch) -> {"l1"}
    lr: Callable[[int], float]
    rng: jax.Array  # train_step folds the step in


class MetricWindow:
    """The device metrics of the steps since the last fetch, fetched in one transfer."""

    def __init__(self, lr: Callable[[int], float], start: int):
        self._rows: list[tuple[int, dict]] = []
        self._lr = lr
        self._tick = (time.perf_counter(), start)

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, step: int, metrics: dict) -> None:
        self._rows.append((step, metrics))

    def fetch(self, ckpt) -> dict[str, float]:
        """The window's means as `train/<name>`, with `train/steps_per_s` and `train/lr`.

        Raises:
          FloatingPointError: naming the step and the newest checkpoint (the last good state)
            when a value is not finite.
        """
        fetched = jax.device_get([m for _, m in self._rows])
        for (step, _), m in zip(self._rows, fetched, strict=True):
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
        last_step = self._rows[-1][0]
        self._rows.clear()
        now = time.perf_counter()
        mean["train/steps_per_s"] = (last_step + 1 - self._tick[1]) / max(now - self._tick[0], 1e-9)
        mean["train/lr"] = float(self._lr(last_step))
        self._tick = (now, last_step + 1)
        return mean


def _periodic_evals(config, done, state, steps, val_batches, eval_fn, writer) -> dict | None:
    """The validation loss and the sim rollouts due after step `done`, written to `writer`.
    Returns the validation metrics when they were due."""
    val = None
    if val_batches and done % config.train.val_loss_every == 0:
        l1 = jax.device_get([steps.eval(state, b)["l1"] for b in val_batches])
        val = {"val/l1": float(np.mean(l1))}
        writer.write(done, val)
        tqdm.write(f"step {done}: validation L1 {val['val/l1']:.4f}")
    every = config.eval.rollout_every
    # Rollouts run in process 0 alone, on its copy of the weights; the others wait for it at
    # the next step.
    if eval_fn is not None and every > 0 and done % every == 0 and jax.process_index() == 0:
        scores = eval_fn(sharding.local_copy(state), done)
        writer.write(done, {f"eval/{k}": float(v) for k, v in scores.items()})
    return val


def run_loop(
    config: ml_collections.ConfigDict,
    state: Any,
    steps: Steps,
    sampler: data.ChunkSampler,
    val_batches: list[dict],
    *,
    ckpt,
    save: Callable[[int, Any], None],
    writer: MetricWriter,
    eval_fn: Callable[[Any, int], dict] | None,
    batch_sharding: jax.sharding.Sharding,
    show_progress: bool = True,
) -> tuple[Any, dict[str, float], dict[str, float]]:
    """Trains from `state.step` to `config.train.num_steps`.

    Args:
      val_batches: validation batches already on the devices (empty: no validation loss).
      ckpt: the workdir's `act_jax.checkpoints.Checkpointer` (waited on, named in errors).
      save: `save(steps_done, state)` writes a checkpoint.

    Returns:
      (final state, last logged training metrics, last validation metrics).

    Raises:
      FloatingPointError: see `MetricWindow.fetch`.
      TrainingInterrupted: after Ctrl-C / SIGTERM, once the checkpoint is saved.
    """
    tc = config.train
    if config.eval.rollout_every > 0 and eval_fn is None:
        tqdm.write("config.eval.rollout_every > 0 but no eval_fn was given: rollouts are skipped")
    start = int(jax.device_get(state.step))
    window = MetricWindow(steps.lr, start)
    last_train: dict[str, float] = {}
    last_val: dict[str, float] = {}
    with (
        StopRequest() as stop,
        data.Prefetcher(sampler.batch, start, tc.num_steps, batch_sharding) as batches,
        tqdm(
            total=tc.num_steps,
            initial=start,
            desc="train",
            unit="step",
            disable=not show_progress,
            dynamic_ncols=True,
        ) as bar,
    ):
        for step, batch in batches:
            state, metrics = steps.train(state, batch, steps.rng)
            window.add(step, metrics)
            done = step + 1
            bar.update(1)
            checkpoint_now = done % tc.checkpoint_every == 0 or done == tc.num_steps
            if done % tc.log_every == 0 or checkpoint_now or stop.requested:
                last_train = window.fetch(ckpt)
                writer.write(done, last_train)
                bar.set_postfix(
                    loss=f"{last_train['train/loss']:.4f}", l1=f"{last_train['train/l1']:.4f}"
                )
            last_val = (
                _periodic_evals(config, done, state, steps, val_batches, eval_fn, writer)
                or last_val
            )
            if stop.now(sync_point=done % tc.log_every == 0 or checkpoint_now):
                if window:
                    last_train = window.fetch(ckpt)
                save(done, state)
                ckpt.wait()
                raise TrainingInterrupted(
                    f"interrupted after step {done}; checkpoint saved in {ckpt.directory}. "
                    "Run the same command again to resume"
                )
            if checkpoint_now:
                save(done, state)
    return state, last_train, last_val
