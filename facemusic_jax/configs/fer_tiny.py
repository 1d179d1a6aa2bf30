"""A seconds-long config for tests and the demo: a narrow VGG16 on the embedded synthetic faces."""

from facemusic_jax.training.fer import default_config


def get_config():
  c = default_config()
  c.dataset = "synthetic"
  c.model.width = 0.125
  c.model.head_dims = (32,)
  c.model.dropout = 0.1
  c.optimizer = "adamw"
  c.learning_rate = 3e-3
  c.weight_decay = 1e-4
  c.schedule = "cosine"
  c.warmup_steps = 5
  c.num_workers = 0
  c.tta = "flip"
  c.batch_size = 16
  c.eval_batch_size = 32
  c.num_train_steps = 8
  c.log_every_steps = 2
  c.eval_every_steps = 4
  c.checkpoint_every_steps = 2
  c.progress_bar = False
  return c
