"""Sampling from the Music Transformer: one jitted `lax.while_loop` over a fixed-size key/value cache.

The prompt (e.g. BOS + emotion control token) is fed through the same loop, one token per step, so every
step costs O(t) attention and O(1) model work. Each sequence draws from its own key (`fold_in(key, step)`),
so a sample does not depend on which batch or device generated it: a batch spread over the devices of a
mesh (`generate_sharded`, `jax.shard_map`, each device looping over its own shard until its own sequences
are done) equals the same samples generated one by one.

Rules keep a sampled piece well formed. `NoteRules` (performance vocabulary): a pitch sounds at most once at
a time, a note-off only ends a sounding note, and no note rings past a limit. Small models break these rules
often (the 2,400-step CPU model unguided: a third of its note-ons re-struck a sounding pitch and half its
note-offs ended nothing), and a note that never ends drones to the end of the piece. `DurationRules` (note
duration vocabulary): each note-on is followed by its duration.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import PartitionSpec as P

from facemusic_jax.core import parallel


def filter_logits(logits, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0):
  """Temperature, then top-k, then nucleus (top-p) filtering; removed entries become -inf."""
  logits = logits / jnp.maximum(temperature, 1e-6)
  neg = jnp.finfo(logits.dtype).min
  if top_k and top_k < logits.shape[-1]:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, neg, logits)
  if top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    # Keep the smallest set whose mass reaches top_p: a token stays if the mass before it is < top_p.
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    cutoff = jnp.min(jnp.where(mass_before < top_p, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    logits = jnp.where(logits < cutoff, neg, logits)
  return logits


def apply_bias(logits, bias, group=None):
  """logits (B, V) plus bias (B, V). With `group` (V,) (bool, or int labels known when tracing), the bias only
  reweighs the tokens of each nonzero group among themselves: each group's total probability, and that of
  every token of group 0 (or False), stay what the model gave (e.g. a key profile on the note-ons changes
  which pitches are played, not how many notes; a velocity profile on the velocity events changes how loud,
  not how often the loudness changes)."""
  if group is None:
    return logits + bias
  group = np.asarray(group).astype(np.int32)
  logits = jnp.asarray(logits)  # its dtype decides the mask value below (a float64 array would become float32)
  logp = jax.nn.log_softmax(logits, axis=-1)
  biased = logp + bias
  neg = jnp.finfo(logits.dtype).min
  out = logp
  for label in np.unique(group[group != 0]):
    member = group == label

    def mass(x):
      return jax.nn.logsumexp(jnp.where(member, x, neg), axis=-1, keepdims=True)

    out = jnp.where(member, biased - mass(biased) + mass(logp), out)
  return out


def _shift_steps(time_shift: int, num_shifts: int, vocab: int):
  """(vocab,) the time steps each token advances: a shift of n steps is id time_shift + n - 1."""
  ids = jnp.arange(vocab)
  return jnp.where((ids >= time_shift) & (ids < time_shift + num_shifts), ids - time_shift + 1, 0).astype(jnp.int32)


class NoteRules(NamedTuple):
  """The performance vocabulary's rules (note-on/note-off events), and the longest note allowed (in steps).

  Like every rule set the sampler takes: `init(batch)` the per-sequence state, `mask(state, now, vocab)` the
  tokens allowed next, `update(state, token, now)` the state after a token, `token_steps(vocab)` the time
  each token advances.
  """
  note_on: int  # id of the note-on of pitch 0 (pitch p: note_on + p)
  note_off: int  # id of the note-off of pitch 0
  time_shift: int  # id of a one-step time shift (n steps: time_shift + n - 1)
  num_pitches: int
  num_shifts: int
  max_note_steps: int

  def token_steps(self, vocab: int):
    return _shift_steps(self.time_shift, self.num_shifts, vocab)

  def init(self, batch: int):
    return jnp.full((batch, self.num_pitches), -1, jnp.int32)  # the onset step of each sounding pitch

  def mask(self, onsets, now, vocab: int):
    return note_mask(self, onsets, now, vocab)

  def update(self, onsets, token, now):
    return note_onsets(self, onsets, token, now)


class DurationRules(NamedTuple):
  """The note-duration vocabulary's rule: a note-on is followed by its duration, and a duration follows
  nothing else (so every note has a length and EOS never cuts a note in half). Durations are bounded by the
  vocabulary itself, and a pitch struck again while sounding ends there when decoded."""
  note_on: int
  num_pitches: int
  duration: int  # id of the first duration
  num_durations: int
  time_shift: int
  num_shifts: int

  def token_steps(self, vocab: int):
    return _shift_steps(self.time_shift, self.num_shifts, vocab)

  def init(self, batch: int):
    return jnp.zeros(batch, bool)  # whether the last token was a note-on

  def mask(self, after_note_on, now, vocab: int):
    del now
    ids = jnp.arange(vocab)[None]
    is_duration = (ids >= self.duration) & (ids < self.duration + self.num_durations)
    return is_duration == after_note_on[:, None]

  def update(self, after_note_on, token, now):
    del after_note_on, now
    return (token >= self.note_on) & (token < self.note_on + self.num_pitches)


def note_mask(rules: NoteRules, onsets, now, vocab: int):
  """(B, vocab) bool: the tokens that keep each sequence well formed.

  onsets (B, pitches): the step at which each sounding pitch began, -1 for silent ones; now (B,): the current
  step. A silent pitch may start and a sounding one may end; a time shift may not carry the oldest sounding
  note past max_note_steps; once a note has rung that long, only note-offs of such notes may follow.
  """
  sounding = onsets >= 0
  age = jnp.where(sounding, now[:, None] - onsets, 0)
  overdue = sounding & (age >= rules.max_note_steps)
  budget = jnp.where(sounding.any(axis=1), rules.max_note_steps - age.max(axis=1), jnp.iinfo(jnp.int32).max)
  shifts = jnp.arange(1, rules.num_shifts + 1)[None] <= budget[:, None]
  mask = jnp.ones((onsets.shape[0], vocab), bool)
  mask = mask.at[:, rules.note_on:rules.note_on + rules.num_pitches].set(~sounding)
  mask = mask.at[:, rules.note_off:rules.note_off + rules.num_pitches].set(sounding)
  mask = mask.at[:, rules.time_shift:rules.time_shift + rules.num_shifts].set(shifts)
  forced = jnp.zeros_like(mask).at[:, rules.note_off:rules.note_off + rules.num_pitches].set(overdue)
  return jnp.where(overdue.any(axis=1, keepdims=True), forced, mask)


def note_onsets(rules: NoteRules, onsets, token, now):
  """The onsets after `token` (B,) at step `now` (B,): a note-on starts its pitch, a note-off silences it."""
  pitches = jnp.arange(rules.num_pitches)[None]
  on, off = (token - rules.note_on)[:, None], (token - rules.note_off)[:, None]
  onsets = jnp.where(pitches == on, now[:, None], onsets)
  return jnp.where(pitches == off, -1, onsets)


def ending_bonus(progress, strength: float, start: float):
  """The EOS logit bonus at `progress` (the used share of a sequence's budget, 0..1): 0 until `start`, then
  rising linearly to `strength` at 1."""
  return strength * jnp.clip((progress - start) / (1.0 - start), 0.0, 1.0)


def generate(model, prompt, va, keys, *, max_len: int, eos_id: int, pad_id: int, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, guidance_scale: float = 1.0, contrast_prompt=None,
             contrast_va=None, contrast_keep=None, logit_bias=None, allowed=None, token_steps=None,
             max_steps: int | None = None, rules=None, attrs=None, contrast_attrs=None, bias_group=None,
             end_strength: float = 0.0, end_start: float = 0.75):
  """Samples continuations of `prompt` (B, P) up to `max_len` tokens in total.

  va (B, 2): the continuous condition; keys (B,) one PRNG key per sequence (or its key data). guidance_scale g != 1
  samples from contrast + g * (cond - contrast) logits. The contrast branch reads `contrast_prompt` (B, P)
  (default: the prompt) with `contrast_va` (B, 2) (default: va) where `contrast_keep` (B,) bool is set, and the
  null vector where it is not (default: nowhere). So by default, with the null control token in
  contrast_prompt, it is the unconditioned model: classifier-free guidance, for a model trained with condition
  dropout; with another condition kept, guidance pushes away from that condition (a negative prompt).
  attrs (B, A): attribute bins of a model conditioned on attributes (0: not given; default: none given); the
  contrast branch reads `contrast_attrs` (default: none given, as the unconditioned model has none).
  logit_bias (B, vocab): added to the (guided) logits of every step, before the rules and the filters (default:
  none; e.g. a key profile on the note-ons, generation.key_bias); with bias_group (vocab,) bool or int labels it
  reweighs each group's tokens among themselves (`apply_bias`). allowed (vocab,) bool: the tokens that may be
  sampled (default: all). token_steps (vocab,) int with max_steps: the time each token advances; a sequence ends
  once its time reaches max_steps (a duration limit). rules: keep the note events well formed (`NoteRules`
  or `DurationRules`; the prompt's own notes count; their token_steps is the default). end_strength: an ending
  that lands instead of a cut: once a sequence has used `end_start` of its budget (tokens, or time with
  max_steps, whichever is further), EOS gets a logit bonus rising linearly to `end_strength` at the budget's
  end (`ending_bonus`), so the model ends where it finds an end most plausible. Returns (tokens
  (B, max_len) padded with pad_id after the end, lengths (B,), and whether each sequence ended with EOS (B,)).
  """
  batch, prompt_len = prompt.shape
  if not jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):  # raw key data (B, 2), as global arrays carry keys
    keys = jax.random.wrap_key_data(keys)
  if not 0 < prompt_len < max_len:
    raise ValueError(f"prompt length {prompt_len} must be in [1, max_len={max_len})")
  guided = guidance_scale != 1.0
  prompt = prompt.astype(jnp.int32)
  contrast_prompt = prompt if contrast_prompt is None else contrast_prompt.astype(jnp.int32)
  contrast_va = va if contrast_va is None else contrast_va
  contrast_keep = jnp.zeros(batch, bool) if contrast_keep is None else contrast_keep.astype(bool)
  if attrs is not None and contrast_attrs is None:
    contrast_attrs = jnp.zeros_like(attrs)
  tokens = jnp.full((batch, max_len), pad_id, jnp.int32).at[:, :prompt_len].set(prompt)
  cache = model.init_cache(2 * batch if guided else batch, max_len)
  vocab = model.vocab_size
  if token_steps is None and rules is not None:
    token_steps = rules.token_steps(vocab)
  timed = token_steps is not None and max_steps is not None

  def step_logits(token, t, cache):
    if not guided:
      return model.decode_step(token, va, t, cache, attrs=attrs)
    keep = jnp.concatenate([jnp.ones(batch, bool), contrast_keep])
    contrast_token = jnp.where(t < prompt_len, contrast_prompt[:, jnp.minimum(t, prompt_len - 1)], token)
    both_attrs = None if attrs is None else jnp.concatenate([attrs, contrast_attrs.astype(attrs.dtype)])
    logits, cache = model.decode_step(jnp.concatenate([token, contrast_token]),
                                      jnp.concatenate([va, contrast_va.astype(va.dtype)]), t, cache, cond_keep=keep,
                                      attrs=both_attrs)
    cond, contrast = logits[:batch], logits[batch:]
    return contrast + guidance_scale * (cond - contrast), cache

  def body(carry):
    t, tokens, cache, done, ended, elapsed, ruled = carry
    logits, cache = step_logits(tokens[:, t], t, cache)
    if logit_bias is not None:
      logits = apply_bias(logits, logit_bias.astype(logits.dtype), bias_group)
    if end_strength:
      progress = jnp.full((batch,), (t + 1) / (max_len - 1), jnp.float32)
      if timed:
        progress = jnp.maximum(progress, elapsed / max_steps)
      bonus = ending_bonus(progress, end_strength, end_start).astype(logits.dtype)
      logits = logits.at[:, eos_id].add(bonus)
    mask = jnp.ones((batch, vocab), bool) if allowed is None else jnp.broadcast_to(allowed, (batch, vocab))
    if rules is not None:
      mask = mask & rules.mask(ruled, elapsed, vocab)
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    logits = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p)
    step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, t)
    sampled = jax.vmap(jax.random.categorical)(step_keys, logits).astype(jnp.int32)
    in_prompt = t + 1 < prompt_len
    nxt = jnp.where(in_prompt, tokens[:, t + 1], jnp.where(done, pad_id, sampled))
    ended = ended | (~in_prompt & ~done & (nxt == eos_id))
    if token_steps is not None:
      elapsed = elapsed + jnp.where(done, 0, token_steps[nxt])
    if rules is not None:
      ruled = rules.update(ruled, nxt, elapsed)
    done = done | ended | ((elapsed >= max_steps) if timed else False)
    return t + 1, tokens.at[:, t + 1].set(nxt), cache, done, ended, elapsed, ruled

  def cond(carry):
    t, done = carry[0], carry[3]
    return (t < max_len - 1) & ~jnp.all(done)

  init = (jnp.int32(0), tokens, cache, jnp.zeros(batch, bool), jnp.zeros(batch, bool), jnp.zeros(batch, jnp.int32),
          rules.init(batch) if rules is not None else jnp.zeros(batch, bool))
  _, tokens, _, _, ended, _, _ = jax.lax.while_loop(cond, body, init)
  positions = jnp.arange(1, max_len + 1)
  lengths = jnp.max(jnp.where(tokens != pad_id, positions, 0), axis=1)  # through the last real token
  return tokens, lengths, ended


def sample_keys(seed: int, num: int, offset: int = 0):
  """One key per sample index: sample i of a run is the same however the batch is split."""
  base = jax.random.key(seed)
  return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(offset, offset + num))


def _contrast_kwargs(contrast) -> dict:
  if contrast is None:
    return {}
  prompt, va, keep = contrast
  return {"contrast_prompt": prompt, "contrast_va": va, "contrast_keep": keep}


def _attr_kwargs(attrs) -> dict:
  if attrs is None:
    return {}
  attrs, contrast_attrs = attrs
  return {"attrs": attrs, "contrast_attrs": contrast_attrs}


def make_generate_fn(graphdef, **options):
  """A jitted (state, prompt, va, keys, contrast=None, logit_bias=None, attrs=None) -> (tokens, lengths, ended)
  on one device; contrast is None or (contrast_prompt, contrast_va, contrast_keep), attrs None or (attrs,
  contrast_attrs) (see `generate`)."""

  def fn(state, prompt, va, keys, contrast=None, logit_bias=None, attrs=None):
    return generate(nnx.merge(graphdef, state), prompt, va, keys, **_contrast_kwargs(contrast),
                    logit_bias=logit_bias, **_attr_kwargs(attrs), **options)

  return jax.jit(fn)


def make_sharded_generate_fn(graphdef, mesh, *, attributes: bool = False, **options):
  """Batch generation over every device of `mesh`: the batch is split along 'data' and each device runs
  its own while_loop (stopping when its own sequences are done); the model state is replicated.
  Called as (state, prompt, va, keys, (contrast_prompt, contrast_va, contrast_keep), logit_bias) -> (tokens,
  lengths, ended), and with `attributes` one more argument, (attrs, contrast_attrs)."""

  def local(state, prompt, va, keys, contrast, logit_bias, attrs=None):
    return generate(nnx.merge(graphdef, state), prompt, va, keys, **_contrast_kwargs(contrast),
                    logit_bias=logit_bias, **_attr_kwargs(attrs), **options)

  data = P(parallel.DATA_AXIS)
  in_specs = (P(), data, data, data, (data, data, data), data) + (((data, data),) if attributes else ())
  sharded = jax.shard_map(local, mesh=mesh, in_specs=in_specs, out_specs=(data, data, data), check_vma=False)
  return jax.jit(sharded)
