"""interp.params: selections, freezing regexes the trainer accepts, and parameter comparison."""

import jax
import numpy as np
import pytest

from act_jax.train import param_labels
from interp import params as P

TREE = {
    "action_head": {"kernel": np.ones((4, 6)), "bias": np.zeros(6)},
    "backbone": {"conv1": {"kernel": np.ones((3, 3, 3, 8))}},
    "decoder": {
        "layer_0": {
            "mlp": {"linear1": {"kernel": np.ones((4, 8))}, "linear2": {"kernel": np.ones((8, 4))}},
            "norm3": {"scale": np.ones(4)},
            "cross_attn": {"q_proj": {"kernel": np.ones((4, 4))}},
        }
    },
    "encoder": {"layer_0": {"mlp": {"linear1": {"kernel": np.ones((4, 8))}}}},
}


def test_flatten_round_trips():
    flat = P.flatten(TREE)
    assert "decoder/layer_0/mlp/linear1/kernel" in flat
    again = P.flatten(P.unflatten(flat))
    assert again.keys() == flat.keys()


def test_decoder_mlp_preset_is_the_original_projects_trainable_set():
    names = sorted(P.select(TREE, P.PRESETS["decoder_mlp"]))
    assert names == [
        "action_head/bias",
        "action_head/kernel",
        "decoder/layer_0/mlp/linear1/kernel",
        "decoder/layer_0/mlp/linear2/kernel",
        "decoder/layer_0/norm3/scale",
    ]
    # The encoder's MLP is not the decoder's.
    assert "encoder/layer_0/mlp/linear1/kernel" not in names


def test_freeze_all_but_labels_exactly_the_complement_in_the_trainer():
    frozen = P.freeze_all_but(P.PRESETS["decoder_mlp"])
    labels = P.flatten(param_labels(TREE, frozen))
    trainable = set(P.select(TREE, P.PRESETS["decoder_mlp"]))
    for name, label in labels.items():
        assert (label != "frozen") == (name in trainable), name


def test_resolve_names_unknown_presets_and_bad_patterns():
    assert P.resolve("decoder") == P.PRESETS["decoder"]
    assert P.resolve(["^encoder/"]) == ("^encoder/",)
    with pytest.raises(ValueError, match="unknown preset 'decoder_ffn'"):
        P.resolve("decoder_ffn")
    with pytest.raises(ValueError, match="bad parameter pattern"):
        P.resolve(["decoder/(mlp"])


def test_count():
    assert P.count(TREE, P.PRESETS["action_head"]) == 30
    assert P.count(TREE) == sum(np.size(x) for x in jax.tree.leaves(TREE))


def test_compare_reports_which_modules_moved_and_by_how_much():
    after = P.unflatten(dict(P.flatten(TREE)))
    after["decoder"]["layer_0"]["mlp"]["linear1"]["kernel"] = np.full((4, 8), 1.1)
    rows = {r["module"]: r for r in P.compare(TREE, after)}
    mlp = rows["decoder/layer_0/mlp"]
    assert mlp["changed"] == 1 and mlp["tensors"] == 2
    # ||delta|| / ||before|| over both kernels: sqrt(32 * 0.01 / 64).
    assert mlp["relative_change"] == pytest.approx(np.sqrt(32 * 0.01 / 64))
    assert rows["decoder/layer_0/cross_attn"]["changed"] == 0
    assert rows["action_head"]["relative_change"] == 0.0
    with pytest.raises(ValueError, match="differ in paths"):
        P.compare(TREE, {"action_head": TREE["action_head"]})


def test_the_size_matched_control_has_as_many_parameters_as_decoder_mlp():
    from act_jax.model import ACT, ACTConfig, dummy_inputs
    from configs import sim_default

    config = ACTConfig.from_config(sim_default.get_config().model)
    model = ACT(config)
    images, state = dummy_inputs(config)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), images, state, train=False))
    params = shapes["params"]
    control, dec = (set(P.select(params, P.PRESETS[k])) for k in ("encoder_mlp", "decoder_mlp"))
    assert P.count(params, P.PRESETS["encoder_mlp"]) == P.count(params, P.PRESETS["decoder_mlp"])
    assert control & dec == set(P.select(params, P.PRESETS["action_head"]))  # only the head
