"""Train a model: python -m facemusic_jax.train --config configs/<x>.py --workdir DIR [--config.key=value].

Re-running the same command resumes from the latest checkpoint in DIR.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from facemusic_jax import parallel
from facemusic_jax.errors import exit_on_user_error
from facemusic_jax.training import get_task
from facemusic_jax.training.loop import train_and_evaluate

config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and config.json go (resumed if present).")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() (every worker of a TPU VM pod).")
flags.mark_flags_as_required(["config", "workdir"])


@exit_on_user_error
def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:  # Orbax and Grain log every step at INFO
    logging.set_verbosity(logging.WARNING)
  parallel.maybe_initialize_distributed(flags.FLAGS.multihost)
  config = flags.FLAGS.config
  workdir = os.path.abspath(flags.FLAGS.workdir)
  logging.info("config:\n%s", config)
  metrics = train_and_evaluate(get_task(config), config, workdir)
  if metrics:
    print("final eval: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)))


if __name__ == "__main__":
  app.run(main)
