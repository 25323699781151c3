r"""The decoder MLP read as a key-value memory (Geva et al., 2021): what does each hidden unit
fire on, and what does it write?

    python -m interp.kv_memory --checkpoint runs/lookup_named --out runs/lookup_named/kv

Keys: for every hidden unit u of `decoder/layer_0/mlp_hidden` (after the ReLU, averaged over the
chunk's query positions), its `--top-k` most activating training frames (every
`--frame-stride`-th frame of the training dataset). A unit of a lookup table would fire on the
frames of one place: its top frames' *location purity* (the share of the most common cube
location among them) would be high, and its *episode entropy* (how spread they are over demos,
0 = one demo, 1 = all different) could be low. Both are compared with the same unit statistics
of the untrained network (`random-init`) and with k frames drawn at random (`chance`).

Values: what unit u adds to the residual stream is h_u * W2[u]. Its effect on the action chunk
is read through the rest of the network (post-norm, decoder norm, action head), linearised at
each frame (a Jacobian-vector product from `decoder/layer_0/mlp_out`), and checked against
the real ablation of the unit (`decoder/layer_0/mlp_hidden` with unit u zeroed): cosine and
norm ratio of predicted to actual change, on the unit's top frames. A faithful value reading
gives cosines near 1.

Location purity needs located demos (location ids >= 0, e.g. the named set); with uniform demos
the cube positions are binned into a 3 x 3 grid over the demos' range instead.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

HIDDEN = "decoder/layer_0/mlp_hidden"
MLP_OUT = "decoder/layer_0/mlp_out"


def places(location_id: np.ndarray, cube_xy: np.ndarray) -> np.ndarray:
    """A discrete place per frame: the location id, or a 3 x 3 bin of the cube's start."""
    if (location_id >= 0).all():
        return location_id.astype(np.int64)
    lo, hi = cube_xy.min(0), cube_xy.max(0)
    cell = np.clip(((cube_xy - lo) / np.maximum(hi - lo, 1e-9) * 3).astype(int), 0, 2)
    return cell[:, 0] * 3 + cell[:, 1]


def _entropy(values: np.ndarray, k: int) -> float:
    """Entropy of the values' empirical distribution, over log(k) (1: all different)."""
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(k)) if k > 1 else 0.0


def unit_keys(hidden: np.ndarray, place: np.ndarray, episode: np.ndarray, top_k: int) -> dict:
    """Per unit: top-k frames, location purity, episode entropy; plus dead units."""
    n, f = hidden.shape
    k = min(top_k, n)
    top = np.argsort(-hidden, axis=0, kind="stable")[:k].T  # (F, k)
    alive = hidden.max(0) > 0
    purity = np.array([np.bincount(place[t]).max() / k for t in top])
    ep_entropy = np.array([_entropy(episode[t], k) for t in top])
    return {"top": top, "alive": alive, "purity": purity, "episode_entropy": ep_entropy}


def chance_purity(place: np.ndarray, k: int, draws: int = 500, seed: int = 0) -> float:
    """Mean location purity of k frames drawn at random (no replacement)."""
    rng = np.random.default_rng(seed)
    k = min(k, len(place))
    return float(
        np.mean(
            [
                np.bincount(place[rng.choice(len(place), k, replace=False)]).max() / k
                for _ in range(draws)
            ]
        )
    )


def value_check(network, batch: dict, units: list[int], frames_of: dict[int, np.ndarray]) -> list:
    """Per unit: predicted (linearised value vector) vs actual (ablation) change of the chunk on
    its top frames: cosine and norm ratio."""
    from interp.hooks import run_with_cache, run_with_patches

    model, variables = network.model, network.variables
    w2 = np.asarray(variables["params"]["decoder"]["layer_0"]["mlp"]["linear2"]["kernel"])
    rows = []
    for u in units:
        idx = frames_of[u]
        sub = {
            "images": {c: v[idx] for c, v in batch["images"].items()},
            "state": batch["state"][idx],
        }
        clean, cache = run_with_cache(model, variables, sub, names=[HIDDEN, MLP_OUT])
        hidden = np.asarray(cache[HIDDEN])
        h_u = hidden[..., u]  # (b, C)
        zeroed = hidden.copy()
        zeroed[..., u] = 0.0  # an array patch: one compile for every unit
        ablated, _ = run_with_patches(model, variables, sub, {HIDDEN: zeroed})
        actual = np.asarray(ablated["actions"] - clean["actions"])
        base_out = jnp.asarray(cache[MLP_OUT])

        def actions_from(mlp_out, sub=sub):
            return run_with_patches(model, variables, sub, {MLP_OUT: mlp_out})[0]["actions"]

        delta = -jnp.asarray(h_u)[..., None] * jnp.asarray(w2[u])[None, None]  # (b, C, D)
        _, predicted = jax.jvp(actions_from, (base_out,), (delta,))
        p, a = np.asarray(predicted).ravel(), actual.ravel()
        denom = np.linalg.norm(p) * np.linalg.norm(a)
        rows.append(
            {
                "unit": int(u),
                "cosine": float(p @ a / denom) if denom > 0 else None,
                "norm_ratio": float(np.linalg.norm(p) / max(np.linalg.norm(a), 1e-12)),
                "actual_change": float(np.abs(a).mean()),
            }
        )
    return rows


def analyse(
    checkpoint,
    *,
    dataset=None,
    frame_stride: int = 3,
    top_k: int = 50,
    check_units: int = 16,
    random_init_seed: int = 0,
    batch_size: int = 32,
    progress: bool = True,
) -> dict:
    """Collects the hidden units of the trained and an untrained network on the training
    frames and computes the statistics of the module docstring."""
    import tempfile

    from interp.collect import collect, dataset_for, load_network
    from interp.shards import Collection

    trained = load_network(checkpoint)
    dataset = dataset_for(trained, dataset)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tag, network in (
            ("trained", trained),
            ("random_init", load_network(checkpoint, random_init_seed=random_init_seed)),
        ):
            collect(
                network,
                dataset,
                [HIDDEN],
                Path(tmp) / tag,
                pooled=True,
                frame_stride=frame_stride,
                batch_size=batch_size,
                progress=progress,
            )
            c = Collection(Path(tmp) / tag)
            hidden = c.features(HIDDEN)  # (N, F)
            labels = {
                f: c.labels(f)
                for f in ("location_id", "cube_start_pose", "episode", "episode_position", "frame")
            }
            place = places(labels["location_id"], labels["cube_start_pose"][:, :2])
            keys = unit_keys(hidden, place, labels["episode"], top_k)
            out[tag] = {"keys": keys, "labels": labels, "place": place}
    place = out["trained"]["place"]
    k = min(top_k, len(place))
    result = {
        "frames": int(len(place)),
        "units": int(len(out["trained"]["keys"]["purity"])),
        "top_k": k,
        "places": int(len(np.unique(place))),
        "chance_purity": chance_purity(place, k),
    }
    for tag in ("trained", "random_init"):
        keys = out[tag]["keys"]
        alive = keys["alive"]
        result[tag] = {
            "alive_units": int(alive.sum()),
            "purity_median": float(np.median(keys["purity"][alive])),
            "purity_quartiles": np.percentile(keys["purity"][alive], [25, 75]).tolist(),
            "share_pure_units": float(np.mean(keys["purity"][alive] >= 0.9)),
            "episode_entropy_median": float(np.median(keys["episode_entropy"][alive])),
            "purity": keys["purity"].tolist(),
        }
    # Value vectors of the purest trained units, on their own top frames.
    keys = out["trained"]["keys"]
    order = np.argsort(-np.where(keys["alive"], keys["purity"], -1), kind="stable")
    units = [int(u) for u in order[:check_units]]
    labels = out["trained"]["labels"]
    result["value_check"] = _value_check_on_frames(
        trained, dataset, labels, keys, units, min(k, 16)
    )
    return result


def _value_check_on_frames(network, dataset, labels, keys, units, per_unit: int) -> list:
    """Runs `value_check` on the frames each unit fires most on, read back from the dataset
    (only the episodes that hold them: `interp.collect.frames_at`)."""
    from interp.collect import frames_at

    wanted = sorted({int(r) for u in units for r in keys["top"][u][:per_unit]})  # rows
    rows = np.array(wanted)
    batch = frames_at(network, dataset, labels["episode_position"][rows], labels["frame"][rows])
    where = {r: i for i, r in enumerate(wanted)}
    frames_of = {u: np.array([where[int(r)] for r in keys["top"][u][:per_unit]]) for u in units}
    return value_check(network, batch, units, frames_of)


def figure(result: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from interp.overlays import fig_to_png

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    bins = np.linspace(0, 1, 21)
    for tag in ("trained", "random_init"):
        ax1.hist(result[tag]["purity"], bins=bins, alpha=0.6, label=tag)
    ax1.axvline(result["chance_purity"], color="k", ls=":", label="chance")
    ax1.set_xlabel(f"location purity of the top {result['top_k']} frames")
    ax1.set_ylabel("hidden units")
    ax1.legend(fontsize=8)
    vc = [r for r in result["value_check"] if r["cosine"] is not None]
    ax2.bar(range(len(vc)), [r["cosine"] for r in vc], color="#88a")
    ax2.set_ylim(-1, 1.05)
    ax2.set_xlabel("purest trained units")
    ax2.set_ylabel("cosine(predicted, ablation)")
    fig.tight_layout()
    return fig_to_png(fig)


def main(argv=None) -> int:
    from hardware.arguments import int_in
    from interp import cli

    p = cli.parser("interp.kv_memory", __doc__)
    p.add_argument("--checkpoint", required=True, help="training workdir")
    p.add_argument("--out", required=True, help="directory for kv_memory.json and .png")
    p.add_argument("--dataset", default=None, help="default: the checkpoint's training dataset")
    p.add_argument("--frame-stride", type=int_in(1), default=3, help="every s-th frame")
    p.add_argument("--top-k", type=int_in(2), default=50, help="top frames per unit")
    p.add_argument(
        "--check-units",
        type=int_in(1),
        default=16,
        help="purest units whose value vectors are checked by ablation",
    )
    p.add_argument("--random-init-seed", type=int_in(0), default=0)
    args = p.parse_args(argv)
    t0 = time.time()
    with cli.expected_errors(p, args):
        result = analyse(
            args.checkpoint,
            dataset=args.dataset,
            frame_stride=args.frame_stride,
            top_k=args.top_k,
            check_units=args.check_units,
            random_init_seed=args.random_init_seed,
        )
    result.update(
        command="python -m interp.kv_memory " + " ".join(argv or sys.argv[1:]),
        wall_time_s=round(time.time() - t0, 1),
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kv_memory.json").write_text(json.dumps(result, indent=1))
    (out / "kv_memory.png").write_bytes(figure(result))
    for tag in ("trained", "random_init"):
        r = result[tag]
        print(
            f"{tag:12s} {r['alive_units']} live units, median location purity "
            f"{r['purity_median']:.2f} (chance {result['chance_purity']:.2f}), "
            f"{100 * r['share_pure_units']:.0f}% of units >= 0.9, median episode entropy "
            f"{r['episode_entropy_median']:.2f}"
        )
    cos = [r["cosine"] for r in result["value_check"] if r["cosine"] is not None]
    if cos:
        print(
            f"value vectors vs ablation: median cosine {np.median(cos):.2f} over {len(cos)} units"
        )
    print(f"wrote {out}/kv_memory.json and kv_memory.png in {result['wall_time_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
