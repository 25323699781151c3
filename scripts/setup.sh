#!/usr/bin/env bash
# Creates .venv and installs act-jax with its dev extras, once per change of setup.cfg.
# Sourced by scripts/test.sh and scripts/main.sh; safe to run again (it does nothing when up to date).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=.venv/.act-jax-installed
want=$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing act-jax and its dependencies into .venv"
  .venv/bin/python -m pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi
# Offscreen MuJoCo rendering without a display (Mesa llvmpipe through EGL).
export MUJOCO_GL=${MUJOCO_GL:-egl}
export PATH="$PWD/.venv/bin:$PATH"
# Progress bars written to a log file (not a terminal) redraw at most every 30 s, not 10 times a
# second: a 20-minute run otherwise leaves megabytes of carriage-return updates.
if [ ! -t 2 ]; then
  export TQDM_MININTERVAL=${TQDM_MININTERVAL:-30}
fi
