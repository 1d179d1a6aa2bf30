"""The second judge of generated music: a small relative-attention classifier of EMOPIA quadrants over
512-token windows (notes vocabulary), trained from scratch on EMOPIA's training songs only. `evaluate music`
scores generated pieces with it beside the symbolic estimator, and reports its own accuracy on EMOPIA's
validation songs as its ceiling. Those songs choose nothing here: the best checkpoint is chosen on fixed
windows of the training songs (eval_split "train").

  python -m facemusic_jax.train --config configs/music_emotion_cpu.py --workdir workdirs/music_emotion_cpu

About 40 minutes on 2 CPU cores (1,800 steps x 16 x 512 tokens). The shipped release/music_emotion was trained
with this file.
"""

from facemusic_jax.training.music import default_config


def get_config():
  c = default_config()
  c.task = "music_emotion"
  c.vocabulary = "notes"
  c.datasets = "emopia:../shared/data/emopia"
  c.eval_split = "train"
  c.control_token = True  # the pipeline frames [BOS, control, ...]; the task puts the null control there
  c.cond_dropout = 0.0
  c.balance_power = 1.0  # every quadrant's windows as often as the largest's
  c.seq_len = 512
  c.eval_windows = 2
  c.model.update(d_model=128, num_layers=2, num_heads=4, d_ff=512, max_relative_distance=512, dropout=0.1)
  c.learning_rate = 1e-3
  c.weight_decay = 0.05
  c.warmup_steps = 50
  c.batch_size = 16
  c.eval_batch_size = 32
  c.num_train_steps = 1_800
  c.eval_every_steps = 300
  c.checkpoint_every_steps = 300
  c.log_every_steps = 25
  c.num_workers = 1
  return c
