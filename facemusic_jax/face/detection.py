"""Photo -> the emotion model's input: 48x48 gray face crops, like the FER2013 images it was trained on.

OpenCV's Haar cascade finds frontal faces, in the photo as it is and turned by +-15, 30 and 45 degrees (the
cascade only sees faces within about 15 degrees of upright). Each face is levelled by its eyes
(OpenCV's eye cascade inside the face; FER2013's faces are roughly level), cropped square with a small
margin and shrunk with INTER_AREA (area averaging, the anti-aliased choice for downscaling). A face that is
small, blurred or strongly tilted says so in its `flags`: its result is less reliable, not hidden. Every way
a user's file can be wrong ends in a one-line `UserError`, never a traceback.
"""

import dataclasses
import functools
import io
import os
from typing import Union

import cv2
import numpy as np

from facemusic_jax.core.errors import UserError

CASCADE_FILE = "haarcascade_frontalface_default.xml"
EYE_CASCADE_FILE = "haarcascade_eye.xml"
INPUT_SIZE = 48
# The photo is also searched turned by these (the cascade sees faces within about 15 degrees of upright).
SEARCH_ANGLES = (15, -15, 30, -30, 45, -45)
# Faces tilted less than this are cropped as found: FER2013's own faces vary this much.
ALIGN_MIN_DEGREES = 5.0
# Quality flags. A face narrower than the model's input is upsampled. "Blurred": the variance of the
# Laplacian over the contrast's variance, on the face at 96 px; skimage's astronaut scores .17 sharp and .025
# after a Gaussian blur of 1 px at that scale, .008 at 2 px.
SMALL_FACE_PIXELS = INPUT_SIZE
BLUR_RATIO = 0.02
TILTED_DEGREES = 15.0
# Haar detection cost grows with pixel count; faces in a phone photo stay far above the cascade's 24-pixel
# window after shrinking the long side to this.
_DETECT_MAX_SIDE = 1024
_TURNED_MAX_SIDE = 640
_TURNED_SCALE_FACTOR = 1.2  # coarser scale steps for the six turned copies: half the cost

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
  gray = decode_gray(data)
  if gray is None or gray.size == 0:
    raise UserError(f"{name}: not a readable image; give a photo file (JPEG, PNG, BMP, WebP, ...)")
  return gray


def decode_gray(data: np.ndarray) -> np.ndarray | None:
  """An image file's bytes (uint8) -> uint8 gray (H, W), by OpenCV (which applies the EXIF orientation of phone
  photos) or, for formats it lacks (e.g. GIF), Pillow; None when neither can decode them. Decoding bytes
  rather than a path copes with any path encoding and prints no warning on junk."""
  gray = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
  return gray if gray is not None else _decode_with_pillow(data)


def _decode_with_pillow(data: np.ndarray) -> np.ndarray | None:
  try:
    from PIL import Image, ImageOps  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  try:
    with Image.open(io.BytesIO(data.tobytes())) as im:
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
def _cascade(name: str = CASCADE_FILE) -> cv2.CascadeClassifier:
  """Loaded once per process: parsing the XML takes tens of milliseconds."""
  cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, name))
  if cascade.empty():
    raise UserError(f"OpenCV's {name} is missing; install opencv-python-headless<5 "
                    "(version 5 ships no cascades) or use --no-detect")
  return cascade


def detect_faces(gray: np.ndarray) -> list[FaceBox]:
  """Frontal faces in a uint8 gray image, largest first."""
  return [box for box, _ in _detect(gray)]


def _detect(gray: np.ndarray, scale_factor: float = 1.1) -> list[tuple[FaceBox, int]]:
  """(box, the cascade's neighbour count: how many overlapping windows agreed) per frontal face, largest
  first."""
  gray = to_gray(gray)
  factor = min(1.0, _DETECT_MAX_SIDE / max(gray.shape))
  small = gray
  if factor < 1.0:
    small = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
  # Histogram equalisation evens out exposure, which the cascade's Haar features are sensitive to.
  # minNeighbors=5 and a face at least 1/20 of the shorter side keep false positives on texture rare.
  min_side = max(24, min(small.shape) // 20)
  found, neighbours = _cascade().detectMultiScale2(cv2.equalizeHist(small), scaleFactor=scale_factor, minNeighbors=5,
                                                   minSize=(min_side, min_side))
  boxes = [(FaceBox(*(int(round(v / factor)) for v in rect)), int(n)) for rect, n in zip(found, neighbours)]
  # Largest first; position breaks ties so the order is deterministic.
  return sorted(boxes, key=lambda bn: (-bn[0].area, bn[0].y, bn[0].x))


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


@dataclasses.dataclass
class Face:
  """One face of a photo: where it is, how it was levelled, the model's input and what may make it unreliable.

  box: the square around the face in image pixels ([x, y, w, h]; for a tilted face, the detector's square
  turned back into the photo). angle: the counter-clockwise turn in degrees (OpenCV's convention) that
  levelled it, 0 when it was cropped as found. crop: (48, 48, 1) uint8. flags: "small", "blurred", "tilted".
  """
  box: FaceBox
  angle: float
  crop: np.ndarray
  flags: list[str]
  centre: tuple[float, float]
  side: float

  def display(self, gray: np.ndarray, size: int = 192) -> np.ndarray:
    """A larger gray crop of the same levelled face for pictures (the model sees the 48x48 one)."""
    return _levelled_square(to_gray(gray), self.centre, self.side, self.angle, size)


def _rotation(shape, degrees: float) -> tuple[np.ndarray, tuple[int, int]]:
  """The affine map that turns an image of `shape` by `degrees` about its centre onto a canvas large enough to
  hold all of it, and that canvas's (width, height)."""
  h, w = shape
  m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
  cos, sin = abs(m[0, 0]), abs(m[0, 1])
  size = (int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin)))
  m[:, 2] += (size[0] / 2 - w / 2, size[1] / 2 - h / 2)
  return m, size


def _detect_turned(gray: np.ndarray) -> list[tuple[tuple[float, float], float, float, int]]:
  """[(face centre in the photo, side, turn in degrees that showed it upright, neighbour count)] over the
  upright photo and the photo turned by each of SEARCH_ANGLES; one face is usually found at several turns."""
  found = [((b.x + b.w / 2, b.y + b.h / 2), float(max(b.w, b.h)), 0.0, n) for b, n in _detect(gray)]
  # Turned copies are searched smaller (they are a fallback for tilted heads, and 6 of them).
  factor = min(1.0, _TURNED_MAX_SIDE / max(gray.shape))
  small = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA) if factor < 1 else gray
  for degrees in SEARCH_ANGLES:
    m, size = _rotation(small.shape, degrees)
    inverse = cv2.invertAffineTransform(m)
    image = cv2.warpAffine(small, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    for b, neighbours in _detect(image, _TURNED_SCALE_FACTOR):
      x, y = inverse @ np.array([b.x + b.w / 2, b.y + b.h / 2, 1.0])
      found.append(((float(x / factor), float(y / factor)), float(max(b.w, b.h)) / factor, degrees, neighbours))
  return found


def _levelled_square(gray, centre, side: float, degrees: float, size: int) -> np.ndarray:
  """The square of `side` about `centre`, turned by `degrees` (counter-clockwise), resized to (size, size, 1);
  parts outside the photo repeat its edge pixels."""
  side_px = max(1, int(round(side)))
  m = cv2.getRotationMatrix2D(centre, degrees, 1.0)
  m[:, 2] += (side_px / 2 - centre[0], side_px / 2 - centre[1])
  square = cv2.warpAffine(gray, m, (side_px, side_px), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
  return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)[..., None]


def eye_angle(face_square: np.ndarray) -> float | None:
  """The slope in degrees of the line through the two eyes of a roughly level face (uint8 gray square, any
  size), or None when two plausible eyes are not found (each in its own half, in the upper 60%)."""
  side = face_square.shape[0]
  patch = cv2.resize(face_square, (128, 128), interpolation=cv2.INTER_AREA if side > 128 else cv2.INTER_CUBIC)
  upper = cv2.equalizeHist(patch[:77])
  eyes = _cascade(EYE_CASCADE_FILE).detectMultiScale(upper, scaleFactor=1.1, minNeighbors=5, minSize=(12, 12),
                                                     maxSize=(56, 56))
  centres = [(x + w / 2, y + h / 2, w * h) for x, y, w, h in eyes]
  left = [c for c in centres if c[0] < 64]
  right = [c for c in centres if c[0] >= 64]
  if not left or not right:
    return None
  (x1, y1, _), (x2, y2, _) = max(left, key=lambda c: c[2]), max(right, key=lambda c: c[2])
  degrees = float(np.degrees(np.arctan2(y2 - y1, x2 - x1)))
  return degrees if abs(degrees) <= 30 and x2 - x1 > 25 else None


def quality_flags(face_square: np.ndarray, side: float, degrees: float) -> list[str]:
  """What may make a face's result unreliable (see SMALL_FACE_PIXELS, BLUR_RATIO, TILTED_DEGREES)."""
  flags = []
  if side < SMALL_FACE_PIXELS:
    flags.append("small")
  patch = cv2.resize(face_square, (96, 96), interpolation=cv2.INTER_AREA).astype(np.float64)
  if cv2.Laplacian(patch, cv2.CV_64F).var() < BLUR_RATIO * max(patch.var(), 1.0):
    flags.append("blurred")
  if abs(degrees) > TILTED_DEGREES:
    flags.append("tilted")
  return flags


def find_faces(gray: np.ndarray, *, margin: float = 0.1) -> list[Face]:
  """Every face of a photo, largest first, each levelled by its eyes and cropped for the model.

  A face seen only in a turned copy counts when its two eyes are found (turned copies add false positives
  on texture); one face seen at several turns is kept once, at the turn where the most detector windows
  agreed.
  """
  gray = to_gray(gray)
  candidates = []
  for centre, side, turn, neighbours in _detect_turned(gray):
    # The face as the detector saw it (the photo turned by `turn`); its eyes say how far from level it is.
    tilt = eye_angle(_levelled_square(gray, centre, side, turn, int(round(side)))[..., 0])
    if turn == 0.0 or tilt is not None:
      candidates.append((centre, side, turn, tilt, neighbours))
  kept = []
  for centre, side, turn, tilt, _ in sorted(candidates, key=lambda c: -c[4]):
    if not any(np.hypot(centre[0] - k[0][0], centre[1] - k[0][1]) < 0.5 * max(side, k[1]) for k in kept):
      kept.append((centre, side, turn, tilt))
  faces = []
  for centre, side, turn, tilt in kept:
    degrees = turn + (tilt or 0.0)
    if abs(degrees) < ALIGN_MIN_DEGREES:
      degrees = 0.0
    square = side * (1 + 2 * margin)
    if degrees == 0.0:  # exactly the upright crop
      box = FaceBox(*(int(round(v)) for v in (centre[0] - side / 2, centre[1] - side / 2, side, side)))
      crop = crop_face(gray, box, margin=margin)
    else:
      crop = _levelled_square(gray, centre, square, degrees, INPUT_SIZE)
    level = _levelled_square(gray, centre, side, degrees, max(INPUT_SIZE, int(round(side))))[..., 0]
    faces.append(Face(box=_square_box(centre, side, turn), angle=degrees, crop=crop,
                      flags=quality_flags(level, side, degrees), centre=centre, side=square))
  return sorted(faces, key=lambda f: (-f.box.area, f.box.y, f.box.x))


def _square_box(centre, side: float, degrees: float) -> FaceBox:
  """The axis-aligned box around a square of `side` about `centre` turned by `degrees`."""
  extent = side * (abs(np.cos(np.radians(degrees))) + abs(np.sin(np.radians(degrees))))
  return FaceBox(*(int(round(v)) for v in (centre[0] - extent / 2, centre[1] - extent / 2, extent, extent)))


def prepare_faces(image_or_path: Union[np.ndarray, PathLike], *, detect: bool = True,
                  name: str | None = None) -> tuple[np.ndarray, list[Face]]:
  """A photo (path or array) -> (its gray pixels, its faces largest first). With detect=False the one "face"
  is the centre square of the whole image. Raises UserError when no face is found."""
  if isinstance(image_or_path, (str, os.PathLike)):
    name = os.fspath(image_or_path)
    gray = load_image(name)
  else:
    name = name or "the image"
    gray = to_gray(image_or_path)
  if not detect:
    h, w = gray.shape
    side = min(h, w)
    return gray, [Face(box=None, angle=0.0, crop=whole_image(gray), flags=[], centre=(w / 2, h / 2), side=side)]
  faces = find_faces(gray)
  if not faces:
    raise UserError(f"no face found in {name} (also turned by up to 45 degrees); use --no-detect to classify "
                    "the whole image")
  return gray, faces


def prepare_face(image_or_path: Union[np.ndarray, PathLike], *, detect: bool = True,
                 name: str | None = None) -> tuple[np.ndarray, FaceBox | None, int]:
  """A photo (path or array) -> (48x48x1 uint8 model input of its largest face, that face's box, number of
  faces found). With detect=False the whole image is used: the box is None and the count 0."""
  _, faces = prepare_faces(image_or_path, detect=detect, name=name)
  return faces[0].crop, faces[0].box, len(faces) if detect else 0


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
