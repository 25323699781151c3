"""Linear probes with controls: closed-form ridge, nested grouped cross-validation, four nulls.

A probe asks whether a target (cube position, arm state, an action chunk, the task phase) is
linearly decodable from features, on frames the probe was not fitted on:

- **Outer folds** are grouped: by episode (`group_folds`, GroupKFold-like: groups go, largest
  first and ties by id, to the fold with the fewest frames; deterministic), or one group per fold
  (`leave_one_group_out`, for cube locations). Frames of one episode never straddle a split.
- **Ridge** in closed form (numpy, float64). Features and targets are standardised with the
  mean and std of the training rows only; features constant there get scale 1.
- **Regularisation** is chosen from `ALPHAS` by inner grouped cross-validation that is handed
  only the outer training rows (`select_alpha` never receives the test fold), then the probe is
  refitted on all training rows with that alpha.
- **Scores**: R^2 of the out-of-fold predictions (every frame predicted once, by the fold that
  held it out; 1 - SS_res / SS_tot around the mean of all frames), per target dimension and their
  mean; per fold the fold's own R^2 (None where the target is constant in the fold, as cube
  position is in a leave-one-location-out fold) and RMSE, with their mean and std over folds.
  The phase is a class: ridge on one-hot targets, predicted class = argmax, scored by accuracy
  (with the training fold's majority class as the chance level).

Controls, each run through the same nested cross-validation (`probe`):

- `random_init`: the same probe on features of a randomly initialised network of the same
  architecture (the caller collects them; `interp.collect --random-init`).
- `shuffled`: a permutation null that keeps the group structure. Episodes are deranged (each
  episode takes the labels of another, by a seeded cyclic shift of a random order); frame k of n
  gets the other episode's label at the same relative time, frame round(k (m - 1) / (n - 1)) of
  m. A label's time course and its constancy within an episode survive; only the pairing of an
  episode's frames with its own labels is broken. What time alone explains survives too: for
  labels that follow a stereotyped course (arm state) the null is not 0, and the gap to it is
  what the features add beyond the course.
- `control_task` (Hewitt and Liang 2019): every type (a cube location, an episode, a cell of the
  cube's start position; the caller chooses) gets the label of one randomly drawn frame, the same
  for all its frames (a deterministic map from a seed). Selectivity = task score - control score.
  With episodes as types and episode-grouped folds a control target is never seen in training,
  so the control is unlearnable by construction; it says more when types recur across folds.
- `time_only`: the same probe from the time in the episode alone (`time_features`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

ALPHAS = tuple(float(a) for a in np.logspace(-2, 5, 15))
_MIN_SCALE = 1e-8


def group_folds(groups: np.ndarray, n_folds: int) -> list[np.ndarray]:
    """Test rows of each of min(n_folds, #groups) folds; every group's rows are in one fold."""
    groups = np.asarray(groups)
    ids, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    k = min(n_folds, len(ids))
    if k < 2:
        raise ValueError(f"grouped cross-validation needs at least 2 groups, got {len(ids)}")
    fold_of = np.empty(len(ids), int)
    load = np.zeros(k, int)
    for g in np.lexsort((ids, -counts)):  # largest first, then by id
        fold_of[g] = int(np.argmin(load))
        load[fold_of[g]] += counts[g]
    return [np.flatnonzero(fold_of[inverse] == f) for f in range(k)]


def leave_one_group_out(groups: np.ndarray) -> list[np.ndarray]:
    """Test rows of one fold per group, in sorted group order."""
    groups = np.asarray(groups)
    ids = np.unique(groups)
    if len(ids) < 2:
        raise ValueError(f"leave-one-group-out needs at least 2 groups, got {len(ids)}")
    return [np.flatnonzero(groups == g) for g in ids]


def _scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    return mean, np.where(std > _MIN_SCALE, std, 1.0)


def _ridge_solver(x: np.ndarray, y: np.ndarray):
    """Standardises on these (training) rows; returns (alphas, x_new) -> (len(alphas), n, k)."""
    xm, xs = _scale(x)
    ym, ys = _scale(y)
    xz, yz = (x - xm) / xs, (y - ym) / ys
    if xz.shape[1] <= xz.shape[0]:  # primal: eigh of the (d, d) Gram matrix
        lam, v = np.linalg.eigh(xz.T @ xz)
        proj = v.T @ (xz.T @ yz)
        basis = lambda z: z @ v
    else:  # dual: eigh of the (n, n) kernel, w = X^T (K + a I)^-1 Y
        lam, u = np.linalg.eigh(xz @ xz.T)
        proj = u.T @ yz
        basis = lambda z: (z @ xz.T) @ u
    lam = np.maximum(lam, 0)

    def predict(alphas: Sequence[float], x_new: np.ndarray) -> np.ndarray:
        zb = basis((x_new - xm) / xs)  # the new rows in the eigenbasis, once for every alpha
        return np.stack([zb @ (proj / (lam + a)[:, None]) * ys + ym for a in alphas])

    return predict


def r2_per_dim(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(k,) R^2 of each column; NaN where the column is constant."""
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    ss_res = ((y - pred) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 1e-12 * len(y), 1 - ss_res / ss_tot, np.nan)


def _as_targets(y: np.ndarray, kind: str, classes: np.ndarray | None):
    if kind == "classification":
        return (y[:, None] == classes[None]).astype(np.float64)
    return y


def _score(y, pred, kind, classes) -> float:
    if kind == "classification":
        return float(np.mean(classes[np.argmax(pred, axis=1)] == y))
    return _nan_stat(np.nanmean, r2_per_dim(y, pred))


def select_alpha(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    kind: str,
    classes: np.ndarray | None,
    alphas: Sequence[float],
    inner_folds: int,
) -> tuple[float, list[float]]:
    """The alpha with the best inner out-of-fold score, using only the rows it is given.

    Returns:
        (alpha, the inner score of every alpha).
    """
    targets = _as_targets(y, kind, classes)
    pred = np.zeros((len(alphas), *targets.shape))
    for test in group_folds(groups, inner_folds):
        train = np.setdiff1d(np.arange(len(y)), test)
        pred[:, test] = _ridge_solver(x[train], targets[train])(alphas, x[test])
    scores = [_score(y, p, kind, classes) for p in pred]
    return float(alphas[int(np.nanargmax(scores))]), scores


def cross_validate(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    folds: list[np.ndarray],
    *,
    kind: str = "regression",
    alphas: Sequence[float] = ALPHAS,
    inner_folds: int = 3,
) -> dict:
    """Nested grouped cross-validation of a ridge probe (see the module docstring).

    Args:
        x: (n, d) features; y: (n, k) targets, or (n,) int classes for kind="classification".
        groups: (n,) the inner folds' groups (episodes); folds: the outer test rows.

    Returns:
        A JSON-ready dict: score (mean R^2 or accuracy), per_dim, folds (test groups, alpha,
        score, rmse), fold_mean, fold_std, and for classes the majority-class chance level.
    """
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y) if kind == "classification" else np.asarray(y, np.float64).reshape(len(y), -1)
    groups = np.asarray(groups)
    classes = np.unique(y) if kind == "classification" else None
    pred = np.zeros(_as_targets(y, kind, classes).shape)
    per_fold = []
    for test in folds:
        train = np.setdiff1d(np.arange(len(y)), test)
        alpha, _ = select_alpha(
            x[train],
            y[train],
            groups[train],
            kind=kind,
            classes=classes,
            alphas=alphas,
            inner_folds=inner_folds,
        )
        targets = _as_targets(y[train], kind, classes)
        pred[test] = _ridge_solver(x[train], targets)([alpha], x[test])[0]
        fold = {
            "test_groups": np.unique(groups[test]).tolist(),
            "frames": len(test),
            "alpha": alpha,
            "score": _score(y[test], pred[test], kind, classes),
        }
        if kind == "classification":
            values, counts = np.unique(y[train], return_counts=True)
            fold["chance"] = float(np.mean(y[test] == values[np.argmax(counts)]))
        else:
            fold["rmse"] = float(np.sqrt(np.mean((y[test] - pred[test]) ** 2)))
        per_fold.append(fold)
    scores = np.array([f["score"] for f in per_fold], float)
    out = {
        "metric": "accuracy" if kind == "classification" else "r2",
        "score": _score(y, pred, kind, classes),
        "n_frames": len(y),
        "fold_mean": _nan_stat(np.nanmean, scores),
        "fold_std": _nan_stat(np.nanstd, scores),
        "folds": per_fold,
    }
    if kind == "classification":
        out["chance"] = float(np.mean([f["chance"] for f in per_fold]))
    else:
        out["per_dim"] = r2_per_dim(y, pred).tolist()
    return clean(out)


def _nan_stat(fn, values: np.ndarray) -> float:
    return float(fn(values)) if np.isfinite(values).any() else float("nan")


def clean(value):
    """Plain JSON types: numpy scalars to Python, NaN to None, recursively."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def shuffled_labels(
    y: np.ndarray, episodes: np.ndarray, frames: np.ndarray, seed: int = 0
) -> np.ndarray:
    """The permutation null's labels: each episode's frames get a deranged episode's labels at
    the same relative time (module docstring). y: (n, ...); episodes, frames: (n,)."""
    y, episodes, frames = np.asarray(y), np.asarray(episodes), np.asarray(frames)
    ids = np.unique(episodes)
    if len(ids) < 2:
        raise ValueError("the shuffled-label null needs at least 2 episodes")
    order = np.random.default_rng(seed).permutation(len(ids))
    source = np.empty(len(ids), int)
    source[order] = np.roll(order, -1)  # a cyclic shift of a random order: no fixed point
    rows = []
    for g in ids:
        r = np.flatnonzero(episodes == g)
        rows.append(r[np.argsort(frames[r], kind="stable")])
    out = np.empty_like(y)
    for g, r in enumerate(rows):
        s = rows[source[g]]
        pick = np.rint(np.arange(len(r)) * (len(s) - 1) / max(1, len(r) - 1)).astype(int)
        out[r] = y[s[pick]]
    return out


def control_task(y: np.ndarray, types: np.ndarray, seed: int = 0) -> np.ndarray:
    """Hewitt-Liang control labels: every type gets the label of one randomly drawn frame."""
    y = np.asarray(y)
    _, inverse = np.unique(np.asarray(types), return_inverse=True)
    picks = np.random.default_rng(seed).integers(0, len(y), inverse.max() + 1)
    return y[picks][inverse]


def time_features(frames: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(n, max_frame + 4): one-hot of the frame index, and tau, tau^2, tau^3 with
    tau = frame / (episode length - 1), the time in the episode and nothing else."""
    frames = np.asarray(frames, int)
    tau = frames / np.maximum(np.asarray(lengths) - 1, 1)
    onehot = np.zeros((len(frames), frames.max() + 1))
    onehot[np.arange(len(frames)), frames] = 1.0
    return np.column_stack([onehot, tau, tau**2, tau**3])


def probe(
    features: np.ndarray,
    target: np.ndarray,
    *,
    episodes: np.ndarray,
    frames: np.ndarray,
    lengths: np.ndarray,
    kind: str = "regression",
    locations: np.ndarray | None = None,
    control_types: np.ndarray | None = None,
    random_features: np.ndarray | None = None,
    n_folds: int = 5,
    inner_folds: int = 3,
    alphas: Sequence[float] = ALPHAS,
    seed: int = 0,
    cache: dict | None = None,
) -> dict:
    """One probe with every control, under each split that applies.

    Args:
        features: (n, ...) the representation; target: (n, ...) or (n,) classes.
        episodes, frames, lengths: (n,) per-frame episode id, frame index, episode length.
        kind: "regression" (R^2) or "classification" (accuracy).
        locations: (n,) cube location ids; with at least 3 ids, all >= 0, a leave-one-
            location-out split runs too (its inner folds grouped by location as well).
        control_types: (n,) the Hewitt-Liang types (default: the episodes).
        random_features: (n, ...) the same frames through a randomly initialised network.
        cache: a dict shared across probes of the same frames and target: the time-only
            baseline does not depend on the features and is computed once per target.

    Returns:
        {"n_frames", "n_episodes", "splits": {"episode": result, "location": result}}, each
        result `cross_validate`'s with "controls": {random_init, shuffled, control_task,
        selectivity, time_only}.
    """
    if kind not in ("regression", "classification"):
        raise ValueError(f"kind must be 'regression' or 'classification', got {kind!r}")
    episodes = np.asarray(episodes)
    splits = {"episode": (episodes, group_folds(episodes, n_folds))}
    if locations is not None:
        ids = np.unique(locations)
        if len(ids) >= 3 and (ids >= 0).all():
            splits["location"] = (np.asarray(locations), leave_one_group_out(locations))
    types = episodes if control_types is None else control_types
    labels = {
        "shuffled": shuffled_labels(target, episodes, frames, seed),
        "control_task": control_task(target, types, seed),
    }
    cache = {} if cache is None else cache
    out = {"n_frames": len(episodes), "n_episodes": len(np.unique(episodes)), "splits": {}}
    for name, (groups, folds) in splits.items():
        cv = functools.partial(
            cross_validate,
            groups=groups,
            folds=folds,
            kind=kind,
            alphas=alphas,
            inner_folds=inner_folds,
        )
        result = cv(features, target)
        controls = {k: cv(features, v) for k, v in labels.items()}
        task, ctrl = result["score"], controls["control_task"]["score"]
        controls["selectivity"] = None if task is None or ctrl is None else task - ctrl
        controls["random_init"] = None if random_features is None else cv(random_features, target)
        if name not in cache:
            cache[name] = cv(time_features(frames, lengths), target)
        controls["time_only"] = cache[name]
        out["splits"][name] = {**result, "controls": controls}
    return out
