"""The estimator's model: standardized features -> logistic regressions for P(high valence) and P(high
arousal), a performance model (with dynamics) and a score model (without), stored as JSON."""

import dataclasses
import json
import os

import numpy as np

from facemusic_jax import RELEASE_DIR
from facemusic_jax.music.estimator.features import FEATURE_NAMES

DEFAULT_WEIGHTS = os.path.join(RELEASE_DIR, "estimator.json")

# Performance features: EMOPIA's clips are transcribed piano performances, all with dynamics. Score-like
# MIDI (one velocity) would sit far outside that range, so such files get a second model fitted without
# these features.
PERFORMANCE_FEATURES = ("velocity_mean", "velocity_std")
SCORE_FEATURES = tuple(n for n in FEATURE_NAMES if n not in PERFORMANCE_FEATURES)
TARGETS = ("valence", "arousal")
# Standardized features are clipped here: a file far outside EMOPIA's range (one note, a drone) would
# otherwise drive the linear score to a confident extreme.
Z_CLIP = 5.0


def is_performance(x: np.ndarray) -> np.ndarray:
  """(N, D) features -> (N,) bool: the file has dynamics (velocities spread over >= 1 step)."""
  x = np.atleast_2d(x)
  return x[:, FEATURE_NAMES.index("velocity_std")] * 127 >= 1.0


def sigmoid(z):
  return 0.5 * (1.0 + np.tanh(0.5 * z))  # the tanh form never overflows


@dataclasses.dataclass
class LogisticModel:
  """Standardization of a subset of FEATURE_NAMES plus one logistic regression per target."""
  feature_names: tuple[str, ...]
  mean: np.ndarray
  std: np.ndarray
  heads: dict  # target -> (w, b)

  def probabilities(self, x: np.ndarray) -> dict[str, np.ndarray]:
    """(N, len(FEATURE_NAMES)) features -> {target: (N,) probability of the high class}."""
    cols = [FEATURE_NAMES.index(n) for n in self.feature_names]
    z = np.clip((np.atleast_2d(np.asarray(x, np.float64))[:, cols] - self.mean) / self.std, -Z_CLIP, Z_CLIP)
    return {name: sigmoid(z @ w + b) for name, (w, b) in self.heads.items()}

  def to_json(self) -> dict:
    return {"feature_names": list(self.feature_names), "mean": self.mean.tolist(), "std": self.std.tolist(),
            "heads": {k: {"w": np.asarray(w).tolist(), "b": float(b)} for k, (w, b) in self.heads.items()}}

  @classmethod
  def from_json(cls, obj: dict) -> "LogisticModel":
    heads = {k: (np.array(h["w"], np.float64), float(h["b"])) for k, h in obj["heads"].items()}
    return cls(tuple(obj["feature_names"]), np.array(obj["mean"], np.float64),
               np.array(obj["std"], np.float64), heads)


@dataclasses.dataclass
class Estimator:
  """The performance model for files like EMOPIA's, the score model for files without dynamics."""
  performance: LogisticModel
  score: LogisticModel
  meta: dict = dataclasses.field(default_factory=dict)

  def probabilities(self, x: np.ndarray) -> dict[str, np.ndarray]:
    x = np.atleast_2d(np.asarray(x, np.float64))
    perf = is_performance(x)
    a, b = self.performance.probabilities(x), self.score.probabilities(x)
    return {k: np.where(perf, a[k], b[k]) for k in a}

  def to_json(self) -> dict:
    return {"performance": self.performance.to_json(), "score": self.score.to_json(), "meta": self.meta}

  @classmethod
  def from_json(cls, obj: dict) -> "Estimator":
    return cls(LogisticModel.from_json(obj["performance"]), LogisticModel.from_json(obj["score"]),
               obj.get("meta", {}))


def save(est: Estimator, path: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(est.to_json(), f, separators=(",", ":"))
    f.write("\n")


_CACHE: dict[str, Estimator] = {}


def load(path: str | None = None) -> Estimator:
  """The estimator stored at `path` (default: the shipped release weights), loaded once per process."""
  path = path or DEFAULT_WEIGHTS
  if path not in _CACHE:
    with open(path) as f:
      est = Estimator.from_json(json.load(f))
    unknown = set(est.performance.feature_names + est.score.feature_names) - set(FEATURE_NAMES)
    if unknown:
      raise ValueError(f"{path} uses features this code lacks ({', '.join(sorted(unknown))}); "
                       f"retrain with scripts/train_estimator.py")
    _CACHE[path] = est
  return _CACHE[path]


def quadrant(valence: float, arousal: float) -> int:
  """EMOPIA's Russell quadrant of two high-class probabilities (0.5 = the axis)."""
  if arousal >= 0.5:
    return 1 if valence >= 0.5 else 2
  return 4 if valence >= 0.5 else 3
