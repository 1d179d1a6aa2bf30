"""FER evaluation: a checkpoint's scores on labelled faces, per split, and their text report."""

import os

from facemusic_jax import emotion
from facemusic_jax.core.errors import UserError
from facemusic_jax.core.metrics import classification_report
from facemusic_jax.data import fer2013
from facemusic_jax.face import classify

_FOLDER_DESCRIPTION = "every image in its class folders; --split ignored"


def _requested_splits(split_names) -> list[str]:
  names = list(dict.fromkeys(fer2013.resolve_split(name) for name in split_names if name.strip()))
  if not names:
    raise UserError(f"--split names no split; use some of {', '.join(fer2013.SPLITS)}")
  return names


def evaluate(data_dir: str, *, splits=("validation", "test"), checkpoint: str | None = None,
             tta: str | None = None, batch_size: int = 256) -> dict:
  """Accuracy, per-class recall and precision, macro-F1 and the confusion matrix of a FER checkpoint (default:
  the shipped one) on `data_dir`: a folder of class folders (all of its images, `splits` ignored), or the
  FER2013 manual dir / CSV, where each of `splits` is reported separately. One report gives a flat dict, several
  {checkpoint, data_dir, tta, splits: {name: report}}."""
  if not data_dir:
    raise UserError("evaluate fer needs --data-dir DIR (a folder of class folders, the FER2013 manual dir, "
                    "or fer2013.csv)")
  if batch_size < 1:
    raise UserError(f"--batch-size must be at least 1, got {batch_size}")
  checkpoint = classify.resolve_checkpoint(checkpoint)
  splits = _requested_splits(splits)
  if fer2013.is_class_folder(data_dir):  # "These images": one report, split ignored.
    data = {None: fer2013.load_split_arrays(data_dir)}
  else:
    data = fer2013.load_splits(data_dir, splits)
  classifier = classify.load_classifier(checkpoint)
  tta = tta or classifier.default_tta
  reports = {}
  for split, (images, labels) in data.items():
    probs, images_per_s = classify.timed_classify(classifier, images, tta=tta, batch_size=batch_size)
    reports[split] = classification_report(labels, probs.argmax(-1), emotion.FER_LABELS) | {
        "split": split, "split_description": fer2013.SPLIT_DESCRIPTIONS.get(split, _FOLDER_DESCRIPTION),
        "images_per_s": images_per_s}
  common = {"checkpoint": classifier.checkpoint, "data_dir": os.path.abspath(data_dir), "tta": tta}
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


def format_report(report: dict) -> str:
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
