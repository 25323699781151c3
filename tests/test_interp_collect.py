"""The activation collector: shards equal a direct capture, labels are right, memory is bounded."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers_data import synthetic_episode

from act_jax import checkpoints, normalization, train
from act_jax import intermediates as im
from act_jax.data import load_episodes
from act_jax.model import ACT, ACTConfig, init_variables
from act_jax_datasets.episodes import build
from configs import tiny
from hardware.recording.episodes import write_episode
from interp import collect as C
from interp.labels import task_phase
from interp.shards import Collection, ShardWriter

NAMES = ("backbone/top", "encoder/out", "decoder/out")
LOCATIONS = (0, 1, 2, 0, 1)
# Commanded gripper: opening from 30, closed for 4 ticks, open again (then held).
GRIP = np.array([30, 45, 45, 0, 0, 0, 0, 45] + [45] * 20, np.float32)
PHASE = np.array([0, 0, 0, 1, 1, 1, 1] + [2] * 21)


pytestmark = pytest.mark.usefixtures("fast_jax")  # conftest: cheaper compiles


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """5 episodes of 12..16 steps at 32x32, with locations, cube poses and a grasp."""
    root = tmp_path_factory.mktemp("collect_data")
    rng = np.random.default_rng(0)
    for i, loc in enumerate(LOCATIONS):
        ep = synthetic_episode(rng, i, 12 + i, (32, 32))
        ep["action"][:, 5] = GRIP[: 12 + i]
        pose = (0.1 * loc, -0.05 * i, 0.01, 1.0, 0.0, 0.0, 0.0)
        ep["meta"] = dataclasses.replace(ep["meta"], location_id=loc, cube_start_pose=pose)
        write_episode(root / "episodes", **ep)
    return build(root / "episodes", root / "tfds", "collect")


@pytest.fixture(scope="module")
def network():
    config = tiny.get_config()
    model = ACT(ACTConfig.from_config(config.model))
    variables = init_variables(model, jax.random.key(0))
    stats = normalization.NormStats(
        np.arange(6, dtype=np.float32),
        np.full(6, 3.0, np.float32),
        np.ones(6, np.float32),
        np.full(6, 2.0, np.float32),
    )
    return C.Network(model, variables, config, stats, {"test": True})


@pytest.fixture(scope="module")
def direct(dataset, network):
    """Every frame at once, through `run_with_cache` and the policy's normalisation."""
    eps = load_episodes(dataset, ("top", "lateral"), (32, 32), 6, 6)
    images = {c: np.concatenate([e.images[c] for e in eps]) for c in ("top", "lateral")}
    state = np.concatenate([e.state for e in eps])
    batch = {"images": images, "state": network.norm_stats.normalize_state(state)}
    cache = im.run_with_cache(network.model, network.variables, batch, (*NAMES, "actions"))
    return eps, {k: np.asarray(v) for k, v in cache.items()}


def test_shards_concatenate_to_a_direct_capture_with_the_right_labels(
    tmp_path, dataset, network, direct
):
    eps, cache = direct
    m = C.collect(
        network, dataset, NAMES, tmp_path / "c", batch_size=8, shard_frames=20, progress=False
    )
    coll = Collection(tmp_path / "c")
    n = sum(len(e) for e in eps)
    assert len(coll) == m["frames"] == n == 70 and coll.num_shards == 4  # 20 + 20 + 20 + 10
    for name in NAMES:
        assert [len(s) for s in coll.shards(name)] == [20, 20, 20, 10]
        np.testing.assert_allclose(coll.features(name), cache[name], rtol=1e-5, atol=1e-5)
    pred = network.norm_stats.unnormalize_action(cache["actions"])
    np.testing.assert_allclose(coll.labels("pred_actions"), pred, rtol=1e-5, atol=1e-5)

    lab = {k: coll.labels(k) for k in coll.label_fields}
    # Collections follow the dataset's order, which is the recording's.
    index = np.array([e.episode_index for e in eps])
    assert list(index) == list(range(5))
    lengths = [len(e) for e in eps]
    np.testing.assert_array_equal(lab["episode"], np.repeat(index, lengths))
    np.testing.assert_array_equal(lab["episode_position"], np.repeat(range(5), lengths))
    np.testing.assert_array_equal(lab["frame"], np.concatenate([np.arange(t) for t in lengths]))
    locations = np.repeat(np.array(LOCATIONS)[index], lengths)
    np.testing.assert_array_equal(lab["location_id"], locations)
    np.testing.assert_allclose(lab["cube_start_pose"][:, 0], locations * 0.1, rtol=1e-6)
    np.testing.assert_allclose(
        lab["cube_start_pose"][:, 1], np.repeat(-0.05 * index, lengths), rtol=1e-6
    )
    np.testing.assert_array_equal(lab["phase"], np.concatenate([PHASE[:t] for t in lengths]))
    np.testing.assert_array_equal(lab["state"], np.concatenate([e.state for e in eps]))
    # Ground-truth chunk (C = 8) of the last episode's 6th frame from the end: the last 6
    # steps, then 2 padded with the final action.
    row = n - 6
    np.testing.assert_array_equal(lab["gt_actions"][row][:6], eps[-1].action[-6:])
    np.testing.assert_array_equal(lab["gt_actions"][row][6:], eps[-1].action[[-1, -1]])
    np.testing.assert_array_equal(lab["gt_is_pad"][row], [False] * 6 + [True] * 2)
    saved = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert saved["features"]["decoder/out"]["shape"] == [8, 32]
    assert saved["labels"]["phase"]["shape"] == [] and saved["phases"][1] == "grasp_and_carry"


def test_pooling_and_pca_reduce_the_direct_capture(tmp_path, dataset, network, direct):
    _, cache = direct
    C.collect(network, dataset, NAMES, tmp_path / "p", pooled=True, batch_size=8, progress=False)
    coll = Collection(tmp_path / "p")
    np.testing.assert_allclose(
        coll.features("backbone/top"), cache["backbone/top"].mean(axis=(1, 2)), rtol=1e-4, atol=1e-5
    )
    tok = cache["encoder/out"]  # (n, 2 + 2 * 1, D) for the tiny 1x1 feature map
    np.testing.assert_allclose(coll.features("encoder/out"), tok, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        coll.features("decoder/out"), cache["decoder/out"].mean(axis=1), rtol=1e-4, atol=1e-5
    )
    C.collect(
        network,
        dataset,
        ["decoder/out"],
        tmp_path / "k",
        pca=3,
        pca_stride=2,
        batch_size=8,
        progress=False,
    )
    coll = Collection(tmp_path / "k")
    p = coll.pca("decoder/out")
    assert p["components"].shape == (3, 8 * 32) and coll.manifest["pca_stride"] == 2
    want = (cache["decoder/out"].reshape(70, -1) - p["mean"]) @ p["components"].T
    np.testing.assert_allclose(coll.features("decoder/out"), want, rtol=1e-4, atol=1e-4)
    assert coll.manifest["features"]["decoder/out"]["reduce"] == "raw+pca3"


def test_frame_stride_and_pooling_some_names_only(tmp_path, dataset, network, direct):
    eps, cache = direct
    C.collect(
        network,
        dataset,
        NAMES,
        tmp_path / "s",
        pooled=["backbone/top"],
        frame_stride=3,
        batch_size=8,
        progress=False,
    )
    coll = Collection(tmp_path / "s")
    # Frames 0, 3, 6, ... of each episode, with their own (unstrided) frame numbers.
    starts = np.cumsum([0] + [len(e) for e in eps])[:-1]
    rows = np.concatenate([s + np.arange(0, len(e), 3) for s, e in zip(starts, eps, strict=True)])
    np.testing.assert_array_equal(coll.labels("frame") % 3, 0)
    assert len(coll) == len(rows) and coll.manifest["frame_stride"] == 3
    want = cache["backbone/top"][rows].mean(axis=(1, 2))
    np.testing.assert_allclose(coll.features("backbone/top"), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(coll.features("decoder/out"), cache["decoder/out"][rows], atol=1e-5)
    assert coll.manifest["features"]["decoder/out"]["reduce"] == "raw"
    assert coll.manifest["features"]["backbone/top"]["reduce"] == "pool"
    with pytest.raises(ValueError, match="not among the collected names"):
        C.collect(network, dataset, ["decoder/out"], tmp_path / "x", pooled=["encoder/out"])


def test_streams_episodes_and_holds_at_most_a_shard_and_a_batch(
    tmp_path, dataset, network, monkeypatch
):
    events = []
    real_source, real_flush = C.png_source, ShardWriter._flush

    class Spy:
        def __init__(self, source):
            self.source = source

        def __len__(self):
            return len(self.source)

        def __getitem__(self, i):
            events.append(("read", i))
            return self.source[i]

    monkeypatch.setattr(C, "png_source", lambda d: Spy(real_source(d)))
    monkeypatch.setattr(
        ShardWriter, "_flush", lambda self, n: (events.append(("flush", n)), real_flush(self, n))
    )
    m = C.collect(
        network,
        dataset,
        ["decoder/out"],
        tmp_path / "s",
        batch_size=8,
        shard_frames=12,
        progress=False,
    )
    reads = [i for kind, i in events if kind == "read"]
    assert reads == list(range(5))  # each episode read once, in order, one at a time
    first_flush = next(k for k, e in enumerate(events) if e[0] == "flush")
    assert first_flush < events.index(("read", 4))  # shards are written while streaming
    assert m["peak_buffered_frames"] <= 12 + 8 - 1
    assert [n for kind, n in events if kind == "flush"] == [12] * 5 + [10]


def test_bad_requests_are_clear_errors(tmp_path, dataset, network):
    with pytest.raises(KeyError, match="valid names for this model: .*backbone/lateral"):
        C.collect(network, dataset, ["backbone/front"], tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="no pooling rule for 'encoder/layer_0/attn_weights'"):
        C.collect(
            network,
            dataset,
            ["encoder/layer_0/attn_weights"],
            tmp_path / "b",
            pooled=True,
            progress=False,
        )
    C.collect(
        network,
        dataset,
        ["decoder/out"],
        tmp_path / "c",
        batch_size=8,
        max_episodes=1,
        progress=False,
    )
    with pytest.raises(FileExistsError, match="already holds a collection"):
        C.collect(network, dataset, ["decoder/out"], tmp_path / "c", progress=False)


def test_frames_at_gives_the_collected_rows_inputs(dataset, network, direct):
    eps, _ = direct
    position, frame = np.array([3, 0, 3, 1]), np.array([5, 0, 2, 11])  # out of order, repeats
    got = C.frames_at(network, dataset, position, frame)
    flat = np.cumsum([0] + [len(e) for e in eps])[position] + frame
    for c in ("top", "lateral"):
        want = np.concatenate([e.images[c] for e in eps])[flat]
        np.testing.assert_array_equal(got["images"][c], want)
    state = np.concatenate([e.state for e in eps])[flat]
    np.testing.assert_array_equal(got["state"], network.norm_stats.normalize_state(state))


def test_phase_rule():
    np.testing.assert_array_equal(task_phase(GRIP), PHASE)
    np.testing.assert_array_equal(task_phase(np.full(9, 40.0)), np.zeros(9))  # never grasps
    # A re-grasp chatter inside the carry stays one grasp-and-carry run.
    np.testing.assert_array_equal(task_phase([45, 0, 40, 0, 45]), [0, 1, 1, 1, 2])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, network):
    """The tiny network saved as a training checkpoint."""
    workdir = tmp_path_factory.mktemp("collect_ckpt") / "run"
    tx = train.make_optimizer(network.config.train)
    variables = jax.tree.map(jnp.asarray, dict(network.variables))
    state = {"step": jnp.int32(3), **variables, "opt_state": tx.init(variables["params"])}
    checkpoints.save(workdir, 3, state, network.config, network.norm_stats)
    return workdir


def test_cli_from_a_checkpoint_and_its_random_init_control(tmp_path, dataset, checkpoint):
    args = [
        "--checkpoint",
        str(checkpoint),
        "--dataset",
        str(dataset),
        "--names",
        "decoder/out",
        "--pool",
        "--batch-size",
        "8",
        "--max-episodes",
        "2",
    ]
    assert C.main([*args, "--out", str(tmp_path / "trained")]) == 0
    assert C.main([*args, "--random-init", "0", "--out", str(tmp_path / "random")]) == 0
    trained, rand = Collection(tmp_path / "trained"), Collection(tmp_path / "random")
    assert len(trained) == len(rand) == len(trained.labels("frame")) > 20
    assert rand.manifest["network"]["random_init_seed"] == 0
    assert trained.manifest["network"]["step"] == 3
    np.testing.assert_array_equal(trained.labels("frame"), rand.labels("frame"))
    assert not np.allclose(trained.features("decoder/out"), rand.features("decoder/out"))
    with pytest.raises(SystemExit):
        C.main([*args, "--names", "decoder/nope", "--out", str(tmp_path / "x")])


@pytest.mark.slow
def test_random_init_with_the_train_seed_is_the_trainers_initialisation(checkpoint):
    config = tiny.get_config()
    random_net = C.load_network(checkpoint, random_init_seed=config.train.seed)
    init_rng = jax.random.split(jax.random.key(config.train.seed))[0]
    batch = {
        "images": {c: np.zeros((1, 32, 32, 3), np.uint8) for c in config.model.cameras},
        "state": np.zeros((1, 6), np.float32),
        "actions": np.zeros((1, 8, 6), np.float32),
        "action_is_pad": np.zeros((1, 8), bool),
    }
    want = train.create_train_state(config, init_rng, batch).params
    # Equal to float rounding: init_variables compiles without XLA's optimisations.
    same = lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    jax.tree.map(same, random_net.variables["params"], want)
