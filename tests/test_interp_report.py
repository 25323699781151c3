"""interp.report end to end on a tiny sim-trained checkpoint, opened in headless Chromium."""

import dataclasses
import json

import cv2
import numpy as np
import pytest
from helpers_browser import open_page
from helpers_data import tiny_sim_run
from test_interp_page import ARTIFACTS, needs_browser

from interp import absorption, report
from interp import report_sections as sections
from interp.shards import ShardWriter
from interp.tokens import TokenIndex

SMALL = dict(frame_stride=4, attention_frames=8, sim_starts=2, max_steps=15, batch_size=8)


pytestmark = pytest.mark.usefixtures("fast_jax")  # conftest: cheaper compiles


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny policy trained 2 steps on 4 uniform sim demos at 32x32."""
    return tiny_sim_run(tmp_path_factory.mktemp("report"), episodes=4, distribution="uniform")


@pytest.fixture(scope="module")
def built(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report_out") / "r"
    result = report.build_report(run, out, progress=False, command="test", **SMALL)
    return out, result


def test_report_holds_every_claim_with_its_controls_and_verdicts(built):
    out, result = built
    saved = json.loads((out / "report.json").read_text())
    assert saved["numbers"] == json.loads(json.dumps(result["numbers"]))
    n = saved["numbers"]
    assert n["frames"] > 0 and n["tokens"]["n_tokens"] == 2 + 2 * 1 * 1
    for claim, targets in (
        ("claim_1", {"cube_xy", "arm_state", "gt_chunk", "phase"}),
        ("claim_2", {"cube_xy", "arm_state", "phase"}),
    ):
        assert set(n["verdicts"][claim]["targets"]) == targets
        for feature in n["claims"][claim].values():
            for r in feature.values():
                c = r["splits"]["episode"]["controls"]
                assert c["random_init"] is not None and c["time_only"] is not None
    assert "pred_chunk" not in n["claims"]["claim_2"]["decoder/out"]  # the tautology
    sa = n["state_absorption"]
    assert list(sa["probes"]["sites"]) == ["encoder/input_tokens", "encoder/layer_0/out"]
    conds = sa["frames"]["conditions"]
    assert {
        "state_ablated_at_input",
        "state_key_out_cross_attn",
        "state_key_out_encoder",
        "state_key_out_for_pixel_queries_encoder",
    } <= set(conds)
    assert sum(k.startswith("control_pixel") for k in conds) == 2
    assert conds["state_ablated_at_input"]["mean_abs_change"] > 0
    sim = sa["sim"]["conditions"]
    assert set(sim) == {"clean", *conds} and all(0 <= v["successes"] <= 2 for v in sim.values())
    statuses = {"supported", "partial", "not-supported"}
    assert n["verdicts"]["claim_3"]["status"] in statuses
    assert all(n["verdicts"][c]["status"] in statuses for c in ("claim_1", "claim_2"))
    assert set(result["timing"]) >= {"collect", "probes", "attention"}


@needs_browser
def test_report_opens_in_chromium_with_every_image_and_no_errors(built):
    out, _ = built
    html = (out / "report.html").read_text()
    assert "http://" not in html.replace("http://www.w3.org", "")  # self-contained
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "interp_report.png"
    result = open_page(out / "report.html", screenshot=shot)
    assert result.errors == []
    assert result.title == "How the policy decides"
    assert len(result.images) >= 8 and all(ok for _, ok in result.images)
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[0] > 2000


@pytest.mark.slow  # 30 s: a second whole report; its parts' determinism is tested in theirs
def test_rerunning_gives_the_same_numbers(run, built, tmp_path):
    _, first = built
    again = report.build_report(run, tmp_path / "again", progress=False, command="test", **SMALL)
    assert json.dumps(again["numbers"]) == json.dumps(first["numbers"])


def test_rerun_into_the_same_out_replaces_only_its_own_collections(run, tmp_path):
    out = tmp_path / "r"
    (out / "collections" / "trained").mkdir(parents=True)
    (out / "collections" / "trained" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an interp collection"):
        report.build_report(run, out, progress=False, **SMALL)
    assert (out / "collections" / "trained" / "notes.txt").read_text() == "mine"


def test_cli_names_a_missing_dataset_and_bad_flags(run, tmp_path, capsys):
    with pytest.raises(SystemExit):
        report.main(["--checkpoint", str(run), "--out", str(tmp_path), "--dataset", str(tmp_path)])
    assert "no act_episodes dataset at" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        report.main(["--checkpoint", str(run), "--out", str(tmp_path), "--sim-starts", "0"])
    assert "argument --sim-starts: must be an integer >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        report.main(["--checkpoint", str(run), "--out", str(tmp_path), "--execution", "nope"])
    assert "--execution" in capsys.readouterr().err


def _split(score, random, shuffled, control, time_only):
    c = {
        "random_init": {"score": random},
        "shuffled": {"score": shuffled},
        "control_task": {"score": control},
        "selectivity": score - control,
        "time_only": {"score": time_only},
    }
    return {"score": score, "controls": c}


def test_probe_verdict_rule():
    assert report.probe_verdict(_split(0.97, 0.79, 0.0, 0.6, 0.0))[0] == "supported"
    # Far above chance but not above what time alone explains: not supported.
    assert report.probe_verdict(_split(0.93, 0.87, 0.74, 0.05, 0.92))[0] == "not-supported"
    assert report.probe_verdict(_split(0.93, 0.87, 0.74, 0.05, 0.87))[0] == "partial"
    # Above every null but not selective: partial.
    assert report.probe_verdict(_split(0.9, 0.2, 0.0, 0.85, 0.0))[0] == "partial"
    status, margin = report.probe_verdict(_split(0.6, 0.3, 0.1, 0.2, 0.45))
    assert status == "supported" and margin == pytest.approx(0.15)


def test_paired_sign_test_counts_only_discordant_starts():
    assert absorption.paired_sign_test(0, 0) == 1.0
    assert absorption.paired_sign_test(5, 0) == pytest.approx(2 / 32)
    assert absorption.paired_sign_test(3, 3) == 1.0
    assert absorption.paired_sign_test(10, 1) == pytest.approx(2 * 12 / 2048)


def test_pixel_features_leave_out_the_latent_and_state_tokens(tmp_path):
    tokens = TokenIndex(cameras=("top", "lateral"), grid=(1, 2))
    x = np.zeros((3, tokens.n_tokens, 2), np.float32)
    x[:, tokens.state] = 7.0  # the state token: must not reach a pixel probe
    x[:, tokens.pixels()] = np.arange(8, dtype=np.float32).reshape(4, 2)
    w = ShardWriter(tmp_path / "c", 10)
    w.add({"encoder/out": x}, {"frame": np.arange(3)})
    w.close({"features": {"encoder/out": {"reduce": "raw"}}})
    from interp.shards import Collection

    feats = absorption.pixel_features(Collection(tmp_path / "c"), "encoder/out", tokens)
    np.testing.assert_array_equal(feats, np.tile(np.arange(8, dtype=np.float32), (3, 1)))


def test_a_study_section_goes_through_the_one_registry(tmp_path, monkeypatch, capsys):
    """A new study adds its flag, its check, its numbers and its place on the page by
    registering one Section: nothing else changes."""
    drawn = []

    def draw(page, data):
        page.section("Demo study", anchor="demo")
        drawn.append(data.studies["demo_study"])

    def load(directory):
        return {"dir": str(directory)}, (directory / "demo.json").read_text()

    study = sections.Study("--demo-study", "demo.json", "python -m demo --out DIR", load, "demo")
    registry = {k: v for k, v in sections.SECTIONS.items() if k == "reproduce"}
    monkeypatch.setattr(sections, "SECTIONS", registry)
    sections.register(sections.Section("demo_study", 95, draw, study=study))
    with pytest.raises(ValueError, match="registered already"):
        sections.register(sections.Section("demo_study", 1, draw))
    assert "--demo-study DIR" in report._parser().format_help()

    with pytest.raises(SystemExit) as exit_info:  # checked before any work: no checkpoint read
        report.main(
            ["--checkpoint", "nowhere", "--out", str(tmp_path / "r")]
            + ["--demo-study", str(tmp_path)]
        )
    assert exit_info.value.code == 2 and not (tmp_path / "r").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"python -m interp.report: error: --demo-study: no demo.json in {tmp_path} (run "
        "python -m demo --out DIR first) (--help for usage)"
    ]
    with pytest.raises(TypeError, match="other_study"):
        report.build_report("nowhere", tmp_path / "r", other_study=tmp_path)

    (tmp_path / "demo.json").write_text("payload")
    assert report._studies({"demo_study": tmp_path}) == {"demo_study": tmp_path}
    settings = {"seed": 1}
    data = sections.ReportData(
        {"checkpoint": {"checkpoint": "c", "step": 1}, "settings": settings},
        "cmd",
        None,
        None,
        {},
        {},
        {},
        {},
        studies={"demo_study": load(tmp_path)[1]},
    )
    html = sections.render(data).html()
    assert drawn == ["payload"]
    assert html.index('id="demo"') < html.index('id="reproduce"')  # order 95 < 100
    html = sections.render(dataclasses.replace(data, studies={})).html()
    assert 'id="demo"' not in html and len(drawn) == 1  # no directory given: no section
