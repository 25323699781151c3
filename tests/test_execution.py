"""Chunk execution strategies on known inputs."""

import numpy as np
import pytest

from act_jax.execution import OpenLoop, RecedingHorizon, TemporalEnsemble, make_executor


class CountingPolicy:
    """Chunk predicted at query q: row i is [100 * q + i], so actions say where they came from."""

    def __init__(self, chunk_size):
        self.chunk_size = chunk_size
        self.queries = 0

    def __call__(self):
        chunk = 100.0 * self.queries + np.arange(self.chunk_size, dtype=np.float64)[:, None]
        self.queries += 1
        return chunk


def run(executor, policy, ticks):
    executor.reset()
    return np.array([executor.step(policy)[0] for _ in range(ticks)])


def test_open_loop_executes_whole_chunks():
    policy = CountingPolicy(4)
    got = run(OpenLoop(), policy, 10)
    np.testing.assert_array_equal(got, [0, 1, 2, 3, 100, 101, 102, 103, 200, 201])
    assert policy.queries == 3


def test_receding_horizon_executes_first_n():
    policy = CountingPolicy(5)
    got = run(RecedingHorizon(2), policy, 7)
    np.testing.assert_array_equal(got, [0, 1, 100, 101, 200, 201, 300])
    assert policy.queries == 4


def test_receding_horizon_longer_than_chunk_is_open_loop():
    got = run(RecedingHorizon(10), CountingPolicy(3), 5)
    np.testing.assert_array_equal(got, [0, 1, 2, 100, 101])


def test_temporal_ensemble_weights_oldest_first():
    m = 0.5
    got = run(TemporalEnsemble(m), CountingPolicy(3), 4)

    # Tick t sees predictions for t from chunks queried at t-2, t-1, t (those that exist).
    def expect(t):
        preds = [100.0 * q + (t - q) for q in range(max(0, t - 2), t + 1)]
        w = np.exp(-m * np.arange(len(preds)))
        return (w * preds).sum() / w.sum()

    np.testing.assert_allclose(got, [expect(t) for t in range(4)])
    # The oldest prediction gets the largest weight.
    assert got[2] < np.mean([2.0, 101.0, 200.0])


def test_temporal_ensemble_with_zero_decay_is_plain_mean():
    got = run(TemporalEnsemble(0.0), CountingPolicy(2), 3)
    np.testing.assert_allclose(got, [0.0, (1 + 100) / 2, (101 + 200) / 2])


def test_reset_starts_a_new_episode():
    ex, policy = OpenLoop(), CountingPolicy(4)
    run(ex, policy, 2)
    assert run(ex, policy, 1)[0] == 100  # a fresh query, not the rest of the old chunk


@pytest.mark.parametrize(
    "spec,name",
    [
        ("open_loop", "open_loop"),
        ("receding:10", "receding_horizon(n=10)"),
        ("ensemble", "temporal_ensemble(m=0.01)"),
        ("ensemble:0.1", "temporal_ensemble(m=0.1)"),
    ],
)
def test_make_executor(spec, name):
    assert make_executor(spec).name == name


@pytest.mark.parametrize(
    "spec",
    [
        "receding:0",
        "receding:x",
        "greedy",
        "open_loop:3",
        "ensemble:-1",
        "ensemble:-1000",
        "ensemble:nan",
        "ensemble:inf",
    ],
)
def test_make_executor_rejects_bad_specs(spec):
    with pytest.raises(ValueError, match="spec|receding"):
        make_executor(spec)


def test_bad_chunk_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\(C, A\)"):
        OpenLoop().step(lambda: np.zeros(6))


def test_a_large_ensemble_coefficient_stays_finite():
    ex = make_executor("ensemble:1000")  # every weight but the oldest underflows to 0
    chunks = iter(np.arange(3 * 4 * 2, dtype=float).reshape(3, 4, 2))
    out = [ex.step(lambda: next(chunks)) for _ in range(3)]
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[2], [4.0, 5.0])  # chunk 0's prediction for tick 2
