"""The verdict rule of a probe and of claims 1 and 2, fixed before any run.

A probe split's margin is its score minus the best of its random-init, shuffled and time-only
controls. Supported: score >= 0.5, margin >= 0.1 and selectivity >= 0.1; partial: margin >= 0.05;
otherwise not supported. A claim's target takes its best feature (camera); the claim is supported
when every target is, not supported when none is at least partial. `interp.report` shows these
verdicts; claim 3 has its own rule (`interp.absorption.verdict`).
"""

from __future__ import annotations

from interp import claims

RULE = {"min_score": 0.5, "min_margin": 0.1, "min_selectivity": 0.1, "partial_margin": 0.05}

_RANK = {"not-supported": 0, "partial": 1, "supported": 2}


def probe_verdict(split: dict) -> tuple[str, float | None]:
    """(status, margin) of one probe split by the rule of the module docstring."""
    c = split["controls"]
    nulls = [c["shuffled"]["score"], c["time_only"]["score"]]
    if c["random_init"] is not None:
        nulls.append(c["random_init"]["score"])
    nulls = [v for v in nulls if v is not None]
    score, sel = split["score"], c["selectivity"]
    if score is None or not nulls:
        return "not-supported", None
    margin = score - max(nulls)
    if (
        score >= RULE["min_score"]
        and margin >= RULE["min_margin"]
        and (sel or 0) >= RULE["min_selectivity"]
    ):
        return "supported", margin
    return ("partial" if margin >= RULE["partial_margin"] else "not-supported"), margin


def primary_split(result: dict) -> str:
    """The split a verdict reads: leave-one-location-out where it ran, else episodes."""
    return "location" if "location" in result["splits"] else "episode"


def claim_verdicts(claim: dict) -> dict:
    """{target: {"status", "feature", "sentence"}} (best feature per target) and the claim's."""
    per_target: dict = {}
    for feature, targets in claim.items():
        for target, r in targets.items():
            split = primary_split(r)
            status, margin = probe_verdict(r["splits"][split])
            sentence = claims.summarise(r)[list(r["splits"]).index(split)]
            if margin is not None:
                sentence += f"; {margin:+.2f} over the best of random-init, shuffled, time-only"
            best = per_target.get(target)
            if best is None or (_RANK[status], margin or -1) > (
                _RANK[best["status"]],
                best["margin"] or -1,
            ):
                per_target[target] = {
                    "status": status,
                    "margin": margin,
                    "feature": feature,
                    "sentence": sentence,
                }
    ranks = [_RANK[v["status"]] for v in per_target.values()]
    overall = (
        "supported" if min(ranks) == 2 else ("not-supported" if max(ranks) == 0 else "partial")
    )
    return {"targets": per_target, "status": overall}
