"""Every entry point conditions the music on a (control token, vector) pair that training also produces.

Training derives a record's control token from its own (valence, arousal) (`music_pipeline.condition`);
generation builds conditions in `music_gen` (used by generate, the demo and the notebook). Here each
generation-time condition is passed through the training side as if it were a stored record (float32 on the
Spotify scale, as the datasets store it), and both must give the same token, in the requested class's region.
"""

import itertools

import numpy as np
import pytest

from facemusic_jax import emotion
from facemusic_jax.data import music_pipeline
from facemusic_jax.music import generation, tokenizer

TOK = tokenizer.get()


def training_token(valence: float, arousal: float) -> int:
  """The control token the training pipeline gives a stored record with this vector."""
  record = {"valence": np.float32(emotion.from_russell(valence)), "arousal": np.float32(emotion.from_russell(arousal))}
  quadrant, _ = music_pipeline.condition({k: float(v) for k, v in record.items()})
  return music_pipeline.control_token(quadrant, TOK)


def check(condition: dict, music_class: str | None = None):
  v, a = condition["valence"], condition["arousal"]
  assert -1 <= v <= 1 and -1 <= a <= 1
  if music_class is not None:
    assert condition["music_emotion"] == music_class
  # The class is the rule's class of the vector, and the token the training side would give it.
  assert emotion.music_class_from_russell(v, a) == condition["music_emotion"], condition
  assert TOK.control_id(condition["quadrant"]) == training_token(v, a), condition


@pytest.mark.parametrize("face", emotion.FER_LABELS)
def test_every_face_by_name(face):
  check(generation.condition_from_emotion(face), emotion.FACE_TO_MUSIC[face])


@pytest.mark.parametrize("music_class", emotion.MUSIC_CLASSES)
def test_every_music_class_by_name(music_class):
  check(generation.condition_from_emotion(music_class), music_class)


def test_a_grid_of_points():
  grid = np.round(np.linspace(-1, 1, 41), 6)  # includes both axes and the diagonal E = V
  for v, a in itertools.product(grid, grid):
    check(generation.condition_from_va(float(v), float(a)))


@pytest.mark.parametrize("face", emotion.FER_LABELS)
def test_photos_one_hot_and_mixed(face):
  """A photo's condition: the face's arg-max class, its probability-weighted vector moved into that class."""
  rng = np.random.default_rng(emotion.FER_LABELS.index(face))
  k = emotion.FER_LABELS.index(face)
  for p in [np.eye(7)[k]] + [0.6 * np.eye(7)[k] + 0.4 * rng.dirichlet(np.ones(7)) for _ in range(20)]:
    described = emotion.describe(p)
    condition = generation.condition_from_face(described, "face.jpg")
    check(condition, emotion.FACE_TO_MUSIC[face])
    assert condition["face"]["valence"] == described["valence"]  # the face's own point is kept beside it


def test_the_paper_conflicts_are_resolved_by_the_map():
  """The four faces whose Table 1 point the rule sends elsewhere keep the map's class."""
  for face, rule_class in (("happy", "surprise"), ("disgust", "anger"), ("fear", "anger"), ("neutral", "surprise")):
    assert emotion.music_class_from_russell(*emotion.FACE_VA[face]) == rule_class
    assert generation.condition_from_emotion(face)["music_emotion"] == emotion.FACE_TO_MUSIC[face]
