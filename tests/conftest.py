"""Test-wide settings: CPU JAX, headless MuJoCo rendering."""

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Keep TFDS and absl quiet and offline.
os.environ.setdefault("TFDS_DISABLE_GCS", "1")


# The trainer's two test modules (test_train.py, test_train_distributed.py) share one dataset and
# one uninterrupted run, the reference their resumed, multi-device and multi-process runs must
# equal bit for bit or to float tolerance, so it is compiled as they are: under
# `helpers_data.fast_compiles` (session fixtures are set up before a module's own).


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """The session's persistent JAX compilation cache (see `helpers_data.fast_compiles`)."""
    return tmp_path_factory.getbasetemp() / "jax_cache"


@pytest.fixture(scope="module")
def fast_jax(cache_dir):
    """Cheaper XLA compiles and the session's compilation cache for one module's tests
    (`helpers_data.fast_compiles`). Modules whose time goes to compiling opt in with
    `pytestmark = pytest.mark.usefixtures("fast_jax")`; those that run long compiled loops do
    not (unoptimised code runs slower)."""
    from helpers_data import fast_compiles

    with fast_compiles(cache_dir):
        yield


@pytest.fixture(scope="session")
def named_sim_run(tmp_path_factory, cache_dir):
    """The tiny config trained 2 steps on 6 sim demos at the named locations (32x32), under
    `fast_compiles` like the modules that read it (`helpers_data.tiny_sim_run`)."""
    from helpers_data import fast_compiles, tiny_sim_run

    with fast_compiles(cache_dir):
        return tiny_sim_run(tmp_path_factory.mktemp("named"), episodes=6, distribution="named")


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory):
    """A tiny TFDS dataset: 4 episodes of 12 steps at 32x32."""
    from helpers_data import build_dataset

    return build_dataset(tmp_path_factory.mktemp("data"), num_episodes=4, steps=12)


@pytest.fixture(scope="session")
def straight_run(dataset_dir, cache_dir, tmp_path_factory):
    """(workdir, result) of the tiny config trained 4 steps without interruption."""
    from helpers_data import fast_compiles
    from helpers_train import tiny_config

    from act_jax import train

    workdir = tmp_path_factory.mktemp("straight")
    with fast_compiles(cache_dir):
        result = train.train_and_evaluate(
            tiny_config(dataset_dir), workdir, eval_fn=lambda state, step: {"calls": step}
        )
    return workdir, result
