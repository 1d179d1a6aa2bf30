"""The best FER model 2 CPU cores train in about an hour: VGG16-BN at quarter width (same 13 conv layers,
16..128 channels) for ~27 epochs with a cosine schedule, which beats a plateau schedule on short budgets.
The shipped release checkpoint was trained with this file.

  python -m facemusic_jax.train --config configs/fer_cpu.py --workdir W --config.data_dir=../shared/data/fer2013
"""

from facemusic_jax.training.fer import default_config


def get_config():
  c = default_config()
  c.model.width = 0.25
  c.model.head_dims = (256, 256)
  c.model.dropout = 0.3
  c.learning_rate = 0.05
  c.schedule = "cosine"
  c.warmup_steps = 500
  c.weight_decay = 5e-4
  c.label_smoothing = 0.1
  c.class_balance = 0.3
  c.num_workers = 1
  c.tta = "flip"
  c.num_train_steps = 12_000
  c.eval_every_steps = 1_000
  c.checkpoint_every_steps = 500
  return c
