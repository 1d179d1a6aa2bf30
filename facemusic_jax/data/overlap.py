"""Finding the same music in two corpora by note content (e.g. a Pop1K7 song that an EMOPIA clip was cut from).

Pop1K7 and EMOPIA were transcribed from YouTube piano covers by the same lab and pipeline, so a clip and the
song it comes from share long runs of identical notes. A piece's fingerprint is the set of n-grams of its
note-on pitches in time order (read from the token ids, so timing, tempo maps and velocities do not
matter); a clip is contained in a piece when most of its n-grams occur there. Unrelated pieces, even covers
of the same tune by other arrangers, share few 8-grams of the full polyphonic pitch stream.
"""

import collections
from typing import Iterable

import numpy as np

from facemusic_jax.music import tokenizer

NGRAM = 8
# A clip is "in" a piece when at least this share of its n-grams occurs there. Measured between all 1,078
# EMOPIA clips and Pop1K7 + POP909: 90% of clips reach at most .008 in any piece and 99% at most .083, while
# the few clips whose song Pop1K7 also covers reach .11-.29 (two clips of one song in the same piece).
CONTAINMENT_THRESHOLD = 0.1


def pitch_stream(ids: np.ndarray, tok: tokenizer.MidiTokenizer | None = None) -> np.ndarray:
  """The pitches of the note-on events of token ids (in `tok`'s vocabulary, default "performance"), in order."""
  lo, hi = (tok or tokenizer.get()).note_on_range
  ids = np.asarray(ids)
  return ids[(ids >= lo) & (ids < hi)] - lo


def ngrams(ids: np.ndarray, n: int = NGRAM, tok: tokenizer.MidiTokenizer | None = None) -> set[bytes]:
  """The set of pitch n-grams of a piece (each as n bytes)."""
  pitches = pitch_stream(ids, tok).astype(np.uint8)
  if len(pitches) < n:
    return set()
  windows = np.lib.stride_tricks.sliding_window_view(pitches, n)
  return {w.tobytes() for w in windows}


class ContainmentIndex:
  """Reference clips' n-grams, inverted, to ask which clips a (long) piece contains."""

  def __init__(self, clips: Iterable[tuple[str, np.ndarray]], tok: tokenizer.MidiTokenizer | None = None,
               n: int = NGRAM):
    self.n, self.tok = n, tok
    self.sizes: dict[str, int] = {}
    self.index: dict[bytes, list[str]] = collections.defaultdict(list)
    for name, ids in clips:
      grams = ngrams(ids, n, tok)
      if grams:
        self.sizes[name] = len(grams)
        for g in grams:
          self.index[g].append(name)

  def containment(self, ids: np.ndarray) -> dict[str, float]:
    """{clip: share of the clip's n-grams found in `ids`} for every clip that shares any."""
    hits = collections.Counter()
    for g in ngrams(ids, self.n, self.tok):
      for name in self.index.get(g, ()):
        hits[name] += 1
    return {name: k / self.sizes[name] for name, k in hits.items()}

  def contained(self, ids: np.ndarray, threshold: float = CONTAINMENT_THRESHOLD) -> list[str]:
    """The clips of which at least `threshold` of the n-grams occur in `ids`, most contained first."""
    found = self.containment(ids)
    return sorted((c for c, x in found.items() if x >= threshold), key=lambda c: (-found[c], c))
