#!/usr/bin/env bash
# The main job: simulated pick-and-place from nothing. Records the expert dataset if it is missing,
# trains the CPU-sized default config, evaluates it in simulation and prints where everything is.
# Extra arguments go to the trainer, e.g. `bash scripts/main.sh --config.train.num_steps=500`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
WORKDIR=${WORKDIR:-runs/sim_default}
start=$(date +%s)
python -m act_jax.train --config configs/sim_default.py --workdir "$WORKDIR" "$@"
python -m act_jax.evaluate --checkpoint "$WORKDIR" --episodes "${EVAL_EPISODES:-50}"
echo "main: whole job took $(( $(date +%s) - start )) s"
