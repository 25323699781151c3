"""Small LeRobot ACT `pretrained_model` folders, written without torch, and LeRobot's normaliser
arithmetic in numpy, for the converter tests.

The folders follow what lerobot 0.4.4 saves (`PolicyProcessorPipeline._save_pretrained`: the
step list of `make_act_pre_post_processors`, one `<pipeline>_step_<i>_<registry>.safetensors`
per stateful step, holding every dataset statistic, unused ones included) and what lerobot
0.3.x saved (normalisation buffers inside model.safetensors). `lerobot_transform` is LeRobot's
`_apply_transform` (0.4.4, processor/normalize_processor.py) and `Normalize`/`Unnormalize`
(0.3.3, policies/normalize.py), transcribed in float32.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from act_jax import convert_lerobot as cl
from act_jax.model import ACT, IMAGENET_MEAN, IMAGENET_STD, ACTConfig

RANGES = {"MIN_MAX": ("min", "max"), "QUANTILES": ("q01", "q99"), "QUANTILE10": ("q10", "q90")}


def tiny_config(cameras=("top", "lateral"), **kw) -> ACTConfig:
    sizes = dict(
        image_size=(32, 32),
        chunk_size=4,
        dim_model=32,
        n_heads=4,
        dim_feedforward=48,
        n_encoder_layers=1,
        n_decoder_layers=1,
        n_vae_encoder_layers=1,
        latent_dim=4,
        backbone_width=1.0,
    )
    return ACTConfig(cameras=tuple(cameras), **{**sizes, **kw})


def random_variables(config: ACTConfig, seed: int = 0) -> dict:
    """Weights of `config`'s shapes drawn with numpy, no init run (an eager init of the full
    ResNet18 took ~60 s on this machine): He/LeCun-scaled kernels, N(0, 1) embeddings, and
    batch-norm and layer-norm variables off their 0/1 defaults, so that a dropped one shows."""
    images = {c: jnp.zeros((1, *config.image_size, 3), jnp.uint8) for c in config.cameras}
    shapes = jax.eval_shape(
        lambda: ACT(config).init(
            {"params": jax.random.key(0)}, images, jnp.zeros((1, config.state_dim)), train=False
        )
    )
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name, shape = path[-1].key, leaf.shape
        if name == "var":
            x = 0.5 + rng.random(shape)
        elif name in ("mean", "bias"):
            x = 0.1 * rng.standard_normal(shape)
        elif name == "scale":
            x = 0.75 + 0.5 * rng.random(shape)
        elif name == "kernel":  # (kh, kw, in, out) or (in, out): the fan-in is all but the last
            gain = 2.0 if len(shape) == 4 else 1.0
            x = rng.standard_normal(shape) * np.sqrt(gain / np.prod(shape[:-1]))
        else:  # embedding tables
            x = rng.standard_normal(shape)
        return x.astype(np.float32)

    return {col: jax.tree_util.tree_map_with_path(draw, shapes[col]) for col in shapes}


def dataset_stats(
    dim: int, rng: np.random.Generator, constant_last: bool = True, width=(20, 60)
) -> dict:
    """Every statistic LeRobot's dataset computes for a (dim,) feature, ranges `width` degrees
    wide; with `constant_last` the last dimension is constant (min == max, std 0), as a locked
    joint gives. (Actions get narrow ranges: float32 rounding times the action scale is what
    the 1e-4 in degrees compares, see bench/lerobot_fixtures.py.)"""
    lo = rng.uniform(-30, 0, dim).astype(np.float32)
    hi = (lo + rng.uniform(*width, dim)).astype(np.float32)
    if constant_last:
        hi[-1] = lo[-1]

    def at(frac):
        return (lo + np.float32(frac) * (hi - lo)).astype(np.float32)

    return {
        "mean": at(0.55),
        "std": ((hi - lo) / 4).astype(np.float32),
        "min": lo,
        "max": hi,
        "q01": at(0.01),
        "q99": at(0.99),
        "q10": at(0.1),
        "q90": at(0.9),
        "count": np.array([1000], np.int64),
    }


def lerobot_folder(
    path: Path,
    config: ACTConfig,
    variables: dict,
    *,
    camera_keys: list[str],
    modes: dict[str, str],
    layout: str = "0.4",
    seed: int = 0,
    constant_last: bool = True,
) -> dict:
    """Writes a LeRobot ACT folder; returns {"stats": feature -> stats, "modes": ..., "eps"}."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lerobot = cl.config_to_lerobot(config)
    h, w = config.image_size
    lerobot["input_features"] = {
        "observation.state": lerobot["input_features"]["observation.state"],
        **{k: {"type": "VISUAL", "shape": [3, h, w]} for k in camera_keys},
    }
    lerobot["normalization_mapping"] = dict(modes)
    lerobot.update(
        n_action_steps=config.chunk_size,
        temporal_ensemble_coeff=None,
        optimizer_lr=1e-5,
        optimizer_lr_backbone=1e-5,
        optimizer_weight_decay=1e-4,
        kl_weight=10.0,
        device="cuda",
    )
    stats = {
        "observation.state": dataset_stats(config.state_dim, rng, constant_last),
        "action": dataset_stats(config.action_dim, rng, constant_last, width=(6, 16)),
        "timestamp": dataset_stats(1, rng),
    }  # a dataset feature the policy does not use
    for key in camera_keys:
        stats[key] = {
            "mean": IMAGENET_MEAN.reshape(3, 1, 1),
            "std": IMAGENET_STD.reshape(3, 1, 1),
            "min": np.zeros((3, 1, 1), np.float32),
            "max": np.ones((3, 1, 1), np.float32),
        }
    (path / "config.json").write_text(json.dumps(lerobot, indent=4))
    tensors = cl.to_lerobot(variables, config)
    if layout == "v2":
        tensors.update(v2_buffers(lerobot, stats, modes))
    else:
        write_processors_as_lerobot(path, lerobot, stats, modes)
    cl.write_safetensors(path / "model.safetensors", tensors)
    return {"stats": stats, "modes": dict(modes), "eps": 1e-8, "layout": layout}


def v2_buffers(lerobot: dict, stats: dict, modes: dict) -> dict[str, np.ndarray]:
    """lerobot 0.3.x's `normalize_inputs` / `normalize_targets` / `unnormalize_outputs` buffers:
    mean/std or min/max per feature by its type's mode, images' shaped (3, 1, 1)."""
    out = {}
    groups = (
        ("normalize_inputs", lerobot["input_features"]),
        ("normalize_targets", lerobot["output_features"]),
        ("unnormalize_outputs", lerobot["output_features"]),
    )
    for prefix, features in groups:
        for key, feature in features.items():
            mode = modes.get(feature["type"], "IDENTITY")
            names = {"MEAN_STD": ("mean", "std"), "MIN_MAX": ("min", "max")}.get(mode, ())
            for stat in names:
                out[f"{prefix}.buffer_{key.replace('.', '_')}.{stat}"] = stats[key][stat]
    return out


def write_processors_as_lerobot(
    path: Path, lerobot: dict, stats: dict, modes: dict, eps: float = 1e-8
) -> None:
    """policy_{pre,post}processor.json and their state files, as lerobot 0.4.4 saves them."""
    features = {**lerobot["input_features"], **lerobot["output_features"]}
    flat = {f"{k}.{s}": v for k, d in stats.items() for s, v in d.items()}
    pre_file = "policy_preprocessor_step_3_normalizer_processor.safetensors"
    post_file = "policy_postprocessor_step_0_unnormalizer_processor.safetensors"
    device = {
        "registry_name": "device_processor",
        "config": {"device": "cuda", "float_dtype": None},
    }
    pre = {
        "name": "policy_preprocessor",
        "steps": [
            {"registry_name": "rename_observations_processor", "config": {"rename_map": {}}},
            {"registry_name": "to_batch_processor", "config": {}},
            device,
            {
                "registry_name": "normalizer_processor",
                "config": {"eps": eps, "features": features, "norm_map": modes},
                "state_file": pre_file,
            },
        ],
    }
    post = {
        "name": "policy_postprocessor",
        "steps": [
            {
                "registry_name": "unnormalizer_processor",
                "config": {"eps": eps, "features": lerobot["output_features"], "norm_map": modes},
                "state_file": post_file,
            },
            device,
        ],
    }
    (path / "policy_preprocessor.json").write_text(json.dumps(pre, indent=2))
    (path / "policy_postprocessor.json").write_text(json.dumps(post, indent=2))
    cl.write_safetensors(path / pre_file, flat)
    cl.write_safetensors(path / post_file, flat)


def lerobot_transform(
    x, mode: str, stats: dict, *, inverse: bool, layout: str, eps: float = 1e-8
) -> np.ndarray:
    """LeRobot's (un)normalisation of one feature, float32 as in torch."""
    x, f = np.asarray(x, np.float32), np.float32
    if mode == "IDENTITY":
        return x
    if mode == "MEAN_STD":
        mean, std = stats["mean"], stats["std"]
        return x * std + mean if inverse else (x - mean) / (std + f(eps))
    lo, hi = (stats[s] for s in RANGES[mode])
    if layout == "v2":
        if inverse:
            return (x + 1) / f(2) * (hi - lo) + lo
        return (x - lo) / (hi - lo + f(eps)) * 2 - 1
    denom = np.where(hi - lo == 0, f(eps), hi - lo).astype(np.float32)
    return (x + 1) / f(2) * denom + lo if inverse else f(2) * (x - lo) / denom - 1


def lerobot_chunk(
    folder: dict, config: ACTConfig, variables: dict, images: dict, state: np.ndarray
) -> np.ndarray:
    """`postprocessor(policy.predict_action_chunk(preprocessor(obs)))` for one observation: the
    network is ours (its weights convert exactly, bench/parity_lerobot.py), the normalisation
    LeRobot's. Images are uint8 (H, W, 3) by our camera names, in LeRobot's camera order."""
    s, m, layout = folder["stats"], folder["modes"], folder["layout"]
    norm_state = lerobot_transform(
        state, m.get("STATE", "IDENTITY"), s["observation.state"], inverse=False, layout=layout
    )
    batch = {c: jnp.asarray(images[c][None]) for c in config.cameras}
    out = ACT(config).apply(variables, batch, jnp.asarray(norm_state[None]), train=False)
    return lerobot_transform(
        np.asarray(out["actions"][0]),
        m.get("ACTION", "IDENTITY"),
        s["action"],
        inverse=True,
        layout=layout,
    )
