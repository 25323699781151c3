#!/usr/bin/env bash
# Lookup or interpolation, against coverage: the CPU default trained on 50 demos at K = 5 (the
# named set), 9 (3x3) or 25 (5x5) locations over one region, then `interp.lookup_study` on the
# same 30 independent uniform starts for each. One base per call, so each run fits in 30 minutes
# on a 2-core CPU (about 20 min of training, 8 of rollouts):
#   bash bench/lookup_coverage.sh named       # K = 5
#   bash bench/lookup_coverage.sh grid:3x3    # K = 9
#   bash bench/lookup_coverage.sh grid:5x5    # K = 25
# Bases go to runs/lookup_<K>, results to bench/reference_results/interp/lookup_<K>/ with the
# command and wall times inside. A finished base is not retrained (training resumes at its end).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
SPEC=${1:?usage: bench/lookup_coverage.sh named|grid:3x3|grid:5x5}
TAG=$(echo "$SPEC" | tr ':' '_')
RUN=runs/lookup_$TAG
OUT=bench/reference_results/interp/lookup_$TAG
export MUJOCO_GL=${MUJOCO_GL:-egl}
start=$(date +%s)
python -m act_jax.train --config configs/sim_named.py --workdir "$RUN" \
  --config.data.record_locations="$SPEC" --config.data.name="sim_${TAG}_50" \
  --config.data.episodes_dir="data/episodes/sim_${TAG}_50" \
  --config.eval.distribution="$SPEC" --config.eval.rollout_every=0
trained=$(date +%s)
python -m interp.lookup_study --checkpoint "$RUN" --test uniform --starts 30 --seed 7000 \
  --out "$OUT"
done_at=$(date +%s)
mkdir -p "$OUT"
cp "$RUN/metrics.jsonl" "$OUT/train_metrics.jsonl"
printf '{"command": "bash bench/lookup_coverage.sh %s", "train_s": %d, "study_s": %d, "load_avg": "%s"}\n' \
  "$SPEC" $((trained - start)) $((done_at - trained)) "$(cut -d' ' -f1-3 /proc/loadavg)" \
  > "$OUT/wall_time.json"
echo "lookup_coverage $SPEC: trained in $((trained - start)) s, studied in $((done_at - trained)) s"
