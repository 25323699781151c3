"""Test-wide settings: CPU JAX, headless MuJoCo rendering."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Keep TFDS and absl quiet and offline.
os.environ.setdefault("TFDS_DISABLE_GCS", "1")
