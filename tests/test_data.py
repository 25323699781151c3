"""The data pipeline: what was recorded is what the model is trained on, chunk by chunk."""

import shlex
import shutil

import jax
import numpy as np
import pytest
from helpers_data import build_dataset, damage_episode, write_episodes

from act_jax import data, normalization, prepare_data, sharding


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    dataset_dir = build_dataset(root, num_episodes=3, steps=10, image_size=(24, 32))
    episodes = write_episodes(root / "again", num_episodes=3, steps=10, image_size=(24, 32))
    return dataset_dir, episodes


def load(dataset_dir, **kw):
    args = dict(cameras=("top", "lateral"), image_size=(24, 32), state_dim=6, action_dim=6)
    return data.load_episodes(dataset_dir, **(args | kw))


def identity_stats(dim=6):
    zeros, ones = np.zeros(dim, np.float32), np.ones(dim, np.float32)
    return normalization.NormStats(zeros, ones, zeros, ones)


def test_episodes_decode_to_the_recorded_values(dataset):
    dataset_dir, recorded = dataset
    episodes = load(dataset_dir)
    assert [e.episode_index for e in episodes] == [0, 1, 2]
    assert [len(e) for e in episodes] == [10, 11, 12]
    from hardware.recording.episodes import decode_png

    for ep, rec in zip(episodes, recorded, strict=True):
        np.testing.assert_array_equal(ep.state, rec["state"])
        np.testing.assert_array_equal(ep.action, rec["action"])
        assert ep.images["top"].dtype == np.uint8 and ep.images["top"].shape == (len(ep), 24, 32, 3)
        np.testing.assert_array_equal(ep.images["lateral"][3], decode_png(rec["png"]["lateral"][3]))


def test_bad_datasets_are_named(dataset, tmp_path):
    dataset_dir, _ = dataset
    with pytest.raises(ValueError, match=r"episode 0: camera 'top' frames are \(24, 32, 3\)"):
        load(dataset_dir, image_size=(96, 128))
    with pytest.raises(ValueError, match=r"no camera 'wrist' \(the dataset has \['lateral', 'top'"):
        load(dataset_dir, cameras=("wrist",))
    with pytest.raises(ValueError, match=r"state has shape \(10, 6\), the model expects \(T, 7\)"):
        load(dataset_dir, state_dim=7)
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        load(tmp_path / "nothing_here")


def test_chunks_targets_and_padding(dataset):
    episodes = load(dataset[0])
    sampler = data.ChunkSampler(episodes, identity_stats(), chunk_size=4, batch_size=2, seed=0)
    ep = episodes[0]  # frames 0..9 are flat indices 0..9
    batch = sampler.gather(np.array([2, 8]))
    np.testing.assert_array_equal(batch["images"]["top"][0], ep.images["top"][2])
    np.testing.assert_array_equal(batch["state"][1], ep.state[8])
    np.testing.assert_array_equal(batch["actions"][0], ep.action[2:6])
    # t = 8 of a 10-step episode: actions 8, 9, then the last action repeated, masked out.
    np.testing.assert_array_equal(batch["actions"][1], ep.action[[8, 9, 9, 9]])
    np.testing.assert_array_equal(batch["action_is_pad"], [[0, 0, 0, 0], [0, 0, 1, 1]])
    # The first frame of the next episode.
    np.testing.assert_array_equal(sampler.gather(np.array([10]))["state"][0], episodes[1].state[0])


def test_states_and_actions_are_normalised(dataset):
    episodes = load(dataset[0])
    stats = normalization.compute([e.state for e in episodes], [e.action for e in episodes])
    sampler = data.ChunkSampler(episodes, stats, chunk_size=3, batch_size=1, seed=0)
    batch = sampler.gather(np.array([5]))
    np.testing.assert_allclose(batch["state"][0], stats.normalize_state(episodes[0].state[5]))
    np.testing.assert_allclose(
        stats.unnormalize_action(batch["actions"][0]), episodes[0].action[5:8], rtol=1e-5, atol=1e-4
    )
    assert batch["state"].dtype == batch["actions"].dtype == np.float32


def test_batches_are_a_function_of_seed_and_step(dataset):
    episodes = load(dataset[0])
    make = lambda seed, **kw: data.ChunkSampler(
        episodes, identity_stats(), chunk_size=4, batch_size=4, seed=seed, **kw
    )
    a, b = make(0), make(0)
    jax.tree.map(np.testing.assert_array_equal, a.batch(7), b.batch(7))
    assert not np.array_equal(a.batch(7)["state"], a.batch(8)["state"])
    assert not np.array_equal(a.batch(7)["state"], make(1).batch(7)["state"])
    # Two processes' rows put together are the one-process batch, augmentation included.
    kw = dict(max_shift=2, brightness=0.2)
    whole = make(0, **kw).batch(3)
    halves = [make(0, process_index=i, process_count=2, **kw).batch(3) for i in range(2)]
    jax.tree.map(
        lambda w, h0, h1: np.testing.assert_array_equal(w, np.concatenate([h0, h1])), whole, *halves
    )


def test_frames_are_drawn_uniformly(dataset):
    episodes = load(dataset[0])
    sampler = data.ChunkSampler(episodes, identity_stats(), chunk_size=2, batch_size=64, seed=0)
    counts = np.zeros(sampler.num_frames)
    # Identify each drawn frame by its (normalised = raw) state, unique per frame.
    key = {tuple(s): i for i, s in enumerate(np.concatenate([e.state for e in episodes]))}
    for step in range(200):
        for s in sampler.batch(step)["state"]:
            counts[key[tuple(s)]] += 1
    expected = counts.sum() / sampler.num_frames  # 12800 draws over 33 frames: ~388 each
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_split_by_episode():
    train, val = data.split_episodes(10, 0.1, seed=0)
    assert len(val) == 1 and sorted(train + val) == list(range(10))
    assert data.split_episodes(10, 0.1, seed=0) == (train, val)
    assert data.split_episodes(2, 0.1, seed=0)[1] != []  # at least one when there are 2
    assert data.split_episodes(1, 0.1, seed=0) == ([0], [])
    assert data.split_episodes(5, 0.0, seed=0) == ([0, 1, 2, 3, 4], [])
    with pytest.raises(ValueError, match="val_fraction"):
        data.split_episodes(5, 1.0, seed=0)
    with pytest.raises(ValueError, match="zero episodes"):
        data.split_episodes(0, 0.1, seed=0)


def test_validation_batches_cover_the_episodes_evenly(dataset):
    episodes = load(dataset[0])
    sampler = data.ChunkSampler(episodes, identity_stats(), chunk_size=2, batch_size=3, seed=0)
    batches = sampler.fixed_batches(11)  # 33 frames: every frame exactly once
    states = np.concatenate([b["state"] for b in batches])
    np.testing.assert_array_equal(states, np.concatenate([e.state for e in episodes]))


def test_augmentation_shifts_and_scales():
    img = np.zeros((1, 8, 8, 3), np.uint8)
    img[0, 4, 4] = 200
    same = data.shift_and_brightness(img, np.zeros((1, 2), int), np.ones(1))
    np.testing.assert_array_equal(same, img)
    moved = data.shift_and_brightness(img, np.array([[1, -2]]), np.array([0.5]))
    assert moved[0, 3, 6, 0] == 100 and moved.sum() == 300  # crop offset (+1, -2): pixel moves
    # Against pad-with-edge-then-crop, on random images and shifts.
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 12, 16, 3), dtype=np.uint8)
    shifts = rng.integers(-3, 4, (5, 2))
    got = data.shift_and_brightness(imgs, shifts, np.ones(5))
    padded = np.pad(imgs, ((0, 0), (3, 3), (3, 3), (0, 0)), mode="edge")
    for i, (dy, dx) in enumerate(shifts):
        np.testing.assert_array_equal(got[i], padded[i, 3 + dy : 15 + dy, 3 + dx : 19 + dx])


def test_prefetcher_yields_sharded_batches_in_order_and_reraises(dataset):
    episodes = load(dataset[0])
    sampler = data.ChunkSampler(episodes, identity_stats(), chunk_size=2, batch_size=2, seed=0)
    mesh = sharding.make_mesh()
    with data.Prefetcher(sampler.batch, 3, 6, sharding.batch_sharding(mesh)) as batches:
        got = list(batches)
    assert [s for s, _ in got] == [3, 4, 5]
    assert isinstance(got[0][1]["state"], jax.Array)
    assert got[0][1]["images"]["top"].sharding == sharding.batch_sharding(mesh)
    np.testing.assert_array_equal(got[1][1]["actions"], sampler.batch(4)["actions"])

    def broken(step):
        raise RuntimeError(f"bad step {step}")

    with pytest.raises(RuntimeError, match="bad step 0"):
        with data.Prefetcher(broken, 0, 3, sharding.batch_sharding(mesh)) as batches:
            list(batches)


def test_normalisation_statistics():
    states = [np.stack([np.arange(5.0), np.full(5, 3.0)], axis=1)]  # joint 1 never moves
    stats = normalization.compute(states, states)
    np.testing.assert_allclose(stats.state_mean, [2.0, 3.0])
    np.testing.assert_allclose(stats.state_std, [np.sqrt(2.0), normalization.MIN_STD])
    x = np.array([[1.0, 3.5]], np.float32)
    np.testing.assert_allclose(stats.unnormalize_action(stats.normalize_action(x)), x, rtol=1e-6)
    again = normalization.NormStats.from_dict(stats.to_dict())
    np.testing.assert_array_equal(again.action_std, stats.action_std)
    with pytest.raises(ValueError, match="action values contain NaN"):
        normalization.compute(states, [np.full((2, 2), np.nan)])
    with pytest.raises(ValueError, match="lack the field 'state_std'"):
        normalization.NormStats.from_dict({"state_mean": [0.0]})


def test_missing_dataset_is_recorded_with_the_sim_expert_and_built(tmp_path):
    from configs import tiny

    config = tiny.get_config().data
    config.tfds_data_dir = str(tmp_path / "tfds")
    config.episodes_dir = str(tmp_path / "episodes")
    config.record_episodes = 2
    # The trainer only builds: with no episodes it says what is missing, and records nothing.
    with pytest.raises(FileNotFoundError, match=r"record_episodes > 0 to have `python -m"):
        prepare_data.ensure_dataset(config, (32, 32))
    assert prepare_data.record_missing_demos(config, (32, 32))  # the train command's step
    dataset_dir = prepare_data.ensure_dataset(config, (32, 32))
    assert dataset_dir == tmp_path / "tfds" / "act_episodes" / "tiny" / "1.1.0"
    episodes = load(dataset_dir, image_size=(32, 32))
    assert len(episodes) == 2 and all(len(e) > 10 for e in episodes)
    # Present now: used as is, nothing re-recorded.
    stamp = (dataset_dir / "dataset_info.json").stat().st_mtime_ns
    assert not prepare_data.record_missing_demos(config, (32, 32))
    assert prepare_data.ensure_dataset(config, (32, 32)) == dataset_dir
    assert (dataset_dir / "dataset_info.json").stat().st_mtime_ns == stamp
    config.record_episodes = 0
    config.name = "other"
    (tmp_path / "empty").mkdir()
    config.episodes_dir = str(tmp_path / "empty")
    assert not prepare_data.record_missing_demos(config, (32, 32))
    with pytest.raises(FileNotFoundError, match=r"no dataset at .*other.* no episode files in"):
        prepare_data.ensure_dataset(config, (32, 32))


def test_the_demos_are_recorded_with_the_recorders_current_option_names():
    from configs import tiny
    from hardware.record import build_parser

    config = tiny.get_config().data
    config.record_locations, config.record_episodes = "held_out", 3
    cmd = prepare_data.record_command(config, (32, 48))
    assert cmd[1:3] == ["-m", "hardware.record"] and "--distribution" not in cmd  # deprecated
    args = build_parser().parse_args(cmd[3:])
    assert (args.robot, args.teleop, args.image_size) == ("sim", "expert", "32x48")
    assert args.locations == "held_out" and args.episodes == 3


@pytest.mark.parametrize("how", ["truncated", "bit_flipped"])
def test_a_damaged_episode_stops_the_training_data_naming_it(tmp_path, how):
    # The trainer builds its dataset from the episodes: a damaged one is named with the command
    # that builds without it, nothing is built, and the episode files are left as they were.
    from configs import tiny
    from hardware.recording.episodes import EpisodeDamaged

    config = tiny.get_config().data
    config.tfds_data_dir = str(tmp_path / "tfds")
    config.episodes_dir = str(tmp_path / "episodes")
    write_episodes(tmp_path / "episodes", num_episodes=3, steps=6)
    bad = tmp_path / "episodes" / "episode_000001.npz"
    damage_episode(bad, how)
    with pytest.raises(EpisodeDamaged, match=rf"{bad}: episode 1 is damaged: .* --skip-damaged"):
        prepare_data.ensure_dataset(config, (32, 32))
    assert not (data.dataset_dir_for(config) / "dataset_info.json").exists()
    assert len(list((tmp_path / "episodes").iterdir())) == 3


@pytest.mark.parametrize("how", ["truncated", "bit_flipped"])
def test_a_damaged_dataset_file_is_named_with_the_command_that_rebuilds_it(tmp_path, how):
    # The array_record reader alone says "Corrupted Riegeli/records file" (bit flipped) or hands
    # TFDS an empty record (truncated), naming nothing. The hint's command really rebuilds it.
    from act_jax_datasets.episodes.__main__ import main as build_main

    dataset_dir = build_dataset(tmp_path, num_episodes=2, steps=6)
    (shard,) = dataset_dir.glob("*.array_record-*")
    raw = bytearray(shard.read_bytes())
    if how == "truncated":
        raw = raw[: len(raw) // 2]
    else:
        raw[1000] ^= 0x04  # inside the first chunk's data: its hash no longer matches
    shard.write_bytes(bytes(raw))
    with pytest.raises(data.DatasetDamaged) as e:
        load(dataset_dir, image_size=(32, 32))
    message = str(e.value)
    said = "no record came back: truncated?" if how == "truncated" else "Corrupted Riegeli"
    assert message.startswith(
        f"{dataset_dir}: example 0 cannot be read from {shard.name}, the file is damaged ({said}"
    )
    hint = message.split("; rebuild it: ")[1]
    remove, command = hint.split(" && ")
    assert remove == f"rm -r {dataset_dir}"
    args = shlex.split(command)
    assert args[:3] == ["python", "-m", "act_jax_datasets.episodes"]
    shutil.rmtree(dataset_dir)
    assert build_main(args[3:]) == 0
    assert [e.episode_index for e in load(dataset_dir, image_size=(32, 32))] == [0, 1]


# ---- Lazy decoding: PNG bytes held, a batch's frames decoded on a thread pool.


def test_lazy_batches_are_the_memory_batches(dataset):
    dataset_dir, recorded = dataset
    memory, lazy = load(dataset_dir, decode="memory"), load(dataset_dir, decode="lazy")
    assert isinstance(memory[0].images["top"], np.ndarray)
    frames = lazy[0].images["top"]
    assert isinstance(frames, data.PngFrames) and frames.shape == (10, 24, 32, 3)
    from hardware.recording.episodes import decode_png

    np.testing.assert_array_equal(
        lazy[2].images["lateral"][11], decode_png(recorded[2]["png"]["lateral"][11])
    )
    for ep_m, ep_l in zip(memory, lazy, strict=True):
        np.testing.assert_array_equal(ep_m.state, ep_l.state)
    kw = dict(chunk_size=4, batch_size=6, seed=3, max_shift=2, brightness=0.2)
    samplers = [
        data.ChunkSampler(memory, identity_stats(), **kw),
        data.ChunkSampler(lazy, identity_stats(), decode_threads=1, **kw),
        data.ChunkSampler(lazy, identity_stats(), decode_threads=4, **kw),
        data.ChunkSampler(lazy, identity_stats(), process_index=1, process_count=2, **kw),
    ]
    for step in (0, 1, 50):
        want = samplers[0].batch(step)
        for s in samplers[1:3]:
            jax.tree.map(np.testing.assert_array_equal, want, s.batch(step))
        half = samplers[3].batch(step)  # rows 3..5 of the global batch
        jax.tree.map(lambda w, h: np.testing.assert_array_equal(w[3:], h), want, half)
    jax.tree.map(
        np.testing.assert_array_equal, samplers[0].fixed_batches(3), samplers[1].fixed_batches(3)
    )


def test_auto_decodes_into_memory_only_within_the_budget(dataset, capsys):
    dataset_dir, _ = dataset
    # 3 episodes, 10 steps in the first, 2 cameras of 24x32x3: ~138 KB decoded.
    episodes = load(dataset_dir, decode="auto", memory_budget_gb=8)
    assert isinstance(episodes[0].images["top"], np.ndarray)
    assert "decoded into memory (config.data.decode='auto': ~0.00 GB decoded <=" in (
        capsys.readouterr().out
    )
    episodes = load(dataset_dir, decode="auto", memory_budget_gb=1e-4)  # ~107 KB
    assert all(isinstance(f, data.PngFrames) for e in episodes for f in e.images.values())
    assert (
        "held as PNG, decoded per batch (config.data.decode='auto': ~0.00 GB decoded > "
        "config.data.memory_budget_gb=0.0001)" in capsys.readouterr().out
    )


def test_bad_decode_settings_are_named(dataset, tmp_path):
    from configs import tiny

    config = tiny.get_config()
    assert data.decode_options(config.data) == dict(decode="auto", memory_budget_gb=8.0)
    config.data.decode = "disk"
    with pytest.raises(
        ValueError,
        match=r"config.data.decode='disk': must be one of 'memory', "
        r"'lazy', 'auto'",
    ):
        data.decode_options(config.data)
    with pytest.raises(ValueError, match=r"config.data.decode='lazily'"):
        load(dataset[0], decode="lazily")
    config.data.decode, config.data.memory_budget_gb = "auto", -1
    with pytest.raises(ValueError, match=r"config.data.memory_budget_gb=-1.0: must be a number"):
        data.decode_options(config.data)
    # The trainer checks it before touching any data (there is none here).
    from act_jax import train

    config.data.memory_budget_gb, config.data.decode = 8.0, "mmap"
    config.data.dataset_dir = str(tmp_path / "no_dataset")
    with pytest.raises(ValueError, match=r"config.data.decode='mmap'"):
        train.train_and_evaluate(config, tmp_path / "run")


def test_a_corrupt_frame_is_named_when_decoded():
    frames = data.PngFrames([b"\x89PNG\r\n\x1a\n broken"], (2, 2, 3), "somewhere, camera 'top'")
    with pytest.raises(ValueError, match=r"somewhere, camera 'top', step 0: corrupt PNG frame"):
        frames[0]


def write_rendered_like_episodes(episodes_dir, num_episodes, steps, image_size):
    """Episodes whose frames compress like rendered ones (smooth shading, a moving square), which
    the noisy frames of `helpers_data` do not."""
    from hardware.recording.episodes import EpisodeMeta, encode_png, write_episode

    h, w = image_size
    yy, xx = np.mgrid[:h, :w]
    for i in range(num_episodes):
        state = np.linspace(0, 1 + i, steps * 6, dtype=np.float32).reshape(steps, 6)
        png = {}
        for j, cam in enumerate(("top", "lateral")):
            base = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 40 * i + j)], -1)
            png[cam] = []
            for t in range(steps):
                img = base.astype(np.uint8)
                img[2 * t : 2 * t + 10, 3 * t : 3 * t + 10] = 255
                png[cam].append(encode_png(img))
        write_episode(
            episodes_dir,
            state=state,
            action=state,
            timestamp=np.arange(steps) / 30,
            png=png,
            meta=EpisodeMeta(episode_index=i, robot_type="synthetic", cameras=("top", "lateral")),
        )


def test_lazy_holds_a_fraction_of_the_memory(tmp_path):
    import tracemalloc

    from act_jax_datasets.episodes import build

    write_rendered_like_episodes(tmp_path / "episodes", 3, 20, (96, 128))
    dataset_dir = build(tmp_path / "episodes", tmp_path / "tfds", "rendered")
    load(dataset_dir, image_size=(96, 128), decode="lazy")  # first-time imports, not counted
    peaks, held = {}, {}
    for mode in ("memory", "lazy"):
        tracemalloc.start()
        episodes = load(dataset_dir, image_size=(96, 128), decode=mode)
        sampler = data.ChunkSampler(episodes, identity_stats(), chunk_size=4, batch_size=8, seed=0)
        sampler.batch(0)
        peaks[mode] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        held[mode] = data.held_image_bytes(episodes)
    assert held["memory"] == 3 * 20 * 2 * 96 * 128 * 3  # 4.4 MB
    assert held["lazy"] < held["memory"] / 20
    # Peak traced allocation (numpy's included) while loading and drawing a batch: measured
    # 0.76 MB lazy (a record being parsed, the batch) against 5.1 MB.
    assert peaks["lazy"] < peaks["memory"] / 4, peaks
