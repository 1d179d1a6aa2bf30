"""Decoder-only Music Transformer (Huang et al., 2018) with relative global attention, in Flax NNX.

Pre-norm blocks; no absolute positions (relative attention carries order). Emotion conditioning, by
config: the quadrant control token is part of the token sequence (the data pipeline prefixes it), and the
continuous (valence, arousal) vector is projected and added to every position ('add') or concatenated to
every token embedding and projected back ('concat'). For classifier-free guidance a dropped condition is
replaced by a learned null vector. In 'add' mode the projection starts at zero and adds to the null vector, so
a model pretrained without conditions is, before fine-tuning, the same model with any condition.
Attribute conditioning (EmoGen; `music/attributes.py`): each attribute's bin (0: not given) has a learned
embedding, zero at the start, added to every position, so attributes too can be learned by fine-tuning.

Two ways to run it: `__call__` over whole sequences (training, scoring), and `decode_step` for one token per
sequence against a fixed-size key/value cache (generation: O(t) attention and O(1) model work per token).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from facemusic_jax.models import attention
from facemusic_jax.models.dropout import Dropout


class RelativeSelfAttention(nnx.Module):

  def __init__(self, d_model: int, num_heads: int, max_relative_distance: int, *, dtype, rngs: nnx.Rngs):
    if d_model % num_heads:
      raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
    self.num_heads, self.head_dim = num_heads, d_model // num_heads
    self.qkv = nnx.Linear(d_model, 3 * d_model, use_bias=False, dtype=dtype, rngs=rngs)
    self.out = nnx.Linear(d_model, d_model, dtype=dtype, rngs=rngs)
    init = jax.nn.initializers.normal(self.head_dim ** -0.5)
    self.rel_emb = nnx.Param(init(rngs.params(), (num_heads, max_relative_distance, self.head_dim)))
    self.dtype = dtype

  def _heads(self, x):
    """(B, L, 3*d) -> three (B, H, L, Dh)."""
    b, l, _ = x.shape
    q, k, v = jnp.split(x.reshape(b, l, 3, self.num_heads, self.head_dim), 3, axis=2)
    return (t[:, :, 0].transpose(0, 2, 1, 3) for t in (q, k, v))

  def __call__(self, x, key_mask=None, *, skewed: bool = True):
    q, k, v = self._heads(self.qkv(x))
    rel_emb = self.rel_emb[...].astype(q.dtype)
    y = attention.relative_attention(q, k, v, rel_emb, key_mask=key_mask, skewed=skewed)
    b, h, l, d = y.shape
    return self.out(y.transpose(0, 2, 1, 3).reshape(b, l, h * d))

  def decode(self, x_t, cache, position):
    """x_t (B, d) at `position` -> (B, d), with cache = (k, v), each (B, H, T, Dh), updated at `position`."""
    q, k, v = self._heads(self.qkv(x_t[:, None]))  # (B, H, 1, Dh)
    k_cache = jax.lax.dynamic_update_slice_in_dim(cache[0], k.astype(cache[0].dtype), position, axis=2)
    v_cache = jax.lax.dynamic_update_slice_in_dim(cache[1], v.astype(cache[1].dtype), position, axis=2)
    y = attention.decode_attention(q[:, :, 0], k_cache, v_cache, self.rel_emb[...].astype(q.dtype), position)
    return self.out(y.reshape(y.shape[0], -1)), (k_cache, v_cache)


class Block(nnx.Module):

  def __init__(self, d_model, num_heads, d_ff, max_relative_distance, dropout, *, dtype, rngs):
    self.norm1 = nnx.LayerNorm(d_model, dtype=dtype, rngs=rngs)
    self.attn = RelativeSelfAttention(d_model, num_heads, max_relative_distance, dtype=dtype, rngs=rngs)
    self.norm2 = nnx.LayerNorm(d_model, dtype=dtype, rngs=rngs)
    self.ff1 = nnx.Linear(d_model, d_ff, dtype=dtype, rngs=rngs)
    self.ff2 = nnx.Linear(d_ff, d_model, dtype=dtype, rngs=rngs)
    self.dropout = Dropout(dropout)

  def _ff(self, x, rngs):
    return self.dropout(self.ff2(self.dropout(nnx.gelu(self.ff1(self.norm2(x))), rngs=rngs)), rngs=rngs)

  def __call__(self, x, key_mask=None, *, rngs=None, skewed=True):
    x = x + self.dropout(self.attn(self.norm1(x), key_mask, skewed=skewed), rngs=rngs)
    return x + self._ff(x, rngs)

  def decode(self, x_t, cache, position):
    y, cache = self.attn.decode(self.norm1(x_t), cache, position)
    x_t = x_t + y
    return x_t + self._ff(x_t, None), cache


class MusicTransformer(nnx.Module):

  def __init__(
      self,
      *,
      vocab_size: int,
      d_model: int = 256,
      num_layers: int = 6,
      num_heads: int = 8,
      d_ff: int = 1024,
      max_relative_distance: int = 512,
      dropout: float = 0.1,
      continuous_conditioning: str = "add",  # 'add' | 'concat' | 'none'
      attribute_bins: tuple[int, ...] = (),  # bins of each conditioning attribute, "not given" (0) included
      dtype=jnp.float32,
      rngs: nnx.Rngs,
  ):
    if continuous_conditioning not in ("add", "concat", "none"):
      raise ValueError(f"continuous_conditioning must be add, concat or none, not {continuous_conditioning!r}")
    self.conditioning = continuous_conditioning
    self.vocab_size, self.d_model, self.dtype = vocab_size, d_model, dtype
    self.embed = nnx.Embed(vocab_size, d_model, dtype=dtype, rngs=rngs)
    if continuous_conditioning == "add":
      # Zero at the start: a condition the model has not learned yet changes nothing (the pretrained model
      # stays intact when fine-tuning begins).
      self.cond_proj = nnx.Linear(2, d_model, dtype=dtype, kernel_init=nnx.initializers.zeros, rngs=rngs)
    elif continuous_conditioning == "concat":
      self.cond_proj = nnx.Linear(d_model + 2, d_model, dtype=dtype, rngs=rngs)
    # Stands in for the projected condition when it is dropped (classifier-free guidance).
    self.null_cond = nnx.Param(jnp.zeros((d_model,)))
    # All attributes share one table; attribute i's bins start at attribute_offsets[i].
    self.attribute_offsets = tuple(int(x) for x in np.cumsum((0,) + tuple(attribute_bins))[:-1])
    if attribute_bins:
      self.attr_embed = nnx.Embed(int(sum(attribute_bins)), d_model, dtype=dtype,
                                  embedding_init=nnx.initializers.zeros, rngs=rngs)
    self.blocks = nnx.List([Block(d_model, num_heads, d_ff, max_relative_distance, dropout, dtype=dtype, rngs=rngs)
                            for _ in range(num_layers)])
    self.final_norm = nnx.LayerNorm(d_model, dtype=dtype, rngs=rngs)
    self.head = nnx.Linear(d_model, vocab_size, dtype=dtype, rngs=rngs)
    self.dropout = Dropout(dropout)
    self.num_heads = num_heads
    self.head_dim = d_model // num_heads

  @classmethod
  def from_config(cls, config, rngs: nnx.Rngs) -> "MusicTransformer":
    """The model a training config describes (config.model, and config.vocabulary for the vocabulary size)."""
    from facemusic_jax.music import attributes
    names = tuple(config.model.get("attributes", ()))
    return cls(**_stack_kwargs(config), continuous_conditioning=config.model.conditioning,
               attribute_bins=tuple(attributes.num_bins(n) for n in names), rngs=rngs)

  def _input(self, tokens, va, cond_keep, attrs=None):
    """Token embeddings (B, L, d) with the continuous condition and the attributes folded in. va (B, 2) in
    [-1, 1]; attrs (B, num attributes) bins, 0 where not given (None: none given)."""
    x = self.embed(tokens)
    if self.attribute_offsets:  # not given (None) reads as bin 0 of each, as a dropped condition in training
      if attrs is None:
        attrs = jnp.zeros((tokens.shape[0], len(self.attribute_offsets)), jnp.int32)
      ids = attrs.astype(jnp.int32) + jnp.asarray(self.attribute_offsets, jnp.int32)
      x = x + self.attr_embed(ids).sum(axis=1)[:, None]
    if self.conditioning == "none":
      return x
    plain = x + self.null_cond[...].astype(x.dtype)  # what a dropped condition leaves
    va = va.astype(x.dtype)[:, None, :]
    if self.conditioning == "add":
      cond = self.cond_proj(va)
      if cond_keep is not None:  # a dropped condition adds nothing beyond the null vector
        cond = jnp.where(cond_keep[:, None, None], cond, 0)
      return plain + cond
    x = self.cond_proj(jnp.concatenate([x, jnp.broadcast_to(va, x.shape[:2] + (2,))], axis=-1))
    if cond_keep is not None:
      x = jnp.where(cond_keep[:, None, None], x, plain)
    return x

  def __call__(self, tokens, va, *, key_mask=None, cond_keep=None, attrs=None, rngs=None, skewed=True):
    """tokens (B, L) int, va (B, 2) -> logits (B, L, vocab) in f32."""
    x = self.dropout(self._input(tokens, va, cond_keep, attrs), rngs=rngs)
    for block in self.blocks:
      x = block(x, key_mask, rngs=rngs, skewed=skewed)
    return self.head(self.final_norm(x)).astype(jnp.float32)

  def init_cache(self, batch_size: int, max_len: int, dtype=None):
    shape = (batch_size, self.num_heads, max_len, self.head_dim)
    dtype = dtype or self.dtype
    return [(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in self.blocks]

  def decode_step(self, token, va, position, cache, *, cond_keep=None, attrs=None):
    """One token per sequence (B,) at `position` -> (logits (B, vocab) f32, updated cache)."""
    x = self._input(token[:, None], va, cond_keep, attrs)[:, 0]
    new_cache = []
    for block, layer_cache in zip(self.blocks, cache):
      x, layer_cache = block.decode(x, layer_cache, position)
      new_cache.append(layer_cache)
    return self.head(self.final_norm(x)).astype(jnp.float32), new_cache


def _stack_kwargs(config) -> dict:
  """The embedding and block sizes of a config's model, shared by the generator and the classifier."""
  from facemusic_jax.music import tokenizer
  m = config.model
  return dict(vocab_size=tokenizer.for_config(config).vocab_size, d_model=m.d_model, num_layers=m.num_layers,
              num_heads=m.num_heads, d_ff=m.d_ff, max_relative_distance=m.max_relative_distance, dropout=m.dropout,
              dtype=jnp.dtype(m.get("dtype", "float32")))


class MusicEmotionClassifier(nnx.Module):
  """The same relative-attention blocks over a token window, mean-pooled over its real tokens, to logits over
  EMOPIA's four quadrants. An evaluator independent of the symbolic estimator's 46 features: it reads the
  tokens themselves (never a control token: callers pass the null control in its place)."""

  def __init__(self, *, vocab_size: int, d_model: int = 128, num_layers: int = 2, num_heads: int = 4,
               d_ff: int = 512, max_relative_distance: int = 512, dropout: float = 0.1, num_classes: int = 4,
               dtype=jnp.float32, rngs: nnx.Rngs):
    self.embed = nnx.Embed(vocab_size, d_model, dtype=dtype, rngs=rngs)
    self.blocks = nnx.List([Block(d_model, num_heads, d_ff, max_relative_distance, dropout, dtype=dtype, rngs=rngs)
                            for _ in range(num_layers)])
    self.final_norm = nnx.LayerNorm(d_model, dtype=dtype, rngs=rngs)
    self.head = nnx.Linear(d_model, num_classes, dtype=dtype, rngs=rngs)
    self.dropout = Dropout(dropout)

  @classmethod
  def from_config(cls, config, rngs: nnx.Rngs) -> "MusicEmotionClassifier":
    return cls(**_stack_kwargs(config), rngs=rngs)

  def __call__(self, tokens, key_mask, *, rngs=None):
    """tokens (B, L) int, key_mask (B, L) bool (the real tokens) -> logits (B, num_classes) in f32."""
    x = self.dropout(self.embed(tokens), rngs=rngs)
    for block in self.blocks:
      x = block(x, key_mask, rngs=rngs)
    x = self.final_norm(x).astype(jnp.float32)
    w = key_mask.astype(jnp.float32)[..., None]
    pooled = (x * w).sum(1) / jnp.maximum(w.sum(1), 1.0)
    return self.head(self.dropout(pooled, rngs=rngs)).astype(jnp.float32)


# ------------------------------------------------------------------ input framing shared by training


def drop_condition(inputs, keep, null_id: int, control_token: bool):
  """inputs (B, L) with the control token (position 1) replaced by the null control where not `keep`."""
  inputs = jnp.asarray(inputs)
  if not control_token:
    return inputs
  return inputs.at[:, 1].set(jnp.where(keep, inputs[:, 1], null_id))


def classifier_inputs(inputs, null_id: int):
  """inputs (B, L) with the control token (position 1) replaced by the null control, and their key mask."""
  inputs = drop_condition(inputs, jnp.zeros(inputs.shape[:1], bool), null_id, True)
  return inputs, inputs != 0
