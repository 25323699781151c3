r"""Small LeRobot ACT checkpoints written by LeRobot itself, with LeRobot's own action chunks,
stored compactly as test fixtures (tests/fixtures/lerobot/, checked by
tests/test_convert_fixtures.py).

    bash bench/lerobot_env.sh                                    # once: the LeRobot venv
    bench/.venvs/lerobot/bin/python bench/lerobot_fixtures.py   # writes tests/fixtures/lerobot
    .venv/bin/python bench/lerobot_fixtures.py --parity          # imports them: the figures

For each of `FIXTURES` (one and two cameras, MEAN_STD and MIN_MAX state/action normalisation) it
builds lerobot 0.4.4's `ACTPolicy` and `make_pre_post_processors(cfg, dataset_stats=...)` as
`lerobot_train` does, loads weights from `recipe_tensor`, saves the folder with LeRobot's
`save_pretrained` (policy, preprocessor, postprocessor), and runs LeRobot's inference path on
random raw observations (uint8 (H, W, 3) images, state in degrees):
`postprocessor(policy.predict_action_chunk(preprocessor(prepare_observation_for_inference(obs))))`.

Why a recipe: LeRobot's ACT always carries a full torchvision ResNet18, so even a tiny transformer
makes a 45 MB `model.safetensors`, too big to keep several of in git. Every tensor but one is
drawn by `recipe_tensor` (numpy only, seeded by the fixture's seed and the tensor's name), so
the stored `model.recipe.json` holds LeRobot's safetensors header verbatim, the one tensor not
drawn (the fixed sine table `model.vae_encoder_pos_enc`) as bytes, and the sha256 of the file
LeRobot wrote. `rebuild_model` (numpy, no torch) writes that file again byte for byte and checks
the hash, so the project's test converts the very file LeRobot saved. (fp16 weights would have
been 22 MB a fixture and not LeRobot's file.) Every other file is LeRobot's own, as saved.

`io.npz` holds the observations (`obs/<feature key>`, N of each) and LeRobot's chunks
(`chunk`, (N, chunk_size, action_dim), robot units; `model_chunk`, before the postprocessor;
`model_chunk_f64`, the same network run in float64, the yardstick for float32 rounding).
`--check DIR` (LeRobot venv) regenerates into DIR and compares with the stored fixtures: what
tests/test_convert_fixtures.py runs live when the LeRobot venv exists. `--parity` (project
.venv, no torch) imports each stored fixture with `python -m act_jax.convert --from-lerobot`,
runs `act_jax.policy` on the raw observations and writes
bench/reference_results/cpu/lerobot_fixtures_parity.json.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DEFAULT_OUT = REPO / "tests" / "fixtures" / "lerobot"
LEROBOT_PY = BENCH / ".venvs" / "lerobot" / "bin" / "python"
LEROBOT_VERSION = "0.4.4"
RECIPE_FILE, IO_FILE, MODEL_FILE = "model.recipe.json", "io.npz", "model.safetensors"
FIXED = ("model.vae_encoder_pos_enc",)  # a buffer LeRobot computes: stored, not drawn
MEAN_STD = {"VISUAL": "MEAN_STD", "STATE": "MEAN_STD", "ACTION": "MEAN_STD"}
MIN_MAX = {"VISUAL": "MEAN_STD", "STATE": "MIN_MAX", "ACTION": "MIN_MAX"}
SMALL = dict(
    image_size=[64, 96],  # ResNet18 stride 32: 2 x 3 tokens a camera
    state_dim=6,
    action_dim=6,
    chunk_size=5,
    dim_model=32,
    n_heads=4,
    dim_feedforward=64,
    n_encoder_layers=2,
    n_decoder_layers=1,
    n_vae_encoder_layers=1,
    latent_dim=8,
    pre_norm=False,
)
LAPTOP_PHONE = "laptop=top,phone=lateral"
FIXTURES = {  # `import_cameras`: the --cameras the import needs (`top` maps to itself)
    "cam1_mean_std": dict(cameras=["front"], import_cameras="front=top", modes=MEAN_STD, seed=1),
    "cam1_min_max": dict(
        cameras=["top"], import_cameras=None, modes=MIN_MAX, seed=2, n_decoder_layers=2
    ),
    "cam2_mean_std": dict(
        cameras=["laptop", "phone"],
        import_cameras=LAPTOP_PHONE,
        modes=MEAN_STD,
        seed=3,
        pre_norm=True,
    ),
    "cam2_min_max": dict(
        cameras=["laptop", "phone"],
        import_cameras=LAPTOP_PHONE,
        modes=MIN_MAX,
        seed=4,
        n_encoder_layers=1,
    ),
}
N_OBS = 2
TOL = 1e-4  # max abs, robot units (degrees)
PARITY_OUT = BENCH / "reference_results" / "cpu" / "lerobot_fixtures_parity.json"
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def spec(name: str) -> dict:
    """SMALL with the fixture's own fields."""
    return {**SMALL, **FIXTURES[name]}


# ---------------------------------------------------------------- the weight recipe (numpy)
def recipe_tensor(seed: int, key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 values of state_dict tensor `key`: its own stream, seeded by (seed, crc32 of
    the name), scaled so that activations stay O(1) through ResNet18 and the transformer; no
    batch-norm or layer-norm buffer sits at its 0/1 default, so a dropped one shows."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "running_var":
        x = 0.5 + rng.random(shape)
    elif leaf == "running_mean" or leaf.endswith("bias"):
        x = 0.1 * rng.standard_normal(shape)
    elif len(shape) == 1:  # batch-norm and layer-norm scales
        x = 0.75 + 0.5 * rng.random(shape)
    elif "embed" in key:  # nn.Embedding tables: N(0, 1), as torch initialises them
        x = rng.standard_normal(shape)
    else:  # He (convolutions, before a ReLU) or LeCun (linear) scale over the fan-in
        fan_in = int(np.prod(shape[1:]))
        x = rng.standard_normal(shape) * np.sqrt((2.0 if len(shape) == 4 else 1.0) / fan_in)
    return x.astype(np.float32)


def _header(data: bytes) -> tuple[int, dict]:
    (n,) = struct.unpack("<Q", data[:8])
    return n, json.loads(data[8 : 8 + n])


def make_recipe(model_file: Path, seed: int) -> dict:
    """The recipe of a LeRobot-written model.safetensors; checks that it rebuilds the file."""
    data = model_file.read_bytes()
    n, header = _header(data)
    fixed = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = (8 + n + o for o in info["data_offsets"])
        if key in FIXED:
            fixed[key] = base64.b64encode(data[start:end]).decode()
        elif info["dtype"] != "F32":
            raise ValueError(f"{model_file}: {key} is {info['dtype']}, the recipe draws F32")
        elif data[start:end] != recipe_tensor(seed, key, tuple(info["shape"])).tobytes():
            raise ValueError(f"{model_file}: {key} is not the recipe's (seed {seed})")
    return {
        "lerobot": LEROBOT_VERSION,
        "seed": seed,
        "sha256": hashlib.sha256(data).hexdigest(),
        "header": data[8 : 8 + n].decode("ascii"),
        "fixed": fixed,
    }


def rebuild_model(fixture: Path, out: Path) -> Path:
    """Writes the fixture's model.safetensors (LeRobot's file, byte for byte) to `out`.

    Raises:
        ValueError: if the rebuilt bytes do not hash to the sha256 LeRobot's file had.
    """
    recipe = json.loads((fixture / RECIPE_FILE).read_text())
    head = recipe["header"].encode("ascii")
    header = json.loads(head)
    size = max(info["data_offsets"][1] for k, info in header.items() if k != "__metadata__")
    body = bytearray(size)
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        if key in recipe["fixed"]:
            raw = base64.b64decode(recipe["fixed"][key])
        else:
            raw = recipe_tensor(recipe["seed"], key, tuple(info["shape"])).tobytes()
        body[start:end] = raw
    data = struct.pack("<Q", len(head)) + head + bytes(body)
    digest = hashlib.sha256(data).hexdigest()
    if digest != recipe["sha256"]:
        raise ValueError(f"{fixture}: rebuilt {MODEL_FILE} hashes to {digest}, not LeRobot's")
    out.write_bytes(data)
    return out


def observations(s: dict, seed: int, stats: dict) -> dict[str, np.ndarray]:
    """N_OBS raw observations: uint8 (H, W, 3) images, state inside the dataset's range."""
    rng = np.random.default_rng(seed + 1000)
    h, w = s["image_size"]
    st = stats["observation.state"]
    obs = {"observation.state": rng.uniform(st["min"], st["max"], (N_OBS, s["state_dim"]))}
    obs["observation.state"] = obs["observation.state"].astype(np.float32)
    for cam in s["cameras"]:
        obs[f"observation.images.{cam}"] = rng.integers(0, 256, (N_OBS, h, w, 3), np.uint8)
    return obs


def dataset_stats(s: dict, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """What a LeRobot dataset's meta/stats.json gives the trainer: every statistic of state and
    action, and ImageNet's for the cameras (`use_imagenet_stats`, LeRobot's default).

    State ranges of 20-60 degrees a joint, action ranges of 6-16. Why the actions' are narrow:
    the two networks differ by float32 rounding alone (each is within ~6e-6 of LeRobot's network
    run in float64, `model_chunk_f64`), and un-normalising multiplies that by the action scale
    (the std, or half the range), so 1e-4 in degrees holds for scales up to ~8 degrees; the
    scale-free check is the one before the postprocessor.
    """
    rng = np.random.default_rng(seed + 2000)
    stats = {}
    for key, dim, width in (
        ("observation.state", s["state_dim"], (20, 60)),
        ("action", s["action_dim"], (6, 16)),
    ):
        lo = rng.uniform(-30, 0, dim)
        hi = lo + rng.uniform(*width, dim)
        q = {f"q{p:02d}": lo + p / 100 * (hi - lo) for p in (1, 10, 50, 90, 99)}
        stats[key] = {
            "mean": lo + rng.uniform(0.4, 0.6, dim) * (hi - lo),
            "std": (hi - lo) * rng.uniform(0.15, 0.3, dim),
            "min": lo,
            "max": hi,
            **q,
            "count": np.array([5000]),
        }
    for cam in s["cameras"]:
        stats[f"observation.images.{cam}"] = {
            "mean": np.array(IMAGENET_MEAN).reshape(3, 1, 1),
            "std": np.array(IMAGENET_STD).reshape(3, 1, 1),
            "min": np.zeros((3, 1, 1)),
            "max": np.ones((3, 1, 1)),
        }
    return {k: {n: np.asarray(v, np.float32) for n, v in d.items()} for k, d in stats.items()}


# ---------------------------------------------------------------- project venv
def parity(folder: Path, name: str, workdir: Path) -> dict:
    """Imports `folder` (fixture `name`, model.safetensors present) with `python -m
    act_jax.convert`'s main into `workdir`, runs `act_jax.policy.Policy` on the stored raw
    observations, and measures it against LeRobot's chunks (project venv)."""
    sys.path.insert(0, str(REPO))
    from act_jax import convert
    from act_jax.policy import Policy

    cameras = FIXTURES[name]["import_cameras"]
    argv = ["--from-lerobot", str(folder), "--out", str(workdir)]
    if convert.main(argv + (["--cameras", cameras] if cameras else [])) != 0:
        raise RuntimeError(f"{folder}: the import failed")
    policy = Policy.from_checkpoint(workdir)
    provenance = json.loads((workdir / "config.json").read_text())["lerobot"]
    io = np.load(folder / IO_FILE)
    ours = []
    for i in range(len(io["chunk"])):
        images = {cam: io[f"obs/{key}"][i] for cam, key in provenance["cameras"].items()}
        obs = {"images": images, "state": io["obs/observation.state"][i]}
        ours.append(policy.predict_chunk(obs))
    ours = np.stack(ours)
    mean, std = (
        np.asarray(v, np.float64)
        for v in (policy.norm_stats.action_mean, policy.norm_stats.action_std)
    )
    ours_model = (ours - mean) / std  # back before the postprocessor, in float64

    def worst(a, b):
        return float(np.abs(np.asarray(a, np.float64) - b).max())

    return {
        "cameras": list(policy.cameras),
        "normalization": provenance["normalization"],
        "shape": list(ours.shape),
        "max_abs_diff": worst(ours, io["chunk"]),
        "chunk_max_abs": float(np.abs(io["chunk"]).max()),
        "action_scale_max": float(std.max()),
        "model_space_max_abs_diff": worst(ours_model, io["model_chunk"]),
        "ours_vs_float64": worst(ours_model, io["model_chunk_f64"]),
        "lerobot_vs_float64": worst(io["model_chunk"], io["model_chunk_f64"]),
    }


def parity_report(out: Path) -> dict:
    """`--parity`: every stored fixture, rebuilt and imported in a temporary folder."""
    import tempfile

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(FIXTURES):
            folder = Path(tmp) / name
            shutil.copytree(DEFAULT_OUT / name, folder)
            rebuild_model(folder, folder / MODEL_FILE)
            rows[name] = parity(folder, name, Path(tmp) / f"w_{name}")
    report = {"lerobot": LEROBOT_VERSION, "fixtures": rows, "tol": TOL}
    report["ok"] = all(r["max_abs_diff"] < TOL for r in rows.values())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    return report


# ---------------------------------------------------------------- LeRobot venv
def generate(name: str, out: Path) -> Path:
    """Writes fixture `name` to `out/name` (LeRobot venv)."""
    import torch
    from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.utils import prepare_observation_for_inference

    s = spec(name)
    h, w = s["image_size"]
    inputs = {"observation.state": PolicyFeature(FeatureType.STATE, (s["state_dim"],))}
    for cam in s["cameras"]:
        inputs[f"observation.images.{cam}"] = PolicyFeature(FeatureType.VISUAL, (3, h, w))
    fields = ("chunk_size", "dim_model", "n_heads", "dim_feedforward", "n_encoder_layers")
    fields += ("n_decoder_layers", "n_vae_encoder_layers", "latent_dim", "pre_norm")
    cfg = ACTConfig(
        input_features=inputs,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (s["action_dim"],))},
        normalization_mapping={k: NormalizationMode(v) for k, v in s["modes"].items()},
        pretrained_backbone_weights=None,  # no download; the recipe sets every weight anyway
        device="cpu",
        n_action_steps=s["chunk_size"],
        **{f: s[f] for f in fields},
    )
    policy = ACTPolicy(cfg)
    with torch.no_grad():
        for key, t in policy.state_dict(keep_vars=True).items():
            if key not in FIXED:
                t.copy_(torch.from_numpy(recipe_tensor(s["seed"], key, tuple(t.shape))))
    policy.eval()
    stats = dataset_stats(s, s["seed"])
    pre, post = make_pre_post_processors(
        cfg,
        dataset_stats={k: {n: torch.from_numpy(v) for n, v in d.items()} for k, d in stats.items()},
    )
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(folder)
    pre.save_pretrained(folder)
    post.save_pretrained(folder)

    obs = observations(s, s["seed"], stats)
    out = {"chunk": [], "model_chunk": [], "model_chunk_f64": []}
    for i in range(N_OBS):
        one = prepare_observation_for_inference(
            {k: v[i].copy() for k, v in obs.items()}, torch.device("cpu")
        )
        with torch.inference_mode():
            batch = pre(one)
            model_chunk = policy.predict_action_chunk(batch)
            out["chunk"].append(post(model_chunk)[0].numpy())
            out["model_chunk"].append(model_chunk[0].numpy())
            out["model_chunk_f64"].append(float64_chunk(policy, batch))
    np.savez_compressed(
        folder / IO_FILE,
        **{k: np.stack(v) for k, v in out.items()},
        **{f"obs/{k}": v for k, v in obs.items()},
    )
    recipe = make_recipe(folder / MODEL_FILE, s["seed"])
    (folder / RECIPE_FILE).write_text(json.dumps(recipe, indent=1) + "\n")
    return folder


def float64_chunk(policy, batch: dict) -> np.ndarray:
    """LeRobot's network in float64 on the same (normalised) batch: the reference both float32
    implementations are measured against. The policy is left in float32."""
    import copy

    import torch

    double = copy.deepcopy(policy).double()
    # LeRobot builds the (zero) latent as float32 whatever the weights' dtype
    proj = double.model.encoder_latent_input_proj
    proj.register_forward_pre_hook(lambda _, args: (args[0].double(),))
    batch = {
        k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v
        for k, v in batch.items()
    }
    with torch.inference_mode():
        return double.predict_action_chunk(batch)[0].numpy()


def compare(stored: Path, fresh: Path) -> dict:
    """A fresh generation against the stored fixture: same files, same chunks."""
    files = sorted(p.name for p in stored.iterdir())
    same = {
        f: (stored / f).read_bytes() == (fresh / f).read_bytes()
        for f in files
        if f not in (IO_FILE, RECIPE_FILE)
    }
    a, b = np.load(stored / IO_FILE), np.load(fresh / IO_FILE)
    recipe = json.loads((stored / RECIPE_FILE).read_text())
    return {
        "files_identical": same,
        "model_sha256_identical": recipe["sha256"]
        == hashlib.sha256((fresh / MODEL_FILE).read_bytes()).hexdigest(),
        "obs_identical": all(np.array_equal(a[k], b[k]) for k in a.files if k.startswith("obs/")),
        "chunk_max_abs_diff": float(np.abs(a["chunk"] - b["chunk"]).max()),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture root to write")
    p.add_argument("--check", type=Path, help="regenerate into this folder and compare with --out")
    p.add_argument("--only", nargs="*", default=sorted(FIXTURES), choices=sorted(FIXTURES))
    p.add_argument(
        "--parity",
        type=Path,
        nargs="?",
        const=PARITY_OUT,
        help="(project .venv) import every stored fixture and write the comparison JSON "
        "(default %(const)s)",
    )
    args = p.parse_args(argv)
    if args.parity:
        report = parity_report(args.parity)
        for name, r in report["fixtures"].items():
            print(
                f"{name:<14} {r['normalization']['ACTION']:<8} cameras {len(r['cameras'])}: "
                f"max |ours - LeRobot| {r['max_abs_diff']:.2e} (chunk up to "
                f"{r['chunk_max_abs']:.1f}); before the postprocessor "
                f"{r['model_space_max_abs_diff']:.2e}; vs float64: ours "
                f"{r['ours_vs_float64']:.2e}, LeRobot's {r['lerobot_vs_float64']:.2e}"
            )
        print(f"{'PASS' if report['ok'] else 'FAIL'} (tol {TOL}); wrote {args.parity}")
        return 0 if report["ok"] else 1
    results = {}
    for name in args.only:
        if args.check:
            results[name] = compare(args.out / name, generate(name, args.check))
        else:
            folder = generate(name, args.out)
            (folder / MODEL_FILE).unlink()  # rebuilt from the recipe
            results[name] = sorted(p.name for p in folder.iterdir())
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
