"""Data parallelism: one 1-D device mesh, batches split on its "data" axis, params replicated.

ACT is small (~52 M params at the seed size), so plain data parallelism is all it needs. Multi-host
training goes through `jax.distributed`: every process feeds its own rows of the global batch
(`act_jax.data.ChunkSampler` knows its rows, `jax.make_array_from_process_local_data` joins them)
and XLA all-reduces the gradients, through gloo between CPU processes. The README's "Multi-host
training" gives the commands (two local processes, SLURM).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from orbax.checkpoint import multihost

from act_jax.config_ranges import ConfigError

DATA_AXIS = "data"

# Set by hand (or a launcher) when a run spans several processes. jax itself reads only the
# coordinator's address; the count and the id are passed on from here. Under SLURM or Open MPI
# none is needed: `jax.distributed.initialize()` reads the scheduler's own variables.
COORDINATOR_ENV, NUM_PROCESSES_ENV, PROCESS_ID_ENV = (
    "JAX_COORDINATOR_ADDRESS",
    "JAX_NUM_PROCESSES",
    "JAX_PROCESS_ID",
)


def _env_int(environ: Mapping[str, str], name: str, low: int) -> int | None:
    text = environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low:
        raise ConfigError(f"{name}={text!r}: must be an integer >= {low}")
    return value


def maybe_initialize_distributed(
    distributed: bool, environ: Mapping[str, str] | None = None
) -> bool:
    """Joins a multi-process run when `config.train.distributed` or the environment asks for one;
    returns whether this is one. Idempotent; it must run before any other JAX computation.

    `jax.distributed.initialize()` gets `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` when they are
    set, and finds the rest itself (`JAX_COORDINATOR_ADDRESS`, or SLURM's / Open MPI's variables).
    CPU processes all-reduce through gloo (`jax_cpu_collectives_implementation`, jax's default).

    Raises:
      ConfigError: a variable that is not a number, or too few of them to start (naming them).
    """
    environ = os.environ if environ is None else environ
    names = (COORDINATOR_ENV, NUM_PROCESSES_ENV, PROCESS_ID_ENV)
    if not (distributed or any(environ.get(k) for k in names)):
        return False
    if jax.distributed.is_initialized():
        return True
    num_processes = _env_int(environ, NUM_PROCESSES_ENV, 1)
    process_id = _env_int(environ, PROCESS_ID_ENV, 0)
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise ConfigError(
            f"{PROCESS_ID_ENV}={process_id}: must be below {NUM_PROCESSES_ENV}={num_processes}"
        )
    try:
        jax.distributed.initialize(num_processes=num_processes, process_id=process_id)
    except ValueError as e:  # what jax could not find: the address, the count or the id
        raise ConfigError(
            f"jax.distributed.initialize: {e} Set {', '.join(names)} (or run under SLURM / "
            "Open MPI, whose variables jax reads)"
        ) from None
    print(
        f"distributed: process {jax.process_index()} of {jax.process_count()}, "
        f"{jax.local_device_count()} local device(s) of {jax.device_count()}",
        flush=True,
    )
    return True


def sync(name: str, timeout_s: int = 24 * 3600) -> None:
    """Waits until every process got here (at once in a single process). Through the
    coordinator (orbax's barrier), not a collective on the devices, so the wait may be long:
    process 0 may be recording demos meanwhile."""
    if jax.process_count() > 1:
        multihost.get_barrier_sync_fn()(key=name, timeout_ms=timeout_s * 1000)


def local_copy(tree):
    """`tree` with each array that spans other processes' devices replaced by this process's
    copy of it (the arrays are replicated), so code that runs in this process alone can use it."""
    return jax.tree.map(
        lambda x: (
            x.addressable_data(0) if isinstance(x, jax.Array) and not x.is_fully_addressable else x
        ),
        tree,
    )


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
