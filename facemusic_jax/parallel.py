"""Data parallelism across every device of every host: the mesh, shardings, and global batches.

Data parallel here means plain `jax.jit` over a one-axis ('data',) mesh: the batch is split along that axis,
the model state is replicated, and XLA inserts the gradient all-reduce (and the cross-device BatchNorm
statistics) itself. That is what this codebase's docs call "pmapped".
"""

import os

import jax
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def maybe_initialize_distributed(force: bool = False) -> None:
  """Joins the multi-host runtime when launched as one of several processes (TPU VM pods, SLURM, ...).

  On a TPU VM pod pass `force` (train's --multihost): `jax.distributed.initialize()` then discovers its
  peers. Elsewhere set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID, which jax reads.
  A single process needs nothing.
  """
  if force or any(os.environ.get(k) for k in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS")):
    jax.distributed.initialize()
    logging.info("process %d of %d", jax.process_index(), jax.process_count())


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A ('data',) mesh over `devices` (default: every device of every host)."""
  devices = jax.devices() if devices is None else list(devices)
  # Auto axes: unannotated NNX params stay replicated while the batch is sharded (Explicit axes would
  # raise ShardingTypeError on such mixes).
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch: int) -> int:
  """The per-host batch size, after checking the global batch splits evenly over devices and hosts."""
  if global_batch % jax.device_count():
    raise ValueError(f"batch_size {global_batch} is not divisible by the {jax.device_count()} devices; "
                     f"set --config.batch_size to a multiple of {jax.device_count()}")
  return global_batch // jax.process_count()


def to_global(batch, mesh):
  """Host-local numpy batch (this process's slice) -> global jax.Arrays sharded along 'data'."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def replicate(tree, mesh):
  return jax.device_put(tree, replicated(mesh))


def to_host(tree):
  """Global arrays -> numpy on every host (process_allgather is a no-op copy on one host)."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils
  return multihost_utils.process_allgather(tree, tiled=True)
