"""notebooks/colab_evaluate.ipynb, executed headless with nbclient on tiny checkpoints, so it cannot rot."""

import json
import os
import re
import sys

import jax
import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO, audio_available
from facemusic_jax import emotion

NOTEBOOK = os.path.join(REPO, "notebooks", "colab_evaluate.ipynb")


def _cell(nb, tag):
  (cell,) = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
  return cell


def _text(cell) -> str:
  """Everything a cell showed: streams, and the text/plain and text/html of its displays."""
  parts = []
  for out in cell.get("outputs", []):
    if out.output_type == "stream":
      parts.append(out.text)
    elif out.output_type in ("display_data", "execute_result"):
      parts += [out.data.get("text/plain", ""), out.data.get("text/html", "")]
  return "\n".join(parts)


def _images(cell) -> int:
  return sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def test_committed_notebook_is_clean():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  assert nb.metadata.kernelspec.name == "python3"
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(c.outputs == [] and c.execution_count is None for c in code), "clear the notebook's outputs"
  assert "google.colab" in code[0].source and "pip" in code[0].source  # the one-cell install comes first
  assert "parameters" in code[1].metadata.get("tags", [])


def test_notebook_runs_headless(music_checkpoint, tmp_path):
  out = tmp_path / "out"
  env = {
      "FER_CHECKPOINT": os.path.join(REPO, "facemusic_jax", "release", "fer_cpu"),
      "MUSIC_CHECKPOINT": music_checkpoint,
      "FER_DATA": "synthetic",
      "SYNTHETIC_PER_CLASS": "3",
      "NUM_PIECES": "1",
      "PIECE_SECONDS": "2",
      "EVAL_NUM": "1",
      "OUT_DIR": str(out),
  }
  nb = nbformat.read(NOTEBOOK, as_version=4)
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)  # the kernel inherits this process's environment (XLA_FLAGS, FACEMUSIC_CACHE too)
  try:
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": REPO}}).execute()
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v

  # The kernel is this interpreter (the venv's) and sees the same devices (8 virtual CPUs in the test suite).
  runtime = _text(_cell(nb, "runtime"))
  assert f"python: {sys.executable}" in runtime
  assert f"{jax.device_count()} devices" in runtime

  # FER: the synthetic faces (3 per class) were classified, the report is consistent, the figure shown.
  fer_out = _text(_cell(nb, "fer-eval"))
  accuracy = float(re.search(r"FER accuracy: ([0-9.]+)", fer_out).group(1))
  assert 0.0 <= accuracy <= 1.0
  report = json.loads((out / "fer_report.json").read_text())
  assert report["n"] == 3 * len(emotion.FER_LABELS)
  assert report["accuracy"] == pytest.approx(accuracy, abs=1e-4)
  assert report["data"].startswith(str(out))  # synthetic faces, not ../shared
  assert _images(_cell(nb, "fer-plots")) == 1 and (out / "fer_confusion.png").stat().st_size > 0
  assert all(name in _text(_cell(nb, "fer-plots")) for name in emotion.FER_LABELS)

  # The photo on the V-A plane.
  va = _text(_cell(nb, "va-plane"))
  assert "valence" in va and _images(_cell(nb, "va-plane")) == 2
  assert (out / "va_plane.png").stat().st_size > 0 and (out / "face.png").stat().st_size > 0

  # Music for every face emotion and for the photo: MIDI and piano rolls written, audio played or skipped.
  gen_out = _text(_cell(nb, "music-gen"))
  for name in emotion.FER_LABELS:
    summary = json.loads((out / "music" / name / "summary.json").read_text())
    assert summary["music_emotion"] == emotion.FACE_TO_MUSIC[name]
    assert len(summary["files"]) == 1 and os.path.getsize(summary["files"][0]["midi"]) > 0
    assert name in gen_out
  assert list((out / "music" / "astronaut").glob("*.mid"))
  players = sum("<audio" in o.get("data", {}).get("text/html", "") for o in _cell(nb, "music-gen").outputs)
  if audio_available():
    assert players == len(emotion.FER_LABELS)
  else:
    assert players == 0 and "audio skipped" in gen_out

  # Music evaluation: a table with every music class beside the paper, and the bar chart.
  eval_out = _text(_cell(nb, "music-eval"))
  assert all(name in eval_out for name in emotion.MUSIC_CLASSES) and "paper (Table 2)" in eval_out
  evaluation = json.loads((out / "music_eval.json").read_text())
  assert set(evaluation["per_class"]) == set(emotion.MUSIC_CLASSES)
  assert 0.0 <= evaluation["accuracy"] <= 1.0
  assert _images(_cell(nb, "music-eval-plot")) == 1 and (out / "music_eval.png").stat().st_size > 0
