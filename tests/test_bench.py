"""The benchmarks on small shapes: their JSON, their peer ratios and their batches (speed itself is never asserted)."""

import json
import os
import sys

import jax
import numpy as np

from conftest import run_module


def test_bench_decode_prints_one_json_object():
  r = run_module("facemusic_jax.bench", "decode", "--json", "--decode_models", "6L-256d-8h", "--decode_tokens", 6,
                 "--decode_batches", "1,2")
  assert r.returncode == 0, r.stderr[-2000:]
  out = json.loads(r.stdout)
  assert out["benchmark"] == "decode"
  assert [(row["batch"], row["tokens"]) for row in out["results"]] == [(1, 6), (2, 6)]
  for row in out["results"]:
    assert row["cached_tokens_per_s"] > 0 and row["recompute_tokens_per_s"] > 0
    assert row["recompute_tokens_timed"] == 4  # all 6 - 2 prompt tokens: fewer than --recompute_steps
    assert abs(row["speedup"] - row["cached_tokens_per_s"] / row["recompute_tokens_per_s"]) < 0.06
  assert all(row["time_to_first_token_ms"] > 0 for row in out["results"])


def test_bench_decode_real_time_factor_of_the_shipped_model():
  """The shipped model's pieces are decoded to music: seconds of music over seconds of compute."""
  r = run_module("facemusic_jax.bench", "decode", "--json", "--decode_models", "music_cpu", "--decode_tokens_cpu", 40,
                 "--decode_batches", "1", "--recompute_steps", 4)
  assert r.returncode == 0, r.stderr[-2000:]
  row = json.loads(r.stdout)["results"][0]
  assert row["music_seconds"] > 0 and row["real_time_factor"] > 0


def _fake_peers(tmp_path, images_per_s):
  """A peers folder whose VGG script prints a fixed figure, and a 'venv' whose python is this one."""
  peers = tmp_path / "peers"
  peers.mkdir()
  (peers / "torch_vgg16_fer.py").write_text(
      "import json, sys\n"
      "args = dict(zip(sys.argv[1::2], sys.argv[2::2]))\n"
      f"print('RESULT ' + json.dumps({{'train_img_per_s': {images_per_s}, 'width': float(args['--width'])}}))\n")
  venv = tmp_path / "venv" / "bin"
  venv.mkdir(parents=True)
  os.symlink(sys.executable, venv / "python")
  return peers, venv.parent


def test_bench_train_fer_reports_the_ratio_to_the_peer(tmp_path):
  peers, venv = _fake_peers(tmp_path, 1.0)
  r = run_module("facemusic_jax.bench", "train_fer", "--json", "--configs", "fer_tiny", "--batch_size", 8,
                 "--steps", 1, "--pipeline_batches", 1, "--peers", "--peers_dir", peers,
                 env={"PEERS_VENV": str(venv)})
  assert r.returncode == 0, r.stderr[-2000:]
  row = json.loads(r.stdout)["results"][0]
  assert row["peer_train_images_per_s"] == 1.0
  assert abs(row["ratio_to_peer"] - row["train_images_per_s"]) < 0.06  # ours over 1 image/s


def test_bench_peers_without_their_venv_is_one_line(tmp_path):
  r = run_module("facemusic_jax.bench", "train_fer", "--configs", "fer_tiny", "--batch_size", 8, "--steps", 1,
                 "--pipeline_batches", 1, "--peers", env={"PEERS_VENV": str(tmp_path / "none")})
  assert r.returncode == 1 and "Traceback" not in r.stderr
  assert "run.sh" in r.stderr.strip().splitlines()[-1]


def test_the_benchmark_batches_are_what_the_tasks_train_on():
  """bench train_fer / train_music time the real train step on synthetic batches: each task's loss takes them."""
  from flax import nnx
  from conftest import load_config
  from facemusic_jax import benchmarks
  from facemusic_jax.training import get_task
  for name, batch in (("fer_tiny", benchmarks._image_batch(4)), ("music_tiny", benchmarks._token_batch(4, 32))):
    config = load_config(name)
    task = get_task(config)
    loss, _ = task.loss(task.build_model(config, nnx.Rngs(0)), batch, jax.random.key(0))
    assert np.isfinite(float(loss)), name
