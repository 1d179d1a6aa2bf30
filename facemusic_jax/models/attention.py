"""Relative global attention (Huang et al., 2018, "Music Transformer") as small pure functions.

Causal self-attention whose logits add a learned term for the distance between query i and key j:
    logits[i, j] = (q_i . k_j + q_i . E[r(j - i)]) / sqrt(d)      for j <= i
where E holds one embedding per distance 0, -1, ..., -(M-1) (per head) and distances beyond M-1 share the
farthest embedding. Shapes: q, k, v (B, H, L, D); E (H, M, D), row M-1 is distance 0 and row M-1-k is
distance -k.

Full sequences use the "skewing" trick: Q @ E^T gives logits indexed by (query, distance); reading them with a
stride one shorter than a row moves them to (query, key), with nothing of size L x L x D ever built. They are
computed by query blocks: the queries of block b see keys 0..(b+1)*block - 1 only, so the masked upper
triangle is mostly never computed (with 8 blocks, about 9/16 of the L x L work). Decoding one query at
position t needs no skewing: its distances to keys 0..T-1 are t..t-T+1, a gather of Q @ E^T.
"""

# Queries per block of full-sequence attention. Measured on 2 CPU cores (batch 8, 8 heads of 32, L = 512,
# forward + backward): one block 266 ms, blocks of 256 / 128 / 64: 263 / 191 / 157 ms.
BLOCK = 64

import jax
import jax.numpy as jnp


def distance_rows(num_rel: int, length: int) -> jax.Array:
  """Rows of E for distances -(length-1) .. 0 (ascending), clipping the far ones to row 0."""
  return jnp.clip(num_rel - length + jnp.arange(length), 0, num_rel - 1)


def block_relative_logits(q: jax.Array, rel_emb: jax.Array, start: int, num_keys: int) -> jax.Array:
  """Relative logits of the queries at positions start .. start+n-1 (q (B, H, n, D)) against keys
  0 .. num_keys-1: (B, H, n, num_keys). Entries of keys after their query are garbage, masked by the caller.

  Q @ E^T over the distances -(start+n-1) .. num_keys-start (W = num_keys + n columns, column c is distance
  c - (start+n-1)) puts query r's key j at column j + n-1 - r: read row-major with stride W - 1 from offset
  n - 1, the rows line up by key.
  """
  b, h, n, _ = q.shape
  width = num_keys + n
  distances = jnp.arange(width) - (start + n - 1)
  rows = jnp.clip(rel_emb.shape[1] - 1 + distances, 0, rel_emb.shape[1] - 1)  # far ones share the last row
  raw = jnp.einsum("bhid,hmd->bhim", q, rel_emb[:, rows]).reshape(b, h, n * width)
  return raw[..., n - 1:n - 1 + n * (width - 1)].reshape(b, h, n, width - 1)[..., :num_keys]


def relative_logits(q: jax.Array, rel_emb: jax.Array) -> jax.Array:
  """q (B, H, L, D), rel_emb (H, M, D) -> (B, H, L, L) relative logits via skewing (memory O(L^2 + LD))."""
  return block_relative_logits(q, rel_emb, 0, q.shape[-2])


def relative_logits_naive(q: jax.Array, rel_emb: jax.Array) -> jax.Array:
  """The textbook O(L^2 D) version: gathers an (L, L, D) embedding tensor per head. Reference/bench only."""
  length, num_rel = q.shape[-2], rel_emb.shape[1]
  i = jnp.arange(length)[:, None]
  j = jnp.arange(length)[None, :]
  rows = jnp.clip(num_rel - 1 + (j - i), 0, num_rel - 1)  # (L, L)
  emb = rel_emb[:, rows]  # (H, L, L, D)
  return jnp.einsum("bhid,hijd->bhij", q, emb)


def causal_mask(length: int) -> jax.Array:
  return jnp.tril(jnp.ones((length, length), bool))


def attend(q, k, v, rel, mask) -> jax.Array:
  """softmax((q k^T + rel) / sqrt(D), masked) v, with f32 logits and softmax."""
  scale = q.shape[-1] ** -0.5
  logits = (jnp.einsum("bhid,bhjd->bhij", q, k).astype(jnp.float32) + rel.astype(jnp.float32)) * scale
  logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  return jnp.einsum("bhij,bhjd->bhid", weights, v)


def relative_attention(q, k, v, rel_emb, *, key_mask=None, skewed: bool = True, block: int = BLOCK) -> jax.Array:
  """Causal relative self-attention over a whole sequence. key_mask (B, L) marks real (non-pad) keys.

  skewed: by query blocks of `block` with skewed relative logits; False: the naive full form (reference)."""
  length = q.shape[-2]
  if not skewed:
    mask = causal_mask(length)[None, None]
    if key_mask is not None:
      mask = mask & key_mask[:, None, None, :].astype(bool)
    return attend(q, k, v, relative_logits_naive(q, rel_emb), mask)
  outputs = []
  for start in range(0, length, block):
    end = min(start + block, length)  # the block's queries see keys 0..end-1
    mask = (jnp.arange(end)[None, :] <= jnp.arange(start, end)[:, None])[None, None]
    if key_mask is not None:
      mask = mask & key_mask[:, None, None, :end].astype(bool)
    rel = block_relative_logits(q[:, :, start:end], rel_emb, start, end)
    outputs.append(attend(q[:, :, start:end], k[:, :, :end], v[:, :, :end], rel, mask))
  return jnp.concatenate(outputs, axis=2)


def decode_relative_logits(q_t: jax.Array, rel_emb: jax.Array, position, cache_len: int) -> jax.Array:
  """One query per sequence at `position` (scalar or (B,)): q_t (B, H, D) -> (B, H, T) relative logits
  against cache slots 0..T-1 (slots after `position` are garbage and masked by the caller)."""
  num_rel = rel_emb.shape[1]
  per_row = jnp.einsum("bhd,hmd->bhm", q_t, rel_emb)  # (B, H, M): O(M D) per step
  position = jnp.broadcast_to(jnp.asarray(position), (q_t.shape[0],))
  rows = jnp.clip(num_rel - 1 + jnp.arange(cache_len)[None, :] - position[:, None], 0, num_rel - 1)  # (B, T)
  return jnp.take_along_axis(per_row, rows[:, None, :], axis=-1)


def decode_attention(q_t, k_cache, v_cache, rel_emb, position, *, key_mask=None) -> jax.Array:
  """Attention of one new query (B, H, D) over a fixed-size cache (B, H, T, D) holding keys 0..position."""
  cache_len = k_cache.shape[2]
  rel = decode_relative_logits(q_t, rel_emb, position, cache_len)
  position = jnp.broadcast_to(jnp.asarray(position), (q_t.shape[0],))
  mask = jnp.arange(cache_len)[None, :] <= position[:, None]  # (B, T)
  if key_mask is not None:
    mask = mask & key_mask.astype(bool)
  out = attend(q_t[:, :, None], k_cache, v_cache, rel[:, :, None], mask[:, None, None, :])
  return out[:, :, 0]
