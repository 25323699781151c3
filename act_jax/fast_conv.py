"""A 2-D convolution whose backward pass avoids XLA:CPU's slow lowerings, same numbers.

XLA differentiates `lax.conv_general_dilated` into two more convolutions: the input gradient is
a convolution of the output gradient with `lhs_dilation=stride` (zeros between its pixels, done
inside the convolution), and the kernel gradient is a convolution over the batch with
`rhs_dilation=stride`. XLA:CPU runs both far slower than a plain convolution of the same size
(bench/conv_backward.py measures each layer of the ResNet18 backbone). `conv2d` here has the same
forward pass and a custom VJP that writes both gradients as plain operations:

- input gradient: `lax.pad` with interior padding inserts the zeros (and the edge padding) as a
  data movement, then a stride-1, unpadded convolution with the flipped, transposed kernel;
- kernel gradient: for each kernel tap (i, j), the strided window of the padded input that tap
  sees, contracted with the output gradient over batch and space (one matmul per tap), i.e.
  im2col without building the whole patch matrix at once.

Both are exact rewrites of the same sums, so outputs and gradients agree with XLA's own to float
rounding (tests/test_fast_conv.py, every stride, padding and shape the backbone uses).

Layouts: x (N, H, W, C_in) NHWC, kernel (kh, kw, C_in, C_out) HWIO, as `flax.linen.Conv`.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

Padding = tuple[tuple[int, int], tuple[int, int]]
_DIMS = ("NHWC", "HWIO", "NHWC")


def _forward(x, kernel, stride: int, padding: Padding):
    return lax.conv_general_dilated(x, kernel, (stride, stride), padding, dimension_numbers=_DIMS)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x, kernel, stride: int, padding: Padding):
    """`lax.conv_general_dilated(x, kernel, (stride, stride), padding)` in NHWC/HWIO.

    Args:
        x: (N, H, W, C_in).
        kernel: (kh, kw, C_in, C_out).
        stride: the same stride along H and W.
        padding: ((top, bottom), (left, right)), non-negative.
    Returns:
        (N, H_out, W_out, C_out) with H_out = (H + top + bottom - kh) // stride + 1.
    """
    return _forward(x, kernel, stride, padding)


def _conv2d_fwd(x, kernel, stride, padding):
    return _forward(x, kernel, stride, padding), (x, kernel)


def _input_grad(g, kernel, x_shape, stride: int, padding: Padding):
    """d(out)/dx^T g: zero insertion and padding by `lax.pad`, then a plain convolution."""
    kh, kw = kernel.shape[:2]
    edges = []
    for axis, (lo, _hi), k in ((1, padding[0], kh), (2, padding[1], kw)):
        dilated = (g.shape[axis] - 1) * stride + 1
        before = k - 1 - lo
        after = x_shape[axis] + k - 1 - dilated - before  # may be < 0: a crop
        edges.append((before, after, stride - 1))
    zero = jnp.zeros((), g.dtype)
    g_up = lax.pad(g, zero, [(0, 0, 0), edges[0], edges[1], (0, 0, 0)])
    flipped = jnp.swapaxes(kernel[::-1, ::-1], 2, 3)  # (kh, kw, C_out, C_in)
    return lax.conv_general_dilated(g_up, flipped, (1, 1), "VALID", dimension_numbers=_DIMS)


def _kernel_grad(x, g, kernel_shape, stride: int, padding: Padding):
    """sum over n, y, x of x_pad[n, y*s + i, x*s + j, :] outer g[n, y, x, :], tap by tap."""
    kh, kw = kernel_shape[:2]
    n, ho, wo, _ = g.shape
    x_pad = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    taps = []
    for i in range(kh):
        row = []
        for j in range(kw):
            window = lax.slice(
                x_pad,
                (0, i, j, 0),
                (n, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1, x_pad.shape[3]),
                (1, stride, stride, 1),
            )  # (N, H_out, W_out, C_in)
            row.append(jnp.einsum("nhwc,nhwd->cd", window, g))
        taps.append(jnp.stack(row))
    return jnp.stack(taps)  # (kh, kw, C_in, C_out)


def _conv2d_bwd(stride, padding, residuals, g):
    x, kernel = residuals
    dx = _input_grad(g, kernel, x.shape, stride, padding)
    dk = _kernel_grad(x, g, kernel.shape, stride, padding)
    return dx.astype(x.dtype), dk.astype(kernel.dtype)


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)
