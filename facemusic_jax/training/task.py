"""What a model brings to the one training loop (loop.py): the `Task` protocol.

A task file (fer.py, music.py, music_emotion.py) holds a class that satisfies it: the model it builds, its
data (delegated to data/), its loss, what evaluation keeps of each example and how those become metrics.
Everything else (mesh, shardings, optimizer, schedule, checkpoints, resume, preemption, logging) is the loop's.
"""

from typing import Any, Protocol, runtime_checkable

import jax
from flax import nnx


@runtime_checkable
class Task(Protocol):
  name: str  # the config's `task`
  best_metric: str  # a key of summarize()'s result; higher is better (best/ and the plateau schedule use it)
  throughput_unit: str  # what items_per_example counts, for the throughput log, e.g. "img/s"

  def build_model(self, config, rngs: nnx.Rngs) -> nnx.Module:
    """The model of `config` (each model's own `from_config`)."""

  def items_per_example(self, config) -> int:
    """Items (images, tokens) per example, for the throughput log."""

  def train_dataset(self, config, *, process_batch_size: int) -> Any:
    """An infinite Grain dataset of this process's numpy training batches (its iterator state is checkpointed)."""

  def eval_batches(self, config, *, process_batch_size: int) -> list[dict]:
    """This process's evaluation batches, each with a boolean 'mask' of the real (not padding) examples."""

  def loss(self, model: nnx.Module, batch: dict, rng: jax.Array) -> tuple[jax.Array, dict]:
    """(scalar loss, {name: scalar metric}) of a training batch; traced under jit."""

  def eval_outputs(self, model: nnx.Module, batch: dict) -> dict:
    """{name: per-example array} of an evaluation batch; traced under jit."""

  def summarize(self, outputs: dict) -> dict:
    """Metrics from the concatenated eval outputs of every example (padding removed)."""


# Optional: `write_artifacts(config, workdir)` writes files inference needs beside the weights (once, by process 0).
