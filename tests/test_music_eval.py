"""The music evaluation's arithmetic against hand-computed values."""

import numpy as np
import pytest

from facemusic_jax import music_eval


def test_control_accuracy_counts_by_hand():
  requested = ["happiness", "happiness", "happiness", "happiness", "sadness", "sadness"]
  estimated = ["happiness", "surprise", "anger", None, "sadness", "others"]
  r = music_eval.control_accuracy(requested, estimated)
  assert set(r["per_class"]) == {"happiness", "sadness"}
  h, s = r["per_class"]["happiness"], r["per_class"]["sadness"]
  assert (h["n"], h["accuracy"], h["quadrant_accuracy"]) == (4, 0.25, 0.5)  # surprise shares Q1
  assert (s["n"], s["accuracy"], s["quadrant_accuracy"]) == (2, 0.5, 0.5)
  assert r["accuracy"] == pytest.approx(2 / 6) and r["quadrant_accuracy"] == pytest.approx(3 / 6)
  assert r["confusion"]["happiness"]["unscored"] == 1
  assert r["paper_mean"] == pytest.approx((0.851 + 0.755 + 0.799 + 0.873 + 0.683) / 5)


def test_distribution_stats_by_hand():
  a = {"pitch": np.array([60, 64, 67]), "velocity": np.array([80.0, 80.0, 100.0]),
       "start": np.array([0.0, 1.0, 2.0]), "end": np.array([1.0, 2.0, 3.0])}
  b = {"pitch": np.array([72]), "velocity": np.array([60.0]), "start": np.array([0.5]), "end": np.array([1.5])}
  empty = {k: np.array([]) for k in a}
  s = music_eval.distribution_stats([a, b, empty])
  assert (s["pieces"], s["pieces_with_notes"]) == (3, 2)
  assert s["notes_per_piece"] == 2.0
  assert s["notes_per_s"] == pytest.approx((3 / 3 + 1 / 1) / 2)
  assert s["velocity_mean"] == pytest.approx(80.0)
  assert s["pitch_range"] == pytest.approx((7 + 0) / 2)
  hist = np.zeros(12)
  hist[0], hist[4], hist[7] = 2, 1, 1  # C E G, and 72 is a C too
  np.testing.assert_allclose(s["pitch_class_histogram"], hist / 4, atol=1e-4)
  assert music_eval.histogram_overlap(hist / 4, hist / 4) == pytest.approx(1.0)
  assert music_eval.distribution_stats([empty]) == {"pieces": 1, "pieces_with_notes": 0}


def test_quadrants_of_the_music_classes():
  assert [music_eval.music_quadrant(c) for c in ("happiness", "surprise", "anger", "sadness", "others")] == \
      [1, 1, 2, 3, 4]
