"""Token pieces -> fixed-shape, emotion-conditioned training examples (per-record Grain transforms).

A source record is one piece: `tokens` (event ids of the model's vocabulary, int32) and, when the piece is labelled,
`valence` and `arousal` in [0, 1] (Spotify scale). Unlabelled pieces (pretraining corpora) have neither. An
example is a random crop of its events, prefixed with BOS and (optionally) a control token: the Russell
quadrant of a labelled piece's vector (`emotion.quadrant`, the rule generation also uses), or the null
control for an unlabelled one. It is augmented as in the Music Transformer paper (transpose -3..+3
semitones, time-stretch x0.95..1.05), padded to seq_len + 1 and split into inputs/targets with a loss weight
per target. `va` is the vector on Russell's plane (zeros when unlabelled) and `cond` says whether there is
one: the model replaces an absent condition by its learned null vector. With attributes configured, `attrs`
holds the bins of the window's own attributes (`music/attributes.py`; labelled or not, after augmentation).

Weak labels (`weak_min_fit` > 0): a training window of an unlabelled piece is given the condition that the
symbolic estimator hears in it (`WeakLabeller`), when the estimator is sure enough of its quadrant; the others
stay unconditioned. Held-out windows are never weakly labelled.
"""

import dataclasses
import functools
import math

import numpy as np

from facemusic_jax import data, emotion
from facemusic_jax.core.errors import UserError
from facemusic_jax.music import attributes, estimator, tokenizer
from facemusic_jax.music.tokenizer import MidiTokenizer


@dataclasses.dataclass(frozen=True)
class MusicExampleConfig:
  seq_len: int = 512
  control_token: bool = True
  max_transpose: int = 3
  max_stretch: float = 0.05
  attributes: tuple[str, ...] = ()  # attributes.NAMES to condition on, in order
  weak_min_fit: float = 0.0  # > 0: weak labels for unlabelled windows the estimator gives this sure a quadrant

  @property
  def prefix_len(self) -> int:
    return 2 if self.control_token else 1


def condition(record) -> tuple[int, np.ndarray]:
  """(quadrant 1..4, or 0 when the piece is unlabelled; (valence, arousal) on Russell's plane)."""
  valence, arousal = record.get("valence"), record.get("arousal")
  if valence is None or arousal is None or not (math.isfinite(valence) and math.isfinite(arousal)):
    return 0, np.zeros(2, np.float32)
  va = np.array([emotion.to_russell(float(valence)), emotion.to_russell(float(arousal))], np.float32)
  return emotion.quadrant(float(va[0]), float(va[1])), va


class WeakLabeller:
  """The condition the symbolic estimator (`facemusic_jax.music.estimator`, trained on EMOPIA's training songs only,
  on clips about as long as a training window) hears in a window of events: the quadrant and Russell vector
  of its two probabilities (P(high valence), P(high arousal)) -> 2p - 1. A window gets it only when the
  estimator gives that quadrant at least `min_fit` (the product of the two probabilities on the quadrant's
  sides) and the window has `min_notes` notes; otherwise (0, zeros): no condition. Picklable for Grain's
  workers; the estimator is read once per process."""

  def __init__(self, tok: MidiTokenizer, min_fit: float, min_notes: int = 8):
    self.tok, self.min_fit, self.min_notes = tok, float(min_fit), int(min_notes)
    self._est = None

  def __getstate__(self):
    return self.__dict__ | {"_est": None}

  def __call__(self, events) -> tuple[int, np.ndarray]:
    if self._est is None:
      self._est = estimator.load()
    ns = self.tok.decode(events)
    if len(ns.notes) >= max(self.min_notes, 1):
      pv, pa = estimator.sequence_probabilities(ns, self._est)
      va = np.array([emotion.to_russell(pv), emotion.to_russell(pa)], np.float32)
      quadrant = emotion.quadrant(float(va[0]), float(va[1]))
      if estimator.quadrant_fit({"valence": pv, "arousal": pa}, quadrant) >= self.min_fit:
        return quadrant, va
    return 0, np.zeros(2, np.float32)


def control_token(quadrant: int, tok: MidiTokenizer) -> int:
  return tok.control_id(quadrant) if quadrant else tok.null_id


def frame(events: np.ndarray, quadrant: int, tok: MidiTokenizer, cfg: MusicExampleConfig,
          reached_end: bool) -> dict:
  """events (<= seq_len + 1 - prefix) -> inputs/targets/weights of length seq_len, with the condition.

  The control token is a given condition, never a target; EOS is a target when the crop ends the piece.
  """
  prefix = [tok.bos_id] + ([control_token(quadrant, tok)] if cfg.control_token else [])
  body = list(events) + ([tok.eos_id] if reached_end else [])
  seq = np.full(cfg.seq_len + 1, tok.pad_id, np.int32)
  n = min(len(prefix) + len(body), cfg.seq_len + 1)
  seq[:n] = (prefix + body)[:n]
  weights = (seq[1:] != tok.pad_id).astype(np.float32)
  weights[:len(prefix) - 1] = 0.0  # the control token is not predicted
  return {"inputs": seq[:-1], "targets": seq[1:], "weights": weights}


def _with_condition(example: dict, quadrant: int, va: np.ndarray, events, tok: MidiTokenizer,
                    cfg: MusicExampleConfig) -> dict:
  example = example | {"va": va, "cond": np.bool_(quadrant > 0), "quadrant": np.int32(quadrant)}
  if cfg.attributes:
    example["attrs"] = attributes.of_tokens(events, tok, cfg.attributes)
  return example


class TrainTransform:
  """Random crop + augmentation of one piece (a picklable callable for Grain's random_map)."""

  def __init__(self, cfg: MusicExampleConfig, tok: MidiTokenizer | None = None):
    self.cfg, self.tok = cfg, tok or tokenizer.get()
    self.weak = WeakLabeller(self.tok, cfg.weak_min_fit) if cfg.weak_min_fit > 0 else None

  def __call__(self, record, rng: np.random.Generator) -> dict:
    cfg, tok = self.cfg, self.tok
    events = np.asarray(record["tokens"], np.int32)
    need = cfg.seq_len + 1 - cfg.prefix_len
    # Crop a little more than needed first: stretching changes the number of time-shift events.
    window = int(need * (1 + cfg.max_stretch)) + 2
    start = int(rng.integers(0, max(1, len(events) - window + 1)))
    crop = events[start:start + window]
    reached_end = start + window >= len(events)
    if cfg.max_stretch:
      crop = tok.time_stretch(crop, float(rng.uniform(1 - cfg.max_stretch, 1 + cfg.max_stretch)))
    if cfg.max_transpose:
      crop = tok.transpose(crop, int(rng.integers(-cfg.max_transpose, cfg.max_transpose + 1)))
    reached_end = reached_end and len(crop) <= need
    crop = crop[:need]
    quadrant, va = condition(record)
    if not quadrant and self.weak is not None:
      quadrant, va = self.weak(crop)
    return _with_condition(frame(crop, quadrant, tok, cfg, reached_end), quadrant, va, crop, tok, cfg)


def eval_examples(source, cfg: MusicExampleConfig, tok: MidiTokenizer | None = None,
                  max_windows_per_piece: int = 4) -> dict[str, np.ndarray]:
  """Fixed, unaugmented windows of every held-out piece (consecutive, up to max_windows_per_piece)."""
  tok = tok or tokenizer.get()
  need = cfg.seq_len + 1 - cfg.prefix_len
  rows = []
  for i in range(len(source)):
    record = source[i]
    events = np.asarray(record["tokens"], np.int32)
    quadrant, va = condition(record)
    for w in range(max_windows_per_piece):
      crop = events[w * need:(w + 1) * need]
      if not len(crop):
        break
      ex = frame(crop, quadrant, tok, cfg, (w + 1) * need >= len(events))
      rows.append(_with_condition(ex, quadrant, va, crop, tok, cfg))
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


# ------------------------------------------------------------------------------ datasets of a config


def example_config(config) -> MusicExampleConfig:
  return MusicExampleConfig(
      seq_len=config.seq_len, control_token=config.control_token, max_transpose=config.augment.max_transpose,
      max_stretch=config.augment.max_stretch, attributes=tuple(config.model.get("attributes", ())),
      weak_min_fit=config.get("weak_min_fit", 0.0))


class ConcatSource:
  """Several random-access sources read as one (e.g. EMOPIA + the embedded corpus)."""

  def __init__(self, sources):
    self.sources = list(sources)
    self.offsets = np.cumsum([0] + [len(s) for s in self.sources])

  def __len__(self):
    return int(self.offsets[-1])

  def __getitem__(self, index):
    k = int(np.searchsorted(self.offsets, index, side="right") - 1)
    return self.sources[k][int(index - self.offsets[k])]


@functools.lru_cache(maxsize=8)
def prepare(name: str, manual: str, options: tuple, vocabulary: str):
  from facemusic_jax.data import music_datasets
  data_dir = data.prepared_dir(name, manual)
  if vocabulary != tokenizer.DEFAULT_VOCABULARY:  # each vocabulary in its own copy
    data_dir = f"{data_dir}-{vocabulary}"
  return music_datasets.prepare(name, manual, data_dir, vocabulary=vocabulary, **dict(options))


def sources(config, split: str) -> ConcatSource:
  """The `split` of every dataset named in config.datasets ("name" or "name:manual_dir", comma-separated)."""
  parts = []
  for spec in filter(None, (s.strip() for s in config.datasets.split(","))):
    name, _, manual = spec.partition(":")
    options = tuple(sorted(config.dataset_options.get(name, {}).items())) if "dataset_options" in config else ()
    splits = prepare(name, manual, options, tokenizer.for_config(config).name)
    if split not in splits:
      raise UserError(f"dataset {name} has no {split!r} split (it has {', '.join(splits)})")
    parts.append(splits[split])
  if not parts:
    raise UserError("no music dataset: set --config.datasets, e.g. emopia:../shared/data/emopia,music21_corpus")
  return ConcatSource(parts)


def quadrant_labels(source) -> np.ndarray:
  """The conditioning quadrant of every record (0: unlabelled), for class-balanced sampling."""
  return np.array([condition(source[i])[0] for i in range(len(source))], np.int64)


def attribute_table(source, cfg: MusicExampleConfig, tok) -> attributes.AttributeTable:
  """The attribute bins of every labelled piece's first training window, by its music class."""
  need = cfg.seq_len + 1 - cfg.prefix_len
  pieces = []
  for i in range(len(source)):
    record = source[i]
    quadrant, va = condition(record)
    if quadrant:
      bins = attributes.of_tokens(np.asarray(record["tokens"], np.int32)[:need], tok, cfg.attributes)
      if bins.all():
        pieces.append((emotion.music_class_from_russell(float(va[0]), float(va[1])), bins))
  return attributes.AttributeTable.from_pieces(cfg.attributes, pieces)
