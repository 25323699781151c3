r"""A project checkpoint exported by `python -m act_jax.convert --to-lerobot`, run by LeRobot.

    bash bench/lerobot_env.sh                     # once: the LeRobot venv
    .venv/bin/python bench/lerobot_export_check.py [--workdir runs/x]

In the project's .venv: a small full-width project checkpoint (random weights, with statistics
and an execution as training writes them; or `--workdir`, any full-width one) is exported with
the command, and our `act_jax.policy.Policy` gives the chunks for random raw observations. In
the LeRobot venv (lerobot 0.4.4, a subprocess of this script), as `lerobot-record` and
`lerobot-eval` load a policy: `ACTPolicy.from_pretrained(DIR)` and
`make_pre_post_processors(policy.config, pretrained_path=DIR)` (a missing or old-style processor
file raises `ProcessorMigrationError` there), then
`postprocessor(policy.predict_action_chunk(preprocessor(prepare_observation_for_inference(obs))))`
and the record loop's `predict_action` for the first action. The state_dict LeRobot loaded is
compared with the exported file (from_pretrained loads non-strictly), the chunks with ours
(max abs, robot units; and before the postprocessor, against LeRobot's network in float64).
Finally the folder is imported back (`--from-lerobot`) and its params and statistics compared
with the original bit for bit. Writes bench/reference_results/cpu/lerobot_export_check.json;
exits 1 if anything differs by more than --tol.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lerobot_fixtures as fixtures  # noqa: E402 (beside this script, numpy only)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LEROBOT_PY = BENCH / ".venvs" / "lerobot" / "bin" / "python"
OUT = BENCH / "reference_results" / "cpu" / "lerobot_export_check.json"
N_OBS = 3
# the fixtures' small model (bench/lerobot_fixtures.py), with our camera names
SMALL = {**fixtures.SMALL, "image_size": tuple(fixtures.SMALL["image_size"])}
SMALL.update(cameras=("top", "lateral"), backbone_width=1.0)


# ---------------------------------------------------------------- project venv
def small_checkpoint(workdir: Path, seed: int = 0) -> None:
    """A project checkpoint as training writes one: configs/sim_default.py with a small
    full-width model, initialised weights with batch statistics moved off 0/1, statistics with
    stds no smaller than `normalization.MIN_STD`, and sim_default's ensemble execution."""
    import jax
    import jax.numpy as jnp
    import ml_collections

    from act_jax import checkpoints, convert
    from act_jax.model import ACT, ACTConfig
    from act_jax.normalization import MIN_STD, NormStats

    model = ACTConfig(**SMALL)
    config = convert.load_base_config(REPO / convert.DEFAULT_BASE_CONFIG)
    config = ml_collections.ConfigDict(config.to_dict())
    config.model = ml_collections.ConfigDict(dataclasses.asdict(model))
    images = {c: jnp.zeros((1, *model.image_size, 3), jnp.uint8) for c in model.cameras}
    variables = ACT(model).init(
        {"params": jax.random.key(seed)}, images, jnp.zeros((1, model.state_dim)), train=False
    )
    rng = np.random.default_rng(seed)

    def off_default(path, x):
        x = np.asarray(x, np.float32)
        if path[-1].key in ("var", "scale"):
            return (x * rng.uniform(0.8, 1.2, x.shape)).astype(np.float32)
        return (x + rng.normal(0, 0.05, x.shape)).astype(np.float32)

    state = {
        "params": jax.tree.map(np.asarray, variables["params"]),
        "batch_stats": jax.tree_util.tree_map_with_path(off_default, variables["batch_stats"]),
        "step": 1,
        "opt_state": {},
    }
    d = model.state_dim
    stats = NormStats(
        rng.uniform(-20, 20, d).astype(np.float32),
        np.maximum(rng.uniform(3, 15, d), MIN_STD).astype(np.float32),
        rng.uniform(-20, 20, d).astype(np.float32),
        np.maximum(rng.uniform(1, 6, d), MIN_STD).astype(np.float32),
    )
    checkpoints.save(workdir, 1, state, config, stats)


def raw_observations(policy, seed: int) -> dict[str, np.ndarray]:
    """N_OBS raw observations by our camera names: uint8 (H, W, 3), state near the mean."""
    rng = np.random.default_rng(seed + 1)
    h, w = policy.image_size
    s = policy.norm_stats
    state = rng.normal(s.state_mean, s.state_std, (N_OBS, len(s.state_mean)))
    obs = {"state": state.astype(np.float32)}
    for cam in policy.cameras:
        obs[cam] = rng.integers(0, 256, (N_OBS, h, w, 3), np.uint8)
    return obs


def convert_command(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "act_jax.convert", *args], cwd=REPO, check=True)


def leaves(tree) -> list[np.ndarray]:
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def run(workdir: Path, tmp: Path, lerobot_py: Path, tol: float) -> dict:
    sys.path.insert(0, str(REPO))
    from act_jax.checkpoints import restore_latest
    from act_jax.policy import Policy

    exported, back = tmp / "pretrained_model", tmp / "back"
    convert_command("--to-lerobot", str(workdir), "--out", str(exported))
    policy = Policy.from_checkpoint(workdir)
    obs = raw_observations(policy, 0)
    ours = np.stack(
        [
            policy.predict_chunk(
                {"images": {c: obs[c][i] for c in policy.cameras}, "state": obs["state"][i]}
            )
            for i in range(N_OBS)
        ]
    )
    lerobot_config = json.loads((exported / "config.json").read_text())
    keys = [k for k, f in lerobot_config["input_features"].items() if f["type"] == "VISUAL"]
    np.savez(
        tmp / "obs.npz",
        **{"observation.state": obs["state"]},
        **{key: obs[cam] for key, cam in zip(keys, policy.cameras, strict=True)},
    )
    proc = subprocess.run(
        [str(lerobot_py), __file__, "--lerobot-run", str(exported), str(tmp)],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise RuntimeError(f"LeRobot failed on {exported}:\n{proc.stderr[-3000:]}")
    theirs = np.load(tmp / "lerobot.npz")
    lerobot = json.loads(proc.stdout.strip().splitlines()[-1])

    mean, std = (
        np.asarray(v, np.float64)
        for v in (policy.norm_stats.action_mean, policy.norm_stats.action_std)
    )
    ours_model = (ours - mean) / std
    convert_command("--from-lerobot", str(exported), "--out", str(back))
    v0, _, s0, _ = restore_latest(workdir)
    v1, _, s1, _ = restore_latest(back)
    a, b = leaves(v0), leaves(v1)
    record = {
        "lerobot": lerobot,
        "model": {k: list(v) if isinstance(v, tuple) else v for k, v in SMALL.items()},
        "workdir": str(workdir),
        "files": sorted(p.name for p in exported.iterdir()),
        "chunk_shape": list(ours.shape),
        "max_abs_diff": float(np.abs(ours - theirs["chunk"]).max()),
        "chunk_max_abs": float(np.abs(theirs["chunk"]).max()),
        "first_action_predict_action_max_abs_diff": float(
            np.abs(ours[:, 0] - theirs["first_action"]).max()
        ),
        "model_space_max_abs_diff": float(np.abs(ours_model - theirs["model_chunk"]).max()),
        "ours_vs_float64": float(np.abs(ours_model - theirs["model_chunk_f64"]).max()),
        "lerobot_vs_float64": float(
            np.abs(theirs["model_chunk"] - theirs["model_chunk_f64"]).max()
        ),
        "round_trip_params_identical": len(a) == len(b)
        and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)),
        "round_trip_stats_identical": all(
            np.array_equal(v, s1.to_dict()[k]) for k, v in s0.to_dict().items()
        ),
        "tol": tol,
    }
    record["ok"] = bool(
        lerobot["state_dict_equal"]
        and record["max_abs_diff"] < tol
        and record["first_action_predict_action_max_abs_diff"] < tol
        and record["round_trip_params_identical"]
        and record["round_trip_stats_identical"]
    )
    return record


# ---------------------------------------------------------------- LeRobot venv
def lerobot_run(directory: Path, tmp: Path) -> None:
    """Loads `directory` the way LeRobot's record and eval tools do; runs the observations."""
    import copy
    import importlib.metadata

    import torch
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.utils import prepare_observation_for_inference
    from lerobot.utils.control_utils import predict_action
    from safetensors.numpy import load_file

    policy = ACTPolicy.from_pretrained(str(directory))
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(directory))
    saved = load_file(str(directory / "model.safetensors"))
    loaded = {k: v.numpy() for k, v in policy.state_dict().items()}
    equal = sorted(saved) == sorted(loaded) and all(
        np.array_equal(saved[k], loaded[k]) for k in saved
    )
    double = copy.deepcopy(policy).double()
    # LeRobot builds the (zero) latent as float32 whatever the weights' dtype
    double.model.encoder_latent_input_proj.register_forward_pre_hook(
        lambda _, args: (args[0].double(),)
    )
    data = np.load(tmp / "obs.npz")
    out = {"chunk": [], "model_chunk": [], "model_chunk_f64": [], "first_action": []}
    for i in range(len(data["observation.state"])):
        obs = {k: data[k][i].copy() for k in data.files}
        with torch.inference_mode():
            batch = pre(prepare_observation_for_inference(dict(obs), torch.device("cpu")))
            model_chunk = policy.predict_action_chunk(batch)
            out["chunk"].append(post(model_chunk)[0].numpy())
            out["model_chunk"].append(model_chunk[0].numpy())
            b64 = {
                k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v
                for k, v in batch.items()
            }
            out["model_chunk_f64"].append(double.predict_action_chunk(b64)[0].numpy())
        policy.reset()  # a new episode: the record loop's first action is the chunk's first
        action = predict_action(obs, policy, torch.device("cpu"), pre, post, use_amp=False)
        out["first_action"].append(action.reshape(-1).numpy())
    np.savez(tmp / "lerobot.npz", **{k: np.stack(v) for k, v in out.items()})
    print(
        json.dumps(
            {
                "version": importlib.metadata.version("lerobot"),
                "torch": importlib.metadata.version("torch"),
                "from_pretrained": "ok",
                "make_pre_post_processors": "ok (no migration)",
                "n_tensors": len(loaded),
                "state_dict_equal": bool(equal),
                "preprocessor_steps": [type(s).__name__ for s in pre.steps],
                "postprocessor_steps": [type(s).__name__ for s in post.steps],
                "n_action_steps": policy.config.n_action_steps,
                "temporal_ensemble_coeff": policy.config.temporal_ensemble_coeff,
            }
        )
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--workdir",
        type=Path,
        help="a full-width project checkpoint (default: a small one made here)",
    )
    p.add_argument("--tol", type=float, default=1e-4, help="max abs, robot units")
    p.add_argument("--lerobot-python", type=Path, default=LEROBOT_PY)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--lerobot-run", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.lerobot_run:
        lerobot_run(*args.lerobot_run)
        return 0
    if not args.lerobot_python.exists():
        p.error(f"--lerobot-python {args.lerobot_python}: not found; run bash bench/lerobot_env.sh")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir
        if workdir is None:
            workdir = Path(tmp) / "project"
            small_checkpoint(workdir)
        record = run(workdir, Path(tmp), args.lerobot_python, args.tol)
    if args.workdir is None:
        record["workdir"] = "a small full-width checkpoint (small_checkpoint)"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    lr = record["lerobot"]
    print(
        f"lerobot {lr['version']}: from_pretrained and make_pre_post_processors loaded the export "
        f"({lr['n_tensors']} tensors, state_dict equal to the file: {lr['state_dict_equal']})"
    )
    print(
        f"max |ours - LeRobot's chunk| {record['max_abs_diff']:.2e} (chunk up to "
        f"{record['chunk_max_abs']:.1f}); predict_action's first action "
        f"{record['first_action_predict_action_max_abs_diff']:.2e}; before the postprocessor "
        f"{record['model_space_max_abs_diff']:.2e}"
    )
    print(
        f"round trip: params identical {record['round_trip_params_identical']}, statistics "
        f"identical {record['round_trip_stats_identical']}"
    )
    print(f"{'PASS' if record['ok'] else 'FAIL'} (tol {args.tol}); wrote {args.out}")
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
