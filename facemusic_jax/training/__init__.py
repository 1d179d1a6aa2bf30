"""Training: one generic loop (loop.py), the Task protocol it trains (task.py) and a small task file per model."""

from facemusic_jax.training.task import Task


def get_task(config) -> "Task":
  """The task named by `config.task`: a `training.task.Task`."""
  if config.task == "fer":
    from facemusic_jax.training.fer import FerTask
    return FerTask(config)
  if config.task == "music":
    from facemusic_jax.training.music import MusicTask
    return MusicTask(config)
  if config.task == "music_emotion":
    from facemusic_jax.training.music_emotion import MusicEmotionTask
    return MusicEmotionTask(config)
  raise ValueError(f"unknown task {config.task!r}; known: fer, music, music_emotion")


def load_config(name_or_path: str, **overrides):
  """`get_config()` of the packaged configs/<name>.py (or of a config file path), with top-level overrides
  applied."""
  import importlib.util
  import os
  from facemusic_jax import configs
  from facemusic_jax.core.errors import UserError
  packaged = os.path.dirname(os.path.abspath(configs.__file__))
  path = name_or_path if name_or_path.endswith(".py") else os.path.join(packaged, f"{name_or_path}.py")
  if not os.path.isfile(path):
    raise UserError(f"config file {path} not found; name one of the files in configs/")
  spec = importlib.util.spec_from_file_location(f"config_{os.path.basename(path)[:-3]}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.update(overrides)
  return config
