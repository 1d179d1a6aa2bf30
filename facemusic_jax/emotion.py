"""The emotion model shared by both halves of the pipeline (the paper's tables and rules).

Two planes meet here. Faces live on Russell's valence-arousal plane in [-1, 1] (Table 1). Music labels come
from Spotify's energy and valence in [0, 1]; energy plays the role of arousal, and the two planes are
related by x_russell = 2 * x_spotify - 1. Everything here is a small pure function or a constant table.

What the Music Transformer is conditioned on (one rule for training and for every entry point):
  * a control token for the Russell quadrant of the music (EMOPIA's human labels are quadrants; no human
    label splits Q1 into happiness and surprise), and
  * the continuous (valence, arousal) vector, which lies in that quadrant.
The five music classes are the user's names for regions of the plane (the paper's energy/valence rule).
A request by class, by face or by point is turned into a vector inside its class's region
(`music_condition`), and the token is that vector's quadrant, so every (token, vector) pair at generation
time is one the rule also produces in training. Table 1 and the face -> music map disagree for four faces
(happy lies in the surprise region; disgust, fear and neutral outside "others"): the map wins, and the
face's vector is moved to the nearest point of its class's region (`project_to_class`).
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
# used when music is requested by class name rather than by a face or a point. Valence sits at +-0.5, where
# EMOPIA's clips are placed; happiness and surprise are Q1's calmer and busier halves.
MUSIC_CLASS_VA: dict[str, tuple[float, float]] = {
    "happiness": (0.5, 0.25),  # V .75, E .625: high energy, E < V
    "surprise": (0.5, 0.75),  # V .75, E .875: high energy, E >= V
    "anger": (-0.5, 0.5),  # V .25, E .75
    "sadness": (-0.5, -0.5),  # V .25, E .25
    "others": (0.5, -0.5),  # V .75, E .25
}

# How far inside its class's region a projected face vector lands, so no rounding puts it on a border.
REGION_MARGIN = 0.05

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


def quadrant(valence: float, arousal: float) -> int:
  """The Russell quadrant (1..4) of a point; the axes belong to the positive side, as in the rule."""
  if arousal >= 0:
    return 1 if valence >= 0 else 2
  return 4 if valence >= 0 else 3


def mirror_valence(quadrant_: int) -> int:
  """The quadrant across the arousal axis: same arousal, opposite valence (Q1 <-> Q2, Q3 <-> Q4)."""
  sv, sa = QUADRANT_SIGNS[quadrant_]
  return next(q for q, signs in QUADRANT_SIGNS.items() if signs == (-sv, sa))


def class_quadrant(music_class: str) -> int:
  """The quadrant that holds a music class (Q1 holds happiness and surprise)."""
  for q, names in QUADRANT_MUSIC_CLASSES.items():
    if music_class in names:
      return q
  raise ValueError(f"unknown music class {music_class!r}; expected one of {', '.join(MUSIC_CLASSES)}")


def class_region(music_class: str, margin: float = 0.0) -> list[tuple[float, float, float]]:
  """A class's region of the rule on Russell's plane, shrunk by `margin`, as half-planes (a, b, c) that
  each require a * valence + b * arousal <= c (the [-1, 1] square included)."""
  m = margin
  square = [(1, 0, 1), (-1, 0, 1), (0, 1, 1), (0, -1, 1)]
  sides = {
      "happiness": [(-1, 0, -m), (0, -1, -m), (-1, 1, -m)],  # v >= m, a >= m, a <= v - m  (E < V)
      "surprise": [(-1, 0, -m), (1, -1, -m)],  # v >= m, a >= v + m  (E >= V)
      "anger": [(1, 0, -m), (0, -1, -m)],  # v <= -m, a >= m
      "sadness": [(1, 0, -m), (0, 1, -m)],  # v <= -m, a <= -m
      "others": [(-1, 0, -m), (0, 1, -m)],  # v >= m, a <= -m
  }
  if music_class not in sides:
    raise ValueError(f"unknown music class {music_class!r}; expected one of {', '.join(MUSIC_CLASSES)}")
  return square + sides[music_class]


def project_convex(point, halfplanes, tol: float = 1e-9) -> tuple[float, float]:
  """The nearest point to `point` of the convex polygon {x : a.x <= c for every (a, b, c)} (2-D).

  The nearest point is the point itself, a projection onto one edge's line, or a vertex: try them all and
  keep the closest feasible one.
  """
  p = np.asarray(point, np.float64)
  normals = np.array([h[:2] for h in halfplanes], np.float64)
  limits = np.array([h[2] for h in halfplanes], np.float64)

  def feasible(x):
    return bool(np.all(normals @ x <= limits + tol))

  if feasible(p):
    return float(p[0]), float(p[1])
  candidates = []
  for n, c in zip(normals, limits):
    candidates.append(p - (n @ p - c) / (n @ n) * n)
  for i in range(len(normals)):
    for j in range(i + 1, len(normals)):
      a = normals[[i, j]]
      if abs(np.linalg.det(a)) > 1e-12:
        candidates.append(np.linalg.solve(a, limits[[i, j]]))
  best = min((x for x in candidates if feasible(x)), key=lambda x: float(np.sum((x - p) ** 2)))
  return float(best[0]), float(best[1])


def project_to_class(valence: float, arousal: float, music_class: str,
                     margin: float = REGION_MARGIN) -> tuple[float, float]:
  """The nearest point of `music_class`'s region (shrunk by `margin`) to (valence, arousal)."""
  return project_convex((valence, arousal), class_region(music_class, margin))


def music_condition(music_class: str, valence: float, arousal: float) -> tuple[int, tuple[float, float]]:
  """What the model is conditioned on for music of `music_class` near (valence, arousal): (quadrant of the
  control token, the vector moved into the class's region). By construction the rule maps the vector back to
  `music_class` and its quadrant is the token's, as in training."""
  v, a = project_to_class(valence, arousal, music_class)
  return quadrant(v, a), (v, a)


def resolve_emotion(name: str) -> tuple[str, tuple[float, float]]:
  """A FER label or a music class -> (music class, (valence, arousal) inside that class's region).

  A face's class comes from the paper's face -> music map, and its Table 1 point is moved into that class's
  region (see the module docstring)."""
  key = name.strip().lower()
  if key in FACE_VA:
    music = FACE_TO_MUSIC[key]
    return music, project_to_class(*FACE_VA[key], music)
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
