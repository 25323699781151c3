r"""The attention analysis of a checkpoint on a set of frames: numbers (JSON-ready) and figures.

    python -m interp.attention_analysis --checkpoint runs/sim_default --out /tmp/attention \
        --frames 96

reads evenly spaced frames of the checkpoint's `act_episodes` dataset (or `--dataset DIR`), labels
each with its task phase (`interp.labels.task_phase`, from the demo's commanded gripper), and writes
`attention.json` and the PNGs of `analyse_attention` to `--out`. The statistics and the rollout
are defined in `interp.attention`; the figures in `interp.overlays`.

From python (what `interp.report` calls):

    summary, pngs = analyse_attention(model, variables, batch, tokens, phases=labels)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from act_jax import intermediates as im
from interp import attention as A
from interp import overlays
from interp.ablation import attention_sites
from interp.batches import padded, take
from interp.tokens import TokenIndex

ALL = "all frames"


def weight_sites(model_config) -> tuple[list[str], list[str]]:
    """(encoder self-attention, decoder cross-attention) weight names, in layer order: the
    sites of `interp.ablation.attention_sites` with their `*_weights` hook points."""
    weights = lambda which: [
        s.removesuffix("_logits") + "_weights" for s in attention_sites(model_config, which)
    ]
    return weights("encoder"), weights("cross")


def short_name(site: str) -> str:
    """ "encoder/layer_0/attn_weights" -> "enc L0"; decoder cross-attention -> "dec L0 cross"."""
    part, layer = site.split("/")[:2]
    tag = "enc" if part == "encoder" else "dec"
    return f"{tag} L{layer.split('_')[1]}" + (" cross" if "cross" in site else "")


def _collect(model, variables, batch, tokens, batch_size):
    """Runs the model in mini-batches; per-frame statistics, rollouts and maps, concatenated."""
    enc, dec = weight_sites(model.config)
    n = len(batch["state"])
    parts: list[dict] = []
    for rows, keep in padded(n, min(batch_size, n)):
        captured = im.run_with_cache(model, variables, take(batch, rows), enc + dec)
        cache = {k: np.asarray(v)[:keep] for k, v in captured.items()}
        rollout = A.encoder_rollout([cache[s] for s in enc])  # (b, N, N)
        part = {s: A.site_stats(cache[s], tokens) for s in enc + dec}
        part["state_into_pixels"] = A.state_into_pixels(rollout, tokens)
        for s in dec:
            attribution = A.cross_rollout(cache[s], rollout)  # (b, C, N)
            part[f"rollout:{s}"] = A.attribution_stats(attribution, tokens)
            part[f"map:{s}"] = cache[s].mean(axis=(1, 2))  # (b, N) head- and query-mean
            part[f"map_rollout:{s}"] = attribution.mean(1)
        parts.append(part)
    out = {}
    for key, first in parts[0].items():
        if isinstance(first, dict):
            out[key] = {k: np.concatenate([p[key][k] for p in parts]) for k in first}
        else:
            out[key] = np.concatenate([p[key] for p in parts])
    return out, enc, dec


def _uniform_rollout(tokens: TokenIndex, n_enc: int, chunk: int) -> dict:
    """Rollout statistics of a model whose every attention row is uniform (the contrast)."""
    n = tokens.n_tokens
    rollout = A.encoder_rollout([np.full((1, 1, n, n), 1.0 / n)] * n_enc)
    attribution = A.cross_rollout(np.full((1, 1, chunk, n), 1.0 / n), rollout)
    stats = A.summarise(A.attribution_stats(attribution, tokens), n)["head_mean"]
    return {
        "attribution": {k: v["mean"] for k, v in stats.items()},
        "state_into_pixels": float(A.state_into_pixels(rollout, tokens)[0]),
    }


def _by_phase(stats, n_keys, labels, phases):
    return {p: A.summarise(stats, n_keys, labels == p) for p in phases}


def _figures(data, enc, dec, batch, tokens, labels, phases, result) -> dict[str, bytes]:
    n = tokens.n_tokens
    sites = {short_name(s): result["sites"][s]["all"] for s in enc + dec}
    base = {short_name(s): result["uniform"] for s in enc + dec}
    pngs = {
        "attention_summary.png": overlays.summary_figure(
            sites, base, title=f"Attention concentration over {len(labels)} frames ({n} tokens)"
        )
    }
    curves = {}
    for s in dec:
        curves[f"cross-attn {short_name(s)[4:6]}"] = result["sites"][s]["per_query"]
        curves[f"rollout {short_name(s)[4:6]}"] = result["rollout"][s]["per_query"]
    pngs["decoder_queries.png"] = overlays.per_query_figure(
        curves, n, result["uniform"], title="Decoder chunk queries over the encoder tokens"
    )
    last = dec[-1]  # the decoder layer whose output feeds the action head
    kinds = ("cross-attention", "rollout")
    mean_rows, frame_rows = [], []
    for p in phases:
        idx = np.flatnonzero(labels == p)
        mid = idx[len(idx) // 2]  # the frame the maps are drawn over
        images = {c: np.asarray(batch["images"][c][mid]) for c in tokens.cameras}
        mean_rows.append(
            overlays.OverlayRow(
                f"{p} ({len(idx)} frames)",
                images,
                {
                    kinds[0]: data[f"map:{last}"][idx].mean(0),
                    kinds[1]: data[f"map_rollout:{last}"][idx].mean(0),
                },
            )
        )
        frame_rows.append(
            overlays.OverlayRow(
                f"{p}, frame {mid}",
                images,
                {kinds[0]: data[f"map:{last}"][mid], kinds[1]: data[f"map_rollout:{last}"][mid]},
            )
        )
    what = f"{short_name(last)}-attention (head and chunk-query mean) and its rollout"
    pngs["overlay_phases.png"] = overlays.overlay_figure(
        mean_rows, tokens, kinds, title=f"{what}, mean over each phase's frames"
    )
    pngs["overlay_frames.png"] = overlays.overlay_figure(
        frame_rows, tokens, kinds, title=f"{what}, one frame per phase"
    )
    return pngs


def analyse_attention(
    model,
    variables,
    batch,
    tokens: TokenIndex,
    phases: Sequence | None = None,
    *,
    batch_size: int = 16,
) -> tuple[dict, dict[str, bytes]]:
    """Attention statistics, rollout and figures of `model` on a set of frames.

    Args:
        model: an `act_jax.model.ACT`.
        variables: {"params", "batch_stats"}.
        batch: {"images": {camera: (B, H, W, 3) uint8}, "state": (B, S) normalised}.
        tokens: `TokenIndex.for_config(model.config)`.
        phases: optional (B,) labels (e.g. task phases); statistics are also given per label
            and the overlays have a row per label. None: one group of all frames.
        batch_size: frames per forward pass (the seed model's weights are 35 MB a frame).

    Returns:
        (summary, pngs): summary is JSON-ready (see `interp.attention` for each statistic):
        {"n_frames", "n_tokens", "phases": {label: count}, "uniform": baseline statistics,
        "sites": {name: {"keys", "all", "by_phase", ["per_query"]}}, "rollout": {decoder site:
        {"all", "by_phase", "per_query"}, "state_into_pixels": {...}, "uniform": {...}}};
        pngs maps file names to PNG bytes.
    """
    n_frames = len(batch["state"])
    if tokens != TokenIndex.for_config(model.config):
        raise ValueError(
            f"tokens {tokens} do not describe this model ({TokenIndex.for_config(model.config)})"
        )
    labels = np.array([ALL] * n_frames if phases is None else [str(p) for p in phases])
    if labels.shape != (n_frames,):
        raise ValueError(f"phases has {len(labels)} labels for {n_frames} frames")
    order = list(dict.fromkeys(labels.tolist()))  # labels in order of first appearance
    data, enc, dec = _collect(model, variables, batch, tokens, batch_size)
    n = tokens.n_tokens
    result = {
        "n_frames": n_frames,
        "n_tokens": n,
        "cameras": list(tokens.cameras),
        "grid": list(tokens.grid),
        "phases": {p: int((labels == p).sum()) for p in order},
        "uniform": A.uniform_baseline(n, tokens),
        "sites": {},
        "rollout": {},
    }
    for s in enc + dec:
        result["sites"][s] = {
            "keys": n,
            "all": A.summarise(data[s], n),
            "by_phase": _by_phase(data[s], n, labels, order),
        }
        if s in dec:
            result["sites"][s]["per_query"] = A.per_query(data[s])
    for s in dec:
        st = data[f"rollout:{s}"]
        result["rollout"][s] = {
            "all": A.summarise(st, n)["head_mean"],
            "per_query": A.per_query(st),
            "by_phase": {p: v["head_mean"] for p, v in _by_phase(st, n, labels, order).items()},
        }
    sip = data["state_into_pixels"]
    result["rollout"]["state_into_pixels"] = {
        "mean": float(sip.mean()),
        "median": float(np.median(sip)),
        "by_phase": {p: float(sip[labels == p].mean()) for p in order},
    }
    result["rollout"]["uniform"] = _uniform_rollout(tokens, len(enc), model.config.chunk_size)
    return result, _figures(data, enc, dec, batch, tokens, labels, order, result)


def frames_from_dataset(dataset_dir, config, norm_stats, n_frames: int):
    """`n_frames` evenly spaced frames of an `act_episodes` dataset, with their phase labels.

    Returns:
        (batch, meta): batch as `analyse_attention` takes it (state normalised with
        `norm_stats`) plus the recorded chunks ("actions", normalised, and "action_is_pad");
        meta {"episode", "step", "phase"}, one entry per frame, the phase a name of
        `interp.labels.PHASES`.
    """
    from act_jax.data import ChunkSampler, load_episodes
    from interp.labels import GRIPPER, PHASES, task_phase

    m = config.model
    episodes = load_episodes(
        dataset_dir, m.cameras, m.image_size, m.state_dim, m.action_dim, decode="lazy"
    )
    lengths = np.array([len(ep) for ep in episodes])
    ep_of = np.repeat(np.arange(len(episodes)), lengths)  # flat frame -> episode position
    t_of = np.concatenate([np.arange(n) for n in lengths])
    frames = np.linspace(0, lengths.sum() - 1, n_frames).round().astype(np.int64)
    sampler = ChunkSampler(episodes, norm_stats, m.chunk_size, n_frames, seed=0)
    batch = sampler.gather(frames)
    phase_of = {e: task_phase(episodes[e].action[:, GRIPPER]) for e in set(ep_of[frames])}
    meta = {
        "episode": [int(episodes[e].episode_index) for e in ep_of[frames]],
        "step": t_of[frames].tolist(),
        "phase": [PHASES[phase_of[e][t]] for e, t in zip(ep_of[frames], t_of[frames], strict=True)],
    }
    keep = ("images", "state", "actions", "action_is_pad")
    return {k: batch[k] for k in keep}, meta


def main(argv=None) -> int:
    from hardware.arguments import int_in
    from interp import cli

    p = cli.parser("interp.attention_analysis", __doc__)
    p.add_argument("--checkpoint", required=True, help="training workdir (or its checkpoints/)")
    p.add_argument("--out", required=True, help="directory for attention.json and the PNGs")
    p.add_argument(
        "--dataset",
        default=None,
        help="an act_episodes dataset directory (default: the checkpoint config's)",
    )
    p.add_argument("--frames", type=int_in(1), default=96, help="evenly spaced frames to analyse")
    p.add_argument("--batch-size", type=int_in(1), default=16, help="frames per forward pass")
    args = p.parse_args(argv)
    from interp.collect import dataset_for, load_network

    with cli.expected_errors(p, args, "--checkpoint"):
        net = load_network(args.checkpoint)
    with cli.expected_errors(p, args, "--dataset"):
        dataset = dataset_for(net, args.dataset)
    with cli.expected_errors(p, args):
        batch, meta = frames_from_dataset(dataset, net.config, net.norm_stats, args.frames)
    tokens = TokenIndex.for_config(net.config.model)
    summary, pngs = analyse_attention(
        net.model, net.variables, batch, tokens, meta["phase"], batch_size=args.batch_size
    )
    summary.update(
        checkpoint=str(args.checkpoint),
        dataset=str(dataset),
        frames=meta,
        command="python -m interp.attention_analysis "
        + " ".join(sys.argv[1:] if argv is None else argv),
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "attention.json").write_text(json.dumps(summary, indent=1))
    for name, png in pngs.items():
        (out / name).write_bytes(png)
    print(headline(summary))
    print(f"wrote {out / 'attention.json'} and {', '.join(pngs)}")
    return 0


def headline(summary: dict) -> str:
    """One line per site: tokens for 90% of the mass (head mean) against uniform, state share."""
    u = summary["uniform"]
    lines = []
    for site, s in summary["sites"].items():
        e = s["all"]["head_mean"]
        lines.append(
            f"{site}: k90 mean {e['k90']['mean']:.1f} (median {e['k90']['median']:.0f})"
            f" of {s['keys']} tokens, uniform {u['k90']['count']}; k50 mean "
            f"{e['k50']['mean']:.1f}, uniform {u['k50']['count']}; entropy "
            f"{e['entropy']['mean']:.2f}; state share {e['share_state']['mean']:.3f}, "
            f"latent {e['share_latent']['mean']:.3f} (uniform {u['share_state']:.3f})"
        )
    for site, r in summary["rollout"].items():
        if "all" in r:
            e = r["all"]
            lines.append(
                f"rollout {site}: k90 {e['k90']['mean']:.1f}, state share "
                f"{e['share_state']['mean']:.3f}, latent {e['share_latent']['mean']:.3f}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
