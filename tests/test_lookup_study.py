"""The lookup-or-interpolation instruments: start specs, grasp points, oracles, alpha, the
action lookup table and the verdict rule."""

from pathlib import Path

import numpy as np
import pytest

from act_jax.evaluate import rollout
from hardware.sim import CubeDistribution, SimRobot
from hardware.sim.arm import from_lerobot_units
from hardware.sim.cube import NAMED_LOCATIONS
from hardware.sim.expert import GRASP_COMMAND, ScriptedExpert
from interp import lookup_study as L
from interp import oracles as O

pytestmark = pytest.mark.usefixtures("fast_jax")  # conftest: cheaper compiles


def test_grids_cover_the_named_region_and_jitter_is_reproducible_from_the_seed():
    grid = CubeDistribution.make("grid:3x3")
    assert grid.num_locations == 9 and grid.first_id == 100
    assert set(NAMED_LOCATIONS) <= set(grid.locations)  # the named set: corners and centre
    assert CubeDistribution.make("grid:5x5").num_locations == 25
    dist = CubeDistribution.make("held_out~3mm,3deg")
    draw = lambda seed: dist.sample(np.random.default_rng(seed), 0.03, location=2)  # noqa: E731
    (a, id_a), (b, _), (c, _) = draw(11), draw(11), draw(12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and id_a == 7
    poses = np.stack([draw(s)[0] for s in range(200)])
    centre = np.array(dist.locations[2])
    assert np.abs(poses[:, :2] - centre).max() <= 0.003
    assert np.abs(poses[:, :2] - centre).max() > 0.002  # the jitter is really there
    yaw = np.degrees(2 * np.arctan2(poses[:, 6], poses[:, 3]))
    assert 2 < np.abs(yaw).max() <= 3.0
    # A union keeps every part's ids (old and new places together, for a replaying fine-tune).
    both = CubeDistribution.make("named+grid:3x3")
    assert both.num_locations == 14 and both.location_ids[4:6] == (4, 100)
    assert both.sample(np.random.default_rng(0), 0.03, location=5)[1] == 100
    for bad, word in (
        ("grid:1x3", "grid:RxC"),
        ("named~3cm", "3cm"),
        ("uniform~3mm", "jitter"),
        ("circle", "circle"),
        ("named+uniform", "located"),
        ("named+named", "twice"),
    ):
        with pytest.raises(ValueError, match=word):
            CubeDistribution.make(bad)


def test_an_expert_rollouts_grasp_point_is_within_2_mm_of_its_plan_at_closing():
    with SimRobot(cameras=()) as robot:
        expert = ScriptedExpert(robot)
        for seed in (3, 4):
            robot.reset(seed=seed)
            expert.reset()
            plan = expert.plan.actions
            ep = rollout(robot, expert.get_action, max_steps=400)
            assert ep.success and ep.grasp_point is not None
            t = int(np.argmax(plan[:, 5] < GRASP_COMMAND))  # the tick the command crosses
            planned, _ = robot.kinematics.fk(from_lerobot_units(plan[t])[:5])
            assert np.linalg.norm(ep.grasp_point - planned) < 0.002


def test_interpolation_weights_reproduce_the_point_inside_and_outside_the_hull():
    train = np.array(NAMED_LOCATIONS)
    for point in ([0.20, -0.07], [0.17, 0.0], [0.255, 0.055]):
        idx, w = O.interpolation_weights(train, np.array(point))
        np.testing.assert_allclose(w @ train[idx], point, atol=1e-12)
        assert w.sum() == pytest.approx(1.0)
    _, w = O.interpolation_weights(train, np.array([0.17, 0.0]))
    assert (w >= 0).all()  # inside: a containing triangle
    assert O.alpha([0.1, 0.0, 0], [0.2, 0.0, 0], [0.0, 0.0, 0]) == pytest.approx(0.5)
    assert O.alpha([0.1, 0.0, 0], [0.001, 0.0, 0], [0.0, 0.0, 0]) is None  # c is n


def test_the_oracles_calibrate_alpha_lookup_near_0_and_interpolation_near_1():
    train, _ = O.train_poses_from("named", None)
    with SimRobot(cameras=(), distribution="held_out~3mm,3deg") as robot:
        oracles = O.Oracles(robot, train)
        got = O.run_study(
            {n: oracles.make_policy(n) for n in O.ORACLES},
            robot,
            train,
            starts=4,
            seed=0,
            progress=False,
        )
    assert got["nearest"]["alpha_median"] == pytest.approx(0.0, abs=0.1)
    assert got["interpolate"]["alpha_median"] == pytest.approx(1.0, abs=0.1)
    assert got["expert"]["alpha_median"] == pytest.approx(1.0, abs=0.1)
    # 4 cm from the nearest demo, the nearest demo's plan misses; the interpolated one grasps.
    assert got["nearest"]["successes"] == 0
    assert got["interpolate"]["successes"] == got["expert"]["successes"] == 4
    assert len({tuple(s["cube_xy"]) for s in got["nearest"]["per_start"]}) == 4


def test_the_lookup_table_returns_the_exact_training_chunk_for_a_training_frame(tmp_path):
    from helpers_data import build_dataset

    from act_jax.data import load_episodes
    from act_jax.execution import make_executor
    from act_jax.lookup_table import ActionLookupTable, chunks_of

    dataset = build_dataset(tmp_path, num_episodes=3, steps=10, image_size=(24, 32))
    episodes = load_episodes(dataset, ("top", "lateral"), (24, 32), 6, 6)
    alt = ActionLookupTable.from_episodes(episodes, chunk_size=4, cameras=("top", "lateral"))
    assert len(alt) == sum(len(ep) for ep in episodes)
    for ep in episodes:
        for t in (0, len(ep) // 2, len(ep) - 1):
            obs = {"images": {c: ep.images[c][t] for c in ("top", "lateral")}, "state": ep.state[t]}
            np.testing.assert_array_equal(alt.predict_chunk(obs), chunks_of(ep.action, 4)[t])
            assert alt.last_distance < 1e-3
            assert tuple(alt.frame_ids[alt.last_index]) == (ep.episode_index, t)
    # The last frame's chunk repeats the episode's last action, as the training target does.
    np.testing.assert_array_equal(
        chunks_of(episodes[0].action, 4)[-1], np.repeat(episodes[0].action[-1:], 4, axis=0)
    )
    # A frame it never saw is farther; the controller executes chunks like ACT's.
    obs = {
        "images": {c: np.zeros((24, 32, 3), np.uint8) for c in ("top", "lateral")},
        "state": np.zeros(6, np.float32),
    }
    act = alt.as_controller(make_executor("open_loop"))
    assert act(obs).shape == (6,) and alt.last_distance > 1.0


def _block(rows):
    """A score block from (nearest distance, success, alpha) rows."""
    return {"per_start": [{"nearest_train_m": d, "success": s, "alpha": a} for d, s, a in rows]}


def test_the_verdict_rule():
    far = 0.04
    near_fail = _block([(far, False, 0.0)] * 10)
    interp_ok = _block([(far, True, 1.0)] * 10)
    cases = {
        "lookup": _block([(far, False, 0.1)] * 10),
        "interpolation": _block([(far, True, 0.9)] * 10),
        "partial": _block([(far, True, 0.5)] * 10),
    }
    for want, act in cases.items():
        got = L.verdict({"act": act, "nearest": near_fail, "interpolate": interp_ok})
        assert got["verdict"] == want, got
    # Starts within the tolerance do not count; too few beyond it decide nothing.
    few = _block([(0.01, True, 1.0)] * 20 + [(far, True, 1.0)] * 3)
    got = L.verdict({"act": few, "nearest": few, "interpolate": few})
    assert got["verdict"].startswith("undecided") and got["starts_beyond_tolerance"] == 3
    # An instrument that does not separate the oracles invalidates the study.
    got = L.verdict({"act": cases["lookup"], "nearest": interp_ok, "interpolate": interp_ok})
    assert got["verdict"].startswith("invalid")


def test_evaluate_runs_the_lookup_table_and_it_replays_a_demo_from_a_training_start(named_sim_run):
    # At a named location (no jitter) the first frame is a demo's first frame: the table follows
    # that demo, and the demo succeeded.
    from act_jax.evaluate import evaluate_checkpoint

    s = evaluate_checkpoint(
        named_sim_run,
        episodes=1,
        policy_kind="alt",
        distribution="named",
        max_steps=250,
        videos=0,
        execution="open_loop",
        progress=False,
    )
    assert s["policy"] == "alt" and Path(s["out_dir"]).name.startswith("alt_named")
    assert s["successes"] == 1 and s["rollouts"][0]["grasp_target"] is not None


def test_the_study_writes_its_numbers_page_and_report_section(named_sim_run, tmp_path, capsys):
    import json

    from interp import report
    from interp.page import Page

    out = tmp_path / "study"
    assert (
        L.main(
            [
                "--checkpoint",
                str(named_sim_run),
                "--test",
                "held_out~3mm,3deg",
                "--starts",
                "2",
                "--max-steps",
                "40",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    doc = json.loads((out / "lookup.json").read_text())
    assert set(doc["results"]) == {"act", "alt", "expert", "nearest", "interpolate"}
    assert 3 <= doc["train_poses"] <= 5  # distinct poses, not demos
    seeds = {name: [s["seed"] for s in r["per_start"]] for name, r in doc["results"].items()}
    assert len({tuple(v) for v in seeds.values()}) == 1  # every policy met the same starts
    assert doc["verdict"]["verdict"].startswith("undecided")  # 2 starts decide nothing
    assert "verdict: undecided" in capsys.readouterr().out
    page = Page("t")
    L.add_section(page, doc, (out / "lookup.png").read_bytes())
    assert page.n_figures == 1 and "Lookup table or interpolation" in page.html()
    assert "undecided" in (out / "lookup.html").read_text()
    with pytest.raises(SystemExit):  # the report refuses a directory without a study
        report.main(
            [
                "--checkpoint",
                str(named_sim_run),
                "--out",
                str(tmp_path / "r"),
                "--lookup-study",
                str(tmp_path),
            ]
        )
