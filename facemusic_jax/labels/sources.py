"""Label sources: MetaMIDI -> Spotify track -> features (from Spotify or a table), and EMOPIA's quadrants.

MetaMIDI names each file MMD_MIDI/<c1>/<c2>/<c3>/<md5>.mid, and its matches files
(MMD_audio_text_matches.tsv, MMD_audio_matches.tsv: md5, score, sid) link one md5 to many Spotify tracks.
We keep one track per md5: the highest score; on a tie the first row seen (files in the order given, rows
in file order). A file whose best track has no features stays unlabelled (counted), rather than falling
back to a worse match: fetching every candidate would multiply the Spotify requests.
"""

import collections
import csv
import math
import os
import random
import re

from tqdm import tqdm

from facemusic_jax import emotion
from facemusic_jax.core.errors import UserError
from facemusic_jax.labels import LabelRun, is_track_id, make_label, md5_of

# ------------------------------------------------------------------------------------------- MetaMIDI


def _open_text(path: str, what: str):
  try:
    return open(path, newline="", encoding="utf-8")
  except OSError as e:
    raise UserError(f"{path}: cannot read the {what} ({e.strerror}); check the path") from e


def read_matches(paths) -> tuple:
  """(best, bad_rows): best = {md5: (sid, score text)} over the matches files, by the rule above.

  A header row (naming md5, score, sid) sets the column order; without one the order is md5, score, sid.
  Rows with a bad score or a sid that is not a Spotify track id are counted in bad_rows and left out.
  """
  best, best_score, bad_rows = {}, {}, 0
  for path in paths:
    with _open_text(path, "matches file") as f:
      columns = {"md5": 0, "score": 1, "sid": 2}
      for n, row in enumerate(csv.reader(f, delimiter="\t")):
        if n == 0 and {"md5", "score", "sid"} <= {c.strip().lower() for c in row}:
          columns = {c.strip().lower(): i for i, c in enumerate(row)}
          continue
        try:
          md5, sid = row[columns["md5"]].strip().lower(), row[columns["sid"]].strip()
          score = float(row[columns["score"]])
        except (IndexError, ValueError):
          bad_rows += 1
          continue
        if not is_track_id(sid) or score != score:  # NaN never wins a comparison
          bad_rows += 1
          continue
        if md5 not in best_score or score > best_score[md5]:  # strict: ties keep the first
          best[md5], best_score[md5] = (sid, row[columns["score"]].strip()), score
  return best, bad_rows


def _table_columns(path: str, header, names: dict) -> dict:
  missing = [f"{flag}={name!r}" for flag, name in names.items() if name not in header]
  if missing:
    raise UserError(f"{path}: no column for {', '.join(missing)} (columns: {', '.join(map(str, header[:12]))}); "
                    "name the right ones with --id-column, --valence-column, --energy-column")
  return {flag: header.index(name) for flag, name in names.items()}


def read_features_table(path: str, ids=None, id_column: str = "id", valence_column: str = "valence",
                        energy_column: str = "energy") -> dict:
  """{track id: (valence, energy) or None} from a CSV/TSV or Parquet table (e.g. the public 1.2M-track
  features dump: id, ..., valence, energy). Only `ids` are kept when given; empty or non-numeric values
  give None (no features); the first row of a repeated id wins."""
  names = {"--id-column": id_column, "--valence-column": valence_column, "--energy-column": energy_column}
  wanted = None if ids is None else set(ids)
  if path.lower().endswith((".parquet", ".pq")):
    rows = _parquet_rows(path, names)
  else:
    rows = _csv_rows(path, names)
  features = {}
  for track, valence, energy in rows:
    if (wanted is None or track in wanted) and track not in features:
      try:
        features[track] = (float(valence), float(energy))
      except (TypeError, ValueError):
        features[track] = None
  return features


def _csv_rows(path, names):
  with _open_text(path, "features table") as f:
    reader = csv.reader(f, delimiter="\t" if path.lower().endswith(".tsv") else ",")
    header = next(reader, [])
    cols = _table_columns(path, header, names)
    index = [cols["--id-column"], cols["--valence-column"], cols["--energy-column"]]
    for row in reader:
      if len(row) > max(index):
        yield tuple(row[i] for i in index)


def _parquet_rows(path, names):
  try:
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise UserError(f"{path}: reading Parquet needs pyarrow; pip install pyarrow, or give a CSV") from e
  try:
    header = pq.read_schema(path).names
    table = pq.read_table(path, columns=[names[k] for k in _table_columns(path, header, names)])
  except (OSError, ValueError) as e:  # pyarrow's errors derive from these
    raise UserError(f"{path}: cannot read it as Parquet ({e}); check the file") from e
  data = table.to_pydict()
  return zip(*(data[name] for name in names.values()))


def label_by_track(files, matches: dict, features: dict, source: str, progress: bool = True) -> LabelRun:
  """MetaMIDI files -> labels through md5 -> best track (`matches`) -> (valence, energy) (`features`)."""
  run = LabelRun()
  for file in tqdm(files, desc=f"label {source}", unit="file", disable=not progress):
    md5 = md5_of(file)
    if md5 is None:
      run.skipped["file name is not an md5 (MetaMIDI names files <md5>.mid)"] += 1
      continue
    if md5 not in matches:
      run.unmatched["md5 has no Spotify match"] += 1
      continue
    sid, score = matches[md5]
    if features.get(sid) is None:
      run.unmatched["matched track has no audio features"] += 1
      continue
    valence, energy = features[sid]
    try:
      run.labels.append(make_label(file, valence, energy, source, md5=md5, spotify_id=sid, match_score=score))
    except ValueError:
      run.skipped["features outside [0, 1]"] += 1
  return run


def label_from_predictions(predictions, source: str = "estimate") -> LabelRun:
  """Labels from a predictor's stream of (file, prediction or None, skip reason or None), a prediction
  holding valence and arousal in [0, 1]: how an estimator plugs in. (The `quadrant` column stays for
  human EMOPIA labels; a prediction's quadrant follows from its valence and arousal.)"""
  run = LabelRun()
  for file, prediction, reason in predictions:
    if prediction is None:
      run.skipped[reason or "no prediction"] += 1
      continue
    try:
      run.labels.append(make_label(file, prediction["valence"], prediction["arousal"], source))
    except ValueError:
      run.skipped["prediction outside [0, 1]"] += 1
  return run


# --------------------------------------------------------------------------------------------- EMOPIA

_CLIP = re.compile(r"^Q([1-4])_(.+)_(\d+)$")  # Q<k>_<songid>_<n>; YouTube song ids may hold '_'


def emopia_clip_id(file: str) -> str:
  return os.path.splitext(os.path.basename(file))[0]


def emopia_song_id(file: str) -> str:
  """The song a clip comes from ('Q1__8v0MFBZoco_0' -> '_8v0MFBZoco'); a name out of that pattern is
  its own song."""
  clip = emopia_clip_id(file)
  match = _CLIP.match(clip)
  return match.group(2) if match else clip


EMOPIA_EXPECTED = "EMOPIA's folder: midis/Q<k>_<songid>_<n>.mid and label.csv (ID, 4Q)"


def emopia_layout(manual_dir) -> tuple[str, str]:
  """(midi folder, label.csv) of EMOPIA's folder, or of its midis/ folder with label.csv beside it."""
  manual_dir = os.fspath(manual_dir)
  midi_dir = os.path.join(manual_dir, "midis")
  if not os.path.isdir(midi_dir):
    midi_dir = manual_dir
  for folder in (manual_dir, os.path.dirname(os.path.abspath(manual_dir))):
    if os.path.isfile(os.path.join(folder, "label.csv")):
      return midi_dir, os.path.join(folder, "label.csv")
  raise UserError(f"{manual_dir}: no label.csv in it or its parent; expected {EMOPIA_EXPECTED}")


def read_emopia_labels(path: str) -> dict:
  """EMOPIA's label.csv (ID, 4Q, annotator) -> {clip id: quadrant 1..4}."""
  with _open_text(path, "EMOPIA label.csv") as f:
    reader = csv.DictReader(f)
    if not {"ID", "4Q"} <= set(reader.fieldnames or ()):
      raise UserError(f"{path}: not EMOPIA's label.csv (needs columns ID and 4Q); give it with --labels")
    quadrants = {}
    for line, row in enumerate(reader, start=2):
      if row["4Q"].strip() not in ("1", "2", "3", "4"):
        raise UserError(f"{path}:{line}: quadrant {row['4Q']!r} is not 1-4; fix the row")
      quadrants[row["ID"].strip()] = int(row["4Q"])
  return quadrants


def note_rate(path: str) -> float:
  """Note onsets per second: the symbolic feature that tracks arousal best (EMOPIA paper)."""
  import mido  # pylint: disable=import-outside-toplevel
  onsets, seconds = 0, 0.0
  for message in mido.MidiFile(path):  # merged tracks, times in seconds
    seconds += message.time
    onsets += message.type == "note_on" and message.velocity > 0
  return onsets / seconds if seconds > 0 else 0.0


def mode_strength(path: str) -> float:
  """Krumhansl-Schmuckler major minus minor key strength of the clip's notes (> 0: major), the symbolic
  cue of valence: on EMOPIA's training songs 81% / 72% of Q1 / Q4 clips are major against 28% / 43% of Q2 / Q3."""
  from facemusic_jax.music.estimator.features import key_features, load_midi, midi_notes  # pylint: disable=C0415
  return key_features(midi_notes(load_midi(path)))["mode"]


def _spread(placed: dict, quadrants: dict, scores: dict, axis: int) -> None:
  """Spread `axis` (0 valence, 1 arousal) of each scored clip over its quadrant's half by the clip's score
  rank r in (0, 1) among the scored clips of its quadrant: 0.5 * r, or 0.5 + 0.5 * r."""
  by_quadrant = collections.defaultdict(list)
  for key, q in quadrants.items():
    if scores.get(key) is not None:
      by_quadrant[q].append(key)
  for q, keys in by_quadrant.items():
    low = 0.5 if emotion.QUADRANT_SIGNS[q][axis] > 0 else 0.0
    for rank, key in enumerate(sorted(keys, key=lambda k: (scores[k], k))):
      value = low + 0.5 * (rank + 0.5) / len(keys)
      placed[key] = (value, placed[key][1]) if axis == 0 else (placed[key][0], value)


def place_in_quadrants(quadrants: dict, rates: dict, modes: dict | None = None) -> dict:
  """{key: (valence, arousal)} on the Spotify scale for clips with a quadrant, a note rate and optionally a
  mode strength (each may be None).

  Each axis sits at the quadrant's centre (0.25 or 0.75) unless the clip has a score for it. Arousal spreads
  over the quadrant's half by the clip's note-rate rank r in (0, 1) among the clips of its quadrant: 0.5 * r,
  or 0.5 + 0.5 * r; with `modes`, valence spreads the same way by mode strength (more minor, lower). In Q1 the
  rule (happiness if E < V, else surprise) then sends the calmer (or, with modes, the more major) clips to
  happiness and the others to surprise. A clip without a rate sits at its quadrant's arousal centre; in Q1
  with centre valence too, E = V: surprise.
  """
  placed = {}
  for key, q in quadrants.items():
    sv, sa = emotion.quadrant_va(q, magnitude=0.5)
    placed[key] = (emotion.from_russell(sv), emotion.from_russell(sa))
  _spread(placed, quadrants, rates, axis=1)
  if modes is not None:
    _spread(placed, quadrants, modes, axis=0)
  return placed


PLACEMENTS = ("note_rate", "note_rate_mode", "centre")


def label_emopia(midi_dir: str, files, quadrants: dict, placement: str = "note_rate",
                 progress: bool = True) -> LabelRun:
  """EMOPIA clips -> labels from label.csv's quadrants, placed in each quadrant by `placement`."""
  run = LabelRun()
  labelled = {f: quadrants[emopia_clip_id(f)] for f in files if emopia_clip_id(f) in quadrants}
  run.unmatched["clip not in label.csv"] += len(files) - len(labelled)
  if placement not in PLACEMENTS:
    raise ValueError(f"placement {placement!r} is not one of {PLACEMENTS}")
  rates, modes = {}, ({} if placement == "note_rate_mode" else None)
  if placement != "centre":
    for file in tqdm(labelled, desc="note rates", unit="file", disable=not progress):
      try:
        rates[file] = note_rate(os.path.join(midi_dir, file))
        if modes is not None:
          mode = mode_strength(os.path.join(midi_dir, file))
          modes[file] = mode if math.isfinite(mode) else None  # no pitched notes: valence at the centre
      except Exception:  # pylint: disable=broad-except  # mido raises many kinds on broken files
        rates.pop(file, None)
        run.notes["unreadable MIDI: placed at its quadrant's centre"] += 1
  for file, (valence, arousal) in place_in_quadrants(labelled, rates, modes).items():
    q = labelled[file]
    run.labels.append(make_label(file, valence, arousal, "emopia", quadrant=q, song_id=emopia_song_id(file)))
  run.unmatched = +run.unmatched  # drop zero counts
  return run


def song_split(ids, val_fraction: float, seed: int, song_of=emopia_song_id) -> tuple:
  """(train, validation) ids, every song's clips on one side, input order kept.

  The sorted songs are shuffled with `seed` and the first round(val_fraction * songs) go to validation (at
  least one when val_fraction > 0 and there are two songs or more): deterministic, and no song is split.
  """
  if not 0.0 <= val_fraction < 1.0:
    raise ValueError(f"val_fraction={val_fraction} is outside [0, 1)")
  ids = list(ids)
  songs = sorted({song_of(i) for i in ids})
  random.Random(seed).shuffle(songs)
  n_val = round(val_fraction * len(songs))
  if val_fraction > 0 and n_val == 0 and len(songs) > 1:
    n_val = 1
  val_songs = set(songs[:n_val])
  return [i for i in ids if song_of(i) not in val_songs], [i for i in ids if song_of(i) in val_songs]
