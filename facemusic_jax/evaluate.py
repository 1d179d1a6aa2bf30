"""Evaluate a trained model on a labelled dataset.

  python -m facemusic_jax.evaluate fer --data-dir DIR [--split validation] [--checkpoint DIR] [--json]
                                       [--tta none|flip|ten_crop] [--batch-size 256]

Subcommands:
  fer   FER2013 face-emotion accuracy, per-class recall, macro-F1 and the confusion matrix. DIR is a folder
        of class folders (e.g. .../fer2013/test; --split is ignored), or the manual dir (train/ + test/
        image folders, or fer2013.csv) or a FER2013 CSV file, where --split picks train, validation
        (PublicTest) or test (PrivateTest).
"""

import json
import os

from absl import app, flags, logging

from facemusic_jax import emotion, inference
from facemusic_jax.data import fer2013
from facemusic_jax.errors import UserError, exit_on_user_error
from facemusic_jax.metrics import classification_report

flags.DEFINE_string("data_dir", None, "Dataset location (see the subcommand's help).")
flags.DEFINE_alias("data-dir", "data_dir")
flags.DEFINE_enum("split", "validation", list(fer2013.SPLITS), "Split to evaluate (CSV and manual-dir layouts).")
flags.DEFINE_string("checkpoint", None, "Checkpoint dir: a training --workdir or a release dir "
                    "(default: the shipped release checkpoint).")
flags.DEFINE_boolean("json", False, "Print one JSON object instead of text.")
flags.DEFINE_enum("tta", None, list(inference.TTA_MODES), "Test-time views (default: the checkpoint's).")
flags.DEFINE_integer("batch_size", 256, "Images per forward pass.")
flags.DEFINE_alias("batch-size", "batch_size")

FLAGS = flags.FLAGS


# ------------------------------------------------------------------------------------------------ fer


def evaluate_fer() -> dict:
  if not FLAGS.data_dir:
    raise UserError("evaluate fer needs --data-dir DIR (a folder of class folders, the FER2013 manual dir, "
                    "or fer2013.csv)")
  if FLAGS.batch_size < 1:
    raise UserError(f"--batch-size must be at least 1, got {FLAGS.batch_size}")
  checkpoint = inference.resolve_checkpoint(FLAGS.checkpoint)
  images, labels = fer2013.load_split_arrays(FLAGS.data_dir, split=FLAGS.split)
  classifier = inference.load_classifier(checkpoint)
  tta = FLAGS.tta or classifier.default_tta
  probs, images_per_s = inference.timed_classify(classifier, images, tta=tta, batch_size=FLAGS.batch_size)
  report = classification_report(labels, probs.argmax(-1), emotion.FER_LABELS)
  return report | {"checkpoint": classifier.checkpoint, "data_dir": os.path.abspath(FLAGS.data_dir),
                   "split": FLAGS.split, "tta": tta, "images_per_s": images_per_s}


def format_fer(report: dict) -> str:
  """Scores, per-class recall and precision, and the confusion matrix (rows true, columns predicted)."""
  names = report["class_names"]
  lines = [f"checkpoint:  {report['checkpoint']}",
           f"data:        {report['data_dir']} (split {report['split']}, tta {report['tta']})",
           f"images:      {report['n']} ({report['images_per_s']:.0f} images/s)",
           f"accuracy:    {report['accuracy']:.4f}",
           f"macro-F1:    {report['macro_f1']:.4f}",
           "",
           f"{'class':<10} {'recall':>7} {'precision':>9} {'support':>8}"]
  for name, row in zip(names, report["confusion_matrix"]):
    recall = report["per_class_recall"][name]
    recall_text = "-" if recall is None else f"{recall:.4f}"
    lines.append(f"{name:<10} {recall_text:>7} {report['per_class_precision'][name]:>9.4f} {sum(row):>8}")
  lines += ["", "confusion matrix (rows: true class, columns: predicted)"]
  width = max(max(len(n) for n in names), len(str(report["n"]))) + 1
  lines.append(" " * 10 + "".join(f"{n:>{width}}" for n in names))
  for name, row in zip(names, report["confusion_matrix"]):
    lines.append(f"{name:<10}" + "".join(f"{v:>{width}}" for v in row))
  return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ cli

# name -> (run: () -> report dict, format: report -> text). A new dataset adds one entry.
SUBCOMMANDS = {
    "fer": (evaluate_fer, format_fer),
}


@exit_on_user_error
def main(argv):
  known = ", ".join(SUBCOMMANDS)
  if len(argv) < 2:
    raise UserError(f"give a subcommand: python -m facemusic_jax.evaluate {{{known}}} ...")
  if argv[1] not in SUBCOMMANDS:
    raise UserError(f"unknown subcommand {argv[1]!r}; use one of: {known}")
  if len(argv) > 2:
    raise UserError(f"unexpected arguments after {argv[1]!r}: {' '.join(argv[2:])}")
  if not FLAGS["verbosity"].present:  # Orbax logs at INFO
    logging.set_verbosity(logging.WARNING)
  run, fmt = SUBCOMMANDS[argv[1]]
  report = run()
  print(json.dumps(report) if FLAGS.json else fmt(report))


if __name__ == "__main__":
  app.run(main)
