"""An embedded FER-style dataset the code draws itself: 48x48 gray cartoon faces, one expression per class.

It needs no download, so the demo and the tests can run the real pipeline (image folders -> TFDS builder
-> Grain -> training loop) anywhere. Expressions differ in mouth curvature/openness, brow slant and eye
size, with random pose, size, brightness and noise, so the task is learnable but not trivial.
"""

import os

import cv2
import numpy as np

from facemusic_jax.emotion import FER_LABELS

# Per class: (mouth curvature: + smile / - frown, mouth open height, brow slant: + angry V, eye scale)
_EXPRESSIONS = {
    "angry": (-0.4, 0.0, 1.0, 0.8),
    "disgust": (-0.8, 0.15, 0.4, 0.6),
    "fear": (-0.2, 0.45, -0.7, 1.4),
    "happy": (1.0, 0.1, 0.0, 0.9),
    "sad": (-1.0, 0.0, -1.0, 0.9),
    "surprise": (0.0, 0.9, -0.4, 1.5),
    "neutral": (0.0, 0.0, 0.0, 1.0),
}


def draw_face(label: str, rng: np.random.Generator, size: int = 48) -> np.ndarray:
  """One face of class `label` as uint8 (size, size)."""
  curve, open_h, brow, eye = _EXPRESSIONS[label]
  s = 4  # draw at 4x and downsample for anti-aliased strokes
  n = size * s
  img = np.full((n, n), rng.integers(20, 90), np.uint8)
  cx, cy = n / 2 + rng.normal(0, 2.5 * s), n / 2 + rng.normal(0, 2.5 * s)
  r = n * rng.uniform(0.36, 0.44)
  skin = int(rng.integers(130, 220))
  angle = rng.normal(0, 8)
  cv2.ellipse(img, (int(cx), int(cy)), (int(r * 0.85), int(r)), angle, 0, 360, skin, -1)
  ink = max(0, skin - int(rng.integers(90, 130)))
  t = max(1, int(1.2 * s))
  for side in (-1, 1):
    ex, ey = cx + side * 0.38 * r, cy - 0.22 * r
    er = max(2, int(0.09 * r * eye))
    cv2.circle(img, (int(ex), int(ey)), er, ink, -1)
    # Brows: the inner end drops for anger, rises for sadness/fear.
    inner = (int(ex - side * 0.18 * r), int(ey - 0.22 * r + brow * 0.1 * r))
    outer = (int(ex + side * 0.2 * r), int(ey - 0.22 * r - brow * 0.05 * r))
    cv2.line(img, inner, outer, ink, t)
  mx, my, mw = cx, cy + 0.45 * r, 0.32 * r * rng.uniform(0.85, 1.15)
  if open_h > 0.3:
    cv2.ellipse(img, (int(mx), int(my)), (int(mw * (1 - 0.4 * open_h)), int(0.25 * r * open_h)), 0, 0, 360, ink, -1)
  else:
    xs = np.linspace(-mw, mw, 24)
    ys = my - curve * 0.18 * r * (1 - (xs / mw) ** 2) + curve * 0.09 * r
    pts = np.stack([mx + xs, ys], 1).astype(np.int32)
    cv2.polylines(img, [pts], False, ink, t + int(open_h * 8 * s))
  img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
  img += rng.normal(0, rng.uniform(2, 10), img.shape)
  return np.clip(img, 0, 255).astype(np.uint8)


def write_image_folders(root: str, *, train_per_class: int = 60, test_per_class: int = 15, seed: int = 0) -> str:
  """Writes the Kaggle image-folder layout (train/<class>/Training_<i>.png, test/<class>/PublicTest_<i>.png)
  under `root` and returns it. Idempotent: an existing complete copy is left as it is."""
  rng = np.random.default_rng(seed)
  marker = os.path.join(root, ".complete")
  if os.path.exists(marker):
    return root
  for folder, prefix, per_class in (("train", "Training", train_per_class), ("test", "PublicTest", test_per_class)):
    for label in FER_LABELS:
      d = os.path.join(root, folder, label)
      os.makedirs(d, exist_ok=True)
      for i in range(per_class):
        cv2.imwrite(os.path.join(d, f"{prefix}_{label}{i:05d}.png"), draw_face(label, rng))
  open(marker, "w").close()
  return root
