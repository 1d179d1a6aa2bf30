"""The symbolic emotion estimator on hand-built MIDI, synthetic features and the shipped weights.

No data from ../shared/data: every MIDI file here is written by pretty_midi in the test.
"""

import io
import itertools

import numpy as np
import pretty_midi
import pytest

from facemusic_jax import emotion
from facemusic_jax.labels import sources
from facemusic_jax.music import estimator
from facemusic_jax.music.estimator import features, fitting, model

MAJOR_SCALE = [0, 2, 4, 5, 7, 9, 11, 12]
MINOR_SCALE = [0, 2, 3, 5, 7, 8, 10, 12]  # natural minor


def make_midi(pitches, step=0.5, length=0.4, velocity=80, velocity_jitter=0, pedal=False, chord=1, program=0,
              drums=False):
  """One instrument playing `pitches` (each as a `chord`-note stack a third apart) every `step` seconds."""
  rng = np.random.default_rng(0)
  pm = pretty_midi.PrettyMIDI()
  inst = pretty_midi.Instrument(program=program, is_drum=drums)
  for i, p in enumerate(pitches):
    for c in range(chord):
      v = int(np.clip(velocity + rng.integers(-velocity_jitter, velocity_jitter + 1), 1, 127))
      inst.notes.append(pretty_midi.Note(velocity=v, pitch=p + 4 * c, start=i * step, end=i * step + length))
  if pedal:
    end = len(pitches) * step
    inst.control_changes += [pretty_midi.ControlChange(64, 127, 0.0), pretty_midi.ControlChange(64, 0, end)]
  pm.instruments.append(inst)
  return pm


def features_of(pm) -> dict:
  return dict(zip(estimator.FEATURE_NAMES, estimator.midi_features(pm)))


def up_and_down(scale, base=60):
  return [base + p for p in scale + scale[::-1][1:]]


# ---------------------------------------------------------------- features


def test_major_scale_is_major_and_minor_scale_is_minor(tmp_path):
  major, minor = make_midi(up_and_down(MAJOR_SCALE)), make_midi(up_and_down(MINOR_SCALE))
  path = tmp_path / "minor.mid"
  minor.write(str(path))  # through a file too: the path and the object give the same features
  f_major, f_minor = features_of(major), dict(zip(estimator.FEATURE_NAMES, estimator.midi_features(str(path))))
  assert f_major["major_strength"] > f_major["minor_strength"]
  assert f_minor["minor_strength"] > f_minor["major_strength"]
  assert f_major["mode"] > 0 > f_minor["mode"]
  # Writing rounds times to ticks (1/440 s here).
  np.testing.assert_allclose(estimator.midi_features(str(path)), estimator.midi_features(minor), atol=0.01)


def test_texture_of_a_detached_scale():
  f = features_of(make_midi(up_and_down(MAJOR_SCALE), step=0.5, length=0.4))  # 15 notes, 0.1 s gaps
  assert f["silence_fraction"] == pytest.approx(14 * 0.1 / (14 * 0.5 + 0.4))
  assert f["polyphony_mean"] == pytest.approx(1.0)
  assert f["chord_size_mean"] == 1.0
  assert f["staccato_fraction"] == 0.0 and f["legato_fraction"] == 0.0  # 0.4 s of a 0.5 s gap
  assert f["melodic_step_fraction"] == 1.0  # a scale moves by steps only


def test_union_length():
  starts, ends = np.array([0.0, 1.0, 1.5, 5.0]), np.array([2.0, 1.2, 3.0, 6.0])
  assert features.union_length(starts, ends, 0.0, 10.0) == pytest.approx(4.0)
  assert features.union_length(starts, ends, 2.5, 5.5) == pytest.approx(1.0)


def test_key_correlation_peaks_on_the_profiles_own_key():
  # A histogram equal to the C-major profile rotated to E correlates 1 with E major.
  major, minor = features.key_correlations(np.roll(estimator.KK_MAJOR, 4))
  assert major.argmax() == 4
  assert major[4] == pytest.approx(1.0)
  assert minor.max() < 1.0


def test_triads_and_thirds():
  pm_major, pm_minor = pretty_midi.PrettyMIDI(), pretty_midi.PrettyMIDI()
  for pm, triad in ((pm_major, (60, 64, 67)), (pm_minor, (60, 63, 67))):
    inst = pretty_midi.Instrument(0)
    for i in range(8):
      inst.notes += [pretty_midi.Note(80, p, i * 1.0, i * 1.0 + 0.9) for p in triad]
    pm.instruments.append(inst)
  f_major, f_minor = features_of(pm_major), features_of(pm_minor)
  assert f_major["minor_triad_fraction"] == 0.0
  assert f_minor["minor_triad_fraction"] == 1.0
  # C-E-G holds one major third (ic 4), one minor third (ic 3) and one fifth (ic 5): a third each.
  for ic, expected in ((3, 1 / 3), (4, 1 / 3), (5, 1 / 3), (1, 0.0), (6, 0.0)):
    assert f_major[f"interval_class_{ic}"] == pytest.approx(expected)
  assert f_major["chord_size_mean"] == 3.0


def fast_loud_high(pedal=True):
  return make_midi(list(range(72, 96)) * 4, step=0.1, length=0.08, velocity=110, velocity_jitter=5,
                   pedal=pedal, chord=2)


def slow_soft_low(pedal=True):
  return make_midi(list(range(40, 52)) * 2, step=0.9, length=0.85, velocity=35, velocity_jitter=5,
                   pedal=pedal)


def test_fast_loud_high_vs_slow_soft_low_features():
  fast, slow = features_of(fast_loud_high()), features_of(slow_soft_low())
  for name in ("log_notes_per_s", "log_onsets_per_s", "velocity_mean", "pitch_mean", "chord_size_mean"):
    assert fast[name] > slow[name], name
  assert fast["log_median_ioi"] < slow["log_median_ioi"]
  assert fast["log_duration_mean"] < slow["log_duration_mean"]
  # 192 notes; the pedal holds the last ones until it lifts at 96 * 0.1 s.
  assert np.exp(fast["log_notes_per_s"]) - 1 == pytest.approx(2 * 96 / (96 * 0.1), rel=1e-6)


def test_the_pedal_is_read_as_the_tokenizer_reads_it():
  """Notes under the sustain pedal last until it lifts (or their pitch is struck again): a pedalled file and
  its tokenize -> decode round trip (what generated music is) give the same features, up to 10 ms steps
  and 32 velocity bins."""
  from note_seq import midi_io
  from facemusic_jax.music import tokenizer
  pedalled = make_midi(up_and_down(MAJOR_SCALE), step=0.5, length=0.2, velocity_jitter=10, pedal=True)
  dry = make_midi(up_and_down(MAJOR_SCALE), step=0.5, length=0.2, velocity_jitter=10)
  assert features_of(pedalled)["log_duration_mean"] > features_of(dry)["log_duration_mean"] + 0.5
  # Held to the next note of the same pitch (a scale up and down: C held from 0 s to 7 s) or the pedal's end.
  notes = features.midi_notes(pedalled)
  assert notes[0, 1] == pytest.approx(7.0) and notes[-1, 1] == pytest.approx(7.5)
  tok = tokenizer.get()
  buffer = io.BytesIO()
  pedalled.write(buffer)
  decoded = midi_io.note_sequence_to_pretty_midi(tok.decode(tok.encode_midi(buffer.getvalue())))
  np.testing.assert_allclose(estimator.midi_features(decoded), estimator.midi_features(pedalled), atol=0.05)


def test_shipped_model_hears_more_arousal_in_fast_loud_high_music():
  est = estimator.load()
  for jitter in (5, 0):  # with dynamics: the performance model; one velocity: the score model
    fast = make_midi(list(range(72, 96)) * 4, step=0.1, length=0.08, velocity=110, velocity_jitter=jitter, chord=2)
    slow = make_midi(list(range(40, 52)) * 2, step=0.9, length=0.85, velocity=35, velocity_jitter=jitter)
    x = np.stack([estimator.midi_features(fast), estimator.midi_features(slow)])
    assert model.is_performance(x).tolist() == [jitter > 0] * 2
    p = est.probabilities(x)
    assert p["arousal"][0] > p["arousal"][1], jitter
  assert estimator.predict(fast_loud_high())["arousal"] > 0.5 > estimator.predict(slow_soft_low())["arousal"]


def test_drums_are_ignored():
  pm = make_midi(up_and_down(MAJOR_SCALE))
  drums = make_midi([36, 38] * 40, step=0.05, length=0.04, velocity=127, drums=True)
  pm.instruments += drums.instruments
  np.testing.assert_allclose(estimator.midi_features(pm), estimator.midi_features(make_midi(up_and_down(MAJOR_SCALE))))


# ---------------------------------------------------------------- fitting and splits


def test_logistic_regression_recovers_a_known_linear_rule():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(20000, 3))
  true_w, true_b = np.array([2.0, -1.0, 0.0]), 0.5
  y = (rng.random(20000) < 1 / (1 + np.exp(-(x @ true_w + true_b)))).astype(float)
  w, b = fitting.fit_logistic(x, y, l2=0.0)
  np.testing.assert_allclose(w, true_w, atol=0.1)
  assert b == pytest.approx(true_b, abs=0.1)
  # A strong L2 pulls the weights towards zero.
  w_reg, _ = fitting.fit_logistic(x, y, l2=1.0)
  assert np.abs(w_reg).sum() < np.abs(w).sum() / 2


def test_song_split_never_puts_one_song_on_both_sides():
  clip_ids = [f"Q{q}_{song}_{n}" for q, song, n in itertools.product(
      (1, 3), ("abc", "a_b", "x-y_z", "0vLPYiPN7qY", "s1", "s2", "s3", "s4", "s5", "s6"), range(3))]
  songs = np.array([sources.emopia_song_id(c) for c in clip_ids])
  assert set(songs) == {"abc", "a_b", "x-y_z", "0vLPYiPN7qY", "s1", "s2", "s3", "s4", "s5", "s6"}
  for seed in range(5):
    held_out = fitting.song_split(songs, 0.2, seed)
    assert not set(songs[held_out]) & set(songs[~held_out])
    assert len(set(songs[held_out])) == 2
    folds = fitting.song_folds(songs, 5, seed)
    assert np.array_equal(np.sum(folds, axis=0), np.ones(len(songs)))  # every clip in exactly one fold
    for te in folds:
      assert not set(songs[te]) & set(songs[~te])


def test_train_on_planted_quadrants():
  rng = np.random.default_rng(1)
  n = 800
  x = rng.normal(size=(n, len(estimator.FEATURE_NAMES)))
  x[:, estimator.FEATURE_NAMES.index("velocity_std")] = 0.1  # performance-like files
  v, a = x[:, 0] > 0, x[:, estimator.FEATURE_NAMES.index("log_notes_per_s")] > 0
  q = np.where(a, np.where(v, 1, 2), np.where(v, 4, 3))
  songs = np.repeat(np.arange(n // 2), 2).astype(str)
  est = fitting.train(x[:600], q[:600], songs[:600], grid=(0.01, 0.1), k=3)
  acc = fitting.accuracy(est.probabilities(x[600:]), q[600:])
  assert acc["valence"] > 0.9 and acc["arousal"] > 0.9 and acc["quadrant"] > 0.8


# ---------------------------------------------------------------- broken files, shipped weights, the rule


def test_broken_files_are_skipped_and_counted(tmp_path):
  good = tmp_path / "good.mid"
  make_midi(up_and_down(MAJOR_SCALE)).write(str(good))
  (tmp_path / "empty.mid").write_bytes(b"")
  (tmp_path / "text.mid").write_text("this is not a MIDI file\n")
  (tmp_path / "truncated.mid").write_bytes(good.read_bytes()[:30])
  pretty_midi.PrettyMIDI().write(str(tmp_path / "no_instruments.mid"))
  make_midi([36, 38] * 4, drums=True).write(str(tmp_path / "drums_only.mid"))
  paths = sorted(str(p) for p in tmp_path.iterdir())
  result = estimator.predict_batch(paths + [str(tmp_path / "missing.mid")])
  assert list(result.predictions) == [str(good)]
  assert result.skip_counts == {"parse_error": 4, "no_notes": 2}
  assert result.skipped[str(tmp_path / "drums_only.mid")] == "no_notes"
  assert result.skipped[str(tmp_path / "text.mid")] == "parse_error"
  streamed = list(estimator.iter_predict(paths))
  assert [p for p, _, _ in streamed] == paths  # nothing lost, in order
  assert sum(pred is not None for _, pred, _ in streamed) == 1
  with pytest.raises(ValueError, match="no non-drum notes"):
    estimator.predict(str(tmp_path / "drums_only.mid"))


def test_shipped_weights_load_and_give_probabilities():
  est = estimator.load()
  assert est.performance.feature_names == estimator.FEATURE_NAMES
  assert est.score.feature_names == model.SCORE_FEATURES
  assert est.meta["validation_decoded"]["per_quadrant"]["Q1"]["n"] > 0  # the evaluator's ceiling, recorded
  per_class = est.meta["validation_decoded"]["per_class"]  # and per class: Q1's clips split by the placement
  assert set(per_class) == set(emotion.MUSIC_CLASSES)
  assert per_class["happiness"]["n"] + per_class["surprise"]["n"] == est.meta["validation_decoded"]["per_quadrant"][
      "Q1"]["n"]
  assert per_class["anger"] == est.meta["validation_decoded"]["per_quadrant"]["Q2"]  # one class, one quadrant
  x = np.stack([estimator.midi_features(make_midi(up_and_down(s), velocity_jitter=j, pedal=j > 0))
                for s in (MAJOR_SCALE, MINOR_SCALE) for j in (0, 10)])
  for p in est.probabilities(x).values():
    assert p.shape == (4,) and np.all((p >= 0) & (p <= 1))
  pred = estimator.predict(make_midi(up_and_down(MAJOR_SCALE)))
  assert set(pred) == {"valence", "arousal", "quadrant", "music_emotion"}
  assert 0 <= pred["valence"] <= 1 and 0 <= pred["arousal"] <= 1
  assert pred["music_emotion"] == emotion.music_class(energy=pred["arousal"], valence=pred["valence"])


@pytest.mark.parametrize("valence,arousal,quadrant,music", [
    (0.95, 0.9, 1, "happiness"),  # high both, energy (arousal) < valence
    (0.9, 0.95, 1, "surprise"),  # energy >= valence
    (0.7, 0.7, 1, "surprise"),
    (0.2, 0.8, 2, "anger"),
    (0.2, 0.2, 3, "sadness"),
    (0.8, 0.2, 4, "others"),
    (0.5, 0.4999, 4, "others"),
    (0.4999, 0.5, 2, "anger"),
])
def test_music_class_follows_the_papers_rule(valence, arousal, quadrant, music):
  out = estimator.prediction(valence, arousal)
  assert out == {"valence": valence, "arousal": arousal, "quadrant": quadrant, "music_emotion": music}
  assert music in emotion.QUADRANT_MUSIC_CLASSES[quadrant]
