"""interp.lookup_verdict: the study's combined rule, and the verdict of the kept runs."""

import json
from pathlib import Path

import pytest

from interp import lookup_verdict as V
from interp import report_sections
from interp.page import Page

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "reference_results" / "interp"


def cov(verdict):
    return {"verdict": verdict}


def snap(at_output):
    return {"dir": "s", "snap_at_mlp_output": at_output, "reason": "r"}


def ft(verdict):
    return {"dir": "f", "verdict": verdict, "why": "w"}


def test_the_mlp_is_called_the_lookup_table_only_when_every_run_says_so():
    yes = V.decide([cov("lookup")], [snap(True), snap(True)], [ft("favours the MLP")] * 2)
    assert yes == {"behaviour": "lookup", "mlp": "the lookup table", "reasons": []}
    for snaps, fts in [
        ([snap(True), snap(False)], [ft("favours the MLP")]),
        ([snap(True)], [ft("favours the MLP"), ft("undecided")]),
        ([snap(True)], [ft("against the MLP")]),
        ([], [ft("favours the MLP")]),  # a half of the rule with no run says nothing
        ([snap(True)], []),
    ]:
        v = V.decide([cov("lookup")], snaps, fts)
        assert v["mlp"] == "not the lookup table" and len(v["reasons"]) == 1, (snaps, fts)


def test_behaviour_over_bases_ignores_undecided_ones_and_says_mixed_when_they_disagree():
    undecided = "undecided (too few starts beyond the tolerance)"
    assert V.decide([cov("partial"), cov(undecided)], [], [])["behaviour"] == "partial"
    assert V.decide([cov("partial"), cov("lookup")], [], [])["behaviour"] == "mixed"
    assert V.decide([cov(undecided)], [], [])["behaviour"] == "undecided"


def test_the_kept_runs_give_partial_and_not_the_lookup_table(tmp_path, capsys):
    out = tmp_path / "v"
    lookups = ["lookup_named", "lookup_named_rerun", "lookup_grid_3x3", "lookup_grid_5x5"]
    argv = ["--out", str(out), "--lookup", *(str(RESULTS / d) for d in lookups)]
    argv += ["--snap", str(RESULTS / "snap_named"), str(RESULTS / "snap_grid_3x3")]
    argv += ["--kv-memory", str(RESULTS / "kv_memory_named"), "--finetune"]
    argv += [str(RESULTS / "finetune_compare_replay"), str(RESULTS / "finetune_compare_new_only")]
    assert V.main(argv) == 0
    doc = json.loads((out / "verdict.json").read_text())
    assert [r["k"] for r in doc["coverage"]] == [5, 5, 9, 25]  # sorted by K
    assert [r["successes"]["act"] for r in doc["coverage"]] == [15, 13, 24, 27]
    assert doc["verdict"]["behaviour"] == "partial"
    assert doc["verdict"]["mlp"] == "not the lookup table"
    assert len(doc["verdict"]["reasons"]) == 4  # two snap runs, two comparisons
    assert (
        doc["kv_memory"]["trained_share_pure_units"]
        > doc["kv_memory"]["random_init_share_pure_units"]
    )
    assert "not the lookup table" in capsys.readouterr().out
    html = (out / "verdict.html").read_text()
    assert "new places only" in html and "new and replayed old places" in html
    # The report's section is the same drawing, from the same directory.
    study = report_sections.studies()["lookup_verdict"]
    assert study.flag == "--lookup-verdict" and study.problem(out) is None
    numbers, payload = study.load(out)
    assert numbers["verdict"] == doc["verdict"]
    page = Page("t")
    V.add_section(page, *payload)
    assert page.n_figures == 1 and "the verdict" in page.html()


def test_a_directory_without_the_study_file_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        V.main(["--out", str(tmp_path / "v"), "--lookup", str(tmp_path)])
    assert e.value.code == 2
    assert f"{tmp_path}: no lookup.json" in capsys.readouterr().err
    assert "no verdict.json" in report_sections.studies()["lookup_verdict"].problem(tmp_path)
