"""The emotion module against the tables and rules of DESIGN.md, written out here by hand."""

import numpy as np
import pytest

from facemusic_jax import emotion


def test_fer_labels_in_dataset_order():
  assert emotion.FER_LABELS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@pytest.mark.parametrize("label,va", [
    ("happy", (0.60, 0.85)), ("surprise", (0.05, 0.50)), ("angry", (-0.60, 0.85)), ("disgust", (-0.30, 0.45)),
    ("fear", (-0.62, 0.10)), ("sad", (-0.70, -0.20)), ("neutral", (0.00, 0.00))])
def test_table1(label, va):
  assert emotion.FACE_VA[label] == va
  np.testing.assert_allclose(emotion.face_va_table()[emotion.FER_LABELS.index(label)], va, atol=1e-7)


def test_music_classes():
  assert emotion.MUSIC_CLASSES == ("happiness", "surprise", "anger", "sadness", "others")


@pytest.mark.parametrize("energy,valence,expected", [
    (0.9, 0.95, "happiness"),  # E >= .5, V >= .5, E < V
    (0.95, 0.9, "surprise"),  # E >= V
    (0.7, 0.7, "surprise"),  # E == V goes to surprise
    (0.5, 0.5, "surprise"),  # both on the boundary: E >= .5, V >= .5, E == V
    (0.5, 0.8, "happiness"),  # E == .5 counts as high energy
    (0.8, 0.5, "surprise"),  # V == .5 counts as high valence
    (0.8, 0.4999, "anger"),
    (0.5, 0.0, "anger"),
    (0.4999, 0.4999, "sadness"),
    (0.0, 0.0, "sadness"),
    (0.4999, 0.5, "others"),
    (0.1, 1.0, "others"),
    (1.0, 1.0, "surprise"),
])
def test_energy_valence_rule(energy, valence, expected):
  assert emotion.music_class(energy, valence) == expected


def test_rule_rejects_values_outside_unit_interval():
  with pytest.raises(ValueError, match="energy"):
    emotion.music_class(1.2, 0.5)
  with pytest.raises(ValueError, match="valence"):
    emotion.music_class(0.5, -0.1)


@pytest.mark.parametrize("face,music", [
    ("happy", "happiness"), ("surprise", "surprise"), ("angry", "anger"), ("sad", "sadness"),
    ("disgust", "others"), ("fear", "others"), ("neutral", "others")])
def test_face_to_music(face, music):
  assert emotion.face_to_music(face) == music


def test_face_to_music_unknown():
  with pytest.raises(ValueError, match="unknown face emotion"):
    emotion.face_to_music("contempt")


def test_scaling_round_trip():
  assert emotion.to_russell(0.0) == -1.0
  assert emotion.to_russell(0.5) == 0.0
  assert emotion.to_russell(1.0) == 1.0
  assert emotion.from_russell(-1.0) == 0.0
  assert emotion.from_russell(0.6) == pytest.approx(0.8)
  x = np.linspace(0, 1, 11)
  np.testing.assert_allclose(emotion.from_russell(emotion.to_russell(x)), x)


def test_music_class_from_russell_uses_scaling():
  # happy (0.60, 0.85) -> V = 0.80, E = 0.925 -> E >= V -> surprise by the rule (the label map says happiness).
  assert emotion.music_class_from_russell(0.60, 0.85) == "surprise"
  assert emotion.music_class_from_russell(-0.70, -0.20) == "sadness"  # sad
  assert emotion.music_class_from_russell(-0.60, 0.85) == "anger"  # angry
  assert emotion.music_class_from_russell(0.0, 0.0) == "surprise"  # centre: E == V == .5


def test_expected_va_of_one_hot_is_the_table_point():
  for i, label in enumerate(emotion.FER_LABELS):
    p = np.eye(7)[i]
    np.testing.assert_allclose(emotion.expected_va(p), emotion.FACE_VA[label], atol=1e-6)


def test_expected_va_is_the_probability_weighted_mean():
  p = np.array([0.1, 0.0, 0.2, 0.5, 0.1, 0.1, 0.0])
  v = 0.1 * -0.60 + 0.2 * -0.62 + 0.5 * 0.60 + 0.1 * -0.70 + 0.1 * 0.05
  a = 0.1 * 0.85 + 0.2 * 0.10 + 0.5 * 0.85 + 0.1 * -0.20 + 0.1 * 0.50
  np.testing.assert_allclose(emotion.expected_va(p), (v, a), atol=1e-6)
  batch = np.stack([p, np.full(7, 1 / 7)])
  assert emotion.expected_va(batch).shape == (2, 2)
  with pytest.raises(ValueError):
    emotion.expected_va(np.ones(5) / 5)


def test_quadrants():
  assert emotion.quadrant_va(1) == (0.5, 0.5)
  assert emotion.quadrant_va(2) == (-0.5, 0.5)
  assert emotion.quadrant_va(3) == (-0.5, -0.5)
  assert emotion.quadrant_va(4) == (0.5, -0.5)
  assert emotion.QUADRANT_MUSIC_CLASSES[1] == ("happiness", "surprise")
  assert emotion.QUADRANT_MUSIC_CLASSES[2] == ("anger",)
  assert emotion.QUADRANT_MUSIC_CLASSES[3] == ("sadness",)
  assert emotion.QUADRANT_MUSIC_CLASSES[4] == ("others",)


def test_describe():
  d = emotion.describe([0, 0, 0, 1, 0, 0, 0])
  assert d["emotion"] == "happy" and d["music_emotion"] == "happiness"
  assert d["valence"] == pytest.approx(0.6) and d["arousal"] == pytest.approx(0.85)
  assert list(d["probabilities"]) == list(emotion.FER_LABELS)


def test_music_class_points_lie_in_their_rule_regions():
  for name, (v, a) in emotion.MUSIC_CLASS_VA.items():
    assert emotion.music_class_from_russell(v, a) == name


def test_resolve_emotion_moves_a_face_into_its_class_region():
  # happy (0.60, 0.85) breaks E < V; the nearest point with a <= v - 0.05 is on that line:
  # ((0.60 + 0.85 + 0.05) / 2, (0.60 + 0.85 - 0.05) / 2).
  music, va = emotion.resolve_emotion("Happy")
  assert music == "happiness" and va == pytest.approx((0.75, 0.70))
  # fear (-0.62, 0.10) -> others (v >= 0.05, a <= -0.05): the region's corner.
  music, va = emotion.resolve_emotion("fear")
  assert music == "others" and va == pytest.approx((0.05, -0.05))
  # A face already inside its region stays where Table 1 puts it.
  assert emotion.resolve_emotion("sad") == ("sadness", pytest.approx((-0.70, -0.20)))
  assert emotion.resolve_emotion("sadness") == ("sadness", (-0.5, -0.5))
  with pytest.raises(ValueError, match="unknown emotion"):
    emotion.resolve_emotion("bored")


def test_quadrant_matches_the_rule():
  for v in np.linspace(-1, 1, 21):
    for a in np.linspace(-1, 1, 21):
      music = emotion.music_class_from_russell(float(v), float(a))
      assert emotion.quadrant(float(v), float(a)) == emotion.class_quadrant(music), (v, a)


def _brute_force_nearest(point, music_class, margin):
  """The nearest grid point of the class region: an independent, slow reference for the projection."""
  g = np.linspace(-1, 1, 801)
  vv, aa = np.meshgrid(g, g, indexing="ij")
  inside = np.ones_like(vv, bool)
  for a_, b_, c_ in emotion.class_region(music_class, margin):
    inside &= a_ * vv + b_ * aa <= c_ + 1e-12
  d = (vv - point[0]) ** 2 + (aa - point[1]) ** 2
  d[~inside] = np.inf
  k = np.unravel_index(np.argmin(d), d.shape)
  return vv[k], aa[k]


@pytest.mark.parametrize("music_class", emotion.MUSIC_CLASSES)
def test_projection_is_the_nearest_point_of_the_region(music_class):
  rng = np.random.default_rng(0)
  for point in list(emotion.FACE_VA.values()) + [tuple(x) for x in rng.uniform(-1, 1, (12, 2))]:
    got = emotion.project_to_class(*point, music_class)
    want = _brute_force_nearest(point, music_class, emotion.REGION_MARGIN)
    assert np.hypot(got[0] - point[0], got[1] - point[1]) <= np.hypot(want[0] - point[0], want[1] - point[1]) + 1e-9
    assert got == pytest.approx(want, abs=2.5e-3)  # the grid's resolution
    assert emotion.music_class_from_russell(*got) == music_class


def test_mirror_valence_keeps_arousal_and_flips_valence():
  assert {q: emotion.mirror_valence(q) for q in (1, 2, 3, 4)} == {1: 2, 2: 1, 3: 4, 4: 3}
  for v, a in ((0.5, 0.3), (-0.2, 0.9), (-0.7, -0.1), (0.4, -0.6)):
    assert emotion.mirror_valence(emotion.quadrant(v, a)) == emotion.quadrant(-v, a)
