"""Evaluate a trained model on a labelled dataset.

  python -m facemusic_jax.evaluate fer --data-dir DIR [--split validation,test] [--checkpoint DIR] [--json]
                                       [--tta none|flip|ten_crop] [--batch-size 256]
  python -m facemusic_jax.evaluate music [--checkpoint DIR] [--num 20] [--length 1024] [--seed 0] [--json]

Subcommands:
  fer   FER2013 face-emotion accuracy, per-class recall, macro-F1 and the confusion matrix. DIR is a folder
        of class folders (e.g. .../fer2013/test: all of its images; --split is ignored), or the manual dir
        (train/ + test/ image folders, or fer2013.csv) or a FER2013 CSV file, where --split lists the splits
        to report, each separately: by default validation (carved from Training; what checkpoints and
        settings are chosen on) and test (PublicTest; the figure we report); also train, private_test
        (PrivateTest, CSV only); publictest names test. One split (or a class folder) gives one flat report
        (JSON: the scores plus checkpoint, data_dir, split, tta); several give {checkpoint, data_dir, tta,
        splits: {name: report}}.
  music emotion control of a Music Transformer: --num pieces per music class, each scored by the symbolic
        emotion estimator (trained on EMOPIA's human labels); per-class accuracy beside the paper's
        listening test (Table 2), and statistics of generated vs training music.
"""

import json
import os
from typing import Callable

from absl import app, flags

from facemusic_jax.cli import common
from facemusic_jax.core.errors import UserError, exit_on_user_error
from facemusic_jax.data import fer2013
from facemusic_jax.face import classify

flags.DEFINE_string("data_dir", None, "Dataset location (see the subcommand's help).")
flags.DEFINE_alias("data-dir", "data_dir")
flags.DEFINE_list("split", ["validation", "test"], "fer: splits to report, each separately, for the manual-dir "
                  f"and CSV layouts: {', '.join(fer2013.SPLITS)} (publictest: test). validation is carved from "
                  "Training and used for selection; test is PublicTest, the reported figure. Ignored for a "
                  "folder of class folders.")
flags.DEFINE_string("checkpoint", None, "Checkpoint dir: a training --workdir or a release dir "
                    "(default: the shipped release checkpoint).")
flags.DEFINE_boolean("json", False, "Print one JSON object instead of text.")
flags.DEFINE_enum("tta", None, list(classify.TTA_MODES), "Test-time views (default: the checkpoint's).")
flags.DEFINE_integer("batch_size", 256, "Images per forward pass.")
flags.DEFINE_alias("batch-size", "batch_size")
flags.DEFINE_integer("num", 20, "music: pieces generated per music class.")
flags.DEFINE_integer("length", None, "music: maximum tokens per piece (default: the model's training window).")
flags.DEFINE_float("seconds", None, "music: stop each piece at this duration.")
flags.DEFINE_integer("seed", 0, "music: sampling seed (class k uses seed + 1000 k). The README reports seed 0; "
                     "choose settings on other seeds.")
flags.DEFINE_float("temperature", None, "music: sampling temperature (default: generate's).")
flags.DEFINE_integer("top_k", 0, "music: keep the k most likely tokens (0: all).")
flags.DEFINE_float("top_p", None, "music: nucleus sampling mass (default: generate's).")
flags.DEFINE_float("guidance", None, "music: classifier-free guidance scale (default: generate's; 1: off).")
flags.DEFINE_enum("contrast", None, ["null", "valence"], "music: what guidance pushes away from (default: "
                  "generate's).")
flags.DEFINE_float("key_strength", None, "music: key steering strength (default: generate's).")
flags.DEFINE_alias("key-strength", "key_strength")
flags.DEFINE_enum("key_scope", None, ["negative", "both"], "music: which requests key steering applies to "
                  "(default: generate's).")
flags.DEFINE_float("velocity_strength", None, "music: velocity steering strength (default: generate's).")
flags.DEFINE_alias("velocity-strength", "velocity_strength")
flags.DEFINE_float("ending_strength", None, "music: EOS bonus at the end of each piece's budget (default: generate's).")
flags.DEFINE_alias("ending-strength", "ending_strength")
flags.DEFINE_enum("attributes", None, ["class", "none"], "music: attributes asked of a model conditioned on "
                  "them (default: generate's).")
flags.DEFINE_integer("rerank", 1, "music: best of N candidates per piece by the estimator (1: off).")
flags.DEFINE_string("classifier", None, "music: the second judge, a music emotion classifier checkpoint (default: "
                    "the shipped release/music_emotion when present; 'none': the estimator alone).")
flags.DEFINE_string("out", None, "music: also write every scored piece there as MIDI, with pieces.csv (what was "
                    "asked, what each judge heard), e.g. for a blind listening test.")
flags.DEFINE_boolean("reference", True, "music: also compute the statistics of the training data's "
                     "validation split (prepares the checkpoint's datasets if needed).")

FLAGS = flags.FLAGS


# ------------------------------------------------------------------------------------------------ fer


def evaluate_fer() -> tuple[dict, Callable[[dict], str]]:
  from facemusic_jax.face import evaluation
  report = evaluation.evaluate(FLAGS.data_dir, splits=FLAGS.split, checkpoint=FLAGS.checkpoint, tta=FLAGS.tta,
                               batch_size=FLAGS.batch_size)
  return report, evaluation.format_report


# ---------------------------------------------------------------------------------------------- music


def evaluate_music() -> tuple[dict, Callable[[dict], str]]:
  from facemusic_jax.music import evaluation, generation
  if FLAGS.num < 1:
    raise UserError(f"--num must be at least 1, got {FLAGS.num}")
  generator = generation.MusicGenerator(FLAGS.checkpoint)
  classifier = None
  if FLAGS.classifier != "none" and (FLAGS.classifier or os.path.isdir(evaluation.SHIPPED_CLASSIFIER)):
    classifier = evaluation.QuadrantClassifier(FLAGS.classifier)
  report = evaluation.evaluate(generator, num=FLAGS.num, length=FLAGS.length, seconds=FLAGS.seconds,
                               seed=FLAGS.seed, temperature=FLAGS.temperature, top_k=FLAGS.top_k, top_p=FLAGS.top_p,
                               guidance=FLAGS.guidance, contrast=FLAGS.contrast, key_strength=FLAGS.key_strength,
                               key_scope=FLAGS.key_scope, velocity_strength=FLAGS.velocity_strength,
                               ending_strength=FLAGS.ending_strength,
                               attributes=FLAGS.attributes, rerank=FLAGS.rerank, reference=FLAGS.reference,
                               classifier=classifier, out=FLAGS.out)
  return report, evaluation.format_report


# ------------------------------------------------------------------------------------------------ cli

# name -> () -> (report, report -> text). A new dataset adds one entry.
SUBCOMMANDS = {"fer": evaluate_fer, "music": evaluate_music}


@exit_on_user_error
def main(argv):
  evaluate = common.choose(argv, SUBCOMMANDS, "python -m facemusic_jax.evaluate {{{known}}} ...")
  common.quiet_logging()
  report, format_report = evaluate()
  print(json.dumps(report) if FLAGS.json else format_report(report))


def run():
  """The `facemusic-evaluate` console script."""
  app.run(main)


if __name__ == "__main__":
  run()
