"""The paper-sized Music Transformer for accelerators: 6 layers, 512 wide, 8 heads, length 2048, relative
attention over the whole window, continuous valence-arousal conditioning plus the class control token.

  python -m facemusic_jax.train --config configs/music_transformer.py --workdir W \
      --config.datasets=metamidi:/data/metamidi,emopia:/data/emopia
"""

from facemusic_jax.training.music import default_config


def get_config():
  c = default_config()
  c.model.update(d_model=512, num_layers=6, num_heads=8, d_ff=2048, max_relative_distance=2048)
  c.model.dtype = "bfloat16"
  c.seq_len = 2048
  c.num_workers = 8
  return c
