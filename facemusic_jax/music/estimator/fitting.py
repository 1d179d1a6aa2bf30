"""Fitting the estimator (scripts/train_estimator.py): Newton's method for L2 logistic regression, the
regularization chosen by song-grouped cross-validation, and the held-out accuracies."""

from typing import Sequence

import numpy as np

from facemusic_jax.labels import sources
from facemusic_jax.music.estimator.features import FEATURE_NAMES
from facemusic_jax.music.estimator.model import (SCORE_FEATURES, TARGETS, Z_CLIP, Estimator, LogisticModel, quadrant,
                                                 sigmoid)

def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, iters: int = 50) -> tuple[np.ndarray, float]:
  """L2-regularized logistic regression by Newton's method (the loss is convex and the problem small).
  Minimizes mean log-loss + l2/2 * |w|^2; the bias is not penalized. Returns (w, b)."""
  n, d = x.shape
  xb = np.hstack([x, np.ones((n, 1))])
  theta = np.zeros(d + 1)
  penalty = np.r_[np.full(d, l2), 0.0]
  for _ in range(iters):
    p = sigmoid(xb @ theta)
    grad = xb.T @ (p - y) / n + penalty * theta
    hess = (xb * (p * (1 - p))[:, None]).T @ xb / n + np.diag(penalty) + 1e-9 * np.eye(d + 1)
    step = np.linalg.solve(hess, grad)
    theta -= step
    if np.abs(step).max() < 1e-10:
      break
  return theta[:d], float(theta[d])


def fit(x: np.ndarray, labels: dict[str, np.ndarray], l2: dict[str, float] | float = 0.1,
        feature_names: Sequence[str] = FEATURE_NAMES) -> LogisticModel:
  """Standardizes the `feature_names` columns of `x` (N, len(FEATURE_NAMES)) and fits one logistic
  regression per binary target in `labels`."""
  x = np.asarray(x, np.float64)[:, [FEATURE_NAMES.index(n) for n in feature_names]]
  mean = x.mean(axis=0)
  std = x.std(axis=0)
  std = np.where(std > 1e-9, std, 1.0)  # a constant feature stays at zero
  z = np.clip((x - mean) / std, -Z_CLIP, Z_CLIP)
  heads = {name: fit_logistic(z, np.asarray(y, np.float64), l2[name] if isinstance(l2, dict) else l2)
           for name, y in labels.items()}
  return LogisticModel(tuple(feature_names), mean, std, heads)


# ---------------------------------------------------------------- training (scripts/train_estimator.py)

L2_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)


def quadrant_targets(quadrants) -> dict[str, np.ndarray]:
  """EMOPIA quadrants -> binary targets: high valence is Q1/Q4, high arousal Q1/Q2."""
  q = np.asarray(quadrants)
  return {"valence": np.isin(q, [1, 4]).astype(np.float64), "arousal": np.isin(q, [1, 2]).astype(np.float64)}


def song_folds(songs: Sequence[str], k: int, seed: int) -> list[np.ndarray]:
  """k boolean clip masks, one per fold, that split the *songs* (never a song's clips) into k groups."""
  unique = np.unique(np.asarray(songs))
  np.random.default_rng(seed).shuffle(unique)
  return [np.isin(songs, unique[i::k]) for i in range(k)]


def song_split(songs: Sequence[str], holdout: float, seed: int) -> np.ndarray:
  """A boolean clip mask of held-out clips: whole songs, chosen by the datasets' own song split."""
  _, held_out = sources.song_split(sorted(set(songs)), holdout, seed, song_of=lambda song: song)
  return np.isin(songs, held_out)


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
  p = np.clip(p, 1e-7, 1 - 1e-7)
  return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def select_l2(x, y, songs, feature_names=FEATURE_NAMES, grid=L2_GRID, k=5, seed=0) -> float:
  """The L2 strength with the lowest song-level k-fold CV log-loss on (x, y); log-loss rather than
  accuracy because it is far less noisy on a few hundred clips."""
  folds = song_folds(songs, k, seed)

  def cv_loss(l2):
    return np.mean([log_loss(fit(x[~te], {"t": y[~te]}, l2, feature_names).probabilities(x[te])["t"], y[te])
                    for te in folds])

  return float(min(grid, key=cv_loss))


def train(x, quadrants, songs, grid=L2_GRID, k=5, seed=0) -> Estimator:
  """Both models and both heads, each head's L2 picked by song-level CV on these clips only."""
  targets = quadrant_targets(quadrants)
  models, l2s = {}, {}
  for variant, names in (("performance", FEATURE_NAMES), ("score", SCORE_FEATURES)):
    l2s[variant] = {t: select_l2(x, targets[t], songs, names, grid, k, seed) for t in TARGETS}
    models[variant] = fit(x, targets, l2s[variant], names)
  return Estimator(models["performance"], models["score"], {"l2": l2s})


def accuracy(probs: dict[str, np.ndarray], quadrants) -> dict[str, float]:
  """Valence, arousal and quadrant accuracy of high-class probabilities against EMOPIA quadrants."""
  targets = quadrant_targets(quadrants)
  predicted_q = np.array([quadrant(v, a) for v, a in zip(probs["valence"], probs["arousal"])])
  return {"valence": float(((probs["valence"] >= 0.5) == targets["valence"]).mean()),
          "arousal": float(((probs["arousal"] >= 0.5) == targets["arousal"]).mean()),
          "quadrant": float((predicted_q == np.asarray(quadrants)).mean())}
