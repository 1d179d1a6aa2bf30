"""A second, shorter schedule for the shipped FER model, with weight EMA: configs/fer_cpu.py's recipe started
from release/fer_cpu's weights (a fresh optimizer), at a fifth of its peak learning rate, cosine over 6,000 steps
(~15 more epochs), with an exponential moving average of the weights (decay 0.999) that evaluation, best/ and
inference use; each eval also logs the raw weights' accuracy (raw_accuracy), so the average's own gain is
measured in the same run. About 35 minutes on 2 CPU cores.

  python -m facemusic_jax.train --config configs/fer_cpu_continue.py --workdir W \\
      --config.data_dir=../shared/data/fer2013
"""

from facemusic_jax.training import load_config


def get_config():
  c = load_config("fer_cpu")
  c.init_from = "facemusic_jax/release/fer_cpu"
  c.learning_rate = 0.01
  c.warmup_steps = 200
  c.num_train_steps = 6_000
  c.ema_decay = 0.999
  return c
