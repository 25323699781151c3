"""LeRobot's normalisation statistics <-> `NormStats`, read from both layouts LeRobot has written.

- lerobot 0.4.x (read and written; the writer follows lerobot 0.4.4): the statistics live beside
  the weights in processor pipelines, `policy_preprocessor.json` (steps rename, to_batch, device,
  `normalizer_processor`) and `policy_postprocessor.json` (`unnormalizer_processor`, device), each
  stateful step's tensors in `<pipeline>_step_<i>_<registry name>.safetensors` with flat keys
  `<feature>.<stat>` (`observation.state.mean`, `action.std`, `observation.images.top.mean`).
  The modes are the step config's `norm_map` (feature type -> mode), its `eps` the epsilon.
- v2.x (lerobot <= 0.3.x, read only): the buffers sit inside `model.safetensors`, as
  `normalize_inputs.buffer_<feature with . -> _>.<stat>` (and `normalize_targets.`,
  `unnormalize_outputs.`); the modes are `config.json`'s `normalization_mapping`.

Every mode LeRobot's ACT can use is an affine map per dimension, so each is carried exactly as
the `(x - mean) / std` and `y * std + mean` that the project's policy applies (same arithmetic up
to float32 rounding; the formulas are transcribed from lerobot 0.4.4's
`processor/normalize_processor.py` and 0.3.3's `policies/normalize.py`):

    mode                  normalise (state)                       un-normalise (action)
    MEAN_STD              mean, std + eps                         mean, std
    MIN_MAX / QUANTILES / lo, hi = (min, max) / (q01, q99) / (q10, q90); d = hi - lo
      QUANTILE10          0.4.x: d = eps where d == 0; v2.x: d + 1e-8 when normalising
                          mean = lo + d / 2, std = d / 2          the same
    IDENTITY              mean 0, std 1                           mean 0, std 1

A constant action dimension keeps a scale of eps rather than 0 (see `to_norm_stats`), and a
constant state dimension in a range mode a scale of its float32 spacing (`_constant_safe`).

Images are the exception: the model applies ImageNet's statistics itself (act_jax/model.py), so
camera features convert only with MEAN_STD and ImageNet's mean and std (LeRobot's default,
`dataset.use_imagenet_stats=True`); anything else is refused naming the camera and the mode.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from act_jax.convert_lerobot import read_safetensors, write_safetensors
from act_jax.model import IMAGENET_MEAN, IMAGENET_STD
from act_jax.normalization import NormStats

WRITER_LAYOUT = "lerobot 0.4.4"
PRE, POST = "policy_preprocessor", "policy_postprocessor"
NORMALIZER, UNNORMALIZER = "normalizer_processor", "unnormalizer_processor"
STATE, ACTION = "observation.state", "action"
RANGE_STATS = {"MIN_MAX": ("min", "max"), "QUANTILES": ("q01", "q99"), "QUANTILE10": ("q10", "q90")}
MODES = ("MEAN_STD", "IDENTITY", *RANGE_STATS)
V2_INPUTS, V2_OUTPUTS = "normalize_inputs.", "unnormalize_outputs."
V2_TARGETS = "normalize_targets."  # the training targets' copy of the action statistics
V2_EPS = 1e-8  # hard-coded in lerobot 0.3.x's Normalize
IMAGE_ATOL = 1e-6
# Written with eps 0: the project's stds are clipped at MIN_STD already, and with no epsilon
# LeRobot's (x - mean) / (std + eps) is exactly the project's (x - mean) / std.
EXPORT_EPS = 0.0


class LeRobotStatsError(ValueError):
    """Statistics that are missing, malformed, or in a mode the project cannot carry."""


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """One LeRobot (un)normaliser step: where it came from, its modes and its statistics.

    Attributes:
        source: the file it was read from (named in errors).
        layout: "0.4" or "v2".
        norm_map: feature type ("STATE", "VISUAL", "ACTION") -> mode.
        stats: feature key -> stat name -> array.
        eps: the epsilon of its arithmetic.
        inverse: True for the un-normaliser (model output -> robot units).
    """

    source: str
    layout: str
    norm_map: dict[str, str]
    stats: dict[str, dict[str, np.ndarray]]
    eps: float
    inverse: bool

    def affine(self, feature: str, kind: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std), float64 (dim,)-like, such that LeRobot's map is (x - mean) / std
        (normaliser) or y * std + mean (un-normaliser)."""
        mode = self.norm_map.get(kind, "IDENTITY")  # LeRobot's default for an unmapped type
        if mode not in MODES:
            raise LeRobotStatsError(
                f"{self.source}: {feature} ({kind}) uses normalisation mode "
                f"{mode}, which LeRobot's ACT does not define"
            )
        if mode == "IDENTITY":
            return np.zeros(dim), np.ones(dim)
        got = self.stats.get(feature)
        need = ("mean", "std") if mode == "MEAN_STD" else RANGE_STATS[mode]
        if got is None or any(s not in got for s in need):
            raise LeRobotStatsError(
                f"{self.source}: no {'/'.join(need)} statistics for {feature}, whose {kind} "
                f"mode is {mode} (LeRobot would pass it through unnormalised)"
            )
        a, b = (np.asarray(got[s], np.float64) for s in need)
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise LeRobotStatsError(
                f"{self.source}: {feature} statistics {need} are not finite "
                "(buffers never filled from a dataset?)"
            )
        if mode == "MEAN_STD":
            return a, b if self.inverse else b + self.eps
        d = b - a
        if self.layout == "v2":
            d = d if self.inverse else d + self.eps
        else:
            d = np.where(d == 0, self.eps, d)
        if self.inverse:
            return a + d / 2, d / 2
        return _constant_safe(a, d / 2)


def _constant_safe(lo: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo + half, half) for a range mode's normaliser, with a dimension of (near) zero range
    kept exact in float32: LeRobot maps its value `lo` to -1, but `lo + eps / 2` rounds back to
    `lo` in float32 and would map it to 0; there the scale becomes the float32 spacing at `lo`,
    so `lo` still maps to exactly -1 (other values are far out of range either way)."""
    lo32 = np.asarray(lo, np.float32)
    spacing = np.abs(np.spacing(lo32)).astype(np.float64)
    tiny = half < 4 * spacing
    half = np.where(tiny, np.maximum(half, spacing), half)
    mean = np.where(tiny, (lo32 + half.astype(np.float32)).astype(np.float64), lo + half)
    return mean, half


# ---------------------------------------------------------------- reading 0.4.x
def _step(directory: Path, pipeline: str, registry_name: str) -> dict:
    path = directory / f"{pipeline}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: not found (lerobot 0.4.x saves {PRE}.json and "
            f"{POST}.json beside model.safetensors)"
        )
    try:
        steps = json.loads(path.read_text())["steps"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise LeRobotStatsError(f"{path}: not a LeRobot processor file ({e})") from None
    found = [s for s in steps if s.get("registry_name") == registry_name]
    if len(found) != 1:
        raise LeRobotStatsError(f"{path}: expected one {registry_name} step, found {len(found)}")
    return found[0]


def _unflatten(flat: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, value in flat.items():
        feature, _, stat = key.rpartition(".")
        out.setdefault(feature, {})[stat] = value
    return out


def _read_step(directory: Path, pipeline: str, registry_name: str, inverse: bool) -> Normalizer:
    step = _step(directory, pipeline, registry_name)
    config = step.get("config") or {}
    state_file = step.get("state_file")
    if not state_file or not (directory / state_file).is_file():
        raise FileNotFoundError(
            f"{directory / (state_file or f'{pipeline}_step_*_{registry_name}.safetensors')}: "
            f"not found (the statistics of {pipeline}.json's {registry_name} step)"
        )
    return Normalizer(
        str(directory / state_file),
        "0.4",
        dict(config.get("norm_map") or {}),
        _unflatten(read_safetensors(directory / state_file)),
        float(config.get("eps", 1e-8)),
        inverse,
    )


def read_processors(directory: str | Path) -> tuple[Normalizer, Normalizer]:
    """(normaliser, un-normaliser) of a lerobot 0.4.x `pretrained_model` folder."""
    directory = Path(directory)
    return (
        _read_step(directory, PRE, NORMALIZER, inverse=False),
        _read_step(directory, POST, UNNORMALIZER, inverse=True),
    )


def has_processors(directory: str | Path) -> bool:
    return any((Path(directory) / f"{p}.json").exists() for p in (PRE, POST))


# ---------------------------------------------------------------- reading v2.x
def split_v2_buffers(state_dict: Mapping[str, np.ndarray]) -> tuple[dict, dict]:
    """(model tensors, normalisation buffers) of a model.safetensors."""
    buffers = {
        k: v for k, v in state_dict.items() if k.startswith((V2_INPUTS, V2_TARGETS, V2_OUTPUTS))
    }
    return {k: v for k, v in state_dict.items() if k not in buffers}, buffers


def read_v2_buffers(
    buffers: Mapping[str, np.ndarray],
    features: Mapping[str, dict],
    norm_map: Mapping[str, str],
    source: str,
) -> tuple[Normalizer, Normalizer]:
    """(normaliser, un-normaliser) from v2.x buffers; `features`: config.json's input and output
    features (buffer names replace "." by "_", so they are matched against these)."""
    by_buffer = {"buffer_" + key.replace(".", "_"): key for key in features}
    stats: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    unknown = []
    for key, value in buffers.items():
        prefix, rest = key.split(".", 1)
        name, _, stat = rest.rpartition(".")
        if name not in by_buffer:
            unknown.append(key)
            continue
        stats.setdefault(prefix, {}).setdefault(by_buffer[name], {})[stat] = value
    if unknown:
        raise LeRobotStatsError(
            f"{source}: normalisation buffers {sorted(unknown)} match no "
            f"feature of config.json ({sorted(features)})"
        )
    modes = dict(norm_map)
    return (
        Normalizer(source, "v2", modes, stats.get(V2_INPUTS[:-1], {}), V2_EPS, False),
        Normalizer(source, "v2", modes, stats.get(V2_OUTPUTS[:-1], {}), V2_EPS, True),
    )


# ---------------------------------------------------------------- to NormStats
def _check_image(normalizer: Normalizer, feature: str) -> None:
    mode = normalizer.norm_map.get("VISUAL", "IDENTITY")
    why = (
        "the model applies ImageNet's statistics to images itself, so cameras convert only "
        "with MEAN_STD and ImageNet's mean and std"
    )
    if mode != "MEAN_STD":
        raise LeRobotStatsError(f"{normalizer.source}: {feature} (VISUAL) uses mode {mode}: {why}")
    mean, std = normalizer.affine(feature, "VISUAL", 3)
    mean, std = mean.reshape(-1), std.reshape(-1)
    if not (
        np.allclose(mean, IMAGENET_MEAN, atol=IMAGE_ATOL)
        and np.allclose(std, IMAGENET_STD, atol=IMAGE_ATOL)
    ):
        raise LeRobotStatsError(
            f"{normalizer.source}: {feature} (VISUAL, MEAN_STD) has mean "
            f"{mean.tolist()} and std {std.tolist()}: {why}"
        )


def to_norm_stats(
    pre: Normalizer, post: Normalizer, cameras: list[str], state_dim: int, action_dim: int
) -> NormStats:
    """The project's statistics equal to LeRobot's pipelines; `cameras`: LeRobot feature keys.

    Raises:
        LeRobotStatsError: naming the file, the feature and the mode that cannot be carried.
    """
    for feature in cameras:
        _check_image(pre, feature)
    state_mean, state_std = pre.affine(STATE, "STATE", state_dim)
    action_mean, action_std = post.affine(ACTION, "ACTION", action_dim)
    # A constant action dimension (std or range 0) keeps a scale of eps: the chunk moves by at
    # most eps times the normalised action, and training on from the checkpoint has no 0 to
    # divide by.
    action_std = np.where(action_std == 0, post.eps or V2_EPS, action_std)
    values = dict(
        state_mean=state_mean, state_std=state_std, action_mean=action_mean, action_std=action_std
    )
    for name, value in values.items():
        source, want = (
            (pre.source, state_dim) if name.startswith("state") else (post.source, action_dim)
        )
        if np.shape(value) != (want,):
            raise LeRobotStatsError(
                f"{source}: {name} has shape {np.shape(value)}, the model ({want},)"
            )
        if name == "state_std" and not np.all(value > 0):
            raise LeRobotStatsError(f"{source}: {name} {value.tolist()} is not positive")
    return NormStats(**{k: np.asarray(v, np.float32) for k, v in values.items()})


# ---------------------------------------------------------------- writing 0.4.x
def _features(state_dim: int, action_dim: int, image_size, cameras) -> tuple[dict, dict]:
    h, w = image_size
    inputs = {STATE: {"type": "STATE", "shape": [state_dim]}}
    for cam in cameras:
        inputs[cam] = {"type": "VISUAL", "shape": [3, h, w]}
    return inputs, {ACTION: {"type": "ACTION", "shape": [action_dim]}}


def write_processors(
    directory: str | Path, norm_stats: NormStats, *, image_size, cameras: list[str]
) -> list[Path]:
    """Writes the four processor files of lerobot 0.4.4's ACT (`make_act_pre_post_processors`)
    for `norm_stats` (MEAN_STD everywhere, ImageNet for the `cameras`' feature keys)."""
    directory = Path(directory)
    inputs, outputs = _features(
        len(norm_stats.state_mean), len(norm_stats.action_mean), image_size, cameras
    )
    norm_map = {"VISUAL": "MEAN_STD", "STATE": "MEAN_STD", "ACTION": "MEAN_STD"}
    action = {f"{ACTION}.mean": norm_stats.action_mean, f"{ACTION}.std": norm_stats.action_std}
    pre_stats = {
        f"{STATE}.mean": norm_stats.state_mean,
        f"{STATE}.std": norm_stats.state_std,
        **action,
    }
    for cam in cameras:
        pre_stats[f"{cam}.mean"] = IMAGENET_MEAN.reshape(3, 1, 1)
        pre_stats[f"{cam}.std"] = IMAGENET_STD.reshape(3, 1, 1)
    device = {"registry_name": "device_processor", "config": {"device": "cpu", "float_dtype": None}}
    pre_file, post_file = (
        f"{PRE}_step_3_{NORMALIZER}.safetensors",
        f"{POST}_step_0_{UNNORMALIZER}.safetensors",
    )
    pre = {
        "name": PRE,
        "steps": [
            {"registry_name": "rename_observations_processor", "config": {"rename_map": {}}},
            {"registry_name": "to_batch_processor", "config": {}},
            device,
            {
                "registry_name": NORMALIZER,
                "config": {
                    "eps": EXPORT_EPS,
                    "features": {**inputs, **outputs},
                    "norm_map": norm_map,
                },
                "state_file": pre_file,
            },
        ],
    }
    post = {
        "name": POST,
        "steps": [
            {
                "registry_name": UNNORMALIZER,
                "config": {"eps": EXPORT_EPS, "features": outputs, "norm_map": norm_map},
                "state_file": post_file,
            },
            device,
        ],
    }
    write_safetensors(
        directory / pre_file, {k: np.asarray(v, np.float32) for k, v in pre_stats.items()}
    )
    write_safetensors(
        directory / post_file, {k: np.asarray(v, np.float32) for k, v in action.items()}
    )
    written = [directory / pre_file, directory / post_file]
    for name, content in ((PRE, pre), (POST, post)):
        (directory / f"{name}.json").write_text(json.dumps(content, indent=2))
        written.append(directory / f"{name}.json")
    return written
