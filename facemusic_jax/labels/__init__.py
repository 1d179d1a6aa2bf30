"""Emotion labels for MIDI files, from every source a user may have, as one record and one CSV.

Every source ends in the same `Label`: continuous valence and arousal on the Spotify scale [0, 1]
(arousal is Spotify's energy), the paper's music class from them, and where the label came from:

  spotify         MetaMIDI md5 -> Spotify track id -> audio features fetched with spotipy (spotify.py)
  features-table  the same match, features read from an offline table (CSV/Parquet) (sources.py)
  emopia          EMOPIA's human quadrant labels, placed on the plane (sources.py)
  estimate        the symbolic estimator (facemusic_jax.music.estimator) for MIDI without labels; any predictor
                  plugs in through `sources.label_from_predictions` (see `facemusic_jax.label`).

The labels CSV (`write_labels_csv` / `read_labels_csv`) is what the dataset builders read: one row per
labelled file, `file` relative to the corpus dir, plus the source's own ids (empty where they do not apply).
"""

import collections
import csv
import dataclasses
import io
import os
import re
import tempfile

from facemusic_jax import emotion
from facemusic_jax.core.errors import UserError

MIDI_EXTENSIONS = (".mid", ".midi")
SPOTIFY_API_PREFIX = "https://api.spotify.com/v1/"
SPOTIFY_TOKEN_URL = "https://accounts.spotify.com/api/token"

LABEL_COLUMNS = ("file", "valence", "arousal", "music_emotion", "source",
                 "md5", "spotify_id", "match_score", "quadrant", "song_id")
_REQUIRED_COLUMNS = LABEL_COLUMNS[:5]


@dataclasses.dataclass(frozen=True)
class Label:
  file: str  # relative to the corpus dir, '/'-separated
  valence: float  # [0, 1]
  arousal: float  # [0, 1], Spotify's energy
  music_emotion: str  # one of emotion.MUSIC_CLASSES
  source: str
  md5: str = ""
  spotify_id: str = ""
  match_score: str = ""  # kept as written in the matches file
  quadrant: str = ""  # EMOPIA quadrant 1..4
  song_id: str = ""  # EMOPIA song: split train/validation by this


def make_label(file: str, valence: float, arousal: float, source: str, **ids) -> Label:
  """A label with its music class by the paper's rule; ValueError if a value is outside [0, 1]."""
  valence, arousal = float(valence), float(arousal)
  music = emotion.music_class(energy=arousal, valence=valence)
  return Label(file=file, valence=valence, arousal=arousal, music_emotion=music, source=source,
               **{k: str(v) for k, v in ids.items()})


@dataclasses.dataclass
class LabelRun:
  """What one labelling pass produced: the labels and every file that got none, counted by reason.

  unmatched: the source has nothing for the file (no Spotify match, no features, not in label.csv).
  skipped: the source has something, but it is unusable (a bad name, values outside [0, 1]).
  notes: labelled anyway, but worth knowing (e.g. placed at the quadrant centre).
  """
  labels: list = dataclasses.field(default_factory=list)
  unmatched: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  notes: collections.Counter = dataclasses.field(default_factory=collections.Counter)

  def class_counts(self) -> dict:
    counts = collections.Counter(label.music_emotion for label in self.labels)
    return {name: counts[name] for name in emotion.MUSIC_CLASSES}


def format_summary(run: LabelRun, total_files: int) -> str:
  lines = [f"files:      {total_files}", f"labelled:   {len(run.labels)}"]
  for title, counter in (("unmatched", run.unmatched), ("skipped", run.skipped), ("notes", run.notes)):
    if title != "notes" or counter:
      lines.append(f"{title + ':':<11} {sum(counter.values())}")
    lines.extend(f"  {n:>8}  {reason}" for reason, n in counter.most_common())
  lines.append("classes:")
  lines.extend(f"  {n:>8}  {name}" for name, n in run.class_counts().items())
  return "\n".join(lines)


def list_midi_files(midi_dir: str) -> list:
  """Every MIDI file under `midi_dir`, recursively, as sorted '/'-separated paths relative to it."""
  if not os.path.isdir(midi_dir):
    raise UserError(f"{midi_dir}: not a directory; give the corpus folder with --midi-dir")
  files = []
  for root, dirs, names in os.walk(midi_dir):
    dirs.sort()
    for name in names:
      if name.lower().endswith(MIDI_EXTENSIONS):
        files.append(os.path.relpath(os.path.join(root, name), midi_dir).replace(os.sep, "/"))
  return sorted(files)


def write_labels_csv(path: str, labels) -> None:
  """Writes through a temp file in the same folder and a rename: an interrupted write leaves the old file."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".labels-", suffix=".csv.tmp", dir=folder)
  try:
    with os.fdopen(fd, "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(LABEL_COLUMNS)
      for label in labels:
        row = dataclasses.asdict(label)
        row["valence"], row["arousal"] = repr(label.valence), repr(label.arousal)  # exact round trip
        writer.writerow(row[c] for c in LABEL_COLUMNS)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


def parse_label_row(row: dict) -> Label | None:
  """A labels-CSV row (a dict by column) -> its Label, or None when the row is unusable: no file, a value
  outside [0, 1], or a music_emotion that the paper's rule contradicts."""
  try:
    label = make_label(row["file"], row["valence"], row["arousal"], row.get("source") or "",
                       **{c: row.get(c) or "" for c in LABEL_COLUMNS[5:]})
  except (KeyError, TypeError, ValueError):
    return None
  if not label.file or label.music_emotion != row.get("music_emotion"):
    return None
  return label


def open_labels_csv(path: str, open_fn=None):
  """(text file, stripped header) of a labels CSV; `open_fn` opens it in binary (default: the local disk;
  Beam passes its file systems). UserError when it cannot be read or lacks a required column."""
  try:
    f = io.TextIOWrapper((open_fn or (lambda p: open(p, "rb")))(path), encoding="utf-8-sig", newline="")
  except OSError as e:
    raise UserError(f"{path}: cannot read the labels CSV ({e.strerror or e}); make one with "
                    "python -m facemusic_jax.label") from e
  header = [name.strip() for name in next(csv.reader([f.readline()]), [])]
  missing = [c for c in _REQUIRED_COLUMNS if c not in header]
  if missing:
    f.close()
    raise UserError(f"{path}: not a labels CSV (missing columns {', '.join(missing)}); make one with "
                    "python -m facemusic_jax.label")
  return f, header


def read_labels_csv(path: str, *, stats: collections.Counter | None = None, open_fn=None) -> list[Label]:
  """The labels CSV back as `Label`s, in file order (extra columns ignored, missing id columns empty). An
  unusable row is skipped and counted in `stats` as 'skipped/bad_label_row', as every corpus counts its
  broken entries."""
  f, header = open_labels_csv(path, open_fn)
  with f:
    return read_labels(f, header, stats)


def read_labels(f, header: list[str], stats: collections.Counter | None = None) -> list[Label]:
  """The rows of an open labels CSV after its header (`open_labels_csv`), as `read_labels_csv` reads them."""
  stats = collections.Counter() if stats is None else stats
  out = []
  for row in csv.DictReader(f, fieldnames=header):
    label = parse_label_row(row)
    if label is None:
      stats["skipped/bad_label_row"] += 1
    else:
      out.append(label)
  return out


_MD5 = re.compile(r"^[0-9a-f]{32}$")


def md5_of(file: str):
  """MetaMIDI names each file <md5>.mid; None when the name is not an md5."""
  stem = os.path.splitext(os.path.basename(file))[0].lower()
  return stem if _MD5.match(stem) else None


_TRACK_ID = re.compile(r"^[0-9A-Za-z]{22}$")


def is_track_id(text: str) -> bool:
  """Spotify track ids are 22 base-62 characters."""
  return bool(_TRACK_ID.match(text))
