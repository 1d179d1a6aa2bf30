"""Symbolic emotion estimator: any MIDI file -> P(high valence), P(high arousal) -> the paper's music class.

Corpora without labels (MetaMIDI files no Spotify track matches, music21's bundled pieces, a user's own
folder) still need an emotion label. This module reads a MIDI file's notes (drums excluded, every other
instrument merged) and computes a few dozen interpretable features: mode and key strength (Krumhansl-
Kessler profiles against the duration-weighted pitch-class histogram), triad quality, the interval-class
content of simultaneous notes, note and onset density, inter-onset timing, velocity, register, melodic
intervals of the top voice, articulation and polyphony. It reads the notes as the Music Transformer's
tokenizer does: the sustain pedal is folded into the note lengths, so a file and its tokenize -> decode round
trip (which is what generated music is) look the same. Two logistic regressions on the standardized
features (trained on the training songs of EMOPIA's human quadrant labels, see scripts/train_estimator.py)
give P(high valence) and P(high arousal); arousal plays Spotify's energy in the paper's rule
(`emotion.music_class`). Files without dynamics (quantized scores, one velocity) go to a second pair of
regressions fitted without the velocity features, since EMOPIA's piano performances never look like that.

Inference is numpy only; the shipped weights are a small JSON file in release/ whose "meta" holds the
held-out EMOPIA accuracies of the recipe.
"""

import collections
import dataclasses
from typing import Iterable, Iterator

import numpy as np

from facemusic_jax import emotion
# The estimator's public API is this module; features, model and fitting are its parts.
from facemusic_jax.music.estimator.features import (FEATURE_NAMES, KK_MAJOR, KK_MINOR, SKIP_REASONS,  # noqa: F401
                                                    feature_vector, features_batch, iter_features,
                                                    midi_features, note_features, sequence_notes)
from facemusic_jax.music.estimator.model import Estimator, load, quadrant  # noqa: F401

def quadrant_fit(probabilities: dict, quadrant: int) -> float:
  """The probability of `quadrant` from the two high-class probabilities ({"valence", "arousal"}, as `predict`
  gives them), taken as independent."""
  sv, sa = emotion.QUADRANT_SIGNS[quadrant]
  pv, pa = probabilities["valence"], probabilities["arousal"]
  return (pv if sv > 0 else 1 - pv) * (pa if sa > 0 else 1 - pa)


def prediction(valence: float, arousal: float) -> dict:
  """The two probabilities with their quadrant and the paper's music class (arousal plays energy)."""
  valence, arousal = float(valence), float(arousal)
  return {"valence": valence, "arousal": arousal, "quadrant": quadrant(valence, arousal),
          "music_emotion": emotion.music_class(energy=arousal, valence=valence)}


def predict_features(x: np.ndarray, est: Estimator | None = None) -> list[dict]:
  """(N, D) feature rows -> one `prediction` dict per row."""
  probs = (est or load()).probabilities(np.atleast_2d(x))
  return [prediction(v, a) for v, a in zip(probs["valence"], probs["arousal"])]


def sequence_probabilities(ns, est: Estimator) -> tuple[float, float] | None:
  """(P(high valence), P(high arousal)) of a decoded NoteSequence (`sequence_notes`); None without notes."""
  notes = sequence_notes(ns)
  if not len(notes):
    return None
  probs = est.probabilities(feature_vector(note_features(notes)))
  return float(probs["valence"][0]), float(probs["arousal"][0])


def predict(midi, est: Estimator | None = None) -> dict:
  """A MIDI path or pretty_midi.PrettyMIDI -> dict(valence, arousal, quadrant, music_emotion).
  valence and arousal are the probabilities of EMOPIA's high class, in [0, 1]. Raises ValueError when the
  file has no non-drum notes (and whatever pretty_midi raises on an unreadable one)."""
  x = midi_features(midi)
  if x is None:
    raise ValueError(f"{midi}: no non-drum notes")
  return predict_features(x, est)[0]


def iter_predict(paths: Iterable[str], est: Estimator | None = None) -> Iterator[tuple[str, dict | None, str | None]]:
  """(path, prediction, None) per usable file and (path, None, reason) per skipped one; for progress bars."""
  est = est or load()
  for path, x, reason in iter_features(paths):
    yield path, (None if x is None else predict_features(x, est)[0]), reason


@dataclasses.dataclass
class BatchResult:
  predictions: dict  # path -> prediction dict
  skipped: dict  # path -> reason in SKIP_REASONS

  @property
  def skip_counts(self) -> collections.Counter:
    return collections.Counter(self.skipped.values())


def predict_batch(paths: Iterable[str], est: Estimator | None = None) -> BatchResult:
  """Predicts every file; broken ones are skipped and counted by reason."""
  feats, skipped = features_batch(paths)
  if not feats:
    return BatchResult({}, skipped)
  names = list(feats)
  preds = predict_features(np.stack([feats[p] for p in names]), est)
  return BatchResult(dict(zip(names, preds)), skipped)
