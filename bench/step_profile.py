r"""Where one train step's time goes: each part of ACT timed on its own, forward and backward.

    .venv/bin/python bench/step_profile.py                          # presets cpu_default and seed
    .venv/bin/python bench/step_profile.py --presets quick --steps 3 --threads 1
    .venv/bin/python bench/step_profile.py --presets cpu_default --set backbone_conv=fast

The presets are `bench/compare_lerobot.py`'s (cpu_default: configs/sim_default.py's model and
batch with a full-width ResNet18; seed: LeRobot's ACT at 2 x 480x640, batch 8), so the parts add
up to the step that comparison times. Every part is its own jitted function on the inputs it
sees inside the real step (each stage's input is the previous stage's output on the batch),
timed as the median of `--steps` calls after a warm-up, each waited for:

    h2d              the batch from numpy onto the device (`jax.device_put`)
    backbone/stem    conv1 + frozen batch-norm + max-pool, all cameras in one call (backward:
                     the kernel's gradient only; nothing differentiates the images)
    backbone/layerK  ResNet stage K (two BasicBlocks)
    vae_encoder      the posterior q(z | state, actions)
    encoder          `ACT.encode` minus the backbone: token assembly and the transformer encoder
    decoder          `ACT.decode`: decoder and action head
    optimizer        clip by global norm + AdamW update of every parameter
    step             the whole train step (`bench/jax_act.py`'s, with donation)
    rest             step minus the sum of the parts: loss, glue, what fusion across parts saves

Forward is `f(params, x)`; "forward+backward" is `jax.vjp` of it with a ones cotangent, w.r.t.
the parameters and the input (the input's gradient is what flows to the stage below). The
backbone's parts have no backward when `--frozen-backbone` says the step would not train it.
Each (part, direction) is timed in this one process, so peak RSS is the process's; the load
average is recorded before and after. Writes a table to stdout and JSON to `--out` (default
bench/results/step_profile.json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script from anywhere
sys.path.insert(0, str(HERE))

import act_bench_common  # noqa: E402
from act_bench_common import peak_rss_mb  # noqa: E402


def _median_s(fn, warmup: int, steps: int) -> float:
    _, times = act_bench_common.timed(fn, warmup, steps)
    return statistics.median(times)


def _fwd_bwd(f, params, x, input_grad: bool = True):
    """(forward(), forward_backward()) of `f(params, x)`, both jitted and blocking; the backward
    w.r.t. the parameters, and the input too unless `input_grad` is False (the images: the step
    never differentiates them)."""
    import jax
    import jax.numpy as jnp

    fwd = jax.jit(f)

    @jax.jit
    def both(p, x):
        if not input_grad:
            y, pull = jax.vjp(lambda p: f(p, x), p)
        else:
            y, pull = jax.vjp(f, p, x)
        return pull(jax.tree.map(jnp.ones_like, y))

    return (
        lambda: jax.block_until_ready(fwd(params, x)),
        lambda: jax.block_until_ready(both(params, x)),
    )


def profile(spec: dict, steps: int, warmup: int, seed: int = 0) -> dict:
    """Times every part of one train step at `spec` (a bench/jax_act.py spec)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax_act import _train_step, act_config, make_batch

    from act_jax.model import ACT, IMAGENET_MEAN, IMAGENET_STD, init_variables
    from act_jax.resnet import (
        Conv2d,
        FrozenBatchNorm,
        ResNetStage,
        channels,
        resolve_conv,
        resolve_pool,
        stem_max_pool,
    )

    cfg = act_config(spec)
    model = ACT(cfg)
    variables = init_variables(model, jax.random.key(seed))
    params, stats = variables["params"], variables["batch_stats"]
    numpy_batch = make_batch(spec, spec["batch"], seed)
    rows: list[dict] = []

    def timings(fwd=None, both=None) -> dict[str, float]:
        got = {"forward_ms": fwd, "forward_backward_ms": both}
        return {k: 1000 * _median_s(f, warmup, steps) for k, f in got.items() if f is not None}

    def add(part: str, fwd=None, both=None, note: str = ""):
        row = {"part": part, "note": note, **timings(fwd, both)}
        rows.append(row)
        shown = "  ".join(f"{k} {v:8.1f}" for k, v in row.items() if k.endswith("_ms"))
        print(f"  {part:18s} {shown}", flush=True)

    add("h2d", both=lambda: jax.block_until_ready(jax.device_put(numpy_batch)))
    batch = jax.device_put(numpy_batch)

    # The backbone, stage by stage, on the batch's images of every camera at once.
    x = jnp.concatenate([batch["images"][c] for c in cfg.cameras], axis=0)
    x = (x.astype(jnp.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    bp, bs = params["backbone"], stats["backbone"]
    conv = resolve_conv(cfg.backbone_conv, cfg.backbone_width)
    chans = channels(cfg.backbone_width)

    fast_pool = resolve_pool(cfg.backbone_pool) == "fast"

    def stem(p, x):
        y = Conv2d(chans[0], 7, 2, conv, jnp.float32).apply({"params": p["conv1"]}, x)
        y = nn.relu(FrozenBatchNorm().apply({"batch_stats": bs["bn1"]}, y))
        return stem_max_pool(y, cfg.backbone_pool)

    stem_p = {"conv1": bp["conv1"]}
    pool = "fast_pool" if fast_pool else "XLA's pool"
    add(
        "backbone/stem",
        *_fwd_bwd(stem, stem_p, x, input_grad=False),
        note=f"input {tuple(x.shape)}, {pool}",
    )
    h = jax.jit(stem)(stem_p, x)
    for k, c in enumerate(chans):
        name = f"layer{k + 1}"
        module = ResNetStage(c, 1 if k == 0 else 2, jnp.float32, conv)

        def stage(p, h, module=module, name=name):
            return module.apply({"params": p, "batch_stats": bs[name]}, h)

        add(f"backbone/{name}", *_fwd_bwd(stage, bp[name], h), note=f"input {tuple(h.shape)}")
        h = jax.jit(stage)(bp[name], h)

    def backbone_only(p, images):
        return model.apply({"params": p, "batch_stats": stats}, images, method=_backbone)

    def _backbone(m, images):
        x = jnp.concatenate([jnp.asarray(images[c]) for c in cfg.cameras], axis=0)
        return m.backbone((x.astype(jnp.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD)

    backbone_total = timings(*_fwd_bwd(backbone_only, params, batch["images"]))

    if cfg.use_vae:

        def vae(p, sa):
            return model.apply(
                {"params": p, "batch_stats": stats}, *sa, train=False, method=ACT.posterior
            )

        sa = (batch["state"], batch["actions"], batch["action_is_pad"])
        add("vae_encoder", *_fwd_bwd(lambda p, s: vae(p, (s, *sa[1:])), params, sa[0]))

    def encode(p, images):
        return model.apply(
            {"params": p, "batch_stats": stats},
            images,
            batch["state"],
            train=False,
            method=ACT.encode,
        )

    encode_ms = timings(*_fwd_bwd(encode, params, batch["images"]))
    rows.append(
        {
            "part": "encoder",
            "note": "ACT.encode minus the whole backbone, timed apart",
            **{k: encode_ms[k] - backbone_total[k] for k in encode_ms},
        }
    )
    shown = "  ".join(f"{k} {v:8.1f}" for k, v in rows[-1].items() if k.endswith("_ms"))
    print(f"  {'encoder':18s} {shown}", flush=True)
    memory, pos = jax.jit(encode)(params, batch["images"])

    def decode(p, memory):
        return model.apply(
            {"params": p, "batch_stats": stats}, memory, pos, train=False, method=ACT.decode
        )

    add("decoder", *_fwd_bwd(decode, params, memory), note=f"memory {tuple(memory.shape)}")

    tx = optax.chain(
        optax.clip_by_global_norm(10.0),
        optax.adamw(1e-5, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4),
    )
    opt_state = tx.init(params)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)

    @jax.jit
    def update(params, opt_state):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    add("optimizer", both=lambda: jax.block_until_ready(update(params, opt_state)))

    step, compile_s, _ = _train_step(model, spec, params, stats, seed)
    step_ms = 1000 * _median_s(step, warmup, steps)
    parts = sum(r.get("forward_backward_ms", 0.0) for r in rows if r["part"] != "h2d")
    rows.append({"part": "step", "forward_backward_ms": step_ms, "note": "dropout on, VAE"})
    rows.append({"part": "rest", "forward_backward_ms": step_ms - parts, "note": "step - parts"})
    for r in rows:
        if "forward_backward_ms" in r:
            r["share_of_step"] = r["forward_backward_ms"] / step_ms
    return {
        "rows": rows,
        "backbone_total": backbone_total,
        "step_compile_s": compile_s,
        "n_params": int(sum(np.size(v) for v in jax.tree.leaves(params))),
    }


def table(name: str, result: dict) -> str:
    lines = [
        f"{name}: step {result['rows'][-2]['forward_backward_ms']:.0f} ms",
        f"  {'part':18s} {'forward ms':>11s} {'fwd+bwd ms':>11s} {'share':>6s}  note",
    ]
    for r in result["rows"]:
        f = f"{r['forward_ms']:11.1f}" if "forward_ms" in r else " " * 11
        b = f"{r['forward_backward_ms']:11.1f}" if "forward_backward_ms" in r else " " * 11
        s = f"{100 * r['share_of_step']:5.1f}%" if "share_of_step" in r else " " * 6
        lines.append(f"  {r['part']:18s} {f} {b} {s}  {r.get('note', '')}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    p.add_argument("--presets", default="cpu_default,seed", help="bench/compare_lerobot.py's")
    p.add_argument("--steps", type=int, default=3, help="timed calls per part (median)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="XLA CPU threads (0: all cores)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec key, e.g. backbone_conv=fast (repeatable)",
    )
    p.add_argument("--out", default=str(HERE / "results" / "step_profile.json"))
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 1 or args.threads < 0:
        p.error("--steps and --warmup must be >= 1, --threads >= 0")
    act_bench_common.set_xla_threads(args.threads)
    from compare_lerobot import presets

    known = presets(HERE.parent / "configs" / "sim_default.py")
    names = [n for n in args.presets.split(",") if n]
    unknown = [n for n in names if n not in known]
    if unknown:
        p.error(f"--presets: unknown {unknown}; known: {sorted(known)}")
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set {item!r}: expected KEY=VALUE")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    doc = {
        "command": "python bench/step_profile.py " + " ".join(argv or sys.argv[1:]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "cpu_model": act_bench_common.cpu_model(),
        "presets": {},
    }
    for name in names:
        spec = {**known[name]["spec"], "backbone_width": 1.0, **overrides}
        if "backbone_conv" not in spec:
            spec["backbone_conv"] = "auto"
        print(f"{name}: {known[name]['note']}", flush=True)
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        result = profile(spec, args.steps, args.warmup)
        result.update(
            spec=spec,
            wall_s=time.perf_counter() - t0,
            loadavg_before=load_before,
            loadavg_after=os.getloadavg(),
            peak_rss_mb=peak_rss_mb(),
        )
        doc["presets"][name] = result
        print(table(name, result), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
