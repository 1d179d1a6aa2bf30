"""Benchmarks: each returns one JSON-ready dict (`python -m facemusic_jax.bench NAME` prints it).

  relattn_memory  compiled temp memory of relative attention (forward + backward), skewed vs naive,
                  at L = 512, 1024, 2048
  music_pipeline  MIDI -> tokens files/s, and augmented training tokens/s of the Grain pipeline
  train_music training tokens/s of the CPU music config and of a 6L/256d/8h/L512/B8 model
  decode      tokens/s of cached decoding vs recomputing the prefix every step, batch 1 and 8
  train_fer   VGG16 training images/s at batch 64 (full width and the CPU config's width) on this machine,
              and the Grain pipeline's augmented images/s at the same batch size, fed from --data_dir
              (FER2013 in either layout) or the embedded synthetic faces.

Speed is measured here, never asserted by tests; compare ratios taken in one run on a quiet machine.
"""

import json
import os
import subprocess
import time

from facemusic_jax.core.errors import UserError

# The PyTorch peers (../shared/peers/run.sh makes their venv once, outside the project).
DEFAULT_PEERS_DIR = "../shared/peers"


def peers_python() -> str:
  return os.path.join(os.path.expanduser(os.environ.get("PEERS_VENV", "~/.cache/facemusic_peers_venv")), "bin",
                      "python")


def run_peer(peers_dir: str, script: str, *args) -> dict:
  """One peer benchmark's JSON result: `script` of `peers_dir` run by the peers' own Python (PyTorch, 2 threads),
  in this process's run, so its figure and ours share the machine's state."""
  python, path = peers_python(), os.path.join(peers_dir, script)
  if not os.path.exists(python):
    raise UserError(f"{python} not found: the PyTorch peers' venv is made by {os.path.join(peers_dir, 'run.sh')}; "
                    "run it once (or set PEERS_VENV), then --peers")
  if not os.path.exists(path):
    raise UserError(f"{path} not found; give --peers_dir the folder of the peer scripts (../shared/peers)")
  out = subprocess.run([python, path, *map(str, args)], capture_output=True, text=True)
  lines = [line.removeprefix("RESULT ") for line in out.stdout.splitlines() if line.strip().startswith(("RESULT", "{"))]
  if out.returncode or not lines:
    raise UserError(f"{path} failed (exit {out.returncode}): {(out.stderr.strip().splitlines() or ['no output'])[-1]}")
  return json.loads(lines[-1])


def time_train_step(task, config, batch: dict, steps: int) -> float:
  """Examples/s of the jitted data-parallel train step on all local devices, for a fixed host batch."""
  import jax
  from facemusic_jax.core import parallel
  from facemusic_jax.training.loop import init_state, make_optimizer, make_train_step
  mesh = parallel.make_mesh()
  tx = make_optimizer(config)
  graphdef, state = init_state(task, config, tx, mesh)
  step = make_train_step(task, graphdef, tx, config, mesh)
  batch = parallel.to_global(batch, mesh)
  state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  t = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  return config.batch_size * steps / (time.perf_counter() - t)


def _image_batch(n: int) -> dict:
  import numpy as np
  rng = np.random.default_rng(0)
  return {"image": rng.integers(0, 256, (n, 48, 48, 1), dtype=np.uint8),
          "label": rng.integers(0, 7, n).astype(np.int32)}


def _token_batch(n: int, length: int) -> dict:
  import numpy as np
  from facemusic_jax.music import tokenizer
  rng = np.random.default_rng(0)
  seq = rng.integers(3, tokenizer.get().control_offset, (n, length + 1)).astype(np.int32)
  return {"inputs": seq[:, :-1], "targets": seq[:, 1:], "weights": np.ones((n, length), np.float32),
          "va": rng.uniform(-1, 1, (n, 2)).astype(np.float32), "cond": np.ones(n, bool)}


def time_pipeline(task, config, batches: int) -> float:
  """Augmented images/s of the training input pipeline with the config's worker processes."""
  it = iter(task.train_dataset(config, process_batch_size=config.batch_size))
  try:
    next(it)  # worker start-up is not throughput
    t = time.perf_counter()
    for _ in range(batches):
      next(it)
    return config.batch_size * batches / (time.perf_counter() - t)
  finally:
    getattr(it, "close", lambda: None)()


def train_fer(*, configs=("fer_vgg16", "fer_cpu"), batch_size: int = 64, data_dir: str = "", steps: int = 10,
              pipeline_batches: int = 50, peers_dir: str | None = None) -> dict:
  """VGG16 training images/s of each config at `batch_size`, and its Grain pipeline's augmented images/s, fed
  from `data_dir` (FER2013 in either layout) or the embedded synthetic faces. With `peers_dir`, the PyTorch
  VGG16-BN peer at the same width and batch too, and our images/s over its."""
  from facemusic_jax.training import get_task, load_config
  results = []
  for name in configs:
    overrides = dict(batch_size=batch_size)
    if data_dir:
      overrides.update(dataset="fer2013", data_dir=data_dir)
    else:
      overrides.update(dataset="synthetic")
    config = load_config(name, **overrides)
    config.model.dtype = "float32"  # CPU has no fast bf16 convolutions
    task = get_task(config)
    pipeline = time_pipeline(task, config, pipeline_batches)
    train = time_train_step(task, config, _image_batch(config.batch_size), steps)
    row = {"config": name, "width": config.model.width, "batch_size": config.batch_size,
           "train_images_per_s": round(train, 1), "pipeline_images_per_s": round(pipeline, 1),
           "pipeline_over_train": round(pipeline / train, 2), "num_workers": config.num_workers}
    if peers_dir:
      peer = run_peer(peers_dir, "torch_vgg16_fer.py", "--width", config.model.width, "--batch", config.batch_size,
                      "--steps", max(steps, 6), "--tag", name)
      row |= {"peer_train_images_per_s": round(peer["train_img_per_s"], 1),
              "ratio_to_peer": round(train / peer["train_img_per_s"], 2)}
    results.append(row)
  import jax
  return {"benchmark": "train_fer", "devices": [str(d) for d in jax.devices()],
          "data": data_dir or "synthetic", "results": results}


def relattn_memory() -> dict:
  """XLA's compiled temp memory of one relative-attention layer's forward and backward, skewed vs naive."""
  import jax
  import jax.numpy as jnp
  from facemusic_jax.models import attention
  heads, head_dim = 8, 64
  results = []
  for length in (512, 1024, 2048):
    q = jax.ShapeDtypeStruct((1, heads, length, head_dim), jnp.float32)
    e = jax.ShapeDtypeStruct((heads, length, head_dim), jnp.float32)
    row = {"length": length}
    for name, skewed in (("skewed", True), ("naive", False)):
      def loss(q, k, v, e, skewed=skewed):
        return attention.relative_attention(q, k, v, e, skewed=skewed).sum()
      compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3))).lower(q, q, q, e).compile()
      row[f"{name}_bytes"] = int(compiled.memory_analysis().temp_size_in_bytes)
    row["ratio"] = round(row["naive_bytes"] / max(row["skewed_bytes"], 1), 1)
    results.append(row)
  return {"benchmark": "relattn_memory", "heads": heads, "head_dim": head_dim, "batch": 1,
          "what": "temp bytes of jit(grad(relative attention)) from compiled.memory_analysis()",
          "results": results}


def _recompute_generate(model, prompt, va, keys, *, max_len, eos_id, pad_id, steps=None):
  """The baseline: every new token re-runs the whole (padded, causal) sequence through the model.

  Each step costs the same (the padded max_len sequence), so timing the first `steps` tokens measures the
  baseline's rate without generating all max_len of them.
  """
  import jax
  import jax.numpy as jnp
  batch, prompt_len = prompt.shape
  tokens = jnp.full((batch, max_len), pad_id, jnp.int32).at[:, :prompt_len].set(prompt)

  def body(t, tokens):
    logits = model(tokens, va)
    step = jax.lax.dynamic_index_in_dim(logits, t - 1, axis=1, keepdims=False)
    keys_t = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, t)
    nxt = jax.vmap(jax.random.categorical)(keys_t, step).astype(jnp.int32)
    return tokens.at[:, t].set(nxt)

  end = max_len if steps is None else min(max_len, prompt_len + steps)
  return jax.lax.fori_loop(prompt_len, end, body, tokens)


def decode(*, models=("music_cpu", "6L-256d-8h"), batches=(1, 8), tokens: int = 512, tokens_cpu: int = 1024,
           recompute_steps: int = 32) -> dict:
  """Tokens/s of cached decoding vs recomputing the full prefix every step (same model, same sampler), the
  time to the first token, and for the shipped music_cpu model the real-time factor: seconds of music per
  second of compute. The recompute baseline is timed over its first `recompute_steps` tokens only (each of
  its steps costs the same, the whole padded sequence), so the benchmark takes minutes, not hours."""
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from facemusic_jax.core import checkpointing
  from facemusic_jax.models.music_transformer import MusicTransformer
  from facemusic_jax.music import sampling, tokenizer
  results = []
  for name in models:
    tok, vocab = None, 396
    if name == "music_cpu":  # the shipped weights, so the pieces (and their seconds) are music
      model, config = checkpointing.load_model(checkpointing.resolve(None, "music_cpu", "music_notes_cpu"),
                                               MusicTransformer.from_config)
      tok, length = tokenizer.for_config(config), tokens_cpu
      prompt_ids = [tok.bos_id, tok.control_id(1)]
    elif name == "6L-256d-8h":
      model = MusicTransformer(vocab_size=vocab, dropout=0.0, rngs=nnx.Rngs(0), d_model=256, num_layers=6,
                               num_heads=8, d_ff=1024, max_relative_distance=512)
      length, prompt_ids = tokens, [1, 1]
    else:
      raise UserError(f"unknown decode model {name!r}; use music_cpu or 6L-256d-8h")
    model.eval()
    graphdef, state = nnx.split(model)
    for batch in map(int, batches):
      prompt = jnp.tile(jnp.array([prompt_ids], jnp.int32), (batch, 1))
      va = jnp.tile(jnp.array([[0.5, 0.5]], jnp.float32), (batch, 1))
      keys = sampling.sample_keys(0, batch)

      def cached_fn(max_len):
        # eos_id = -1: never stop early, so every sequence has exactly max_len tokens.
        return jax.jit(lambda s, p, v, k: sampling.generate(nnx.merge(graphdef, s), p, v, k, max_len=max_len,
                                                            eos_id=-1, pad_id=0)[0])

      timed = min(recompute_steps or length, length) - 2
      recompute = jax.jit(lambda s, p, v, k: _recompute_generate(nnx.merge(graphdef, s), p, v, k, max_len=length,
                                                                 eos_id=-1, pad_id=0, steps=timed))
      row = {"model": name, "batch": batch, "tokens": length, "recompute_tokens_timed": timed}
      for label, fn, new_tokens in (("first_token", cached_fn(len(prompt_ids) + 1), 1),
                                    ("cached", cached_fn(length), length - 2), ("recompute", recompute, timed)):
        fn = fn.lower(state, prompt, va, keys).compile()  # compile ahead: a warm-up run of the baseline is long
        t = time.perf_counter()
        out = jax.block_until_ready(fn(state, prompt, va, keys))
        seconds = time.perf_counter() - t
        if label == "first_token":
          row["time_to_first_token_ms"] = round(1000 * seconds, 1)
          continue
        row[f"{label}_tokens_per_s"] = round(batch * new_tokens / seconds, 1)
        if label == "cached" and tok is not None:
          music = sum(tok.decode(ids).total_time for ids in jax.device_get(out))
          row["music_seconds"] = round(music, 1)
          row["real_time_factor"] = round(music / seconds, 1)
      row["speedup"] = round(row["cached_tokens_per_s"] / row["recompute_tokens_per_s"], 1)
      results.append(row)
  return {"benchmark": "decode", "devices": [str(d) for d in jax.devices()], "results": results}


def train_music(*, steps: int = 10, peers_dir: str | None = None) -> dict:
  """Training tokens/s of the CPU config and of a 6-layer/256-wide/8-head/length-512/batch-8 model. With
  `peers_dir`, midi-emotion's own Music Transformer (PyTorch) at the same shape too, and our tokens/s over its."""
  import jax
  from facemusic_jax.training import get_task, load_config
  candidates = [("music_cpu", {}),
                ("6L-256d-8h-L512-B8", dict(seq_len=512, batch_size=8,
                                             model=dict(d_model=256, num_layers=6, num_heads=8, d_ff=1024,
                                                        max_relative_distance=512)))]
  results = []
  for name, overrides in candidates:
    config = load_config("music_cpu")
    model_overrides = overrides.pop("model", {})
    config.update(overrides)
    config.model.update(model_overrides)
    config.model.dtype = "float32"
    task = get_task(config)
    examples_per_s = time_train_step(task, config, _token_batch(config.batch_size, config.seq_len), steps)
    row = {"config": name, "seq_len": config.seq_len, "batch_size": config.batch_size,
           "layers": config.model.num_layers, "d_model": config.model.d_model,
           "tokens_per_s": round(examples_per_s * config.seq_len, 1)}
    if peers_dir:
      m = config.model
      peer = run_peer(peers_dir, "midi_emotion_bench.py", os.path.join(peers_dir, "midi_emotion", "src"),
                      "--layers", m.num_layers, "--d", m.d_model, "--heads", m.num_heads, "--ff", m.d_ff,
                      "--len", config.seq_len + 1, "--batch", config.batch_size, "--steps", max(steps, 6),
                      "--gen_len", 1, "--gen_batches", "1")
      row |= {"peer": "midi-emotion", "peer_tokens_per_s": peer["train_tokens_per_s"],
              "ratio_to_peer": round(row["tokens_per_s"] / peer["train_tokens_per_s"], 2)}
    results.append(row)
  return {"benchmark": "train_music", "devices": [str(d) for d in jax.devices()], "results": results}


def music_pipeline(*, midi_dir: str = "../shared/data/emopia/midis", midi_files: int = 200, seq_len: int = 512,
                   pipeline_batches: int = 50) -> dict:
  """MIDI -> tokens files/s, and training-example tokens/s of the Grain pipeline with augmentation."""
  import collections
  import glob
  import os
  from facemusic_jax.data import music_pipeline as music_input, pipeline
  from facemusic_jax.music.tokenizer import encode_corpus
  paths = sorted(glob.glob(os.path.join(midi_dir, "**", "*.mid*"), recursive=True))[:midi_files]
  if not paths:
    raise UserError(f"no .mid files under {midi_dir}; pass --midi_dir")
  stats = collections.Counter()
  t = time.perf_counter()
  pieces = [ids for _, ids in encode_corpus(paths, stats=stats)]
  files_per_s = len(paths) / (time.perf_counter() - t)
  source = [{"tokens": ids, "valence": 0.5, "arousal": 0.5, "music_class": 0} for ids in pieces]
  cfg = music_input.MusicExampleConfig(seq_len=seq_len)
  batch = 8
  it = iter(pipeline.train_iter_dataset(source, seed=0, batch_size=batch,
                                        transform=music_input.TrainTransform(cfg), num_workers=0))
  next(it)
  t = time.perf_counter()
  for _ in range(pipeline_batches):
    next(it)
  tokens_per_s = batch * cfg.seq_len * pipeline_batches / (time.perf_counter() - t)
  return {"benchmark": "music_pipeline", "midi_dir": midi_dir, "files": len(paths), "encoded": len(pieces),
          "skipped": {k: v for k, v in stats.items() if k != "encoded"}, "seq_len": cfg.seq_len,
          "files_per_s": round(files_per_s, 1), "tokens_per_s": round(tokens_per_s, 1),
          "workers": 0}
