"""The predict and evaluate CLIs, run as a user runs them, against a checkpoint trained once per session
on the tiny synthetic config (seconds; no real data, no release checkpoint). The CLIs run in subprocesses
on one CPU device; the in-process checks run under the suite's 8 virtual devices."""

import csv
import json
import os
import pathlib
import subprocess
import sys

import cv2
import jax
import numpy as np
import pytest
from flax import nnx
from skimage import data

from facemusic_jax import emotion
from facemusic_jax.core import checkpointing
from facemusic_jax.core.errors import UserError
from facemusic_jax.data import synthetic_faces
from facemusic_jax.emotion import FER_LABELS
from facemusic_jax.face import classify, detection

REPO = pathlib.Path(__file__).resolve().parents[1]
PREDICT_KEYS = {"emotion", "probabilities", "valence", "arousal", "music_emotion", "face_box", "num_faces",
                "image", "angle", "flags"}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
  """The synthetic-data cache of this session's subprocesses, so tests never touch ~/.cache."""
  return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def workdir(tmp_path_factory, cache_dir):
  """A real training run of configs/fer_tiny.py, shortened: the tests need its checkpoint, not its accuracy.
  A one-device subprocess compiles faster than the suite's 8 virtual devices."""
  path = tmp_path_factory.mktemp("fer_tiny")
  overrides = dict(num_train_steps=2, eval_every_steps=2, log_every_steps=2, checkpoint_every_steps=2,
                   synthetic_train_per_class=8, synthetic_test_per_class=2, batch_size=8, eval_batch_size=16)
  result = run_cli("train", "--config", REPO / "configs" / "fer_tiny.py", "--workdir", path,
                   *(f"--config.{k}={v}" for k, v in overrides.items()), cache=cache_dir)
  assert result.returncode == 0, result.stderr[-2000:]
  return path


@pytest.fixture(scope="session")
def reference_model(workdir):
  """Predictions of the checkpoint's model on whole arrays, without classify_faces' batching."""
  classifier = classify.load_classifier(str(workdir))
  model = nnx.merge(classifier.graphdef, classifier.variables)
  predict = nnx.jit(classify.predict_outputs, static_argnames="tta")
  return lambda images, tta=classifier.default_tta: np.asarray(predict(model, images, tta=tta)["probs"])


@pytest.fixture(scope="session")
def astronaut_png(tmp_path_factory):
  path = tmp_path_factory.mktemp("images") / "astronaut.png"
  cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
  return path


def run_cli(module, *args, cache=None):
  """Runs `python -m facemusic_jax.<module> args` from the repo root on one CPU device."""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  if cache is not None:
    env["FACEMUSIC_CACHE"] = str(cache)
  return subprocess.run([sys.executable, "-m", f"facemusic_jax.{module}", *map(str, args)], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=120)


def assert_one_line_error(result, *needles):
  assert result.returncode == 1, result.stderr
  assert "Traceback" not in result.stderr
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(lines) == 1, result.stderr
  for needle in needles:
    assert needle in lines[0]


# ------------------------------------------------------------------------------------------ inference


def test_classify_faces_pads_and_matches_reference(workdir, reference_model):
  images = np.random.default_rng(0).integers(0, 256, (5, 48, 48, 1), np.uint8)
  classifier = classify.load_classifier(str(workdir))
  probs = classify.classify_faces(classifier, images, tta="ten_crop", batch_size=2)  # batches 2, 2, 1+pad
  np.testing.assert_allclose(probs, reference_model(images, "ten_crop"), atol=1e-5)
  np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
  assert jax.tree.leaves(classifier.variables)[0].sharding.device_set == {jax.devices()[0]}


def test_missing_release_checkpoint_is_a_user_error(monkeypatch, tmp_path):
  monkeypatch.setattr(checkpointing, "RELEASE_DIR", str(tmp_path / "release"))
  with pytest.raises(UserError, match="release checkpoint .* is missing; train one"):
    classify.load_classifier(None)


# ------------------------------------------------------------------------------------------ predict


def test_predict_json(workdir, astronaut_png, reference_model, cache_dir):
  result = run_cli("predict", "--image", astronaut_png, "--checkpoint", workdir, "--json", cache=cache_dir)
  assert result.returncode == 0, result.stderr
  out = json.loads(result.stdout)  # exactly one JSON object on stdout
  assert set(out) == PREDICT_KEYS
  probs = np.array([out["probabilities"][label] for label in FER_LABELS])
  assert list(out["probabilities"]) == list(FER_LABELS)
  np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-5)
  np.testing.assert_allclose([out["valence"], out["arousal"]], probs @ emotion.face_va_table(), atol=1e-5)
  assert out["emotion"] == FER_LABELS[int(probs.argmax())]
  assert out["music_emotion"] == emotion.FACE_TO_MUSIC[out["emotion"]]
  x, y, w, h = out["face_box"]
  assert 200 <= x + w / 2 <= 250 and 90 <= y + h / 2 <= 140 and 60 <= w <= 140  # her face, as in test_face
  assert out["num_faces"] == 1 and out["image"] == str(astronaut_png)
  crop, _, _ = detection.prepare_face(astronaut_png)
  np.testing.assert_allclose(probs, reference_model(crop[None])[0], atol=1e-5)


def test_predict_text_with_two_faces(workdir, tmp_path, cache_dir, reference_model):
  # The astronaut and a 0.6x copy of her head to the right (the two-face canvas of test_face).
  gray = detection.to_gray(data.astronaut())
  canvas = np.full((512, 900), 120, np.uint8)
  canvas[:, :512] = gray
  head = cv2.resize(gray[20:220, 140:310], None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
  canvas[200:200 + head.shape[0], 650:650 + head.shape[1]] = head
  path = tmp_path / "two.png"
  cv2.imwrite(str(path), canvas)
  result = run_cli("predict", "--image", path, "--checkpoint", workdir, "--tta", "ten_crop", cache=cache_dir)
  assert result.returncode == 0, result.stderr
  assert "2 faces found; using the largest" in result.stderr
  for needle in ("emotion:", "valence:", "arousal:", "music emotion:", "face:", *FER_LABELS):
    assert needle in result.stdout
  x = int(result.stdout.split("face:")[1].split("x=")[1].split()[0])
  assert x < 512  # the big (original) face
  # --faces all: one result per face, largest first, boxes in the photo's pixels, each face classified.
  result = run_cli("predict", "--image", path, "--checkpoint", workdir, "--faces", "all", "--json", cache=cache_dir)
  assert result.returncode == 0, result.stderr
  out = json.loads(result.stdout)
  faces = detection.find_faces(canvas)
  assert [r["face_box"] for r in out] == [f.box.as_list() for f in faces] and len(out) == 2
  assert out[0]["face_box"][0] < 512 <= out[1]["face_box"][0] and all(r["num_faces"] == 2 for r in out)
  for r, f in zip(out, faces):
    assert set(r) == PREDICT_KEYS
    probs = np.array([r["probabilities"][label] for label in FER_LABELS])
    np.testing.assert_allclose(probs, reference_model(f.crop[None])[0], atol=1e-5)


def test_predict_no_face_then_no_detect(workdir, tmp_path, cache_dir):
  gray = tmp_path / "gray.png"
  cv2.imwrite(str(gray), np.full((200, 200), 128, np.uint8))
  assert_one_line_error(run_cli("predict", "--image", gray, "--checkpoint", workdir, cache=cache_dir), "no face")
  result = run_cli("predict", "--image", gray, "--checkpoint", workdir, "--json", "--no-detect", cache=cache_dir)
  assert result.returncode == 0, result.stderr
  out = json.loads(result.stdout)
  assert out["face_box"] is None and set(out) == PREDICT_KEYS


def test_predict_unreadable_file(workdir, tmp_path):
  bad = tmp_path / "photo.jpg"
  bad.write_text("not an image")
  assert_one_line_error(run_cli("predict", "--image", bad, "--checkpoint", workdir), "photo.jpg",
                        "not a readable image")


def test_predict_missing_checkpoint(astronaut_png, tmp_path):
  assert_one_line_error(run_cli("predict", "--image", astronaut_png, "--checkpoint", tmp_path / "nope"),
                        "nope", "no such directory")


# ------------------------------------------------------------------------------------------ evaluate


def _class_folders(root):
  """Synthetic faces in class folders, class i with i + 1 images (so row sums pin the label mapping)."""
  rng = np.random.default_rng(1)
  images, labels = [], []
  for index, label in enumerate(FER_LABELS):
    (root / label).mkdir(parents=True)
    for i in range(index + 1):
      image = synthetic_faces.draw_face(label, rng)
      cv2.imwrite(str(root / label / f"{i}.png"), image)
      images.append(image[..., None])
      labels.append(index)
  return np.stack(images), np.array(labels)


def _kaggle_csv(path, n=30):
  """A Kaggle-style fer2013.csv; returns the PublicTest (test split) images and labels."""
  rng = np.random.default_rng(2)
  images, labels = [], []
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["emotion", "pixels", "Usage"])
    for i in range(n):
      label = int(rng.integers(0, 7))
      image = synthetic_faces.draw_face(FER_LABELS[label], rng)
      usage = ("Training", "PublicTest", "PrivateTest")[i % 3]
      writer.writerow([label, " ".join(map(str, image.ravel())), usage])
      if usage == "PublicTest":
        images.append(image[..., None])
        labels.append(label)
  return np.stack(images), np.array(labels)


def _check_report(out, images, labels, reference_model):
  assert out["n"] == len(labels)
  cm = np.array(out["confusion_matrix"])
  assert out["accuracy"] == pytest.approx(np.trace(cm) / out["n"])
  np.testing.assert_array_equal(cm.sum(1), np.bincount(labels, minlength=7))
  preds = reference_model(images).argmax(-1)
  assert out["accuracy"] == pytest.approx(float(np.mean(preds == labels)))
  expected = np.zeros((7, 7), int)
  np.add.at(expected, (labels, preds), 1)
  np.testing.assert_array_equal(cm, expected)
  assert set(out["per_class_recall"]) == set(FER_LABELS) and 0 <= out["macro_f1"] <= 1


def test_evaluate_class_folders(workdir, tmp_path, reference_model, cache_dir):
  images, labels = _class_folders(tmp_path / "test")
  result = run_cli("evaluate", "fer", "--data-dir", tmp_path / "test", "--checkpoint", workdir, "--json",
                   "--batch-size", 8, cache=cache_dir)
  assert result.returncode == 0, result.stderr
  out = json.loads(result.stdout)
  _check_report(out, images, labels, reference_model)
  assert out["class_names"] == list(FER_LABELS) and out["images_per_s"] > 0
  assert out["tta"] == "flip"  # the checkpoint config's
  assert out["split"] is None and "--split ignored" in out["split_description"]


def test_evaluate_csv_split(workdir, tmp_path, reference_model, cache_dir):
  images, labels = _kaggle_csv(tmp_path / "fer2013.csv")
  result = run_cli("evaluate", "fer", "--data-dir", tmp_path / "fer2013.csv", "--split", "publictest",
                   "--checkpoint", workdir, "--json", cache=cache_dir)
  assert result.returncode == 0, result.stderr
  out = json.loads(result.stdout)  # One split: one flat report.
  _check_report(out, images, labels, reference_model)
  assert out["split"] == "test" and "PublicTest" in out["split_description"]
  # By default both the carved validation split and the test split, each under its own heading.
  text = run_cli("evaluate", "fer", "--data-dir", tmp_path / "fer2013.csv", "--checkpoint", workdir,
                 "--tta", "none", cache=cache_dir)
  assert text.returncode == 0, text.stderr
  headings = [line for line in text.stdout.splitlines() if line.startswith("== ")]
  assert headings == ["== validation (carved from Training; used for selection) ==",
                      "== test (PublicTest; reported) =="]
  assert text.stdout.count("accuracy:") == 2 and text.stdout.count("confusion matrix") == 2
  assert f"images:      {len(labels)} " in text.stdout.split(headings[1])[1]
  header = next(line for line in text.stdout.splitlines() if line.split()[:2] == ["angry", "disgust"])
  assert header.split() == list(FER_LABELS)


def test_evaluate_manual_dir_reports_validation_and_test(workdir, tmp_path, reference_model, cache_dir):
  """train/ + test/ image folders: the carved validation split and PublicTest, keyed per split."""
  root = tmp_path / "manual"
  test_images, test_labels = _class_folders(root / "test")
  rng = np.random.default_rng(3)
  for index, label in enumerate(FER_LABELS):  # Class i has 10 + 5 i Training images.
    (root / "train" / label).mkdir(parents=True)
    for i in range(10 + 5 * index):
      cv2.imwrite(str(root / "train" / label / f"Training_{index}{i:03d}.png"),
                  synthetic_faces.draw_face(label, rng))
  result = run_cli("evaluate", "fer", "--data-dir", root, "--checkpoint", workdir, "--json", "--batch-size", 8,
                   cache=cache_dir)
  assert result.returncode == 0, result.stderr
  out = json.loads(result.stdout)
  assert list(out["splits"]) == ["validation", "test"] and out["tta"] == "flip"
  _check_report(out["splits"]["test"], test_images, test_labels, reference_model)
  validation = out["splits"]["validation"]
  # A tenth of 10, 15, ..., 40 rounded half up, counted by hand.
  assert np.array(validation["confusion_matrix"]).sum(1).tolist() == [1, 2, 2, 3, 3, 4, 4]
  assert validation["n"] == 19 and validation["split"] == "validation"
  assert out["splits"]["test"]["split_description"] == "test (PublicTest; reported)"


def test_evaluate_unknown_subcommand():
  assert_one_line_error(run_cli("evaluate", "music2", "--data-dir", "x"), "unknown subcommand", "music2")


@pytest.mark.parametrize("command", ["predict", "generate"])
def test_inference_loads_no_training_or_input_pipeline_code(command):
  """predict and generate import the models, not the training tasks: no tensorflow_datasets, grain or training
  modules."""
  code = (f"import sys, facemusic_jax.{command}, facemusic_jax.face_to_music; "
          "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow_datasets', 'grain') "
          "or m.startswith('facemusic_jax.training')))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
  assert out.strip() == "[]", out
