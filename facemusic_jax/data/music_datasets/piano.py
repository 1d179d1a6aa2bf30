"""Unlabelled piano corpora for pretraining: Pop1K7 and POP909, without the pieces that hold an EMOPIA
validation clip."""

import collections
import dataclasses
import functools
import hashlib
import os
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from facemusic_jax import labels
from facemusic_jax.data import builder
from facemusic_jax.data.music_datasets import base, emopia
from facemusic_jax.labels import sources
from facemusic_jax.music import tokenizer

POP_EXPECTED = {
    "pop1k7": "Pop1K7's folder of MIDI files (src_00<k>/<n>.mid), searched recursively",
    "pop909": "POP909's folder (<NNN>.mid, or <NNN>/<NNN>.mid as in the original repository)",
}


def emopia_validation_index(emopia_dir: str, num_workers: int | None = None,
                            vocabulary: str = tokenizer.DEFAULT_VOCABULARY):
  """An `overlap.ContainmentIndex` of EMOPIA's validation clips (the song split every builder uses)."""
  from facemusic_jax.data import overlap  # pylint: disable=import-outside-toplevel
  midi_dir, _, split_of = emopia.emopia_split(emopia_dir)
  validation = [f for f, split in split_of.items() if split == "validation"]
  paths = [os.path.join(midi_dir, f) for f in validation]
  encode = functools.partial(base.encode_file, vocabulary=vocabulary)
  encoded = base.parallel_map(encode, paths, num_workers)
  clips = [(sources.emopia_clip_id(f), ids) for f, (ids, _) in zip(validation, encoded)
           if ids is not None]
  return overlap.ContainmentIndex(clips, tokenizer.get(vocabulary))


def iter_piano_corpus(manual_dir, *, emopia_dir: str | None = None, num_workers: int | None = None,
                      stats: collections.Counter | None = None,
                vocabulary: str = tokenizer.DEFAULT_VOCABULARY) -> Iterator[tuple[str, str, dict]]:
  """Yields (split, file, record) for every MIDI file under `manual_dir` that encodes (all non-drum tracks
  merged into one piano performance: POP909's MELODY, BRIDGE and PIANO become one).

  With `emopia_dir`, a piece that contains one of EMOPIA's validation clips (by note content, see
  `overlap`) is left out and counted as 'skipped/overlaps_emopia_validation', so pretraining never sees the
  songs that fine-tuning is judged on.
  """
  stats = collections.Counter() if stats is None else stats
  root = os.fspath(manual_dir)
  files = labels.list_midi_files(root)
  index = emopia_validation_index(emopia_dir, num_workers, vocabulary) if emopia_dir else None
  encode = functools.partial(base.encode_file, vocabulary=vocabulary)
  encoded = base.parallel_map(encode, [os.path.join(root, f) for f in files], num_workers)
  for file, (ids, skipped) in zip(files, encoded):
    stats.update(skipped)
    if ids is None:
      continue
    if index is not None:
      clips = index.contained(ids)
      if clips:
        builder.skip(stats, "overlaps_emopia_validation")
        logging.info("%s contains EMOPIA validation clips %s: left out", file, ", ".join(clips[:5]))
        continue
    song = os.path.splitext(file)[0]
    yield base.hash_split(song), file, {"tokens": np.asarray(ids, np.int32), "source_id": file, "song_id": song}


@dataclasses.dataclass(eq=False)
class PianoConfig(tfds.core.BuilderConfig):
  emopia_dir: str | None = None


_ALL_PIECES = PianoConfig(name="all", description="Every piece.")


def piano_config(emopia_dir: str | None) -> PianoConfig:
  if not emopia_dir:
    return _ALL_PIECES
  # The name keys the prepared copy: another EMOPIA folder or threshold may exclude other pieces.
  from facemusic_jax.data import overlap  # pylint: disable=import-outside-toplevel
  spec = f"{os.path.abspath(emopia_dir)}:{overlap.NGRAM}:{overlap.CONTAINMENT_THRESHOLD}"
  key = hashlib.sha1(spec.encode()).hexdigest()[:8]
  return PianoConfig(name=f"no_emopia_validation_{key}", emopia_dir=os.path.abspath(emopia_dir),
                     description="Without the pieces that contain an EMOPIA validation clip.")


class _PianoCorpus(base.MusicBuilder):
  """A folder of unlabelled piano MIDI: pretraining data, conditioned on nothing (the null control)."""

  _LABELLED = False
  BUILDER_CONFIGS = [_ALL_PIECES]

  def _split_generators(self, dl_manager):
    examples = iter_piano_corpus(dl_manager.manual_dir, emopia_dir=self.builder_config.emopia_dir,
                                 num_workers=self.num_workers, stats=self.stats, vocabulary=self.vocabulary)
    by_split = base.by_split(examples, self.stats)
    if not by_split:
      raise builder.nothing_found(self.name, dl_manager.manual_dir, self.stats, POP_EXPECTED[self.name],
                                  what="piece")
    return {split: self._generate_examples(items) for split, items in by_split.items()}


class Pop1k7(_PianoCorpus):
  """Pop1K7 (Hsiao et al., AAAI 2021): 1,747 pop-piano covers transcribed from audio, EMOPIA's pretraining set."""

  _DESCRIPTION = "Pop1K7: 1,747 pop piano covers (~109 h), transcribed like EMOPIA; no emotion labels."
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"Point the manual dir at {POP_EXPECTED['pop1k7']}."


class Pop909(_PianoCorpus):
  """POP909 (Wang et al., ISMIR 2020): 909 pop songs arranged for piano in three tracks (MIT licence)."""

  _DESCRIPTION = "POP909: 909 piano arrangements (~63 h), melody, bridge and piano tracks merged."
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"Point the manual dir at {POP_EXPECTED['pop909']}."
