"""LeRobot <-> JAX weight conversion without torch: key set, layouts, round trips, errors.

Numerical parity against LeRobot itself needs the LeRobot venv and lives in
bench/parity_lerobot.py; these tests pin everything that can be checked from our side.
"""

import dataclasses
import json
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from act_jax import convert_lerobot as cl
from act_jax.model import ACT, ACTConfig

TINY = ACTConfig(
    cameras=("top", "lateral"),
    image_size=(64, 64),
    chunk_size=8,
    dim_model=32,
    n_heads=4,
    dim_feedforward=48,
    n_encoder_layers=2,
    n_decoder_layers=1,
    n_vae_encoder_layers=1,
    latent_dim=4,
    backbone_width=1.0,
)


@pytest.fixture(scope="module")
def tiny_variables():
    """Variables of TINY's shapes filled with distinct random values (batch stats included, so
    that a swapped scale/bias/mean/var would show); no init compile needed."""
    images = {c: jnp.zeros((1, 64, 64, 3), jnp.uint8) for c in TINY.cameras}
    state = jnp.zeros((1, TINY.state_dim))
    shapes = jax.eval_shape(
        lambda: ACT(TINY).init({"params": jax.random.key(0)}, images, state, train=False)
    )
    rng = np.random.default_rng(0)
    return jax.tree_util.tree_map(
        lambda s: rng.uniform(0.5, 1.5, s.shape).astype(np.float32), shapes
    )


def test_lerobot_default_key_set_matches_the_reference_inventory():
    # LeRobot's default ACT (4 enc, 1 dec, 4 VAE layers, 6-D state/action) saves 234 tensors.
    config = ACTConfig(n_encoder_layers=4)
    keys = {k for k, *_ in cl.key_map(config)} | {cl.POS_ENC_KEY}
    assert len(keys) == 234
    for k in (
        "backbone.conv1.weight",
        "backbone.layer4.0.downsample.1.running_var",
        "decoder.layers.0.multihead_attn.in_proj_weight",
        "decoder.norm.weight",
        "encoder.layers.3.linear2.bias",
        "encoder_img_feat_input_proj.weight",
        "encoder_1d_feature_pos_embed.weight",
        "decoder_pos_embed.weight",
        "vae_encoder_latent_output_proj.weight",
        "vae_encoder_cls_embed.weight",
    ):
        assert k in keys, k
    assert not any("num_batches_tracked" in k or k.startswith("backbone.fc") for k in keys)
    assert "backbone.layer1.0.downsample.0.weight" not in keys  # layer1 keeps its shape


def test_to_lerobot_uses_torch_layouts(tiny_variables):
    sd = cl.to_lerobot(tiny_variables, TINY)
    d, f = TINY.dim_model, TINY.dim_feedforward
    assert sd["model.backbone.conv1.weight"].shape == (64, 3, 7, 7)  # OIHW
    assert sd["model.encoder_img_feat_input_proj.weight"].shape == (d, 512, 1, 1)
    assert sd["model.encoder.layers.0.self_attn.in_proj_weight"].shape == (3 * d, d)
    assert sd["model.encoder.layers.0.self_attn.in_proj_bias"].shape == (3 * d,)
    assert sd["model.encoder.layers.0.linear1.weight"].shape == (f, d)  # (out, in)
    assert sd["model.vae_encoder_pos_enc"].shape == (1, 2 + TINY.chunk_size, d)
    # in_proj rows are [Wq; Wk; Wv], each the transpose of our (in, out) kernel.
    p = tiny_variables["params"]["encoder"]["layer_0"]["self_attn"]
    w = sd["model.encoder.layers.0.self_attn.in_proj_weight"]
    np.testing.assert_array_equal(w[d : 2 * d], np.asarray(p["k_proj"]["kernel"]).T)
    bn = tiny_variables["batch_stats"]["backbone"]["layer2"]["block_0"]["downsample_bn"]
    np.testing.assert_array_equal(sd["model.backbone.layer2.0.downsample.1.running_var"], bn["var"])


def test_round_trip_is_exact(tiny_variables):
    back = cl.from_lerobot(cl.to_lerobot(tiny_variables, TINY), TINY)
    jax.tree_util.tree_map(np.testing.assert_array_equal, back, tiny_variables)


def test_save_and_load_pretrained(tmp_path, tiny_variables):
    cl.save_pretrained(tmp_path, TINY, tiny_variables)
    lerobot_config = json.loads((tmp_path / "config.json").read_text())
    assert lerobot_config["pretrained_backbone_weights"] is None  # no download when LeRobot loads
    assert list(lerobot_config["input_features"]) == [
        "observation.state",
        "observation.images.top",
        "observation.images.lateral",
    ]
    config, variables = cl.load_pretrained(tmp_path)
    assert config == TINY
    jax.tree_util.tree_map(np.testing.assert_array_equal, variables, tiny_variables)


def test_safetensors_reader_handles_bf16_and_padding(tmp_path):
    values = np.array([1.5, -2.0, 0.25], np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    header = json.dumps(
        {
            "__metadata__": {"format": "pt"},
            "x": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]},
        }
    ).encode()
    header += b" " * (-len(header) % 8)
    path = tmp_path / "t.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bf16)
    np.testing.assert_array_equal(cl.read_safetensors(path)["x"], values)


def test_errors_name_the_problem(tiny_variables):
    sd = cl.to_lerobot(tiny_variables, TINY)
    broken = dict(sd)
    del broken["model.decoder.norm.bias"]
    broken["model.encoder_env_state_input_proj.weight"] = np.zeros((32, 3), np.float32)
    broken["model.action_head.weight"] = np.zeros((7, 32), np.float32)
    with pytest.raises(ValueError) as e:
        cl.from_lerobot(broken, TINY)
    msg = str(e.value)
    assert "decoder.norm.bias" in msg and "encoder_env_state_input_proj" in msg
    assert "action_head/kernel" in msg
    with pytest.raises(ValueError, match="backbone_width"):
        cl.key_map(dataclasses.replace(TINY, backbone_width=0.25))
    lerobot_config = cl.config_to_lerobot(TINY)
    lerobot_config["input_features"]["observation.environment_state"] = {
        "type": "ENV",
        "shape": [4],
    }
    with pytest.raises(ValueError, match="environment_state"):
        cl.config_from_lerobot(lerobot_config)
    with pytest.raises(FileNotFoundError, match="config.json"):
        cl.load_pretrained("/nonexistent/pretrained_model")
