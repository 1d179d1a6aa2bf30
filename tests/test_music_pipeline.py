"""Music training examples: framing, conditioning, crops and augmentation, with hand-built token pieces."""

import numpy as np
import pytest

from facemusic_jax import emotion
from facemusic_jax.data import music_pipeline
from facemusic_jax.data.music_pipeline import ConcatSource
from facemusic_jax.models.music_transformer import MusicTransformer
from facemusic_jax.music import tokenizer
from facemusic_jax.training import music

TOK = tokenizer.get()


def _piece(num_notes, pitch=60):
  """note-on, 10 ms shift, note-off, 10 ms shift, repeated: a real event stream the tokenizer decodes."""
  ns = TOK.decode([])  # empty sequence with the tokenizer's settings
  for i in range(num_notes):
    n = ns.notes.add()
    n.pitch, n.velocity, n.start_time, n.end_time = pitch + i % 5, 80, 0.1 * i, 0.1 * i + 0.05
  ns.total_time = 0.1 * num_notes
  return TOK.encode_sequence(ns)


def test_frame_prefix_targets_and_weights():
  cfg = music_pipeline.MusicExampleConfig(seq_len=8, control_token=True)
  events = np.array([10, 11, 12], np.int32)
  ex = music_pipeline.frame(events, 2, TOK, cfg, reached_end=True)
  control = TOK.control_id(2)
  assert ex["inputs"].tolist() == [TOK.bos_id, control, 10, 11, 12, TOK.eos_id, 0, 0]
  assert ex["targets"].tolist() == [control, 10, 11, 12, TOK.eos_id, 0, 0, 0]
  assert ex["weights"].tolist() == [0, 1, 1, 1, 1, 0, 0, 0]  # the control token is never a target


def test_frame_without_control_token_or_end():
  cfg = music_pipeline.MusicExampleConfig(seq_len=4, control_token=False)
  ex = music_pipeline.frame(np.array([10, 11, 12, 13], np.int32), 0, TOK, cfg, reached_end=False)
  assert ex["inputs"].tolist() == [TOK.bos_id, 10, 11, 12]
  assert ex["targets"].tolist() == [10, 11, 12, 13]
  assert ex["weights"].tolist() == [1, 1, 1, 1]


def test_train_transform_is_deterministic_and_well_formed():
  record = {"tokens": _piece(200), "valence": 0.8, "arousal": 0.25, "music_class": 4}
  cfg = music_pipeline.MusicExampleConfig(seq_len=64)
  transform = music_pipeline.TrainTransform(cfg, TOK)
  a = transform(record, np.random.default_rng(1))
  b = transform(record, np.random.default_rng(1))
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert a["inputs"].shape == a["targets"].shape == a["weights"].shape == (64,)
  # V .8, E .25 on the Spotify scale: (0.6, -0.5) on Russell's plane, quadrant 4 ("others").
  assert a["inputs"][0] == TOK.bos_id and a["inputs"][1] == TOK.control_id(4)
  np.testing.assert_array_equal(a["inputs"][1:], a["targets"][:-1])
  np.testing.assert_allclose(a["va"], [0.6, -0.5])  # Spotify scale -> Russell
  assert a["cond"] and a["quadrant"] == 4
  # Every target past the control token is a real token of the piece's vocabulary.
  real = a["targets"][a["weights"] > 0]
  assert ((real >= TOK.event_offset) & (real < TOK.control_offset) | (real == TOK.eos_id)).all()
  crops = {tuple(transform(record, np.random.default_rng(s))["inputs"]) for s in range(8)}
  assert len(crops) > 1


def test_unlabelled_pieces_get_the_null_control_and_no_condition():
  cfg = music_pipeline.MusicExampleConfig(seq_len=32)
  for record in ({"tokens": _piece(50)}, {"tokens": _piece(50), "valence": float("nan"), "arousal": 0.5}):
    ex = music_pipeline.TrainTransform(cfg, TOK)(record, np.random.default_rng(0))
    assert ex["inputs"][1] == TOK.null_id and not ex["cond"] and ex["quadrant"] == 0
    np.testing.assert_array_equal(ex["va"], [0.0, 0.0])


@pytest.mark.parametrize("valence,arousal,quadrant", [(0.9, 0.6, 1), (0.1, 0.9, 2), (0.2, 0.3, 3), (0.7, 0.1, 4),
                                                      (0.5, 0.5, 1), (0.49, 0.5, 2)])
def test_the_control_token_is_the_quadrant_of_the_vector(valence, arousal, quadrant):
  q, va = music_pipeline.condition({"valence": valence, "arousal": arousal})
  assert q == quadrant and va == pytest.approx([2 * valence - 1, 2 * arousal - 1])


def test_transposition_shifts_pitches_within_the_configured_range():
  record = {"tokens": _piece(20), "valence": 0.5, "arousal": 0.5, "music_class": 0}
  cfg = music_pipeline.MusicExampleConfig(seq_len=128, max_stretch=0.0, max_transpose=3)
  transform = music_pipeline.TrainTransform(cfg, TOK)
  original = sorted({n.pitch for n in TOK.decode(record["tokens"]).notes})
  shifts = set()
  for seed in range(20):
    ex = transform(record, np.random.default_rng(seed))
    pitches = sorted({n.pitch for n in TOK.decode(ex["inputs"]).notes})
    shift = pitches[0] - original[0]
    assert pitches == [p + shift for p in original] and -3 <= shift <= 3
    shifts.add(shift)
  assert len(shifts) > 3


def test_short_piece_ends_with_eos_and_padding():
  record = {"tokens": _piece(3), "valence": 0.2, "arousal": 0.2, "music_class": 3}
  cfg = music_pipeline.MusicExampleConfig(seq_len=64, max_stretch=0.0, max_transpose=0)
  ex = music_pipeline.TrainTransform(cfg, TOK)(record, np.random.default_rng(0))
  n = len(record["tokens"])
  assert ex["targets"][n + 1] == TOK.eos_id and (ex["inputs"][n + 3:] == TOK.pad_id).all()
  np.testing.assert_array_equal(ex["inputs"][2:n + 2], record["tokens"])


def test_eval_examples_are_consecutive_windows():
  source = [{"tokens": np.arange(3, 3 + 25, dtype=np.int32), "valence": 0.9, "arousal": 0.9, "music_class": 1}]
  cfg = music_pipeline.MusicExampleConfig(seq_len=11)  # 10 events per window after BOS + control
  arrays = music_pipeline.eval_examples(source, cfg, TOK, max_windows_per_piece=4)
  assert arrays["inputs"].shape == (3, 11)
  assert arrays["targets"][0][1:].tolist() == list(range(3, 13))
  assert arrays["targets"][2][1:6].tolist() == list(range(23, 28)) and arrays["targets"][2][6] == TOK.eos_id


def test_concat_source():
  s = ConcatSource([[1, 2], [], [3, 4, 5]])
  assert len(s) == 5 and [s[i] for i in range(5)] == [1, 2, 3, 4, 5]


def test_music_task_trains_and_resumes_exactly_through_the_generic_loop(tmp_path):
  """configs/music_tiny.py on a few music21 corpus pieces: the same loop, checkpoints and metrics as FER. A run
  stopped at step 3 and continued to 6 (the Grain iterator, augmentation included, restored from the
  checkpoint) ends with exactly the parameters of the uninterrupted 6-step run."""
  import json
  import math
  import os
  import jax
  import orbax.checkpoint as ocp
  from conftest import load_config
  from facemusic_jax.training import get_task
  from facemusic_jax.training.loop import train_and_evaluate

  def run(workdir, steps):
    config = load_config("music_tiny", schedule="constant", num_train_steps=steps)  # no schedule over `steps`
    assert config.augment.max_transpose > 0 and config.augment.max_stretch > 0
    return train_and_evaluate(get_task(config), config, str(workdir))

  metrics = run(tmp_path / "straight", 6)
  assert metrics["perplexity"] == pytest.approx(math.exp(metrics["nll"]))
  assert 0 < metrics["nll"] < math.log(TOK.vocab_size) + 1
  with open(tmp_path / "straight" / "metrics.jsonl") as f:
    train = [r for r in map(json.loads, f) if r["split"] == "train"]
  assert train[-1]["loss"] < train[0]["loss"]
  assert os.listdir(tmp_path / "straight" / "best")

  run(tmp_path / "resumed", 3)
  run(tmp_path / "resumed", 6)
  a, b = (ocp.PyTreeCheckpointer().restore(str(tmp_path / w / "checkpoints" / "6" / "state"))
          for w in ("straight", "resumed"))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_bench_music_pipeline_prints_one_json_object(tmp_path):
  import json
  import pretty_midi
  from conftest import run_module
  for k in range(3):
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    inst.notes += [pretty_midi.Note(80, 60 + (i + k) % 12, 0.25 * i, 0.25 * i + 0.2) for i in range(40)]
    pm.instruments.append(inst)
    pm.write(str(tmp_path / f"p{k}.mid"))
  (tmp_path / "broken.mid").write_text("not midi")
  r = run_module("facemusic_jax.bench", "music_pipeline", "--json", "--midi_dir", tmp_path, "--seq_len", 64,
                 "--pipeline_batches", 3)
  assert r.returncode == 0, r.stderr[-2000:]
  out = json.loads(r.stdout)
  assert out["files"] == 4 and out["encoded"] == 3 and sum(out["skipped"].values()) == 1
  assert out["files_per_s"] > 0 and out["tokens_per_s"] > 0



@pytest.mark.parametrize("select", ["best", "last"])
def test_best_dir_keeps_the_best_eval_or_the_last(tmp_path, select):
  """With learning rate 0 both evals (steps 3 and 6) score the same: "best" keeps the first (a tie is no
  gain), "last" the last, for a run whose eval split must not choose the weights."""
  import os
  from conftest import load_config
  from facemusic_jax.training import get_task
  from facemusic_jax.training.loop import train_and_evaluate
  config = load_config("music_tiny", learning_rate=0.0, warmup_steps=0, schedule="constant",
                       select_checkpoint=select)
  train_and_evaluate(get_task(config), config, str(tmp_path))
  assert os.listdir(tmp_path / "best") == (["3"] if select == "best" else ["6"])


def _tiny_task_and_model(cond_dropout):
  from flax import nnx
  from conftest import load_config
  config = load_config("music_tiny", cond_dropout=cond_dropout)
  return music.MusicTask(config), MusicTransformer.from_config(config, nnx.Rngs(0)), config


def _batch(records, config):
  transform = music_pipeline.TrainTransform(music_pipeline.example_config(config), TOK)
  examples = [transform(r, np.random.default_rng(i)) for i, r in enumerate(records)]
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def test_condition_dropout_drops_the_token_and_the_vector_together():
  """With every condition dropped, the loss cannot see which quadrant or vector a window had, and equals
  the model on the null control token with the null vector; with none dropped it can."""
  import jax
  import optax
  tokens = _piece(40)
  happy = [{"tokens": tokens, "valence": 0.9, "arousal": 0.7}] * 2
  sad = [{"tokens": tokens, "valence": 0.1, "arousal": 0.2}] * 2
  rng = jax.random.key(0)
  task, model, config = _tiny_task_and_model(cond_dropout=1.0)
  a, b = _batch(happy, config), _batch(sad, config)
  assert a["inputs"][0, 1] != b["inputs"][0, 1]  # different control tokens before dropout
  loss_a, _ = task.loss(model, a, rng)
  loss_b, _ = task.loss(model, b, rng)
  assert float(loss_a) == pytest.approx(float(loss_b), abs=1e-6)
  null_inputs = a["inputs"].copy()
  null_inputs[:, 1] = TOK.null_id
  logits = model(null_inputs, a["va"], key_mask=null_inputs != 0, cond_keep=np.zeros(2, bool))
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, a["targets"]) * a["weights"]
  assert float(loss_a) == pytest.approx(float(nll.sum() / a["weights"].sum()), abs=1e-5)
  task0, _, _ = _tiny_task_and_model(cond_dropout=0.0)
  assert abs(float(task0.loss(model, a, rng)[0]) - float(task0.loss(model, b, rng)[0])) > 1e-4


def test_quadrant_balanced_sampling_table():
  source = [{"tokens": _piece(5), "valence": v, "arousal": a} for v, a in
            [(0.9, 0.9)] * 6 + [(0.1, 0.9)] * 2 + [(0.1, 0.1)] * 3] + [{"tokens": _piece(5)}]
  labels = music_pipeline.quadrant_labels(source)
  assert labels.tolist() == [1] * 6 + [2] * 2 + [3] * 3 + [0]
  from facemusic_jax.data import pipeline
  table = pipeline.balanced_index_table(labels, power=1.0)
  assert np.bincount(labels[table]).tolist() == [6, 6, 6, 6]


def test_heldout_nll_script_scores_every_window(music_checkpoint):
  """scripts/heldout_nll.py: every window of the split is scored; an untrained model is near chance."""
  import json
  import math
  import subprocess
  import sys
  from conftest import REPO
  r = subprocess.run([sys.executable, "scripts/heldout_nll.py", "--checkpoint", music_checkpoint, "--datasets",
                      "music21_corpus", "--seq-len", "16"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  out = json.loads(r.stdout)
  assert out["windows"] >= out["pieces"] > 0 and out["tokens"] > out["windows"]
  assert abs(out["nll"] - math.log(TOK.vocab_size)) < 1.0
  # Every event of every piece is a scored target once: the note count is the pieces' own note-ons.
  from conftest import load_config
  source = music_pipeline.sources(load_config("music_tiny"), "validation")
  lo, hi = TOK.note_on_range
  assert out["notes"] == sum(int(((r["tokens"] >= lo) & (r["tokens"] < hi)).sum()) for r in source)
  assert out["nll_per_note"] == pytest.approx(out["nll"] * out["tokens"] / out["notes"])


def test_heldout_nll_condition_swaps():
  """--condition opposite: Q1 <-> Q3, Q2 <-> Q4 with the vector negated; null drops it; unlabelled untouched."""
  import importlib.util
  from conftest import REPO
  spec = importlib.util.spec_from_file_location("heldout_nll", f"{REPO}/scripts/heldout_nll.py")
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  quadrants = np.array([1, 2, 3, 4, 0], np.int32)
  controls = [TOK.control_id(q) if q else TOK.null_id for q in quadrants]
  arrays = {"inputs": np.array([[TOK.bos_id, c, 5, 6] for c in controls], np.int32),
            "va": np.array([[.5, .5], [-.5, .5], [-.5, -.5], [.5, -.5], [0, 0]], np.float32),
            "cond": quadrants > 0, "quadrant": quadrants}
  opposite = script.with_condition(arrays, "opposite", TOK, control_token=True)
  assert opposite["inputs"][:, 1].tolist() == [TOK.control_id(q) for q in (3, 4, 1, 2)] + [TOK.null_id]
  assert np.array_equal(opposite["va"], -arrays["va"]) and np.array_equal(opposite["cond"], arrays["cond"])
  assert np.array_equal(opposite["inputs"][:, [0, 2, 3]], arrays["inputs"][:, [0, 2, 3]])
  null = script.with_condition(arrays, "null", TOK, control_token=True)
  assert null["inputs"][:, 1].tolist() == [TOK.null_id] * 5 and not null["cond"].any()
  assert arrays["inputs"][:, 1].tolist() == controls  # the caller's arrays are not changed
  assert script.with_condition(arrays, "data", TOK, control_token=True) is arrays
  q2 = script.with_condition(arrays, "q2", TOK, control_token=True)
  assert q2["inputs"][:, 1].tolist() == [TOK.control_id(2)] * 4 + [TOK.null_id]
  assert q2["va"].tolist() == [[-.5, .5]] * 4 + [[0, 0]]
  # The model as a classifier, by hand: guesses Q1, Q2, Q4 for labels Q1, Q1, Q3; the unlabelled row is ignored.
  got = script.classify(np.array([[1, 2, 3, 4], [5, 1, 6, 7], [3, 2, 1, 0], [1, 1, 1, 1]]), np.array([1, 1, 3, 0]))
  assert got == {"classified_windows": 3, "accuracy": pytest.approx(1 / 3), "per_quadrant": {"Q1": .5, "Q3": 0.0},
                 "guessed": {"Q1": 1, "Q2": 1, "Q3": 0, "Q4": 1}}


def _melody(seed, num_notes=120):
  """A melody of random scale notes with varied lengths, velocities and gaps, as tokenizer events. One note at
  a time: a MIDI file cannot tell apart two overlapping notes of one pitch."""
  rng = np.random.default_rng(seed)
  ns = TOK.decode([])
  t = 0.0
  for _ in range(num_notes):
    n = ns.notes.add()
    step = float(rng.choice([0.13, 0.25, 0.5]))
    n.pitch, n.velocity = int(rng.choice([57, 60, 62, 64, 65, 67, 69, 71, 72])), int(rng.integers(40, 110))
    n.start_time, n.end_time = t, t + step * float(rng.uniform(0.3, 0.95))
    t += step
  ns.total_time = max(n.end_time for n in ns.notes)
  return TOK.encode_sequence(ns)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weak_labels_are_the_estimators_reading_of_the_window(tmp_path, seed):
  """An unlabelled piece's window gets the quadrant and vector that the estimator gives the same notes read
  back from a MIDI file (the independent path: pretty_midi and `estimator.predict`); a labelled piece keeps its
  own label; the transform pickles (Grain's workers); min_fit 1 labels nothing; held-out windows never."""
  import dataclasses
  import pickle
  from facemusic_jax.music import estimator
  events = _melody(seed)
  cfg = music_pipeline.MusicExampleConfig(seq_len=len(events) + 2, max_stretch=0.0, max_transpose=0,
                                          weak_min_fit=1e-6)
  transform = music_pipeline.TrainTransform(cfg, TOK)
  ex = transform({"tokens": events}, np.random.default_rng(0))
  TOK.to_midi(events, tmp_path / "window.mid")
  ref = estimator.predict(str(tmp_path / "window.mid"))
  assert ex["cond"] and ex["quadrant"] == ref["quadrant"] and ex["inputs"][1] == TOK.control_id(ref["quadrant"])
  np.testing.assert_allclose(ex["va"], [2 * ref["valence"] - 1, 2 * ref["arousal"] - 1], atol=2e-3)
  again = pickle.loads(pickle.dumps(transform))({"tokens": events}, np.random.default_rng(0))
  assert all(np.array_equal(ex[k], again[k]) for k in ex)
  labelled = transform({"tokens": events, "valence": 0.1, "arousal": 0.2}, np.random.default_rng(0))
  assert labelled["quadrant"] == 3 and labelled["va"] == pytest.approx([-0.8, -0.6])
  strict = music_pipeline.TrainTransform(dataclasses.replace(cfg, weak_min_fit=1.0), TOK)
  unsure = strict({"tokens": events}, np.random.default_rng(0))
  assert not unsure["cond"] and unsure["inputs"][1] == TOK.null_id and unsure["quadrant"] == 0
  held_out = music_pipeline.eval_examples([{"tokens": events}], cfg, TOK)
  assert not held_out["cond"].any() and (held_out["inputs"][:, 1] == TOK.null_id).all()
