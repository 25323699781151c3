"""Success-rate statistics of the evaluator."""

import pytest

from act_jax.evaluate import Rollout, summarize, wilson_interval


@pytest.mark.parametrize(
    "k,n,lo,hi",
    [
        (45, 50, 0.7864, 0.9565),
        (50, 50, 0.9287, 1.0),
        (0, 10, 0.0, 0.2775),
        (5, 10, 0.2366, 0.7634),
    ],
)
def test_wilson_interval_matches_known_values(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_interval_of_no_trials_is_uninformative():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _r(i, loc, ok, t=None):
    return Rollout(i, i, loc, ok, 100, t, [0.0] * 7, 1.0, 2.0)


def test_summarize_overall_and_per_location():
    s = summarize([_r(0, 0, True, 3.0), _r(1, 0, False), _r(2, 1, True, 5.0), _r(3, 1, True, 4.0)])
    assert (s["successes"], s["episodes"], s["success_rate"]) == (3, 4, 0.75)
    assert s["mean_time_to_success_s"] == pytest.approx(4.0)
    assert s["per_location"]["0"]["successes"] == 1
    assert s["per_location"]["1"]["success_rate"] == 1.0
    assert s["ci95"] == pytest.approx(wilson_interval(3, 4))


def test_summarize_uniform_has_no_per_location_block():
    assert "per_location" not in summarize([_r(0, -1, False)])
