"""Musical attributes of a token window, for attribute conditioning (EmoGen, Kang et al. 2023).

An emotion label says what a listener felt; the attributes say what in the music made them feel it: how many
notes per second (arousal), how high (valence and arousal), how loud (arousal) and how major (valence). The
Music Transformer can be told each one as a bin, learned from the windows themselves (every window has them,
labelled or not), and at generation a requested emotion is turned into the attributes of real music of that
emotion (`AttributeTable`), so the model is asked for something it has heard, in terms it can follow.

Bin 0 of every attribute means "not given" (a dropped condition, or a request without attributes); bins
1..n are the value's interval between consecutive EDGES.
"""

import json
import os

import numpy as np

from facemusic_jax import emotion
from facemusic_jax.music.estimator.features import key_features

NAMES = ("density", "register", "velocity", "mode")
# Interval edges of each attribute, near the sextiles (mode: quintiles) of EMOPIA's 960 training clips in the
# notes vocabulary, read through the tokenizer's decode path as the model sees them. Units: notes per second, mean
# MIDI pitch, mean MIDI velocity, and Krumhansl-Schmuckler mode (best major minus best minor key correlation).
EDGES = {
    "density": (3.6, 4.8, 6.1, 8.0, 10.6),
    "register": (56.5, 59.5, 61.6, 64.0, 67.0),
    "velocity": (47.0, 54.0, 62.5, 72.5, 82.0),
    "mode": (-0.12, -0.02, 0.08, 0.2),
}
TABLE_FILE = "attributes.json"


def num_bins(name: str) -> int:
  """Bins of one attribute, "not given" (0) included."""
  return len(EDGES[name]) + 2


def values(notes: np.ndarray) -> dict[str, float]:
  """The attribute values of an (N >= 1, 4) [start, end, pitch, velocity] note array."""
  start, end, pitch, velocity = notes.T
  span = max(float(end.max() - start.min()), 1.0)  # a one-note window is not infinitely dense
  return {"density": len(notes) / span, "register": float(pitch.mean()), "velocity": float(velocity.mean()),
          "mode": key_features(notes)["mode"]}


def to_bins(vals: dict[str, float], names=NAMES) -> np.ndarray:
  """(len(names),) int32 bins 1..n of attribute values."""
  return np.array([1 + np.searchsorted(EDGES[n], vals[n], side="right") for n in names], np.int32)


def note_array(ns) -> np.ndarray:
  """A NoteSequence's notes as the (N, 4) array `values` takes."""
  rows = [(n.start_time, n.end_time, n.pitch, n.velocity) for n in ns.notes]
  return np.array(rows, np.float64).reshape(-1, 4)


def of_tokens(ids, tok, names=NAMES) -> np.ndarray:
  """The bins of a token window (its events decoded as generated pieces are); all 0 when it has no notes."""
  notes = note_array(tok.decode(np.asarray(ids), max_note_duration=8.0))
  if not len(notes):
    return np.zeros(len(names), np.int32)
  return to_bins(values(notes), names)


class AttributeTable:
  """Per music class, the attribute bins of real labelled pieces of that class: what generation asks for
  when a class is requested. Written beside a checkpoint's config.json by the training run that learns the
  attributes (from its training split only), read by the generator."""

  def __init__(self, names, rows: dict[str, list[list[int]]]):
    self.names = tuple(names)
    self.rows = {k: np.asarray(v, np.int32).reshape(-1, len(self.names)) for k, v in rows.items()}

  @classmethod
  def from_pieces(cls, names, pieces) -> "AttributeTable":
    """pieces: (music class, bins) pairs."""
    rows: dict[str, list] = {c: [] for c in emotion.MUSIC_CLASSES}
    for music_class, bins in pieces:
      rows[music_class].append([int(b) for b in bins])
    return cls(names, rows)

  def sample(self, music_class: str, seed: int, num: int) -> np.ndarray:
    """(num, len(names)) bins, piece i's drawn by (seed, i) from the class's rows (all 0 when it has none)."""
    rows = self.rows.get(music_class)
    if rows is None or not len(rows):
      return np.zeros((num, len(self.names)), np.int32)
    picks = [np.random.default_rng([seed, i, 7]).integers(len(rows)) for i in range(num)]
    return rows[picks]

  def save(self, workdir: str) -> None:
    with open(os.path.join(workdir, TABLE_FILE), "w") as f:
      json.dump({"names": list(self.names), "rows": {k: v.tolist() for k, v in self.rows.items()}}, f)

  @classmethod
  def load(cls, workdir: str) -> "AttributeTable | None":
    path = os.path.join(workdir, TABLE_FILE)
    if not os.path.exists(path):
      return None
    with open(path) as f:
      data = json.load(f)
    return cls(data["names"], data["rows"])
