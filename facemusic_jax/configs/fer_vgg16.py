"""The paper's full recipe (DESIGN.md) for accelerators: VGG16-BN at full width, 300 epochs, batch 64,
SGD Nesterov 0.01 with x0.75 on plateau, ten-crop test-time averaging.

  python -m facemusic_jax.train --config configs/fer_vgg16.py --workdir W --config.data_dir=../shared/data/fer2013
"""

from facemusic_jax.training.fer import default_config


def get_config():
  c = default_config()
  c.model.dtype = "bfloat16"  # f32 params, bf16 compute on GPU/TPU
  c.num_workers = 8
  return c
