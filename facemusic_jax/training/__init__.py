"""Training: one generic loop (loop.py) and a small task file per model."""


def get_task(config):
  """The task named by `config.task`."""
  if config.task == "fer":
    from facemusic_jax.training.fer import FerTask
    return FerTask(config)
  raise ValueError(f"unknown task {config.task!r}; known: fer")
