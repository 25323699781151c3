"""act_jax.fast_conv: the same outputs and gradients as XLA's own convolution.

Every kernel size, stride and padding the ResNet18 backbone uses, on even and odd feature maps
(the stride-2 layers round up: an odd map exercises the crop in the input gradient), and the
whole ResNet18 with `conv="fast"` against "xla" (output and every gradient leaf).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from act_jax.fast_conv import conv2d
from act_jax.model import ACTConfig
from act_jax.resnet import CONV_IMPLS, ResNet18, resolve_conv

# (H, W, C_in, C_out, kernel, stride): the stem, plain 3x3, strided 3x3, strided 1x1
BACKBONE_CONVS = [
    (32, 48, 3, 8, 7, 2),
    (33, 47, 3, 8, 7, 2),
    (8, 12, 8, 8, 3, 1),
    (3, 4, 16, 16, 3, 1),
    (2, 3, 16, 16, 3, 1),
    (8, 12, 8, 16, 3, 2),
    (7, 9, 8, 16, 3, 2),
    (8, 12, 8, 16, 1, 2),
    (7, 9, 8, 16, 1, 2),
]


def _xla(x, kernel, stride, padding):
    dims = ("NHWC", "HWIO", "NHWC")
    return lax.conv_general_dilated(x, kernel, (stride, stride), padding, dimension_numbers=dims)


@pytest.mark.parametrize("h, w, cin, cout, k, stride", BACKBONE_CONVS)
def test_outputs_and_both_gradients_equal_xla(h, w, cin, cout, k, stride):
    rng = np.random.default_rng(h * w + k)
    x = jnp.asarray(rng.normal(size=(2, h, w, cin)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(k, k, cin, cout)), jnp.float32)
    pad = ((k // 2, k // 2), (k // 2, k // 2))
    # A non-linear read-out, so that the output gradient differs from pixel to pixel.
    readout = lambda f: lambda x, kern: jnp.sum(jnp.sin(f(x, kern, stride, pad)))  # noqa: E731
    want_out = _xla(x, kernel, stride, pad)
    got_out = conv2d(x, kernel, stride, pad)
    np.testing.assert_allclose(got_out, want_out, rtol=1e-5, atol=1e-5)
    want = jax.grad(readout(_xla), (0, 1))(x, kernel)
    got = jax.jit(jax.grad(readout(conv2d), (0, 1)))(x, kernel)
    for name, g, ref in zip(("input", "kernel"), got, want, strict=True):
        assert g.shape == ref.shape, name
        scale = float(jnp.max(jnp.abs(ref)))
        assert scale > 0, name
        np.testing.assert_allclose(g / scale, ref / scale, atol=1e-5, err_msg=name)


def test_backbone_with_fast_conv_has_xla_outputs_and_gradients():
    images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 33, 47, 3)), jnp.float32)
    nets = {impl: ResNet18(width=0.125, conv=impl) for impl in ("xla", "fast")}
    # Random variables drawn with numpy (a jitted flax init of the backbone compiles for ~30 s).
    shapes = jax.eval_shape(nets["xla"].init, jax.random.key(0), images)
    rng = np.random.default_rng(1)

    def draw(s):
        if len(s.shape) == 4:  # a conv kernel, scaled as He's init
            return rng.normal(size=s.shape) * np.sqrt(2 / np.prod(s.shape[:3]))
        return rng.uniform(0.5, 1.5, s.shape)  # batch-norm scale, bias, mean and var

    variables = jax.tree.map(lambda s: jnp.asarray(draw(s), jnp.float32), shapes)
    # The parameter tree is one: a checkpoint trained with either loads into the other.
    assert jax.eval_shape(nets["fast"].init, jax.random.key(0), images) == shapes

    def loss_and_grads(impl):
        def f(params, images):
            out = nets[impl].apply({**variables, "params": params}, images)
            return jnp.sum(jnp.sin(out))

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(variables["params"], images)

    (want, want_grads), (got, got_grads) = loss_and_grads("xla"), loss_and_grads("fast")
    np.testing.assert_allclose(got, want, rtol=1e-5)
    want_leaves = dict(jax.tree_util.tree_leaves_with_path(want_grads))
    checked = 0
    for path, g in jax.tree_util.tree_leaves_with_path(got_grads):
        ref = want_leaves[path]
        scale = float(np.max(np.abs(ref)))
        assert scale > 0, jax.tree_util.keystr(path)
        np.testing.assert_allclose(g / scale, ref / scale, atol=2e-5, err_msg=str(path))
        checked += 1
    assert checked == 20 + 1  # the 20 convolutions' kernels, and the images


def test_act_config_takes_the_conv_impl_and_older_configs_default_to_auto():
    fields = {f.name: f.default for f in dataclasses.fields(ACTConfig)}
    fields.pop("backbone_conv")
    older = {k: v for k, v in fields.items()}  # a config.json written before the field existed
    assert ACTConfig.from_config(older).backbone_conv == "auto"
    assert ACTConfig.from_config({**older, "backbone_conv": "fast"}).backbone_conv == "fast"


def test_auto_takes_xlas_backward_and_fast_is_chosen_by_name():
    assert jax.default_backend() == "cpu"
    assert resolve_conv("auto", 1.0) == "xla"
    assert resolve_conv("auto", 0.25) == "xla"
    assert resolve_conv("xla", 1.0) == "xla" and resolve_conv("fast", 0.25) == "fast"
    assert set(CONV_IMPLS) == {"auto", "xla", "fast"}


def test_unknown_conv_impl_names_the_field():
    with pytest.raises(ValueError, match="backbone_conv"):
        ACTConfig(backbone_conv="cudnn")


def test_a_workdir_resumes_under_another_conv_impl_but_not_another_model(tmp_path):
    from act_jax import train_state
    from configs import tiny

    saved = tiny.get_config()
    saved.model.backbone_conv = "xla"
    now = tiny.get_config()
    now.model.backbone_conv = "fast"
    train_state._check_same_model(saved, now, tmp_path)  # no error: the same parameters
    now.model.dim_model = 2 * saved.model.dim_model
    with pytest.raises(Exception, match="config.model.dim_model"):
        train_state._check_same_model(saved, now, tmp_path)
