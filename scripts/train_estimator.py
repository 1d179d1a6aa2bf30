"""Trains the symbolic emotion estimator on EMOPIA's training songs and reports it on the validation songs.

  python scripts/train_estimator.py --emopia-dir ../shared/data/emopia \
      --out facemusic_jax/release/estimator.json

The estimator is the judge of `evaluate music` and of `generate --rerank`, so it is trained and reported
under the Music Transformer's own protocol; no number is tuned on the songs it is reported on:
1. The split is the music datasets' song split (base.VAL_FRACTION, SEED): the validation songs are
   the ones the generator is never trained on, and the estimator is not trained on them either.
2. Every clip is read as the generator's music is: through tokenize -> decode (10 ms steps, 32 velocity
   bins, pedal folded into the note lengths). Features of the raw files are reported too.
3. On the training songs only, a song-level k-fold CV picks each head's L2 strength (lowest log-loss), then
   both heads are fitted on the training songs: these are the shipped weights.
4. Validation-song accuracy (valence, arousal, quadrant, and per quadrant with 95% Wilson intervals) is the
   ceiling that `evaluate music` prints beside the scores it gives. Per music class too, with each clip's
   class as the training data labels it (the emopia builder's note-rate placement: Q1's calmer half is
   happiness, its busier half surprise), so a class's control accuracy has its own ceiling beside it.
Prints one JSON object; it is also stored in the weights file's "meta".
"""

import argparse
import collections
import csv
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from facemusic_jax import emotion  # noqa: E402
from facemusic_jax.core.metrics import wilson_interval  # noqa: E402
from facemusic_jax.data.music_datasets import base, emopia  # noqa: E402
from facemusic_jax.labels import sources  # noqa: E402
from facemusic_jax.music import estimator, tokenizer  # noqa: E402
from facemusic_jax.music.estimator import fitting, model  # noqa: E402

# Hung et al. (ISMIR 2021), Table 4: the symbolic logistic-regression baseline.
PAPER_BASELINE = {"valence": 0.651, "arousal": 0.849, "quadrant": 0.581}


def decoded_features(path: str, tok: tokenizer.MidiTokenizer) -> np.ndarray | None:
  """Features of a file after tokenize -> decode (what a generated piece is), or None if it fails."""
  from note_seq import midi_io
  try:
    ns = tok.decode(tok.encode_midi(path))
  except tokenizer.EncodeError:
    return None
  return estimator.midi_features(midi_io.note_sequence_to_pretty_midi(ns))


def load_emopia(emopia_dir: str):
  """Raw and decoded features, quadrants, song ids and clip ids of every clip in label.csv that both read, plus
  the skip counts."""
  midi_dir, label_csv = sources.emopia_layout(emopia_dir)
  with open(label_csv, newline="") as f:
    rows = list(csv.DictReader(f))
  paths = [os.path.join(midi_dir, r["ID"] + ".mid") for r in rows]
  quadrant_of = {p: int(r["4Q"]) for p, r in zip(paths, rows)}
  raw, skipped = estimator.features_batch(paths)
  tok = tokenizer.get()
  decoded = {}
  for p in raw:
    x = decoded_features(p, tok)
    if x is None:
      skipped[p] = "encode_error"
    else:
      decoded[p] = x
  kept = [p for p in paths if p in decoded]
  return (np.stack([raw[p] for p in kept]), np.stack([decoded[p] for p in kept]),
          np.array([quadrant_of[p] for p in kept]), np.array([sources.emopia_song_id(p) for p in kept]),
          np.array([sources.emopia_clip_id(p) for p in kept]), dict(collections.Counter(skipped.values())))


def training_classes(emopia_dir: str, clips) -> np.ndarray:
  """Each clip's music class as the emopia builder labels it (its default placement, note_rate)."""
  _, run, _ = emopia.emopia_split(emopia_dir, placement="note_rate")
  class_of = {sources.emopia_clip_id(label.file): label.music_emotion for label in run.labels}
  return np.array([class_of[c] for c in clips])


def per_class(est: estimator.Estimator, x, classes: np.ndarray) -> dict:
  """The estimator's music class against each clip's, within each class, with its count and 95% Wilson
  interval."""
  predicted = np.array([p["music_emotion"] for p in estimator.predict_features(x, est)])
  out = {}
  for c in emotion.MUSIC_CLASSES:
    mask = classes == c
    k, n = int((predicted[mask] == c).sum()), int(mask.sum())
    out[c] = {"n": n, "accuracy": k / max(n, 1), "ci95": wilson_interval(k, n)}
  return out


def per_quadrant(probs: dict, quadrants: np.ndarray) -> dict:
  """Accuracy within each true quadrant, with its count and 95% Wilson interval."""
  predicted = np.array([estimator.quadrant(v, a) for v, a in zip(probs["valence"], probs["arousal"])])
  out = {}
  for q in (1, 2, 3, 4):
    mask = quadrants == q
    k, n = int((predicted[mask] == q).sum()), int(mask.sum())
    out[f"Q{q}"] = {"n": n, "accuracy": k / max(n, 1), "ci95": wilson_interval(k, n)}
  return out


def evaluate(est: estimator.Estimator, x, q) -> dict:
  probs = est.probabilities(x)
  return fitting.accuracy(probs, q) | {"per_quadrant": per_quadrant(probs, q)}


def rounded(tree):
  if isinstance(tree, dict):
    return {k: rounded(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [rounded(v) for v in tree]
  return round(tree, 4) if isinstance(tree, float) else tree


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--emopia-dir", default="../shared/data/emopia")
  parser.add_argument("--out", default=model.DEFAULT_WEIGHTS)
  parser.add_argument("--folds", type=int, default=5, help="song-level folds of the L2 choice")
  args = parser.parse_args()

  raw, decoded, q, songs, clips, skipped = load_emopia(args.emopia_dir)
  classes = training_classes(args.emopia_dir, clips)
  held_out = fitting.song_split(songs, base.VAL_FRACTION, base.SEED)
  assert not set(songs[held_out]) & set(songs[~held_out])
  train = ~held_out
  est = fitting.train(decoded[train], q[train], songs[train], k=args.folds, seed=base.SEED)
  report = rounded({
      "clips": int(len(q)), "songs": int(len(set(songs))), "skipped": skipped,
      "split": {"rule": "music datasets' EMOPIA song split", "train_songs": int(len(set(songs[train]))),
                "validation_songs": int(len(set(songs[held_out]))), "validation_clips": int(held_out.sum())},
      "l2": est.meta["l2"],
      "validation_decoded": evaluate(est, decoded[held_out], q[held_out])
                            | {"per_class": per_class(est, decoded[held_out], classes[held_out])},
      "validation_raw": evaluate(est, raw[held_out], q[held_out]),
      "train_decoded": evaluate(est, decoded[train], q[train]),
      "paper_baseline": PAPER_BASELINE,
  })
  est.meta = {"trained_on": "EMOPIA 1.0 training songs (tokenize -> decode)", "recipe": "scripts/train_estimator.py",
              **report}
  model.save(est, args.out)
  print(json.dumps(report, indent=1))


if __name__ == "__main__":
  main()
