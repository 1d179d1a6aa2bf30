"""Train a model: python -m facemusic_jax.train --config configs/<x>.py --workdir DIR [--config.key=value].

Re-running the same command resumes from the latest checkpoint in DIR.
"""

import difflib
import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from facemusic_jax.cli import common
from facemusic_jax.core import parallel
from facemusic_jax.core.errors import exit_on_user_error
from facemusic_jax.training import get_task, load_config
from facemusic_jax.training.loop import train_and_evaluate

config_flags.DEFINE_config_file("config", None, "Training config: a file, or the name of a shipped one "
                                "(configs/<name>.py, e.g. fer_cpu).", lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and config.json go (resumed if present).")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() (every worker of a TPU VM pod).")
flags.mark_flags_as_required(["config", "workdir"])


def config_keys(config, prefix: str = "") -> list[str]:
  """Every dotted key of a ConfigDict, nested ones included."""
  keys = []
  for name, value in config.items():
    keys.append(prefix + name)
    if hasattr(value, "items") and not isinstance(value, dict):
      keys += config_keys(value, f"{prefix}{name}.")
  return keys


def config_problem(argv: list[str]) -> str | None:
  """One line on what is wrong with --config and its --config.key=value overrides, or None."""
  path, overrides = None, []
  for i, arg in enumerate(argv):
    if arg == "--config" and i + 1 < len(argv):
      path = argv[i + 1]
    elif arg.startswith("--config="):
      path = arg.split("=", 1)[1]
    elif arg.startswith("--config."):
      overrides.append(arg[len("--config."):].split("=", 1)[0])
  if path is None:
    return None
  if not os.path.isfile(path):
    return (f"--config={path}: no such file or shipped config; give a config file or the name of one in "
            "configs/ (e.g. fer_cpu)")
  try:
    keys = config_keys(load_config(path))
  except Exception as e:  # pylint: disable=broad-except  # a config file is user code
    return f"--config={path}: get_config() failed: {type(e).__name__}: {e}"
  for key in overrides:
    if key not in keys:
      close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
      hint = f"closest: {', '.join(close)}" if close else "see the config file for its keys"
      return f"--config.{key}: {path} has no such key ({hint})"
  return None


def shipped_config_path(value: str) -> str:
  """--config's value as a file: the path itself when it exists, else the packaged config of that name
  (`--config fer_cpu`, or `--config configs/fer_cpu.py` run from outside the repository)."""
  if os.path.isfile(value):
    return value
  from facemusic_jax import configs
  name = os.path.basename(value)
  packaged = os.path.join(os.path.dirname(os.path.abspath(configs.__file__)),
                          name if name.endswith(".py") else f"{name}.py")
  return packaged if os.path.isfile(packaged) else value


def with_config_path(argv: list[str]) -> list[str]:
  """argv with --config's value replaced by `shipped_config_path` of it."""
  argv = list(argv)
  for i, arg in enumerate(argv):
    if arg == "--config" and i + 1 < len(argv):
      argv[i + 1] = shipped_config_path(argv[i + 1])
    elif arg.startswith("--config="):
      argv[i] = "--config=" + shipped_config_path(arg.split("=", 1)[1])
  return argv


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad config file, an unknown config key or a bad value as one line. --config
  takes a config file or the name of a shipped one."""
  argv = with_config_path(argv)
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e).splitlines()[0]
  except Exception as e:  # pylint: disable=broad-except  # config_flags raises AttributeError, OSError, ...
    message = config_problem(argv) or f"{type(e).__name__}: {str(e).splitlines()[0]}"
  else:
    message = config_problem(argv)  # a missing config file only fails once the config is first read
    if message is None:
      return rest
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


@exit_on_user_error
def main(argv):
  del argv
  common.quiet_logging()
  config = flags.FLAGS.config
  workdir = os.path.abspath(flags.FLAGS.workdir)
  logging.info("config:\n%s", config)
  with parallel.distributed(flags.FLAGS.multihost):
    metrics = train_and_evaluate(get_task(config), config, workdir)
  if metrics and jax.process_index() == 0:
    print("final eval: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)))


def run():
  """The `facemusic-train` console script."""
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
