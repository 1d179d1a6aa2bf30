"""What every music dataset builder shares: the record format, the song split, one file's encoding (skips
counted as `data.builder` does), a process pool, and the music builder base."""

import collections
import hashlib
import multiprocessing
import os
from typing import Callable, Iterable, Iterator

import numpy as np
import tensorflow_datasets as tfds

from facemusic_jax import emotion
from facemusic_jax.data import builder
from facemusic_jax.music import tokenizer

SPLITS = ("train", "validation")
VAL_FRACTION = 0.1
SEED = 0
METRICS_NAMESPACE = "music_datasets"


def features_dict(with_song: bool, labelled: bool = True) -> tfds.features.FeaturesDict:
  # Tensor, not Sequence or Image: both need TensorFlow. A None dimension stores variable lengths.
  features = {"tokens": tfds.features.Tensor(shape=(None,), dtype=np.int32)}
  if labelled:
    features |= {
        "valence": tfds.features.Tensor(shape=(), dtype=np.float32),
        "arousal": tfds.features.Tensor(shape=(), dtype=np.float32),
        "music_class": tfds.features.ClassLabel(names=emotion.MUSIC_CLASSES),
    }
  features["source_id"] = tfds.features.Text()  # Read back as bytes.
  if with_song:
    features["song_id"] = tfds.features.Text()
  return tfds.features.FeaturesDict(features)


def record(ids: np.ndarray, valence: float, arousal: float, source_id: str,
            song_id: str | None = None) -> dict:
  record = {"tokens": np.asarray(ids, np.int32), "valence": np.float32(valence),
            "arousal": np.float32(arousal),
            "music_class": emotion.music_class_index(emotion.music_class(energy=arousal, valence=valence)),
            "source_id": source_id}
  if song_id is not None:
    record["song_id"] = song_id
  return record


def encode_file(path: str,
            vocabulary: str = tokenizer.DEFAULT_VOCABULARY) -> tuple[np.ndarray | None, collections.Counter]:
  """One file through `tokenizer.encode_corpus`: (ids or None, {'skipped/<reason>': 1} when skipped)."""
  found = collections.Counter()
  ids = next((ids for _, ids in tokenizer.encode_corpus([path], tokenizer.get(vocabulary), stats=found)), None)
  stats = collections.Counter()
  for reason, n in found.items():
    if reason != "encoded":
      builder.skip(stats, reason, n)
  return ids, stats


def parallel_map(fn: Callable, items: list, num_workers: int | None, chunksize: int = 8) -> Iterator:
  """fn over items, in order, in `num_workers` processes (this process when <= 1)."""
  num_workers = os.cpu_count() if num_workers is None else num_workers
  if num_workers <= 1 or len(items) <= 1:
    yield from map(fn, items)
    return
  # spawn, not fork: forking a process that runs JAX or Grain threads can deadlock the child.
  with multiprocessing.get_context("spawn").Pool(min(num_workers, len(items))) as pool:
    yield from pool.imap(fn, items, chunksize)


class MusicBuilder(builder.LocalBuilder, skip_registration=True):
  """What the music builders share: the record's features, options beside the config, the vocabulary saved
  as metadata."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  _WITH_SONG = True
  _LABELLED = True

  def __init__(self, *, num_workers: int | None = None, vocabulary: str = tokenizer.DEFAULT_VOCABULARY,
               **kwargs):
    super().__init__(**kwargs)
    self.num_workers = num_workers
    self.vocabulary = vocabulary

  def _features(self) -> tfds.features.FeaturesDict:
    return features_dict(self._WITH_SONG, self._LABELLED)

  def _download_and_prepare(self, dl_manager, download_config):
    super()._download_and_prepare(dl_manager, download_config)
    self.info.metadata["vocabulary"] = self.vocabulary

  def _generate_examples(self, examples):
    for key, record in examples:
      yield key, record


def by_split(examples: Iterable[tuple[str, str, dict]], stats: collections.Counter) -> dict:
  """{split: [(key, record)]} for the non-empty splits only: TFDS fails on an empty split."""
  out = collections.defaultdict(list)
  for split, key, record in examples:
    stats[f"ok/{split}"] += 1
    out[split].append((key, record))
  return {split: out[split] for split in SPLITS if out[split]}


def hash_split(song_id: str) -> str:
  """'validation' for ~VAL_FRACTION of the songs, by a hash of the song id: the same answer on every worker
  and run, and stable when files are added."""
  digest = hashlib.sha1(f"{SEED}:{song_id}".encode()).digest()
  return "validation" if int.from_bytes(digest[:8], "big") < VAL_FRACTION * 2**64 else "train"
