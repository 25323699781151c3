"""The lines of `interp.snap`: pairs of neighbouring training locations, the cube's starts along
them, the probe groups that hold whole lines out, and the `--pairs` option's type."""

from __future__ import annotations

import argparse
import itertools
import re

import numpy as np


def neighbour_pairs(xy: np.ndarray) -> list[tuple[int, int]]:
    """Gabriel-graph edges: (i, j) with no other location inside the circle on [i, j]."""
    xy = np.asarray(xy, np.float64)
    out = []
    for i, j in itertools.combinations(range(len(xy)), 2):
        mid, r = (xy[i] + xy[j]) / 2, np.linalg.norm(xy[i] - xy[j]) / 2
        others = [k for k in range(len(xy)) if k not in (i, j)]
        if all(np.linalg.norm(xy[k] - mid) > r + 1e-9 for k in others):
            out.append((i, j))
    return out


def select_pairs(xy: np.ndarray, spec: str) -> list[tuple[int, int]]:
    """`spec`: "all", a count N (the N shortest neighbour edges, ties to the central lines), or
    explicit "i-j,k-l" location indices."""
    xy = np.asarray(xy, np.float64)
    if "-" in spec:
        pairs = []
        for part in spec.split(","):
            i, j = (int(v) for v in part.split("-"))
            if not (0 <= i < len(xy) and 0 <= j < len(xy)) or i == j:
                raise ValueError(
                    f"--pairs {part!r}: indices must differ and lie in 0..{len(xy) - 1}"
                )
            pairs.append((i, j))
        return pairs
    edges = neighbour_pairs(xy)
    centre = xy.mean(0)
    edges.sort(
        key=lambda e: (
            round(float(np.linalg.norm(xy[e[0]] - xy[e[1]])), 6),
            round(float(np.linalg.norm((xy[e[0]] + xy[e[1]]) / 2 - centre)), 6),
            e,
        )
    )
    return edges if spec == "all" else edges[: int(spec)]


def line_starts(xy, pairs, lambdas, cube_size: float):
    """(poses (S, 7) of the distinct starts, index (lines, lambdas) into them)."""
    xy = np.asarray(xy, np.float64)
    keys: dict[tuple[float, float], int] = {}
    poses, index = [], np.zeros((len(pairs), len(lambdas)), int)
    for p, (i, j) in enumerate(pairs):
        for k, lam in enumerate(lambdas):
            x, y = (1 - lam) * xy[i] + lam * xy[j]
            key = (round(float(x), 6), round(float(y), 6))
            if key not in keys:
                keys[key] = len(poses)
                poses.append([x, y, cube_size / 2, 1.0, 0.0, 0.0, 0.0])
            index[p, k] = keys[key]
    return np.asarray(poses, np.float64), index


def probe_groups(index: np.ndarray, pairs, n_starts: int) -> np.ndarray:
    """A group per start for held-out-line probes: its line, or its own location if an endpoint."""
    groups = np.full(n_starts, -1)
    for p, row in enumerate(index):
        for k, s in enumerate(row):
            if k in (0, len(row) - 1):
                groups[s] = 1000 + pairs[p][0 if k == 0 else 1]
            elif groups[s] < 0:
                groups[s] = p
    return groups


def pairs_arg(text: str) -> str:
    if (
        text == "all"
        or re.fullmatch(r"[1-9]\d*", text)
        or re.fullmatch(r"\d+-\d+(,\d+-\d+)*", text)
    ):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not 'all', a count, or like 0-1,0-2")
