"""Benchmarks that print JSON: python -m facemusic_jax.bench NAME [--json] [flags].

  train_fer   VGG16 training images/s at batch 64 (full width and the CPU config's width) on this machine,
              and the Grain pipeline's augmented images/s at the same batch size, fed from --data_dir
              (FER2013 in either layout) or the embedded synthetic faces.

Speed is measured here, never asserted by tests; compare ratios taken in one run on a quiet machine.
"""

import json
import sys
import time

from absl import app, flags, logging

from facemusic_jax.errors import UserError, exit_on_user_error

FLAGS = flags.FLAGS
flags.DEFINE_bool("json", False, "Print exactly one JSON object.")
flags.DEFINE_string("data_dir", "", "FER2013 folder for the pipeline benchmark (default: synthetic faces).")
flags.DEFINE_integer("batch_size", 64, "Batch size of the benchmarked step and pipeline.")
flags.DEFINE_integer("steps", 10, "Timed training steps per configuration (after one compile step).")
flags.DEFINE_integer("pipeline_batches", 50, "Timed pipeline batches per configuration.")
flags.DEFINE_list("configs", "fer_vgg16,fer_cpu", "Config files (under configs/) to benchmark.")

def time_train_step(task, config, steps: int) -> float:
  """Images/s of the jitted data-parallel train step on all local devices (synthetic batch)."""
  import jax
  import numpy as np
  from facemusic_jax import parallel
  from facemusic_jax.training.loop import init_state, make_optimizer, make_train_step
  mesh = parallel.make_mesh()
  tx = make_optimizer(config)
  graphdef, state = init_state(task, config, tx, mesh)
  step = make_train_step(task, graphdef, tx, config, mesh)
  rng = np.random.default_rng(0)
  n = config.batch_size
  batch = parallel.to_global({"image": rng.integers(0, 256, (n, 48, 48, 1), dtype=np.uint8),
                              "label": rng.integers(0, 7, n).astype(np.int32)}, mesh)
  state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  t = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  return n * steps / (time.perf_counter() - t)


def time_pipeline(task, config, batches: int) -> float:
  """Augmented images/s of the training input pipeline with the config's worker processes."""
  it = iter(task.train_dataset(config, process_batch_size=config.batch_size))
  try:
    next(it)  # worker start-up is not throughput
    t = time.perf_counter()
    for _ in range(batches):
      next(it)
    return config.batch_size * batches / (time.perf_counter() - t)
  finally:
    getattr(it, "close", lambda: None)()


def bench_train_fer() -> dict:
  from facemusic_jax.training import get_task, load_config
  results = []
  for name in FLAGS.configs:
    overrides = dict(batch_size=FLAGS.batch_size)
    if FLAGS.data_dir:
      overrides.update(dataset="fer2013", data_dir=FLAGS.data_dir)
    else:
      overrides.update(dataset="synthetic")
    config = load_config(name, **overrides)
    config.model.dtype = "float32"  # CPU has no fast bf16 convolutions
    task = get_task(config)
    pipeline = time_pipeline(task, config, FLAGS.pipeline_batches)
    train = time_train_step(task, config, FLAGS.steps)
    results.append({"config": name, "width": config.model.width, "batch_size": config.batch_size,
                    "train_images_per_s": round(train, 1), "pipeline_images_per_s": round(pipeline, 1),
                    "pipeline_over_train": round(pipeline / train, 2), "num_workers": config.num_workers})
  import jax
  return {"benchmark": "train_fer", "devices": [str(d) for d in jax.devices()],
          "data": FLAGS.data_dir or "synthetic", "results": results}


BENCHMARKS = {"train_fer": bench_train_fer}


@exit_on_user_error
def main(argv):
  if len(argv) != 2 or argv[1] not in BENCHMARKS:
    raise UserError(f"usage: python -m facemusic_jax.bench NAME [--json]; NAME is one of {', '.join(BENCHMARKS)}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  result = BENCHMARKS[argv[1]]()
  if FLAGS.json:
    print(json.dumps(result))
  else:
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
  app.run(main)
