"""The fast path of a decoder-only fine-tune: run the frozen front once, train on its output.

When every trainable parameter is in the decoder or the action head (the presets
`action_head`, `decoder_mlp`, `decoder_cross_attn`, `decoder`), the frozen backbone and encoder
turn each training frame into the same memory tokens at every step: their input is the frame
itself, as long as there is no VAE latent (`model.use_vae`) and no image augmentation. This
path computes that memory once per frame (`encode_all`, inference mode), keeps it in host
memory (frames x tokens x D float32: 8000 frames of the CPU default are about 100 MB), and
trains on it with the trainer's own parts: `act_jax.train.make_optimizer` (AdamW, clipping,
schedule, the frozen mask), `act_jax.model.act_loss`, the trainer's key derivation, and the
trainer's batch order (`ChunkSampler.frames_for`).

It equals the masked path (`act_jax.train.train_step` on full frames) step for step when dropout
is off: tested to float tolerance. With dropout on, the one difference is that the frozen
encoder's dropout is not applied (the memory is computed in inference mode); the decoder's is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from act_jax.model import ACT, act_loss
from interp.batches import padded

# What may train on cached memory: everything after the encoder.
AFTER_ENCODER = (r"^decoder/", r"^action_head/")


def cache_blocker(config, trainable: Sequence[str], params) -> str | None:
    """Why the fast path cannot stand in for the masked one (None: it can).

    Args:
      config: the fine-tune's experiment config.
      trainable: regexes of the trainable parameters.
      params: the parameter tree (to list what the regexes select).
    """
    from interp import params as P

    selected = P.select(params, trainable)
    outside = [k for k in selected if not any(re.search(p, k) for p in AFTER_ENCODER)]
    if outside:
        return (
            f"{len(outside)} trainable tensors lie before the decoder (e.g. {outside[0]}): "
            "only decoder and action-head fine-tunes can train on cached memory"
        )
    if config.model.get("use_vae", False):
        return "config.model.use_vae: the latent token changes the memory at every step"
    aug = config.data.get("augment", {})
    if aug.get("max_shift", 0) or aug.get("brightness", 0.0):
        return "config.data.augment is on: augmented frames change the memory at every step"
    return None


def encode_all(
    model: ACT, variables: dict, sampler, batch_size: int = 64, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(memory (N, T, D) float32, pos (1, T, D)) of every frame of `sampler` (a ChunkSampler),
    in its flat frame order, at inference settings."""
    from tqdm import tqdm

    encode = jax.jit(lambda v, i, s: model.apply(v, i, s, method=ACT.encode, train=False))
    chunks, pos = [], None
    n = sampler.num_frames
    pieces = padded(n, batch_size)  # one shape for every call: one compile
    for rows, keep in tqdm(
        pieces, total=-(-n // batch_size), desc="cache memory", unit="batch", disable=not progress
    ):
        batch = sampler.gather(rows)
        memory, pos = encode(variables, batch["images"], batch["state"])
        chunks.append(np.asarray(memory[:keep], np.float32))
    return np.concatenate(chunks), np.asarray(pos)


def cached_train_step(state, memory, pos, actions, action_is_pad, rng):
    """`act_jax.train.train_step` with the encoder's output given: one optimiser step of the
    decoder and head. Same keys (`fold_in(rng, state.step)`), loss and metrics."""
    step_rng = jax.random.fold_in(rng, state.step)
    dropout_rng, _ = jax.random.split(step_rng)

    def loss_fn(params):
        out = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            memory,
            pos,
            method=ACT.decode,
            train=True,
            rngs={"dropout": dropout_rng},
        )
        return act_loss({"actions": out}, actions, action_is_pad, 0.0)

    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads)
    metrics = dict(
        metrics, grad_norm=optax.tree.norm(grads), param_norm=optax.tree.norm(state.params)
    )
    return state, metrics


def train_on_cache(
    state,
    sampler,
    memory: np.ndarray,
    pos: np.ndarray,
    steps: int,
    rng: jax.Array,
    log_every: int = 50,
    progress: bool = True,
):
    """Runs `steps` cached steps from `state` (a `act_jax.train.TrainState` whose optimiser
    freezes everything but the decoder and head) on the sampler's batch order.

    Returns (state, [{"step", "train/loss", ...}] every `log_every` steps)."""
    from tqdm import tqdm

    step_fn = jax.jit(cached_train_step)
    pos = jnp.asarray(pos)
    rows = []
    start = int(state.step)
    bar = tqdm(
        range(start, start + steps), desc="fine-tune (cached)", unit="step", disable=not progress
    )
    for step in bar:
        frames = sampler.frames_for(step)
        targets = sampler.gather_targets(frames)
        state, metrics = step_fn(
            state,
            jnp.asarray(memory[frames]),
            pos,
            targets["actions"],
            targets["action_is_pad"],
            rng,
        )
        if (step + 1) % log_every == 0 or step + 1 == start + steps:
            row = {"step": step + 1, **{f"train/{k}": float(v) for k, v in metrics.items()}}
            rows.append(row)
            bar.set_postfix(loss=f"{row['train/loss']:.4f}")
    return state, rows


def finetune_cached(config, base_variables: dict, norm_stats, workdir, *, progress: bool = True):
    """The whole fine-tune of `config` (as `act_jax.train.train_and_evaluate` would run it from
    `base_variables`) on cached memory: the same episodes, split, batch order, optimiser and
    steps. Writes `config.json`, `norm_stats.json`, `metrics.jsonl` and the final checkpoint into
    `workdir`, as the trainer does, so every command that reads a training workdir reads it.

    Returns the final `act_jax.train.TrainState`.
    """
    import json
    from pathlib import Path

    from act_jax import checkpoints, data, prepare_data, train

    m, tc = config.model, config.train
    dataset_dir = prepare_data.ensure_dataset(config.data, m.image_size)
    episodes = data.load_episodes(
        dataset_dir,
        m.cameras,
        m.image_size,
        m.state_dim,
        m.action_dim,
        **data.decode_options(config.data),
    )
    train_ids, _ = data.split_episodes(len(episodes), config.data.val_fraction, tc.seed)
    sampler = data.ChunkSampler(
        [episodes[i] for i in train_ids], norm_stats, m.chunk_size, tc.batch_size, tc.seed
    )
    model = train.make_model(config)
    state = train.TrainState.create(
        apply_fn=model.apply,
        params=base_variables["params"],
        batch_stats=base_variables.get("batch_stats", {}),
        tx=train.make_optimizer(tc),
    )
    memory, pos = encode_all(model, base_variables, sampler, progress=progress)
    _, step_rng = jax.random.split(jax.random.key(tc.seed))  # the trainer's derivation
    state, rows = train_on_cache(
        state,
        sampler,
        memory,
        pos,
        tc.num_steps,
        step_rng,
        log_every=tc.get("log_every", 50),
        progress=progress,
    )
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(checkpoints.config_to_json(config))
    (workdir / "norm_stats.json").write_text(json.dumps(norm_stats.to_dict(), indent=1))
    with open(workdir / "metrics.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    checkpoints.save(workdir, int(state.step), train.state_to_dict(state), config, norm_stats)
    return state
