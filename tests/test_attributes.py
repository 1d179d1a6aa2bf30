"""Attribute conditioning: the attributes of a window, the model's attribute input, training, warm start and
generation, against hand-computed values and the model without attributes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from facemusic_jax.core import checkpointing, parallel
from facemusic_jax.core.errors import UserError
from facemusic_jax.data import music_pipeline
from facemusic_jax.models.music_transformer import MusicTransformer
from facemusic_jax.music import attributes, sampling, tokenizer
from facemusic_jax.training import loop, music

from conftest import load_config

NOTES = tokenizer.get("notes")
NAMES = attributes.NAMES


def _notes(pitches, velocity=80, step=0.25, length=0.25):
  return np.array([[i * step, i * step + length, p, velocity] for i, p in enumerate(pitches)], np.float64)


def test_values_and_bins_by_hand():
  notes = np.array([[0, .5, 60, 40], [.5, 1, 64, 60], [1, 2, 67, 80], [1.5, 2, 72, 100]], np.float64)
  v = attributes.values(notes)
  assert v["density"] == pytest.approx(2.0)  # 4 notes over 2 s
  assert v["register"] == pytest.approx(65.75)
  assert v["velocity"] == pytest.approx(70.0)
  # 2 notes/s is below the first density edge (bin 1); 65.75 lies between 64.0 and 67.0 (bin 5); 70 between
  # 62.5 and 72.5 (bin 4).
  assert attributes.to_bins(v)[:3].tolist() == [1, 5, 4]
  assert attributes.values(notes[:1])["density"] == pytest.approx(1.0)  # one note: over at least a second


def test_mode_tells_major_from_minor():
  c_major = _notes([60, 62, 64, 65, 67, 69, 71, 72, 64, 67, 60] * 2)
  a_minor = _notes([57, 59, 60, 62, 64, 65, 68, 69, 60, 64, 57] * 2)  # harmonic minor: G sharp
  major, minor = (attributes.to_bins(attributes.values(n))[3] for n in (c_major, a_minor))
  assert major == attributes.num_bins("mode") - 1 and minor <= 2


def test_a_token_window_is_read_as_decoded():
  ns = NOTES.decode([])
  for i in range(24):  # 24 notes, one every 1/12 s, over 2 s: 12 notes/s; pitch 70 and 74; velocity 96
    n = ns.notes.add()
    n.pitch, n.velocity, n.start_time, n.end_time = 70 + 4 * (i % 2), 96, i / 12, i / 12 + 1 / 12
  ns.total_time = 2.0
  ids = NOTES.encode_sequence(ns)
  bins = attributes.of_tokens(ids, NOTES)
  # density 12 > 10.6 (bin 6); mean pitch 72 > 67 (bin 6); velocity ~96 > 82 (bin 6).
  assert bins[:3].tolist() == [6, 6, 6]
  assert attributes.of_tokens([], NOTES).tolist() == [0, 0, 0, 0]  # no notes: nothing given


def test_train_examples_carry_the_attributes_of_their_own_augmented_window():
  config = load_config("music_attr_tiny", vocabulary="notes", seq_len=64)
  cfg = music_pipeline.example_config(config)
  ns = NOTES.decode([])
  for i in range(60):
    n = ns.notes.add()
    n.pitch, n.velocity, n.start_time, n.end_time = 50 + (i * 7) % 30, 40 + i, 0.2 * i, 0.2 * i + 0.3
  record = {"tokens": NOTES.encode_sequence(ns), "valence": 0.8, "arousal": 0.3}
  transform = music_pipeline.TrainTransform(cfg, NOTES)
  for seed in range(4):
    ex = transform(record, np.random.default_rng(seed))
    window = np.r_[ex["inputs"], ex["targets"][-1:]][cfg.prefix_len:]  # the whole framed sequence
    window = window[NOTES.is_event(window)]
    np.testing.assert_array_equal(ex["attrs"], attributes.of_tokens(window, NOTES, cfg.attributes))
  assert "attrs" not in music_pipeline.TrainTransform(music_pipeline.example_config(load_config("music_tiny")))(
      {"tokens": record["tokens"][:40]}, np.random.default_rng(0))


def test_table_draws_rows_of_the_requested_class_by_seed_and_index(tmp_path):
  table = attributes.AttributeTable.from_pieces(NAMES, [("anger", [1, 2, 3, 4]), ("anger", [2, 2, 2, 2]),
                                                        ("sadness", [6, 1, 1, 1])])
  a = table.sample("anger", seed=3, num=20)
  assert {tuple(r) for r in a} == {(1, 2, 3, 4), (2, 2, 2, 2)}
  np.testing.assert_array_equal(a[:5], table.sample("anger", seed=3, num=5))  # piece i is fixed by (seed, i)
  assert not np.array_equal(a, table.sample("anger", seed=4, num=20))
  assert (table.sample("sadness", 0, 3) == [6, 1, 1, 1]).all()
  assert (table.sample("happiness", 0, 2) == 0).all()  # a class with no pieces: nothing given
  table.save(str(tmp_path))
  again = attributes.AttributeTable.load(str(tmp_path))
  assert again.names == NAMES and np.array_equal(again.sample("anger", 3, 20), a)
  assert attributes.AttributeTable.load(str(tmp_path / "none")) is None


def _model(**kw):
  bins = tuple(attributes.num_bins(n) for n in NAMES)
  m = MusicTransformer(vocab_size=40, d_model=32, num_layers=2, num_heads=4, d_ff=64, max_relative_distance=6,
                       dropout=0.0, attribute_bins=bins, rngs=nnx.Rngs(0), **kw)
  m.eval()
  return m


def _randomize_attributes(m):
  m.attr_embed.embedding[...] = jax.random.normal(jax.random.key(5), m.attr_embed.embedding[...].shape)


def test_attributes_start_at_zero_then_condition_every_position_and_decode_as_the_full_forward():
  m = _model()
  tokens = jax.random.randint(jax.random.key(1), (2, 9), 3, 40)
  va = jnp.array([[0.5, 0.5], [-0.5, 0.2]])
  attrs = jnp.array([[1, 2, 3, 4], [6, 5, 0, 1]])
  np.testing.assert_allclose(m(tokens, va, attrs=attrs), m(tokens, va), atol=1e-6)  # fresh: no effect yet
  _randomize_attributes(m)
  full = m(tokens, va, attrs=attrs)
  assert np.abs(full - m(tokens, va)).max() > 1e-2
  np.testing.assert_allclose(m(tokens, va), m(tokens, va, attrs=jnp.zeros_like(attrs)), atol=1e-6)  # None: 0s
  assert np.abs(full[1] - m(tokens, va, attrs=attrs.at[1, 2].set(3))[1]).max() > 1e-2  # each attribute counts
  cache = m.init_cache(2, 10)
  for t in range(9):
    logits, cache = m.decode_step(tokens[:, t], va, t, cache, attrs=attrs)
    np.testing.assert_allclose(logits, full[:, t], atol=1e-5, err_msg=f"step {t}")


def test_a_dropped_condition_drops_the_attributes_too():
  """With every condition dropped (classifier-free guidance's unconditioned branch) the loss cannot see the
  window's attributes; with none dropped it can."""
  config = load_config("music_attr_tiny", cond_dropout=1.0, attr_dropout=0.0)
  task, model = music.MusicTask(config), MusicTransformer.from_config(config, nnx.Rngs(0))
  _randomize_attributes(model)
  inputs = np.asarray(jax.random.randint(jax.random.key(0), (2, 32), 4, 40), np.int32)
  batch = {"inputs": inputs, "targets": np.roll(inputs, -1, axis=1), "weights": np.ones((2, 32), np.float32),
           "va": np.full((2, 2), 0.5, np.float32), "cond": np.ones(2, bool)}
  a = batch | {"attrs": np.array([[1, 1, 1, 1]] * 2, np.int32)}
  b = batch | {"attrs": np.array([[6, 6, 6, 5]] * 2, np.int32)}
  rng = jax.random.key(1)
  assert float(task.loss(model, a, rng)[0]) == pytest.approx(float(task.loss(model, b, rng)[0]), abs=1e-6)
  kept = music.MusicTask(load_config("music_attr_tiny", cond_dropout=0.0, attr_dropout=0.0))
  assert abs(float(kept.loss(model, a, rng)[0]) - float(kept.loss(model, b, rng)[0])) > 1e-3


def test_warm_start_adds_attributes_to_a_model_trained_without(music_checkpoint):
  config = load_config("music_attr_tiny", init_from=music_checkpoint)
  task, tx, mesh = music.MusicTask(config), loop.make_optimizer(config), parallel.make_mesh()
  _, state = loop.init_state(task, config, tx, mesh)
  state = loop.warm_start(state, task, config, tx, mesh)
  source, _ = checkpointing.load_model(music_checkpoint, MusicTransformer.from_config)
  warm = nnx.to_pure_dict(jax.device_get(state.params))
  want = nnx.to_pure_dict(nnx.state(source, nnx.Param))
  np.testing.assert_array_equal(warm["head"]["kernel"], want["head"]["kernel"])
  np.testing.assert_array_equal(warm["blocks"][1]["attn"]["rel_emb"], want["blocks"][1]["attn"]["rel_emb"])
  assert not np.asarray(warm["attr_embed"]["embedding"]).any()
  wider = load_config("music_attr_tiny", init_from=music_checkpoint, **{"model.d_model": 64})
  with pytest.raises(UserError, match="same architecture"):
    loop.warm_start(loop.init_state(task, wider, tx, mesh)[1], task, wider, tx, mesh)


def test_sharded_generation_with_attributes_equals_one_by_one():
  m = _model()
  _randomize_attributes(m)
  graphdef, state = nnx.split(m)
  batch, opts = 8, dict(max_len=14, eos_id=2, pad_id=0, top_k=8, guidance_scale=2.0)
  prompt = jnp.tile(jnp.array([[1, 5]]), (batch, 1))
  va = jax.random.uniform(jax.random.key(3), (batch, 2), minval=-1, maxval=1)
  attrs = jax.random.randint(jax.random.key(4), (batch, 4), 0, 5)
  keys = sampling.sample_keys(0, batch)
  contrast = (jnp.tile(jnp.array([[1, 3]]), (batch, 1)), va, jnp.zeros(batch, bool))
  bias = jnp.zeros((batch, 40))
  fn = sampling.make_sharded_generate_fn(graphdef, parallel.make_mesh(), attributes=True, **opts)
  tokens, _, _ = fn(state, prompt, va, keys, contrast, bias, (attrs, jnp.zeros_like(attrs)))
  one = sampling.make_generate_fn(graphdef, **opts)
  for i in range(batch):
    t, _, _ = one(state, prompt[i:i + 1], va[i:i + 1], keys[i:i + 1], (contrast[0][i:i + 1], va[i:i + 1],
                                                                         contrast[2][i:i + 1]),
                  attrs=(attrs[i:i + 1], jnp.zeros_like(attrs[i:i + 1])))
    np.testing.assert_array_equal(t[0], tokens[i])
  plain, _, _ = fn(state, prompt, va, keys, contrast, bias, (jnp.zeros_like(attrs), jnp.zeros_like(attrs)))
  assert not np.array_equal(plain, tokens)  # the attributes steer the samples


def _attribute_checkpoint(tmp_path, with_table=True):
  config = load_config("music_attr_tiny")
  model = MusicTransformer.from_config(config, nnx.Rngs(0))
  _randomize_attributes(model)
  workdir = str(tmp_path)
  checkpointing.save_config(workdir, config)
  best = checkpointing.best_manager(workdir, "neg_nll")
  checkpointing.save_best(best, 1, nnx.state(model), {"neg_nll": -5.0})
  best.close()
  if with_table:
    attributes.AttributeTable.from_pieces(NAMES, [("sadness", [1, 6, 1, 2]), ("sadness", [2, 5, 1, 1])]).save(workdir)
  return workdir


def test_the_generator_asks_for_the_attributes_of_the_requested_class(tmp_path):
  from facemusic_jax.music import generation
  gen = generation.MusicGenerator(_attribute_checkpoint(tmp_path / "a"))
  sad = generation.condition_from_emotion("sadness")
  with_attrs = gen.generate(sad, num=4, seed=2).pieces
  again = gen.generate(sad, num=4, seed=2).pieces
  without = gen.generate(sad, num=4, seed=2, attributes="none").pieces
  assert all(np.array_equal(x, y) for x, y in zip(with_attrs, again))
  assert not all(np.array_equal(x, y) for x, y in zip(with_attrs, without))
  with pytest.raises(UserError, match="attributes"):
    gen.generate(sad, num=1, attributes="loud")
  with pytest.raises(UserError, match="attributes.json"):
    generation.MusicGenerator(_attribute_checkpoint(tmp_path / "b", with_table=False))


def test_lr_multipliers_scale_the_updates_of_the_named_parameters_only():
  m = _model()
  _, params, _ = nnx.split(m, nnx.Param, ...)
  ones = jax.tree.map(jnp.ones_like, params)
  scaled = nnx.to_pure_dict(loop.scale_updates(ones, {"attr_embed": 20.0, "cond_proj": 3.0}))
  assert (np.asarray(scaled["attr_embed"]["embedding"]) == 20.0).all()
  assert (np.asarray(scaled["cond_proj"]["kernel"]) == 3.0).all()
  assert (np.asarray(scaled["blocks"][0]["attn"]["qkv"]["kernel"]) == 1.0).all()
  assert (np.asarray(scaled["embed"]["embedding"]) == 1.0).all()  # "embed" is not "attr_embed"
