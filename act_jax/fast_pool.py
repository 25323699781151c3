"""The backbone's 3x3 / stride-2 max-pool with a backward pass XLA:CPU runs faster, same bits.

XLA differentiates `reduce_window(max)` into `select_and_scatter`, which XLA:CPU runs as a
scalar loop over windows: at the CPU default's full-width shapes (b64 x 48x64x64) its backward
takes ~25x the forward (bench/step_profile.py; `python bench/pool_backward.py` times both).
`max_pool_3x3s2` keeps the forward and writes the backward as whole-array operations:

- for each of the 9 taps (di, dj) of a window, in row-major order, the taps' strided views of
  the padded input are compared with the pooled output; a tap wins where it equals the max and
  no earlier tap did. That is select_and_scatter's rule (`>=` keeps the first maximum), so ties,
  common after a ReLU, go to the same pixel;
- each tap's share of the output gradient is placed back on the input grid. With window 3 and
  stride 2, a pixel in padded coordinates (r, s) is reached only by taps of its own parity
  (even r: di 0 or 2; odd r: di 1), so the input gradient is four interleaved sub-grids, each a
  sum of at most four shifted arrays of the output's size. They are added in the order
  select_and_scatter visits the windows (row-major), so even the sums of pixels that are the
  max of several windows round the same: the gradient is bit-identical to XLA's
  (tests/test_fast_pool.py).

Layout NHWC, as `flax.linen.max_pool`; padding is torchvision's (1 on each side, -inf).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_WINDOW, _STRIDE, _PAD = (3, 3), (2, 2), ((1, 1), (1, 1))


def _pool(x):
    return nn.max_pool(x, _WINDOW, strides=_STRIDE, padding=_PAD)


@jax.custom_vjp
def max_pool_3x3s2(x):
    """`flax.linen.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))`.

    Args: x (N, H, W, C). Returns: (N, ceil(H / 2), ceil(W / 2), C).
    """
    return _pool(x)


def _fwd(x):
    y = _pool(x)
    return y, (x, y)


def _bwd(residuals, g):
    x, y = residuals
    n, h, w, c = x.shape
    ho, wo = y.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    taken = jnp.zeros(y.shape, bool)
    share = {}
    for di in range(3):
        for dj in range(3):
            end = (n, di + 2 * (ho - 1) + 1, dj + 2 * (wo - 1) + 1, c)
            tap = lax.slice(padded, (0, di, dj, 0), end, (1, 2, 2, 1))
            wins = (tap == y) & ~taken
            taken = taken | wins
            share[di, dj] = jnp.where(wins, g, jnp.zeros((), g.dtype))

    zero = jnp.zeros((), g.dtype)

    def at(di, dj):
        """Tap (di, dj)'s share on its sub-grid (ho + 1, wo + 1): taps 2 sit one window on."""
        rows, cols = (1, 0) if di == 2 else (0, 1), (1, 0) if dj == 2 else (0, 1)
        return lax.pad(share[di, dj], zero, ((0, 0, 0), (*rows, 0), (*cols, 0), (0, 0, 0)))

    # Windows in row-major order: (i-1, j-1) by tap (2, 2), (i-1, j) by (2, 0), (i, j-1) by
    # (0, 2), (i, j) by (0, 0); select_and_scatter adds them in this order.
    even_even = ((at(2, 2) + at(2, 0)) + at(0, 2)) + at(0, 0)
    even_odd = at(2, 1) + at(0, 1)
    odd_even = at(1, 2) + at(1, 0)
    odd_odd = at(1, 1)
    rows_even = jnp.stack([even_even, even_odd], axis=3)  # (N, ho+1, wo+1, 2, C)
    rows_odd = jnp.stack([odd_even, odd_odd], axis=3)
    grid = jnp.stack([rows_even, rows_odd], axis=2).reshape(n, 2 * ho + 2, 2 * wo + 2, c)
    return (grid[:, 1 : h + 1, 1 : w + 1, :],)


max_pool_3x3s2.defvjp(_fwd, _bwd)
