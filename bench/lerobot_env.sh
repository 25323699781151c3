#!/usr/bin/env bash
# Create (idempotently) the separate virtualenv that runs LeRobot's PyTorch ACT for the benchmarks.
#
# Usage:  bash bench/lerobot_env.sh            # creates/updates bench/.venvs/lerobot
#         LEROBOT_VENV=/some/dir bash bench/lerobot_env.sh
#
# Why a separate venv: LeRobot 0.4.4 (the last release for Python 3.11) pins torch<2.11 and ~90
# dependencies (HF `datasets`, wandb, diffusers, ...). On this machine the only torch/torchvision pair
# that imports together is torch 2.14.1 + torchvision 0.29.1 (torchvision 0.28 on torch 2.13+cpu
# fails with "operator torchvision::nms does not exist"), so we install lerobot with --no-deps and
# add only what `import lerobot.policies.act.modeling_act` needs. pip's warning "lerobot 0.4.4
# requires torchvision<0.26.0" is expected and harmless for ACT. The project's own .venv never sees
# torch. The venv path (bench/.venvs/) is git-ignored; it takes ~6 GB.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${LEROBOT_VENV:-$HERE/.venvs/lerobot}"
PY="${PYTHON:-python3.11}"
PIP="$VENV/bin/pip"

TORCH_PINS=("torch==2.14.1" "torchvision==0.29.1")
LEROBOT_PIN="lerobot==0.4.4"
# What the ACT import asks for, found one ImportError at a time, each held to the range lerobot
# 0.4.4's own metadata declares (so ACT runs against the library versions it was released with).
# NB: the module `serial` comes from `pyserial`; `pip install serial` is an unrelated package.
# gymnasium: `lerobot.policies.factory` (make_pre_post_processors, for bench/lerobot_fixtures.py
# and bench/lerobot_export_check.py) imports lerobot.envs.
EXTRAS=("gymnasium>=1.1.1,<2" "draccus==0.10.0" "huggingface-hub>=0.34.2,<0.36"
        "safetensors>=0.4.3" "datasets>=4.0,<5" "accelerate" "imageio>=2.34" "diffusers>=0.27.2,<0.36" "pyserial>=3.5"
        "deepdiff>=7.0.1,<9" "av>=15,<16" "einops>=0.8" "packaging>=24.2,<26" "setuptools>=71,<81")

say() { echo "[lerobot_env] $*"; }

if [[ -x "$VENV/bin/python" ]]; then
  say "venv exists: $VENV"
else
  say "creating venv with $("$PY" --version 2>&1): $VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
fi

installed() {  # installed NAME VERSION -> 0 if that exact version is present
  local v
  v="$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null)" \
    || return 1
  [[ -z "${2:-}" || "$v" == "$2" || "$v" == "$2+"* ]]
}

if installed torch 2.14.1 && installed torchvision 0.29.1; then
  say "torch 2.14.1 / torchvision 0.29.1 already installed"
else
  say "installing ${TORCH_PINS[*]} (large: ~5.5 GB, taken from the local wheel index)"
  "$PIP" install --quiet "${TORCH_PINS[@]}"
fi

if installed lerobot 0.4.4; then
  say "lerobot 0.4.4 already installed"
else
  say "installing $LEROBOT_PIN with --no-deps"
  "$PIP" install --quiet --no-deps "$LEROBOT_PIN"
fi

say "ensuring ACT import needs: ${EXTRAS[*]}"
# The torch pins go in again so that no extra's resolver can move torch. pip is a no-op when all is
# satisfied; print only what it changed.
log="$("$PIP" install "${EXTRAS[@]}" "${TORCH_PINS[@]}" 2>&1)" || { echo "$log" >&2; exit 1; }
if grep -q '^Successfully installed' <<<"$log"; then
  say "$(grep '^Successfully installed' <<<"$log")"
else
  say "ACT import needs already satisfied"
fi

say "checking: import lerobot.policies.act.modeling_act"
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as m
import time

t = time.perf_counter()
from lerobot.policies.act.modeling_act import ACTPolicy  # noqa: F401
dt = time.perf_counter() - t
print("[lerobot_env] ok: " + ", ".join(
    f"{p} {m.version(p)}" for p in ("torch", "torchvision", "lerobot")) + f"; import {dt:.1f} s")
EOF
say "python: $VENV/bin/python"
