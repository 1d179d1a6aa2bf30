"""EMOPIA 1.0: piano clips with human quadrant labels, split by song."""

import collections
import dataclasses
import functools
import os
from typing import Iterator

import tensorflow_datasets as tfds

from facemusic_jax import labels
from facemusic_jax.data import builder
from facemusic_jax.data.music_datasets import base
from facemusic_jax.labels import sources
from facemusic_jax.music import tokenizer

def emopia_split(manual_dir, placement: str = "centre") -> tuple[str, labels.LabelRun, dict[str, str]]:
  """(midi folder, the labelled clips, {clip file: 'train' | 'validation'}): EMOPIA's song split, as the
  emopia builder and the pretraining corpora's overlap check both read it."""
  midi_dir, label_csv = sources.emopia_layout(manual_dir)
  run = sources.label_emopia(midi_dir, labels.list_midi_files(midi_dir), sources.read_emopia_labels(label_csv),
                             placement, progress=False)
  train, validation = sources.song_split([label.file for label in run.labels], base.VAL_FRACTION, base.SEED)
  return midi_dir, run, {**{f: "train" for f in train}, **{f: "validation" for f in validation}}


def iter_emopia(manual_dir, *, placement: str = "note_rate", num_workers: int | None = None,
                stats: collections.Counter | None = None,
                vocabulary: str = tokenizer.DEFAULT_VOCABULARY) -> Iterator[tuple[str, str, dict]]:
  """Yields (split, clip id, record) for every EMOPIA clip that has a label and encodes.

  The split is decided on every labelled clip before encoding, so a clip that fails never moves a song.
  """
  stats = collections.Counter() if stats is None else stats
  midi_dir, run, split_of = emopia_split(manual_dir, placement)
  builder.skip(stats, "no_label", sum(run.unmatched.values()))
  paths = [os.path.join(midi_dir, label.file) for label in run.labels]
  encode = functools.partial(base.encode_file, vocabulary=vocabulary)
  for label, (ids, skipped) in zip(run.labels, base.parallel_map(encode, paths, num_workers)):
    stats.update(skipped)
    if ids is not None:
      clip = sources.emopia_clip_id(label.file)
      yield split_of[label.file], clip, base.record(ids, label.valence, label.arousal, clip, label.song_id)


@dataclasses.dataclass(eq=False)
class EmopiaConfig(tfds.core.BuilderConfig):
  placement: str = "note_rate"


class Emopia(base.MusicBuilder):
  """EMOPIA 1.0 piano clips with their human quadrant labels (CC BY-NC-SA 4.0, research use)."""

  _DESCRIPTION = "EMOPIA 1.0: 1,078 piano clips from 387 songs, labelled with Russell quadrants."
  BUILDER_CONFIGS = [
      EmopiaConfig(name="note_rate", placement="note_rate",
                   description="Valence at the quadrant's centre, arousal spread by note rate within it."),
      EmopiaConfig(name="note_rate_mode", placement="note_rate_mode",
                   description="Valence spread by mode strength, arousal by note rate, within the quadrant."),
      EmopiaConfig(name="centre", placement="centre", description="Every clip at its quadrant's centre."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"Point the manual dir at {sources.EMOPIA_EXPECTED} (zenodo.org/record/5090631)."

  def _split_generators(self, dl_manager):
    examples = iter_emopia(dl_manager.manual_dir, placement=self.builder_config.placement,
                           num_workers=self.num_workers, stats=self.stats, vocabulary=self.vocabulary)
    by_split = base.by_split(examples, self.stats)
    if not by_split:
      raise builder.nothing_found("EMOPIA", dl_manager.manual_dir, self.stats, sources.EMOPIA_EXPECTED,
                                  what="piece")
    return {split: self._generate_examples(items) for split, items in by_split.items()}
