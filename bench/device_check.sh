#!/usr/bin/env bash
# GPU checks, run on a lent GPU machine (see the `device` tool) from the repo root:
#   bash bench/device_check.sh smoke   # environment, a seed-config train step, a 20-step sweep
#   bash bench/device_check.sh full    # the sweep that chose configs/sim_default.py
# The machine has jax[cuda], flax, optax, orbax; the rest travels as wheels in .whl/ (pure-Python
# ml_collections and tensorboardX, mujoco-core for the sim) and EGL loaders in .gl/ (both
# git-ignored; pass them in the device tool's `carry`). Fetch them once, here:
#   .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 -d .whl ml_collections tensorboardX \
#     mujoco==4.0.0 mujoco-core==4.0.0 glfw pyopengl
#   o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#   mkdir -p .gl /tmp/amd64/partial; apt-get $o update; (cd .gl && apt-get $o download \
#     libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
set -uo pipefail
MODE=${1:-smoke}
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD MUJOCO_GL=egl PYTHONUNBUFFERED=1
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
