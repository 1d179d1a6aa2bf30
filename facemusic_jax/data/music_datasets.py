"""Emotion-labelled music as TFDS datasets in ArrayRecord files, built without TensorFlow.

Every builder stores one record per piece:
  tokens       int32 (n,)  the piece's events in the dataset's vocabulary (`tokenizer.get(vocabulary)` ids, no
                           BOS/EOS/control; "performance" unless `prepare` is given another)
  valence      float32     in [0, 1], Spotify scale (read back as a Python float)
  arousal      float32     in [0, 1], Spotify scale: Spotify's energy (read back as a Python float)
  music_class  ClassLabel  index into `emotion.MUSIC_CLASSES` (the paper's rule on arousal and valence)
  source_id    bytes       where the piece came from: EMOPIA clip id, MetaMIDI file, music21 piece
  song_id      bytes       (emopia, metamidi) the unit that the train/validation split never cuts

Builders (`prepare(name, manual_dir, data_dir, **options)`):
  emopia          EMOPIA 1.0 (`midis/Q<k>_<song>_<n>.mid` + `label.csv`), human quadrant labels placed on the
                  plane by `labels.sources.label_emopia`. Validation: ~10% of the songs (fixed seed).
                  Options: placement ("note_rate" | "note_rate_mode" | "centre"), num_workers.
  music21_corpus  the embedded default, no download: every piece of music21's bundled core corpus (Bach
                  chorales, Essen folksongs, O'Neill's tunes, Palestrina ...), written to MIDI by music21 and
                  labelled by the symbolic estimator (`facemusic_jax.estimator`). Validation: ~10% of the
                  pieces (fixed seed). Options: max_pieces (a fixed-seed sample; default all), num_workers.
  pop1k7, pop909  unlabelled pop-piano corpora for pretraining (Pop1K7 `src_00<k>/<n>.mid`; POP909 `<NNN>.mid`,
                  its MELODY, BRIDGE and PIANO tracks merged). Validation: ~10% of the pieces, by a hash.
                  Options: emopia_dir (leave out pieces that contain an EMOPIA validation clip, found by note
                  content, `overlap.py`), num_workers.
  metamidi        MetaMIDI (`MMD_MIDI/<c1>/<c2>/<c3>/<md5>.mid`) + a labels CSV written by
                  `python -m facemusic_jax.label ...` (default `labels.csv` in the manual dir). Validation:
                  ~10% of the songs (matched Spotify track, else the md5), by a hash, so it needs no global
                  state and works the same under Beam. Options: labels_csv, num_workers, beam_runner,
                  beam_options.

Bad MIDI files are skipped and counted by reason (the tokenizer's `REASONS`, plus music21's own failures);
the counts are logged and saved in the dataset's metadata (`builder.info.metadata["counts"]`).

MetaMIDI at full size (436,631 files) runs as an Apache Beam pipeline when a runner or pipeline options
are given (DirectRunner, Dataflow, Flink, Spark): docs/metamidi_beam.md says how. Without them the builder
runs here with `num_workers` processes.
"""

import collections
import contextlib
import csv
import dataclasses
import functools
import hashlib
import io
import multiprocessing
import os
import random
import shutil
import tempfile
import time
from typing import Callable, Iterable, Iterator

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from facemusic_jax import emotion
from facemusic_jax import labels
from facemusic_jax.data import prepare_builder
from facemusic_jax.data import tokenizer
from facemusic_jax.errors import UserError
from facemusic_jax.labels import sources

SPLITS = ("train", "validation")
VAL_FRACTION = 0.1
SEED = 0
_METRICS_NAMESPACE = "music_datasets"

# music21 core-corpus formats that are music. RomanText (.rntxt) files are harmonic analyses of pieces
# that are mostly in the corpus already, so they are left out.
_MUSIC21_SUFFIXES = (".abc", ".krn", ".mxl", ".xml", ".musicxml", ".mid", ".midi")


def _features(with_song: bool, labelled: bool = True) -> tfds.features.FeaturesDict:
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


def _record(ids: np.ndarray, valence: float, arousal: float, source_id: str,
            song_id: str | None = None) -> dict:
  record = {"tokens": np.asarray(ids, np.int32), "valence": np.float32(valence),
            "arousal": np.float32(arousal),
            "music_class": emotion.music_class_index(emotion.music_class(energy=arousal, valence=valence)),
            "source_id": source_id}
  if song_id is not None:
    record["song_id"] = song_id
  return record


# ---------------------------------------------------------------------------------------------------
# Counting, logging, workers.


def _skip(stats: collections.Counter, reason: str, n: int = 1) -> None:
  if n:
    stats[f"skipped/{reason}"] += n


def _summary(stats, prefix: str) -> str:
  return ", ".join(f"{key[len(prefix):]}={n}" for key, n in sorted(stats.items()) if key.startswith(prefix))


def _log_stats(name: str, source, stats) -> None:
  logging.info("%s from %s: %s", name, source, _summary(stats, "ok/") or "no examples")
  skipped = _summary(stats, "skipped/")
  if skipped:
    logging.warning("%s from %s: skipped %s", name, source, skipped)


def _nothing_found(name: str, source, stats, expected: str) -> UserError:
  return UserError(f"{source}: no valid {name} piece ({_summary(stats, 'skipped/') or 'no files'}); "
                   f"expected {expected}")


def _encode(path: str,
            vocabulary: str = tokenizer.DEFAULT_VOCABULARY) -> tuple[np.ndarray | None, collections.Counter]:
  """One file through `tokenizer.encode_corpus`: (ids or None, {'skipped/<reason>': 1} when skipped)."""
  found = collections.Counter()
  ids = next((ids for _, ids in tokenizer.encode_corpus([path], tokenizer.get(vocabulary), stats=found)), None)
  stats = collections.Counter()
  for reason, n in found.items():
    if reason != "encoded":
      _skip(stats, reason, n)
  return ids, stats


def _map(fn: Callable, items: list, num_workers: int | None, chunksize: int = 8) -> Iterator:
  """fn over items, in order, in `num_workers` processes (this process when <= 1)."""
  num_workers = os.cpu_count() if num_workers is None else num_workers
  if num_workers <= 1 or len(items) <= 1:
    yield from map(fn, items)
    return
  # spawn, not fork: forking a process that runs JAX or Grain threads can deadlock the child.
  with multiprocessing.get_context("spawn").Pool(min(num_workers, len(items))) as pool:
    yield from pool.imap(fn, items, chunksize)


class _MusicBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """What the three builders share: options beside the config, skip counts saved as metadata."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  # Nothing is downloaded, so there are no checksums (and TFDS 4.9.10 would otherwise look for a checksums
  # file beside this module through `importlib_resources`).
  url_infos = None
  _DESCRIPTION = ""
  _WITH_SONG = True
  _LABELLED = True

  def __init__(self, *, num_workers: int | None = None, vocabulary: str = tokenizer.DEFAULT_VOCABULARY,
               **kwargs):
    super().__init__(**kwargs)
    self.num_workers = num_workers
    self.vocabulary = vocabulary
    self.stats = collections.Counter()

  def _info(self) -> tfds.core.DatasetInfo:
    # Built directly: `dataset_info_from_configs` looks for metadata files beside this module.
    return tfds.core.DatasetInfo(builder=self, description=self._DESCRIPTION,
                                 features=_features(self._WITH_SONG, self._LABELLED),
                                 metadata=tfds.core.MetadataDict())

  def _download_and_prepare(self, dl_manager, download_config):
    super()._download_and_prepare(dl_manager, download_config)
    # After generation: the counts fill while the examples are generated (or come from Beam's metrics).
    self.info.metadata["counts"] = dict(self.stats)
    self.info.metadata["vocabulary"] = self.vocabulary
    _log_stats(self.name, self._source_name(dl_manager), self.stats)

  def _source_name(self, dl_manager) -> str:
    return str(dl_manager.manual_dir)

  def _generate_examples(self, examples):
    for key, record in examples:
      yield key, record


def _by_split(examples: Iterable[tuple[str, str, dict]], stats: collections.Counter) -> dict:
  """{split: [(key, record)]} for the non-empty splits only: TFDS fails on an empty split."""
  out = collections.defaultdict(list)
  for split, key, record in examples:
    stats[f"ok/{split}"] += 1
    out[split].append((key, record))
  return {split: out[split] for split in SPLITS if out[split]}


# ---------------------------------------------------------------------------------------------------
# EMOPIA.

_EMOPIA_EXPECTED = "EMOPIA's folder: midis/Q<k>_<songid>_<n>.mid and label.csv (ID, 4Q)"


def emopia_layout(manual_dir) -> tuple[str, str]:
  """(midi folder, label.csv) of EMOPIA's folder, or of its midis/ folder with label.csv beside it."""
  manual_dir = os.fspath(manual_dir)
  midi_dir = os.path.join(manual_dir, "midis")
  if not os.path.isdir(midi_dir):
    midi_dir = manual_dir
  for folder in (manual_dir, os.path.dirname(os.path.abspath(manual_dir))):
    if os.path.isfile(os.path.join(folder, "label.csv")):
      return midi_dir, os.path.join(folder, "label.csv")
  raise UserError(f"{manual_dir}: no label.csv in it or its parent; expected {_EMOPIA_EXPECTED}")


def emopia_split(manual_dir, placement: str = "centre") -> tuple[str, labels.LabelRun, dict[str, str]]:
  """(midi folder, the labelled clips, {clip file: 'train' | 'validation'}): EMOPIA's song split, as the
  emopia builder and the pretraining corpora's overlap check both read it."""
  midi_dir, label_csv = emopia_layout(manual_dir)
  run = sources.label_emopia(midi_dir, labels.list_midi_files(midi_dir), sources.read_emopia_labels(label_csv),
                             placement, progress=False)
  train, validation = sources.song_split([label.file for label in run.labels], VAL_FRACTION, SEED)
  return midi_dir, run, {**{f: "train" for f in train}, **{f: "validation" for f in validation}}


def iter_emopia(manual_dir, *, placement: str = "note_rate", num_workers: int | None = None,
                stats: collections.Counter | None = None,
                vocabulary: str = tokenizer.DEFAULT_VOCABULARY) -> Iterator[tuple[str, str, dict]]:
  """Yields (split, clip id, record) for every EMOPIA clip that has a label and encodes.

  The split is decided on every labelled clip before encoding, so a clip that fails never moves a song.
  """
  stats = collections.Counter() if stats is None else stats
  midi_dir, run, split_of = emopia_split(manual_dir, placement)
  _skip(stats, "no_label", sum(run.unmatched.values()))
  paths = [os.path.join(midi_dir, label.file) for label in run.labels]
  encode = functools.partial(_encode, vocabulary=vocabulary)
  for label, (ids, skipped) in zip(run.labels, _map(encode, paths, num_workers)):
    stats.update(skipped)
    if ids is not None:
      clip = sources.emopia_clip_id(label.file)
      yield split_of[label.file], clip, _record(ids, label.valence, label.arousal, clip, label.song_id)


@dataclasses.dataclass(eq=False)
class EmopiaConfig(tfds.core.BuilderConfig):
  placement: str = "note_rate"


class Emopia(_MusicBuilder):
  """EMOPIA 1.0 piano clips with their human quadrant labels (CC BY-NC-SA 4.0, research use)."""

  _DESCRIPTION = "EMOPIA 1.0: 1,078 piano clips from 387 songs, labelled with Russell quadrants."
  BUILDER_CONFIGS = [
      EmopiaConfig(name="note_rate", placement="note_rate",
                   description="Valence at the quadrant's centre, arousal spread by note rate within it."),
      EmopiaConfig(name="note_rate_mode", placement="note_rate_mode",
                   description="Valence spread by mode strength, arousal by note rate, within the quadrant."),
      EmopiaConfig(name="centre", placement="centre", description="Every clip at its quadrant's centre."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"Point the manual dir at {_EMOPIA_EXPECTED} (zenodo.org/record/5090631)."

  def _split_generators(self, dl_manager):
    examples = iter_emopia(dl_manager.manual_dir, placement=self.builder_config.placement,
                           num_workers=self.num_workers, stats=self.stats, vocabulary=self.vocabulary)
    by_split = _by_split(examples, self.stats)
    if not by_split:
      raise _nothing_found("EMOPIA", dl_manager.manual_dir, self.stats, _EMOPIA_EXPECTED)
    return {split: self._generate_examples(items) for split, items in by_split.items()}


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
  return sorted(random.Random(SEED).sample(pieces, max_pieces), key=music21_piece_id)


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
  from facemusic_jax import estimator  # pylint: disable=import-outside-toplevel
  piece_id = music21_piece_id(piece)
  stats = collections.Counter()
  with tempfile.TemporaryDirectory(prefix="music21_midi_") as tmp:
    path = os.path.join(tmp, "piece.mid")
    reason = _music21_midi(piece, path)
    if reason:
      _skip(stats, reason)
      return piece_id, None, stats
    ids, stats = _encode(path, vocabulary)
    if ids is None:
      return piece_id, None, stats
    try:
      prediction = estimator.predict(path)
    except Exception:  # pylint: disable=broad-except  # the tokenizer read it; count anything odd here
      _skip(stats, "estimate_error")
      return piece_id, None, stats
  return piece_id, _record(ids, prediction["valence"], prediction["arousal"], piece_id), stats


def iter_music21(*, max_pieces: int | None = None, num_workers: int | None = None,
                 stats: collections.Counter | None = None,
                vocabulary: str = tokenizer.DEFAULT_VOCABULARY) -> Iterator[tuple[str, str, dict]]:
  """Yields (split, piece id, record) for every piece of music21's corpus that becomes a sequence."""
  stats = collections.Counter() if stats is None else stats
  pieces = sample_pieces(music21_pieces(), max_pieces)
  _, validation = sources.song_split([music21_piece_id(p) for p in pieces], VAL_FRACTION, SEED,
                                     song_of=lambda piece_id: piece_id)
  validation = set(validation)
  # Chunks of 4: enough to keep the pool busy, small enough that a slow quartet does not stall the end.
  example = functools.partial(music21_example, vocabulary=vocabulary)
  for piece_id, record, skipped in _map(example, pieces, num_workers, chunksize=4):
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


class Music21Corpus(_MusicBuilder):
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
    by_split = _by_split(examples, self.stats)
    logging.info("music21 corpus: %d pieces in %.0f s", sum(map(len, by_split.values())),
                 time.time() - started)
    if not by_split:
      raise _nothing_found("music21", "music21's corpus", self.stats, "a music21 install with its corpus")
    return {split: self._generate_examples(items) for split, items in by_split.items()}


# ---------------------------------------------------------------------------------------------------
# Unlabelled piano corpora for pretraining: Pop1K7 and POP909.

_POP_EXPECTED = {
    "pop1k7": "Pop1K7's folder of MIDI files (src_00<k>/<n>.mid), searched recursively",
    "pop909": "POP909's folder (<NNN>.mid, or <NNN>/<NNN>.mid as in the original repository)",
}


def hash_split(song_id: str) -> str:
  """'validation' for ~VAL_FRACTION of the songs, by a hash of the song id: the same answer on every worker
  and run, and stable when files are added."""
  digest = hashlib.sha1(f"{SEED}:{song_id}".encode()).digest()
  return "validation" if int.from_bytes(digest[:8], "big") < VAL_FRACTION * 2**64 else "train"


def emopia_validation_index(emopia_dir: str, num_workers: int | None = None,
                            vocabulary: str = tokenizer.DEFAULT_VOCABULARY):
  """An `overlap.ContainmentIndex` of EMOPIA's validation clips (the song split every builder uses)."""
  from facemusic_jax.data import overlap  # pylint: disable=import-outside-toplevel
  midi_dir, _, split_of = emopia_split(emopia_dir)
  validation = [f for f, split in split_of.items() if split == "validation"]
  paths = [os.path.join(midi_dir, f) for f in validation]
  encode = functools.partial(_encode, vocabulary=vocabulary)
  clips = [(sources.emopia_clip_id(f), ids) for f, (ids, _) in zip(validation, _map(encode, paths, num_workers))
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
  encode = functools.partial(_encode, vocabulary=vocabulary)
  for file, (ids, skipped) in zip(files, _map(encode, [os.path.join(root, f) for f in files], num_workers)):
    stats.update(skipped)
    if ids is None:
      continue
    if index is not None:
      clips = index.contained(ids)
      if clips:
        _skip(stats, "overlaps_emopia_validation")
        logging.info("%s contains EMOPIA validation clips %s: left out", file, ", ".join(clips[:5]))
        continue
    song = os.path.splitext(file)[0]
    yield hash_split(song), file, {"tokens": np.asarray(ids, np.int32), "source_id": file, "song_id": song}


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


class _PianoCorpus(_MusicBuilder):
  """A folder of unlabelled piano MIDI: pretraining data, conditioned on nothing (the null control)."""

  _LABELLED = False
  BUILDER_CONFIGS = [_ALL_PIECES]

  def _split_generators(self, dl_manager):
    examples = iter_piano_corpus(dl_manager.manual_dir, emopia_dir=self.builder_config.emopia_dir,
                                 num_workers=self.num_workers, stats=self.stats, vocabulary=self.vocabulary)
    by_split = _by_split(examples, self.stats)
    if not by_split:
      raise _nothing_found(self.name, dl_manager.manual_dir, self.stats, _POP_EXPECTED[self.name])
    return {split: self._generate_examples(items) for split, items in by_split.items()}


class Pop1k7(_PianoCorpus):
  """Pop1K7 (Hsiao et al., AAAI 2021): 1,747 pop-piano covers transcribed from audio, EMOPIA's pretraining set."""

  _DESCRIPTION = "Pop1K7: 1,747 pop piano covers (~109 h), transcribed like EMOPIA; no emotion labels."
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"Point the manual dir at {_POP_EXPECTED['pop1k7']}."


class Pop909(_PianoCorpus):
  """POP909 (Wang et al., ISMIR 2020): 909 pop songs arranged for piano in three tracks (MIT licence)."""

  _DESCRIPTION = "POP909: 909 piano arrangements (~63 h), melody, bridge and piano tracks merged."
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"Point the manual dir at {_POP_EXPECTED['pop909']}."


# ---------------------------------------------------------------------------------------------------
# MetaMIDI (+ a labels CSV), plain or with Apache Beam.

_METAMIDI_EXPECTED = ("MMD_MIDI/<c1>/<c2>/<c3>/<md5>.mid and a labels CSV of `python -m facemusic_jax.label` "
                      "(labels.csv in the manual dir, or the labels_csv option)")


@dataclasses.dataclass(frozen=True)
class LabelRow:
  file: str  # as written in the labels CSV
  valence: float
  arousal: float
  song_id: str


def parse_label_row(row: dict) -> LabelRow | None:
  """A labels-CSV row -> LabelRow, or None when it is unusable (values outside [0, 1], class contradicted)."""
  try:
    label = labels.make_label(row["file"], row["valence"], row["arousal"], row.get("source") or "")
  except (KeyError, TypeError, ValueError):
    return None
  if not label.file or label.music_emotion != row.get("music_emotion"):
    return None
  song = row.get("spotify_id") or row.get("md5") or labels.md5_of(label.file) or label.file
  return LabelRow(label.file, label.valence, label.arousal, song)


def _open_text(path: str, open_fn):
  """A labels CSV as text; `open_fn` opens it in binary (plain `open` or Beam's file systems)."""
  try:
    return io.TextIOWrapper(open_fn(path), encoding="utf-8-sig", newline="")
  except OSError as e:
    raise UserError(f"{path}: cannot read the labels CSV ({e}); expected {_METAMIDI_EXPECTED}") from e


def read_label_rows(path: str, open_fn=lambda p: open(p, "rb"),
                    stats: collections.Counter | None = None) -> tuple[list[str], list[LabelRow]]:
  """(header, usable rows) of a labels CSV; bad rows are counted as 'skipped/bad_label_row' and repeated
  files as 'skipped/duplicate_label_row' (the first row of a file wins)."""
  stats = collections.Counter() if stats is None else stats
  with _open_text(path, open_fn) as f:
    reader = csv.DictReader(f)
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [c for c in ("file", "valence", "arousal", "music_emotion") if c not in header]
    if missing:
      raise UserError(f"{path}: not a labels CSV (missing {', '.join(missing)}); "
                      f"expected {_METAMIDI_EXPECTED}")
    reader.fieldnames = header
    rows, seen = [], set()
    for row in reader:
      parsed = parse_label_row(row)
      if parsed is None:
        _skip(stats, "bad_label_row")
      elif parsed.file in seen:
        _skip(stats, "duplicate_label_row")
      else:
        seen.add(parsed.file)
        rows.append(parsed)
  return header, rows


def metamidi_midi_root(manual_dir: str, first_file: str, exists=os.path.exists) -> str:
  """The folder the CSV's `file` paths start from: the manual dir or its MMD_MIDI/ (label.py's --midi-dir)."""
  for root in (manual_dir, _join(manual_dir, "MMD_MIDI")):
    if exists(_join(root, first_file)):
      return root
  raise UserError(f"{manual_dir}: the labels CSV names {first_file!r}, which is neither in it nor in its "
                  f"MMD_MIDI/; expected {_METAMIDI_EXPECTED}")


def _join(root: str, relative: str) -> str:
  return root.rstrip("/") + "/" + relative.lstrip("/")  # Also right for gs:// and other URLs.


def metamidi_example(row: LabelRow, root: str,
                     vocabulary: str = tokenizer.DEFAULT_VOCABULARY) -> tuple[str, dict | None, collections.Counter]:
  """(source id, record or None, skip counts) of one labelled MetaMIDI file on this machine's disk."""
  ids, stats = _encode(_join(root, row.file), vocabulary)
  if ids is None:
    return row.file, None, stats
  return row.file, _record(ids, row.valence, row.arousal, row.file, row.song_id), stats


class _MetamidiTask:
  """metamidi_example with its root and vocabulary bound: a picklable callable for the process pool."""

  def __init__(self, root: str, vocabulary: str):
    self.root, self.vocabulary = root, vocabulary

  def __call__(self, row: LabelRow):
    return metamidi_example(row, self.root, self.vocabulary)


# --- Beam -------------------------------------------------------------------------------------------


def _beam():
  return tfds.core.lazy_imports_lib.lazy_imports.apache_beam


def _beam_open(path: str):
  return _beam().io.filesystems.FileSystems.open(path)


def _beam_exists(path: str) -> bool:
  return _beam().io.filesystems.FileSystems.exists(path)


def _count(name: str, n: int = 1) -> None:
  _beam().metrics.Metrics.counter(_METRICS_NAMESPACE, name).inc(n)


def _beam_rows(line: str, header: list[str], split: str) -> Iterator[LabelRow]:
  """The label row of one CSV line when it belongs to `split` (the launcher has counted the bad rows)."""
  row = parse_label_row(dict(zip(header, next(csv.reader([line]), []))))
  if row is not None and hash_split(row.song_id) == split:
    yield row


def _beam_example(row: LabelRow, root: str, split: str, vocabulary: str) -> Iterator[tuple[str, dict]]:
  """Copies the file through Beam's file systems (local, gs://, hdfs://, s3://) and encodes the copy."""
  with tempfile.TemporaryDirectory(prefix="metamidi_") as tmp:
    local = os.path.join(tmp, "piece.mid")
    try:
      with _beam_open(_join(root, row.file)) as src, open(local, "wb") as dst:
        shutil.copyfileobj(src, dst)
    except Exception:  # pylint: disable=broad-except  # each file system raises its own types
      _count("skipped/unreadable")
      return
    ids, stats = _encode(local, vocabulary)
  for reason, n in stats.items():
    _count(reason, n)
  if ids is not None:
    _count(f"ok/{split}")
    yield row.file, _record(ids, row.valence, row.arousal, row.file, row.song_id)


def _beam_split(labels_csv: str, header: list[str], root: str, split: str, vocabulary: str):
  beam = _beam()
  return (f"ReadLabels_{split}" >> beam.io.ReadFromText(labels_csv, skip_header_lines=1)
          | f"Rows_{split}" >> beam.FlatMap(_beam_rows, header=header, split=split)
          # Spread the files over the workers: one text file is read by few of them.
          | f"Reshuffle_{split}" >> beam.Reshuffle()
          | f"Encode_{split}" >> beam.FlatMap(_beam_example, root=root, split=split, vocabulary=vocabulary))


# --- builder ----------------------------------------------------------------------------------------


class Metamidi(_MusicBuilder):
  """MetaMIDI files with the labels of `python -m facemusic_jax.label` (Spotify, a table, an estimate)."""

  _DESCRIPTION = "MetaMIDI files labelled with valence/energy (Spotify audio features or an estimate)."
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Point the manual dir at a folder holding {_METAMIDI_EXPECTED}. MetaMIDI: zenodo.org/record/5142664;
  labels: python -m facemusic_jax.label spotify|features-table|estimate --midi-dir DIR/MMD_MIDI \
      --out DIR/labels.csv
  """

  def __init__(self, *, labels_csv: str | None = None, **kwargs):
    super().__init__(**kwargs)
    self.labels_csv = labels_csv
    self._use_beam = False

  def _download_and_prepare(self, dl_manager, download_config):
    # Beam when the caller names a runner or options (`prepare(..., beam_runner=..., beam_options=...)`);
    # beam.Pipeline() with neither would pick the DirectRunner silently.
    self._use_beam = download_config.beam_runner is not None or download_config.beam_options is not None
    super()._download_and_prepare(dl_manager, download_config)

  def _split_generators(self, dl_manager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    labels_csv = self.labels_csv or _join(manual_dir, "labels.csv")
    open_fn = _beam_open if self._use_beam else (lambda p: open(p, "rb"))
    # The launcher reads every row once (small next to the MIDI) to find the MIDI root and which splits
    # have files; with Beam the workers read the CSV again, in parallel.
    header, rows = read_label_rows(labels_csv, open_fn, self.stats)
    if not rows:
      raise _nothing_found("MetaMIDI", labels_csv, self.stats, _METAMIDI_EXPECTED)
    root = metamidi_midi_root(manual_dir, rows[0].file, _beam_exists if self._use_beam else os.path.exists)
    by_split = collections.defaultdict(list)
    for row in rows:
      by_split[hash_split(row.song_id)].append(row)
    splits = [split for split in SPLITS if by_split[split]]  # TFDS fails on an empty split.
    if self._use_beam:
      if self.stats["skipped/duplicate_label_row"]:
        raise UserError(f"{labels_csv}: {self.stats['skipped/duplicate_label_row']} files are listed twice; "
                        "the Beam path reads every row, so keep one row per file")
      return {split: _beam_split(labels_csv, header, root, split, self.vocabulary) for split in splits}
    return {split: self._plain_examples(split, by_split[split], root) for split in splits}

  def _plain_examples(self, split: str, rows: list[LabelRow], root: str) -> Iterator[tuple[str, dict]]:
    found = 0
    for key, record, skipped in _map(_MetamidiTask(root, self.vocabulary), rows, self.num_workers, chunksize=16):
      self.stats.update(skipped)
      if record is not None:
        found += 1
        self.stats[f"ok/{split}"] += 1
        yield key, record
    if not found:
      raise _nothing_found(f"MetaMIDI ({split} split)", root, self.stats, _METAMIDI_EXPECTED)

  def _process_pipeline_result(self, pipeline_result) -> None:
    """Beam's counters (summed over workers) -> the same skip counts as the plain path."""
    metrics = _beam().metrics.metric.MetricsFilter().with_namespace(_METRICS_NAMESPACE)
    for counter in pipeline_result.metrics().query(metrics)["counters"]:
      value = counter.committed if counter.committed is not None else counter.attempted
      self.stats[counter.key.metric.name] += int(value or 0)


# ---------------------------------------------------------------------------------------------------
# Entry point.

BUILDERS = {"emopia": Emopia, "music21_corpus": Music21Corpus, "metamidi": Metamidi, "pop1k7": Pop1k7,
            "pop909": Pop909}
_OPTIONS = {
    "emopia": ("placement", "num_workers"),
    "pop1k7": ("emopia_dir", "num_workers"),
    "pop909": ("emopia_dir", "num_workers"),
    "music21_corpus": ("max_pieces", "num_workers"),
    "metamidi": ("labels_csv", "num_workers", "beam_runner", "beam_options"),
}


def _make_builder(name: str, data_dir, options: dict,
                  vocabulary: str = tokenizer.DEFAULT_VOCABULARY) -> _MusicBuilder:
  kwargs = dict(data_dir=os.fspath(data_dir), file_format="array_record",
                num_workers=options.get("num_workers"), vocabulary=vocabulary)
  if name == "emopia":
    placement = options.get("placement", "note_rate")
    if placement not in sources.PLACEMENTS:
      raise UserError(f"placement={placement!r}: use one of {', '.join(sources.PLACEMENTS)}")
    return Emopia(config=placement, **kwargs)
  if name == "music21_corpus":
    with _quiet_custom_config():
      return Music21Corpus(config=music21_config(options.get("max_pieces")), **kwargs)
  if name in ("pop1k7", "pop909"):
    emopia_dir = options.get("emopia_dir")
    if emopia_dir:
      emopia_layout(emopia_dir)  # a wrong folder fails here, in one line, before any encoding
    with _quiet_custom_config():
      return BUILDERS[name](config=piano_config(emopia_dir), **kwargs)
  return Metamidi(config=None, labels_csv=options.get("labels_csv"), **kwargs)


@contextlib.contextmanager
def _quiet_custom_config():
  """TFDS warns 'Using custom data configuration' for every sample size; that is the intent here."""
  level = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(level)


def _beam_options(options):
  """A PipelineOptions from "key=value,..." (as `tfds build --beam_pipeline_options`), or as given."""
  if options is None or not isinstance(options, str):
    return options
  pipeline_options = _beam().options.pipeline_options
  return pipeline_options.PipelineOptions(flags=[f"--{opt}" for opt in options.split(",") if opt])


def _check_manual_dir(name: str, manual_dir) -> None:
  if name == "music21_corpus":
    return
  if not manual_dir:
    raise UserError(f"dataset {name} needs a folder: give it as {name}:DIR")
  manual = os.fspath(manual_dir)
  if "://" not in manual and (not os.path.isdir(manual) or not os.listdir(manual)):
    expected = {"emopia": _EMOPIA_EXPECTED, "metamidi": _METAMIDI_EXPECTED, **_POP_EXPECTED}[name]
    raise UserError(f"{manual}: missing or empty folder; expected {expected}")


def prepare(name: str, manual_dir, data_dir, *, vocabulary: str = tokenizer.DEFAULT_VOCABULARY, **options) -> dict:
  """Builds dataset `name` into `data_dir` once; returns {split: random-access source} for its splits.

  A dataset already prepared in `data_dir` with the same options is reused (the manual dir is then not
  read). Items read back as dicts: tokens int32 array (n,), valence and arousal floats (stored float32),
  music_class int, source_id bytes (and song_id bytes for emopia and metamidi). `manual_dir` is unused
  for music21_corpus. Options per dataset are listed in the module docstring.
  """
  if name not in BUILDERS:
    raise UserError(f"unknown music dataset {name!r}; use one of: {', '.join(BUILDERS)}")
  unknown = sorted(set(options) - set(_OPTIONS[name]))
  if unknown:
    raise UserError(f"dataset {name} has no option {', '.join(unknown)} (it has {', '.join(_OPTIONS[name])})")
  if vocabulary not in tokenizer.VOCABULARIES:
    raise UserError(f"vocabulary={vocabulary!r}: use one of {', '.join(tokenizer.VOCABULARIES)}")
  builder = _make_builder(name, data_dir, options, vocabulary)
  if builder.is_prepared():
    found = builder.info.metadata.get("vocabulary", tokenizer.DEFAULT_VOCABULARY)
    if found != vocabulary:
      raise UserError(f"{builder.data_dir} holds {name} in the {found!r} vocabulary, not {vocabulary!r}; give "
                      "each vocabulary its own data_dir")
    logging.info("%s (%s): reusing %s", name, builder.builder_config.name, builder.data_dir)
    _log_stats(name, builder.data_dir, builder.info.metadata.get("counts", {}))
  else:
    _check_manual_dir(name, manual_dir)
    config = tfds.download.DownloadConfig(
        manual_dir=os.fspath(manual_dir) if manual_dir else None,
        beam_runner=options.get("beam_runner"), beam_options=_beam_options(options.get("beam_options")))
    prepare_builder(builder, config)
  return builder.as_data_source()
