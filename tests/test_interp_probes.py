"""Probes: planted signals are found, nulls stay null, and no split leaks an episode or location."""

import json
import re

import numpy as np
import pytest

from interp import probes as P


def frames_of(n_episodes=40, steps=25, locations=None, seed=0):
    """Per-frame episode ids, frame indices, lengths (and location ids, episode e at e % L)."""
    episodes = np.repeat(np.arange(n_episodes), steps)
    frames = np.tile(np.arange(steps), n_episodes)
    lengths = np.full(len(episodes), steps)
    loc = None if locations is None else episodes % locations
    return dict(episodes=episodes, frames=frames, lengths=lengths), loc


def planted(n, d=12, k=3, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = x @ rng.normal(size=(d, k)) + noise * rng.normal(size=(n, k))
    return x, y


def test_planted_linear_signal_is_found_and_every_null_is_not():
    meta, _ = frames_of()
    x, y = planted(len(meta["episodes"]))
    result = P.probe(x, y, **meta)
    ep = result["splits"]["episode"]
    assert ep["score"] > 0.95 and min(ep["per_dim"]) > 0.95
    assert ep["fold_mean"] > 0.95 and ep["fold_std"] < 0.05 and len(ep["folds"]) == 5
    c = ep["controls"]
    assert abs(c["shuffled"]["score"]) < 0.05
    assert abs(c["time_only"]["score"]) < 0.05  # the planted signal has no time course
    assert c["control_task"]["score"] < 0.05  # per-episode random targets never recur
    assert c["selectivity"] > 0.9
    assert c["random_init"] is None
    json.dumps(result, allow_nan=False)  # plain JSON, NaN-free


def test_random_init_features_go_through_the_same_probe():
    meta, _ = frames_of(20, 20)
    x, y = planted(len(meta["episodes"]))
    noise = np.random.default_rng(5).normal(size=x.shape)
    c = P.probe(x, y, random_features=noise, **meta)["splits"]["episode"]["controls"]
    assert abs(c["random_init"]["score"]) < 0.1
    assert [f["test_groups"] for f in c["random_init"]["folds"]] == [
        f["test_groups"] for f in c["shuffled"]["folds"]
    ]  # the same folds


def test_inner_cross_validation_never_sees_the_outer_test_fold(monkeypatch):
    meta, _ = frames_of(15, 10)
    n = len(meta["episodes"])
    x, y = planted(n, d=4)
    x = np.column_stack([np.arange(n), x])  # column 0: the row id, to see which rows were used
    seen = []
    original = P.select_alpha

    def spy(x_in, y_in, groups, **kw):
        seen.append(x_in[:, 0].astype(int))
        return original(x_in, y_in, groups, **kw)

    monkeypatch.setattr(P, "select_alpha", spy)
    folds = P.group_folds(meta["episodes"], 5)
    result = P.cross_validate(x, y, meta["episodes"], folds)
    assert len(seen) == len(folds) == len(result["folds"])
    for rows, test in zip(seen, folds, strict=True):
        assert not set(rows) & set(test)
        assert set(rows) | set(test) == set(range(n))


def test_grouped_splits_never_share_an_episode_and_are_deterministic():
    rng = np.random.default_rng(3)
    episodes = np.repeat(rng.permutation(23), rng.integers(5, 40, 23))
    folds = P.group_folds(episodes, 5)
    assert sorted(np.concatenate(folds)) == list(range(len(episodes)))  # a partition
    owners = [set(episodes[f]) for f in folds]
    for i in range(len(folds)):
        for j in range(i + 1, len(folds)):
            assert not owners[i] & owners[j]
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 40  # balanced to within one group
    assert all(np.array_equal(a, b) for a, b in zip(folds, P.group_folds(episodes, 5), strict=True))
    with pytest.raises(ValueError, match="at least 2 groups"):
        P.group_folds(np.zeros(10), 5)


def test_leave_one_location_out_never_shares_a_location():
    meta, loc = frames_of(30, 12, locations=6)
    # Cube x is the location's: constant within a location fold, so per-fold R^2 is undefined
    # there and the out-of-fold R^2 is the score.
    cube_x = np.linspace(-1, 1, 6)[loc]
    x = np.column_stack([cube_x, np.random.default_rng(0).normal(size=(len(loc), 5))])
    result = P.probe(x, cube_x, locations=loc, **meta)
    lolo = result["splits"]["location"]
    assert [f["test_groups"] for f in lolo["folds"]] == [[i] for i in range(6)]
    assert all(f["score"] is None for f in lolo["folds"])
    assert lolo["score"] > 0.95 and lolo["fold_mean"] is None
    for test in P.leave_one_group_out(loc):
        assert len(set(loc[test])) == 1 and set(meta["episodes"][test]).isdisjoint(
            meta["episodes"][np.setdiff1d(np.arange(len(loc)), test)]
        )
    # Fewer than 3 locations (or the continuous region, -1): no location split.
    assert "location" not in P.probe(x, cube_x, locations=np.full(len(loc), -1), **meta)["splits"]


def test_control_task_selectivity():
    meta, loc = frames_of(36, 10, locations=6)
    rng = np.random.default_rng(1)
    cube_x = np.linspace(-1, 1, 6)[loc] + 0.01 * rng.normal(size=len(loc))
    noise = rng.normal(size=(len(loc), 6))
    run = lambda x: P.probe(x, cube_x, control_types=loc, **meta)["splits"]["episode"]
    # Features that encode nothing: task and control both fail, selectivity ~ 0.
    nothing = run(noise)
    assert nothing["score"] < 0.05 and abs(nothing["controls"]["selectivity"]) < 0.05
    # Features that only identify the location (one-hot): any map of locations is decodable, the
    # control task as well as the real one, so selectivity is low (Hewitt and Liang's warning).
    identity = run(np.column_stack([np.eye(6)[loc], noise]))
    assert identity["score"] > 0.95 and identity["controls"]["selectivity"] < 0.1
    # Features that encode cube x linearly: the task is decodable, a random map is not.
    linear = run(np.column_stack([cube_x, noise]))
    assert linear["score"] > 0.95 and linear["controls"]["selectivity"] > 0.5


def test_shuffled_labels_derange_whole_episodes_at_the_same_relative_time():
    episodes = np.repeat([0, 1, 2], [4, 7, 10])
    frames = np.concatenate([np.arange(4), np.arange(7), np.arange(10)])
    y = episodes * 100 + frames
    out = P.shuffled_labels(y, episodes, frames, seed=0)
    for e in range(3):
        got = out[episodes == e]
        src = set(got // 100)
        assert len(src) == 1 and src != {e}  # one other episode, never its own
        assert got[0] % 100 == 0 and got[-1] % 100 == np.sum(episodes == src.pop()) - 1


def test_time_only_baseline_and_phase_accuracy():
    meta, _ = frames_of(30, 20)
    tau = meta["frames"] / 19
    rng = np.random.default_rng(2)
    noise = rng.normal(size=(len(tau), 4))
    r = P.probe(noise, tau**2, **meta)["splits"]["episode"]
    assert r["score"] < 0.05 and r["controls"]["time_only"]["score"] > 0.95
    phase = np.digitize(tau + 0.05 * rng.normal(size=len(tau)), [0.4, 0.8])
    x = np.column_stack([np.eye(3)[phase], noise])
    c = P.probe(x, phase, kind="classification", **meta)["splits"]["episode"]
    assert c["metric"] == "accuracy" and c["score"] > 0.95 and c["chance"] < 0.5
    assert (
        P.probe(noise, phase, kind="classification", **meta)["splits"]["episode"]["score"]
        < c["chance"] + 0.1
    )


def fake_collection(path, seed=0, signal=True, episodes=12, steps=20):
    """A collection written through ShardWriter: backbone/top is a fixed linear map of the cube
    start (x, y) and the arm state (when `signal`), decoder/out is noise."""
    from interp.shards import ShardWriter

    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(8, 16))
    writer = ShardWriter(path, shard_frames=50)
    for e in range(episodes):
        cube = np.array([rng.uniform(0.1, 0.3), rng.uniform(-0.1, 0.1), 0.01, 1, 0, 0, 0])
        state = rng.normal(size=(steps, 6)).cumsum(axis=0)
        code = np.column_stack([np.tile(30 * cube[:2], (steps, 1)), state])  # similar scales
        top = (code @ mixing if signal else 0) + 0.01 * rng.normal(size=(steps, 16))
        writer.add(
            {"backbone/top": top, "decoder/out": rng.normal(size=(steps, 16))},
            {
                "episode": np.full(steps, e),
                "frame": np.arange(steps),
                "episode_length": np.full(steps, steps),
                "location_id": np.full(steps, -1),
                "cube_start_pose": np.tile(cube, (steps, 1)),
                "state": state,
                "phase": np.digitize(np.arange(steps), [steps // 2, 3 * steps // 4]),
                "gt_actions": state[:, None, :].repeat(2, axis=1),
                "pred_actions": state[:, None],
            },
        )
    writer.close({"cameras": ["top"], "network": {"seed": seed}})


def test_claims_probe_the_collected_features_with_the_random_init_control(tmp_path):
    from interp import claims

    fake_collection(tmp_path / "trained")
    fake_collection(tmp_path / "random", seed=1, signal=False)
    out = claims.run_claims(tmp_path / "trained", tmp_path / "random", progress=False)
    json.dumps(out, allow_nan=False)
    top = out["claim_1"]["backbone/top"]
    assert set(top) == {"cube_xy", "arm_state", "gt_chunk", "phase"}
    assert set(out["claim_2"]["decoder/out"]) == {"cube_xy", "arm_state", "phase"}
    cube = top["cube_xy"]
    assert cube["n_frames"] == 12 * 10  # approach frames only
    ep = cube["splits"]["episode"]
    assert ep["score"] > 0.95 and ep["controls"]["random_init"]["score"] < 0.1
    assert cube["control_types"] == "cube_cell_4x4" and "location" not in cube["splits"]
    assert top["arm_state"]["splits"]["episode"]["score"] > 0.95
    assert out["claim_2"]["decoder/out"]["arm_state"]["splits"]["episode"]["score"] < 0.1
    assert any(
        re.match(
            r"claim_1: cube_xy from backbone/top: episode-held-out r2 (0\.9\d|1\.00) "
            r"\(folds .*random-init -?0\.\d\d",
            s,
        )
        for s in out["summary"]
    )


def test_the_tautological_probe_is_refused(tmp_path):
    from interp import claims

    fake_collection(tmp_path / "c", episodes=3, steps=6)
    coll = claims.Collection(tmp_path / "c")
    for source in ("decoder/out", "actions"):
        with pytest.raises(claims.TautologicalProbe, match="linear map.*by construction"):
            claims.run_probe(coll, source, "pred_chunk")
    with pytest.raises(KeyError, match="targets: cube_xy"):
        claims.check_probe("backbone/top", "cube_z")
    fake_collection(tmp_path / "other", episodes=3, steps=7)
    with pytest.raises(ValueError, match="holds other frames"):
        claims.run_claims(tmp_path / "c", tmp_path / "other", progress=False)
