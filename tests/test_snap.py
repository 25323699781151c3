"""interp.snap: the step-vs-line rule on known curves, the line geometry, the patches on a tiny
network, and the whole experiment on a tiny untrained policy."""

import json

import numpy as np
import pytest

from interp import snap as S
from interp import snap_fit as F
from interp import snap_lines as L
from interp import snap_patch as P

LAM = np.linspace(0, 1, 9)


def test_a_step_snaps_a_line_and_a_gentle_sigmoid_do_not():
    rng = np.random.default_rng(0)
    noise = 0.01 * rng.standard_normal(len(LAM))
    step = F.compare(LAM, (LAM > 0.55).astype(float) + noise, np.zeros(9))
    assert step["snaps"] and step["better"] == "step" and step["max_jump"] > 0.9
    assert 0.5 <= step["step"]["threshold"] <= 0.625 and step["step"]["width"] < 0.125
    line = F.compare(LAM, LAM + noise, np.zeros(9))
    assert not line["snaps"] and line["better"] == "linear"
    assert abs(line["linear"]["slope"] - 1) < 0.05
    exact = F.compare(LAM, LAM)  # an exact line: both fits at the floor, the line wins
    assert exact["better"] == "linear" and not exact["snaps"]
    gentle = F.compare(LAM, 1 / (1 + np.exp(-(LAM - 0.5) / 0.15)))
    assert gentle["better"] == "step" and gentle["max_jump"] < F.MIN_JUMP and not gentle["snaps"]
    # A step whose activations lie far off the segment (new pixels, say) is not a snap.
    far = F.compare(LAM, (LAM > 0.5).astype(float), np.where((LAM > 0) & (LAM < 1), 0.87, 0))
    assert far["delta_bic"] > F.MIN_DELTA_BIC and not far["snaps"]


def test_the_coefficient_is_0_and_1_at_the_endpoints_and_the_residual_measures_the_offset():
    rng = np.random.default_rng(1)
    h0, h1 = rng.standard_normal((2, 4, 5))
    lam = LAM[:, None, None]
    between = (1 - lam) * h0 + lam * h1
    coef, res = F.line_coefficient(between, h0, h1)
    np.testing.assert_allclose(coef, LAM, atol=1e-12)
    np.testing.assert_allclose(res, 0, atol=1e-12)
    # Three blobs on disjoint supports (a cube seen in new pixels): 1/2, far off the segment.
    blobs = np.eye(3)
    coef, res = F.line_coefficient(blobs[[0, 2, 1]], blobs[0], blobs[1])
    np.testing.assert_allclose(coef, [0, 0.5, 1])
    np.testing.assert_allclose(res[1], np.sqrt(1.5 / 2))
    with pytest.raises(ValueError, match="equal"):
        F.line_coefficient(between, h0, h0)


def test_lines_join_neighbouring_locations_and_share_their_endpoints():
    from hardware.sim.cube import NAMED_LOCATIONS, grid_locations

    named = np.array(NAMED_LOCATIONS)
    edges = L.neighbour_pairs(named)
    assert sorted(edges) == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 3), (2, 4)]
    assert sorted(L.select_pairs(named, "4")) == [(0, 1), (0, 2), (0, 3), (0, 4)]
    every = L.select_pairs(named, "all")
    assert len(every) == 6 and sorted(every[:4]) == [(0, 1), (0, 2), (0, 3), (0, 4)]
    assert L.select_pairs(named, "1-3,0-2") == [(1, 3), (0, 2)]
    with pytest.raises(ValueError, match="0..4"):
        L.select_pairs(named, "0-7")
    grid = np.array(grid_locations(3, 3))
    four = L.select_pairs(grid, "4")
    assert all(np.isclose(np.linalg.norm(grid[i] - grid[j]), 0.04) for i, j in four)
    poses, index = L.line_starts(named, [(0, 1), (0, 2)], LAM, 0.03)
    assert index.shape == (2, 9) and len(poses) == 17  # the centre is one start of both lines
    assert index[0, 0] == index[1, 0]
    np.testing.assert_allclose(poses[index[0, 4], :2], (named[0] + named[1]) / 2)
    groups = L.probe_groups(index, [(0, 1), (0, 2)], len(poses))
    assert groups[index[0, 0]] == 1000 and groups[index[1, -1]] == 1002
    assert set(groups[index[0, 1:-1]]) == {0} and set(groups[index[1, 1:-1]]) == {1}


def test_the_mlp_rule_wants_the_first_snap_at_the_mlps_output():
    assert S.mlp_rule("decoder/layer_0/mlp_out")["snap_at_mlp_output"]
    assert S.mlp_rule("decoder/layer_0/mlp_hidden")["snap_at_mlp_output"]
    for site in ("encoder/out", "decoder/layer_0/mlp_in", "actions", None):
        assert not S.mlp_rule(site)["snap_at_mlp_output"]


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    import jax
    from helpers_data import fast_compiles

    from act_jax.model import ACT, ACTConfig, init_variables
    from act_jax.normalization import NormStats
    from act_jax.policy import Policy
    from configs import tiny
    from hardware.sim.robot import HOME

    config = tiny.get_config()
    model = ACT(ACTConfig.from_config(config.model))
    home = np.asarray(HOME, np.float32)
    stats = NormStats(home, np.full(6, 20, np.float32), home, np.full(6, 5, np.float32))
    with fast_compiles(tmp_path_factory.mktemp("snap") / "jax_cache"):
        variables = init_variables(model, jax.random.key(0))
        yield Policy(model, variables, config, stats)


def _two_runs(policy, seed=0):
    rng = np.random.default_rng(seed)
    h, w = policy.image_size
    images = {c: rng.integers(0, 255, (2, h, w, 3), np.uint8) for c in policy.cameras}
    sites = ("encoder/out", "decoder/layer_0/mlp_in", "decoder/layer_0/mlp_out", "decoder/out")
    return (
        P.Patcher(policy, sites),
        images,
        np.asarray(policy.norm_stats.state_mean)[None].repeat(2, 0),
    )


def test_patching_a_whole_site_from_run_x_reproduces_run_xs_actions(tiny_policy):
    patcher, images, states = _two_runs(tiny_policy)
    run = patcher.batch({c: v[:1] for c, v in images.items()}, states[:1])
    x = patcher.batch({c: v[1:] for c, v in images.items()}, states[1:])
    a_run, a_x = patcher.actions(run), patcher.actions(x)
    assert np.abs(a_run - a_x).max() > 1e-3  # the two inputs act differently
    for site in ("encoder/out", "decoder/out"):
        got = patcher.patched_actions(run, x, site, "whole", None)
        np.testing.assert_allclose(got, a_x, atol=1e-5)
    # mlp_in feeds the MLP alone (the residual goes around it): patching it whole acts as
    # patching mlp_out whole, and does not reproduce run x.
    via_in = patcher.patched_actions(run, x, "decoder/layer_0/mlp_in", "whole", None)
    via_out = patcher.patched_actions(run, x, "decoder/layer_0/mlp_out", "whole", None)
    np.testing.assert_allclose(via_in, via_out, atol=1e-5)
    assert np.abs(via_in - a_x).max() > 1e-4
    # The line patch changes only the component along u; a token patch only its tokens.
    h_run, h_x = patcher.site(run, "encoder/out"), patcher.site(x, "encoder/out")
    u = P.direction(h_run[0], h_x[0])
    line = P.patched_value("line", h_run, h_x, u, tiny_policy.config.model)
    np.testing.assert_allclose(line, h_x, atol=1e-5)  # u is the whole difference here
    other = P.direction(np.zeros_like(h_run[0]), np.ones_like(h_run[0]))
    part = P.patched_value("line", h_run, h_x, other, tiny_policy.config.model)
    moved = (part - h_run).ravel()
    np.testing.assert_allclose(moved, moved.mean(), atol=1e-5)  # along the all-ones direction
    tok = P.patched_value("tokens:state", h_run, h_x, None, tiny_policy.config.model)
    np.testing.assert_array_equal(tok[:, 1], h_x[:, 1])
    np.testing.assert_array_equal(np.delete(tok, 1, axis=1), np.delete(h_run, 1, axis=1))
    num, den = P.projection(a_x, a_run, a_x)
    assert num == pytest.approx(den) and den > 0


def test_the_experiment_runs_end_to_end_on_a_tiny_policy(tiny_policy, tmp_path):
    from hardware.sim.cube import NAMED_LOCATIONS
    from interp import report_sections as sections
    from interp.page import Page

    xy = np.array(NAMED_LOCATIONS[:2])  # one line, and the expert's grasp at two places only
    result = S.run(
        tiny_policy,
        xy,
        [(0, 1)],
        lambdas=(0.0, 0.5, 1.0),
        ticks=(0, 2),  # the reset's observation and one two ticks into the expert's approach
        max_steps=3,
        grasp_steps=3,
        progress=False,
    )
    assert result["sites"][0] == "backbone/top" and result["sites"][-1] == "actions"
    assert result["ticks"] == [0, 2]
    for name in result["sites"]:
        line = result["curves"][name]["per_line"][0]
        assert line["coefficient"][0] == 0 and line["coefficient"][-1] == pytest.approx(1)
    assert result["calibration"]["valid"]  # the expert is graded, the nearest oracle a step
    whole = result["patching"]["patches"]["encoder/out [whole]"]
    assert whole["chunk"]["pooled"] == pytest.approx(1, abs=1e-4)
    assert len(whole["grasp"]["values"]) == 2  # both endpoints, one line
    assert set(result["probes"]) == set(result["sites"])
    doc = {**result, "command": "python -m interp.snap ...", "wall_time_s": 1.0}
    png = S.plot(doc)
    assert png.startswith(b"\x89PNG")
    # What the command writes; the interp report carries its section (--snap DIR).
    S._write(tmp_path, doc, "runs/tiny", 0)
    assert json.loads((tmp_path / "snap.json").read_text())["snap_site"] == doc["snap_site"]
    assert "Where it snaps" in (tmp_path / "snap.html").read_text()
    study = sections.studies()["snap"]
    assert study.flag == "--snap" and study.problem(tmp_path) is None
    assert "interp.snap" in study.problem(tmp_path / "elsewhere")
    numbers, payload = study.load(tmp_path)
    assert numbers["mlp_rule"] == doc["mlp_rule"]
    report = sections.ReportData({}, "", None, None, {}, {}, {}, {}, studies={"snap": payload})
    page = Page("t")
    sections.SECTIONS["snap"].draw(page, report)
    assert "Where it snaps" in page.html() and "encoder/out [whole]" in page.html()


def test_bad_options_are_one_line_errors(capsys, tmp_path):
    for args, word in (
        (["--pairs", "0-"], "--pairs"),
        (["--ticks", "0,99"], "--ticks"),
        (["--checkpoint", str(tmp_path / "none")], "--checkpoint"),
    ):
        argv = ["--checkpoint", str(tmp_path), "--out", str(tmp_path / "o"), *args]
        with pytest.raises(SystemExit) as e:
            S.main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and word in err[0]
    assert not (tmp_path / "o").exists()
