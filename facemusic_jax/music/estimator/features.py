"""The estimator's features: a MIDI file's notes read as the tokenizer reads them (sustain folded into note
lengths), and a few dozen interpretable descriptors of tonality, time, dynamics, register, melody and texture.
Pure functions on (N, 4) note arrays [start, end, pitch, velocity]."""

import math
import os
import warnings
from typing import Iterable, Iterator

import numpy as np

# Krumhansl & Kessler (1982) probe-tone profiles, index 0 = tonic.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

# Notes closer than this start together (a chord as played, or as transcribed from audio).
ONSET_TOLERANCE_S = 0.03
# Analysis reads at most this much music: emotion from the first minutes, and absurd files stay cheap.
MAX_SECONDS = 600.0
MAX_NOTES = 20000
_CHORD_WINDOW_S = 1.0  # roughly a beat or two at common tempi
_MAX_SAMPLES = 2000  # onset instants sampled for the simultaneous-interval content

FEATURE_NAMES: tuple[str, ...] = (
    # tonality
    "major_strength", "minor_strength", "mode", "key_clarity", "pitch_class_entropy",
    *(f"key_relative_pc_{i}" for i in range(12)),
    "minor_triad_fraction", "triad_fit",
    *(f"interval_class_{i}" for i in range(1, 7)),
    # time
    "log_notes_per_s", "log_onsets_per_s", "log_median_ioi", "ioi_cv",
    # dynamics
    "velocity_mean", "velocity_std",
    # register
    "pitch_mean", "pitch_std", "pitch_range", "top_pitch_mean", "bass_pitch_mean",
    # melody (top voice)
    "melodic_interval_mean", "melodic_step_fraction", "melodic_leap_fraction", "melodic_repeat_fraction",
    # articulation and texture
    "log_duration_mean", "legato_fraction", "staccato_fraction", "chord_size_mean", "polyphony_mean",
    "silence_fraction",
)

SKIP_REASONS = ("parse_error", "no_notes")


# ---------------------------------------------------------------- reading MIDI


def load_midi(path: str):
  """pretty_midi.PrettyMIDI of a file; raises whatever pretty_midi/mido raise on a broken file."""
  import pretty_midi  # imported here so that `import facemusic_jax.music.estimator` stays light
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pretty_midi warns about odd meta events; not our business
    return pretty_midi.PrettyMIDI(path)


def midi_notes(pm) -> np.ndarray:
  """Non-drum notes, with the sustain pedal applied as the tokenizer applies it (a note held by the pedal
  lasts until the pedal lifts or its pitch is struck again), as an (N, 4) float array
  [start, end, pitch, velocity] sorted by start, capped at MAX_SECONDS / MAX_NOTES."""
  from facemusic_jax.music import tokenizer  # pylint: disable=import-outside-toplevel  # note_seq is heavy
  return sequence_notes(tokenizer.sustained(tokenizer.note_sequence(pm)))


def sequence_notes(ns) -> np.ndarray:
  """A NoteSequence's notes as `midi_notes` gives them, for sequences whose pedal is already folded into the
  note lengths (the tokenizer's `decode`: generated music, training windows)."""
  rows = [(n.start_time, n.end_time, n.pitch, n.velocity) for n in ns.notes]
  notes = np.array(rows, np.float64).reshape(-1, 4)
  notes = notes[np.argsort(notes[:, 0], kind="stable")]
  if len(notes):
    notes = notes[notes[:, 0] < notes[0, 0] + MAX_SECONDS][:MAX_NOTES]
  notes[:, 1] = np.maximum(notes[:, 1], notes[:, 0] + 1e-3)  # zero-length notes still count, briefly
  return notes


# ---------------------------------------------------------------- features (pure functions on note arrays)


def pitch_class_histogram(notes: np.ndarray) -> np.ndarray:
  """Duration-weighted pitch-class distribution (12,), summing to 1."""
  hist = np.bincount(notes[:, 2].astype(int) % 12, weights=notes[:, 1] - notes[:, 0], minlength=12)
  return hist / max(hist.sum(), 1e-12)


def key_correlations(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Pearson correlation of `hist` with the major and minor profile on each of the 12 tonics."""

  def corr(profile):
    rolled = np.stack([np.roll(profile, k) for k in range(12)])  # row k: the profile with tonic k
    a = hist - hist.mean()
    b = rolled - rolled.mean(axis=1, keepdims=True)
    denom = np.linalg.norm(a) * np.linalg.norm(b, axis=1)
    return np.where(denom > 0, b @ a / np.maximum(denom, 1e-12), 0.0)

  return corr(KK_MAJOR), corr(KK_MINOR)


def key_features(notes: np.ndarray) -> dict[str, float]:
  """Krumhansl-Schmuckler key finding: the best major and minor key strengths, their difference (the
  mode), the key clarity, the pitch-class entropy, and the histogram relative to the best major tonic (so
  a minor piece shows its weight on degree 9, its relative minor tonic)."""
  hist = pitch_class_histogram(notes)
  major, minor = key_correlations(hist)
  p = hist[hist > 0]
  out = {
      "major_strength": float(major.max()),
      "minor_strength": float(minor.max()),
      "mode": float(major.max() - minor.max()),
      "key_clarity": float(max(major.max(), minor.max())),
      "pitch_class_entropy": float(-(p * np.log2(p)).sum() / np.log2(12)),
  }
  relative = np.roll(hist, -int(major.argmax()))
  out.update({f"key_relative_pc_{i}": float(relative[i]) for i in range(12)})
  return out


def _triad_templates() -> tuple[np.ndarray, np.ndarray]:
  """24 unit-norm chroma templates (12 major, then 12 minor triads) and a minor flag per template."""
  rows = []
  for third in (4, 3):
    for root in range(12):
      t = np.zeros(12)
      t[[root, (root + third) % 12, (root + 7) % 12]] = 1.0
      rows.append(t / np.sqrt(3.0))
  return np.stack(rows), np.repeat([False, True], 12)


def _window_chroma(notes: np.ndarray, window: float) -> np.ndarray:
  """(W, 12): how long each pitch class sounds in each consecutive `window`-second window."""
  t0 = notes[0, 0]
  edges = np.arange(t0, notes[:, 1].max() + window, window)
  starts, ends = edges[:-1], edges[1:]
  overlap = np.clip(np.minimum(notes[:, 1:2], ends) - np.maximum(notes[:, 0:1], starts), 0.0, None)  # (N, W)
  onehot = np.eye(12)[notes[:, 2].astype(int) % 12]  # (N, 12)
  return overlap.T @ onehot


def triad_features(notes: np.ndarray) -> dict[str, float]:
  """Best-matching triad per window: the share of minor triads (valence) and how well triads fit at all
  (low for chromatic or clustered harmony)."""
  chroma = _window_chroma(notes, _CHORD_WINDOW_S)
  norms = np.linalg.norm(chroma, axis=1)
  chroma = chroma[norms > 0] / norms[norms > 0, None]
  if not len(chroma):
    return {"minor_triad_fraction": 0.0, "triad_fit": 0.0}
  templates, is_minor = _triad_templates()
  scores = chroma @ templates.T
  return {"minor_triad_fraction": float(is_minor[scores.argmax(axis=1)].mean()),
          "triad_fit": float(scores.max(axis=1).mean())}


def onset_groups(notes: np.ndarray) -> np.ndarray:
  """Index of the onset group of each note: notes starting within ONSET_TOLERANCE_S of the previous one
  share a group."""
  return np.concatenate([[0], np.cumsum(np.diff(notes[:, 0]) > ONSET_TOLERANCE_S)])


def interval_class_features(notes: np.ndarray, onsets: np.ndarray) -> dict[str, float]:
  """Interval-class content (1 = semitone ... 6 = tritone) of the pitch-class sets sounding at onsets:
  dissonance (ic 1, 6) and the thirds that colour major (ic 4) and minor (ic 3)."""
  if len(onsets) > _MAX_SAMPLES:
    onsets = onsets[np.linspace(0, len(onsets) - 1, _MAX_SAMPLES).astype(int)]
  t = onsets + ONSET_TOLERANCE_S  # just after the attack, so the whole chord sounds
  active = (notes[None, :, 0] <= t[:, None]) & (notes[None, :, 1] > t[:, None])  # (T, N)
  present = (active.astype(np.float64) @ np.eye(12)[notes[:, 2].astype(int) % 12]) > 0  # (T, 12)
  counts = np.array([(present & np.roll(present, -ic, axis=1)).sum() for ic in range(1, 7)], np.float64)
  counts[5] /= 2  # the tritone pairs each set twice under rotation
  total = max(counts.sum(), 1.0)
  return {f"interval_class_{ic}": float(counts[ic - 1] / total) for ic in range(1, 7)}


def union_length(starts: np.ndarray, ends: np.ndarray, t0: float, t1: float) -> float:
  """Length of the union of the intervals [starts, ends) inside [t0, t1]."""
  starts, ends = np.clip(starts, t0, t1), np.clip(ends, t0, t1)
  order = np.argsort(starts, kind="stable")
  starts, ends = starts[order], ends[order]
  reach = np.maximum.accumulate(ends)  # how far the intervals so far extend
  # Each interval adds only the part past everything before it.
  return float(np.sum(np.clip(ends - np.maximum(starts, np.r_[t0, reach[:-1]]), 0.0, None)))


def note_features(notes: np.ndarray) -> dict[str, float]:
  """Every feature of FEATURE_NAMES from an (N, 4) note array (N >= 1)."""
  start, end, pitch, velocity = notes.T
  duration = end - start
  group = onset_groups(notes)
  first = np.flatnonzero(np.r_[True, np.diff(group) > 0])  # first note of each onset group
  onsets = start[first]
  top = np.maximum.reduceat(pitch, first)
  bass = np.minimum.reduceat(pitch, first)
  chord_size = np.diff(np.r_[first, len(notes)])
  span = max(end.max() - start.min(), 1e-3)
  ioi = np.diff(onsets)
  # Articulation: a note's length against the time to the next onset after its own.
  next_onset = np.r_[onsets[1:], np.nan][group]
  gap = next_onset - start
  has_next = np.isfinite(gap)
  moves = np.diff(top)
  sounding = union_length(start, end, start.min(), end.max())  # time with at least one note
  out = {}
  out.update(key_features(notes))
  out.update(triad_features(notes))
  out.update(interval_class_features(notes, onsets))
  out.update({
      "log_notes_per_s": math.log1p(len(notes) / span),
      "log_onsets_per_s": math.log1p(len(onsets) / span),
      "log_median_ioi": math.log(float(np.median(ioi)) + 1e-2) if len(ioi) else math.log(span),
      "ioi_cv": float(ioi.std() / ioi.mean()) if len(ioi) > 1 and ioi.mean() > 0 else 0.0,
      "velocity_mean": float(velocity.mean()) / 127.0,
      "velocity_std": float(velocity.std()) / 127.0,
      "pitch_mean": float(pitch.mean()),
      "pitch_std": float(pitch.std()),
      "pitch_range": float(np.percentile(pitch, 95) - np.percentile(pitch, 5)),
      "top_pitch_mean": float(top.mean()),
      "bass_pitch_mean": float(bass.mean()),
      "melodic_interval_mean": float(np.abs(moves).mean()) if len(moves) else 0.0,
      "melodic_step_fraction": float(((moves != 0) & (np.abs(moves) <= 2)).mean()) if len(moves) else 0.0,
      "melodic_leap_fraction": float((np.abs(moves) >= 7).mean()) if len(moves) else 0.0,
      "melodic_repeat_fraction": float((moves == 0).mean()) if len(moves) else 0.0,
      "log_duration_mean": math.log(float(duration.mean()) + 1e-2),
      "legato_fraction": float((duration[has_next] >= 0.9 * gap[has_next]).mean()) if has_next.any() else 0.0,
      "staccato_fraction": float((duration[has_next] < 0.5 * gap[has_next]).mean()) if has_next.any() else 0.0,
      "chord_size_mean": float(chord_size.mean()),
      "polyphony_mean": float(duration.sum() / max(sounding, 1e-3)),  # notes sounding, when any sound
      "silence_fraction": float(1.0 - sounding / span),
  })
  return out


def feature_vector(features: dict[str, float]) -> np.ndarray:
  return np.array([features[name] for name in FEATURE_NAMES], np.float64)


def midi_features(midi) -> np.ndarray | None:
  """FEATURE_NAMES values of a path or pretty_midi.PrettyMIDI; None when it has no non-drum notes.
  Raises on a file pretty_midi cannot read."""
  pm = load_midi(midi) if isinstance(midi, (str, os.PathLike)) else midi
  notes = midi_notes(pm)
  if not len(notes):
    return None
  return feature_vector(note_features(notes))


def iter_features(paths: Iterable[str]) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
  """(path, features, None) per usable file and (path, None, reason) per skipped one, reason in
  SKIP_REASONS; one broken file never stops the walk."""
  for path in paths:
    try:
      pm = load_midi(path)
    except Exception:  # pretty_midi/mido raise many types on truncated, empty or non-MIDI files
      yield path, None, "parse_error"
      continue
    x = midi_features(pm)
    yield (path, None, "no_notes") if x is None else (path, x, None)


def features_batch(paths: Iterable[str]) -> tuple[dict, dict]:
  """({path: features} of usable files, {path: skip reason} of the rest)."""
  feats, skipped = {}, {}
  for path, x, reason in iter_features(paths):
    if x is None:
      skipped[path] = reason
    else:
      feats[path] = x
  return feats, skipped
