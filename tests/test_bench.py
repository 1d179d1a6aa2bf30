"""The decode benchmark's JSON on a few tokens (speed itself is never asserted)."""

import json

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
