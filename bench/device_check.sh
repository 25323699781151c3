#!/usr/bin/env bash
# GPU checks, run on a lent GPU machine (see the `device` tool) from the repo root:
#   bash bench/device_check.sh smoke   # environment, a seed-config train step, a 20-step sweep
#   bash bench/device_check.sh full    # the sweep that chose configs/sim_default.py
#   bash bench/device_check.sh lerobot # bench/compare_lerobot.py on the GPU: seed and cpu_default
# The machine has jax[cuda], flax, optax, orbax; the rest travels as wheels in .whl/ (pure-Python
# ml_collections and tensorboardX, mujoco-core for the sim) and EGL loaders in .gl/ (both
# git-ignored; pass them in the device tool's `carry`). Fetch them once, here:
#   .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 -d .whl ml_collections tensorboardX \
#     mujoco==4.0.0 mujoco-core==4.0.0 glfw pyopengl
# For `lerobot` (the machine has torch and torchvision): lerobot==0.4.4 and what its ACT import
# needs beyond them, the pins of bench/lerobot_env.sh: draccus==0.10.0 mergedeep pyyaml-include
# toml "gymnasium>=1.1.1,<2" farama-notifications "datasets>=4.0,<5" dill multiprocess
# "diffusers>=0.27.2,<0.36" pyserial "deepdiff>=7.0.1,<9" orderly-set "av>=15,<16" (no mujoco
# there: .whl must stay under the device's 64 MiB). Not huggingface-hub: the machine's transformers,
# which lerobot imports when it is installed, needs the machine's own.
#   o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#   mkdir -p .gl /tmp/amd64/partial; apt-get $o update; (cd .gl && apt-get $o download \
#     libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
set -uo pipefail
MODE=${1:-smoke}
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
for f in .gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD MUJOCO_GL=egl PYTHONUNBUFFERED=1
if [ "$MODE" = lerobot ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  # lerobot 0.4.4 imports its GR00T policy whenever transformers is installed, and that module
  # fails on the machine's transformers 5; ACT never uses it. None in sys.modules makes Python
  # (and lerobot's is_package_available) treat transformers as absent, as in bench/lerobot_env.sh.
  mkdir -p /tmp/hide && echo 'import sys; sys.modules["transformers"] = None' \
    > /tmp/hide/sitecustomize.py
  export PYTHONPATH=/tmp/hide:$PYTHONPATH
  python3 -c "import jax, torch, lerobot.policies.act.modeling_act as m; \
print('jax', jax.__version__, jax.devices(), 'torch', torch.__version__, torch.cuda.is_available())" \
    || exit 1
  # Both sides on the GPU, one fresh process per (preset, workload, side), one after another.
  timeout 480 python3 bench/compare_lerobot.py --device gpu --lerobot-python python3 \
    --presets seed,cpu_default --steps 20 --infer-steps 50 --warmup 3 --timeout 150 \
    --out "$OUT/compare_lerobot_gpu.json"
  exit
fi
python3 -c "import jax, flax, optax, orbax.checkpoint as o, mujoco; \
print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'optax', optax.__version__, \
'mujoco', mujoco.__version__)"
if [ "$MODE" = smoke ]; then
  timeout 200 python3 bench/train_speed.py --configs seed --steps 5 --inference-calls 10 \
    --out "$OUT/train_speed_gpu.json"
  timeout 150 python3 bench/sweep_sim.py --out /tmp/sweep_smoke --episodes 4 --shards 2 \
    --steps 20 --eval-every 10 --eval-episodes 2 \
    --variant "a:train.log_every=5,eval.max_steps=30" \
    --variant "b:model.use_vae=False,train.log_every=5,eval.max_steps=30"
  cp /tmp/sweep_smoke/sweep.json "$OUT/sweep_smoke.json"; tail -c 3000 /tmp/sweep_smoke/a.log
else
  SMALL="model.dim_model=128,model.n_heads=4,model.dim_feedforward=512,model.use_vae=False"
  timeout 540 python3 bench/sweep_sim.py --out /tmp/sweep --episodes 48 --shards 8 \
    --steps 6000 --eval-every 3000 --eval-episodes 20 \
    --variant "base:" \
    --variant "novae:model.use_vae=False" \
    --variant "small:$SMALL,train.lr=3e-4,train.lr_backbone=3e-4" \
    --variant "small_c30:$SMALL,model.chunk_size=30,train.lr=3e-4,train.lr_backbone=3e-4" \
    --variant "small_aug:$SMALL,train.lr=3e-4,train.lr_backbone=3e-4,data.augment.max_shift=4"
  cp /tmp/sweep/sweep.json "$OUT/sweep.json"
  tail -c 2000 /tmp/sweep/base.log
fi
