"""Emulated teleoperated recording, timed: the README's command, its episodes and tick latencies.

    nice python bench/record_emulated.py --episodes 50 --seed 0 \
        --out bench/reference_results/record_emulated.json

Runs, in a child process and into a temporary folder,

    python -m hardware.record --robot so101 --teleop leader --emulate --episodes N --seed S \
        --out DIR/episodes --image-size 96x128 --build-tfds DIR/tfds --name emulated

(the follower is the MuJoCo scene behind the servo emulator, the leader an emulated arm that a
scripted hand moves along the expert's plan), and keeps: the wall time of the whole command (TFDS
build included), its exit status, each episode's success and length as written in its file, and
each episode's tick p50/p99 as the recorder prints them, with the load average around the run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"episode (\d+): (\d+) ticks .*tick p50 ([\d.]+) ms p99 ([\d.]+) ms; (.*)")


def record_command(episodes: int, seed: int, folder: Path) -> list[str]:
    return [
        *("-m", "hardware.record", "--robot", "so101", "--teleop", "leader", "--emulate"),
        *("--episodes", str(episodes), "--seed", str(seed), "--out", str(folder / "episodes")),
        *("--image-size", "96x128", "--build-tfds", str(folder / "tfds"), "--name", "emulated"),
    ]


def episodes_on_disk(folder: Path) -> list[dict]:
    """Success and length of every episode file the command wrote."""
    sys.path.insert(0, str(ROOT))
    from hardware.recording.episodes import iter_episodes

    return [
        {"episode": e.meta.episode_index, "success": e.meta.success, "ticks": len(e)}
        for e in iter_episodes(folder)
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "record_emulated.json")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = record_command(args.episodes, args.seed, Path(tmp))
        load_before, t0 = os.getloadavg(), time.perf_counter()
        done = subprocess.run(
            [sys.executable, *cmd],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl")),
        )
        wall_s = time.perf_counter() - t0
        on_disk = episodes_on_disk(Path(tmp) / "episodes")
    printed = {
        int(m[1]): {"ticks": int(m[2]), "tick_p50_ms": float(m[3]), "tick_p99_ms": float(m[4])}
        for m in map(LINE.match, done.stdout.splitlines())
        if m
    }
    rows = [r | printed.get(r["episode"], {}) for r in on_disk]
    p50s = [r["tick_p50_ms"] for r in rows if "tick_p50_ms" in r]
    p99s = [r["tick_p99_ms"] for r in rows if "tick_p99_ms" in r]
    doc = {
        "command": "python " + " ".join(cmd).replace(tmp, "DIR"),
        "exit_status": done.returncode,
        "wall_s": wall_s,
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "episodes": len(rows),
        "successes": sum(r["success"] for r in rows),
        "ticks_range": [min(r["ticks"] for r in rows), max(r["ticks"] for r in rows)]
        if rows
        else None,
        "tick_p50_ms_range": [min(p50s), max(p50s)] if p50s else None,
        "tick_p99_ms_range": [min(p99s), max(p99s)] if p99s else None,
        "per_episode": rows,
        "stderr_tail": done.stderr[-2000:],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(
        f"exit {done.returncode}: {doc['successes']}/{doc['episodes']} successful episodes, "
        f"{doc['ticks_range']} ticks, tick p50 {doc['tick_p50_ms_range']} ms, p99 "
        f"{doc['tick_p99_ms_range']} ms, {wall_s:.0f} s in all; wrote {args.out}"
    )
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
