"""The music emotion classifier: the second judge of generated music."""

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pretty_midi
import pytest
from flax import nnx

from conftest import load_config
from facemusic_jax.music import evaluation
from facemusic_jax.training import get_task
from facemusic_jax.training.music_emotion import MusicEmotionTask


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
  """configs/music_emotion_tiny.py trained a few steps through the generic loop."""
  from facemusic_jax.training.loop import train_and_evaluate
  workdir = str(tmp_path_factory.mktemp("music_emotion"))
  config = load_config("music_emotion_tiny")
  metrics = train_and_evaluate(get_task(config), config, workdir)
  assert 0 <= metrics["accuracy"] <= 1 and metrics["n"] > 0 and metrics["nll"] > 0
  return workdir


def test_the_label_is_never_an_input():
  """The control token (the label) is replaced by the null control: windows that differ only there get the
  same probabilities, while a different window gets others."""
  config = load_config("music_emotion_tiny")
  task = get_task(config)
  assert isinstance(task, MusicEmotionTask)
  model = task.build_model(config, nnx.Rngs(0))
  model.eval()
  body = jax.random.randint(jax.random.key(0), (1, 30), 3, 300)
  inputs = jnp.concatenate([jnp.array([[1, 0]]), body], axis=1)
  q1, q3 = inputs.at[:, 1].set(task.null_id - 4), inputs.at[:, 1].set(task.null_id - 2)
  batch = lambda x: {"inputs": x, "quadrant": jnp.array([1])}
  p1, p3 = (task.eval_outputs(model, batch(x))["probs"] for x in (q1, q3))
  np.testing.assert_array_equal(p1, p3)
  other = task.eval_outputs(model, batch(q1.at[:, 5].set(7)))["probs"]
  assert not np.allclose(other, p1)


def test_quadrant_scores_by_hand():
  truth = np.array([1, 1, 2, 3, 3, 3, 4])
  pred = np.array([1, 2, 2, 3, 1, 0, 4])
  s = evaluation.quadrant_scores(truth, pred)
  assert s["accuracy"] == pytest.approx(4 / 7)
  assert {q: (r["n"], r["accuracy"]) for q, r in s["per_quadrant"].items()} == \
      {"Q1": (2, 0.5), "Q2": (1, 1.0), "Q3": (3, pytest.approx(1 / 3)), "Q4": (1, 1.0)}


def test_summary_counts_only_labelled_windows():
  task = MusicEmotionTask(load_config("music_emotion_tiny"))
  probs = np.array([[.7, .1, .1, .1], [.1, .6, .2, .1], [.25, .25, .4, .1], [.9, .05, .03, .02]])
  out = task.summarize({"probs": probs, "quadrant": np.array([1, 3, 3, 0])})
  assert out["n"] == 3 and out["accuracy"] == pytest.approx(2 / 3)
  assert out["accuracy_Q1"] == 1.0 and out["accuracy_Q3"] == 0.5
  assert out["nll"] == pytest.approx(-np.mean(np.log([.7, .2, .4])))


def test_piece_probabilities_average_its_windows(classifier_dir):
  """A piece longer than one window is the mean of its windows' probabilities, each computed alone."""
  clf = evaluation.QuadrantClassifier(classifier_dir, max_windows=3)
  rng = np.random.default_rng(0)
  lo, hi = clf.tokenizer.note_on_range
  long_piece = rng.integers(lo, hi, 70).astype(np.int32)  # 31 events per window at seq_len 32: 3 windows
  short_piece = rng.integers(lo, hi, 10).astype(np.int32)
  got = clf.classify_events([long_piece, short_piece])
  assert clf.windows(long_piece).shape == (3, clf.config.seq_len)
  alone = [np.asarray(clf._probs(clf._variables, w[None]))[0] for w in clf.windows(long_piece)]
  np.testing.assert_allclose(got[0], np.mean(alone, 0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-5)


def test_evaluate_music_reports_the_second_judge_beside_its_ceiling(classifier_dir, notes_checkpoint, tmp_path):
  """A notes-vocabulary generator judged by a performance-vocabulary classifier (decode -> encode between),
  with the classifier's own ceiling computed once and kept in its folder."""
  from facemusic_jax.music import generation
  gen = generation.MusicGenerator(notes_checkpoint)
  clf = evaluation.QuadrantClassifier(classifier_dir)
  report = evaluation.evaluate(gen, num=2, reference=False, classifier=clf, out=str(tmp_path))
  judge = report["second_judge"]
  assert sum(r["n"] for r in judge["per_quadrant"].values()) == 10 and judge["per_quadrant"]["Q1"]["n"] == 4
  assert json.load(open(os.path.join(classifier_dir, evaluation.CEILING_FILE))) == judge["ceiling"]
  assert judge["ceiling"]["pieces"] > 0
  # Every scored piece is written with both verdicts; the accuracies recomputed from pieces.csv agree.
  with open(report["pieces"]) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 10 and all(pretty_midi.PrettyMIDI(str(tmp_path / r["file"])) for r in rows)
  assert np.mean([r["estimator"] == r["requested"] for r in rows]) == pytest.approx(report["accuracy"])
  assert np.mean([r["second_judge_quadrant"] == r["requested_quadrant"] for r in rows]) == \
      pytest.approx(judge["accuracy"])
