r"""LeRobot ACT `pretrained_model` folders <-> project checkpoints, as commands.

    python -m act_jax.convert --from-lerobot outputs/train/act/checkpoints/last/pretrained_model \
        --out runs/lerobot_act --cameras laptop=top,phone=lateral
    python -m act_jax.convert --to-lerobot runs/seed --out exported/pretrained_model

Import: the weights (`act_jax.convert_lerobot`: every `model.*` tensor mapped and shape-checked),
the model config, and the normalisation statistics (`act_jax.lerobot_normalization`: lerobot
0.4.x processor files, or v2.x buffers inside model.safetensors; every mode carried exactly or
refused naming the feature and the mode) become a workdir laid out as training writes it
(`checkpoints/0/` through `act_jax.checkpoints`, `config.json`, `norm_stats.json`), which
`act_jax.policy.Policy.from_checkpoint`, `python -m act_jax.evaluate`, `python -m interp.report`,
`python -m interp.freeze_finetune` and `python -m hardware.deploy` take as `--checkpoint`
(tests/test_convert.py runs the policy, act_jax.evaluate and interp.report on one;
tests/test_convert_fixtures.py imports checkpoints that lerobot 0.4.4 wrote and compares the
chunks with LeRobot's own).
The experiment config is `--base-config` (default configs/sim_default.py) with LeRobot's model,
execution (`n_action_steps`, `temporal_ensemble_coeff`) and optimiser settings, no dataset of its
own (pass `--dataset` to interp.report), and a `lerobot` section recording where it came from.
Camera keys map to ours (`--cameras laptop=top,phone=lateral`; names that already are `top` or
`lateral` map to themselves); LeRobot's camera order is kept. The workdir holds weights, not an
optimiser state: to train on from it, start a new workdir with `--config.train.init_from=WORKDIR`.

Export writes config.json, model.safetensors and the four processor files in the layout lerobot
0.4.4 writes, so `ACTPolicy.from_pretrained(DIR)` and `make_pre_post_processors(cfg,
pretrained_path=DIR)` load it with no migration (bench/lerobot_export_check.py runs an export
in LeRobot). Only full-width backbones export.

Bad input (not an ACT folder, a missing file, a mode that cannot be carried, cameras that do not
map, an output that is not empty) is one line on stderr, exit status 2, and nothing written.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

import ml_collections

from act_jax import checkpoints
from act_jax import convert_lerobot as cl
from act_jax import lerobot_normalization as ln
from act_jax.model import ACTConfig
from act_jax.normalization import NormStats
from hardware.conventions import CAMERA_NAMES

IMAGES = "observation.images."
EXIT_USAGE = 2
DEFAULT_BASE_CONFIG = "configs/sim_default.py"


class ConvertError(ValueError):
    """Input the converter refuses (named in one line)."""


# ---------------------------------------------------------------- cameras
def parse_camera_map(text: str | None) -> dict[str, str]:
    """ "laptop=top,phone=lateral" -> {"laptop": "top", "phone": "lateral"}."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        src, sep, dst = (s.strip() for s in item.partition("="))
        if not (sep and src and dst and dst.isidentifier()):
            raise ConvertError(
                f"--cameras {text!r}: write FROM=TO pairs, e.g. laptop=top,phone=lateral"
            )
        if src.removeprefix(IMAGES) in out:
            raise ConvertError(f"--cameras: {src} is mapped twice")
        out[src.removeprefix(IMAGES)] = dst
    return out


def map_cameras(keys: list[str], mapping: dict[str, str], *, direction: str) -> list[str]:
    """The names the camera `keys` (short names) take; `direction` words the error."""
    unused = sorted(set(mapping) - set(keys))
    if unused:
        raise ConvertError(
            f"--cameras names {unused}, which the {direction} has not (its cameras: {keys})"
        )
    names = []
    for key in keys:
        name = mapping.get(key, key if key in CAMERA_NAMES or direction == "project" else None)
        if name is None:
            raise ConvertError(
                f"camera {key!r} of the LeRobot checkpoint does not map to one of ours "
                f"{list(CAMERA_NAMES)}: pass --cameras {key}=top (one pair per camera)"
            )
        names.append(name)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConvertError(f"cameras {keys} map to {names}: {twice} given to two cameras")
    return names


# ---------------------------------------------------------------- import
def _lerobot_config(directory: Path) -> dict:
    for name in ("config.json", "model.safetensors"):
        if not (directory / name).is_file():
            raise FileNotFoundError(
                f"{directory / name}: not found (a LeRobot pretrained_model "
                "folder has config.json and model.safetensors)"
            )
    try:
        config = json.loads((directory / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise ConvertError(f"{directory / 'config.json'}: not JSON ({e})") from None
    if not isinstance(config, dict) or config.get("type") != "act":
        kind = config.get("type") if isinstance(config, dict) else type(config).__name__
        raise ConvertError(
            f"{directory / 'config.json'}: type={kind!r}, not a LeRobot ACT policy (type='act')"
        )
    return config


def _execution(lerobot_config: dict, chunk_size: int) -> str:
    """LeRobot's chunk execution as an `act_jax.execution` spec."""
    coeff = lerobot_config.get("temporal_ensemble_coeff")
    if coeff is not None:
        return f"ensemble:{float(coeff):g}"
    n = int(lerobot_config.get("n_action_steps", chunk_size))
    return "open_loop" if n >= chunk_size else f"receding:{n}"


def read_lerobot(directory: str | Path, cameras: dict[str, str] | None = None):
    """A LeRobot ACT folder -> (ACTConfig, variables, NormStats, provenance); writes nothing.

    Raises:
        FileNotFoundError, ConvertError, LeRobotStatsError, ValueError: naming what is wrong.
    """
    directory = Path(directory)
    lerobot_config = _lerobot_config(directory)
    model_config = cl.config_from_lerobot(lerobot_config)
    features = {
        **(lerobot_config.get("input_features") or {}),
        **(lerobot_config.get("output_features") or {}),
    }
    keys = [k for k, f in features.items() if f.get("type") == "VISUAL"]
    short = [k.removeprefix(IMAGES).removeprefix("observation.") for k in keys]
    names = map_cameras(short, cameras or {}, direction="LeRobot checkpoint")
    model_config = dataclasses.replace(model_config, cameras=tuple(names))
    tensors, buffers = ln.split_v2_buffers(cl.read_safetensors(directory / "model.safetensors"))
    if buffers:
        layout = "lerobot v2.x (normalisation buffers in model.safetensors)"
        pre, post = ln.read_v2_buffers(
            buffers,
            features,
            lerobot_config.get("normalization_mapping") or {},
            str(directory / "model.safetensors"),
        )
    elif ln.has_processors(directory):
        layout = "lerobot 0.4.x (processor files)"
        pre, post = ln.read_processors(directory)
    else:
        raise FileNotFoundError(
            f"{directory}: no normalisation statistics: neither {ln.PRE}.json and {ln.POST}.json "
            "(lerobot 0.4.x) nor normalize_inputs.* buffers in model.safetensors (v2.x)"
        )
    norm_stats = ln.to_norm_stats(pre, post, keys, model_config.state_dim, model_config.action_dim)
    variables = cl.from_lerobot(tensors, model_config)
    provenance = {
        "source": str(directory.absolute()),
        "layout": layout,
        "cameras": dict(zip(names, keys, strict=True)),
        "normalization": {k: pre.norm_map.get(k, "IDENTITY") for k in ("VISUAL", "STATE")}
        | {"ACTION": post.norm_map.get("ACTION", "IDENTITY")},
        "execution": _execution(lerobot_config, model_config.chunk_size),
        "optimizer": {
            k: lerobot_config[k]
            for k in (
                "optimizer_lr",
                "optimizer_lr_backbone",
                "optimizer_weight_decay",
                "kl_weight",
            )
            if k in lerobot_config
        },
    }
    return model_config, variables, norm_stats, provenance


def load_base_config(path: str | Path) -> ml_collections.ConfigDict:
    """`get_config()` of a config file (configs/*.py), as `act_jax.train --config` reads it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"--base-config {path}: not found (run from the repository root, "
            "or name a configs/*.py file)"
        )
    spec = importlib.util.spec_from_file_location(f"_base_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def experiment_config(
    base: ml_collections.ConfigDict, model_config: ACTConfig, provenance: dict
) -> ml_collections.ConfigDict:
    """`base` with LeRobot's model, execution and optimiser, no dataset, and `lerobot`."""
    config = ml_collections.ConfigDict(base.to_dict())
    config.model = ml_collections.ConfigDict(dataclasses.asdict(model_config))
    config.eval.execution = provenance["execution"]
    opt = provenance["optimizer"]
    t = config.train
    t.lr, t.lr_backbone = opt.get("optimizer_lr", t.lr), opt.get("optimizer_lr_backbone", t.lr)
    t.weight_decay = opt.get("optimizer_weight_decay", t.weight_decay)
    t.kl_weight = opt.get("kl_weight", t.kl_weight)
    d = config.data
    d.name, d.dataset_dir, d.episodes_dir, d.record_episodes = "lerobot_import", "", "", 0
    config.lerobot = ml_collections.ConfigDict(provenance)
    return config


def _fresh_output(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConvertError(f"--out {out}: exists and is not empty; name a new directory")


def _write_atomically(out: Path, write) -> Path:
    """`write(tmp)` into a sibling temporary folder, renamed to `out` when complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        write(tmp)
        if out.exists():
            out.rmdir()  # empty (checked before)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def import_lerobot(
    directory: str | Path,
    out: str | Path,
    *,
    cameras: dict[str, str] | None = None,
    base_config: str | Path = DEFAULT_BASE_CONFIG,
) -> Path:
    """`python -m act_jax.convert --from-lerobot DIR --out WORKDIR`; returns the workdir."""
    out = Path(out)
    _fresh_output(out)
    model_config, variables, norm_stats, provenance = read_lerobot(directory, cameras)
    config = experiment_config(load_base_config(base_config), model_config, provenance)

    def write(tmp: Path) -> None:
        state = {**variables, "step": 0, "opt_state": {}}
        checkpoints.save(tmp, 0, state, config, norm_stats, keep=1)
        (tmp / "config.json").write_text(checkpoints.config_to_json(config))
        (tmp / "norm_stats.json").write_text(json.dumps(norm_stats.to_dict(), indent=1))

    return _write_atomically(out, write)


# ---------------------------------------------------------------- export
def check_exportable(model_config: ACTConfig) -> None:
    if model_config.backbone_width != 1.0:
        raise ConvertError(
            f"config.model.backbone_width={model_config.backbone_width}: LeRobot's ACT builds a "
            "full torchvision ResNet18 (64 to 512 channels) and has no setting for a narrower "
            "one, so these weights have nowhere to go; to export, train with "
            "--config.model.backbone_width=1.0 (configs/seed.py is ACT's full size)"
        )


def lerobot_config(
    config: ml_collections.ConfigDict, model_config: ACTConfig, camera_keys: list[str]
) -> dict:
    """config.json of lerobot 0.4.x's ACTConfig for the project `config`."""
    out = cl.config_to_lerobot(model_config)
    h, w = model_config.image_size
    inputs = {ln.STATE: out["input_features"][ln.STATE]}
    inputs.update({k: {"type": "VISUAL", "shape": [3, h, w]} for k in camera_keys})
    out["input_features"] = inputs
    out["normalization_mapping"] = {"VISUAL": "MEAN_STD", "STATE": "MEAN_STD", "ACTION": "MEAN_STD"}
    kind, _, arg = str(config.eval.get("execution", "open_loop")).partition(":")
    out["n_action_steps"], out["temporal_ensemble_coeff"] = model_config.chunk_size, None
    if kind == "receding":
        out["n_action_steps"] = int(arg)
    elif kind == "ensemble":  # LeRobot ensembles only with a new chunk every step
        out["n_action_steps"], out["temporal_ensemble_coeff"] = 1, float(arg or 0.01)
    t = config.train
    out.update(
        optimizer_lr=float(t.lr),
        optimizer_lr_backbone=float(t.lr_backbone),
        optimizer_weight_decay=float(t.weight_decay),
        kl_weight=float(t.kl_weight),
        device="cpu",
        use_amp=False,
        push_to_hub=False,
    )
    return out


def camera_keys(
    config: ml_collections.ConfigDict, model_config: ACTConfig, mapping: dict[str, str]
) -> list[str]:
    """LeRobot feature keys of our cameras: `mapping` (ours -> LeRobot name) first, then the
    keys an imported checkpoint came with (`config.lerobot.cameras`), then our names."""
    names = map_cameras(list(model_config.cameras), mapping, direction="project")
    origin = dict(config.get("lerobot", {}).get("cameras", {}) or {})
    return [
        IMAGES + name if cam in mapping or cam not in origin else origin[cam]
        for cam, name in zip(model_config.cameras, names, strict=True)
    ]


def export_lerobot(
    workdir: str | Path, out: str | Path, *, cameras: dict[str, str] | None = None
) -> Path:
    """`python -m act_jax.convert --to-lerobot WORKDIR --out DIR`; returns DIR."""
    out = Path(out)
    _fresh_output(out)
    ckpt = checkpoints.Checkpointer(workdir, read_only=True)
    try:  # the config first: a narrow backbone is refused before any weight is read
        config, _, _ = ckpt.restore_metadata()
    finally:
        ckpt.close()
    check_exportable(ACTConfig.from_config(config.model))
    variables, config, norm_stats, _ = checkpoints.restore_latest(workdir)
    model_config = ACTConfig.from_config(config.model)
    keys = camera_keys(config, model_config, cameras or {})
    lerobot = lerobot_config(config, model_config, keys)

    def write(tmp: Path) -> None:
        (tmp / "config.json").write_text(json.dumps(lerobot, indent=4))
        cl.write_safetensors(tmp / "model.safetensors", cl.to_lerobot(variables, model_config))
        ln.write_processors(tmp, norm_stats, image_size=model_config.image_size, cameras=keys)

    return _write_atomically(out, write)


# ---------------------------------------------------------------- command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m act_jax.convert",
        description="LeRobot ACT pretrained_model <-> project checkpoint",
    )
    way = p.add_mutually_exclusive_group(required=True)
    way.add_argument("--from-lerobot", metavar="DIR", help="a LeRobot ACT pretrained_model folder")
    way.add_argument("--to-lerobot", metavar="WORKDIR", help="a project workdir (or checkpoints/)")
    p.add_argument("--out", required=True, help="the new workdir (import) or folder (export)")
    p.add_argument(
        "--cameras",
        default=None,
        help="camera names, FROM=TO pairs: laptop=top,phone=lateral on import, "
        "top=laptop,lateral=phone on export (default: unchanged)",
    )
    p.add_argument(
        "--base-config",
        default=DEFAULT_BASE_CONFIG,
        help="import: the config file whose data/train/eval fields the workdir's "
        "config starts from (default %(default)s)",
    )
    args = p.parse_args(argv)
    try:
        cameras = parse_camera_map(args.cameras)
        if args.from_lerobot:
            out = import_lerobot(
                args.from_lerobot, args.out, cameras=cameras, base_config=args.base_config
            )
            stats = NormStats.from_dict(json.loads((out / "norm_stats.json").read_text()))
            print(
                f"wrote {out}: a project checkpoint (state dim {len(stats.state_mean)}, "
                f"action dim {len(stats.action_mean)}) from {args.from_lerobot}"
            )
        else:
            out = export_lerobot(args.to_lerobot, args.out, cameras=cameras)
            print(f"wrote {out}: a LeRobot ACT pretrained_model ({ln.WRITER_LAYOUT} layout)")
    except (ValueError, FileNotFoundError) as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
