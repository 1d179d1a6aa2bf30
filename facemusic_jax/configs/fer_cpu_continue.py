"""A second, shorter schedule for the FER model, with weight EMA: configs/fer_cpu.py's recipe started from the
best weights of its run (init_from; a fresh optimizer), at a fifth of its peak learning rate, cosine over 6,000 steps
(~15 more epochs), with an exponential moving average of the weights (decay 0.999) that evaluation, best/ and
inference use; each eval also logs the raw weights' accuracy (raw_accuracy), so the average's own gain is
measured in the same run. About 30 minutes on 2 CPU cores. The shipped release/fer_cpu is this run twice: from
the 12,000-step checkpoint release/fer_cpu held at commit 460e75f (workdirs/fer_cpu's best), then from that run's
best/ (--config.init_from=facemusic_jax/release/fer_cpu as of commit c7efced).

  python -m facemusic_jax.train --config configs/fer_cpu_continue.py --workdir W \\
      --config.data_dir=../shared/data/fer2013
"""

from facemusic_jax.training import load_config


def get_config():
  c = load_config("fer_cpu")
  c.init_from = "workdirs/fer_cpu"  # the first schedule's work directory
  c.learning_rate = 0.01
  c.warmup_steps = 200
  c.num_train_steps = 6_000
  c.ema_decay = 0.999
  return c
