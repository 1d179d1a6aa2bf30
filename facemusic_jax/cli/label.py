"""Label a MIDI corpus with music emotions; writes the labels CSV that the dataset builders read.

  python -m facemusic_jax.label spotify --midi-dir DIR --matches TSV[,TSV] --out FILE.csv
                                        [--cache FILE.sqlite] [--max-retry-after 60]
  python -m facemusic_jax.label features-table --midi-dir DIR --matches TSV[,TSV] --features-table FILE
                                        --out FILE.csv [--id-column id] [--valence-column valence]
                                        [--energy-column energy]
  python -m facemusic_jax.label emopia --midi-dir DIR [--labels label.csv] [--placement note_rate|note_rate_mode|centre]
                                        --out FILE.csv
  python -m facemusic_jax.label estimate --midi-dir DIR --out FILE.csv

Sources:
  spotify         MetaMIDI: file <md5>.mid -> best-scored Spotify track in the matches TSVs
                  (MMD_audio_text_matches.tsv, MMD_audio_matches.tsv) -> audio features (valence, energy)
                  fetched with the client credentials in SPOTIPY_CLIENT_ID / SPOTIPY_CLIENT_SECRET.
                  Every answer is kept in the --cache SQLite file: rerun the same command to resume.
  features-table  the same, with valence and energy read from an offline table (CSV/TSV/Parquet keyed by
                  Spotify track id), for apps that Spotify no longer serves audio features.
  emopia          EMOPIA's human quadrant labels (label.csv); DIR is EMOPIA's folder or its midis/.
  estimate        the symbolic estimator (facemusic_jax.music.estimator), for MIDI without any labels.

DIR is walked recursively; `file` in the CSV is relative to it. The CSV is written through a temp file and
a rename, so an interrupted run never leaves half a file.
"""

import os

from absl import app, flags
from tqdm import tqdm

from facemusic_jax import labels
from facemusic_jax.cli import common
from facemusic_jax.core.errors import UserError, exit_on_user_error
from facemusic_jax.labels import sources

flags.DEFINE_string("midi_dir", None, "Corpus folder, walked recursively for .mid/.midi files.")
flags.DEFINE_string("out", None, "Labels CSV to write.")
flags.DEFINE_list("matches", None, "MetaMIDI matches TSVs (md5, score, sid), comma-separated.")
flags.DEFINE_string("cache", None, "SQLite file keeping every Spotify answer "
                    "(default: spotify_audio_features.sqlite beside --out).")
flags.DEFINE_float("max_retry_after", 60.0, "Longest Retry-After (s) to wait on a 429; longer stops the run.")
flags.DEFINE_string("spotify_api", labels.SPOTIFY_API_PREFIX, "Spotify Web API prefix.")
flags.DEFINE_string("spotify_token_url", labels.SPOTIFY_TOKEN_URL, "Spotify token endpoint.")
flags.DEFINE_string("features_table", None, "Offline features table (CSV, TSV or Parquet).")
flags.DEFINE_string("id_column", "id", "Features table: the Spotify track id column.")
flags.DEFINE_string("valence_column", "valence", "Features table: the valence column.")
flags.DEFINE_string("energy_column", "energy", "Features table: the energy column.")
flags.DEFINE_string("labels", None, "EMOPIA label.csv (default: in --midi-dir or its parent).")
flags.DEFINE_enum("placement", "note_rate", list(sources.PLACEMENTS),
                  "EMOPIA: where a clip sits in its quadrant (note_rate: arousal by note rate, which splits Q1 into "
                  "happiness/surprise; note_rate_mode: valence by mode strength as well).")
for _name in ("midi_dir", "max_retry_after", "spotify_api", "spotify_token_url", "features_table", "id_column",
              "valence_column", "energy_column"):
  flags.DEFINE_alias(_name.replace("_", "-"), _name)

FLAGS = flags.FLAGS


def _need(flag: str, source: str) -> str:
  value = getattr(FLAGS, flag)
  if not value:
    raise UserError(f"label {source} needs --{flag.replace('_', '-')}; see python -m facemusic_jax.label --help")
  return value


def _metamidi(source: str):
  """Files, best match per md5, and the Spotify ids to look up."""
  files = labels.list_midi_files(_need("midi_dir", source))
  matches, bad_rows = sources.read_matches(_need("matches", source))
  wanted = {matches[m][0] for m in map(labels.md5_of, files) if m in matches}
  return files, matches, bad_rows, sorted(wanted)


def _with_bad_rows(run, bad_rows):
  if bad_rows:
    run.notes["matches rows left out (bad score or sid)"] = bad_rows
  return run


def label_spotify():
  from facemusic_jax.labels import spotify  # pylint: disable=import-outside-toplevel
  files, matches, bad_rows, wanted = _metamidi("spotify")
  out = _need("out", "spotify")
  cache_path = FLAGS.cache or os.path.join(os.path.dirname(os.path.abspath(out)), "spotify_audio_features.sqlite")
  connect = lambda: spotify.make_client(api_prefix=FLAGS.spotify_api, token_url=FLAGS.spotify_token_url)
  policy = spotify.RetryPolicy(max_retry_after_s=FLAGS.max_retry_after)
  with spotify.FeatureCache(cache_path) as cache:
    answers = spotify.fetch_audio_features(connect, wanted, cache, policy=policy)
  features = {sid: spotify.valence_energy(a) for sid, a in answers.items()}
  return _with_bad_rows(sources.label_by_track(files, matches, features, "spotify"), bad_rows), len(files)


def label_features_table():
  files, matches, bad_rows, wanted = _metamidi("features-table")
  features = sources.read_features_table(_need("features_table", "features-table"), wanted,
                                         FLAGS.id_column, FLAGS.valence_column, FLAGS.energy_column)
  run = sources.label_by_track(files, matches, features, "features-table")
  return _with_bad_rows(run, bad_rows), len(files)


def label_emopia():
  midi_dir = _need("midi_dir", "emopia")
  files = labels.list_midi_files(midi_dir)
  quadrants = sources.read_emopia_labels(FLAGS.labels or sources.emopia_layout(midi_dir)[1])
  return sources.label_emopia(midi_dir, files, quadrants, FLAGS.placement), len(files)


def label_estimate():
  """The symbolic estimator (facemusic_jax.music.estimator) on every file; it reads the MIDI, so broken files are
  skipped here with its reason."""
  midi_dir = _need("midi_dir", "estimate")
  files = labels.list_midi_files(midi_dir)
  try:
    from facemusic_jax.music import estimator  # pylint: disable=import-outside-toplevel
    model = estimator.load()
  except (ImportError, OSError) as e:
    raise UserError(f"the symbolic estimator is not built yet ({e}); label with spotify, features-table or "
                    "emopia") from e
  paths = (os.path.join(midi_dir, f) for f in files)
  predictions = ((f, prediction, reason) for f, (_, prediction, reason) in
                 zip(files, estimator.iter_predict(paths, model)))
  bar = tqdm(predictions, total=len(files), desc="label estimate", unit="file")
  return sources.label_from_predictions(bar, "estimate"), len(files)


SOURCES = {
    "spotify": label_spotify,
    "features-table": label_features_table,
    "emopia": label_emopia,
    "estimate": label_estimate,
}


@exit_on_user_error
def main(argv):
  label = common.choose(argv, SOURCES, "python -m facemusic_jax.label {{{known}}} --midi-dir DIR --out FILE.csv",
                        what="source")
  common.quiet_logging()
  out = _need("out", argv[1])
  run, total = label()
  print(labels.format_summary(run, total))
  if not run.labels:
    raise UserError(f"no file got a label, so {out} was not written; see the counts above")
  labels.write_labels_csv(out, run.labels)
  print(f"wrote {len(run.labels)} labels to {out}")


def run():
  """The `facemusic-label` console script."""
  app.run(main)


if __name__ == "__main__":
  run()
