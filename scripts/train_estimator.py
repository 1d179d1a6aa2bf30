"""Trains the symbolic emotion estimator on EMOPIA, reports held-out accuracy, writes the shipped weights.

  python scripts/train_estimator.py --emopia-dir ../shared/data/emopia \
      --out facemusic_jax/release/estimator.json

Protocol; no number is tuned on the songs it is reported on:
1. Songs, not clips, are shuffled with --seed and --holdout of them are held out.
2. On the training songs only, a song-level k-fold CV picks each head's L2 strength (lowest log-loss).
3. Fit on the training songs; report valence, arousal and quadrant accuracy on the held-out songs.
4. Nested song-level k-fold over all songs (step 2 inside every outer fold), --repeats times with other
   seeds: a less noisy estimate of the same recipe.
5. The shipped weights: the same recipe on all songs (L2 by CV on all songs, fit on all songs).
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
from facemusic_jax import estimator  # noqa: E402
from facemusic_jax.labels import sources  # noqa: E402

# Hung et al. (ISMIR 2021), Table 4: the symbolic logistic-regression baseline.
PAPER_BASELINE = {"valence": 0.651, "arousal": 0.849, "quadrant": 0.581}


def load_emopia(emopia_dir: str):
  """Features, quadrants and song ids of every readable clip in label.csv, plus the skip counts."""
  with open(os.path.join(emopia_dir, "label.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
  paths = [os.path.join(emopia_dir, "midis", r["ID"] + ".mid") for r in rows]
  quadrant_of = {p: int(r["4Q"]) for p, r in zip(paths, rows)}
  song_of = {p: sources.emopia_song_id(r["ID"]) for p, r in zip(paths, rows)}
  feats, skipped = estimator.features_batch(paths)
  kept = [p for p in paths if p in feats]
  x = np.stack([feats[p] for p in kept])
  return (x, np.array([quadrant_of[p] for p in kept]), np.array([song_of[p] for p in kept]),
          dict(collections.Counter(skipped.values())))


def evaluate(est: estimator.Estimator, x, q) -> dict:
  """Accuracy of the routed estimator and of the score model alone (no velocity or pedal features)."""
  return {"estimator": estimator.accuracy(est.probabilities(x), q),
          "score_model": estimator.accuracy(est.score.probabilities(x), q)}


def nested_cv(x, q, songs, k, repeats, seed):
  """Song-level outer k-fold (repeated with seeds seed+1...), L2 chosen inside each outer training part."""
  scores = []
  for r in range(repeats):
    for te in estimator.song_folds(songs, k, seed + 1 + r):
      est = estimator.train(x[~te], q[~te], songs[~te], k=k, seed=seed)
      scores.append(evaluate(est, x[te], q[te]))

  def summary(model, metric):
    values = [s[model][metric] for s in scores]
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4)}

  return {model: {m: summary(model, m) for m in ("valence", "arousal", "quadrant")}
          for model in ("estimator", "score_model")}


def rounded(tree):
  if isinstance(tree, dict):
    return {k: rounded(v) for k, v in tree.items()}
  return round(tree, 4) if isinstance(tree, float) else tree


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--emopia-dir", default="../shared/data/emopia")
  parser.add_argument("--out", default=estimator.DEFAULT_WEIGHTS)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--holdout", type=float, default=0.2, help="share of songs held out")
  parser.add_argument("--folds", type=int, default=5, help="song-level folds (inner and outer CV)")
  parser.add_argument("--repeats", type=int, default=2, help="outer k-fold repeats (0: skip)")
  args = parser.parse_args()

  x, q, songs, skipped = load_emopia(args.emopia_dir)
  held_out = estimator.song_split(songs, args.holdout, args.seed)
  assert not set(songs[held_out]) & set(songs[~held_out])
  est = estimator.train(x[~held_out], q[~held_out], songs[~held_out], k=args.folds, seed=args.seed)
  report = {
      "clips": int(len(q)), "songs": int(len(set(songs))), "skipped": skipped,
      "split": {"seed": args.seed, "train_songs": int(len(set(songs[~held_out]))),
                "held_out_songs": int(len(set(songs[held_out]))), "held_out_clips": int(held_out.sum())},
      "l2_train_split": est.meta["l2"],
      "held_out": evaluate(est, x[held_out], q[held_out]),
      "paper_baseline": PAPER_BASELINE,
  }
  if args.repeats:
    report[f"nested_{args.folds}fold_x{args.repeats}"] = nested_cv(x, q, songs, args.folds, args.repeats, args.seed)
  final = estimator.train(x, q, songs, k=args.folds, seed=args.seed)
  report["l2_shipped"] = final.meta["l2"]
  report = rounded(report)
  final.meta = {"trained_on": "EMOPIA 1.0, all songs", "recipe": "scripts/train_estimator.py", **report}
  estimator.save(final, args.out)
  print(json.dumps(report, indent=1))


if __name__ == "__main__":
  main()
