"""The music evaluation's arithmetic against hand-computed values."""

import numpy as np
import pytest

from facemusic_jax.music import evaluation


def test_control_accuracy_counts_by_hand():
  requested = ["happiness", "happiness", "happiness", "happiness", "sadness", "sadness"]
  estimated = ["happiness", "surprise", "anger", None, "sadness", "others"]
  r = evaluation.control_accuracy(requested, estimated)
  assert set(r["per_class"]) == {"happiness", "sadness"}
  h, s = r["per_class"]["happiness"], r["per_class"]["sadness"]
  assert (h["n"], h["accuracy"], h["quadrant_accuracy"]) == (4, 0.25, 0.5)  # surprise shares Q1
  assert (s["n"], s["accuracy"], s["quadrant_accuracy"]) == (2, 0.5, 0.5)
  assert r["accuracy"] == pytest.approx(2 / 6) and r["quadrant_accuracy"] == pytest.approx(3 / 6)
  assert r["confusion"]["happiness"]["unscored"] == 1
  # Quadrant level: Q1 gets 2 of 4 (happiness, surprise), Q3 1 of 2.
  assert r["per_quadrant"]["Q1"]["accuracy"] == 0.5 and r["per_quadrant"]["Q3"]["n"] == 2
  assert set(r["per_quadrant"]) == {"Q1", "Q3"}
  assert h["ci95"] == pytest.approx(wilson(1, 4))
  assert r["paper_mean"] == pytest.approx((0.851 + 0.755 + 0.799 + 0.873 + 0.683) / 5)


def test_distribution_stats_by_hand():
  a = {"pitch": np.array([60, 64, 67]), "velocity": np.array([80.0, 80.0, 100.0]),
       "start": np.array([0.0, 1.0, 2.0]), "end": np.array([1.0, 2.0, 3.0])}
  b = {"pitch": np.array([72]), "velocity": np.array([60.0]), "start": np.array([0.5]), "end": np.array([1.5])}
  empty = {k: np.array([]) for k in a}
  s = evaluation.distribution_stats([a, b, empty])
  assert (s["pieces"], s["pieces_with_notes"]) == (3, 2)
  assert s["notes_per_piece"] == 2.0
  assert s["notes_per_s"] == pytest.approx((3 / 3 + 1 / 1) / 2)
  assert s["velocity_mean"] == pytest.approx(80.0)
  assert s["pitch_range"] == pytest.approx((7 + 0) / 2)
  assert (s["note_seconds_median"], s["note_seconds_p90"]) == (1.0, 1.0)  # every note lasts 1 s
  assert s["polyphony"] == pytest.approx(1.0)  # a's notes follow each other; b has one
  # Two notes over [0, 2] and [1, 3] plus one over [5, 6]: 5 s of notes over 4 s of sound.
  assert evaluation.polyphony(np.array([1.0, 0.0, 5.0]), np.array([3.0, 2.0, 6.0])) == pytest.approx(5 / 4)
  assert evaluation.polyphony(np.array([0.0, 0.0]), np.array([2.0, 1.0])) == pytest.approx(3 / 2)
  hist = np.zeros(12)
  hist[0], hist[4], hist[7] = 2, 1, 1  # C E G, and 72 is a C too
  np.testing.assert_allclose(s["pitch_class_histogram"], hist / 4, atol=1e-4)
  assert evaluation.histogram_overlap(hist / 4, hist / 4) == pytest.approx(1.0)
  assert evaluation.distribution_stats([empty]) == {"pieces": 1, "pieces_with_notes": 0}


def wilson(k, n, z=1.96):
  """The Wilson score interval written out from its textbook form."""
  p = k / n
  denom = 1 + z ** 2 / n
  centre = p + z ** 2 / (2 * n)
  spread = z * np.sqrt(p * (1 - p) / n + z ** 2 / (4 * n ** 2))
  return (centre - spread) / denom, (centre + spread) / denom


def test_wilson_interval_by_hand():
  from facemusic_jax.core.metrics import wilson_interval
  # 8 of 10: the textbook's worked example gives (0.490, 0.943).
  assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
  assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == pytest.approx(1.0)
  assert wilson_interval(0, 0) == (0.0, 1.0)


def test_quadrants_of_the_music_classes():
  from facemusic_jax import emotion
  assert [emotion.class_quadrant(c) for c in ("happiness", "surprise", "anger", "sadness", "others")] == \
      [1, 1, 2, 3, 4]


def test_rerank_fit_is_the_quadrant_probability():
  from facemusic_jax.music import estimator
  p = {"valence": 0.8, "arousal": 0.3}
  fits = [estimator.quadrant_fit(p, q) for q in (1, 2, 3, 4)]
  assert fits == pytest.approx([0.8 * 0.3, 0.2 * 0.3, 0.2 * 0.7, 0.8 * 0.7]) and sum(fits) == pytest.approx(1)


def test_rerank_fit_tells_happiness_from_surprise():
  """Both are Q1: the estimated class decides first (valence .9 > arousal .7 is happiness by the rule), so a
  surer-Q1 piece of the other class ranks below a class hit."""
  from facemusic_jax.music import estimator
  from facemusic_jax.music import generation
  calm, busy = estimator.prediction(0.9, 0.7), estimator.prediction(0.6, 0.95)
  assert (calm["music_emotion"], busy["music_emotion"]) == ("happiness", "surprise")
  assert generation.class_fit(calm, "happiness") == pytest.approx(1 + 0.9 * 0.7)
  assert generation.class_fit(busy, "happiness") == pytest.approx(0.6 * 0.95)
  assert generation.class_fit(busy, "surprise") > generation.class_fit(calm, "surprise")
  assert generation.class_fit(calm, "sadness") == pytest.approx(0.1 * 0.3)
