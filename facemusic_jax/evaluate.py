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

from absl import app, flags, logging

from facemusic_jax import emotion, inference
from facemusic_jax.data import fer2013
from facemusic_jax.errors import UserError, exit_on_user_error
from facemusic_jax.metrics import classification_report

flags.DEFINE_string("data_dir", None, "Dataset location (see the subcommand's help).")
flags.DEFINE_alias("data-dir", "data_dir")
flags.DEFINE_list("split", ["validation", "test"], "fer: splits to report, each separately, for the manual-dir "
                  f"and CSV layouts: {', '.join(fer2013.SPLITS)} (publictest: test). validation is carved from "
                  "Training and used for selection; test is PublicTest, the reported figure. Ignored for a "
                  "folder of class folders.")
flags.DEFINE_string("checkpoint", None, "Checkpoint dir: a training --workdir or a release dir "
                    "(default: the shipped release checkpoint).")
flags.DEFINE_boolean("json", False, "Print one JSON object instead of text.")
flags.DEFINE_enum("tta", None, list(inference.TTA_MODES), "Test-time views (default: the checkpoint's).")
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


_FOLDER_DESCRIPTION = "every image in its class folders; --split ignored"


def _requested_splits() -> list[str]:
  names = list(dict.fromkeys(fer2013.resolve_split(name) for name in FLAGS.split if name.strip()))
  if not names:
    raise UserError(f"--split names no split; use some of {', '.join(fer2013.SPLITS)}")
  return names


def evaluate_fer() -> dict:
  if not FLAGS.data_dir:
    raise UserError("evaluate fer needs --data-dir DIR (a folder of class folders, the FER2013 manual dir, "
                    "or fer2013.csv)")
  if FLAGS.batch_size < 1:
    raise UserError(f"--batch-size must be at least 1, got {FLAGS.batch_size}")
  checkpoint = inference.resolve_checkpoint(FLAGS.checkpoint)
  splits = _requested_splits()
  if fer2013.is_class_folder(FLAGS.data_dir):  # "These images": one report, split ignored.
    data = {None: fer2013.load_split_arrays(FLAGS.data_dir)}
  else:
    data = fer2013.load_splits(FLAGS.data_dir, splits)
  classifier = inference.load_classifier(checkpoint)
  tta = FLAGS.tta or classifier.default_tta
  reports = {}
  for split, (images, labels) in data.items():
    probs, images_per_s = inference.timed_classify(classifier, images, tta=tta, batch_size=FLAGS.batch_size)
    reports[split] = classification_report(labels, probs.argmax(-1), emotion.FER_LABELS) | {
        "split": split, "split_description": fer2013.SPLIT_DESCRIPTIONS.get(split, _FOLDER_DESCRIPTION),
        "images_per_s": images_per_s}
  common = {"checkpoint": classifier.checkpoint, "data_dir": os.path.abspath(FLAGS.data_dir), "tta": tta}
  if len(reports) == 1:
    return next(iter(reports.values())) | common
  return common | {"splits": reports}


def _format_scores(report: dict) -> list[str]:
  names = report["class_names"]
  lines = [f"images:      {report['n']} ({report['images_per_s']:.0f} images/s)",
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
  return lines


def format_fer(report: dict) -> str:
  """Per split: scores, per-class recall and precision, and the confusion matrix (rows true, columns
  predicted), under a heading that says what the split is."""
  lines = [f"checkpoint:  {report['checkpoint']}"]
  if "splits" not in report:
    lines.append(f"data:        {report['data_dir']} ({report['split_description']}; tta {report['tta']})")
    return "\n".join(lines + _format_scores(report))
  lines.append(f"data:        {report['data_dir']} (tta {report['tta']})")
  for split_report in report["splits"].values():
    lines += ["", f"== {split_report['split_description']} =="] + _format_scores(split_report)
  return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- music


def evaluate_music() -> dict:
  from facemusic_jax import music_eval, music_gen
  if FLAGS.num < 1:
    raise UserError(f"--num must be at least 1, got {FLAGS.num}")
  generator = music_gen.MusicGenerator(FLAGS.checkpoint)
  classifier = None
  if FLAGS.classifier != "none" and (FLAGS.classifier or os.path.isdir(music_eval.SHIPPED_CLASSIFIER)):
    classifier = music_eval.QuadrantClassifier(FLAGS.classifier)
  return music_eval.evaluate(generator, num=FLAGS.num, length=FLAGS.length, seconds=FLAGS.seconds,
                             seed=FLAGS.seed, temperature=FLAGS.temperature, top_k=FLAGS.top_k, top_p=FLAGS.top_p,
                             guidance=FLAGS.guidance, contrast=FLAGS.contrast, key_strength=FLAGS.key_strength,
                             key_scope=FLAGS.key_scope, velocity_strength=FLAGS.velocity_strength,
                             attributes=FLAGS.attributes, rerank=FLAGS.rerank, reference=FLAGS.reference,
                             classifier=classifier, out=FLAGS.out)


def _interval(ci) -> str:
  return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def format_music(report: dict) -> str:
  """Control accuracy per class beside the paper's Table 2 and per quadrant beside the evaluator's ceiling,
  then the distribution statistics."""
  lines = [f"checkpoint:  {report['checkpoint']}",
           f"pieces:      {report['num_per_class']} per class, <= {report['length']} tokens"
           + (f" / {report['seconds']} s" if report.get("seconds") else "")
           + f", seed {report['seed']}, temperature {report['temperature']}, top-p {report['top_p']}, "
           f"guidance {report['guidance']} from {report['contrast']}, key steering {report['key_strength']} "
           f"({report['key_scope']}), velocity steering {report['velocity_strength']}, rerank {report['rerank']} "
           f"({report['tokens_per_s']:.0f} tokens/s, "
           f"{report['ended_with_eos']:.0%} ended with EOS)",
           "",
           f"{'class':<10} {'estimator':>9} {'95% interval':>13} {'quadrant':>8} {'paper':>6} {'ceiling':>8}   "
           "(paper: listening test, Table 2; ceiling: the estimator on real EMOPIA validation clips of the class)"]
  class_ceiling = report.get("evaluator_ceiling", {}).get("per_class", {})
  for name, row in report["per_class"].items():
    real = class_ceiling.get(name)
    lines.append(f"{name:<10} {row['accuracy']:>9.3f} {_interval(row['ci95']):>13} {row['quadrant_accuracy']:>8.3f} "
                 f"{row['paper']:>6.3f} " + (f"{real['accuracy']:>8.3f} of {real['n']}" if real else f"{'-':>8}"))
  lines.append(f"{'mean':<10} {report['accuracy']:>9.3f} {'':>13} {report['quadrant_accuracy']:>8.3f} "
               f"{report['paper_mean']:>6.3f}")
  ceiling = report.get("evaluator_ceiling", {}).get("per_quadrant", {})
  lines += ["", f"{'quadrant':<10} {'estimator':>9} {'95% interval':>13}   evaluator's own accuracy on real "
                f"EMOPIA validation clips (tokenize -> decode)"]
  for q, row in report["per_quadrant"].items():
    real = ceiling.get(q)
    lines.append(f"{q:<10} {row['accuracy']:>9.3f} {_interval(row['ci95']):>13}   " +
                 (f"{real['accuracy']:.3f} {_interval(real['ci95'])} of {real['n']}" if real else "-"))
  judge = report.get("second_judge")
  if judge:
    lines += ["", f"{'quadrant':<10} {'classifier':>10} {'95% interval':>13}   second judge ({judge['checkpoint']}); its own "
                  f"accuracy on real EMOPIA validation pieces"]
    for q, row in judge["per_quadrant"].items():
      real = judge["ceiling"]["per_quadrant"].get(q)
      lines.append(f"{q:<10} {row['accuracy']:>10.3f} {_interval(row['ci95']):>13}   " +
                   (f"{real['accuracy']:.3f} {_interval(real['ci95'])} of {real['n']}" if real else "-"))
    lines.append(f"{'all':<10} {judge['accuracy']:>10.3f} {_interval(judge['ci95']):>13}   "
                 f"{judge['ceiling']['accuracy']:.3f} {_interval(judge['ceiling']['ci95'])}")
  dist = report["distribution"]
  columns = [("generated", dist["generated"])] + ([("training", dist["training"])] if "training" in dist else [])
  keys = ("notes_per_piece", "seconds_per_piece", "notes_per_s", "velocity_mean", "velocity_std", "pitch_mean",
          "pitch_range", "note_seconds_median", "note_seconds_p90", "polyphony")
  lines += ["", f"{'statistic':<18}" + "".join(f"{name:>11}" for name, _ in columns)]
  for key in keys:
    lines.append(f"{key:<18}" + "".join(f"{d[key]:>11.2f}" if key in d else f"{'-':>11}" for _, d in columns))
  if "pitch_class_overlap" in dist:
    lines.append(f"pitch-class histogram overlap (generated vs training): {dist['pitch_class_overlap']:.3f}")
  if "pieces" in report:
    lines.append(f"the pieces, with what was asked and what each judge heard: {report['pieces']}")
  return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ cli

# name -> (run: () -> report dict, format: report -> text). A new dataset adds one entry.
SUBCOMMANDS = {
    "fer": (evaluate_fer, format_fer),
    "music": (evaluate_music, format_music),
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


def run():
  """The `facemusic-evaluate` console script."""
  app.run(main)


if __name__ == "__main__":
  run()
