"""Claim 3, state absorption: does the joint state reach the decoder through the pixel tokens?

The original study saw the decoder attend little to the state token and suggested that the
encoder copies the state into the pixel tokens ("absorbs" it), so the decoder reads it there.
Two kinds of evidence, each with a control:

- **Probes** (`probe_layers`): the joint state from the pixel tokens only (never the latent or
  state token) at the encoder input and after each encoder layer. The cameras see the arm, so
  the input already carries some of the state; absorption predicts a *rise* across the layers,
  larger than the same rise in a randomly initialised network of the same architecture. The
  pixel tokens of a frame are flattened (cameras x h x w x D; the per-camera mean when that is
  more than `interp.claims.MAX_FEATURES`, as for the seed architecture) and projected on their
  top `PCA_COMPONENTS` principal components, fitted on all collected frames of that network and
  site without labels (a ridge probe on 3072 raw features costs minutes per fold on a 2-core CPU).
- **Interventions** (`interventions`), each run on dataset frames (the change of the predicted
  chunk, mean |patched - clean| in normalised action units, beside the clean chunk's own error
  against the recorded one) and in the simulator (success over independent uniform starts,
  paired with the unpatched policy on the same starts):
    - `state_ablated_at_input`: the state token replaced by its mean over the frames at the
      encoder input (the state is gone everywhere);
    - `state_key_out_cross_attn`: the state token removed as a key of the decoder's
      cross-attention only (the decoder cannot read it directly; the encoder still can);
    - `state_key_out_encoder`: removed as a key of encoder self-attention only (nothing can be
      absorbed; the decoder still reads the token itself, though that token no longer attends
      to itself either, so its own stream changes too);
    - `state_key_out_for_pixel_queries_encoder`: removed as a key of encoder self-attention for
      the pixel-token queries only: the pixels cannot read the state, while the latent and
      state tokens attend exactly as before (the cleanest test of absorption; added after the
      first full run, so it is reported beside the verdict, not in its rule);
    - controls of the same size: one seeded random pixel token mean-ablated at the input, and
      the same pixel removed as a key of cross-attention.

Verdict rule (`verdict`, fixed before any run; thresholds in `RULE`): the probe evidence holds
when the state R^2 of the pixel tokens rises from the input to the last encoder layer by at
least 0.05 and by at least 0.05 more than in the random-init network; the causal evidence holds
when ablating the state at the input moves the actions at least twice as much as the pixel
control does (the state is used) and knocking its key out of cross-attention moves them at most
half as much as the input ablation (the decoder does not need to read the token itself).
Both: supported; one: partial; none: not supported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from interp import claims
from interp.ablation import ablate, attention_sites, knock_out_keys
from interp.batches import in_batches
from interp.hooks import run_with_patches
from interp.shards import Collection
from interp.tokens import TokenIndex

PCA_COMPONENTS = 256
RULE = {"min_rise": 0.05, "min_rise_over_random": 0.05, "state_used": 2.0, "cross_share": 0.5}


def stream_names(model_config) -> list[str]:
    """The encoder token streams probed: the input, then each layer's output."""
    n = int(model_config.n_encoder_layers)
    return ["encoder/input_tokens"] + [f"encoder/layer_{i}/out" for i in range(n)]


def pooled_streams(model_config) -> bool:
    """Whether the streams are collected as per-camera means (too many pixel features raw)."""
    tokens = TokenIndex.for_config(model_config)
    return len(tokens.pixels()) * int(model_config.dim_model) > claims.MAX_FEATURES


def pixel_features(coll: Collection, name: str, tokens: TokenIndex) -> np.ndarray:
    """(frames, d) pixel-token features of one stream (latent and state tokens left out)."""
    x = coll.features(name)
    reduce = coll.manifest["features"][name]["reduce"]
    x = x[:, 2:] if reduce.startswith("pool") else x[:, tokens.pixels()]
    return x.reshape(len(x), -1)


def pca_project(x: np.ndarray, k: int = PCA_COMPONENTS) -> np.ndarray:
    """Rows projected on their top min(k, n, d) principal components (label-free)."""
    x = np.asarray(x, np.float64)
    k = min(k, *x.shape)
    xc = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    return xc @ vt[:k].T


def probe_layers(
    coll: Collection, random: Collection | None, tokens: TokenIndex, names: Sequence[str], **kw
) -> dict:
    """The state probe at each stream, with every control, and the rise across layers."""
    features_of = lambda c, n: pca_project(pixel_features(c, n, tokens))
    out: dict = {"sites": {}, "features": f"pixel tokens, PCA to at most {PCA_COMPONENTS}"}
    cache: dict = {}
    for name in names:
        out["sites"][name] = claims.run_probe(
            coll, name, "arm_state", random=random, cache=cache, features_of=features_of, **kw
        )
    split = lambda r: r["splits"]["episode"]
    first, last = split(out["sites"][names[0]]), split(out["sites"][names[-1]])
    out["rise"] = _diff(last["score"], first["score"])
    rand = lambda s: None if s["controls"]["random_init"] is None else s["controls"]["random_init"]
    if rand(first) is not None:
        out["rise_random_init"] = _diff(rand(last)["score"], rand(first)["score"])
    else:
        out["rise_random_init"] = None
    return out


def _diff(a, b):
    return None if a is None or b is None else a - b


def interventions(model_config, tokens: TokenIndex, input_tokens: np.ndarray, seed: int) -> dict:
    """{condition: patches} of the module docstring; `input_tokens` (B, N, D) is the reference
    for the mean ablations (the `encoder/input_tokens` of real frames)."""
    pixel = int(np.random.default_rng(seed).choice(tokens.pixels()))
    cross = attention_sites(model_config, "cross")
    ref = np.asarray(input_tokens, np.float32)
    label = tokens.label(pixel)
    return {
        "state_ablated_at_input": ablate(
            "encoder/input_tokens", [tokens.state], "mean", reference=ref
        ),
        "state_key_out_cross_attn": knock_out_keys(cross, [tokens.state]),
        "state_key_out_encoder": knock_out_keys(
            attention_sites(model_config, "encoder"), [tokens.state]
        ),
        "state_key_out_for_pixel_queries_encoder": knock_out_keys(
            attention_sites(model_config, "encoder"), [tokens.state], queries=tokens.pixels()
        ),
        f"control_pixel_{label}_ablated_at_input": ablate(
            "encoder/input_tokens", [pixel], "mean", reference=ref
        ),
        f"control_pixel_{label}_key_out_cross_attn": knock_out_keys(cross, [pixel]),
    }


def action_changes(
    model, variables, batch: Mapping, conditions: Mapping[str, dict], *, batch_size: int = 16
) -> dict:
    """Per condition, the change of the predicted chunk on `batch` (normalised units).

    Args:
        batch: {"images", "state" (normalised), "actions" (normalised), "action_is_pad"}.

    Returns:
        {"clean_error": mean |clean - recorded| over unpadded steps, "conditions": {name:
        {"mean_abs_change", "median_frame_change", "relative_to_clean_error"}}}.
    """
    predict = lambda patches: (
        lambda sub: run_with_patches(model, variables, sub, patches)[0]["actions"]
    )
    clean = in_batches(predict({}), batch, batch_size)
    keep = ~np.asarray(batch["action_is_pad"])[..., None]
    err = np.abs(clean - np.asarray(batch["actions"]))
    clean_error = float((err * keep).sum() / (keep.sum() * clean.shape[-1]))
    out = {"clean_error": clean_error, "n_frames": len(clean), "conditions": {}}
    for name, patches in conditions.items():
        change = np.abs(in_batches(predict(patches), batch, batch_size) - clean)
        per_frame = change.mean(axis=(1, 2))
        out["conditions"][name] = {
            "mean_abs_change": float(per_frame.mean()),
            "median_frame_change": float(np.median(per_frame)),
            "relative_to_clean_error": float(per_frame.mean() / max(clean_error, 1e-12)),
        }
    return out


def paired_sign_test(only_clean: int, only_patched: int) -> float:
    """Two-sided exact binomial (McNemar) p-value of the discordant pairs."""
    n = only_clean + only_patched
    if n == 0:
        return 1.0
    k = min(only_clean, only_patched)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def sim_success(
    policy,
    conditions: Mapping[str, dict],
    *,
    starts: int,
    seed: int,
    max_steps: int,
    execution: str,
    progress: bool = True,
) -> dict:
    """Success of the clean and each patched policy on the same `starts` uniform cube starts
    (seeds `seed .. seed + starts - 1`: independent starts, each run once per condition)."""
    from act_jax.evaluate import run_rollouts, wilson_interval
    from act_jax.execution import make_executor
    from hardware.sim import SimRobot
    from interp.hooks import patched_policy

    cfg = policy.config
    robot = SimRobot(
        image_size=tuple(cfg.model.image_size),
        cameras=tuple(cfg.model.cameras),
        distribution="uniform",
    )
    results: dict = {"starts": starts, "seed": seed, "max_steps": max_steps, "execution": execution}
    outcomes = {}
    with robot:
        for name, patches in {"clean": None, **conditions}.items():
            p = policy if patches is None else patched_policy(policy, patches)
            p.warmup()
            rollouts = run_rollouts(
                lambda p=p: p.as_controller(make_executor(execution)),
                robot,
                episodes=starts,
                seed=seed,
                max_steps=max_steps,
                progress=progress,
            )
            outcomes[name] = np.array([r.success for r in rollouts])
    clean = outcomes["clean"]
    results["conditions"] = {}
    for name, ok in outcomes.items():
        k = int(ok.sum())
        row = {"successes": k, "rate": k / starts, "ci95": list(wilson_interval(k, starts))}
        if name != "clean":
            only_clean, only_patched = int((clean & ~ok).sum()), int((ok & ~clean).sum())
            row.update(
                lost=only_clean,
                gained=only_patched,
                p_paired=paired_sign_test(only_clean, only_patched),
            )
        results["conditions"][name] = row
    return results


def verdict(layer_probes: dict, changes: dict) -> tuple[str, str]:
    """(status, sentence) by the rule of the module docstring."""
    rise, rise_r = layer_probes["rise"], layer_probes["rise_random_init"]
    probe_ok = (
        rise is not None
        and rise >= RULE["min_rise"]
        and (rise_r is None or rise - rise_r >= RULE["min_rise_over_random"])
    )
    c = changes["conditions"]
    d_in = c["state_ablated_at_input"]["mean_abs_change"]
    d_cross = c["state_key_out_cross_attn"]["mean_abs_change"]
    d_ctrl = next(
        v["mean_abs_change"]
        for k, v in c.items()
        if k.endswith("_ablated_at_input") and k.startswith("control")
    )
    used = d_in >= RULE["state_used"] * d_ctrl
    causal_ok = used and d_cross <= RULE["cross_share"] * d_in
    status = {2: "supported", 1: "partial", 0: "not-supported"}[int(probe_ok) + int(causal_ok)]
    fmt = lambda v: "n/a" if v is None else f"{v:+.2f}"
    sentence = (
        f"state R^2 from pixel tokens rises {fmt(rise)} from the encoder input to its last layer "
        f"(random-init {fmt(rise_r)}); ablating the state token at the input changes the actions "
        f"by {d_in:.3f} (a pixel token: {d_ctrl:.3f}), removing it as a cross-attention key by "
        f"{d_cross:.3f} ({d_cross / max(d_in, 1e-12):.0%} of the input ablation): probe evidence "
        f"{'holds' if probe_ok else 'does not hold'}, causal evidence "
        f"{'holds' if causal_ok else 'does not hold'}"
        + ("" if used else " (the state is barely used at all)")
    )
    return status, sentence


def rise_figure(layer_probes: dict) -> bytes:
    """State R^2 per encoder stream: trained, random-init, shuffled and time-only."""
    from interp.overlays import fig_to_png, plt  # overlays selects the headless backend

    sites = list(layer_probes["sites"])
    get = lambda key: [
        split_score(layer_probes["sites"][s]["splits"]["episode"], key) for s in sites
    ]
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    x = np.arange(len(sites))
    for key, style in (
        ("trained", "o-"),
        ("random_init", "s--"),
        ("shuffled", "x:"),
        ("time_only", "^:"),
    ):
        ax.plot(
            x, [np.nan if v is None else v for v in get(key)], style, label=key.replace("_", "-")
        )
    ax.set_xticks(x, [s.replace("encoder/", "") for s in sites])
    ax.set_ylabel("held-out R^2 (episode folds)")
    ax.set_title("Joint state from the pixel tokens, across the encoder")
    ax.axhline(0, color="#999", lw=0.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig_to_png(fig)


def split_score(split: dict, key: str):
    """A probe split's score ("trained") or one control's score; None where it did not run."""
    if key == "trained":
        return split["score"]
    c = split["controls"][key]
    return None if c is None else c["score"]


def changes_figure(changes: dict) -> bytes:
    """Mean |change| of the predicted chunk per intervention, beside the clean error."""
    from interp.overlays import fig_to_png, plt  # overlays selects the headless backend

    names = list(changes["conditions"])
    vals = [changes["conditions"][n]["mean_abs_change"] for n in names]
    fig, ax = plt.subplots(figsize=(6.4, 0.5 * len(names) + 1.2))
    colors = ["#999" if n.startswith("control") else "#36c" for n in names]
    ax.barh(np.arange(len(names)), vals, color=colors)
    ax.axvline(changes["clean_error"], color="#c33", ls="--", label="clean chunk vs recorded")
    ax.set_yticks(np.arange(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("mean |patched - clean| (normalised action units)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig_to_png(fig)
