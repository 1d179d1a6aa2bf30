"""Photo -> the emotion model's input: a 48x48 gray face crop, like the FER2013 images it was trained on.

OpenCV's Haar cascade finds frontal faces; the largest one is cropped square with a small margin and
shrunk with INTER_AREA (area averaging, the anti-aliased choice for downscaling). Every way a user's file
can be wrong ends in a one-line `UserError`, never a traceback.
"""

import dataclasses
import functools
import os
from typing import Union

import cv2
import numpy as np

from facemusic_jax.errors import UserError

CASCADE_FILE = "haarcascade_frontalface_default.xml"
INPUT_SIZE = 48
# Haar detection cost grows with pixel count; faces in a phone photo stay far above the cascade's 24-pixel
# window after shrinking the long side to this.
_DETECT_MAX_SIDE = 1024

PathLike = Union[str, os.PathLike]


@dataclasses.dataclass
class FaceBox:
  """A face rectangle in image pixels: top-left corner (x, y), width w, height h."""
  x: int
  y: int
  w: int
  h: int

  def as_list(self) -> list[int]:
    return [self.x, self.y, self.w, self.h]

  @property
  def area(self) -> int:
    return self.w * self.h


def load_image(path: PathLike) -> np.ndarray:
  """Reads any image OpenCV or Pillow can decode -> uint8 gray (H, W). Raises UserError on bad files."""
  name = os.fspath(path)
  if not os.path.exists(name):
    raise UserError(f"{name}: file not found; check the path")
  if os.path.isdir(name):
    raise UserError(f"{name}: is a directory, not an image; give a photo file (JPEG, PNG, ...)")
  try:
    data = np.fromfile(name, dtype=np.uint8)  # np.fromfile + imdecode also copes with non-ASCII paths
  except OSError as e:
    raise UserError(f"{name}: cannot read the file ({e.strerror or e}); check its permissions") from None
  if data.size == 0:
    raise UserError(f"{name}: the file is empty; give a photo file (JPEG, PNG, ...)")
  gray = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)  # applies the EXIF orientation of phone photos
  if gray is None:
    gray = _load_with_pillow(name)
  if gray is None or gray.size == 0:
    raise UserError(f"{name}: not a readable image; give a photo file (JPEG, PNG, BMP, WebP, ...)")
  return gray


def _load_with_pillow(name: str) -> np.ndarray | None:
  """Fallback for formats OpenCV lacks (e.g. GIF); None when Pillow cannot decode the file either."""
  try:
    from PIL import Image, ImageOps  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  try:
    with Image.open(name) as im:
      return np.asarray(ImageOps.exif_transpose(im).convert("L"))
  except Exception:  # pylint: disable=broad-except  # Pillow raises many types for corrupt files
    return None


def to_gray(image: np.ndarray) -> np.ndarray:
  """RGB, RGBA or gray array (H, W[, C]) -> uint8 gray (H, W). Colour channels are taken as RGB (the
  skimage/Pillow order); alpha is ignored. Float images in [0, 1] are scaled to [0, 255]."""
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[2] == 1:
    image = image[..., 0]
  image = _to_uint8(image)
  if image.ndim == 2:
    return image
  if image.ndim == 3 and image.shape[2] == 3:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
  if image.ndim == 3 and image.shape[2] == 4:
    return cv2.cvtColor(image, cv2.COLOR_RGBA2GRAY)
  raise ValueError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, got shape {image.shape}")


def _to_uint8(image: np.ndarray) -> np.ndarray:
  if image.dtype == np.uint8:
    return np.ascontiguousarray(image)
  if image.dtype == np.bool_:
    return image.astype(np.uint8) * 255
  if np.issubdtype(image.dtype, np.floating):
    scale = 255.0 if image.size and image.max() <= 1.0 else 1.0
    return np.clip(np.rint(image * scale), 0, 255).astype(np.uint8)
  if image.dtype == np.uint16:
    return (image >> 8).astype(np.uint8)
  return np.clip(image, 0, 255).astype(np.uint8)


@functools.cache
def _cascade() -> cv2.CascadeClassifier:
  """Loaded once per process: parsing the XML takes tens of milliseconds."""
  cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, CASCADE_FILE))
  if cascade.empty():
    raise UserError(f"OpenCV's {CASCADE_FILE} is missing; install opencv-python-headless<5 "
                    "(version 5 ships no cascades) or use --no-detect")
  return cascade


def detect_faces(gray: np.ndarray) -> list[FaceBox]:
  """Frontal faces in a uint8 gray image, largest first."""
  gray = to_gray(gray)
  factor = min(1.0, _DETECT_MAX_SIDE / max(gray.shape))
  small = gray
  if factor < 1.0:
    small = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
  # Histogram equalisation evens out exposure, which the cascade's Haar features are sensitive to.
  # minNeighbors=5 and a face at least 1/20 of the shorter side keep false positives on texture rare.
  min_side = max(24, min(small.shape) // 20)
  found = _cascade().detectMultiScale(cv2.equalizeHist(small), scaleFactor=1.1, minNeighbors=5,
                                      minSize=(min_side, min_side))
  boxes = [FaceBox(*(int(round(v / factor)) for v in rect)) for rect in found]
  # Largest first; position breaks ties so the order is deterministic.
  return sorted(boxes, key=lambda b: (-b.area, b.y, b.x))


def crop_face(gray: np.ndarray, box: FaceBox, *, margin: float = 0.1,
              size: int = INPUT_SIZE) -> np.ndarray:
  """Square crop centred on `box`, its side the box's longer side plus `margin` of it on each side,
  resized to (size, size) -> uint8 (size, size, 1). Parts of the square outside the image repeat the
  edge pixels."""
  gray = to_gray(gray)
  side = max(1, int(round(max(box.w, box.h) * (1 + 2 * margin))))
  left = int(round(box.x + box.w / 2 - side / 2))
  top = int(round(box.y + box.h / 2 - side / 2))
  return _square_to_input(gray, top, left, side, size)


def whole_image(gray: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
  """The centred square of the whole image resized to (size, size, 1), for --no-detect."""
  gray = to_gray(gray)
  h, w = gray.shape
  side = min(h, w)
  return _square_to_input(gray, (h - side) // 2, (w - side) // 2, side, size)


def _square_to_input(gray, top, left, side, size):
  h, w = gray.shape
  pad = ((max(0, -top), max(0, top + side - h)), (max(0, -left), max(0, left + side - w)))
  if any(p for pair in pad for p in pair):
    gray = np.pad(gray, pad, mode="edge")
    top, left = top + pad[0][0], left + pad[1][0]
  square = gray[top:top + side, left:left + side]
  return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)[..., None]


def prepare_face(image_or_path: Union[np.ndarray, PathLike], *, detect: bool = True,
                 name: str | None = None) -> tuple[np.ndarray, FaceBox | None, int]:
  """A photo (path or array) -> (48x48x1 uint8 model input, the face box used, number of faces found).

  With detect=False the whole image is used: the box is None and the count 0. `name` is what errors call an
  array (e.g. the file it was loaded from).
  """
  if isinstance(image_or_path, (str, os.PathLike)):
    name = os.fspath(image_or_path)
    gray = load_image(name)
  else:
    name = name or "the image"
    gray = to_gray(image_or_path)
  if not detect:
    return whole_image(gray), None, 0
  boxes = detect_faces(gray)
  if not boxes:
    raise UserError(f"no face found in {name}; use --no-detect to classify the whole image")
  return crop_face(gray, boxes[0]), boxes[0], len(boxes)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm")


def list_images(paths) -> list[str]:
  """Files as given, and the image files (by suffix, sorted) inside any folder among `paths`. A folder with
  no images is a UserError; files are returned even when they are not images, so that reading them reports
  exactly what is wrong."""
  out = []
  for path in map(os.fspath, paths):
    if os.path.isdir(path):
      found = sorted(os.path.join(path, n) for n in os.listdir(path)
                     if n.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(os.path.join(path, n)))
      if not found:
        raise UserError(f"{path}: no images in this folder (looked for {', '.join(IMAGE_SUFFIXES)})")
      out += found
    else:
      out.append(path)
  return out


def display_crop(image: np.ndarray, box: FaceBox | None, size: int = 192) -> np.ndarray:
  """A larger gray crop of the same face for pictures (the model sees the 48x48 one)."""
  gray = to_gray(image)
  return whole_image(gray, size) if box is None else crop_face(gray, box, size=size)
