"""The generate CLI end to end on a small (untrained) Music Transformer checkpoint."""

import json
import os

import numpy as np
import pretty_midi
import pytest

from conftest import audio_available, run_module
from facemusic_jax import emotion

GEN = "facemusic_jax.generate"


def test_generate_by_emotion_writes_midi_and_summary(music_checkpoint, tmp_path):
  out = tmp_path / "happy"
  result = run_module(GEN, "--emotion", "happy", "--num", 3, "--length", 30, "--seed", 3,
                      "--checkpoint", music_checkpoint, "--out", out)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((out / "summary.json").read_text())
  assert summary["music_emotion"] == "happiness" and summary["quadrant"] == 1
  assert summary["vocabulary"] == "performance"
  # Table 1's happy point moved into the happiness region (see test_conditions).
  assert (summary["valence"], summary["arousal"]) == pytest.approx(emotion.resolve_emotion("happy")[1])
  assert len(summary["files"]) == 3 and summary["tokens_per_s"] > 0
  for entry in summary["files"]:
    assert os.path.exists(entry["midi"])
    pm = pretty_midi.PrettyMIDI(entry["midi"])  # playable: parses as standard MIDI
    assert len(pm.instruments[0].notes) == entry["notes"] if pm.instruments else entry["notes"] == 0
    if audio_available():
      assert os.path.getsize(entry["wav"]) > 44
  if not audio_available():
    assert "audio skipped" in result.stderr


def test_same_seed_same_music_different_seed_different(music_checkpoint, tmp_path):
  def tokens(seed, name):
    out = tmp_path / name
    r = run_module(GEN, "--valence", -0.5, "--arousal", 0.5, "--num", 2, "--seed", seed,
                   "--checkpoint", music_checkpoint, "--out", out, "--noaudio")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["music_emotion"] == "anger"
    return [open(e["midi"], "rb").read() for e in summary["files"]]
  a, b, c = tokens(1, "a"), tokens(1, "b"), tokens(2, "c")
  assert a == b and a != c


@pytest.mark.parametrize("args,message", [
    (["--emotion", "bored"], "unknown emotion"),
    (["--emotion", "happy", "--valence", "0.1", "--arousal", "0.1"], "exactly one of"),
    (["--valence", "1.5", "--arousal", "0"], "outside [-1, 1]"),
    (["--valence", "0.5"], "go together"),
    (["--emotion", "sad", "--temperature", "0"], "--temperature=0.0: must be > 0"),
    (["--emotion", "sad", "--top_p", "0"], "--top_p=0.0: must be in (0, 1]"),
    (["--emotion", "sad", "--top_k", "-1"], "--top_k=-1: must be >= 0"),
    (["--emotion", "sad", "--rerank", "0"], "--rerank=0"),
    (["--emotion", "sad", "--seconds", "-2"], "--seconds=-2.0"),
    (["--emotion", "sad", "--ending_strength", "-1"], "--ending_strength=-1.0: must be in [0, 20]"),
    (["--emotion", "sad", "--length", "5000"], "trained on 32-token windows"),
])
def test_bad_arguments_are_one_line_errors(music_checkpoint, tmp_path, args, message):
  r = run_module(GEN, *args, "--checkpoint", music_checkpoint, "--out", tmp_path)
  assert r.returncode == 1 and "Traceback" not in r.stderr
  assert message in r.stderr.strip().splitlines()[-1]


def _photo_folder(root):
  """The astronaut (one face), an unreadable file and a face-less image."""
  import cv2
  from skimage import data
  root.mkdir()
  cv2.imwrite(str(root / "astronaut.png"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
  (root / "broken.jpg").write_text("not an image")
  cv2.imwrite(str(root / "wall.png"), np.full((120, 120, 3), 128, np.uint8))
  return root


def test_face_to_music_over_a_folder_keeps_going_past_bad_photos(music_checkpoint, tmp_path):
  photos, out = _photo_folder(tmp_path / "photos"), tmp_path / "out"
  r = run_module(GEN, "--image", photos, "--num", 2, "--length", 30, "--music-checkpoint", music_checkpoint,
                 "--out", out, "--noaudio")
  assert r.returncode == 1, r.stderr[-3000:]  # some photos failed...
  assert "Traceback" not in r.stderr
  errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 2 and any("broken.jpg" in e for e in errors) and any("no face" in e for e in errors)
  runs = json.loads((out / "summary.json").read_text())
  assert (runs["processed"], runs["failed"]) == (1, 2)  # ...and the good one was still processed
  assert "1 of 3 photos" in r.stdout and "astronaut" in r.stdout

  summary = json.loads((out / "astronaut" / "summary.json").read_text())
  face = summary["face"]
  probs = [face["probabilities"][k] for k in emotion.FER_LABELS]
  # The face's own vector is the probability-weighted Table 1; the music's is it moved into the map's class.
  np.testing.assert_allclose([face["valence"], face["arousal"]], emotion.expected_va(probs), atol=1e-5)
  assert summary["music_emotion"] == emotion.face_to_music(face["emotion"])
  np.testing.assert_allclose([summary["valence"], summary["arousal"]],
                             emotion.project_to_class(*emotion.expected_va(probs), summary["music_emotion"]), atol=1e-5)
  assert len(summary["files"]) == 2
  for entry in summary["files"]:
    pretty_midi.PrettyMIDI(entry["midi"])
    assert os.path.getsize(entry["piano_roll"]) > 1000
  for plot in ("va_plane", "face"):
    assert os.path.getsize(summary["plots"][plot]) > 1000
  html = (out / "astronaut" / "index.html").read_text()
  assert "happiness_00.png" in html or f"{summary['music_emotion']}_00.png" in html


def test_evaluate_music_reports_every_class_beside_the_paper(music_checkpoint):
  from facemusic_jax.music.evaluation import PAPER_TABLE2
  r = run_module("facemusic_jax.evaluate", "music", "--checkpoint", music_checkpoint, "--num", 2,
                 "--json", "--noreference")
  assert r.returncode == 0, r.stderr[-3000:]
  report = json.loads(r.stdout)
  assert set(report["per_class"]) == set(emotion.MUSIC_CLASSES)
  for name, row in report["per_class"].items():
    counts = report["confusion"][name]
    assert row["n"] == sum(counts.values()) == 2
    assert row["accuracy"] == counts[name] / 2  # recomputed from the confusion counts
    assert row["paper"] == PAPER_TABLE2[name]
  assert report["distribution"]["generated"]["pieces"] == 10
  assert set(report["per_quadrant"]) == {"Q1", "Q2", "Q3", "Q4"} and report["per_quadrant"]["Q1"]["n"] == 4
  # The evaluator's ceiling on real EMOPIA validation clips comes with every report, and so does the shipped
  # second judge's, read from its folder (no dataset needed).
  assert set(report["evaluator_ceiling"]["per_quadrant"]) == {"Q1", "Q2", "Q3", "Q4"}
  assert set(report["evaluator_ceiling"]["per_class"]) == set(emotion.MUSIC_CLASSES)
  judge = report["second_judge"]
  assert judge["checkpoint"].endswith(os.path.join("release", "music_emotion"))
  assert judge["ceiling"]["pieces"] == 118 and sum(r["n"] for r in judge["per_quadrant"].values()) == 10


def test_shipped_music_checkpoint_is_the_default(tmp_path):
  out = tmp_path / "happy"
  r = run_module(GEN, "--emotion", "happy", "--num", 2, "--length", 96, "--out", out, "--noaudio")
  assert r.returncode == 0, r.stderr[-3000:]
  summary = json.loads((out / "summary.json").read_text())
  assert summary["checkpoint"].endswith(os.path.join("release", "music_cpu"))
  # A trained model writes notes (an untrained one mostly emits timing events and control noise).
  assert all(pretty_midi.PrettyMIDI(e["midi"]).instruments[0].notes for e in summary["files"])


def test_rerank_keeps_each_pieces_best_candidate(music_checkpoint):
  """Best-of-N: piece i is the candidate among samples i*N .. i*N+N-1 (the plain samples of one run) that best
  fits the requested class by the estimator."""
  from facemusic_jax.music import generation
  gen = generation.MusicGenerator(music_checkpoint)
  condition = generation.condition_from_emotion("sadness")
  plain = gen.generate(condition, num=6, seed=4)
  best = gen.generate(condition, num=2, seed=4, rerank=3)
  fits = np.array([gen.fit(ids, "sadness") for ids in plain.pieces]).reshape(2, 3)
  for i in range(2):
    want = plain.pieces[3 * i + int(fits[i].argmax())]
    np.testing.assert_array_equal(best.pieces[i], want)
    assert best.fit[i] == pytest.approx(fits[i].max())
  assert gen.generate(condition, num=2, seed=4, rerank=1).fit is None


def test_a_note_vocabulary_model_writes_notes_that_each_have_a_duration(notes_checkpoint, tmp_path):
  """The checkpoint's vocabulary drives the tokenizer and the sampler's rules: every note-on is followed by a
  duration, and the written MIDI holds exactly the decoded notes."""
  from flax import nnx
  from facemusic_jax.music import generation
  from facemusic_jax.music import tokenizer
  gen = generation.MusicGenerator(notes_checkpoint)
  tok = gen.tokenizer
  assert tok is tokenizer.get("notes") and nnx.merge(gen.graphdef, gen.state).vocab_size == tok.vocab_size == 399
  summary = generation.write_run(str(tmp_path / "out"), gen, generation.condition_from_emotion("others"), num=3,
                                audio=False, plots=False, temperature=1.5)
  assert summary["vocabulary"] == "notes"
  (on, on_end), (dur, dur_end) = tok.note_on_range, tok.duration_range
  pieces = gen.generate(generation.condition_from_emotion("others"), num=3, temperature=1.5).pieces
  for ids, entry in zip(pieces, summary["files"]):
    body = tok.events(ids)
    is_on, is_duration = (body >= on) & (body < on_end), (body >= dur) & (body < dur_end)
    assert is_on.any() and (is_duration[1:] == is_on[:-1]).all() and not is_duration[0]
    assert not is_on[-1] or len(ids) == gen.max_length  # only the length limit may cut a note before its duration
    written = pretty_midi.PrettyMIDI(entry["midi"]).instruments[0].notes
    assert len(written) == entry["notes"] == len(tok.decode(ids).notes) > 0


def test_faces_all_conditions_on_the_mean_of_every_face(music_checkpoint, tmp_path):
  """A two-person photo with --faces all: the music's vector is the mean of the faces' vectors (moved into the
  class of their mean probabilities), and summary.json lists each face."""
  import cv2
  from skimage import data
  from facemusic_jax.face import detection as face_lib
  gray = face_lib.to_gray(data.astronaut())
  canvas = np.full((512, 900), 120, np.uint8)
  canvas[:, :512] = gray
  head = cv2.resize(gray[20:220, 140:310], None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
  canvas[200:200 + head.shape[0], 650:650 + head.shape[1]] = head
  cv2.imwrite(str(tmp_path / "two.png"), canvas)
  out = tmp_path / "out"
  r = run_module(GEN, "--image", tmp_path / "two.png", "--faces", "all", "--num", 1, "--length", 30,
                 "--music-checkpoint", music_checkpoint, "--out", out, "--noaudio", "--noplots")
  assert r.returncode == 0, r.stderr[-3000:]
  summary = json.loads((out / "summary.json").read_text())
  group, faces = summary["face"], summary["face"]["faces"]
  assert group["mean_of_faces"] == len(faces) == 2 and faces[0]["face_box"][0] < 512 <= faces[1]["face_box"][0]
  mean_va = np.mean([[f["valence"], f["arousal"]] for f in faces], axis=0)
  np.testing.assert_allclose([group["valence"], group["arousal"]], mean_va, atol=1e-5)
  mean_probs = np.mean([[f["probabilities"][k] for k in emotion.FER_LABELS] for f in faces], axis=0)
  assert summary["music_emotion"] == emotion.face_to_music(emotion.FER_LABELS[int(mean_probs.argmax())])
  np.testing.assert_allclose([summary["valence"], summary["arousal"]],
                             emotion.project_to_class(*mean_va, summary["music_emotion"]), atol=1e-5)
