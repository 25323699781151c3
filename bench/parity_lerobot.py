"""Numerical parity: LeRobot's PyTorch ACT weights, converted, give the same numbers in our JAX ACT.

    bash bench/lerobot_env.sh                      # once: the LeRobot venv
    .venv/bin/python bench/parity_lerobot.py       # LeRobot's default ACT at 2 x 96x128, batch 2
    .venv/bin/python bench/parity_lerobot.py --spec '{"image_size": [480, 640]}'

Two steps in two interpreters:
1. `--dump FILE.npz`, run by the LeRobot venv's python (this script starts it): builds LeRobot's
   ACTPolicy with random weights, then randomises every bias, every LayerNorm scale and all four
   FrozenBatchNorm buffers (at their defaults 0/1 they would hide a swapped or dropped tensor),
   and saves the state_dict, a random uint8 batch, and LeRobot's outputs: the batch-1.. action chunk
   from `predict_action_chunk` (eval), the layer4 feature map of each camera, the encoder output and
   the decoder output (forward hooks), and the VAE posterior (mu, log sigma^2) in train mode with
   every dropout set to 0.
2. In the project's .venv: `act_jax.convert_lerobot.from_lerobot` turns the state_dict into our
   variables; our ACT runs on the same batch (uint8 images; the model applies the ImageNet
   normalisation that LeRobot's processor applied outside the policy); the outputs are compared
   (max abs difference, and relative to the reference's max magnitude). It also checks that
   `to_lerobot(from_lerobot(sd))` gives back the state_dict bit for bit.
3. Export: `convert_lerobot.save_pretrained` writes our variables as config.json +
   model.safetensors, and LeRobot's own `ACTPolicy.from_pretrained` (LeRobot venv) loads them
   back; its state_dict must equal the original bit for bit.
Writes bench/results/parity_lerobot.json; exits 1 if any difference is above --tol.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DEFAULT_LEROBOT_PY = BENCH / ".venvs" / "lerobot" / "bin" / "python"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
PARITY_SPEC = {"image_size": [96, 128], "batch": 2}  # on top of LeRobot's defaults


# ---------------------------------------------------------------- step 1 (LeRobot venv)
def dump(path: Path, spec_overrides: dict, seed: int) -> None:
    """Builds and runs LeRobot's ACT; saves weights, inputs and outputs to `path` (npz)."""
    import numpy as np
    import torch

    sys.path.insert(0, str(BENCH))
    from lerobot_act import DEFAULT_SPEC, build_policy  # the venv's own bench helper

    spec = {**DEFAULT_SPEC, **spec_overrides}
    torch.manual_seed(seed)
    policy, _ = build_policy(spec)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, t in list(policy.named_parameters()) + list(policy.named_buffers()):
            if name.endswith("vae_encoder_pos_enc"):
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("running_mean") or name.endswith("bias"):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif (".bn" in name or "downsample.1" in name or ".norm" in name) and t.ndim == 1:
                t.copy_(0.75 + 0.5 * torch.rand(t.shape, generator=g))  # BN / LayerNorm scales

    rng = np.random.default_rng(seed)
    b, (h, w), c = spec["batch"], spec["image_size"], spec["chunk_size"]
    images = {cam: rng.integers(0, 256, (b, h, w, 3), np.uint8) for cam in spec["cameras"]}
    state = rng.standard_normal((b, spec["state_dim"]), np.float32)
    actions = rng.standard_normal((b, c, spec["action_dim"]), np.float32)
    pad = np.zeros((b, c), bool)
    pad[:, c - max(1, c // 10) :] = True
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    batch = {"observation.state": torch.from_numpy(state)}
    for cam, x in images.items():  # what LeRobot's preprocessor does: [0, 1], then ImageNet stats
        x = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
        batch[f"observation.images.{cam}"] = (x - mean) / std

    captured = {"backbone": []}
    model = policy.model
    model.backbone.register_forward_hook(
        lambda m, i, o: captured["backbone"].append(o["feature_map"].permute(0, 2, 3, 1))
    )
    model.encoder.register_forward_hook(
        lambda m, i, o: captured.__setitem__("encoder", o.transpose(0, 1))
    )
    model.decoder.register_forward_hook(
        lambda m, i, o: captured.__setitem__("decoder", o.transpose(0, 1))
    )
    out = {"actions": policy.predict_action_chunk(batch)}
    for cam, feat in zip(spec["cameras"], captured["backbone"], strict=True):
        out[f"backbone/{cam}"] = feat
    out["encoder/out"] = captured["encoder"]
    out["decoder/out"] = captured["decoder"]
    if spec["use_vae"]:  # the posterior is deterministic once dropout is off
        for m in policy.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
            elif isinstance(m, torch.nn.MultiheadAttention):
                m.dropout = 0.0
        policy.train()
        with torch.no_grad():
            _, (mu, logvar) = model(
                {
                    **batch,
                    "action": torch.from_numpy(actions),
                    "action_is_pad": torch.from_numpy(pad),
                    "observation.images": [
                        batch[f"observation.images.{k}"] for k in spec["cameras"]
                    ],
                }
            )
        out["vae/mu"], out["vae/logvar"] = mu, logvar

    arrays = {f"sd/{k}": v.numpy() for k, v in policy.state_dict().items()}
    arrays.update({f"in/images/{k}": v for k, v in images.items()})
    arrays.update({"in/state": state, "in/actions": actions, "in/action_is_pad": pad})
    arrays.update({f"out/{k}": v.detach().numpy() for k, v in out.items()})
    arrays["spec"] = np.array(json.dumps(spec))
    np.savez(path, **arrays)


def load_check(directory: Path, npz_path: Path) -> None:
    """Step 3 (LeRobot venv): `ACTPolicy.from_pretrained(directory)` vs the dumped state_dict."""
    import numpy as np
    from lerobot.policies.act.modeling_act import ACTPolicy

    policy = ACTPolicy.from_pretrained(str(directory))
    sd = {k: v.numpy() for k, v in policy.state_dict().items()}
    data = np.load(npz_path)
    ref = {k[3:]: data[k] for k in data.files if k.startswith("sd/")}
    equal = sorted(sd) == sorted(ref) and all(np.array_equal(sd[k], ref[k]) for k in ref)
    print(json.dumps({"n_tensors": len(sd), "equal": bool(equal)}))


# ---------------------------------------------------------------- step 2 (project venv)
def compare(npz_path: Path, tol: float, export_dir: Path) -> dict:
    """Converts the dumped weights, runs our ACT, exports to `export_dir`; returns the record."""
    import dataclasses

    import jax
    import numpy as np

    sys.path.insert(0, str(REPO))
    from act_jax import convert_lerobot
    from act_jax.intermediates import flatten
    from act_jax.model import ACT, ACTConfig

    data = np.load(npz_path)
    spec = json.loads(str(data["spec"]))
    fields = {f.name for f in dataclasses.fields(ACTConfig)}
    config = ACTConfig(**{k: v for k, v in spec.items() if k in fields}, backbone_width=1.0)
    sd = {k[3:]: data[k] for k in data.files if k.startswith("sd/")}
    variables = convert_lerobot.from_lerobot(sd, config)
    back = convert_lerobot.to_lerobot(variables, config)
    roundtrip = sorted(back) == sorted(sd) and all(np.array_equal(back[k], sd[k]) for k in sd)
    convert_lerobot.save_pretrained(export_dir, config, variables)

    images = {cam: data[f"in/images/{cam}"] for cam in config.cameras}
    state = data["in/state"]
    out, cache = ACT(config).apply(variables, images, state, train=False, mutable=["intermediates"])
    ours = {"actions": out["actions"], **flatten(cache["intermediates"])}
    if config.use_vae:
        no_drop = ACT(dataclasses.replace(config, dropout=0.0))
        vae = no_drop.apply(
            variables,
            images,
            state,
            data["in/actions"],
            data["in/action_is_pad"],
            train=True,
            rngs={"dropout": jax.random.key(0), "latent": jax.random.key(1)},
        )
        ours["vae/mu"], ours["vae/logvar"] = vae["mu"], vae["logvar"]

    rows = {}
    for key in sorted(k[4:] for k in data.files if k.startswith("out/")):
        ref, got = data[f"out/{key}"], np.asarray(ours[key])
        if ref.shape != got.shape:
            rows[key] = {"shape_ref": ref.shape, "shape_jax": got.shape, "ok": False}
            continue
        diff = float(np.max(np.abs(ref - got)))
        scale = float(np.max(np.abs(ref)))
        rows[key] = {
            "shape": list(ref.shape),
            "max_abs_diff": diff,
            "ref_max_abs": scale,
            "rel_diff": diff / max(scale, 1e-12),
            "ok": diff / max(scale, 1.0) <= tol,
        }
    return {
        "spec": spec,
        "n_tensors": len(sd),
        "roundtrip_exact": roundtrip,
        "tol": tol,
        "outputs": rows,
        "ok": roundtrip and all(r["ok"] for r in rows.values()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="LeRobot ACT -> JAX ACT weight conversion parity check.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--spec",
        default=json.dumps(PARITY_SPEC),
        help="JSON overrides of bench/lerobot_act.py's spec (LeRobot defaults)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tol", type=float, default=1e-4, help="max |diff| / max(1, max |ref|) allowed per output"
    )
    parser.add_argument("--npz", type=Path, help="compare an existing dump instead of making one")
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)  # step 1, in the LeRobot venv
    parser.add_argument("--load-check", type=Path, help=argparse.SUPPRESS)  # step 3, ditto
    parser.add_argument("--lerobot-python", type=Path, default=DEFAULT_LEROBOT_PY)
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "parity_lerobot.json")
    args = parser.parse_args(argv)

    if args.dump:
        dump(args.dump, json.loads(args.spec), args.seed)
        return 0
    if args.load_check:
        load_check(args.load_check, args.npz)
        return 0
    if not args.lerobot_python.exists():
        parser.error(
            f"--lerobot-python {args.lerobot_python} does not exist: run "
            "`bash bench/lerobot_env.sh` first"
        )
    lerobot = [str(args.lerobot_python), __file__]
    with tempfile.TemporaryDirectory() as tmp:
        npz = args.npz
        if npz is None:
            npz = Path(tmp) / "lerobot_act.npz"
            print(f"running LeRobot ACT ({args.lerobot_python}) ...", flush=True)
            subprocess.run(
                [*lerobot, "--dump", str(npz), "--spec", args.spec, "--seed", str(args.seed)],
                check=True,
            )
        result = compare(npz, args.tol, Path(tmp) / "exported")
        print("loading the export with LeRobot's ACTPolicy.from_pretrained ...", flush=True)
        proc = subprocess.run(
            [*lerobot, "--load-check", str(Path(tmp) / "exported"), "--npz", str(npz)],
            check=True,
            capture_output=True,
            text=True,
        )
        result["export"] = json.loads(proc.stdout.strip().splitlines()[-1])
        result["ok"] = result["ok"] and result["export"]["equal"]
    print(
        f"{result['n_tensors']} LeRobot tensors; to_lerobot(from_lerobot(sd)) == sd: "
        f"{result['roundtrip_exact']}"
    )
    print(f"{'output':<24} {'shape':<22} {'max |diff|':>11} {'max |ref|':>10}  ok")
    for key, r in result["outputs"].items():
        if "max_abs_diff" in r:
            print(
                f"{key:<24} {str(tuple(r['shape'])):<22} {r['max_abs_diff']:>11.2e} "
                f"{r['ref_max_abs']:>10.3g}  {r['ok']}"
            )
        else:
            print(f"{key:<24} shape mismatch: LeRobot {r['shape_ref']}, JAX {r['shape_jax']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(
        f"export loaded by LeRobot's ACTPolicy.from_pretrained, state_dict identical: "
        f"{result['export']['equal']} ({result['export']['n_tensors']} tensors)"
    )
    print(f"{'PASS' if result['ok'] else 'FAIL'} (tol {args.tol}); wrote {args.out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
