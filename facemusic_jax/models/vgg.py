"""VGG16 with BatchNorm for 48x48 grayscale faces (FER2013), as a Flax NNX module.

Thirteen 3x3 conv layers in five blocks, each conv followed by BatchNorm and ReLU, a 2x2 max-pool after
each block (48 -> 24 -> 12 -> 6 -> 3 -> 1), then a dropout-regularized MLP head with 7 logits. `width`
scales every conv channel count so the same architecture has CPU-sized variants.
"""

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from facemusic_jax import emotion
from facemusic_jax.models.dropout import Dropout

# The 13 conv layers of VGG16 ('M' = 2x2 max-pool).
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

# FER2013 training-set pixel statistics (on a 0..1 scale); inputs are standardized inside the model so
# every caller passes raw uint8 images.
FER_MEAN = 0.5077
FER_STD = 0.2550


class VGG(nnx.Module):

  @classmethod
  def from_config(cls, config, rngs: nnx.Rngs) -> "VGG":
    """The FER classifier a training config describes (config.model: width, head_dims, dropout, dtype)."""
    m = config.model
    return cls(num_classes=len(emotion.FER_LABELS), width=m.width, head_dims=tuple(m.head_dims),
               dropout=m.dropout, dtype=jnp.dtype(m.get("dtype", "float32")), rngs=rngs)

  def __init__(
      self,
      *,
      num_classes: int = 7,
      in_channels: int = 1,
      width: float = 1.0,
      head_dims: Sequence[int] = (4096, 4096),
      dropout: float = 0.5,
      layout: Sequence = VGG16_LAYOUT,
      dtype=jnp.float32,
      rngs: nnx.Rngs,
  ):
    self.dtype = dtype
    self.layout = tuple(layout)
    convs, norms = [], []
    channels = in_channels
    for item in self.layout:
      if item == "M":
        continue
      out = max(8, int(round(item * width)))
      convs.append(nnx.Conv(channels, out, (3, 3), padding="SAME", use_bias=False, dtype=dtype, rngs=rngs))
      # momentum 0.9 rather than flax's 0.99: short CPU runs need running stats that catch up quickly.
      norms.append(nnx.BatchNorm(out, momentum=0.9, dtype=dtype, rngs=rngs))
      channels = out
    self.convs = nnx.List(convs)
    self.norms = nnx.List(norms)
    dense, dims = [], channels
    for d in head_dims:
      dense.append(nnx.Linear(dims, d, dtype=dtype, rngs=rngs))
      dims = d
    self.hidden = nnx.List(dense)
    # Dropout draws from the `rngs` passed at call time, so the model holds no RNG state to checkpoint.
    self.dropout = Dropout(dropout)
    self.classifier = nnx.Linear(dims, num_classes, dtype=dtype, rngs=rngs)

  def features(self, images: jax.Array) -> jax.Array:
    """uint8 or float images in 0..255, (B, H, W, C) -> pooled features (B, channels)."""
    x = (images.astype(jnp.float32) / 255.0 - FER_MEAN) / FER_STD
    x = x.astype(self.dtype)
    i = 0
    for item in self.layout:
      if item == "M":
        x = nnx.max_pool(x, (2, 2), strides=(2, 2))
      else:
        x = nnx.relu(self.norms[i](self.convs[i](x)))
        i += 1
    # Global average pool: 1x1 for 48x48 inputs, and other input sizes still work.
    return x.mean(axis=(1, 2))

  def __call__(self, images: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
    x = self.features(images)
    for layer in self.hidden:
      x = self.dropout(nnx.relu(layer(x)), rngs=rngs)
    return self.classifier(x).astype(jnp.float32)
