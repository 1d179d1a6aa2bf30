"""The emotion model shared by both halves of the pipeline (the paper's tables and rules).

Two planes meet here. Faces live on Russell's valence-arousal plane in [-1, 1] (Table 1). Music labels come
from Spotify's energy and valence in [0, 1]; energy plays the role of arousal, and the two planes are
related by x_russell = 2 * x_spotify - 1. Everything here is a small pure function or a constant table.
"""

from typing import Sequence

import numpy as np

# FER2013's own label indices. Image-folder copies sort class folders alphabetically: map by name.
FER_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# Table 1: (valence, arousal) on Russell's plane.
FACE_VA: dict[str, tuple[float, float]] = {
    "angry": (-0.60, 0.85),
    "disgust": (-0.30, 0.45),
    "fear": (-0.62, 0.10),
    "happy": (0.60, 0.85),
    "sad": (-0.70, -0.20),
    "surprise": (0.05, 0.50),
    "neutral": (0.00, 0.00),
}

MUSIC_CLASSES: tuple[str, ...] = ("happiness", "surprise", "anger", "sadness", "others")

FACE_TO_MUSIC: dict[str, str] = {
    "happy": "happiness",
    "surprise": "surprise",
    "angry": "anger",
    "sad": "sadness",
    "disgust": "others",
    "fear": "others",
    "neutral": "others",
}

# A representative point of each music class's region of the rule, on Russell's plane (valence, arousal):
# used when music is requested by class name rather than by a face or a point.
MUSIC_CLASS_VA: dict[str, tuple[float, float]] = {
    "happiness": (0.7, 0.4),  # V .85, E .70: high energy, E < V
    "surprise": (0.4, 0.7),  # V .70, E .85: high energy, E >= V
    "anger": (-0.5, 0.5),  # V .25, E .75
    "sadness": (-0.5, -0.5),  # V .25, E .25
    "others": (0.5, -0.5),  # V .75, E .25
}

# EMOPIA's Russell quadrants; Q1 covers two music classes, split by the energy/valence rule.
QUADRANT_SIGNS: dict[int, tuple[int, int]] = {1: (1, 1), 2: (-1, 1), 3: (-1, -1), 4: (1, -1)}
QUADRANT_MUSIC_CLASSES: dict[int, tuple[str, ...]] = {
    1: ("happiness", "surprise"),
    2: ("anger",),
    3: ("sadness",),
    4: ("others",),
}


def to_russell(x):
  """Spotify scale [0, 1] -> Russell scale [-1, 1]."""
  return 2.0 * x - 1.0


def from_russell(r):
  """Russell scale [-1, 1] -> Spotify scale [0, 1]."""
  return (r + 1.0) / 2.0


def music_class(energy: float, valence: float) -> str:
  """The paper's rule on Spotify energy E and valence V, both in [0, 1]."""
  for name, v in (("energy", energy), ("valence", valence)):
    if not 0.0 <= v <= 1.0:
      raise ValueError(f"{name}={v} is outside [0, 1] (Spotify scale)")
  if energy >= 0.5:
    if valence >= 0.5:
      return "happiness" if energy < valence else "surprise"
    return "anger"
  return "sadness" if valence < 0.5 else "others"


def music_class_from_russell(valence: float, arousal: float) -> str:
  """The same rule for a point on Russell's plane (arousal stands for energy)."""
  return music_class(energy=from_russell(arousal), valence=from_russell(valence))


def face_to_music(label: str) -> str:
  if label not in FACE_TO_MUSIC:
    raise ValueError(f"unknown face emotion {label!r}; expected one of {', '.join(FER_LABELS)}")
  return FACE_TO_MUSIC[label]


def face_va_table() -> np.ndarray:
  """Table 1 as a (7, 2) array in FER2013 index order."""
  return np.array([FACE_VA[name] for name in FER_LABELS], np.float32)


def expected_va(probabilities) -> np.ndarray:
  """Probabilities over the 7 FER labels (..., 7) -> the expected (valence, arousal) vector (..., 2).

  A convex combination of Table 1's points, so it stays inside the plane's [-1, 1] square.
  """
  p = np.asarray(probabilities, np.float32)
  if p.shape[-1] != len(FER_LABELS):
    raise ValueError(f"expected {len(FER_LABELS)} probabilities, got shape {p.shape}")
  return p @ face_va_table()


def quadrant_va(quadrant: int, magnitude: float = 0.5) -> tuple[float, float]:
  """An EMOPIA quadrant as a (valence, arousal) point on Russell's plane, `magnitude` from the centre."""
  sv, sa = QUADRANT_SIGNS[quadrant]
  return sv * magnitude, sa * magnitude


def resolve_emotion(name: str) -> tuple[str, tuple[float, float]]:
  """A FER label or a music class -> (music class, (valence, arousal) on Russell's plane)."""
  key = name.strip().lower()
  if key in FACE_VA:
    return FACE_TO_MUSIC[key], FACE_VA[key]
  if key in MUSIC_CLASS_VA:
    return key, MUSIC_CLASS_VA[key]
  raise ValueError(f"unknown emotion {name!r}; use a face emotion ({', '.join(FER_LABELS)}) or a music class "
                   f"({', '.join(MUSIC_CLASSES)})")


def music_class_index(name: str) -> int:
  return MUSIC_CLASSES.index(name)


def describe(probabilities: Sequence[float]) -> dict:
  """A face prediction in every form the rest of the pipeline uses."""
  p = np.asarray(probabilities, np.float32)
  label = FER_LABELS[int(np.argmax(p))]
  valence, arousal = (float(x) for x in expected_va(p))
  return {
      "emotion": label,
      "probabilities": {name: float(x) for name, x in zip(FER_LABELS, p)},
      "valence": valence,
      "arousal": arousal,
      "music_emotion": face_to_music(label),
  }
