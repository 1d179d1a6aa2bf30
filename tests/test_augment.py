"""Tests for facemusic_jax.data.augment against naive numpy references."""

import math

import numpy as np
import pytest

from facemusic_jax.data import augment as aug

OFF = aug.AugmentConfig(flip=False, max_rotation_deg=0.0, max_shift=0.0, max_zoom=0.0, erase_prob=0.0)


def _face(seed=0, size=48):
  return np.random.default_rng(seed).integers(0, 256, (size, size, 1), dtype=np.uint8)


def _run(image, seed, cfg):
  return aug.augment(image, np.random.default_rng(seed), cfg)


def test_same_seed_same_output_different_seeds_differ():
  image = _face()
  cfg = aug.AugmentConfig(max_zoom=0.1)
  np.testing.assert_array_equal(_run(image, 7, cfg), _run(image, 7, cfg))
  outputs = [_run(image, s, cfg) for s in range(20)]
  distinct = {o.tobytes() for o in outputs}
  assert len(distinct) == 20


@pytest.mark.parametrize("cfg", [aug.AugmentConfig(), aug.AugmentConfig(max_zoom=0.2), OFF])
def test_dtype_and_shape_preserved(cfg):
  image = _face()
  for seed in range(10):
    out = _run(image, seed, cfg)
    assert out.dtype == np.uint8 and out.shape == (48, 48, 1)


def test_identity_config_returns_input_unchanged():
  image = _face()
  for seed in range(5):
    out = _run(image, seed, OFF)
    np.testing.assert_array_equal(out, image)
    assert out is not image


def test_forced_flip_is_mirror():
  image = _face()
  out = aug.apply(image, np.random.default_rng(0), aug.AugmentParams(flip=True))
  np.testing.assert_array_equal(out, image[:, ::-1])


def test_flip_only_gives_input_or_mirror_and_both_occur():
  image = _face()
  cfg = aug.AugmentConfig(flip=True, max_rotation_deg=0.0, max_shift=0.0, erase_prob=0.0)
  flipped = 0
  for seed in range(200):
    out = _run(image, seed, cfg)
    if np.array_equal(out, image[:, ::-1]):
      flipped += 1
    else:
      np.testing.assert_array_equal(out, image)
  assert 70 < flipped < 130  # p = 0.5 over 200 draws


def _naive_shift(image, dx, dy):
  """Moves every pixel by (dx, dy); vacated pixels are 0 (the warp's constant border)."""
  h, w = image.shape[:2]
  out = np.zeros_like(image)
  for y in range(h):
    for x in range(w):
      if 0 <= y + dy < h and 0 <= x + dx < w:
        out[y + dy, x + dx] = image[y, x]
  return out


@pytest.mark.parametrize("dx,dy", [(3, 0), (0, -5), (-7, 9), (9, 9)])
def test_pure_shift_moves_pixels(dx, dy):
  dot = np.zeros((48, 48, 1), np.uint8)
  dot[20, 30] = 255
  out = aug.apply(dot, np.random.default_rng(0), aug.AugmentParams(shift=(dx, dy)))
  assert np.argwhere(out[..., 0] == 255).tolist() == [[20 + dy, 30 + dx]]
  assert out.sum() == 255
  image = _face()
  out = aug.apply(image, np.random.default_rng(0), aug.AugmentParams(shift=(dx, dy)))
  np.testing.assert_array_equal(out, _naive_shift(image, dx, dy))


def test_random_shift_stays_within_bound_and_whole_pixels():
  dot = np.zeros((48, 48, 1), np.uint8)
  dot[24, 24] = 255
  cfg = aug.AugmentConfig(flip=False, max_rotation_deg=0.0, max_shift=0.2, erase_prob=0.0)
  shifts = set()
  for seed in range(100):
    out = _run(dot, seed, cfg)
    (y, x), = np.argwhere(out[..., 0] == 255)  # one unblurred pixel: the shift is a whole-pixel copy
    shifts.add((x - 24, y - 24))
    assert abs(x - 24) <= round(0.2 * 48) and abs(y - 24) <= round(0.2 * 48)
  assert len(shifts) > 50


def test_rotation_90_is_rot90():
  image = _face()
  out = aug.apply(image, np.random.default_rng(0), aug.AugmentParams(angle_deg=90.0))
  # Positive angles turn counter-clockwise as displayed, like np.rot90.
  np.testing.assert_array_equal(out, np.rot90(image))


def test_rotation_moves_blob_to_hand_computed_position():
  angle = 10.0
  image = np.zeros((48, 48, 1), np.uint8)
  image[9:12, 31:34] = 255  # 3x3 blob centred at (x, y) = (32, 10)
  out = aug.apply(image, np.random.default_rng(0), aug.AugmentParams(angle_deg=angle))[..., 0]
  # Counter-clockwise on screen (y down): x' = c + cos*(x-c) + sin*(y-c), y' = c - sin*(x-c) + cos*(y-c).
  c, t = 23.5, math.radians(angle)
  ex = c + math.cos(t) * (32 - c) + math.sin(t) * (10 - c)
  ey = c - math.sin(t) * (32 - c) + math.cos(t) * (10 - c)
  ys, xs = np.indices(out.shape)
  weights = out.astype(np.float64)
  cx, cy = (weights * xs).sum() / weights.sum(), (weights * ys).sum() / weights.sum()
  assert abs(cx - ex) < 0.1 and abs(cy - ey) < 0.1
  assert abs(weights.sum() - 9 * 255) < 0.02 * 9 * 255  # rotation keeps the blob's mass


def test_zoom_scales_about_centre():
  image = np.zeros((48, 48, 1), np.uint8)
  image[23:25, 35:37] = 255  # 2x2 blob centred at (35.5, 23.5): 12 px right of centre
  out = aug.apply(image, np.random.default_rng(0), aug.AugmentParams(scale=1.5))[..., 0]
  xs = np.indices(out.shape)[1]
  cx = (out * xs).sum() / out.sum()
  assert abs(cx - (23.5 + 1.5 * 12)) < 0.1


def test_erasing_changes_only_a_rectangle_in_area_range():
  lo, hi = 0.05, 0.15
  cfg = aug.AugmentConfig(flip=False, max_rotation_deg=0.0, max_shift=0.0, erase_prob=1.0, erase_area=(lo, hi))
  image = np.full((48, 48, 1), 128, np.uint8)
  areas = []
  for seed in range(50):
    params = aug.sample_params(np.random.default_rng(seed), cfg, image.shape)
    top, left, eh, ew = params.erase
    assert 0 <= top and top + eh <= 48 and 0 <= left and left + ew <= 48
    assert lo <= eh * ew / 48**2 <= hi
    out = _run(image, seed, cfg)
    changed = out[..., 0] != 128
    outside = np.ones_like(changed)
    outside[top:top + eh, left:left + ew] = False
    assert not changed[outside].any()
    # Noise covers the rectangle (up to the odd pixel that happens to draw 128).
    assert changed.sum() >= 0.95 * eh * ew
    areas.append(eh * ew / 48**2)
  assert max(areas) - min(areas) > 0.5 * (hi - lo)  # the area really varies over the range


def test_erase_probability():
  image = np.full((48, 48, 1), 128, np.uint8)
  cfg = aug.AugmentConfig(flip=False, max_rotation_deg=0.0, max_shift=0.0, erase_prob=0.5)
  erased = sum(bool((_run(image, s, cfg) != 128).any()) for s in range(200))
  assert 70 < erased < 130


def test_default_config_matches_paper_recipe():
  cfg = aug.AugmentConfig()
  assert cfg.flip and cfg.max_rotation_deg == 10.0 and cfg.max_shift == 0.2 and cfg.erase_prob == 0.5


def test_from_config_mapping_and_configdict():
  cfg = aug.from_config({"flip": False, "max_zoom": 0.1, "erase_area": [0.1, 0.3], "unknown": 1})
  assert cfg == aug.AugmentConfig(flip=False, max_zoom=0.1, erase_area=(0.1, 0.3))
  assert aug.from_config({}) == aug.AugmentConfig()
  ml_collections = pytest.importorskip("ml_collections")
  cd = ml_collections.ConfigDict({"max_rotation_deg": 5.0, "batch_size": 64})
  assert aug.from_config(cd) == aug.AugmentConfig(max_rotation_deg=5.0)
