"""Time the project's JAX ACT (train step or batch-1 inference) at given shapes; print JSON.

The JAX twin of `bench/lerobot_act.py`, run in the project's .venv:

    .venv/bin/python bench/jax_act.py --mode train --steps 3
    .venv/bin/python bench/jax_act.py --mode infer --spec '{"image_size": [96, 128], "batch": 32}'

`bench/compare_lerobot.py` calls it once per (preset, mode) in a fresh process, so that the peak RSS
it reports (compile included) belongs to that workload alone.

The workload mirrors LeRobot's per-step work in JAX terms: one `jax.jit` (compiled ahead of time,
so compile time is reported on its own) of `value_and_grad` of `act_loss` (KL weight 10, dropout
on, a VAE posterior sample) -> `optax.clip_by_global_norm(10)` -> `optax.adamw(1e-5, b1 0.9,
b2 0.999, eps 1e-8, weight_decay 1e-4)`, with params and optimizer state donated. Inference is a
jitted batch-1 `ACT.apply(..., train=False)` returning the action chunk.

The spec keys are those of `bench/lerobot_act.py` plus `backbone_width` (1.0 = ResNet18; LeRobot
can only do 1.0). Images are random uint8 (the model normalises them itself), state/actions random
normals, the last 10% of each chunk padded: the same shapes and masks the LeRobot side gets.
"""

import dataclasses
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import act_bench_common  # noqa: E402 (beside this script)
from act_bench_common import SHARED_SPEC, peak_rss_mb  # noqa: E402

DEFAULT_SPEC = {
    **SHARED_SPEC,
    "backbone_width": 1.0,
    "backbone_conv": "xla",
    "backbone_pool": "xla",
}
KL_WEIGHT = 10.0  # LeRobot's ACTConfig.kl_weight


def act_config(spec: dict):
    """The project's ACTConfig for a bench spec (float32, as the LeRobot side)."""
    from act_jax.model import ACTConfig

    fields = {f.name for f in dataclasses.fields(ACTConfig)}
    return ACTConfig(**{k: v for k, v in spec.items() if k in fields}, dtype="float32")


def make_batch(spec: dict, batch_size: int, seed: int = 0) -> dict:
    """Random numpy batch: images camera -> (B, H, W, 3) uint8, state (B, S), actions (B, C, A)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    h, w = spec["image_size"]
    c = spec["chunk_size"]
    pad = np.zeros((batch_size, c), bool)
    pad[:, c - max(1, c // 10) :] = True  # the chunk runs past the episode end
    return {
        "images": {
            cam: rng.integers(0, 256, (batch_size, h, w, 3), np.uint8) for cam in spec["cameras"]
        },
        "state": rng.standard_normal((batch_size, spec["state_dim"]), np.float32),
        "actions": rng.standard_normal((batch_size, c, spec["action_dim"]), np.float32),
        "action_is_pad": pad,
    }


def _train_step(model, spec: dict, params, batch_stats, seed: int):
    """The compiled train step and one call of it: (step(), compile seconds, losses so far)."""
    import jax
    import jax.numpy as jnp
    import optax

    from act_jax.model import act_loss

    batch = jax.device_put(make_batch(spec, spec["batch"], seed))
    tx = optax.chain(
        optax.clip_by_global_norm(10.0),
        optax.adamw(1e-5, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4),
    )
    opt_state = tx.init(params)
    base_rng = jax.random.key(seed + 1)

    def train_step(params, opt_state, batch, step):
        drop_rng, latent_rng = jax.random.split(jax.random.fold_in(base_rng, step))

        def loss_fn(p):
            out = model.apply(
                {"params": p, "batch_stats": batch_stats},
                batch["images"],
                batch["state"],
                batch["actions"],
                batch["action_is_pad"],
                train=True,
                rngs={"dropout": drop_rng, "latent": latent_rng},
            )
            return act_loss(out, batch["actions"], batch["action_is_pad"], KL_WEIGHT)

        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    t0 = time.perf_counter()
    compiled = (
        jax.jit(train_step, donate_argnums=(0, 1))
        .lower(params, opt_state, batch, jnp.int32(0))
        .compile()
    )
    compile_s = time.perf_counter() - t0
    state = {"params": params, "opt": opt_state, "step": 0}
    losses = []

    def step():
        state["params"], state["opt"], loss = compiled(
            state["params"], state["opt"], batch, jnp.int32(state["step"])
        )
        state["step"] += 1
        losses.append(float(loss))  # blocks until the step is done

    return step, compile_s, losses


def _inference(model, spec: dict, variables, seed: int):
    """The compiled batch-1 inference and one call of it: (step(), compile seconds, the output
    shape once called)."""
    import jax

    batch = jax.device_put(make_batch(spec, 1, seed))

    def infer(variables, images, state):
        return model.apply(variables, images, state, train=False)["actions"]

    t0 = time.perf_counter()
    compiled = jax.jit(infer).lower(variables, batch["images"], batch["state"]).compile()
    compile_s = time.perf_counter() - t0
    out_shape = []

    def step():
        actions = jax.block_until_ready(compiled(variables, batch["images"], batch["state"]))
        out_shape[:] = list(actions.shape)

    return step, compile_s, out_shape


def device_peak_mb(jax) -> float | None:
    """Peak bytes the first device's allocator has held, in MiB (None where it does not say:
    XLA:CPU keeps no such count; RSS stands for it there)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def run(spec: dict, mode: str, steps: int, warmup: int, seed: int) -> dict:
    """Build, compile and time `mode` ("train" or "infer"); return the result record."""
    os.environ["JAX_PLATFORMS"] = "cuda" if spec["device"] == "gpu" else "cpu"
    import jax

    from act_jax.model import ACT, count_params, init_variables

    if mode not in ("train", "infer"):
        raise ValueError(f"--mode must be 'train' or 'infer', got {mode!r}")
    rss_start = peak_rss_mb()
    model = ACT(act_config(spec))
    t0 = time.perf_counter()
    variables = jax.block_until_ready(init_variables(model, jax.random.key(seed)))
    build_s = time.perf_counter() - t0
    params, batch_stats = variables["params"], variables["batch_stats"]
    if mode == "train":
        step, compile_s, losses = _train_step(model, spec, params, batch_stats, seed)
    else:
        step, compile_s, out_shape = _inference(model, spec, variables, seed)
    rss_after_compile = peak_rss_mb()
    load_before = os.getloadavg()
    first, times = act_bench_common.timed(step, warmup, steps)
    record = {
        "impl": "jax",
        "mode": mode,
        "spec": spec,
        "batch_size": spec["batch"] if mode == "train" else 1,
        "n_params": count_params(params),
        "n_params_backbone": count_params(params.get("backbone", {})),
        "n_batch_stats": count_params(batch_stats),
        "build_s": build_s,
        "compile_s": compile_s,
        "first_call_s": first,
        "times_s": times,
        "median_s": statistics.median(times),
        "warmup": warmup,
        "steps": steps,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_after_compile_mb": rss_after_compile,
        "rss_at_start_mb": rss_start,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device_kind": jax.local_devices()[0].device_kind,
        "device_peak_mb": device_peak_mb(jax),
        # XLA's default on a GPU may run float32 matmuls and convolutions as TF32.
        "default_matmul_precision": jax.config.jax_default_matmul_precision,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_model": act_bench_common.cpu_model(),
        "cpus_allowed": len(os.sched_getaffinity(0)),
    }
    if mode == "train":
        record["losses"] = losses
    else:
        record["output_shape"] = out_shape
    return record


def main(argv=None) -> int:
    return act_bench_common.main(
        run,
        DEFAULT_SPEC,
        "Time the JAX ACT (train step or batch-1 inference); prints one JSON object.",
        "untimed calls after compile (>= 1)",
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
