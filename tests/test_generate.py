"""The generate CLI end to end on a small (untrained) Music Transformer checkpoint."""

import json
import os

import numpy as np
import pretty_midi
import pytest
from flax import nnx

from conftest import load_config, run_module
from facemusic_jax import checkpointing, emotion
from facemusic_jax.training import music

GEN = "facemusic_jax.generate"


@pytest.fixture(scope="module")
def music_checkpoint(tmp_path_factory):
  """config.json + best/ with a freshly initialized tiny model: the same layout a training run writes."""
  workdir = str(tmp_path_factory.mktemp("music_ckpt"))
  config = load_config("music_tiny")
  model = music.build_model(config, nnx.Rngs(0))
  checkpointing.save_config(workdir, config)
  best = checkpointing.best_manager(workdir, "neg_nll")
  checkpointing.save_best(best, 1, nnx.state(model), {"neg_nll": -5.0})
  best.close()
  return workdir


def _audio_available():
  try:
    import fluidsynth  # noqa: F401
    return True
  except (ImportError, OSError):
    return False


def test_generate_by_emotion_writes_midi_and_summary(music_checkpoint, tmp_path):
  out = tmp_path / "happy"
  result = run_module(GEN, "--emotion", "happy", "--num", 3, "--length", 48, "--seed", 3,
                      "--checkpoint", music_checkpoint, "--out", out)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((out / "summary.json").read_text())
  assert summary["music_emotion"] == "happiness"
  assert (summary["valence"], summary["arousal"]) == emotion.FACE_VA["happy"]
  assert len(summary["files"]) == 3 and summary["tokens_per_s"] > 0
  for entry in summary["files"]:
    assert os.path.exists(entry["midi"])
    pm = pretty_midi.PrettyMIDI(entry["midi"])  # playable: parses as standard MIDI
    assert len(pm.instruments[0].notes) == entry["notes"] if pm.instruments else entry["notes"] == 0
    if _audio_available():
      assert os.path.getsize(entry["wav"]) > 44
  if not _audio_available():
    assert "audio skipped" in result.stderr


def test_same_seed_same_music_different_seed_different(music_checkpoint, tmp_path):
  def tokens(seed, name):
    out = tmp_path / name
    r = run_module(GEN, "--valence", -0.5, "--arousal", 0.5, "--num", 2, "--length", 40, "--seed", seed,
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
])
def test_bad_arguments_are_one_line_errors(music_checkpoint, tmp_path, args, message):
  r = run_module(GEN, *args, "--checkpoint", music_checkpoint, "--out", tmp_path)
  assert r.returncode == 1 and "Traceback" not in r.stderr
  assert message in r.stderr.strip().splitlines()[-1]
