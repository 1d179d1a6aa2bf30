"""Stage 2 of the shipped recipe: the pretrained piano model (configs/music_pretrain_cpu.py) fine-tuned with
emotion conditions on EMOPIA's training songs, with windows of 1,024 tokens (a whole EMOPIA clip, so the
model learns where pieces end, and generation stays within what it was trained on), in the performance
vocabulary (note-off events). The shipped release/music_cpu is its note-duration twin,
configs/music_notes_cpu.py.

  python -m facemusic_jax.train --config configs/music_pretrain_cpu.py --workdir workdirs/music_pretrain_cpu
  python -m facemusic_jax.train --config configs/music_cpu.py --workdir workdirs/music_cpu

About 45 minutes on 2 CPU cores after stage 1. --config.init_from='' trains from scratch instead.
"""

from facemusic_jax.training import load_config


def get_config():
  c = load_config("music_pretrain_cpu")  # the same model
  c.datasets = "emopia:../shared/data/emopia"
  c.dataset_options = {}
  c.init_from = "workdirs/music_pretrain_cpu"
  c.cond_dropout = 0.15  # the unconditioned branch for classifier-free guidance
  c.balance_power = 1.0  # every quadrant as often as the largest
  c.seq_len = 1024
  c.batch_size = 4
  c.eval_batch_size = 16
  c.eval_windows = 2
  c.learning_rate = 5e-4
  c.warmup_steps = 100
  c.num_train_steps = 700  # ~1,200 training tokens/s on 2 cores at this length: 2.9M tokens, ~3 epochs
  c.eval_every_steps = 175
  c.checkpoint_every_steps = 175
  c.log_every_steps = 25
  c.num_workers = 1
  return c
