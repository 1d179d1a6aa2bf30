"""Data parallelism across every device of every host: the mesh, shardings, and global batches.

Data parallel here means plain `jax.jit` over a one-axis ('data',) mesh: the batch is split along that axis,
the model state is replicated, and XLA inserts the gradient all-reduce (and the cross-device BatchNorm
statistics) itself. That is what this codebase's docs call "pmapped".
"""

import contextlib
import os

import jax
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from facemusic_jax.core.errors import UserError

DATA_AXIS = "data"


_LAUNCH_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def maybe_initialize_distributed(force: bool = False) -> bool:
  """Joins the multi-host runtime when launched as one of several processes (TPU VM pods, SLURM, ...).

  On a TPU VM pod or under SLURM pass `force` (train's --multihost): `jax.distributed.initialize()` then
  discovers its peers. Anywhere else (several GPU hosts, or several processes on one machine) set
  JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES and JAX_PROCESS_ID in every process; this function
  passes them on (jax itself does not read the last two). A single process needs nothing. CPU processes
  talk through gloo, jax's default CPU collectives.
  """
  env = {k: os.environ.get(k, "").strip() for k in _LAUNCH_ENV}
  if env["JAX_COORDINATOR_ADDRESS"]:
    missing = [k for k, v in env.items() if not v]
    if missing:
      raise UserError(f"JAX_COORDINATOR_ADDRESS is set but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                      f"not; set all of {', '.join(_LAUNCH_ENV)} in every process (or none for one process)")
    try:
      num, index = int(env["JAX_NUM_PROCESSES"]), int(env["JAX_PROCESS_ID"])
    except ValueError:
      raise UserError(f"JAX_NUM_PROCESSES={env['JAX_NUM_PROCESSES']!r} and JAX_PROCESS_ID={env['JAX_PROCESS_ID']!r} "
                      f"must be integers") from None
    if not 0 <= index < num:
      raise UserError(f"JAX_PROCESS_ID={index} must be in [0, JAX_NUM_PROCESSES={num})")
    jax.distributed.initialize(env["JAX_COORDINATOR_ADDRESS"], num_processes=num, process_id=index)
  elif force or os.environ.get("SLURM_NTASKS"):
    jax.distributed.initialize()
  else:
    return False
  logging.info("process %d of %d", jax.process_index(), jax.process_count())
  return True


@contextlib.contextmanager
def distributed(force: bool = False):
  """`maybe_initialize_distributed` for the body, and an explicit `jax.distributed.shutdown()` after it.

  Left to jax's atexit hook, the shutdown runs while the interpreter tears down, and there it at times aborted a
  process (SIGABRT in gRPC's server teardown) after all of its work was written: a failed exit code for a run
  that succeeded."""
  joined = maybe_initialize_distributed(force)
  try:
    yield
  finally:
    if joined:
      jax.distributed.shutdown()


def any_process(flag: bool) -> bool:
  """Whether `flag` is true on any process (every process must call this at the same point)."""
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils
  return bool(np.asarray(multihost_utils.process_allgather(np.int32(flag))).any())


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


def global_array(x, sharding):
  """A numpy array that every process holds in full -> a global jax.Array laid out by `sharding` (each
  process fills only its own devices' parts)."""
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def replicate(tree, mesh):
  """Every leaf replicated over `mesh`. With several processes each process must hold the same values (a
  loaded checkpoint, a host scalar); leaves that already span the processes are only resharded."""
  target = replicated(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, target)

  def put(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return jax.device_put(x, target)
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(global_array(jax.random.key_data(x), target))
    return global_array(np.asarray(x), target)

  return jax.tree.map(put, tree)


def to_host(tree):
  """Global arrays -> numpy on every host (process_allgather is a no-op copy on one host)."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils
  return multihost_utils.process_allgather(tree, tiled=True)
