"""FER training augmentation: flip, rotation, shift, zoom and random erasing on 48x48x1 uint8 faces.

Pure numpy/OpenCV, so it runs inside a Grain `random_map` worker. Every random draw comes from the
per-record `np.random.Generator` Grain hands in, so the same seed gives the same image. The geometric part
is a single `cv2.warpAffine` (one resampling, not one per transform); random erasing (Zhong et al., 2020)
follows. Sampling and applying are separate functions so tests can force exact parameters.
"""

import dataclasses
import math
from typing import Any, Mapping

import cv2
import numpy as np

# Zhong et al.'s aspect-ratio range for the erased rectangle; sampled log-uniformly so r and 1/r are as
# likely.
_ERASE_ASPECT = (0.3, 3.3)
_ERASE_TRIES = 10


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  flip: bool = True  # random horizontal flip, p=0.5
  max_rotation_deg: float = 10.0
  max_shift: float = 0.2  # random shift as a fraction of the side (the paper's "random crop/shift +-20%")
  max_zoom: float = 0.0  # random scale 1 +- max_zoom
  erase_prob: float = 0.5  # random erasing: one rectangle filled with uniform noise
  erase_area: tuple[float, float] = (0.02, 0.2)  # erased area as a fraction of the image


@dataclasses.dataclass(frozen=True)
class AugmentParams:
  """One draw of the random transform. `erase` is (top, left, height, width) or None."""
  flip: bool = False
  angle_deg: float = 0.0  # counter-clockwise, as displayed
  shift: tuple[int, int] = (0, 0)  # (dx, dy) in whole pixels
  scale: float = 1.0
  erase: tuple[int, int, int, int] | None = None


def from_config(cfg: Any) -> AugmentConfig:
  """Builds an AugmentConfig from a mapping or ml_collections ConfigDict; unknown keys are ignored."""
  if cfg is None:
    return AugmentConfig()
  if hasattr(cfg, "to_dict"):  # ml_collections.ConfigDict / FrozenConfigDict
    cfg = cfg.to_dict()
  if not isinstance(cfg, Mapping):
    raise TypeError(f"augment config must be a mapping, got {type(cfg).__name__}")
  names = {f.name for f in dataclasses.fields(AugmentConfig)}
  kwargs = {k: v for k, v in cfg.items() if k in names}
  if "erase_area" in kwargs:
    lo, hi = kwargs["erase_area"]
    kwargs["erase_area"] = (float(lo), float(hi))
  return AugmentConfig(**kwargs)


def sample_params(rng: np.random.Generator, cfg: AugmentConfig, shape: tuple[int, ...]) -> AugmentParams:
  """Draws one transform for an image of `shape` (H, W[, C])."""
  h, w = shape[:2]
  flip = bool(cfg.flip and rng.random() < 0.5)
  angle = 0.0
  if cfg.max_rotation_deg > 0:
    angle = float(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg))
  shift = (0, 0)
  if cfg.max_shift > 0:
    # Whole pixels, like a padded random crop: a pure shift then copies pixels without interpolation blur.
    dx, dy = rng.uniform(-cfg.max_shift, cfg.max_shift, size=2) * (w, h)
    shift = (int(round(dx)), int(round(dy)))
  scale = float(rng.uniform(1 - cfg.max_zoom, 1 + cfg.max_zoom)) if cfg.max_zoom > 0 else 1.0
  erase = None
  if cfg.erase_prob > 0 and rng.random() < cfg.erase_prob:
    erase = _sample_erase_box(rng, h, w, cfg.erase_area)
  return AugmentParams(flip=flip, angle_deg=angle, shift=shift, scale=scale, erase=erase)


def _sample_erase_box(rng, h, w, area_range):
  """A rectangle whose rounded area fraction lies in `area_range` and that fits the image; None if the
  draws keep missing (as in Zhong et al., the image is then left unerased)."""
  lo, hi = area_range
  log_aspect = (math.log(_ERASE_ASPECT[0]), math.log(_ERASE_ASPECT[1]))
  for _ in range(_ERASE_TRIES):
    area = rng.uniform(lo, hi) * h * w
    aspect = math.exp(rng.uniform(*log_aspect))
    eh = int(round(math.sqrt(area * aspect)))
    ew = int(round(math.sqrt(area / aspect)))
    # Rounding can push the area just outside the range; redraw rather than bend the advertised bounds.
    if 0 < eh <= h and 0 < ew <= w and lo <= eh * ew / (h * w) <= hi:
      top = int(rng.integers(0, h - eh + 1))
      left = int(rng.integers(0, w - ew + 1))
      return (top, left, eh, ew)
  return None


def affine_matrix(params: AugmentParams, h: int, w: int) -> np.ndarray:
  """The 2x3 forward map (source -> output pixel coordinates): flip, then rotate/zoom about the image
  centre, then shift. Pixel centres are integers, so the centre is ((w-1)/2, (h-1)/2) and a flip or a
  90-degree turn maps pixels exactly onto pixels."""
  center = ((w - 1) / 2.0, (h - 1) / 2.0)
  flip = np.eye(3)
  if params.flip:
    flip[0] = (-1.0, 0.0, w - 1.0)
  rot = np.eye(3)
  rot[:2] = cv2.getRotationMatrix2D(center, params.angle_deg, params.scale)
  shift = np.eye(3)
  shift[:2, 2] = params.shift
  return (shift @ rot @ flip)[:2]


def _is_identity(params: AugmentParams) -> bool:
  return not params.flip and params.angle_deg == 0 and params.shift == (0, 0) and params.scale == 1


def apply(image: np.ndarray, rng: np.random.Generator, params: AugmentParams) -> np.ndarray:
  """Applies `params` to an (H, W) or (H, W, 1) uint8 image; `rng` fills the erased rectangle."""
  h, w = image.shape[:2]
  if _is_identity(params):
    out = image.reshape(h, w).copy()  # nothing to warp: skip the resampling (and keep the input exact)
  else:
    # BORDER_CONSTANT (black) rather than BORDER_REFLECT_101: at +-20% shifts reflection would mirror
    # a second eye or half a mouth into the frame, a face-like artefact; a plain dark band carries no
    # facial structure, and zero fill is what the reference recipe (torchvision RandomAffine) uses.
    m = affine_matrix(params, h, w)
    out = cv2.warpAffine(image.reshape(h, w), m, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
  if params.erase is not None:
    top, left, eh, ew = params.erase
    out[top:top + eh, left:left + ew] = rng.integers(0, 256, size=(eh, ew), dtype=np.uint8)
  return out.reshape(image.shape)


def augment(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
  """(H, W, 1) uint8 -> augmented (H, W, 1) uint8; deterministic given the generator's state."""
  if image.dtype != np.uint8:
    raise TypeError(f"augment expects a uint8 image, got {image.dtype}")
  return apply(image, rng, sample_params(rng, cfg, image.shape))
