"""Relative attention, the Music Transformer and sampling, against naive references."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from facemusic_jax.core import parallel
from facemusic_jax.models import attention
from facemusic_jax.models.music_transformer import MusicTransformer
from facemusic_jax.music import sampling


def loop_relative_logits(q, rel_emb):
  """S[b, h, i, j] = q_i . E[clip(M - 1 + j - i)] for j <= i, written as plain loops."""
  q, rel_emb = np.asarray(q, np.float64), np.asarray(rel_emb, np.float64)
  b, h, length, _ = q.shape
  m = rel_emb.shape[1]
  out = np.zeros((b, h, length, length))
  for i in range(length):
    for j in range(i + 1):
      row = max(0, m - 1 + j - i)
      out[:, :, i, j] = np.einsum("bhd,hd->bh", q[:, :, i], rel_emb[:, row])
  return out


@pytest.mark.parametrize("length,num_rel", [(7, 7), (6, 10), (9, 4), (1, 3)])
def test_skewed_relative_logits_equal_naive(length, num_rel):
  k1, k2 = jax.random.split(jax.random.key(0))
  q = jax.random.normal(k1, (2, 3, length, 5))
  e = jax.random.normal(k2, (3, num_rel, 5))
  lower = np.tril(np.ones((length, length), bool))
  want = loop_relative_logits(q, e)
  for got in (attention.relative_logits(q, e), attention.relative_logits_naive(q, e)):
    np.testing.assert_allclose(np.where(lower, got, 0), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length,num_rel,block", [(12, 12, 4), (13, 5, 4), (9, 20, 16), (16, 16, 1)])
def test_blocked_relative_attention_equals_the_naive_form(length, num_rel, block):
  """Query blocks (a last partial one, distances past num_rel clipped, a block of one, one block for all) with
  padded keys give the naive full attention; so do their gradients."""
  rng = np.random.default_rng(length)
  q, k, v = (jnp.asarray(rng.standard_normal((2, 3, length, 4)), jnp.float32) for _ in range(3))
  e = jnp.asarray(rng.standard_normal((3, num_rel, 4)), jnp.float32)
  key_mask = jnp.asarray(rng.random((2, length)) > 0.2).at[:, 0].set(True)
  blocked = lambda *a: attention.relative_attention(*a, key_mask=key_mask, block=block)
  naive = lambda *a: attention.relative_attention(*a, key_mask=key_mask, skewed=False)
  np.testing.assert_allclose(jax.jit(blocked)(q, k, v, e), jax.jit(naive)(q, k, v, e), atol=1e-5)
  grads = [jax.jit(jax.grad(lambda *a: (f(*a) ** 2).sum(), argnums=(0, 1, 2, 3)))(q, k, v, e)
           for f in (blocked, naive)]
  for got, want in zip(*grads):
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_decode_relative_logits_equal_rows_of_full():
  k1, k2 = jax.random.split(jax.random.key(1))
  q = jax.random.normal(k1, (2, 3, 8, 4))
  e = jax.random.normal(k2, (3, 5, 4))
  full = loop_relative_logits(q, e)
  for t in range(8):
    got = attention.decode_relative_logits(q[:, :, t], e, t, cache_len=10)
    np.testing.assert_allclose(np.asarray(got)[..., :t + 1], full[:, :, t, :t + 1], rtol=1e-5, atol=1e-5)


def _model(cond="add", fresh=False, **kw):
  """A small model; unless `fresh`, its condition projection is random, as after training (it starts at 0)."""
  m = MusicTransformer(vocab_size=40, d_model=32, num_layers=2, num_heads=4, d_ff=64, max_relative_distance=6,
                       dropout=0.0, continuous_conditioning=cond, rngs=nnx.Rngs(0), **kw)
  if cond == "add" and not fresh:
    m.cond_proj.kernel[...] = jax.random.normal(jax.random.key(9), m.cond_proj.kernel[...].shape)
  m.eval()
  return m


@pytest.mark.parametrize("cond", ["add", "concat", "none"])
def test_cached_decoding_equals_full_forward_at_every_step(cond):
  m = _model(cond)
  tokens = jax.random.randint(jax.random.key(1), (3, 10), 0, 40)
  va = jax.random.uniform(jax.random.key(2), (3, 2), minval=-1, maxval=1)
  full = m(tokens, va)
  np.testing.assert_allclose(m(tokens, va, skewed=False), full, atol=1e-5)
  cache = m.init_cache(3, 12)
  for t in range(10):
    logits, cache = m.decode_step(tokens[:, t], va, t, cache)
    np.testing.assert_allclose(logits, full[:, t], atol=1e-5, err_msg=f"step {t}")


def test_padding_keys_do_not_change_real_positions():
  m = _model()
  tokens = jax.random.randint(jax.random.key(4), (1, 6), 3, 40)
  va = jnp.zeros((1, 2))
  padded = jnp.concatenate([tokens, jnp.zeros((1, 3), jnp.int32)], axis=1)
  mask = jnp.array([[1] * 6 + [0] * 3])
  np.testing.assert_allclose(m(padded, va, key_mask=mask)[:, :6], m(tokens, va), atol=1e-5)


def test_an_untrained_condition_changes_nothing():
  """The 'add' projection starts at zero: before fine-tuning, a conditioned model is the unconditioned one
  (what lets stage 2 start from an unconditioned pretrained model without damaging it)."""
  m = _model("add", fresh=True)
  tokens = jax.random.randint(jax.random.key(5), (2, 8), 0, 40)
  va = jnp.array([[0.6, 0.85], [-0.7, -0.2]])
  np.testing.assert_array_equal(m(tokens, va), m(tokens, jnp.zeros((2, 2)), cond_keep=jnp.array([False, False])))


def test_conditioning_changes_the_output_distribution():
  m = _model("add")
  tokens = jax.random.randint(jax.random.key(5), (1, 8), 0, 40)
  happy, sad = jnp.array([[0.6, 0.85]]), jnp.array([[-0.7, -0.2]])
  p_happy = jax.nn.softmax(m(tokens, happy))
  p_sad = jax.nn.softmax(m(tokens, sad))
  assert float(jnp.abs(p_happy - p_sad).sum(-1).mean()) > 1e-3
  # A dropped condition (classifier-free guidance) ignores va entirely.
  keep = jnp.array([False])
  np.testing.assert_allclose(m(tokens, happy, cond_keep=keep), m(tokens, sad, cond_keep=keep), atol=1e-6)


def test_filter_logits_top_k_and_top_p():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  k2 = np.asarray(sampling.filter_logits(logits, top_k=2))
  assert (k2 > -1e30).tolist() == [[True, True, False, False]]
  # top_p = 0.7: 0.5 alone is short of 0.7, 0.5 + 0.3 reaches it -> keep two.
  p = np.asarray(sampling.filter_logits(logits, top_p=0.7))
  assert (p > -1e30).tolist() == [[True, True, False, False]]
  p = np.asarray(sampling.filter_logits(logits, top_p=0.81))
  assert (p > -1e30).tolist() == [[True, True, True, False]]
  t = sampling.filter_logits(logits, temperature=0.5)
  np.testing.assert_allclose(t, logits * 2, rtol=1e-6)


OPTS = dict(max_len=20, eos_id=2, pad_id=0, top_k=10)


def test_generation_is_reproducible_and_stops_at_eos():
  m = _model()
  graphdef, state = nnx.split(m)
  fn = sampling.make_generate_fn(graphdef, **OPTS)
  prompt = jnp.array([[1, 5], [1, 6]])
  va = jnp.array([[0.6, 0.85], [-0.7, -0.2]])
  keys = sampling.sample_keys(7, 2)
  a, la, ended = fn(state, prompt, va, keys)
  b, lb, _ = fn(state, prompt, va, keys)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(a[:, :2], prompt)
  for row, n, e in zip(np.asarray(a), np.asarray(la), np.asarray(ended)):
    if 2 in row[2:]:
      first = 2 + list(row[2:]).index(2)
      assert e and n == first + 1 and (row[first + 1:] == 0).all()
    else:
      assert not e and n == 20


def test_sharded_batch_equals_one_by_one():
  assert jax.device_count() == 8
  m = _model()
  graphdef, state = nnx.split(m)
  batch = 16
  prompt = jnp.tile(jnp.array([[1, 5]]), (batch, 1))
  va = jax.random.uniform(jax.random.key(3), (batch, 2), minval=-1, maxval=1)
  keys = sampling.sample_keys(0, batch)
  mesh = parallel.make_mesh()
  contrast = (prompt, va, jnp.zeros(batch, bool))
  bias = jax.random.normal(jax.random.key(4), (batch, 40))  # each row its own: sharded with the batch
  tokens, lengths, _ = sampling.make_sharded_generate_fn(graphdef, mesh, **OPTS)(state, prompt, va, keys, contrast,
                                                                                 bias)
  assert len(tokens.sharding.device_set) == 8
  one = sampling.make_generate_fn(graphdef, **OPTS)
  for i in range(batch):
    t, n, _ = one(state, prompt[i:i + 1], va[i:i + 1], keys[i:i + 1], logit_bias=bias[i:i + 1])
    np.testing.assert_array_equal(t[0], tokens[i])
    assert int(n[0]) == int(lengths[i])


@pytest.mark.parametrize("kept", [False, True])
def test_guidance_mixes_the_condition_with_the_contrast_branch(kept):
  """Greedy guided decoding against a recompute reference: at every step the logits are
  contrast + g * (cond - contrast), where cond reads the prompt and va, and contrast reads the contrast prompt
  with the null vector (kept False: classifier-free guidance, with the null control token) or with its own
  vector (kept True: a negative condition, here the opposite valence)."""
  m = _model()
  graphdef, state = nnx.split(m)
  prompt, va, g, length = jnp.array([[1, 35]]), jnp.array([[0.5, -0.5]]), 3.0, 12
  other, other_va = (jnp.array([[1, 36]]), jnp.array([[-0.5, -0.5]])) if kept else (jnp.array([[1, 39]]), va)
  fn = sampling.make_generate_fn(graphdef, max_len=length, eos_id=2, pad_id=0, top_k=1, guidance_scale=g)
  tokens, _, _ = fn(state, prompt, va, sampling.sample_keys(0, 1), (other, other_va, jnp.array([kept])))
  seq = [1, 35]
  while len(seq) < length:
    body = jnp.array([seq])
    cond = m(body, va)[0, -1]
    contrast = m(body.at[:, 1].set(other[0, 1]), other_va, cond_keep=jnp.array([kept]))[0, -1]
    seq.append(int(jnp.argmax(contrast + g * (cond - contrast))))
    if seq[-1] == 2:
      break
  assert np.asarray(tokens)[0, :len(seq)].tolist() == seq


def test_logit_bias_is_added_to_every_step():
  """Greedy decoding with a bias against a recompute reference: each step takes argmax(logits + bias)."""
  m = _model()
  graphdef, state = nnx.split(m)
  prompt, va, length = jnp.array([[1, 35]]), jnp.array([[0.5, 0.5]]), 12
  bias = 2.0 * jax.random.normal(jax.random.key(1), (1, 40))
  fn = sampling.make_generate_fn(graphdef, max_len=length, eos_id=2, pad_id=0, top_k=1)
  tokens, _, _ = fn(state, prompt, va, sampling.sample_keys(0, 1), logit_bias=bias)
  seq = [1, 35]
  while len(seq) < length and seq[-1] != 2:
    seq.append(int(jnp.argmax(m(jnp.array([seq]), va)[0, -1] + bias[0])))
  assert np.asarray(tokens)[0, :len(seq)].tolist() == seq
  plain, _, _ = fn(state, prompt, va, sampling.sample_keys(0, 1))
  assert np.asarray(plain)[0, :len(seq)].tolist() != seq  # the bias changed the choice somewhere


def test_sampling_keeps_to_the_allowed_tokens_and_the_duration():
  m = _model()
  graphdef, state = nnx.split(m)
  allowed = jnp.zeros(40, bool).at[10:30].set(True)  # no EOS: pieces end by duration or length only
  token_steps = jnp.zeros(40, jnp.int32).at[20:30].set(jnp.arange(1, 11))  # tokens 20..29 advance 1..10 steps
  fn = sampling.make_generate_fn(graphdef, max_len=64, eos_id=2, pad_id=0, allowed=allowed,
                                 token_steps=token_steps, max_steps=25)
  tokens, lengths, ended = fn(state, jnp.tile(jnp.array([[1, 35]]), (6, 1)), jnp.zeros((6, 2)),
                              sampling.sample_keys(3, 6))
  assert not np.asarray(ended).any()
  for row, n in zip(np.asarray(tokens), np.asarray(lengths)):
    body = row[2:n]
    assert ((body >= 10) & (body < 30)).all() and (row[n:] == 0).all()
    elapsed = np.cumsum(np.asarray(token_steps)[body])
    # Stops at the first token that reaches 25 steps (or at the length limit before that).
    assert (elapsed[-1] >= 25 and (elapsed[:-1] < 25).all()) or (n == 64 and elapsed[-1] < 25)


def test_ending_bonus_by_hand():
  bonus = np.asarray(sampling.ending_bonus(jnp.array([0.0, 0.5, 0.75, 0.875, 1.0, 1.2]), 8.0, 0.75))
  np.testing.assert_allclose(bonus, [0, 0, 0, 4, 8, 8], atol=1e-6)


def test_the_ending_bonus_goes_to_eos_near_the_end_of_the_budget():
  """Greedy decoding with the ending against a recompute reference: the step that predicts position n of a
  max_len budget adds ending_bonus(n / (max_len - 1)) to EOS's logit; a strong one ends every piece with EOS
  inside the last quarter, where the plain sampler runs to the limit."""
  m = _model()
  graphdef, state = nnx.split(m)
  prompt, va, length, strength = jnp.array([[1, 35]]), jnp.array([[0.5, 0.5]]), 16, 3.0
  allowed = jnp.zeros(40, bool).at[10:30].set(True).at[2].set(True)
  fn = sampling.make_generate_fn(graphdef, max_len=length, eos_id=2, pad_id=0, top_k=1, allowed=allowed,
                                 end_strength=strength, end_start=0.5)
  tokens, _, _ = fn(state, prompt, va, sampling.sample_keys(0, 1))
  seq = [1, 35]
  while len(seq) < length and seq[-1] != 2:
    logits = m(jnp.array([seq]), va)[0, -1]
    logits = jnp.where(allowed, logits.at[2].add(sampling.ending_bonus(len(seq) / (length - 1), strength, 0.5)),
                       -jnp.inf)
    seq.append(int(jnp.argmax(logits)))
  assert np.asarray(tokens)[0, :len(seq)].tolist() == seq

  # EOS held at -20 nats: it only comes when the ending's bonus outweighs that, past 75 + 25 * 20/60 % of the budget.
  batch, no_eos = 8, jnp.zeros((8, 40)).at[:, 2].set(-20.0)
  prompts, vas, keys = jnp.tile(prompt, (batch, 1)), jnp.zeros((batch, 2)), sampling.sample_keys(5, batch)
  outputs = {k: sampling.make_generate_fn(graphdef, max_len=64, eos_id=2, pad_id=0, allowed=allowed,
                                          end_strength=k)(state, prompts, vas, keys, logit_bias=no_eos)
             for k in (0.0, 60.0)}
  _, plain_lengths, plain_ended = outputs[0.0]
  _, lengths, ended = outputs[60.0]
  assert not np.asarray(plain_ended).any() and (np.asarray(plain_lengths) == 64).all()
  assert np.asarray(ended).all() and ((np.asarray(lengths) > 0.75 * 63) & (np.asarray(lengths) < 64)).all()


def test_the_ending_follows_the_duration_budget():
  """With a duration limit the budget is time: EOS comes once 75% of max_steps have passed, before the limit."""
  m = _model()
  graphdef, state = nnx.split(m)
  allowed = jnp.zeros(40, bool).at[20:30].set(True).at[2].set(True)
  token_steps = jnp.zeros(40, jnp.int32).at[20:30].set(jnp.arange(1, 11))
  fn = sampling.make_generate_fn(graphdef, max_len=200, eos_id=2, pad_id=0, allowed=allowed, token_steps=token_steps,
                                 max_steps=100, end_strength=60.0)
  no_eos = jnp.zeros((6, 40)).at[:, 2].set(-20.0)  # EOS only once the bonus outweighs this
  tokens, lengths, ended = fn(state, jnp.tile(jnp.array([[1, 35]]), (6, 1)), jnp.zeros((6, 2)),
                              sampling.sample_keys(3, 6), logit_bias=no_eos)
  assert np.asarray(ended).all()
  for row, n in zip(np.asarray(tokens), np.asarray(lengths)):
    elapsed = int(np.asarray(token_steps)[row[2:n - 1]].sum())  # the time before EOS
    assert 75 <= elapsed < 100 + 10 and n < 200


RULES = sampling.NoteRules(note_on=10, note_off=14, time_shift=20, num_pitches=4, num_shifts=5, max_note_steps=7)


def note_rule_breaks(ids, rules=RULES):
  """Walks a token sequence as a performance decoder would: the re-struck sounding pitches, the note-offs of
  silent ones, and the notes that rang longer than rules.max_note_steps (a note still on at the end rings
  to the end)."""
  sounding, now, breaks = {}, 0, {"restruck": 0, "silent_off": 0, "too_long": 0}
  for token in ids:
    if rules.time_shift <= token < rules.time_shift + rules.num_shifts:
      now += token - rules.time_shift + 1
    elif rules.note_on <= token < rules.note_on + rules.num_pitches:
      breaks["restruck"] += token in sounding
      sounding[token] = now
    elif rules.note_off <= token < rules.note_off + rules.num_pitches:
      start = sounding.pop(token - rules.note_off + rules.note_on, None)
      if start is None:
        breaks["silent_off"] += 1
      else:
        breaks["too_long"] += now - start > rules.max_note_steps
  breaks["too_long"] += sum(now - start > rules.max_note_steps for start in sounding.values())
  return breaks


def test_note_rules_keep_every_sampled_performance_well_formed():
  m = _model()
  graphdef, state = nnx.split(m)
  allowed = jnp.zeros(40, bool).at[10:25].set(True)  # notes and shifts only: every piece runs to the length
  prompt, va, keys = jnp.tile(jnp.array([[1, 35]]), (8, 1)), jnp.zeros((8, 2)), sampling.sample_keys(5, 8)
  options = dict(max_len=96, eos_id=2, pad_id=0, allowed=allowed, temperature=3.0)
  ruled, _, _ = sampling.make_generate_fn(graphdef, rules=RULES, **options)(state, prompt, va, keys)
  free, _, _ = sampling.make_generate_fn(graphdef, **options)(state, prompt, va, keys)
  total = collections.Counter()
  for row in np.asarray(free):
    total.update(note_rule_breaks(row[2:].tolist()))
  assert all(total[k] > 0 for k in ("restruck", "silent_off", "too_long")), total  # the rules have work to do
  for row in np.asarray(ruled):
    assert note_rule_breaks(row[2:].tolist()) == {"restruck": 0, "silent_off": 0, "too_long": 0}
    notes = ((row >= 10) & (row < 18)).sum()
    assert notes > 20  # still music, not a sequence of shifts


def test_note_mask_by_hand():
  # Pitch 1 sounding since step 2 (age 4 at step 6: 3 more steps allowed), pitch 3 since step 6.
  onsets, now = jnp.array([[-1, 2, -1, 6]]), jnp.array([6])
  mask = np.asarray(sampling.note_mask(RULES, onsets, now, 40))[0]
  assert mask[[10, 12]].all() and not mask[[11, 13]].any()  # note-ons of silent pitches only
  assert mask[[15, 17]].all() and not mask[[14, 16]].any()  # note-offs of sounding pitches only
  assert mask[20:23].all() and not mask[23:25].any()  # shifts of 1..3 steps
  assert mask[:10].all() and mask[25:].all()  # other tokens untouched
  # At step 9 pitch 1 has rung its 7 steps: only its note-off may follow.
  mask = np.asarray(sampling.note_mask(RULES, onsets, jnp.array([9]), 40))[0]
  assert np.flatnonzero(mask).tolist() == [15]
  after = sampling.note_onsets(RULES, onsets, jnp.array([15]), jnp.array([9]))
  assert np.asarray(after).tolist() == [[-1, -1, -1, 6]]
  after = sampling.note_onsets(RULES, after, jnp.array([10]), jnp.array([9]))
  assert np.asarray(after).tolist() == [[9, -1, -1, 6]]


DURATION_RULES = sampling.DurationRules(note_on=10, num_pitches=4, duration=14, num_durations=3, time_shift=20,
                                        num_shifts=5)


def duration_rule_breaks(ids, rules=DURATION_RULES):
  """A note-on not followed by a duration, and a duration not after a note-on (a walker over the ids)."""
  is_on = lambda t: rules.note_on <= t < rules.note_on + rules.num_pitches
  is_duration = lambda t: rules.duration <= t < rules.duration + rules.num_durations
  breaks = {"unfinished_note": 0, "lone_duration": 0}
  for prev, token in zip([None] + ids[:-1], ids):
    breaks["unfinished_note"] += prev is not None and is_on(prev) and not is_duration(token)
    breaks["lone_duration"] += is_duration(token) and not (prev is not None and is_on(prev))
  breaks["unfinished_note"] += bool(ids) and is_on(ids[-1])
  return breaks


def test_duration_rules_give_every_note_one_duration():
  m = _model()
  graphdef, state = nnx.split(m)
  prompt, va, keys = jnp.tile(jnp.array([[1, 35]]), (8, 1)), jnp.zeros((8, 2)), sampling.sample_keys(6, 8)
  options = dict(max_len=64, eos_id=2, pad_id=0, temperature=3.0)
  ruled, lengths, _ = sampling.make_generate_fn(graphdef, rules=DURATION_RULES, **options)(state, prompt, va, keys)
  free, free_lengths, _ = sampling.make_generate_fn(graphdef, **options)(state, prompt, va, keys)
  total = collections.Counter()
  for row, n in zip(np.asarray(free), np.asarray(free_lengths)):
    total.update(duration_rule_breaks(row[2:n].tolist()))
  assert total["unfinished_note"] > 0 and total["lone_duration"] > 0, total  # the rules have work to do
  notes = 0
  for row, n in zip(np.asarray(ruled), np.asarray(lengths)):
    body = row[2:n].tolist()
    if body and body[-1] == 2:
      body = body[:-1]  # EOS
    assert duration_rule_breaks(body) == {"unfinished_note": 0, "lone_duration": 0}, body
    notes += sum(10 <= t < 14 for t in body)
  assert notes > 20


def test_duration_mask_by_hand():
  mask = np.asarray(DURATION_RULES.mask(jnp.array([True, False]), jnp.array([0, 0]), 40))
  assert np.flatnonzero(mask[0]).tolist() == [14, 15, 16]  # after a note-on: its duration only
  assert not mask[1, 14:17].any() and mask[1, :14].all() and mask[1, 17:].all()
  after = DURATION_RULES.update(jnp.array([False, True, True]), jnp.array([13, 15, 20]), jnp.zeros(3, jnp.int32))
  assert np.asarray(after).tolist() == [True, False, False]
  assert np.asarray(DURATION_RULES.token_steps(40))[[19, 20, 24, 25]].tolist() == [0, 1, 5, 0]
