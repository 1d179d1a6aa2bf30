"""Held-out NLL of a Music Transformer checkpoint on every window of a dataset's split: per token, per note and
per second of music.

  python scripts/heldout_nll.py --checkpoint facemusic_jax/release/music_cpu \
      --datasets emopia:../shared/data/emopia --seq-len 512

Unlike the training loop's eval (a few windows per piece at the training length), this scores every window
of every piece at a fixed length, so checkpoints of different window lengths are compared on the same
tokens. Checkpoints of different vocabularies cut the same music into different tokens: compare them per note
(the NLL of every scored token over the note-ons among them: the cost of the whole piece per note) or per
second. Prints one JSON object.
"""

import argparse
import contextlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from facemusic_jax import checkpointing  # noqa: E402
from facemusic_jax.data import music_pipeline  # noqa: E402
from facemusic_jax.training import music  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint", required=True)
  parser.add_argument("--datasets", default="emopia:../shared/data/emopia")
  parser.add_argument("--split", default="validation")
  parser.add_argument("--seq-len", type=int, default=512)
  parser.add_argument("--batch-size", type=int, default=16)
  args = parser.parse_args()
  from flax import nnx
  model, config = checkpointing.load_model(args.checkpoint, music.build_model)
  config.datasets, config.seq_len = args.datasets, args.seq_len
  with contextlib.redirect_stdout(sys.stderr):  # TFDS reports a first build on stdout; stdout is the JSON
    source = music.sources(config, args.split)
  tok = music.tokenizer_for(config)
  arrays = music_pipeline.eval_examples(source, music.example_config(config), tok, max_windows_per_piece=10**6)
  scored = arrays["weights"] > 0
  on, on_end = tok.note_on_range
  targets = arrays["targets"][scored]
  notes = int(((targets >= on) & (targets < on_end)).sum())
  seconds = float(tok.time_steps(targets).sum()) / 100
  task = music.MusicTask(config)
  outputs = nnx.jit(lambda m, b: task.eval_outputs(m, b))
  nll = tokens = 0.0
  for i in range(0, len(arrays["inputs"]), args.batch_size):
    out = outputs(model, {k: v[i:i + args.batch_size] for k, v in arrays.items()})
    nll, tokens = nll + float(out["nll_sum"].sum()), tokens + float(out["tokens"].sum())
  print(json.dumps({"checkpoint": args.checkpoint, "datasets": args.datasets, "split": args.split,
                    "seq_len": args.seq_len, "pieces": len(source), "windows": len(arrays["inputs"]),
                    "vocabulary": tok.name, "tokens": int(tokens), "notes": notes, "seconds": round(seconds, 1),
                    "nll": nll / tokens, "nll_per_note": nll / notes, "nll_per_second": nll / seconds}))


if __name__ == "__main__":
  main()
