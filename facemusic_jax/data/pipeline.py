"""Grain input pipelines shared by every dataset: sampling, sharding per host, batching, prefetching.

Training: random-access source -> (optional class-balanced index table) -> global shuffle, reshuffled every
epoch -> `random_map` with a per-record seed -> blocks of the per-host batch size -> this host's blocks ->
worker-process prefetch. Every random choice derives from (seed, position in the global stream), and host p
of P takes block p of every P consecutive blocks, so the global batch (the hosts' batches in process order)
is the same records in the same order whatever the number of hosts, and a restored iterator replays exactly.
"""

from typing import Callable

import grain
import jax
import numpy as np


def balanced_index_table(labels: np.ndarray, power: float, num_classes: int | None = None) -> np.ndarray:
  """Class balancing by oversampling: indices in which class c appears n_max * (n_c / n_max) ** (1 - power)
  times (never fewer than n_c).

  power = 0 keeps the natural distribution; power = 1 repeats every rarer class up to the largest one.
  Nothing is dropped, and within a class the examples are repeated as evenly as possible.
  """
  labels = np.asarray(labels, np.int64)
  counts = np.bincount(labels, minlength=num_classes or 0)
  n_max = counts.max()
  table = []
  for c in np.flatnonzero(counts):
    target = max(int(counts[c]), int(round(n_max * (counts[c] / n_max) ** (1.0 - power))))
    idx = np.flatnonzero(labels == c)
    reps, extra = divmod(target, len(idx))
    table.append(np.concatenate([np.tile(idx, reps), idx[:extra]]))
  return np.concatenate(table) if table else np.zeros(0, np.int64)


class _Lookup:
  """index -> source[index]; a picklable callable so worker processes can run it."""

  def __init__(self, source):
    self.source = source

  def __call__(self, index):
    return self.source[int(index)]


def train_iter_dataset(
    source,
    *,
    seed: int,
    batch_size: int,
    transform: Callable[[dict, np.random.Generator], dict],
    index_table: np.ndarray | None = None,
    num_workers: int = 0,
    prefetch_buffer: int = 4,
) -> grain.IterDataset:
  """An infinite, deterministic, checkpointable iterator of host-local batches of `batch_size` records."""
  if index_table is None:
    ds = grain.MapDataset.source(source)
  else:
    ds = grain.MapDataset.source(np.asarray(index_table, np.int64)).map(_Lookup(source))
  ds = ds.seed(seed).shuffle().repeat()
  ds = ds.random_map(transform)  # before sharding: a record's randomness depends on its global position
  ds = ds.batch(batch_size, drop_remainder=True)
  # This host's slice of every global batch (lazy: the other hosts' blocks are never read here).
  ds = ds[jax.process_index()::jax.process_count()]
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=prefetch_buffer))
  if num_workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=2))
  return it


def eval_batches(arrays: dict[str, np.ndarray], batch_size: int) -> list[dict[str, np.ndarray]]:
  """This host's share of a fixed eval set as padded batches with a 'mask' (1 = real example).

  The set is split evenly over hosts first, then each host pads its share to whole batches, so every host
  runs the same number of steps.
  """
  n = len(next(iter(arrays.values())))
  per_host = -(-n // jax.process_count())
  lo = jax.process_index() * per_host
  hi = min(n, lo + per_host)
  num_batches = max(1, -(-per_host // batch_size))
  out = []
  for b in range(num_batches):
    s, e = lo + b * batch_size, min(hi, lo + (b + 1) * batch_size)
    real = max(0, e - s)
    batch = {}
    for k, v in arrays.items():
      chunk = v[s:s + real]
      pad = np.zeros((batch_size - real,) + v.shape[1:], v.dtype)
      batch[k] = np.concatenate([chunk, pad])
    batch["mask"] = np.concatenate([np.ones(real, np.int32), np.zeros(batch_size - real, np.int32)])
    out.append(batch)
  return out
