r"""How a checkpoint decides: one self-contained HTML report and its numbers as JSON.

    python -m interp.report --checkpoint runs/sim_default --out runs/sim_default/report

writes `report.html` (figures inlined, tables, the command and seeds behind every number,
treescope renders of the parameter tree and of one captured cache) and `report.json` to `--out`,
and keeps the activation collections it probed under `--out/collections/` (rerun
`python -m interp.claims` on them with other settings). Sections:

1. The checkpoint: step, config, the encoder's token layout (`interp.tokens`).
2. Claims 1 and 2 (`interp.claims`): probes of cube position, arm state, ground-truth chunk and
   phase from each camera's backbone features and from the decoder's action vector, with the
   random-init, shuffled, control-task and time-only controls.
3. Attention (`interp.attention_analysis`) on evenly spaced dataset frames, by task phase.
4. Claim 3, state absorption (`interp.absorption`): state probes across the encoder and the
   causal tests on dataset frames and in the simulator.
5. The sections of other studies given by their flags (`--lookup-study DIR`).
6. The parameter tree and one captured cache; how to reproduce.

The page is drawn by `interp.report_sections`, one registered function per section; a new
study adds its section there without changing `build_report`.

Verdict rule for a probe (fixed before any run; `interp.verdicts.probe_verdict`): the margin is
the score minus the best of its random-init, shuffled and time-only controls. Supported: score
>= 0.5, margin >= 0.1 and selectivity >= 0.1; partial: margin >= 0.05; otherwise not supported.
A claim's target takes its best camera; the claim is supported when every target is, not
supported when none is at least partial. Claim 3 has its own rule (`interp.absorption`).

The numbers are a deterministic function of the checkpoint, the dataset and the flags: the
simulator and the policy are deterministic, and so are the probes' folds and seeds. The JSON
keeps the wall times apart (`timing`), so two runs' `numbers` compare equal.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hardware.arguments import int_in
from interp import absorption, claims, cli
from interp import report_sections as sections
from interp.probes import clean
from interp.shards import MANIFEST, Collection
from interp.verdicts import RULE, claim_verdicts, primary_split, probe_verdict

__all__ = ["RULE", "build_report", "claim_verdicts", "main", "primary_split", "probe_verdict"]


def _check_collection_path(path: Path) -> None:
    """Refuses a path that holds something other than a collection this report wrote."""
    if not path.exists():
        return
    manifest = path / MANIFEST
    is_ours = manifest.exists() and json.loads(manifest.read_text()).get("format", "").startswith(
        "act_jax.interp.collect"
    )
    if not is_ours and any(path.iterdir()):
        raise FileExistsError(
            f"{path} exists and is not an interp collection; choose another --out"
        )


def _clear(path: Path) -> None:
    """Removes a collection this report wrote before (and nothing that is not one)."""
    _check_collection_path(path)
    if path.exists():
        shutil.rmtree(path)


class _Laps:
    """Wall time of each step, kept apart from the numbers."""

    def __init__(self, progress: bool):
        self.timing: dict[str, float] = {}
        self.progress = progress
        self._clock = time.perf_counter()

    def __call__(self, what: str) -> None:
        now = time.perf_counter()
        self.timing[what] = round(now - self._clock, 2)
        self._clock = now
        if self.progress:
            print(f"report: {what} done in {self.timing[what]:.0f} s", flush=True)


@dataclasses.dataclass(frozen=True)
class _Inputs:
    """The trained network, its random-init twin, the dataset and every setting."""

    net: Any
    rnd: Any
    dataset: Path
    tokens: Any
    settings: dict


def _studies(given: Mapping[str, Any]) -> dict[str, Path]:
    """{key: directory} of the studies asked for, each checked (`report_sections.Study`)."""
    known = sections.studies()
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise TypeError(f"build_report() got unexpected keyword argument(s) {unknown}")
    out = {}
    for key, directory in given.items():
        if directory is None:
            continue
        problem = known[key].problem(directory)
        if problem:
            raise FileNotFoundError(problem)
        out[key] = Path(directory)
    return out


def _inputs(checkpoint, dataset, random_init_seed, settings: dict) -> _Inputs:
    """Loads both networks and finds the dataset; fills the config's defaults into settings."""
    from act_jax.data import dataset_dir_for
    from interp.collect import load_network
    from interp.tokens import TokenIndex

    net = load_network(checkpoint)
    config = net.config
    rinit = int(config.train.seed) if random_init_seed is None else int(random_init_seed)
    rnd = load_network(checkpoint, random_init_seed=rinit)
    dataset = Path(dataset) if dataset else dataset_dir_for(config.data)
    if not (dataset / "dataset_info.json").exists():
        raise FileNotFoundError(f"no act_episodes dataset at {dataset} (dataset_info.json missing)")
    sim_starts, sim_seed = settings["sim_starts"], settings["sim_seed"]
    full = {
        "dataset": str(dataset.absolute()),
        "frame_stride": settings["frame_stride"],
        "attention_frames": settings["attention_frames"],
        "sim_starts": sim_starts,
        "sim_seeds": [sim_seed, sim_seed + sim_starts - 1],
        "max_steps": settings["max_steps"] or int(config.eval.get("max_steps", 400)),
        "execution": settings["execution"] or config.eval.get("execution", "ensemble:0.01"),
        "probe_seed": settings["seed"],
        "random_init_seed": rinit,
        "folds": 5,
        "inner_folds": 3,
    }
    return _Inputs(net, rnd, dataset, TokenIndex.for_config(config.model), full)


def _collect_both(inputs: _Inputs, out: Path, batch_size: int, progress: bool) -> dict:
    """Activations of the trained and the random-init network on the same frames."""
    from interp.collect import collect

    mc = inputs.net.config.model
    streams = absorption.stream_names(mc)
    claim_names = [f"backbone/{c}" for c in mc.cameras] + ["decoder/out"]
    pooled = claim_names + (streams if absorption.pooled_streams(mc) else [])
    paths = {tag: out / "collections" / tag for tag in ("trained", "random_init")}
    for path in paths.values():  # both refused before either is written
        _check_collection_path(path)
    colls = {}
    for tag, network in (("trained", inputs.net), ("random_init", inputs.rnd)):
        _clear(paths[tag])
        collect(
            network,
            inputs.dataset,
            claim_names + streams,
            paths[tag],
            pooled=pooled,
            frame_stride=inputs.settings["frame_stride"],
            batch_size=batch_size,
            progress=progress,
            command=f"interp.report ({tag})",
        )
        colls[tag] = Collection(paths[tag])
    return colls


def _probes(inputs: _Inputs, colls: dict, progress: bool) -> tuple[dict, dict]:
    """(claims 1 and 2, state probes across the encoder)."""
    probe_kw = dict(n_folds=5, inner_folds=3, seed=inputs.settings["probe_seed"])
    claim_result = claims.run_claims(
        colls["trained"].out_dir, colls["random_init"].out_dir, progress=progress, **probe_kw
    )
    streams = absorption.stream_names(inputs.net.config.model)
    layer_probes = absorption.probe_layers(
        colls["trained"], colls["random_init"], inputs.tokens, streams, **probe_kw
    )
    return claim_result, layer_probes


def _interventions(inputs: _Inputs, frames: dict, laps: _Laps, progress: bool):
    """(action changes on the frames, success in the simulator) under each state intervention."""
    from act_jax.policy import Policy
    from interp.hooks import run_with_cache

    net, s = inputs.net, inputs.settings
    model, variables = net.model, net.variables
    view = {"images": frames["images"], "state": frames["state"]}
    ref = absorption.in_batches(
        lambda sub: run_with_cache(model, variables, sub, ["encoder/input_tokens"])[1][
            "encoder/input_tokens"
        ],
        view,
        16,
    )
    conditions = absorption.interventions(net.config.model, inputs.tokens, ref, s["probe_seed"])
    changes = absorption.action_changes(model, variables, frames, conditions)
    laps("interventions on frames")
    policy = Policy(model, variables, net.config, net.norm_stats, step=net.origin.get("step") or -1)
    sim = absorption.sim_success(
        policy,
        conditions,
        starts=s["sim_starts"],
        seed=s["sim_seeds"][0],
        max_steps=s["max_steps"],
        execution=s["execution"],
        progress=progress,
    )
    laps("interventions in simulation")
    return changes, sim


def _numbers(inputs, colls, claim_result, layer_probes, changes, sim, attention) -> dict:
    """What report.json holds under "numbers" (the studies' numbers are added after)."""
    status3, sentence3 = absorption.verdict(layer_probes, changes)
    verdicts = {k: claim_verdicts(claim_result[k]) for k in ("claim_1", "claim_2")}
    verdicts["claim_3"] = {"status": status3, "sentence": sentence3}
    tokens = inputs.tokens
    return {
        "checkpoint": inputs.net.origin,
        "settings": inputs.settings,
        "tokens": {
            "n_tokens": tokens.n_tokens,
            "cameras": list(tokens.cameras),
            "grid": list(tokens.grid),
        },
        "frames": colls["trained"].manifest["frames"],
        "claims": {k: claim_result[k] for k in ("claim_1", "claim_2")},
        "state_absorption": {"probes": layer_probes, "frames": changes, "sim": sim},
        "attention": attention,
        "verdicts": verdicts,
    }


def build_report(
    checkpoint: str | Path,
    out: str | Path,
    *,
    dataset: str | Path | None = None,
    frame_stride: int = 3,
    attention_frames: int = 96,
    sim_starts: int = 20,
    sim_seed: int = 5000,
    max_steps: int | None = None,
    execution: str | None = None,
    seed: int = 0,
    random_init_seed: int | None = None,
    batch_size: int = 32,
    progress: bool = True,
    command: str = "",
    **studies: str | Path | None,
) -> dict:
    """Builds the report (module docstring); returns what `report.json` holds.

    `studies`: the output directory of another study per registered study section
    (`interp.report_sections`), e.g. `lookup_study=DIR` (written by `interp.lookup_study`:
    lookup.json, lookup.png), whose section the page then carries."""
    from interp.attention_analysis import analyse_attention, frames_from_dataset, headline

    out = Path(out)
    study_dirs = _studies(studies)
    laps = _Laps(progress)
    settings = dict(
        frame_stride=frame_stride,
        attention_frames=attention_frames,
        sim_starts=sim_starts,
        sim_seed=sim_seed,
        max_steps=max_steps,
        execution=execution,
        seed=seed,
    )
    inputs = _inputs(checkpoint, dataset, random_init_seed, settings)
    colls = _collect_both(inputs, out, batch_size, progress)
    laps("collect")
    claim_result, layer_probes = _probes(inputs, colls, progress)
    laps("probes")
    net = inputs.net
    frames, meta = frames_from_dataset(inputs.dataset, net.config, net.norm_stats, attention_frames)
    view = {"images": frames["images"], "state": frames["state"]}
    attention, pngs = analyse_attention(
        net.model, net.variables, view, inputs.tokens, meta["phase"]
    )
    laps("attention")
    changes, sim = _interventions(inputs, frames, laps, progress)
    numbers = _numbers(inputs, colls, claim_result, layer_probes, changes, sim, attention)
    payloads = {}
    for key, directory in study_dirs.items():
        numbers[key], payloads[key] = sections.studies()[key].load(directory)
    data = sections.ReportData(
        numbers, command, net.config, net.model, net.variables, frames, meta, pngs, payloads
    )
    page = sections.render(data)
    laps("page")
    result = {"command": command, "numbers": numbers, "timing": laps.timing}
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(clean(result), indent=1, allow_nan=False))
    page.write(out / "report.html")
    if progress:
        print(headline(attention))
    return result


def _parser():
    from act_jax.evaluate import execution_arg

    p = cli.parser("interp.report", __doc__)
    p.add_argument("--checkpoint", required=True, help="training workdir (or its checkpoints/)")
    p.add_argument("--out", required=True, help="directory for report.html, report.json")
    p.add_argument("--dataset", help="act_episodes dataset dir (default: the checkpoint's own)")
    count = int_in(1)
    p.add_argument(
        "--frame-stride", type=count, default=3, help="probe every s-th frame (default 3)"
    )
    p.add_argument(
        "--attention-frames", type=count, default=96, help="frames for attention and interventions"
    )
    p.add_argument(
        "--sim-starts", type=count, default=20, help="independent uniform starts per condition"
    )
    p.add_argument("--sim-seed", type=int_in(0), default=5000, help="first start's seed")
    p.add_argument(
        "--max-steps", type=count, default=None, help="ticks per rollout (default: config)"
    )
    p.add_argument(
        "--execution",
        type=execution_arg,
        default=None,
        help="chunk execution (default: config's eval)",
    )
    p.add_argument(
        "--seed", type=int_in(0), default=0, help="probe shuffles, control task, control pixel"
    )
    p.add_argument(
        "--random-init-seed",
        type=int_in(0),
        default=None,
        help="weights of the random-init control (default: the training seed, i.e. "
        "the network before training)",
    )
    p.add_argument("--batch-size", type=count, default=32, help="frames per forward pass")
    for key, study in sections.studies().items():
        p.add_argument(study.flag, dest=key, metavar="DIR", default=None, help=study.help)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    studies = {key: getattr(args, key) for key in sections.studies()}
    for key, directory in studies.items():
        problem = directory and sections.studies()[key].problem(directory)
        if problem:
            p.error(problem)
    command = "python -m interp.report " + " ".join(sys.argv[1:] if argv is None else argv)
    with cli.expected_errors(p, args):
        result = build_report(
            args.checkpoint,
            args.out,
            dataset=args.dataset,
            frame_stride=args.frame_stride,
            attention_frames=args.attention_frames,
            sim_starts=args.sim_starts,
            sim_seed=args.sim_seed,
            max_steps=args.max_steps,
            execution=args.execution,
            seed=args.seed,
            random_init_seed=args.random_init_seed,
            batch_size=args.batch_size,
            command=command,
            **studies,
        )
    v = result["numbers"]["verdicts"]
    for k in ("claim_1", "claim_2"):
        for tv in v[k]["targets"].values():
            print(f"{k} [{tv['status']}] {tv['sentence']}")
    print(f"claim_3 [{v['claim_3']['status']}] {v['claim_3']['sentence']}")
    print(
        f"wrote {Path(args.out) / 'report.html'} and report.json in "
        f"{sum(result['timing'].values()):.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
