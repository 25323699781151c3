"""Where along a line between two training places a curve snaps: coefficients and step-vs-line.

For activations h(lambda) at cube starts on the segment from training location A (lambda = 0)
to B (lambda = 1), with h0 = h(0), h1 = h(1) and d = h1 - h0 (everything flattened):

    coefficient(lambda) = <h(lambda) - h0, d> / <d, d>     0 at A, 1 at B by construction
    residual(lambda)    = |h(lambda) - h0 - coefficient d| / |d|

the position of h(lambda) along the segment between the endpoint activations, and how far it
lies off that segment (in units of the segment's length). A lookup table keeps its activation at
an endpoint's (residual 0) and jumps from one to the other (a step in lambda); an interpolator
moves along the segment (a line in lambda); a representation that re-encodes the cube wherever
it is (pixels: the cube covers new pixels) lies far off the segment.

Two fits of coefficient(lambda) (`compare`), scored by BIC = n ln(RSS / n) + k ln n:
    linear   a + b lambda                                   k = 2
    step     lo + (hi - lo) sigmoid((lambda - theta) / w)     k = 4, by grid search over theta
             in [0, 1] and w from 1e-3 (a Heaviside step) to 1, (lo, hi) by least squares
RSS is floored at n * RSS_FLOOR_PER_POINT so that an exact line (or an exact step) does not
give an infinite score; at the floor both fits tie and the line wins by its fewer parameters.
`max_jump` is the largest change of the coefficient between neighbouring lambdas (1/8 for a
line on 9 evenly spaced lambdas, 1 for a step between grid points): a sharpness that needs no
fit. `width` is the step fit's 10-90% rise width in lambda, 2 ln 9 w.

The rule for "the curve snaps" (`snaps`), fixed before any run of `interp.snap` and not tuned
after: BIC favours the step by at least `MIN_DELTA_BIC` (6, "strong" on Kass and Raftery's
scale), at least half of the rise happens between two neighbouring lambdas (`max_jump` >=
`MIN_JUMP`, 0.5), and the activation stays near the segment (median residual over the interior
lambdas <= `MAX_RESIDUAL`, 0.5; a representation that puts the cube somewhere new, as pixels
do, has residuals near 0.87 and is not a snap however its coefficient runs).
"""

from __future__ import annotations

import numpy as np

RSS_FLOOR_PER_POINT = 1e-6  # coefficients are meaningful to about 1e-3
MIN_DELTA_BIC = 6.0
MIN_JUMP = 0.5
MAX_RESIDUAL = 0.5
_THETAS = np.linspace(0.0, 1.0, 201)
_WIDTHS = np.logspace(-3, 0, 31)


def line_coefficient(
    h: np.ndarray, h0: np.ndarray, h1: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(coefficient (n,), residual (n,)) of activations `h` (n, ...) between `h0` and `h1`.

    Raises:
        ValueError: h0 and h1 are equal (no segment to place anything on).
    """
    h = np.asarray(h, np.float64).reshape(len(h), -1)
    h0 = np.asarray(h0, np.float64).ravel()
    d = np.asarray(h1, np.float64).ravel() - h0
    dd = float(d @ d)
    if dd <= 0:
        raise ValueError("the endpoint activations are equal: the coefficient is undefined")
    rel = h - h0
    coef = rel @ d / dd
    residual = np.linalg.norm(rel - coef[:, None] * d, axis=1) / np.sqrt(dd)
    return coef, residual


def _bic(rss: float, n: int, k: int) -> float:
    return float(n * np.log(max(rss, n * RSS_FLOOR_PER_POINT) / n) + k * np.log(n))


def fit_linear(lam: np.ndarray, c: np.ndarray) -> dict:
    """Least squares c = a + b lambda."""
    x = np.column_stack([np.ones_like(lam), lam])
    (a, b), *_ = np.linalg.lstsq(x, c, rcond=None)
    rss = float(np.sum((c - x @ [a, b]) ** 2))
    return {"intercept": float(a), "slope": float(b), "rss": rss, "bic": _bic(rss, len(c), 2)}


def fit_step(lam: np.ndarray, c: np.ndarray) -> dict:
    """Least squares c = lo + (hi - lo) sigmoid((lambda - theta) / w) over the (theta, w) grid."""
    best = None
    for w in _WIDTHS:
        s = 0.5 * (1 + np.tanh((lam[None] - _THETAS[:, None]) / (2 * w)))  # (thetas, n)
        # c ~ lo (1 - s) + hi s, solved in closed form per theta (2 x 2 normal equations).
        a, b = 1 - s, s
        saa, sab, sbb = (a * a).sum(1), (a * b).sum(1), (b * b).sum(1)
        sac, sbc = (a * c).sum(1), (b * c).sum(1)
        det = saa * sbb - sab * sab
        ok = det > 1e-12
        lo = np.where(ok, (sbb * sac - sab * sbc) / np.where(ok, det, 1), c.mean())
        hi = np.where(ok, (saa * sbc - sab * sac) / np.where(ok, det, 1), c.mean())
        rss = ((c[None] - lo[:, None] * a - hi[:, None] * b) ** 2).sum(1)
        i = int(np.argmin(rss))
        if best is None or rss[i] < best[0] - 1e-15:
            best = (float(rss[i]), float(_THETAS[i]), float(w), float(lo[i]), float(hi[i]))
    rss, theta, w, lo, hi = best
    return {
        "threshold": theta,
        "w": w,
        "width": float(2 * np.log(9) * w),
        "low": lo,
        "high": hi,
        "rss": rss,
        "bic": _bic(rss, len(c), 4),
    }


def max_jump(lam: np.ndarray, c: np.ndarray) -> float:
    """The largest |change| of c between neighbouring lambdas, as a share of |c(1) - c(0)|."""
    order = np.argsort(lam, kind="stable")
    lam, c = np.asarray(lam)[order], np.asarray(c)[order]
    rise = abs(c[-1] - c[0])
    return float(np.max(np.abs(np.diff(c))) / rise) if rise > 0 else float("nan")


def compare(lam, c, residual=None) -> dict:
    """Both fits, max_jump, the median interior residual and the `snaps` rule for one curve."""
    lam, c = np.asarray(lam, np.float64), np.asarray(c, np.float64)
    lin, step = fit_linear(lam, c), fit_step(lam, c)
    interior = (lam > 0) & (lam < 1)
    res = None
    if residual is not None and interior.any():
        res = float(np.median(np.asarray(residual, np.float64)[interior]))
    out = {
        "linear": lin,
        "step": step,
        "delta_bic": lin["bic"] - step["bic"],
        "better": "step" if step["bic"] < lin["bic"] else "linear",
        "max_jump": max_jump(lam, c),
        "residual_median": res,
    }
    out["snaps"] = snaps(out)
    return out


def snaps(fit: dict) -> bool:
    """The rule of the module docstring, on a `compare` result."""
    res = fit["residual_median"]
    return bool(
        fit["delta_bic"] >= MIN_DELTA_BIC
        and fit["max_jump"] >= MIN_JUMP
        and (res is None or res <= MAX_RESIDUAL)
    )
