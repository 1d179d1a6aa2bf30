"""MetaMIDI with a labels CSV of `python -m facemusic_jax.label`, here with a process pool or as an Apache
Beam pipeline (docs/metamidi_beam.md)."""

import collections
import csv
import dataclasses
import os
import shutil
import tempfile
from typing import Iterator

import tensorflow_datasets as tfds

from facemusic_jax import labels
from facemusic_jax.core.errors import UserError
from facemusic_jax.data import builder
from facemusic_jax.data.music_datasets import base
from facemusic_jax.music import tokenizer

METAMIDI_EXPECTED = ("MMD_MIDI/<c1>/<c2>/<c3>/<md5>.mid and a labels CSV of `python -m facemusic_jax.label` "
                      "(labels.csv in the manual dir, or the labels_csv option)")


@dataclasses.dataclass(frozen=True)
class LabelRow:
  file: str  # as written in the labels CSV
  valence: float
  arousal: float
  song_id: str


def label_row(label: labels.Label) -> LabelRow:
  """What the builder needs of a label; the song is the matched Spotify track, else the md5."""
  song = label.spotify_id or label.md5 or labels.md5_of(label.file) or label.file
  return LabelRow(label.file, label.valence, label.arousal, song)


def read_label_rows(path: str, open_fn=None,
                    stats: collections.Counter | None = None) -> tuple[list[str], list[LabelRow]]:
  """(header, usable rows) of a labels CSV; bad rows are counted as 'skipped/bad_label_row' and repeated
  files as 'skipped/duplicate_label_row' (the first row of a file wins)."""
  stats = collections.Counter() if stats is None else stats
  f, header = labels.open_labels_csv(path, open_fn)
  with f:
    read = labels.read_labels(f, header, stats)
  rows, seen = [], set()
  for label in read:
    if label.file in seen:
      builder.skip(stats, "duplicate_label_row")
    else:
      seen.add(label.file)
      rows.append(label_row(label))
  return header, rows


def metamidi_midi_root(manual_dir: str, first_file: str, exists=os.path.exists) -> str:
  """The folder the CSV's `file` paths start from: the manual dir or its MMD_MIDI/ (label.py's --midi-dir)."""
  for root in (manual_dir, _join(manual_dir, "MMD_MIDI")):
    if exists(_join(root, first_file)):
      return root
  raise UserError(f"{manual_dir}: the labels CSV names {first_file!r}, which is neither in it nor in its "
                  f"MMD_MIDI/; expected {METAMIDI_EXPECTED}")


def _join(root: str, relative: str) -> str:
  return root.rstrip("/") + "/" + relative.lstrip("/")  # Also right for gs:// and other URLs.


def metamidi_example(row: LabelRow, root: str,
                     vocabulary: str = tokenizer.DEFAULT_VOCABULARY) -> tuple[str, dict | None, collections.Counter]:
  """(source id, record or None, skip counts) of one labelled MetaMIDI file on this machine's disk."""
  ids, stats = base.encode_file(_join(root, row.file), vocabulary)
  if ids is None:
    return row.file, None, stats
  return row.file, base.record(ids, row.valence, row.arousal, row.file, row.song_id), stats


class _MetamidiTask:
  """metamidi_example with its root and vocabulary bound: a picklable callable for the process pool."""

  def __init__(self, root: str, vocabulary: str):
    self.root, self.vocabulary = root, vocabulary

  def __call__(self, row: LabelRow):
    return metamidi_example(row, self.root, self.vocabulary)


# --- Beam -------------------------------------------------------------------------------------------


def beam():
  return tfds.core.lazy_imports_lib.lazy_imports.apache_beam


def _beam_open(path: str):
  return beam().io.filesystems.FileSystems.open(path)


def _beam_exists(path: str) -> bool:
  return beam().io.filesystems.FileSystems.exists(path)


def _count(name: str, n: int = 1) -> None:
  beam().metrics.Metrics.counter(base.METRICS_NAMESPACE, name).inc(n)


def _beam_rows(line: str, header: list[str], split: str) -> Iterator[LabelRow]:
  """The label row of one CSV line when it belongs to `split` (the launcher has counted the bad rows)."""
  label = labels.parse_label_row(dict(zip(header, next(csv.reader([line]), []))))
  if label is not None and base.hash_split(label_row(label).song_id) == split:
    yield label_row(label)


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
    ids, stats = base.encode_file(local, vocabulary)
  for reason, n in stats.items():
    _count(reason, n)
  if ids is not None:
    _count(f"ok/{split}")
    yield row.file, base.record(ids, row.valence, row.arousal, row.file, row.song_id)


def _beam_split(labels_csv: str, header: list[str], root: str, split: str, vocabulary: str):
  apache_beam = beam()
  return (f"ReadLabels_{split}" >> apache_beam.io.ReadFromText(labels_csv, skip_header_lines=1)
          | f"Rows_{split}" >> apache_beam.FlatMap(_beam_rows, header=header, split=split)
          # Spread the files over the workers: one text file is read by few of them.
          | f"Reshuffle_{split}" >> apache_beam.Reshuffle()
          | f"Encode_{split}" >> apache_beam.FlatMap(_beam_example, root=root, split=split, vocabulary=vocabulary))


# --- builder ----------------------------------------------------------------------------------------


class Metamidi(base.MusicBuilder):
  """MetaMIDI files with the labels of `python -m facemusic_jax.label` (Spotify, a table, an estimate)."""

  _DESCRIPTION = "MetaMIDI files labelled with valence/energy (Spotify audio features or an estimate)."
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Point the manual dir at a folder holding {METAMIDI_EXPECTED}. MetaMIDI: zenodo.org/record/5142664;
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
      raise builder.nothing_found("MetaMIDI", labels_csv, self.stats, METAMIDI_EXPECTED, what="piece")
    root = metamidi_midi_root(manual_dir, rows[0].file, _beam_exists if self._use_beam else os.path.exists)
    by_split = collections.defaultdict(list)
    for row in rows:
      by_split[base.hash_split(row.song_id)].append(row)
    splits = [split for split in base.SPLITS if by_split[split]]  # TFDS fails on an empty split.
    if self._use_beam:
      if self.stats["skipped/duplicate_label_row"]:
        raise UserError(f"{labels_csv}: {self.stats['skipped/duplicate_label_row']} files are listed twice; "
                        "the Beam path reads every row, so keep one row per file")
      return {split: _beam_split(labels_csv, header, root, split, self.vocabulary) for split in splits}
    return {split: self._plain_examples(split, by_split[split], root) for split in splits}

  def _plain_examples(self, split: str, rows: list[LabelRow], root: str) -> Iterator[tuple[str, dict]]:
    found = 0
    task = _MetamidiTask(root, self.vocabulary)
    for key, record, skipped in base.parallel_map(task, rows, self.num_workers, chunksize=16):
      self.stats.update(skipped)
      if record is not None:
        found += 1
        self.stats[f"ok/{split}"] += 1
        yield key, record
    if not found:
      raise builder.nothing_found(f"MetaMIDI ({split} split)", root, self.stats, METAMIDI_EXPECTED,
                                  what="piece")

  def _process_pipeline_result(self, pipeline_result) -> None:
    """Beam's counters (summed over workers) -> the same skip counts as the plain path."""
    metrics = beam().metrics.metric.MetricsFilter().with_namespace(base.METRICS_NAMESPACE)
    for counter in pipeline_result.metrics().query(metrics)["counters"]:
      value = counter.committed if counter.committed is not None else counter.attempted
      self.stats[counter.key.metric.name] += int(value or 0)
