"""Metrics: classification scores (pure numpy) and the writers that record them (process 0 only)."""

import json
import os
import time

import jax
import numpy as np


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
  """The Wilson score interval of a proportion k/n (95% for z = 1.96); (0, 1) when n = 0. Unlike the normal
  approximation it stays inside [0, 1] and is honest for the few dozen samples of a listening-style test."""
  if n <= 0:
    return 0.0, 1.0
  p = k / n
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def confusion_matrix(labels, preds, num_classes: int) -> np.ndarray:
  """cm[i, j] = number of examples of true class i predicted as j."""
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (np.asarray(labels, np.int64), np.asarray(preds, np.int64)), 1)
  return cm


def classification_report(labels, preds, class_names) -> dict:
  """Accuracy, per-class recall/precision, macro-F1 and the confusion matrix.

  A class with no true examples has no recall; it is reported as None and left out of the macro average.
  """
  cm = confusion_matrix(labels, preds, len(class_names))
  support = cm.sum(axis=1)
  predicted = cm.sum(axis=0)
  tp = np.diag(cm).astype(np.float64)
  recall = np.where(support > 0, tp / np.maximum(support, 1), np.nan)
  precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
  denom = precision + np.nan_to_num(recall)
  f1 = np.where(denom > 0, 2 * precision * np.nan_to_num(recall) / np.where(denom > 0, denom, 1), 0.0)
  present = support > 0
  n = int(cm.sum())
  as_dict = lambda v: {c: (None if np.isnan(x) else float(x)) for c, x in zip(class_names, v)}
  return {
      "n": n,
      "accuracy": float(tp.sum() / max(n, 1)),
      "per_class_recall": as_dict(recall),
      "per_class_precision": as_dict(precision),
      "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
      "confusion_matrix": cm.tolist(),
      "class_names": list(class_names),
  }


class MetricWriter:
  """Scalars to TensorBoard event files (tensorboardX) and every record to `metrics.jsonl`.

  Only process 0 writes; other processes get a writer that does nothing, so callers need no checks.
  """

  def __init__(self, workdir: str):
    self.active = jax.process_index() == 0
    self._tb = None
    self._jsonl = None
    if self.active:
      from tensorboardX import SummaryWriter
      os.makedirs(workdir, exist_ok=True)
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

  def write(self, step: int, prefix: str, metrics: dict) -> None:
    if not self.active:
      return
    record = {"step": int(step), "time": time.time(), "split": prefix}
    for key, value in metrics.items():
      value = value.tolist() if isinstance(value, np.ndarray) else value
      record[key] = value
      if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
        self._tb.add_scalar(f"{prefix}/{key}", float(value), int(step))
      elif isinstance(value, dict):  # e.g. per-class recall
        for k, v in value.items():
          if isinstance(v, (int, float)):
            self._tb.add_scalar(f"{prefix}/{key}/{k}", float(v), int(step))
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()

  def close(self) -> None:
    if self.active:
      self._tb.close()
      self._jsonl.close()
