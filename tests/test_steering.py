"""Steering at sampling time: note-ons lean toward a major key for positive valence and a minor key for negative
(key steering), and velocities toward the loudness of the requested arousal (velocity steering)."""

import numpy as np
import pytest

from facemusic_jax import emotion
from facemusic_jax.music import estimator, generation, tokenizer

MAJOR_SCALE = {0, 2, 4, 5, 7, 9, 11}
MINOR_SCALE = {0, 2, 3, 5, 7, 8, 10}  # natural minor; the Krumhansl-Kessler minor profile favours these


@pytest.mark.parametrize("vocabulary", ["notes", "performance"])
def test_key_bias_by_hand(vocabulary):
  tok = tokenizer.get(vocabulary)
  lo, hi = tok.note_on_range
  z_major = (estimator.KK_MAJOR - estimator.KK_MAJOR.mean()) / estimator.KK_MAJOR.std()
  z_minor = (estimator.KK_MINOR - estimator.KK_MINOR.mean()) / estimator.KK_MINOR.std()
  happy = generation.key_bias(tok, 1, tonic=2, strength=1.5)  # Q1, D major
  assert happy[lo + 62] == pytest.approx(1.5 * z_major[0])  # D4, the tonic
  assert happy[lo + 66] == pytest.approx(1.5 * z_major[4])  # F#4, the major third
  assert happy[lo + 65] == pytest.approx(1.5 * z_major[3])  # F4, out of the key
  sad = generation.key_bias(tok, 3, tonic=9, strength=1.0)  # Q3, A minor
  assert sad[lo + 21] == pytest.approx(z_minor[0]) and sad[lo + 60] == pytest.approx(z_minor[3])  # A0, C4
  # Only note-ons are touched; strength 0 is no bias at all.
  assert not happy[:lo].any() and not happy[hi:].any()
  assert not generation.key_bias(tok, 2, tonic=5, strength=0.0).any()
  # Anger (Q2) is minor like sadness; others (Q4) major like happiness.
  assert (generation.key_bias(tok, 2, 9, 1.0) == sad).all()
  assert (generation.key_bias(tok, 4, 2, 1.5) == happy).all()


def test_tonics_follow_the_sample_index():
  a, b = generation.piece_tonics(3, 8), generation.piece_tonics(3, 12)
  assert (a == b[:8]).all() and ((0 <= b) & (b < 12)).all() and len(set(b)) > 1
  assert not (generation.piece_tonics(4, 8) == a).all()


def test_steering_puts_the_shipped_models_notes_in_the_key():
  """The shipped model with strong steering against none, same seeds: the share of notes in each piece's key
  (happiness asks for major, sadness for minor) rises; with the default scope only negative valence is steered,
  so happiness is left exactly as unsteered; bad requests are checked."""
  from facemusic_jax.core.errors import UserError
  gen = generation.MusicGenerator()
  tonics = generation.piece_tonics(0, 8)

  def generate(name, strength, scope):
    return gen.generate(generation.condition_from_emotion(name), num=8, length=160, seed=0, key_strength=strength,
                        key_scope=scope).pieces

  def in_key(pieces, scale):
    shares = []
    for ids, tonic in zip(pieces, tonics):
      pitches = [n.pitch for n in gen.tokenizer.decode(ids).notes]
      shares.append(np.mean([(p - tonic) % 12 in scale for p in pitches]) if pitches else np.nan)
    return np.nanmean(shares)

  plain = generate("happiness", 0.0, "both")
  steered = in_key(generate("happiness", 6.0, "both"), MAJOR_SCALE)
  assert steered > 0.95 and steered > in_key(plain, MAJOR_SCALE) + 0.1
  assert all(np.array_equal(a, b) for a, b in zip(generate("happiness", 6.0, "negative"), plain))
  sad_plain = in_key(generate("sadness", 0.0, "negative"), MINOR_SCALE)
  sad_steered = in_key(generate("sadness", 6.0, "negative"), MINOR_SCALE)
  assert sad_steered > 0.9 and sad_steered > sad_plain + 0.1, (sad_plain, sad_steered)
  condition = generation.condition_from_emotion("happiness")
  with pytest.raises(UserError, match="key_strength"):
    gen.generate(condition, num=1, key_strength=-1)
  with pytest.raises(UserError, match="key_scope"):
    gen.generate(condition, num=1, key_scope="major")
  assert emotion.class_quadrant("happiness") == 1


def test_a_group_bias_reweighs_the_group_and_keeps_its_mass():
  """apply_bias with a group against numpy: inside the group the probabilities are the model's times
  exp(bias), renormalized to the group's own total; outside it nothing changes."""
  from facemusic_jax.music import sampling
  rng = np.random.default_rng(0)
  logits, bias = rng.normal(size=(3, 9)), rng.normal(size=(3, 9)) * 3
  group = np.array([0, 1, 1, 1, 0, 0, 1, 0, 0], bool)
  got = np.exp(np.asarray(sampling.apply_bias(logits, bias, group), np.float64))
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  want = p.copy()
  w = p[:, group] * np.exp(bias[:, group])
  want[:, group] = w / w.sum(-1, keepdims=True) * p[:, group].sum(-1, keepdims=True)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(sampling.apply_bias(logits, bias), logits + bias)  # no group: plain addition


def test_groups_are_reweighed_each_within_itself():
  """Two groups with int labels: each keeps its own total probability, the tokens of group 0 keep theirs."""
  from facemusic_jax.music import sampling
  rng = np.random.default_rng(1)
  logits, bias = rng.normal(size=(2, 8)), rng.normal(size=(2, 8)) * 2
  groups = np.array([0, 1, 1, 2, 2, 2, 0, 1])
  got = np.exp(np.asarray(sampling.apply_bias(logits, bias, groups), np.float64))
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  want = p.copy()
  for label in (1, 2):
    g = groups == label
    w = p[:, g] * np.exp(bias[:, g])
    want[:, g] = w / w.sum(-1, keepdims=True) * p[:, g].sum(-1, keepdims=True)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("vocabulary", ["notes", "performance"])
def test_velocity_events_set_the_velocities_they_say(vocabulary):
  """velocity_range and velocity_values against the decoder: a note encoded at each velocity comes back at the
  value of its velocity event."""
  import note_seq
  tok = tokenizer.get(vocabulary)
  lo, hi = tok.velocity_range
  assert hi - lo == tokenizer.NUM_VELOCITY_BINS
  for velocity in (1, 40, 64, 97, 127):
    ns = note_seq.NoteSequence(total_time=0.5)
    ns.notes.add(pitch=60, velocity=velocity, start_time=0.0, end_time=0.5)
    ids = tok.encode_sequence(ns)
    events = [i for i in ids if lo <= i < hi]
    assert len(events) == 1
    assert tok.velocity_values()[events[0] - lo] == tok.decode(ids).notes[0].velocity
    assert abs(tok.decode(ids).notes[0].velocity - velocity) <= 4  # 32 bins over 1..127


@pytest.mark.parametrize("vocabulary", ["notes", "performance"])
def test_velocity_bias_by_hand(vocabulary):
  tok = tokenizer.get(vocabulary)
  lo, hi = tok.velocity_range
  # The line through EMOPIA's quadrant points: 52.5 at arousal -.5, 76.5 at +.5; 64.5 at 0, 70.5 at .25.
  assert generation.target_velocity(-0.5) == pytest.approx(52.5)
  assert generation.target_velocity(0.5) == pytest.approx(76.5)
  assert generation.target_velocity(0.25) == pytest.approx(70.5)
  assert generation.target_velocity(100.0) == 127.0 and generation.target_velocity(-100.0) == 1.0
  bias = generation.velocity_bias(tok, 0.25, strength=2.0)
  values = tok.velocity_values()
  # -strength/2 * ((v - 70.5) / 20)^2 for each velocity event, 0 for every other token.
  for i in (0, 10, 17, 31):
    assert bias[lo + i] == pytest.approx(-(values[i] - 70.5) ** 2 / 400.0, rel=1e-5)
  assert not bias[:lo].any() and not bias[hi:].any()
  assert int(np.argmax(bias[lo:hi])) == int(np.argmin(abs(values - 70.5)))  # the nearest velocity is likeliest
  assert not generation.velocity_bias(tok, 0.25, strength=0.0).any()
  groups = generation.bias_groups(tok)
  assert (groups[lo:hi] == 2).all() and (groups[slice(*tok.note_on_range)] == 1).all()
  assert set(np.unique(groups)) == {0, 1, 2}


def test_velocity_steering_moves_the_shipped_models_loudness_toward_the_arousal():
  """The shipped model, same seeds, strong velocity steering against none: sadness (arousal -.5, target 52.5)
  and surprise (.75, target 82.5) each get nearer their targets, and far apart from each other; the number of
  notes barely moves, since only the choice among velocities is reweighed."""
  from facemusic_jax.core.errors import UserError
  gen = generation.MusicGenerator()

  def velocities(name, strength):
    pieces = gen.generate(generation.condition_from_emotion(name), num=8, length=160, seed=0,
                          velocity_strength=strength, key_strength=0.0).pieces
    notes = [n.velocity for ids in pieces for n in gen.tokenizer.decode(ids).notes]
    return np.mean(notes), len(notes)

  (sad0, n_sad0), (sad, n_sad) = velocities("sadness", 0.0), velocities("sadness", 8.0)
  (sur0, _), (sur, _) = velocities("surprise", 0.0), velocities("surprise", 8.0)
  assert abs(sad - 52.5) < 6 and abs(sur - 82.5) < 6, (sad, sur)
  assert abs(sad - 52.5) < abs(sad0 - 52.5) or abs(sur - 82.5) < abs(sur0 - 82.5), (sad0, sur0)
  assert sur - sad > 20
  assert abs(n_sad - n_sad0) < 0.25 * n_sad0, (n_sad0, n_sad)
  with pytest.raises(UserError, match="velocity_strength"):
    gen.generate(generation.condition_from_emotion("sadness"), num=1, velocity_strength=-1)

