"""Held-out NLL of a Music Transformer checkpoint on every window of a dataset's split, per token and per note.

  python scripts/heldout_nll.py --checkpoint facemusic_jax/release/music_cpu \
      --datasets emopia:../shared/data/emopia --seq-len 512

Unlike the training loop's eval (a few windows per piece at the training length), this scores every window
of every piece at a fixed length, so checkpoints of different window lengths are compared on the same
tokens. Checkpoints of different vocabularies cut the same music into different tokens: compare them per note
(the NLL of every scored token over the note-ons among them: the cost of the whole piece per note). Seconds
are not a common denominator: the performance vocabulary spends time shifts on the last notes' releases, the
notes vocabulary does not.

--condition asks how much the model listens to the emotion: "data" scores each piece under its own
condition; "opposite" under the opposite quadrant's (control token and vector negated: Q1 <-> Q3,
Q2 <-> Q4); "null" under no condition (the classifier-free guidance branch). The extra NLL per note of a
wrong or absent condition over the right one is the information the condition carries. "classify" uses the
model as a classifier: each window is scored under each quadrant's control token and centre vector, and the
likeliest quadrant is compared with the label (accuracy overall and per quadrant; chance is about .25).
A model conditioned on musical attributes (music/attributes.py) is scored without them by default
(--attributes none: the condition alone, comparable with a model that has none); --attributes window gives
each window its own attributes.
Prints one JSON object.
"""

import argparse
import contextlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from facemusic_jax import emotion  # noqa: E402
from facemusic_jax.core import checkpointing  # noqa: E402
from facemusic_jax.data import music_pipeline  # noqa: E402
from facemusic_jax.models.music_transformer import MusicTransformer  # noqa: E402
from facemusic_jax.music import tokenizer  # noqa: E402
from facemusic_jax.training import music  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint", required=True)
  parser.add_argument("--datasets", default="emopia:../shared/data/emopia")
  parser.add_argument("--split", default="validation")
  parser.add_argument("--seq-len", type=int, default=512)
  parser.add_argument("--batch-size", type=int, default=16)
  parser.add_argument("--condition", choices=("data", "opposite", "null", "classify"), default="data")
  parser.add_argument("--attributes", choices=("none", "window"), default="none")
  args = parser.parse_args()
  from flax import nnx
  model, config = checkpointing.load_model(args.checkpoint, MusicTransformer.from_config)
  config.datasets, config.seq_len = args.datasets, args.seq_len
  with contextlib.redirect_stdout(sys.stderr):  # TFDS reports a first build on stdout; stdout is the JSON
    source = music_pipeline.sources(config, args.split)
  tok = tokenizer.for_config(config)
  arrays = music_pipeline.eval_examples(source, music_pipeline.example_config(config), tok, max_windows_per_piece=10**6)
  if args.attributes == "none":
    arrays.pop("attrs", None)
  scored = arrays["weights"] > 0
  on, on_end = tok.note_on_range
  targets = arrays["targets"][scored]
  notes = int(((targets >= on) & (targets < on_end)).sum())
  task = music.MusicTask(config)
  outputs = nnx.jit(lambda m, b: task.eval_outputs(m, b))

  def score(batches: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per-window NLL sums and scored-token counts."""
    nll, tokens = [], []
    for i in range(0, len(batches["inputs"]), args.batch_size):
      out = outputs(model, {k: v[i:i + args.batch_size] for k, v in batches.items()})
      nll.append(np.asarray(out["nll_sum"], np.float64))
      tokens.append(np.asarray(out["tokens"], np.float64))
    return np.concatenate(nll), np.concatenate(tokens)

  report = {"checkpoint": args.checkpoint, "datasets": args.datasets, "split": args.split, "seq_len": args.seq_len,
            "pieces": len(source), "windows": len(arrays["inputs"]), "vocabulary": tok.name,
            "condition": args.condition, "attributes": args.attributes, "notes": notes}
  if args.condition == "classify":
    nll = np.stack([score(with_condition(arrays, f"q{q}", tok, config.control_token))[0] for q in range(1, 5)], 1)
    report.update(classify(nll, arrays["quadrant"]))
  else:
    nll, tokens = score(with_condition(arrays, args.condition, tok, config.control_token))
    report.update({"tokens": int(tokens.sum()), "nll": nll.sum() / tokens.sum(), "nll_per_note": nll.sum() / notes})
  print(json.dumps(report))


def classify(nll: np.ndarray, quadrants: np.ndarray) -> dict:
  """The model as a classifier: each labelled window's quadrant is the condition under which the model finds
  it likeliest. nll (windows, 4): its NLL under Q1..Q4. Accuracy overall and per true quadrant."""
  labelled = quadrants > 0
  guess = nll[labelled].argmin(1) + 1
  truth = quadrants[labelled]
  return {"classified_windows": int(labelled.sum()), "accuracy": float((guess == truth).mean()),
          "per_quadrant": {f"Q{q}": float((guess[truth == q] == q).mean()) for q in range(1, 5) if (truth == q).any()},
          "guessed": {f"Q{q}": int((guess == q).sum()) for q in range(1, 5)}}


def with_condition(arrays: dict, which: str, tok, control_token: bool) -> dict:
  """The eval windows with each labelled piece's condition kept ("data"), swapped for the opposite quadrant's
  ("opposite"), set to quadrant k's centre ("q1" .. "q4"), or dropped ("null"). Unlabelled windows stay
  unconditioned."""
  if which == "data":
    return arrays
  arrays = dict(arrays)
  labelled = arrays["cond"].astype(bool)
  inputs = arrays["inputs"].copy()
  if which == "null":
    if control_token:
      inputs[labelled, 1] = tok.null_id
    arrays["cond"] = np.zeros_like(arrays["cond"])
  elif which == "opposite":
    opposite = (arrays["quadrant"] + 1) % 4 + 1  # 1 <-> 3, 2 <-> 4
    if control_token:
      inputs[labelled, 1] = [tok.control_id(int(q)) for q in opposite[labelled]]
    arrays["va"] = -arrays["va"]
  else:
    q = int(which[1:])
    if control_token:
      inputs[labelled, 1] = tok.control_id(q)
    va = arrays["va"].copy()
    va[labelled] = emotion.quadrant_va(q)
    arrays["va"] = va
  arrays["inputs"] = inputs
  return arrays


if __name__ == "__main__":
  main()
