"""Success rate of the scripted expert over random cube starts (no rendering: physics only).

    .venv/bin/python bench/expert_success.py --episodes 100   # bench/results/expert_success.json

The same numbers come from `python -m hardware.sim.expert --episodes 100 [--locations ...]`;
this script runs all three start distributions and keeps the failures' start poses.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hardware.sim.expert import evaluate


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--episodes", type=int, default=100, help="per distribution")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/results/expert_success.json")
    args = p.parse_args(argv)
    results = {}
    for dist in ("uniform", "named", "held_out"):
        s = evaluate(args.episodes, args.seed, dist, progress=False)
        results[dist] = s
        print(
            f"{dist:>9}: {s['successes']}/{s['episodes']} = {100 * s['success_rate']:.1f}% "
            f"(mean {s['mean_episode_steps']:.0f} steps, {s['wall_s']:.1f} s)"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
