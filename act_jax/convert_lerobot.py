"""LeRobot ACT weights <-> the project's flax variables, both directions, with no torch needed.

    from act_jax import convert_lerobot
    config, variables = convert_lerobot.load_pretrained("path/to/pretrained_model")
    outputs = ACT(config).apply(variables, images, state, train=False)

A LeRobot ACT checkpoint directory holds `config.json` (draccus-encoded ACTConfig) and
`model.safetensors` (the policy's state_dict, keys prefixed `model.`). One table, `key_map`, pairs
every LeRobot tensor with its place in our tree and says how the layout changes, and both
`from_lerobot` and `to_lerobot` are driven by it, so the two directions cannot drift apart:

    Linear  weight (out, in)            -> Dense kernel (in, out)
    Conv2d  weight (O, I, kh, kw)       -> Conv kernel (kh, kw, I, O)
    nn.MultiheadAttention in_proj_weight (3D, D) = [Wq; Wk; Wv] -> q_proj/k_proj/v_proj kernels
            (each block transposed), in_proj_bias (3D,) -> their biases; out_proj as a Linear
    LayerNorm weight/bias               -> scale/bias
    FrozenBatchNorm2d weight/bias/running_mean/running_var (all buffers in torchvision)
                                        -> "batch_stats" scale/bias/mean/var
    nn.Embedding weight                 -> the param itself (cls_embed, pos_embed_1d,
                                           decoder/query_pos_embed)

`model.vae_encoder_pos_enc` is a fixed sine table, recomputed by our model: on import it is checked
against ours rather than loaded. The module names map as in DESIGN's token layout: LeRobot's
`encoder_img_feat_input_proj` is our `input_proj`, `encoder_robot_state_input_proj` our
`state_proj`, `encoder_latent_input_proj` our `latent_proj`, `multihead_attn` our `cross_attn`,
`linear1/2` our `mlp/linear1/2`, `vae_encoder_*_proj` our `vae_encoder/*_proj`.

Not convertible (clear errors): an `observation.environment_state` input, a non-ResNet18 backbone,
dilation in layer4, a non-ReLU FFN, cameras of different sizes, and our backbone_width != 1.0.
Numerical parity with LeRobot itself is checked by `bench/parity_lerobot.py`.

This module is the weights and the model config only. The normalisation statistics (LeRobot's
processor files, or v2.x buffers) are `act_jax.lerobot_normalization`, and whole folders to and
from runnable project checkpoints are `python -m act_jax.convert`.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from act_jax.model import ACT, ACTConfig
from act_jax.transformer import sine_table_1d

PREFIX = "model."
QKV = ("q_proj", "k_proj", "v_proj")  # the row blocks of in_proj_weight, in order
POS_ENC_KEY = "vae_encoder_pos_enc"  # a buffer LeRobot saves; recomputed here, only checked
_BN = (("weight", "scale"), ("bias", "bias"), ("running_mean", "mean"), ("running_var", "var"))


# ---------------------------------------------------------------- the key table
def _linear(t: str, j: tuple) -> list:
    return [
        (f"{t}.weight", "params", j + ("kernel",), "linear"),
        (f"{t}.bias", "params", j + ("bias",), "copy"),
    ]


def _norm(t: str, j: tuple) -> list:
    return [
        (f"{t}.weight", "params", j + ("scale",), "copy"),
        (f"{t}.bias", "params", j + ("bias",), "copy"),
    ]


def _attention(t: str, j: tuple) -> list:
    return [
        (f"{t}.in_proj_weight", "params", j, "qkv_weight"),
        (f"{t}.in_proj_bias", "params", j, "qkv_bias"),
        *_linear(f"{t}.out_proj", j + ("out_proj",)),
    ]


def _encoder_layer(t: str, j: tuple) -> list:
    return [
        *_attention(f"{t}.self_attn", j + ("self_attn",)),
        *_linear(f"{t}.linear1", j + ("mlp", "linear1")),
        *_linear(f"{t}.linear2", j + ("mlp", "linear2")),
        *_norm(f"{t}.norm1", j + ("norm1",)),
        *_norm(f"{t}.norm2", j + ("norm2",)),
    ]


def _decoder_layer(t: str, j: tuple) -> list:
    return [
        *_attention(f"{t}.self_attn", j + ("self_attn",)),
        *_attention(f"{t}.multihead_attn", j + ("cross_attn",)),
        *_linear(f"{t}.linear1", j + ("mlp", "linear1")),
        *_linear(f"{t}.linear2", j + ("mlp", "linear2")),
        *[e for n in (1, 2, 3) for e in _norm(f"{t}.norm{n}", j + (f"norm{n}",))],
    ]


def _conv_bn(t_conv: str, t_bn: str, j_conv: tuple, j_bn: tuple) -> list:
    return [
        (f"{t_conv}.weight", "params", j_conv + ("kernel",), "conv"),
        *[(f"{t_bn}.{tn}", "batch_stats", j_bn + (jn,), "copy") for tn, jn in _BN],
    ]


def key_map(config: ACTConfig) -> list[tuple[str, str, tuple[str, ...], str]]:
    """Every LeRobot state_dict key (without `model.`) -> (collection, our path, transform).

    Transforms: "copy", "linear" (transpose), "conv" (OIHW -> HWIO), "qkv_weight"/"qkv_bias"
    (the stacked attention projection, whose "path" is the attention module: q/k/v_proj below it).
    """
    _check_convertible(config)
    bb = ("backbone",)
    table = _conv_bn("backbone.conv1", "backbone.bn1", bb + ("conv1",), bb + ("bn1",))
    for stage in range(1, 5):
        for block in (0, 1):
            t, j = f"backbone.layer{stage}.{block}", bb + (f"layer{stage}", f"block_{block}")
            for n in (1, 2):
                table += _conv_bn(f"{t}.conv{n}", f"{t}.bn{n}", j + (f"conv{n}",), j + (f"bn{n}",))
            if stage > 1 and block == 0:  # stride 2 and a channel change: the 1x1 projection
                table += _conv_bn(
                    f"{t}.downsample.0",
                    f"{t}.downsample.1",
                    j + ("downsample_conv",),
                    j + ("downsample_bn",),
                )
    table += [
        ("encoder_img_feat_input_proj.weight", "params", ("input_proj", "kernel"), "conv"),
        ("encoder_img_feat_input_proj.bias", "params", ("input_proj", "bias"), "copy"),
    ]
    table += _linear("encoder_robot_state_input_proj", ("state_proj",))
    table += _linear("encoder_latent_input_proj", ("latent_proj",))
    table += [
        ("encoder_1d_feature_pos_embed.weight", "params", ("pos_embed_1d",), "copy"),
        ("decoder_pos_embed.weight", "params", ("decoder", "query_pos_embed"), "copy"),
    ]
    for i in range(config.n_encoder_layers):
        table += _encoder_layer(f"encoder.layers.{i}", ("encoder", f"layer_{i}"))
    if config.pre_norm:
        table += _norm("encoder.norm", ("encoder", "norm"))
    for i in range(config.n_decoder_layers):
        table += _decoder_layer(f"decoder.layers.{i}", ("decoder", f"layer_{i}"))
    table += _norm("decoder.norm", ("decoder", "norm"))
    table += _linear("action_head", ("action_head",))
    if config.use_vae:
        v = ("vae_encoder",)
        for i in range(config.n_vae_encoder_layers):
            table += _encoder_layer(f"vae_encoder.layers.{i}", v + (f"layer_{i}",))
        if config.pre_norm:
            table += _norm("vae_encoder.norm", v + ("norm",))
        table += [("vae_encoder_cls_embed.weight", "params", v + ("cls_embed",), "copy")]
        table += _linear("vae_encoder_robot_state_input_proj", v + ("state_proj",))
        table += _linear("vae_encoder_action_input_proj", v + ("action_proj",))
        table += _linear("vae_encoder_latent_output_proj", v + ("latent_output_proj",))
    return table


def _check_convertible(config: ACTConfig) -> None:
    if config.backbone_width != 1.0:
        raise ValueError(
            f"config.model.backbone_width={config.backbone_width}: LeRobot's backbone is a full "
            "torchvision ResNet18, only backbone_width=1.0 converts"
        )


# ---------------------------------------------------------------- conversion
def _expected_shapes(config: ACTConfig) -> dict[str, dict[tuple, tuple]]:
    """Our variable shapes, without computing anything (param shapes do not depend on H, W)."""
    small = dataclasses.replace(config, image_size=(64, 64))
    images = {c: jnp.zeros((1, 64, 64, 3), jnp.uint8) for c in config.cameras}
    state = jnp.zeros((1, config.state_dim), jnp.float32)
    shapes = jax.eval_shape(
        lambda: ACT(small).init({"params": jax.random.key(0)}, images, state, train=False)
    )
    return {
        col: {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(tree).items()}
        for col, tree in shapes.items()
    }


def _strip(state_dict: Mapping) -> dict[str, np.ndarray]:
    out = {}
    for key, value in state_dict.items():
        key = key[len(PREFIX) :] if key.startswith(PREFIX) else key
        out[key] = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
    return out


def from_lerobot(state_dict: Mapping, config: ACTConfig) -> dict:
    """LeRobot ACT state_dict (numpy or torch tensors, with or without `model.`) -> variables.

    Returns:
        {"params": ..., "batch_stats": ...} float32 numpy trees for `ACT(config).apply`.

    Raises:
        ValueError naming every missing, unexpected or mis-shaped key.
    """
    sd = _strip(state_dict)
    expected = _expected_shapes(config)
    flat: dict[str, dict[tuple, np.ndarray]] = {"params": {}, "batch_stats": {}}
    missing, bad_shape = [], []
    table = key_map(config)
    for key, col, path, kind in table:
        if key not in sd:
            missing.append(key)
            continue
        w = sd[key].astype(np.float32)
        if kind in ("qkv_weight", "qkv_bias"):
            if w.shape[0] % 3:
                bad_shape.append(f"{key}: {w.shape} does not stack q, k, v")
                continue
            leaf = "kernel" if kind == "qkv_weight" else "bias"
            for name, part in zip(QKV, np.split(w, 3, axis=0), strict=True):
                flat[col][path + (name, leaf)] = part.T if leaf == "kernel" else part
        elif kind == "linear":
            flat[col][path] = w.T
        elif kind == "conv":
            flat[col][path] = w.transpose(2, 3, 1, 0)
        else:
            flat[col][path] = w
    used = {k for k, *_ in table}
    unexpected = sorted(set(sd) - used - {POS_ENC_KEY})
    for col, leaves in flat.items():
        for path, arr in leaves.items():
            want = expected[col].get(path)
            if want != arr.shape:
                bad_shape.append(f"{'/'.join(path)} ({col}): converted {arr.shape}, model {want}")
    unfilled = sorted("/".join(p) for col in expected for p in expected[col] if p not in flat[col])
    problems = []
    if missing:
        problems.append(f"missing LeRobot keys {missing}")
    if unexpected:
        problems.append(
            f"unexpected LeRobot keys {unexpected} (an env_state input, or a "
            "config that does not match the weights?)"
        )
    if bad_shape:
        problems.append("shape mismatches: " + "; ".join(bad_shape))
    if unfilled:
        problems.append(f"model variables with no LeRobot source {unfilled}")
    if problems:
        raise ValueError("LeRobot state_dict does not fit the ACT config: " + " | ".join(problems))
    if POS_ENC_KEY in sd:
        ours = sine_table_1d(2 + config.chunk_size, config.dim_model)[None]
        theirs = sd[POS_ENC_KEY]
        if theirs.shape != ours.shape or not np.allclose(theirs, ours, atol=1e-5):
            raise ValueError(
                f"{PREFIX}{POS_ENC_KEY}: the VAE sine table {theirs.shape} differs "
                f"from the model's {ours.shape}; the checkpoint is not LeRobot ACT's"
            )
    return {col: traverse_util.unflatten_dict(leaves) for col, leaves in flat.items()}


def to_lerobot(variables: Mapping, config: ACTConfig, *, prefix: str = PREFIX) -> dict:
    """Our variables -> a LeRobot ACT state_dict of float32 numpy arrays (`model.` keys).

    Includes the `vae_encoder_pos_enc` buffer, so the result loads with `strict=True`.
    """
    flat = {
        col: traverse_util.flatten_dict(dict(variables[col])) for col in ("params", "batch_stats")
    }
    out = {}
    for key, col, path, kind in key_map(config):
        if kind in ("qkv_weight", "qkv_bias"):
            leaf = "kernel" if kind == "qkv_weight" else "bias"
            parts = [np.asarray(flat[col][path + (n, leaf)]) for n in QKV]
            w = np.concatenate([p.T for p in parts] if leaf == "kernel" else parts, axis=0)
        else:
            w = np.asarray(flat[col][path])
            w = w.T if kind == "linear" else w.transpose(3, 2, 0, 1) if kind == "conv" else w
        out[prefix + key] = np.ascontiguousarray(w, dtype=np.float32)
    if config.use_vae:
        out[prefix + POS_ENC_KEY] = sine_table_1d(2 + config.chunk_size, config.dim_model)[None]
    return out


# ---------------------------------------------------------------- LeRobot files
def config_from_lerobot(lerobot_config: Mapping) -> ACTConfig:
    """LeRobot's ACT `config.json` (as a dict) -> ACTConfig; unsupported options raise."""
    c = dict(lerobot_config)

    def fail(field, why):
        raise ValueError(f"LeRobot config {field}={c.get(field)!r}: {why}")

    if c.get("type", "act") != "act":
        fail("type", "not an ACT policy")
    if c.get("vision_backbone", "resnet18") != "resnet18":
        fail("vision_backbone", "only resnet18 converts")
    if c.get("replace_final_stride_with_dilation"):
        fail("replace_final_stride_with_dilation", "dilated layer4 is not implemented")
    if c.get("feedforward_activation", "relu") != "relu":
        fail("feedforward_activation", "only relu is implemented")
    if c.get("n_obs_steps", 1) != 1:
        fail("n_obs_steps", "ACT uses one observation step")
    inputs = c.get("input_features") or {}
    cams, sizes, state_dim = [], set(), None
    for name, feat in inputs.items():
        kind, shape = feat["type"], tuple(feat["shape"])
        if kind == "VISUAL":
            cams.append(name.removeprefix("observation.images.").removeprefix("observation."))
            sizes.add(shape[1:])
        elif kind == "STATE":
            state_dim = shape[0]
        elif kind == "ENV":
            fail("input_features", f"{name} (environment state) is not supported")
    if not cams:
        fail("input_features", "no camera (VISUAL) input")
    if state_dim is None:
        fail("input_features", "no observation.state input")
    if len(sizes) != 1:
        fail("input_features", f"cameras must share one (H, W), got {sorted(sizes)}")
    action = (c.get("output_features") or {}).get("action")
    if action is None:
        fail("output_features", "no action output")
    return ACTConfig(
        cameras=tuple(cams),
        image_size=tuple(sizes.pop()),
        state_dim=int(state_dim),
        action_dim=int(action["shape"][0]),
        chunk_size=c.get("chunk_size", 100),
        dim_model=c.get("dim_model", 512),
        n_heads=c.get("n_heads", 8),
        dim_feedforward=c.get("dim_feedforward", 3200),
        n_encoder_layers=c.get("n_encoder_layers", 4),
        n_decoder_layers=c.get("n_decoder_layers", 1),
        n_vae_encoder_layers=c.get("n_vae_encoder_layers", 4),
        dropout=c.get("dropout", 0.1),
        pre_norm=c.get("pre_norm", False),
        use_vae=c.get("use_vae", True),
        latent_dim=c.get("latent_dim", 32),
        backbone_width=1.0,
        dtype="float32",
    )


_ST_DTYPES = {
    "F32": np.float32,
    "F16": np.float16,
    "F64": np.float64,
    "I64": np.int64,
    "I32": np.int32,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a .safetensors file (8-byte header length, JSON header, raw little-endian data)."""
    path = Path(path)
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[8 + n + start : 8 + n + end]
        if info["dtype"] == "BF16":  # numpy has no bfloat16: widen to float32 by bit shifting
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] in _ST_DTYPES:
            arr = np.frombuffer(raw, np.dtype(_ST_DTYPES[info["dtype"]]).newbyteorder("<"))
        else:
            raise ValueError(f"{path}: tensor {key} has unsupported dtype {info['dtype']}")
        out[key] = arr.reshape(info["shape"]).copy()
    return out


def write_safetensors(path: str | Path, tensors: Mapping[str, np.ndarray]) -> None:
    """Writes float32/int/bool numpy arrays as a .safetensors file (keys sorted, 8-byte aligned)."""
    names = {np.dtype(v): k for k, v in _ST_DTYPES.items()}
    header, chunks, offset = {}, [], 0
    for key in sorted(tensors):
        arr = np.ascontiguousarray(tensors[key])
        if arr.dtype not in names:
            raise ValueError(f"{key}: dtype {arr.dtype} cannot be written to safetensors here")
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[key] = {
            "dtype": names[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # the format pads the header to a multiple of 8 bytes
    Path(path).write_bytes(struct.pack("<Q", len(head)) + head + b"".join(chunks))


def config_to_lerobot(config: ACTConfig) -> dict:
    """ACTConfig -> LeRobot ACT `config.json` content (no pretrained backbone download on load)."""
    _check_convertible(config)
    h, w = config.image_size
    inputs = {"observation.state": {"type": "STATE", "shape": [config.state_dim]}}
    for cam in config.cameras:
        inputs[f"observation.images.{cam}"] = {"type": "VISUAL", "shape": [3, h, w]}
    return {
        "type": "act",
        "n_obs_steps": 1,
        "input_features": inputs,
        "output_features": {"action": {"type": "ACTION", "shape": [config.action_dim]}},
        "chunk_size": config.chunk_size,
        "n_action_steps": config.chunk_size,
        "vision_backbone": "resnet18",
        "pretrained_backbone_weights": None,
        "replace_final_stride_with_dilation": False,
        "pre_norm": config.pre_norm,
        "dim_model": config.dim_model,
        "n_heads": config.n_heads,
        "dim_feedforward": config.dim_feedforward,
        "feedforward_activation": "relu",
        "n_encoder_layers": config.n_encoder_layers,
        "n_decoder_layers": config.n_decoder_layers,
        "use_vae": config.use_vae,
        "latent_dim": config.latent_dim,
        "n_vae_encoder_layers": config.n_vae_encoder_layers,
        "dropout": config.dropout,
    }


def save_pretrained(directory: str | Path, config: ACTConfig, variables: Mapping) -> Path:
    """Writes config.json + model.safetensors that LeRobot's `ACTPolicy.from_pretrained` loads
    (no normalisation stats: LeRobot keeps them in its processor files)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config_to_lerobot(config), indent=4))
    write_safetensors(directory / "model.safetensors", to_lerobot(variables, config))
    return directory


def load_pretrained(directory: str | Path) -> tuple[ACTConfig, dict]:
    """A LeRobot `pretrained_model` directory (config.json + model.safetensors) -> (config, vars).

    Weights only: the normalisation statistics and modes are not applied by these variables;
    `act_jax.convert.read_lerobot` reads them too (and `python -m act_jax.convert` writes a
    checkpoint that applies them).
    """
    directory = Path(directory)
    for name in ("config.json", "model.safetensors"):
        if not (directory / name).is_file():
            raise FileNotFoundError(
                f"{directory / name}: not found (a LeRobot pretrained_model "
                "directory has config.json and model.safetensors)"
            )
    config = config_from_lerobot(json.loads((directory / "config.json").read_text()))
    return config, from_lerobot(read_safetensors(directory / "model.safetensors"), config)
