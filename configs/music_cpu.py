"""A Music Transformer that 2 CPU cores train usefully in about an hour on EMOPIA + the embedded music21
corpus: 4 layers, 256 wide, 8 heads, 512-token windows. The shipped release checkpoint is trained with it.

  python -m facemusic_jax.train --config configs/music_cpu.py --workdir W
"""

from facemusic_jax.training.music import default_config


def get_config():
  c = default_config()
  c.datasets = "emopia:../shared/data/emopia,music21_corpus"
  # A fixed-seed fifth of music21's 14,958 pieces: 5 min to prepare on 2 cores instead of ~40, and still
  # more notes than an hour of training reads.
  c.dataset_options.music21_corpus = dict(max_pieces=3000)
  c.model.update(d_model=256, num_layers=4, num_heads=8, d_ff=1024, max_relative_distance=512, dropout=0.1)
  c.seq_len = 512
  c.batch_size = 8
  c.eval_batch_size = 32
  c.learning_rate = 1e-3
  c.warmup_steps = 300
  c.num_train_steps = 1800  # ~1,900 training tokens/s on 2 cores (bench train_music): about an hour
  c.eval_every_steps = 300
  c.checkpoint_every_steps = 250
  c.log_every_steps = 50
  c.num_workers = 1
  return c
