"""Grain pipeline helpers, the VGG16 model and test-time views, against hand-computed expectations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import load_config
from facemusic_jax.data import pipeline
from facemusic_jax.face.classify import tta_views
from facemusic_jax.models.vgg import VGG

# --------------------------------------------------------------------------------------------- pipeline


def test_balanced_table_natural_when_power_zero():
  labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
  table = pipeline.balanced_index_table(labels, 0.0)
  assert sorted(table.tolist()) == list(range(10))


def test_balanced_table_full_oversampling():
  labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
  table = pipeline.balanced_index_table(labels, 1.0)
  counts = np.bincount(labels[table])
  assert counts.tolist() == [6, 6, 6]
  # Every original example is kept, rare ones repeated evenly: class 1's three examples twice each.
  assert set(table.tolist()) == set(range(10))
  assert np.bincount(table, minlength=10)[6:9].tolist() == [2, 2, 2]
  assert np.bincount(table, minlength=10)[9] == 6


def test_balanced_table_half_power():
  labels = np.array([0] * 100 + [1] * 4)
  table = pipeline.balanced_index_table(labels, 0.5)
  # class 1: 100 * (4 / 100) ** 0.5 = 20 copies; class 0 untouched.
  assert np.bincount(labels[table]).tolist() == [100, 20]


def _double(record, rng):
  return {"x": np.int64(record["x"]), "noise": rng.integers(0, 1 << 30)}


def _source(n):
  return [{"x": i} for i in range(n)]


def test_train_iter_is_deterministic_and_resumes_from_state():
  ds = pipeline.train_iter_dataset(_source(10), seed=3, batch_size=4, transform=_double)
  it = iter(ds)
  first = [next(it) for _ in range(3)]
  state = it.get_state()
  rest = [next(it) for _ in range(4)]
  again = iter(pipeline.train_iter_dataset(_source(10), seed=3, batch_size=4, transform=_double))
  for a, b in zip(first, [next(again) for _ in range(3)]):
    np.testing.assert_array_equal(a["x"], b["x"])
    np.testing.assert_array_equal(a["noise"], b["noise"])
  resumed = iter(pipeline.train_iter_dataset(_source(10), seed=3, batch_size=4, transform=_double))
  resumed.set_state(state)
  for a, b in zip(rest, [next(resumed) for _ in range(4)]):
    np.testing.assert_array_equal(a["x"], b["x"])
    np.testing.assert_array_equal(a["noise"], b["noise"])


def test_train_iter_epochs_are_permutations_reshuffled():
  it = iter(pipeline.train_iter_dataset(_source(8), seed=0, batch_size=8, transform=_double))
  e1, e2 = next(it)["x"], next(it)["x"]
  assert sorted(e1.tolist()) == list(range(8)) and sorted(e2.tolist()) == list(range(8))
  assert e1.tolist() != e2.tolist()


def test_train_iter_with_index_table_follows_the_table():
  table = np.array([5, 5, 5, 1])
  it = iter(pipeline.train_iter_dataset(_source(10), seed=0, batch_size=4, transform=_double, index_table=table))
  assert sorted(next(it)["x"].tolist()) == [1, 5, 5, 5]


def test_eval_batches_pad_and_mask():
  arrays = {"image": np.arange(10)[:, None], "label": np.arange(10)}
  batches = pipeline.eval_batches(arrays, 4)
  assert [b["mask"].tolist() for b in batches] == [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]]
  real = np.concatenate([b["label"][b["mask"] == 1] for b in batches])
  assert real.tolist() == list(range(10))


# --------------------------------------------------------------------------------------------- model


def test_vgg16_layout_and_parameter_count():
  model = nnx.eval_shape(lambda: VGG(width=1.0, head_dims=(4096, 4096), rngs=nnx.Rngs(0)))
  assert len(model.convs) == 13 and len(model.norms) == 13
  chans = [1, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
  conv_params = sum(9 * a * b for a, b in zip(chans[:-1], chans[1:]))  # no conv bias (BatchNorm follows)
  head = 512 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 7 + 7
  bn = 2 * sum(chans[1:])
  n = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert n == conv_params + head + bn


def test_vgg_width_multiplier_and_output():
  model = VGG(width=0.25, head_dims=(32,), rngs=nnx.Rngs(0))
  assert model.convs[0].out_features == 16 and model.convs[-1].out_features == 128
  x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (3, 48, 48, 1)), jnp.uint8)
  model.eval()
  assert model(x).shape == (3, 7)


def test_batchnorm_statistics_move_in_train_mode_only():
  model = VGG(width=0.125, head_dims=(8,), rngs=nnx.Rngs(0))
  x = jnp.full((2, 48, 48, 1), 200, jnp.uint8)
  before = np.asarray(model.norms[0].mean[...])
  model.eval()
  model(x)
  np.testing.assert_array_equal(model.norms[0].mean[...], before)
  model.train()
  model(x, rngs=nnx.Rngs(dropout=0))
  assert not np.allclose(model.norms[0].mean[...], before)


# --------------------------------------------------------------------------------------------- TTA


def test_tta_views():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.integers(0, 256, (2, 48, 48, 1)), jnp.float32)
  assert tta_views(x, "none").shape == (1, 2, 48, 48, 1)
  flip = tta_views(x, "flip")
  np.testing.assert_array_equal(flip[1], x[:, :, ::-1])
  ten = tta_views(x, "ten_crop")
  assert ten.shape == (10, 2, 48, 48, 1)
  # The 5th view is the centre crop (43x43 from offset 2) resized back; views 5..9 mirror views 0..4.
  centre = jax.image.resize(x[:, 2:45, 2:45], (2, 48, 48, 1), "linear")
  np.testing.assert_allclose(ten[4], centre, rtol=1e-6)
  np.testing.assert_allclose(ten[9], ten[4][:, :, ::-1], rtol=1e-6)
  with pytest.raises(ValueError):
    tta_views(x, "five_crop")


def test_hosts_read_slices_of_the_one_global_batch(monkeypatch):
  """Host p of P gets rows [p*b, (p+1)*b) of every global batch a single process would read, with the same
  per-record randomness, so the global batch does not depend on the number of hosts."""
  source = [{"x": np.int64(i)} for i in range(40)]
  transform = lambda record, rng: {"x": record["x"], "noise": rng.integers(1 << 30)}

  def batches(index, count, batch_size, n=5):
    monkeypatch.setattr(jax, "process_index", lambda: index)
    monkeypatch.setattr(jax, "process_count", lambda: count)
    it = iter(pipeline.train_iter_dataset(source, seed=3, batch_size=batch_size, transform=transform))
    return [next(it) for _ in range(n)]

  single = batches(0, 1, 8)
  hosts = [batches(p, 4, 2) for p in range(4)]
  for k in range(5):
    for key in ("x", "noise"):
      np.testing.assert_array_equal(np.concatenate([h[k][key] for h in hosts]), single[k][key])


def test_fer_mixup_blends_each_image_and_target_with_the_previous_one():
  import optax
  from facemusic_jax.training.fer import FerTask
  config = load_config("fer_tiny")
  config.mixup_alpha = 0.4
  task = FerTask(config)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (4, 48, 48, 1)).astype(np.uint8)
  labels = np.array([0, 3, 3, 6], np.int32)
  seen = {}
  weights = rng.normal(size=(48 * 48, 7)).astype(np.float32) / 2000

  def model(x, rngs=None):  # a linear stand-in that records what it was given
    seen["x"] = np.asarray(x)
    return x.reshape(x.shape[0], -1) @ weights

  loss, _ = task.loss(model, {"image": images, "label": labels}, jax.random.key(3))
  x = seen["x"].astype(np.float64)
  a, b = images.astype(np.float64), np.roll(images, 1, axis=0).astype(np.float64)
  # Every mixed image is lam * its own + (1 - lam) * the previous one's, with one lam for the whole batch.
  lam = ((x - b) * (a - b)).sum() / ((a - b) ** 2).sum()
  assert 0.0 < lam < 1.0 and not np.isclose(lam, 0.5)
  np.testing.assert_allclose(x, lam * a + (1 - lam) * b, atol=1e-3)
  # Naive reference: cross-entropy against the same blend of one-hot (smoothed) targets.
  onehot = optax.smooth_labels(np.eye(7)[labels], config.label_smoothing)
  targets = lam * onehot + (1 - lam) * np.roll(onehot, 1, axis=0)
  logits = x.reshape(4, -1) @ weights.astype(np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  np.testing.assert_allclose(float(loss), -(targets * logp).sum(-1).mean(), rtol=1e-4)
  # Off (the default), the images reach the model as they are.
  config.mixup_alpha = 0.0
  FerTask(config).loss(model, {"image": images, "label": labels}, jax.random.key(3))
  np.testing.assert_array_equal(seen["x"], images)


# --------------------------------------------------------------------------------------------- dropout


def test_dropout_mask_rate_scale_and_independent_draws():
  from facemusic_jax.models.dropout import Dropout, keep_mask
  shape = (256, 4 * 257 - 1)  # an odd last axis: quarters of unequal length, the last one cut short
  keep, scale = keep_mask(jax.random.key(0), shape, 0.1)
  keep = np.asarray(keep)
  assert keep.shape == shape and keep.dtype == bool
  p = 6554 / 65536  # 0.1 rounded to 1/65,536
  n = keep.size
  assert abs((1 - keep.mean()) - p) < 5 * np.sqrt(p * (1 - p) / n)
  assert scale == pytest.approx(1 / (1 - p), rel=1e-12)
  # The four quarters of the last axis come from the same hashes: they must still be independent draws.
  q = 257
  parts = [keep[:, i * q:(i + 1) * q - 1].astype(float).ravel() for i in range(4)]
  for i in range(4):
    for j in range(i + 1, 4):
      assert abs(np.corrcoef(parts[i], parts[j])[0, 1]) < 5 / np.sqrt(parts[0].size)
  # Neighbouring rows and other keys draw afresh.
  assert abs(np.corrcoef(keep[:-1].ravel(), keep[1:].ravel())[0, 1]) < 5 / np.sqrt(n)
  assert (np.asarray(keep_mask(jax.random.key(1), shape, 0.1)[0]) != keep).mean() > 0.1

  layer = Dropout(0.1)
  x = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
  y = np.asarray(layer(x, rngs=nnx.Rngs(dropout=0)))
  kept = y != 0
  np.testing.assert_allclose(y[kept], np.asarray(x)[kept] * scale, rtol=1e-6)  # kept values scaled exactly
  assert abs(np.asarray(layer(jnp.ones(shape), rngs=nnx.Rngs(dropout=2))).mean() - 1) < 0.01  # unbiased
  layer.eval()
  np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(x))
