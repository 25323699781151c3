"""Data parallelism: one 1-D device mesh, batches split on its "data" axis, params replicated.

ACT is small (~52 M params at the seed size), so plain data parallelism is all it needs. Multi-host
training goes through `jax.distributed`: every process feeds its own rows of the global batch
(`act_jax.data.ChunkSampler` knows its rows) and XLA all-reduces the gradients.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"

# Set by cluster launchers (or by hand) when a run spans several processes.
_DISTRIBUTED_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES")


def maybe_initialize_distributed(distributed: bool) -> None:
    """Joins a multi-process run when the config or the environment asks for one.

    `jax.distributed.initialize()` reads the coordinator address, process count and id from the
    environment (or detects SLURM / TPU pods). It must run before any other JAX call.
    """
    if distributed or any(os.environ.get(k) for k in _DISTRIBUTED_ENV):
        if not jax.distributed.is_initialized():
            jax.distributed.initialize()


def make_mesh() -> Mesh:
    """A 1-D mesh over every device of every process, with the axis named "data"."""
    return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the devices, other axes whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device (params, optimizer state, metrics)."""
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raises ValueError, naming config.train.batch_size, if it does not split over the mesh."""
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(
            f"config.train.batch_size={batch_size} must be a multiple of the {n} devices "
            f"({jax.process_count()} process(es)) it is split over"
        )
