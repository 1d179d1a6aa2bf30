"""A seconds-long Music Transformer config for tests: a few music21 corpus pieces, 2 small layers."""

from facemusic_jax.training.music import default_config


def get_config():
  c = default_config()
  c.datasets = "music21_corpus"
  c.dataset_options = {"music21_corpus": {"max_pieces": 12}}
  c.model.update(d_model=32, num_layers=2, num_heads=4, d_ff=64, max_relative_distance=32, dropout=0.0)
  c.seq_len = 32
  c.eval_windows = 1
  c.batch_size = 8
  c.eval_batch_size = 8
  c.learning_rate = 3e-3
  c.warmup_steps = 2
  c.num_train_steps = 6
  c.log_every_steps = 2
  c.eval_every_steps = 3
  c.checkpoint_every_steps = 3
  c.num_workers = 0
  c.progress_bar = False
  return c
