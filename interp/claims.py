r"""Claims 1 and 2 of the original study, as linear probes with their controls, from collections.

    python -m interp.collect --checkpoint runs/sim_default --pool --out /tmp/acts \
        --names backbone/top backbone/lateral decoder/out
    python -m interp.collect --checkpoint runs/sim_default --pool --out /tmp/acts_random \
        --names backbone/top backbone/lateral decoder/out --random-init 0
    python -m interp.claims --collection /tmp/acts --random /tmp/acts_random --out claims.json

- Claim 1, "backbone features alone carry what the policy needs": `backbone/<camera>` (each
  camera on its own) -> cube position (x, y), arm state, ground-truth action chunk, task phase.
- Claim 2, "the decoder's action vector encodes the environment": `decoder/out` -> cube
  position, arm state, task phase.

Every probe runs `interp.probes.probe`: episode-grouped folds, leave-one-location-out where the
dataset has named locations, and the random-init, shuffled, control-task and time-only
controls. Cube position is the cube's start pose (the only pose episodes record), so it is
probed on the approach frames only (phase 0), where the cube still rests there. The control
task's types are the named locations when there are some, else the cells of a 4 x 4 grid of
cube start positions (quartiles of x and y), so that types recur across episode folds.

Probing the predicted chunk from `decoder/out` (or from `actions`) is refused
(`TautologicalProbe`): the action head is linear, so the answer is R^2 = 1 by construction and
says nothing about the representation.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from interp import probes
from interp.shards import Collection

MAX_FEATURES = 8192  # per frame; more needs --pool or --pca at collection time
TARGETS = {  # name -> (label field, kind)
    "cube_xy": ("cube_start_pose", "regression"),
    "arm_state": ("state", "regression"),
    "gt_chunk": ("gt_actions", "regression"),
    "phase": ("phase", "classification"),
    "pred_chunk": ("pred_actions", "regression"),
}
CLAIM_TARGETS = {
    "claim_1": ("cube_xy", "arm_state", "gt_chunk", "phase"),
    "claim_2": ("cube_xy", "arm_state", "phase"),
}
_TAUTOLOGICAL_SOURCES = ("decoder/out", "actions")


class TautologicalProbe(ValueError):
    """A probe whose answer is fixed by the architecture, not learned by the network."""


def check_probe(feature: str, target: str) -> None:
    """Refuses the tautological probe; an unknown target is a KeyError listing the known ones."""
    if target not in TARGETS:
        raise KeyError(f"unknown probe target {target!r}; targets: {', '.join(TARGETS)}")
    if target == "pred_chunk" and feature in _TAUTOLOGICAL_SOURCES:
        raise TautologicalProbe(
            f"refusing to probe the predicted chunk from {feature!r}: the predicted actions are "
            "action_head(decoder/out), a linear map, so a linear probe recovers them with "
            "R^2 = 1 by construction and measures nothing about what the network learned. "
            "Probe cube position, arm state, phase or the ground-truth chunk instead."
        )


def _frame_index(coll: Collection) -> dict[str, np.ndarray]:
    return {
        k: coll.labels(k)
        for k in ("episode", "frame", "episode_length", "location_id", "phase", "cube_start_pose")
    }


def feature_matrix(coll: Collection, name: str) -> np.ndarray:
    """(frames, d) features of `name`, flattened per frame."""
    x = coll.features(name)
    x = x.reshape(len(x), -1)
    if x.shape[1] > MAX_FEATURES:
        raise ValueError(
            f"{name} has {x.shape[1]} features per frame in {coll.out_dir}; a ridge "
            f"probe on more than {MAX_FEATURES} overfits and is slow: collect it "
            "with --pool or --pca"
        )
    return x


def control_types(index: dict[str, np.ndarray]) -> tuple[np.ndarray, str]:
    """The Hewitt-Liang types: named locations, else 4 x 4 quartile cells of the cube start."""
    loc = index["location_id"]
    if len(np.unique(loc)) >= 2 and (loc >= 0).all():
        return loc, "location_id"
    xy = index["cube_start_pose"][:, :2]
    if not np.isfinite(xy).all():
        return index["episode"], "episode"
    cells = [np.digitize(xy[:, j], np.quantile(xy[:, j], [0.25, 0.5, 0.75])) for j in (0, 1)]
    return cells[0] * 4 + cells[1], "cube_cell_4x4"


def _target(coll: Collection, index: dict, target: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(values, rows used, note) of one target."""
    field, _ = TARGETS[target]
    y = coll.labels(field)
    rows = np.ones(len(y), bool)
    note = ""
    if target == "cube_xy":
        y = y[:, :2]
        rows = index["phase"] == 0
        note = "approach frames only (phase 0): the episodes record the cube's start pose"
        if not np.isfinite(y).all():
            raise ValueError("the cube start pose is unknown (NaN) in this dataset")
    return y.reshape(len(y), -1) if y.ndim > 1 else y, rows, note


def run_probe(
    coll: Collection,
    feature: str,
    target: str,
    *,
    random: Collection | None = None,
    cache: dict | None = None,
    features_of=feature_matrix,
    **kwargs,
) -> dict:
    """One probe of `target` from `feature` with every control (see the module docstring).

    `features_of(collection, feature)` gives the (frames, d) matrix (default: `feature_matrix`;
    `interp.absorption` passes one that keeps the pixel tokens only)."""
    check_probe(feature, target)
    index = _frame_index(coll)
    y, rows, note = _target(coll, index, target)
    types, type_name = control_types(index)
    x = features_of(coll, feature)[rows]
    xr = None if random is None else features_of(random, feature)[rows]
    result = probes.probe(
        x,
        y[rows],
        episodes=index["episode"][rows],
        frames=index["frame"][rows],
        lengths=index["episode_length"][rows],
        kind=TARGETS[target][1],
        locations=index["location_id"][rows],
        control_types=types[rows],
        random_features=xr,
        cache=cache,
        **kwargs,
    )
    return {
        "feature": feature,
        "target": target,
        "label": TARGETS[target][0],
        "control_types": type_name,
        "note": note,
        **result,
    }


def summarise(r: dict) -> list[str]:
    """One sentence per split: the score with its controls."""
    out = []
    for split, s in r["splits"].items():
        c = s["controls"]
        fmt = lambda v: "n/a" if v is None else f"{v:.2f}"
        rand = "n/a" if c["random_init"] is None else fmt(c["random_init"]["score"])
        out.append(
            f"{r['target']} from {r['feature']}: {split}-held-out {s['metric']} {fmt(s['score'])}"
            f" (folds {fmt(s['fold_mean'])} +- {fmt(s['fold_std'])}; random-init {rand}, "
            f"shuffled {fmt(c['shuffled']['score'])}, control task "
            f"{fmt(c['control_task']['score'])}, selectivity {fmt(c['selectivity'])}, "
            f"time-only {fmt(c['time_only']['score'])})"
        )
    return out


def run_claims(
    collection: str | Path, random: str | Path | None = None, *, progress: bool = True, **kwargs
) -> dict:
    """Claims 1 and 2 from a collection (and its random-init twin). JSON-ready.

    Raises:
        ValueError: the random-init collection holds other frames; a needed name is missing.
    """
    coll = Collection(collection)
    rand = None if random is None else Collection(random)
    if rand is not None:
        for k in ("episode", "frame"):
            if not np.array_equal(coll.labels(k), rand.labels(k)):
                raise ValueError(
                    f"{random} holds other frames than {collection} (label {k!r} "
                    "differs): collect both from the same dataset and episodes"
                )
    features = {
        "claim_1": [f"backbone/{c}" for c in coll.manifest["cameras"]],
        "claim_2": ["decoder/out"],
    }
    missing = [n for names in features.values() for n in names if n not in coll.names]
    if missing:
        raise ValueError(f"{collection} lacks {missing}; collect them with interp.collect")
    out = {
        "collection": str(coll.out_dir),
        "random": None if rand is None else str(rand.out_dir),
        "network": coll.manifest["network"],
        "settings": kwargs,
        "summary": [],
    }
    caches: dict[str, dict] = {}
    for claim, names in features.items():
        out[claim] = {}
        for name in names:
            out[claim][name] = {}
            for target in CLAIM_TARGETS[claim]:
                r = run_probe(
                    coll, name, target, random=rand, cache=caches.setdefault(target, {}), **kwargs
                )
                out[claim][name][target] = r
                out["summary"] += [f"{claim}: {s}" for s in summarise(r)]
                if progress:
                    print(out["summary"][-1], flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from hardware.arguments import int_in
    from interp import cli

    p = cli.parser("interp.claims", __doc__)
    p.add_argument("--collection", required=True, help="interp.collect output of the trained net")
    p.add_argument("--random", help="the same collection from --random-init (the control)")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--folds", type=int_in(2), default=5, help="outer episode folds")
    p.add_argument("--inner-folds", type=int_in(2), default=3)
    p.add_argument("--seed", type=int_in(0), default=0, help="shuffle and control-task seed")
    args = p.parse_args(argv)
    if not Path(args.out).absolute().parent.is_dir():  # found out now, not after the probes
        p.error(f"--out: {Path(args.out).parent} is not a directory")
    with cli.expected_errors(p, args):
        result = run_claims(
            args.collection,
            args.random,
            n_folds=args.folds,
            inner_folds=args.inner_folds,
            seed=args.seed,
        )
    result["command"] = "python -m interp.claims " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    Path(args.out).write_text(json.dumps(result, indent=1, allow_nan=False))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
