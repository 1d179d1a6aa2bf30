"""Benchmarks that print JSON: python -m facemusic_jax.bench NAME [--json] [flags].

NAME is one of music_pipeline, train_music, train_fer, relattn_memory, decode; facemusic_jax/benchmarks.py says
what each measures. Speed is measured here, never asserted by tests; compare ratios taken in one run.
"""

import json
import sys

from absl import app, flags

from facemusic_jax import benchmarks
from facemusic_jax.cli import common
from facemusic_jax.core.errors import exit_on_user_error

FLAGS = flags.FLAGS
flags.DEFINE_bool("json", False, "Print exactly one JSON object.")
flags.DEFINE_string("data_dir", "", "FER2013 folder for the pipeline benchmark (default: synthetic faces).")
flags.DEFINE_integer("batch_size", 64, "Batch size of the benchmarked step and pipeline.")
flags.DEFINE_integer("steps", 10, "Timed training steps per configuration (after one compile step).")
flags.DEFINE_integer("pipeline_batches", 50, "Timed pipeline batches per configuration.")
flags.DEFINE_list("configs", "fer_vgg16,fer_cpu", "Config files (under configs/) to benchmark.")
flags.DEFINE_string("midi_dir", "../shared/data/emopia/midis", "MIDI folder for the music_pipeline benchmark.")
flags.DEFINE_integer("midi_files", 200, "MIDI files encoded by the music_pipeline benchmark.")
flags.DEFINE_integer("seq_len", 512, "Example length of the music_pipeline benchmark.")
flags.DEFINE_integer("decode_tokens", 512, "Tokens per sequence for the 6-layer model in the decode benchmark.")
flags.DEFINE_integer("decode_tokens_cpu", 1024, "Tokens per sequence for the music_cpu model in the decode benchmark.")
flags.DEFINE_list("decode_models", ["music_cpu", "6L-256d-8h"], "Models of the decode benchmark.")
flags.DEFINE_list("decode_batches", ["1", "8"], "Batch sizes of the decode benchmark.")
flags.DEFINE_bool("peers", False, "train_fer, train_music: also time the PyTorch peers at the same shapes (their "
                  "venv comes from ../shared/peers/run.sh) and report our speed over theirs.")
flags.DEFINE_string("peers_dir", benchmarks.DEFAULT_PEERS_DIR, "Folder of the peer scripts.")
flags.DEFINE_integer("recompute_steps", 32, "Tokens timed for the recompute baseline (its steps all cost the "
                     "same: the full padded length); 0 = all of them.")

def _peers_dir() -> str | None:
  return FLAGS.peers_dir if FLAGS.peers else None


# NAME -> the benchmark with its flags.
BENCHMARKS = {
    "music_pipeline": lambda: benchmarks.music_pipeline(midi_dir=FLAGS.midi_dir, midi_files=FLAGS.midi_files,
                                                        seq_len=FLAGS.seq_len, pipeline_batches=FLAGS.pipeline_batches),
    "train_music": lambda: benchmarks.train_music(steps=FLAGS.steps, peers_dir=_peers_dir()),
    "train_fer": lambda: benchmarks.train_fer(configs=FLAGS.configs, batch_size=FLAGS.batch_size,
                                              data_dir=FLAGS.data_dir, steps=FLAGS.steps,
                                              pipeline_batches=FLAGS.pipeline_batches, peers_dir=_peers_dir()),
    "relattn_memory": benchmarks.relattn_memory,
    "decode": lambda: benchmarks.decode(models=FLAGS.decode_models, batches=FLAGS.decode_batches,
                                        tokens=FLAGS.decode_tokens, tokens_cpu=FLAGS.decode_tokens_cpu,
                                        recompute_steps=FLAGS.recompute_steps),
}


@exit_on_user_error
def main(argv):
  benchmark = common.choose(argv, BENCHMARKS, "python -m facemusic_jax.bench {{{known}}} [--json]", what="benchmark")
  common.quiet_logging()
  result = benchmark()
  if FLAGS.json:
    print(json.dumps(result))
  else:
    json.dump(result, sys.stdout, indent=2)
    print()


def run():
  """The `facemusic-bench` console script."""
  app.run(main)


if __name__ == "__main__":
  run()
