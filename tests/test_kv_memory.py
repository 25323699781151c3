"""interp.kv_memory: unit statistics on known cases, and the whole analysis on a tiny policy."""

import json

import numpy as np
import pytest

from interp import kv_memory as K

pytestmark = pytest.mark.usefixtures("fast_jax")  # conftest: cheaper compiles


def test_a_unit_that_fires_on_one_place_is_pure_and_one_that_fires_everywhere_is_not():
    place = np.repeat(np.arange(4), 25)  # 100 frames, 4 places
    episode = np.repeat(np.arange(20), 5)
    hidden = np.zeros((100, 3), np.float32)
    hidden[place == 2, 0] = 1.0 + np.arange(25)  # unit 0: place 2 only
    hidden[:, 1] = np.arange(100) % 7  # unit 1: all over
    keys = K.unit_keys(hidden, place, episode, top_k=20)
    assert keys["purity"][0] == 1.0 and keys["purity"][1] < 0.5
    assert list(keys["alive"]) == [True, True, False]  # unit 2 never fires
    assert keys["episode_entropy"][0] < keys["episode_entropy"][1]
    assert 0.25 <= K.chance_purity(place, 20) < 0.5
    # Uniform demos have no location ids: places are a 3 x 3 grid of the cube's start.
    xy = np.stack(np.meshgrid(np.linspace(0, 1, 6), np.linspace(0, 1, 6)), -1).reshape(-1, 2)
    assert len(np.unique(K.places(np.full(len(xy), -1), xy))) == 9


def test_the_analysis_reads_every_unit_and_its_value_vectors_match_the_ablation(
    named_sim_run, tmp_path
):
    out = tmp_path / "kv"
    assert (
        K.main(
            [
                "--checkpoint",
                str(named_sim_run),
                "--out",
                str(out),
                "--top-k",
                "10",
                "--check-units",
                "4",
            ]
        )
        == 0
    )
    r = json.loads((out / "kv_memory.json").read_text())
    assert r["units"] == 64 and len(r["trained"]["purity"]) == 64  # tiny: dim_feedforward 64
    assert 0 < r["chance_purity"] <= 1 and r["places"] >= 2
    assert r["random_init"]["alive_units"] > 0
    cos = [v["cosine"] for v in r["value_check"] if v["cosine"] is not None]
    # One unit removed is a small change: the linearised value vector predicts it.
    assert len(cos) >= 2 and np.median(cos) > 0.9
    assert (out / "kv_memory.png").read_bytes().startswith(b"\x89PNG")
