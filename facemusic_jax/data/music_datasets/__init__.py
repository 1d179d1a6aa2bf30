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
                  labelled by the symbolic estimator (`facemusic_jax.music.estimator`). Validation: ~10% of the
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

import contextlib
import os

from absl import logging

from facemusic_jax.core.errors import UserError
from facemusic_jax.data import builder
from facemusic_jax.data.music_datasets import base, emopia, metamidi, music21_corpus, piano
from facemusic_jax.labels import sources
from facemusic_jax.music import tokenizer

BUILDERS = {"emopia": emopia.Emopia, "music21_corpus": music21_corpus.Music21Corpus, "metamidi": metamidi.Metamidi,
            "pop1k7": piano.Pop1k7, "pop909": piano.Pop909}
_OPTIONS = {
    "emopia": ("placement", "num_workers"),
    "pop1k7": ("emopia_dir", "num_workers"),
    "pop909": ("emopia_dir", "num_workers"),
    "music21_corpus": ("max_pieces", "num_workers"),
    "metamidi": ("labels_csv", "num_workers", "beam_runner", "beam_options"),
}


def make_builder(name: str, data_dir, options: dict,
                  vocabulary: str = tokenizer.DEFAULT_VOCABULARY) -> base.MusicBuilder:
  kwargs = dict(data_dir=os.fspath(data_dir), file_format="array_record",
                num_workers=options.get("num_workers"), vocabulary=vocabulary)
  if name == "emopia":
    placement = options.get("placement", "note_rate")
    if placement not in sources.PLACEMENTS:
      raise UserError(f"placement={placement!r}: use one of {', '.join(sources.PLACEMENTS)}")
    return emopia.Emopia(config=placement, **kwargs)
  if name == "music21_corpus":
    with _quiet_custom_config():
      return music21_corpus.Music21Corpus(config=music21_corpus.music21_config(options.get("max_pieces")), **kwargs)
  if name in ("pop1k7", "pop909"):
    emopia_dir = options.get("emopia_dir")
    if emopia_dir:
      sources.emopia_layout(emopia_dir)  # a wrong folder fails here, in one line, before any encoding
    with _quiet_custom_config():
      return BUILDERS[name](config=piano.piano_config(emopia_dir), **kwargs)
  return metamidi.Metamidi(config=None, labels_csv=options.get("labels_csv"), **kwargs)


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
  pipeline_options = metamidi.beam().options.pipeline_options
  return pipeline_options.PipelineOptions(flags=[f"--{opt}" for opt in options.split(",") if opt])


_EXPECTED = {"emopia": sources.EMOPIA_EXPECTED, "metamidi": metamidi.METAMIDI_EXPECTED, **piano.POP_EXPECTED}


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
  music_builder = make_builder(name, data_dir, options, vocabulary)
  if music_builder.is_prepared():
    found = music_builder.info.metadata.get("vocabulary", tokenizer.DEFAULT_VOCABULARY)
    if found != vocabulary:
      raise UserError(f"{music_builder.data_dir} holds {name} in the {found!r} vocabulary, not {vocabulary!r}; "
                      "give each vocabulary its own data_dir")
  elif name == "music21_corpus":
    manual_dir = None
  elif not manual_dir:
    raise UserError(f"dataset {name} needs a folder: give it as {name}:DIR")
  return builder.prepare(music_builder, manual_dir, _EXPECTED.get(name, ""), beam_runner=options.get("beam_runner"),
                         beam_options=_beam_options(options.get("beam_options")))
