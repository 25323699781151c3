"""ResNet18 backbone with frozen batch-norm, laid out like torchvision's `resnet18`.

Padding is written out explicitly as torchvision's (3 on the 7x7 stem conv, 1 on the 3x3
max-pool and on every 3x3 conv), never "SAME": for stride-2 layers "SAME" pads asymmetrically
and converted torchvision weights would give different numbers.

Batch-norm is frozen exactly as ACT's `FrozenBatchNorm2d` (torchvision's, eps 1e-5): weight,
bias, running mean and running var are all *buffers* there, so none of them trains. Here they
all live in the "batch_stats" collection (`scale`, `bias`, `mean`, `var`), which the model never
makes mutable and the trainer never differentiates; the "params" of the backbone are its conv
kernels only. This is also what makes the parameter count equal LeRobot's.

Layout (parameter paths): `conv1`, `bn1`, `layer{1..4}/block_{0,1}/{conv1, bn1, conv2, bn2,
downsample_conv, downsample_bn}`. avgpool and fc are dropped: ACT uses the layer4 map.

`width` multiplies every channel count (1.0 = ResNet18; 0.25 gives 16/32/64/128 channels), for
CPU-sized configs. Axes are NHWC.

`conv` and `pool` pick how the convolutions and the max-pool are differentiated, never what they
compute: "xla" is XLA's own derivative; "fast" is `act_jax.fast_conv.conv2d` for the 3x3 and 1x1
convolutions (the same forward pass, a backward pass written as plain convolutions and matmuls,
which XLA:CPU ran faster on some hosts: bench/conv_backward.py) and `act_jax.fast_pool` for the
stem's max-pool (XLA's gradient bit for bit, without XLA:CPU's scalar select_and_scatter). Both
keep the parameter `kernel` under the same module names, so
checkpoints and converted LeRobot weights load into either.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from act_jax import fast_conv, fast_pool

STAGE_CHANNELS = (64, 128, 256, 512)
CONV_IMPLS = ("auto", "xla", "fast")
# "auto" is XLA's own backward everywhere. `fast_conv` was 1.9x faster a train step at width 1.0
# on the host of 2026-12-03 (its CPU not recorded), but slower on both CPUs measured since: an AMD
# EPYC (1.2-1.5x, loaded) and an Intel Xeon (quiet, 2026-12-04: 1.74 vs 1.57 s at one thread,
# 1.80 vs 1.56 s at two; bench/reference_results/cpu/conv_impl_cpu_default_*_2026-12-04.json),
# both with AVX-512, and it holds more memory. `backbone_conv="fast"` still chooses it.
POOL_IMPLS = ("auto", "xla", "fast")


def resolve_conv(impl: str, width: float) -> str:
    """The convolution backward "auto" stands for on this backend at this width."""
    if impl not in CONV_IMPLS:
        raise ValueError(f"conv impl {impl!r}: expected one of {CONV_IMPLS}")
    if impl != "auto":
        return impl
    del width  # kept in the signature: a rule by width may return with more CPUs measured
    return "xla"


def resolve_pool(impl: str) -> str:
    """The max-pool backward "auto" stands for on this backend: `fast_pool`'s on the CPU, where
    it was measured faster at every width (bench/pool_backward.py), XLA's own elsewhere."""
    if impl not in POOL_IMPLS:
        raise ValueError(f"pool impl {impl!r}: expected one of {POOL_IMPLS}")
    if impl != "auto":
        return impl
    return "fast" if jax.default_backend() == "cpu" else "xla"


def stem_max_pool(x, impl: str = "auto"):
    """torchvision's stem max-pool (3x3, stride 2, padding 1), differentiated by `impl`."""
    if resolve_pool(impl) == "fast":
        return fast_pool.max_pool_3x3s2(x)
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


# torchvision's conv init: kaiming_normal_(mode="fan_out", nonlinearity="relu").
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def channels(width: float) -> tuple[int, ...]:
    """Channel count of the stem and of each stage for a width multiplier."""
    return tuple(max(1, round(c * width)) for c in STAGE_CHANNELS)


def feature_shape(image_size: Sequence[int], width: float) -> tuple[int, int, int]:
    """(h, w, C) of the layer4 map for an (H, W) image: five halvings, each ceil(x / 2)."""
    h, w = image_size
    for _ in range(5):  # stem conv, max-pool, layer2, layer3, layer4 (all stride 2, padded)
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w, channels(width)[-1]


class FrozenBatchNorm(nn.Module):
    """y = (x - mean) / sqrt(var + eps) * scale + bias with every tensor fixed (batch_stats)."""

    epsilon: float = 1e-5
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        scale = self.variable("batch_stats", "scale", jnp.ones, (c,), jnp.float32).value
        bias = self.variable("batch_stats", "bias", jnp.zeros, (c,), jnp.float32).value
        mean = self.variable("batch_stats", "mean", jnp.zeros, (c,), jnp.float32).value
        var = self.variable("batch_stats", "var", jnp.ones, (c,), jnp.float32).value
        # Same fold as torchvision's FrozenBatchNorm2d.forward.
        mult = scale * jax.lax.rsqrt(var + self.epsilon)
        shift = bias - mean * mult
        return x * mult.astype(self.dtype) + shift.astype(self.dtype)


class Conv2d(nn.Module):
    """A bias-free square convolution with torchvision's explicit padding (`kernel`, HWIO).

    The same parameter as the `flax.linen.Conv` it replaced (`kernel`, (k, k, C_in, C_out)), drawn
    with torchvision's initialiser; `impl` chooses the backward pass (see the module docstring).
    """

    features: int
    kernel_size: int
    stride: int = 1
    impl: str = "xla"
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        """Args: x (N, H, W, C_in). Returns: (N, ceil(H/stride), ceil(W/stride), features)."""
        k = self.kernel_size
        kernel = self.param("kernel", conv_init, (k, k, x.shape[-1], self.features), jnp.float32)
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        pad = ((k // 2, k // 2), (k // 2, k // 2))
        # The 7x7 stem is left to XLA: its images need no gradient, and XLA's kernel gradient is
        # as fast there as 49 per-tap matmuls, which would only lengthen the compile.
        if self.impl not in ("xla", "fast"):
            raise ValueError(f"conv impl {self.impl!r}: expected xla or fast (resolve auto first)")
        if self.impl == "fast" and k <= 3:
            return fast_conv.conv2d(x, kernel, self.stride, pad)
        dims = ("NHWC", "HWIO", "NHWC")
        return lax.conv_general_dilated(
            x, kernel, (self.stride, self.stride), pad, dimension_numbers=dims
        )


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual; a 1x1 strided projection when the shape changes."""

    features: int
    stride: int = 1
    dtype: jnp.dtype = jnp.float32
    conv: str = "xla"

    @nn.compact
    def __call__(self, x):
        """Args: x (N, H, W, C_in). Returns: (N, H/stride, W/stride, features)."""
        conv = lambda k, s, name: Conv2d(self.features, k, s, self.conv, self.dtype, name=name)  # noqa: E731
        y = conv(3, self.stride, "conv1")(x)
        y = nn.relu(FrozenBatchNorm(dtype=self.dtype, name="bn1")(y))
        y = conv(3, 1, "conv2")(y)
        y = FrozenBatchNorm(dtype=self.dtype, name="bn2")(y)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = conv(1, self.stride, "downsample_conv")(x)
            x = FrozenBatchNorm(dtype=self.dtype, name="downsample_bn")(x)
        return nn.relu(x + y)


class ResNetStage(nn.Module):
    """`layer{k}`: two BasicBlocks, the first one strided."""

    features: int
    stride: int
    dtype: jnp.dtype = jnp.float32
    conv: str = "xla"

    @nn.compact
    def __call__(self, x):
        x = BasicBlock(self.features, self.stride, self.dtype, self.conv, name="block_0")(x)
        return BasicBlock(self.features, 1, self.dtype, self.conv, name="block_1")(x)


class ResNet18(nn.Module):
    """ResNet18 trunk up to layer4 (stride 32).

    Attributes:
        width: channel multiplier (1.0 = torchvision ResNet18).
        dtype: compute dtype.
        conv: "xla", "fast" or "auto" (`resolve_conv`): how the convolutions are differentiated
            (the same numbers).
        pool: "xla", "fast" or "auto" (`resolve_pool`): how the max-pool is differentiated
            (the same bits).
    """

    width: float = 1.0
    dtype: jnp.dtype = jnp.float32
    conv: str = "auto"
    pool: str = "auto"

    @nn.compact
    def __call__(self, x):
        """Args: x (N, H, W, 3) normalised images. Returns: (N, ceil(H/32), ceil(W/32), C)."""
        chans = channels(self.width)
        conv = resolve_conv(self.conv, self.width)
        x = Conv2d(chans[0], 7, 2, conv, self.dtype, name="conv1")(x)
        x = nn.relu(FrozenBatchNorm(dtype=self.dtype, name="bn1")(x))
        x = stem_max_pool(x, self.pool)
        for k, c in enumerate(chans):
            stride = 1 if k == 0 else 2
            x = ResNetStage(c, stride, self.dtype, conv, name=f"layer{k + 1}")(x)
        return x
