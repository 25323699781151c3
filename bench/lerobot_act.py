"""Time LeRobot's PyTorch ACT (train step or batch-1 inference) at given shapes; print JSON.

Runs INSIDE the LeRobot virtualenv made by `bench/lerobot_env.sh`, never in the project's .venv:

    bench/.venvs/lerobot/bin/python bench/lerobot_act.py --mode train --steps 3
    bench/.venvs/lerobot/bin/python bench/lerobot_act.py --mode infer \
        --spec '{"image_size": [96, 128], "batch": 32}'

`bench/compare_lerobot.py` calls it once per (preset, mode) in a fresh process, so that the peak RSS
it reports belongs to that workload alone.

The workload is what LeRobot's trainer does per step (lerobot 0.4.4,
`lerobot/scripts/lerobot_train.py` `update_policy`, minus AMP and the LR scheduler, which the ACT
preset does not use):
`policy.forward(batch)` -> `loss.backward()` -> `clip_grad_norm_(params, 10.0)` -> AdamW step over
`policy.get_optim_params()` (lr 1e-5, weight decay 1e-4) -> `zero_grad()`. Inference is
`policy.predict_action_chunk(batch)` at batch 1 (the policy runtime's call), in eval mode.

The spec (JSON, every key optional) uses the project's config field names; defaults are LeRobot's
ACTConfig defaults with two 480x640 cameras and 6-D state/action:
    cameras, image_size [H, W], batch, state_dim, action_dim, chunk_size, dim_model, n_heads,
    dim_feedforward, n_encoder_layers, n_decoder_layers, n_vae_encoder_layers, latent_dim,
    dropout, pre_norm, use_vae.
Images are random floats already in model space (LeRobot normalises in its processor pipeline,
outside the policy), state/actions random normals; the last 10% of each action chunk is padded, so
the VAE encoder's key-padding mask is exercised as in real data near episode ends.
"""

import os
import platform
import statistics
import sys
import time

import act_bench_common  # beside this script (stdlib only)
from act_bench_common import SHARED_SPEC, peak_rss_mb

DEFAULT_SPEC = SHARED_SPEC


def build_policy(spec: dict):
    """LeRobot ACTPolicy for `spec`, randomly initialised (no ImageNet weights: no network here)."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy

    h, w = spec["image_size"]
    inputs = {"observation.state": PolicyFeature(FeatureType.STATE, (spec["state_dim"],))}
    for cam in spec["cameras"]:
        inputs[f"observation.images.{cam}"] = PolicyFeature(FeatureType.VISUAL, (3, h, w))
    config = ACTConfig(
        input_features=inputs,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (spec["action_dim"],))},
        pretrained_backbone_weights=None,
        device=torch_device(spec),
        chunk_size=spec["chunk_size"],
        n_action_steps=spec["chunk_size"],
        dim_model=spec["dim_model"],
        n_heads=spec["n_heads"],
        dim_feedforward=spec["dim_feedforward"],
        n_encoder_layers=spec["n_encoder_layers"],
        n_decoder_layers=spec["n_decoder_layers"],
        n_vae_encoder_layers=spec["n_vae_encoder_layers"],
        latent_dim=spec["latent_dim"],
        dropout=spec["dropout"],
        pre_norm=spec["pre_norm"],
        use_vae=spec["use_vae"],
    )
    return ACTPolicy(config), config


def torch_device(spec: dict) -> str:
    return "cuda" if spec["device"] == "gpu" else "cpu"


def make_batch(spec: dict, batch_size: int, with_actions: bool, seed: int = 0) -> dict:
    """Random batch with LeRobot's key names. Images (B, 3, H, W) float32, state (B, S)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    h, w = spec["image_size"]
    batch = {"observation.state": torch.randn(batch_size, spec["state_dim"], generator=g)}
    for cam in spec["cameras"]:
        batch[f"observation.images.{cam}"] = torch.randn(batch_size, 3, h, w, generator=g)
    if with_actions:
        c = spec["chunk_size"]
        batch["action"] = torch.randn(batch_size, c, spec["action_dim"], generator=g)
        pad = torch.zeros(batch_size, c, dtype=torch.bool)
        pad[:, c - max(1, c // 10) :] = True  # the chunk runs past the episode end
        batch["action_is_pad"] = pad
    return {k: v.to(torch_device(spec)) for k, v in batch.items()}


def run(spec: dict, mode: str, steps: int, warmup: int, seed: int) -> dict:
    """Build the policy, time `mode` ("train" or "infer"), return the result record."""
    import torch

    torch.manual_seed(seed)
    rss_start = peak_rss_mb()
    t0 = time.perf_counter()
    policy, config = build_policy(spec)
    policy.to(torch_device(spec))
    gpu = spec["device"] == "gpu"
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in policy.parameters())
    n_backbone = sum(
        p.numel() for n, p in policy.named_parameters() if n.startswith("model.backbone")
    )

    if mode == "train":
        policy.train()
        batch = make_batch(spec, spec["batch"], with_actions=True, seed=seed)
        # What LeRobot's AdamWConfig preset builds: betas (0.9, 0.999), eps 1e-8, grad clip 10.
        optimizer = torch.optim.AdamW(
            policy.get_optim_params(),
            lr=config.optimizer_lr,
            betas=(0.9, 0.999),
            eps=1e-8,
            weight_decay=config.optimizer_weight_decay,
        )
        losses = []

        def step():
            loss, _ = policy.forward(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 10.0)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(float(loss.detach()))
    elif mode == "infer":
        policy.eval()
        batch = make_batch(spec, 1, with_actions=False, seed=seed)
        out_shape = []

        def step():
            actions = policy.predict_action_chunk(batch)
            if gpu:
                torch.cuda.synchronize()  # the call returns before the GPU is done
            out_shape[:] = list(actions.shape)
    else:
        raise ValueError(f"--mode must be 'train' or 'infer', got {mode!r}")

    load_before = os.getloadavg()
    first, times = act_bench_common.timed(step, warmup, steps)
    record = {
        "impl": "lerobot",
        "mode": mode,
        "spec": spec,
        "batch_size": spec["batch"] if mode == "train" else 1,
        "n_params": n_params,
        "n_params_backbone": n_backbone,
        "build_s": build_s,
        "first_call_s": first,
        "times_s": times,
        "median_s": statistics.median(times) if times else None,
        "warmup": warmup,
        "steps": steps,
        "peak_rss_mb": peak_rss_mb(),
        "rss_at_start_mb": rss_start,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_model": act_bench_common.cpu_model(),
        "cpus_allowed": len(os.sched_getaffinity(0)),
    }
    if gpu:
        record.update(
            gpu_name=torch.cuda.get_device_name(),
            device_peak_mb=torch.cuda.max_memory_allocated() / 2**20,
            device_peak_reserved_mb=torch.cuda.max_memory_reserved() / 2**20,
            # torch's defaults, as a user gets them: fp32 matmuls in full precision, cuDNN
            # convolutions allowed TF32.
            matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
        )
    if mode == "train":
        record["losses"] = losses
    else:
        record["output_shape"] = out_shape
    return record


def main(argv=None) -> int:
    return act_bench_common.main(
        run,
        DEFAULT_SPEC,
        "Time LeRobot's ACT (train step or batch-1 inference); prints one JSON object.",
        "untimed calls first (>= 1)",
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
