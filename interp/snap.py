r"""Where it snaps: along lines between two training places, is each site's activation a step
from one place's to the other's (a lookup) or a graded move (an interpolation)?

    nice python -m interp.snap --checkpoint runs/lookup_named \
        --out bench/reference_results/interp/snap_named

Lines (`interp.snap_lines`): pairs of neighbouring training locations A, B of the base (its
`data.record_locations` spec; neighbours are the Gabriel graph's edges, `--pairs N` the N
shortest, ties to the lines nearest the locations' centre, or `--pairs all`, or `--pairs 0-1,0-2`
by index). On each line the cube starts at lambda = 0, 1/8, ..., 1 (`--lambdas`), flat and
square to the table.

Sites: every hook point on the forward path (`sites`): the backbone's feature maps, the encoder
tokens after each layer, the decoder layer's MLP input, hidden units and output, the layer and
decoder outputs, and `actions`; plus two behaviour curves: `aim`, the tool point (x, y) that the
first chunk's last action commands (forward kinematics; with a 30-tick chunk that is the end of
the approach, above the cube), and `grasp`, the rollout's commanded grasp point (x, y; see
`interp.oracles`). Activations are captured on the observation at reset (`--ticks 0`, the arm at
home for every start, so only the cube differs) and optionally at later ticks of the expert's
nominal approach to that start (concatenated). `interp.snap_fit` places each activation between
the line's endpoint activations and fits step against line; its rule says whether a curve
snaps. A site snaps when its curve snaps on at least half the lines, and the snap site is the
first site on the forward path that snaps.

Calibration: the expert's own grasp points t(c) along each line must come out as not snapping,
and the nearest-replay oracle's (t of the nearest training location) as snapping, or the
instrument is reported invalid.

Probes: ridge (interp.probes.cross_validate) from each site to the cube's (x, y), tested on held-
out lines (the grouped folds hold whole lines out; endpoints are groups of their own).

Patching (TransformerLens style, denoising): the midpoint run's activation (lambda = 1/2) is
patched into each endpoint's run, whole or in part: the encoder's memory (all tokens, the state
token, one camera's pixel tokens), the decoder MLP's input (which only the MLP reads: the
residual stream carries the unpatched value around it) and output, and, for each of these, only
its component along the line (h_B - h_A). Effect = <x_patched - x_end, x_mid - x_end> /
|x_mid - x_end|^2, pooled over lines and endpoints, for x the first chunk (normalised units), its
aim point, and the grasp point of a patched rollout run until the gripper closes. In that
rollout the source is re-made at every tick: a second sim holds the cube at the midpoint and
copies the patched run's arm pose, so the source differs from the patched run in the cube's
place only. Patching the whole of encoder/out, which the rest of the network reads alone,
reproduces the midpoint run (effect 1 for the chunk): a check, not a finding.

Whether the decoder MLP is the lookup table needs the snap at its output
(`mlp_rule`: mlp_in does not snap and the first snapping site is mlp_hidden or mlp_out) and
fine-tunes that favour it (`interp.finetune_compare`); this module reports the first half only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from act_jax.config_ranges import get_field
from interp import snap_fit as F
from interp.snap_figures import add_section, plot
from interp.snap_lines import line_starts, pairs_arg, probe_groups, select_pairs
from interp.snap_patch import aim_points

LAMBDAS = tuple(float(x) for x in np.linspace(0, 1, 9))
MLP = "decoder/layer_0"


# -- observations and activations -----------------------------------------------------------------
def observe(robot, poses: np.ndarray, ticks) -> tuple[dict, np.ndarray]:
    """Observations at `ticks` of the expert's nominal approach from each start:
    ({camera: (S, T, H, W, 3)}, states (S, T, 6))."""
    from interp.oracles import nominal_plan

    images = {c: [] for c in robot.cameras}
    states = []
    for pose in poses:
        obs = robot.reset(cube_pose=pose)
        plan = nominal_plan(robot, pose) if max(ticks) > 0 else None
        seen = []
        for t in range(max(ticks) + 1):
            if t in ticks:
                seen.append(obs)
            if t < max(ticks):
                robot.send_action(plan[min(t, len(plan) - 1)])
                obs = robot.get_observation()
        for c in robot.cameras:
            images[c].append(np.stack([o["images"][c] for o in seen]))
        states.append(np.stack([o["state"] for o in seen]))
    return {c: np.stack(v) for c, v in images.items()}, np.stack(states)


def sites(model_config) -> list[str]:
    """Hook points on the forward path, in order (activations, not attention maps)."""
    out = [f"backbone/{c}" for c in model_config.cameras] + ["encoder/input_tokens"]
    out += [f"encoder/layer_{i}/out" for i in range(model_config.n_encoder_layers)]
    out.append("encoder/out")
    for i in range(model_config.n_decoder_layers):
        out += [f"decoder/layer_{i}/{k}" for k in ("mlp_in", "mlp_hidden", "mlp_out", "out")]
    return [*out, "decoder/out", "actions"]


def capture(policy, images: dict, states: np.ndarray, names, batch_size: int = 16) -> dict:
    """{name: (n, ...)} for observations images {cam: (n, H, W, 3)}, raw states (n, 6), in fixed
    batches (the last padded) so that one program serves every batch."""
    from interp.batches import padded, take
    from interp.hooks import run_with_cache

    stats = policy.norm_stats
    state = ((states - stats.state_mean) / stats.state_std).astype(np.float32)
    inputs = {"images": images, "state": state}
    parts: dict[str, list] = {}
    for rows, keep in padded(len(state), batch_size):
        _, cache = run_with_cache(policy.model, policy.variables, take(inputs, rows), list(names))
        for k, v in cache.items():
            parts.setdefault(k, []).append(np.asarray(v)[:keep])
    return {k: np.concatenate(v) for k, v in parts.items()}


# -- curves ---------------------------------------------------------------------------------------
def curves(values: np.ndarray, index: np.ndarray, lambdas) -> dict:
    """Per line, the coefficient and residual of values[index[line]] (S, ...) between the
    line's endpoints and their step-vs-line comparison; whether the site snaps on half."""
    lam = np.asarray(lambdas, np.float64)
    per_line = []
    for row in index:
        v = np.asarray(values[row], np.float64)
        try:
            if not np.isfinite(v).all():
                raise ValueError("a start without a value (a rollout that never closed)")
            coef, res = F.line_coefficient(v, v[0], v[-1])
        except ValueError:
            per_line.append(None)  # nothing to place, or identical endpoints
            continue
        per_line.append(
            {
                "coefficient": coef.tolist(),
                "residual": res.tolist(),
                "fit": F.compare(lam, coef, res),
            }
        )
    k = sum(bool(p and p["fit"]["snaps"]) for p in per_line)
    return {"per_line": per_line, "snap_lines": k, "snaps": 2 * k >= len(index) and k > 0}


def mlp_rule(snap_site: str | None) -> dict:
    """Half of the issue's rule for naming the decoder MLP the lookup table."""
    at_output = snap_site in (f"{MLP}/mlp_hidden", f"{MLP}/mlp_out")
    if snap_site is None:
        why = "no site on the forward path snaps"
    elif at_output:
        why = f"the first snapping site is {snap_site}; {MLP}/mlp_in does not snap"
    else:
        why = f"the first snapping site is {snap_site}, not the decoder MLP's output"
    return {"snap_at_mlp_output": at_output, "reason": why}


def calibration(t_line: np.ndarray, t_near: np.ndarray, index, lambdas) -> dict:
    """The expert's grasp points must not snap, the nearest-replay oracle's must."""
    expert, nearest = curves(t_line, index, lambdas), curves(t_near, index, lambdas)
    ok = (not expert["snaps"]) and nearest["snaps"]
    return {"expert": expert, "nearest": nearest, "valid": bool(ok)}


def position_probes(acts: dict, names, cube_xy: np.ndarray, groups: np.ndarray) -> dict:
    """Ridge from each site to the cube's (x, y), tested on held-out lines: R^2 per site."""
    from interp.probes import clean, cross_validate, group_folds

    folds = group_folds(groups, min(5, len(np.unique(groups))))
    out = {}
    for name in names:
        r = cross_validate(acts[name].reshape(len(cube_xy), -1), cube_xy, groups, folds)
        out[name] = clean({"r2": r["score"], "per_dim": r["per_dim"], "folds": len(folds)})
    return out


def _xy(points) -> np.ndarray:
    """(n, 2) table-plane points, NaN where a point is None."""
    return np.array([[np.nan, np.nan] if g is None else np.asarray(g)[:2] for g in points])


def _activations(robot, policy, poses: np.ndarray, ticks, names) -> tuple:
    """Each start's observations at `ticks` and what the policy makes of them: (images
    {camera: (S, T, H, W, 3)}, states (S, T, 6), {site: (S, T, ...)}, aim points (S, T, 2))."""
    n = len(poses)
    images, states = observe(robot, poses, ticks)
    flat = {c: v.reshape(-1, *v.shape[2:]) for c, v in images.items()}
    acts = capture(policy, flat, states.reshape(-1, states.shape[-1]), names)
    acts = {k: v.reshape(n, len(ticks), *v.shape[1:]) for k, v in acts.items()}
    chunks = acts["actions"].reshape(-1, *acts["actions"].shape[2:])
    aim = aim_points(robot.kinematics, policy, chunks).reshape(n, len(ticks), 2)
    return images, states, acts, aim


def _rollouts(robot, policy, poses, execution: str, max_steps: int, progress: bool):
    """Each start's unpatched rollout: (grasp targets, a point or None each; successes)."""
    from tqdm import tqdm

    from act_jax.evaluate import rollout
    from act_jax.execution import make_executor

    grasp, success = [], []
    for pose in tqdm(poses, desc="rollouts", disable=not progress):
        robot.reset(cube_pose=pose)
        ep = rollout(robot, policy.as_controller(make_executor(execution)), max_steps=max_steps)
        grasp.append(ep.grasp_target)
        success.append(bool(ep.success))
    return grasp, success


def _expert_points(poses: np.ndarray, train_xy: np.ndarray, cube_size: float):
    """The expert's own grasp points (the expert's limit, not the policy's): (at each start,
    at each training location)."""
    from hardware.sim import SimRobot
    from interp import oracles as O

    with SimRobot(cameras=()) as phys:
        t_c = O.expert_grasp_points(phys, poses)
        train_poses = [np.array([x, y, cube_size / 2, 1, 0, 0, 0]) for x, y in train_xy]
        return t_c, O.expert_grasp_points(phys, train_poses)


def _starts(poses, success, grasp, t_c, t_train, near) -> list[dict]:
    """One row per start: its place, success, grasp point, the expert's, and alpha."""
    from interp import oracles as O

    return [
        {
            "cube_xy": p[:2].tolist(),
            "success": ok,
            "grasp_target": None if g is None else np.asarray(g).tolist(),
            "expert_grasp": t.tolist(),
            "alpha": None if g is None else O.alpha(g, t, t_train[k]),
        }
        for p, ok, g, t, k in zip(poses, success, grasp, t_c, near, strict=True)
    ]


def run(
    policy,
    train_xy: np.ndarray,
    pairs,
    *,
    lambdas=LAMBDAS,
    ticks=(0,),
    execution: str = "ensemble:0.01",
    max_steps: int = 400,
    patch_rollouts: bool = True,
    grasp_steps: int = 120,
    progress: bool = True,
) -> dict:
    """The whole experiment (module docstring) on one policy; returns the JSON-ready results."""
    from hardware.sim import SimRobot
    from hardware.sim.scene import SceneConfig
    from interp import oracles as O
    from interp.snap_patch import PatchRun

    cfg, size = policy.config.model, SceneConfig().cube_size
    train_xy = np.asarray(train_xy, np.float64)
    ticks = tuple(sorted({int(t) for t in ticks}))
    poses, index = line_starts(train_xy, pairs, lambdas, size)
    n, names = len(poses), sites(cfg)
    say = (lambda m: print(m, flush=True)) if progress else (lambda m: None)
    say(f"{len(pairs)} lines, {n} distinct starts, {len(names)} sites")
    with SimRobot(image_size=tuple(cfg.image_size), cameras=tuple(cfg.cameras)) as robot:
        images, states, acts, aim = _activations(robot, policy, poses, ticks, names)
        grasp, success = _rollouts(robot, policy, poses, execution, max_steps, progress)
        mid = int(np.argmin(np.abs(np.asarray(lambdas) - 0.5)))
        patch_run = PatchRun(policy, robot, images, states, acts, aim, _xy(grasp))
        patching = patch_run.lines(
            poses, index, mid, execution, rollouts=patch_rollouts, steps=grasp_steps, say=say
        )
        patching["midpoint_lambda"] = float(lambdas[mid])
    t_c, t_train = _expert_points(poses, train_xy, size)
    near = np.array([O.nearest_index(train_xy, p[:2]) for p in poses])
    site_curves = {name: curves(acts[name], index, lambdas) for name in names}
    snap_site = next((s for s in names if site_curves[s]["snaps"]), None)
    return {
        "locations": train_xy.tolist(),
        "pairs": [
            {"a": int(i), "b": int(j), "length_m": float(np.linalg.norm(train_xy[i] - train_xy[j]))}
            for i, j in pairs
        ],
        "lambdas": [float(x) for x in lambdas],
        "ticks": list(ticks),
        "starts": _starts(poses, success, grasp, t_c, t_train, near),
        "line_index": index.tolist(),
        "sites": names,
        "curves": site_curves,
        "behaviour": {
            "aim": curves(aim, index, lambdas),
            "grasp": curves(_xy(grasp), index, lambdas),
        },
        "calibration": calibration(t_c[:, :2], t_train[near][:, :2], index, lambdas),
        "snap_site": snap_site,
        "mlp_rule": mlp_rule(snap_site),
        "probes": position_probes(acts, names, poses[:, :2], probe_groups(index, pairs, n)),
        "patching": patching,
    }


def _ticks_arg(text: str) -> tuple[int, ...]:
    try:
        ticks = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not like 0 or 0,10,20") from None
    if any(t < 0 or t > 60 for t in ticks):
        raise argparse.ArgumentTypeError(f"ticks must lie in 0..60 (the approach), got {text!r}")
    return ticks


def _parser() -> argparse.ArgumentParser:
    from act_jax.evaluate import execution_arg
    from hardware.arguments import int_in
    from hardware.sim.cube import distribution_arg
    from interp import cli

    p = cli.parser("interp.snap", __doc__)
    p.add_argument("--checkpoint", required=True, help="training workdir of the base")
    p.add_argument("--out", required=True, help="directory for snap.json, snap.png, snap.html")
    p.add_argument(
        "--locations",
        type=distribution_arg,
        metavar="SPEC",
        default=None,
        help="training locations (default: the config's data.record_locations)",
    )
    p.add_argument(
        "--pairs",
        type=pairs_arg,
        default="4",
        help="lines: the N shortest neighbour pairs, 'all', or i-j,k-l (default %(default)s)",
    )
    p.add_argument("--lambdas", type=int_in(3, 33), default=9, help="starts per line, ends incl.")
    p.add_argument(
        "--ticks", type=_ticks_arg, default=(0,), help="approach ticks to capture (default 0)"
    )
    p.add_argument(
        "--execution", type=execution_arg, default=None, help="chunk execution (default: config's)"
    )
    p.add_argument("--max-steps", type=int_in(1), default=None, help="ticks before a rollout fails")
    p.add_argument(
        "--grasp-steps", type=int_in(1), default=120, help="ticks a patched rollout may take"
    )
    p.add_argument(
        "--no-patch-rollouts",
        action="store_true",
        help="patch the first chunk only (no rollouts patched at every tick)",
    )
    return p


def _inputs(p: argparse.ArgumentParser, args) -> tuple:
    """(policy, locations spec, training places (K, 2), lines, execution), each checked; a bad
    one is a one-line error naming its option."""
    from act_jax.policy import Policy
    from hardware.sim.cube import CubeDistribution
    from interp import cli

    with cli.expected_errors(p, args, "--checkpoint"):
        policy = Policy.from_checkpoint(args.checkpoint)
    cfg = policy.config
    spec = args.locations or get_field(cfg, "data.record_locations", "")
    with cli.expected_errors(p, args, "--locations"):
        dist = CubeDistribution.make(spec)
    if dist.num_locations < 2:
        p.error(f"--locations: {spec!r} has no training locations; give a located spec (named)")
    execution = args.execution or cfg.eval.get("execution", "ensemble:0.01")
    xy = np.asarray(dist.locations, np.float64)
    with cli.expected_errors(p, args):
        pairs = select_pairs(xy, args.pairs)
    return policy, spec, xy, pairs, execution


def _write(out: Path, doc: dict, checkpoint: str, step: int) -> None:
    """snap.json, snap.png and snap.html into `out`."""
    from interp.page import Page

    out.mkdir(parents=True, exist_ok=True)
    (out / "snap.json").write_text(json.dumps(doc, indent=1))
    png = plot(doc)
    (out / "snap.png").write_bytes(png)
    page = Page("Where it snaps", subtitle=f"{checkpoint}, step {step}")
    add_section(page, doc, png)
    page.write(out / "snap.html")


def _print_summary(doc: dict, out: Path) -> None:
    for name in [*doc["sites"], "aim", "grasp"]:
        b = doc["curves"].get(name) or doc["behaviour"][name]
        r2 = doc["probes"].get(name, {}).get("r2")
        print(
            f"{name:28s} snaps on {b['snap_lines']}/{len(b['per_line'])} lines"
            + ("" if r2 is None else f", position probe R2 {r2:.2f}")
        )
    print(f"calibration valid: {doc['calibration']['valid']}; snap site: {doc['snap_site']}")
    print(f"mlp rule: {doc['mlp_rule']['reason']}")
    print(f"wrote {out}/snap.json, snap.png and snap.html in {doc['wall_time_s']:.0f} s")


def main(argv=None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    policy, spec, xy, pairs, execution = _inputs(p, args)
    cfg = policy.config
    t0 = time.time()
    policy.warmup()
    result = run(
        policy,
        xy,
        pairs,
        lambdas=tuple(float(x) for x in np.linspace(0, 1, args.lambdas)),
        ticks=args.ticks,
        execution=execution,
        max_steps=args.max_steps or cfg.eval.get("max_steps", 400),
        patch_rollouts=not args.no_patch_rollouts,
        grasp_steps=args.grasp_steps,
    )
    doc = {
        "command": "python -m interp.snap " + " ".join(argv or sys.argv[1:]),
        "checkpoint": str(args.checkpoint),
        "step": policy.step,
        "training_locations": spec,
        "execution": execution,
        "wall_time_s": round(time.time() - t0, 1),
        **result,
    }
    out = Path(args.out)
    _write(out, doc, str(args.checkpoint), policy.step)
    _print_summary(doc, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
