"""music21's bundled core corpus: the embedded default, no download, labelled by the symbolic estimator."""

import collections
import dataclasses
import functools
import os
import random
import tempfile
import time
from typing import Iterator

import tensorflow_datasets as tfds
from absl import logging

from facemusic_jax.core.errors import UserError
from facemusic_jax.data import builder
from facemusic_jax.data.music_datasets import base
from facemusic_jax.labels import sources
from facemusic_jax.music import tokenizer

# music21 core-corpus formats that are music. RomanText (.rntxt) files are harmonic analyses of pieces
# that are mostly in the corpus already, so they are left out.
_MUSIC21_SUFFIXES = (".abc", ".krn", ".mxl", ".xml", ".musicxml", ".mid", ".midi")


# ---------------------------------------------------------------------------------------------------
# music21's bundled corpus.


def music21_pieces() -> list[tuple[str, int | None]]:
  """(path relative to the core corpus, number inside an opus file or None) of every piece, sorted.

  Read from music21's shipped metadata bundle, which lists each tune of a multi-tune file (an Essen or
  O'Neill's ABC collection) as its own work: 14,958 pieces in 3,126 files in music21 10.5.1.
  """
  from music21 import corpus  # pylint: disable=import-outside-toplevel  # heavy, only for this builder
  # [:] lists the entries in one call; iterating the bundle indexes a fresh list per entry (20 s).
  entries = corpus.corpora.CoreCorpus().metadataBundle[:]
  pieces = {(str(entry.sourcePath), None if entry.number is None else int(entry.number)) for entry in entries
            if str(entry.sourcePath).lower().endswith(_MUSIC21_SUFFIXES)}
  # A multi-tune file is also listed as a whole (number None): its tunes are already there one by one.
  multi_tune_files = {path for path, number in pieces if number is not None}
  pieces = {(path, number) for path, number in pieces if number is not None or path not in multi_tune_files}
  return sorted(pieces, key=lambda p: (p[0], -1 if p[1] is None else p[1]))


def music21_piece_id(piece: tuple[str, int | None]) -> str:
  path, number = piece
  return path if number is None else f"{path}#{number}"


def sample_pieces(pieces: list, max_pieces: int | None) -> list:
  """All pieces, or a fixed-seed sample of `max_pieces` of them (spread over the whole corpus)."""
  if max_pieces is None or max_pieces >= len(pieces):
    return list(pieces)
  return sorted(random.Random(base.SEED).sample(pieces, max_pieces), key=music21_piece_id)


def _music21_midi(piece: tuple[str, int | None], path: str) -> str | None:
  """Writes the piece as MIDI to `path` with music21; the skip reason if music21 cannot."""
  from music21 import common, converter, midi, stream  # pylint: disable=import-outside-toplevel
  source = os.path.join(common.getCorpusFilePath(), piece[0])
  try:
    # forceSource: parse the file itself and write no pickle to music21's cache under $TMPDIR/music21.
    score = converter.parse(source, number=piece[1], forceSource=True)
  except Exception:  # pylint: disable=broad-except  # each of music21's parsers raises its own types
    return "music21_parse_error"
  if isinstance(score, stream.Opus):  # A file listed as one work that holds several: keep the first.
    if not score.scores:
      return "music21_parse_error"
    score = score.scores[0]
  try:
    # Repeats are expanded here, as a performance plays them; this is most of the time of a piece.
    data = midi.translate.streamToMidiFile(score).writestr()
  except Exception:  # pylint: disable=broad-except  # e.g. StreamException on some Essen tunes
    return "music21_midi_error"
  with open(path, "wb") as f:
    f.write(data)
  return None


def music21_example(piece: tuple[str, int | None],
                    vocabulary: str = tokenizer.DEFAULT_VOCABULARY) -> tuple[str, dict | None, collections.Counter]:
  """(piece id, record or None, skip counts) of one corpus piece: music21 -> MIDI -> tokens + estimate."""
  from facemusic_jax.music import estimator  # pylint: disable=import-outside-toplevel
  piece_id = music21_piece_id(piece)
  stats = collections.Counter()
  with tempfile.TemporaryDirectory(prefix="music21_midi_") as tmp:
    path = os.path.join(tmp, "piece.mid")
    reason = _music21_midi(piece, path)
    if reason:
      builder.skip(stats, reason)
      return piece_id, None, stats
    ids, stats = base.encode_file(path, vocabulary)
    if ids is None:
      return piece_id, None, stats
    try:
      prediction = estimator.predict(path)
    except Exception:  # pylint: disable=broad-except  # the tokenizer read it; count anything odd here
      builder.skip(stats, "estimate_error")
      return piece_id, None, stats
  return piece_id, base.record(ids, prediction["valence"], prediction["arousal"], piece_id), stats


def iter_music21(*, max_pieces: int | None = None, num_workers: int | None = None,
                 stats: collections.Counter | None = None,
                vocabulary: str = tokenizer.DEFAULT_VOCABULARY) -> Iterator[tuple[str, str, dict]]:
  """Yields (split, piece id, record) for every piece of music21's corpus that becomes a sequence."""
  stats = collections.Counter() if stats is None else stats
  pieces = sample_pieces(music21_pieces(), max_pieces)
  _, validation = sources.song_split([music21_piece_id(p) for p in pieces], base.VAL_FRACTION, base.SEED,
                                     song_of=lambda piece_id: piece_id)
  validation = set(validation)
  # Chunks of 4: enough to keep the pool busy, small enough that a slow quartet does not stall the end.
  example = functools.partial(music21_example, vocabulary=vocabulary)
  for piece_id, record, skipped in base.parallel_map(example, pieces, num_workers, chunksize=4):
    stats.update(skipped)
    if record is not None:
      yield ("validation" if piece_id in validation else "train"), piece_id, record


@dataclasses.dataclass(eq=False)
class Music21Config(tfds.core.BuilderConfig):
  max_pieces: int | None = None


def music21_config(max_pieces: int | None = None) -> Music21Config:
  if max_pieces is None:
    return Music21Corpus.BUILDER_CONFIGS[0]
  if max_pieces < 1:
    raise UserError(f"max_pieces={max_pieces}: give a positive number, or None for the whole corpus")
  return Music21Config(name=f"sample{max_pieces}", max_pieces=max_pieces,
                       description=f"A fixed-seed sample of {max_pieces} pieces.")


class Music21Corpus(base.MusicBuilder):
  """music21's bundled corpus, labelled by the symbolic estimator: the dataset that needs no download."""

  _DESCRIPTION = ("music21's core corpus (Bach chorales, Essen folksongs, O'Neill's tunes, Palestrina, ...) "
                  "written to MIDI by music21, valence/arousal from the symbolic emotion estimator.")
  _WITH_SONG = False
  BUILDER_CONFIGS = [Music21Config(name="all", description="Every piece of the core corpus.")]

  def _source_name(self, dl_manager) -> str:
    return "music21's corpus"

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to read: the corpus ships with music21.
    started = time.time()
    examples = iter_music21(max_pieces=self.builder_config.max_pieces, num_workers=self.num_workers,
                            stats=self.stats, vocabulary=self.vocabulary)
    by_split = base.by_split(examples, self.stats)
    logging.info("music21 corpus: %d pieces in %.0f s", sum(map(len, by_split.values())),
                 time.time() - started)
    if not by_split:
      raise builder.nothing_found("music21", "music21's corpus", self.stats, "a music21 install with its corpus",
                                  what="piece")
    return {split: self._generate_examples(items) for split, items in by_split.items()}
