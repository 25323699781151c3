"""act_jax.fast_pool: the backbone's max-pool with XLA's own outputs and gradient, bit for bit.

Even and odd maps (the last window overhangs the edge on odd ones), inputs with many ties (a
ReLU's zeros, and values drawn from a handful of levels, so that windows share their max), and
a pixel that is the max of four windows at once (its gradient is a sum, added in XLA's order).
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from act_jax.fast_pool import max_pool_3x3s2
from act_jax.model import ACTConfig
from act_jax.resnet import ResNet18, resolve_pool


def _xla_pool(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


def _inputs(kind: str, shape, seed: int):
    rng = np.random.default_rng(seed)
    if kind == "relu":  # about half the pixels are 0.0: ties in most windows
        return np.maximum(rng.normal(size=shape), 0.0).astype(np.float32)
    if kind == "levels":  # 4 distinct values: ties everywhere, between any taps
        return rng.integers(0, 4, size=shape).astype(np.float32)
    return rng.normal(size=shape).astype(np.float32)


def _grads(pool, x, g):
    return jax.jit(lambda x: jax.vjp(pool, x)[1](g)[0])(x)


@pytest.mark.parametrize("kind", ["normal", "relu", "levels"])
@pytest.mark.parametrize("h, w", [(8, 12), (7, 9), (2, 3), (1, 1), (24, 32)])
def test_output_and_gradient_are_xlas_bit_for_bit(kind, h, w):
    x = jnp.asarray(_inputs(kind, (2, h, w, 5), seed=h * 100 + w))
    want = _xla_pool(x)
    np.testing.assert_array_equal(np.asarray(max_pool_3x3s2(x)), np.asarray(want))
    g = jnp.asarray(np.random.default_rng(7).normal(size=want.shape).astype(np.float32))
    got, ref = _grads(max_pool_3x3s2, x, g), _grads(_xla_pool, x, g)
    assert got.shape == x.shape
    assert float(jnp.max(jnp.abs(ref))) > 0
    np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))


def test_a_pixel_that_is_the_max_of_four_windows_gets_their_sum_in_xlas_order():
    # Pixel (1, 1) is tap (2, 2) of window (0, 0), (2, 0) of (0, 1), (0, 2) of (1, 0) and (0, 0)
    # of (1, 1). Gradients of very different magnitude make the order of the sum visible: added
    # in row-major window order they give 3e-8, in most other orders 1.0 or 0.0.
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 1, 1, 0] = 5.0
    g = np.array([1e8, 1.0, -1e8, 3e-8], np.float32).reshape(1, 2, 2, 1)
    got = _grads(max_pool_3x3s2, jnp.asarray(x), jnp.asarray(g))
    ref = _grads(_xla_pool, jnp.asarray(x), jnp.asarray(g))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))
    assert float(got[0, 1, 1, 0]) == np.float32(3e-8)
    others = np.asarray(got).copy()
    others[0, 1, 1, 0] = 0.0
    assert not others.any(), "only the shared max receives gradient"


def test_the_backbone_has_the_same_bits_with_either_pool():
    images = jnp.asarray(np.random.default_rng(1).normal(size=(2, 33, 47, 3)), jnp.float32)
    nets = {p: ResNet18(width=0.125, conv="xla", pool=p) for p in ("xla", "fast")}
    variables = nets["xla"].init(jax.random.key(0), images)

    def loss(params, images, net):
        out = net.apply({**variables, "params": params}, images)
        return jnp.sum(jnp.sin(out))

    grads = {
        p: jax.jit(jax.grad(loss, (0, 1)), static_argnums=2)(variables["params"], images, net)
        for p, net in nets.items()
    }
    leaves = [jax.tree.leaves(grads[p]) for p in ("xla", "fast")]
    assert len(leaves[0]) == 20 + 1  # the 20 convolutions' kernels, and the images
    for got, want in zip(leaves[1], leaves[0], strict=True):
        assert float(jnp.max(jnp.abs(want))) > 0
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_the_config_field_defaults_to_auto_and_auto_is_fast_on_the_cpu():
    fields = {f.name: f.default for f in dataclasses.fields(ACTConfig)}
    fields.pop("backbone_pool")  # a config.json written before the field existed
    assert ACTConfig.from_config(fields).backbone_pool == "auto"
    assert jax.default_backend() == "cpu"
    assert resolve_pool("auto") == "fast" and resolve_pool("xla") == "xla"
    with pytest.raises(ValueError, match="backbone_pool"):
        ACTConfig(backbone_pool="cudnn")
