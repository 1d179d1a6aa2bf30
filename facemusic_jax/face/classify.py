"""Inference helpers shared by the CLIs: load the face-emotion classifier, classify 48x48 faces, and
classify a photo (detect -> crop -> classify -> describe on the valence-arousal plane).

Inference runs jitted on the default device without sharding: it serves one photo or one evaluation split,
so batch sizes never depend on the device count.
"""

import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from facemusic_jax import emotion
from facemusic_jax.core import checkpointing
from facemusic_jax.core.errors import UserError
from facemusic_jax.face import detection
from facemusic_jax.models.vgg import VGG

TTA_MODES = ("none", "flip", "ten_crop")
FACE_CHOICES = ("largest", "all")
# A result whose top probability is below this is labelled "low_confidence" (seven classes: chance is .14).
LOW_CONFIDENCE = 0.4


def tta_views(images: jax.Array, mode: str, crop_fraction: float = 0.9) -> jax.Array:
  """(B, H, W, C) -> (V, B, H, W, C): the views whose predictions are averaged at test time.

  'none': the image; 'flip': + its mirror; 'ten_crop': the four corner crops and the centre crop (each
  `crop_fraction` of the side, resized back to H x W) and their mirrors.
  """
  if mode == "none":
    return images[None]
  if mode == "flip":
    return jnp.stack([images, images[:, :, ::-1]])
  if mode != "ten_crop":
    raise ValueError(f"unknown tta mode {mode!r}; use one of {', '.join(TTA_MODES)}")
  b, h, w, c = images.shape
  ch, cw = int(round(h * crop_fraction)), int(round(w * crop_fraction))
  x = images.astype(jnp.float32)
  origins = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2)]
  crops = [jax.image.resize(x[:, y:y + ch, z:z + cw], (b, h, w, c), "linear") for y, z in origins]
  crops += [v[:, :, ::-1] for v in crops]
  return jnp.stack(crops)


def predict_outputs(model, images, tta: str = "none") -> dict:
  """Class probabilities averaged over the test-time views, and the predicted class (training's evaluation
  uses the same function)."""
  views = tta_views(images, tta)
  v, b = views.shape[:2]
  probs = jax.nn.softmax(model(views.reshape((v * b,) + views.shape[2:]))).reshape(v, b, -1).mean(0)
  return {"probs": probs, "pred": probs.argmax(-1)}


def resolve_checkpoint(checkpoint: str | None) -> str:
  """`checkpoint`, or the shipped one trained with configs/fer_cpu.py (release/fer_cpu)."""
  return checkpointing.resolve(checkpoint, "fer_cpu", "fer_cpu")


@dataclasses.dataclass
class FerClassifier:
  """A loaded FER model: its graph, its variables, the checkpoint's config and where it came from."""
  graphdef: nnx.GraphDef
  variables: nnx.State
  config: object
  checkpoint: str
  _compiled: dict = dataclasses.field(default_factory=dict, repr=False)

  @property
  def default_tta(self) -> str:
    return self.config.get("tta", "none")

  def forward(self, tta: str, batch_size: int):
    """The compiled forward pass: (batch_size, 48, 48, 1) uint8 -> (batch_size, 7) probabilities.

    Compiled ahead of time once per (tta, batch_size), so callers can keep compilation out of timings.
    """
    if tta not in TTA_MODES:
      raise UserError(f"unknown --tta {tta!r}; use one of {', '.join(TTA_MODES)}")
    key = (tta, batch_size)
    if key not in self._compiled:
      graphdef = self.graphdef

      def probs(variables, images):
        model = nnx.merge(graphdef, variables)  # eval mode travels in the graphdef
        return predict_outputs(model, images, tta)["probs"]

      shape = jax.ShapeDtypeStruct((batch_size, detection.INPUT_SIZE, detection.INPUT_SIZE, 1), jnp.uint8)
      self._compiled[key] = jax.jit(probs).lower(self.variables, shape).compile()
    compiled = self._compiled[key]
    return lambda images: compiled(self.variables, images)


def load_classifier(checkpoint: str | None = None) -> FerClassifier:
  """The model of a checkpoint dir (a training --workdir or a release dir), or of the release checkpoint."""
  path = resolve_checkpoint(checkpoint)
  model, config = checkpointing.load_model(path, VGG.from_config)
  graphdef, variables = nnx.split(model)
  return FerClassifier(graphdef, variables, config, os.path.abspath(path))


def classify_faces(classifier: FerClassifier, images: np.ndarray, *, tta: str | None = None,
                   batch_size: int = 256) -> np.ndarray:
  """(N, 48, 48, 1) uint8 faces -> (N, 7) probabilities in FER label order.

  Every batch has the same shape (the last one is padded), so the model compiles once.
  """
  images = np.asarray(images, np.uint8)
  if images.ndim != 4 or images.shape[1:] != (detection.INPUT_SIZE, detection.INPUT_SIZE, 1):
    raise ValueError(f"expected (N, {detection.INPUT_SIZE}, {detection.INPUT_SIZE}, 1) images, got {images.shape}")
  n = len(images)
  if n == 0:
    return np.zeros((0, len(emotion.FER_LABELS)), np.float32)
  if batch_size < 1:
    raise ValueError(f"batch_size must be at least 1, got {batch_size}")
  batch = min(batch_size, n)
  forward = classifier.forward(tta or classifier.default_tta, batch)
  outputs = []
  for start in range(0, n, batch):
    chunk = images[start:start + batch]
    pad = batch - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], np.uint8)])
    outputs.append(forward(chunk))  # dispatch is async: the next batch is assembled while this one runs
  return np.concatenate([np.asarray(o) for o in outputs])[:n]


def describe_faces(classifier: FerClassifier, faces: list, *, tta: str | None = None,
                   num_faces: int | None = None) -> list[dict]:
  """`detection.Face`s -> one emotion.describe(...) each, plus face_box (image pixels, None for the whole image),
  angle (degrees the face was levelled by), flags (the face's own, and "low_confidence" when the top
  probability is below LOW_CONFIDENCE) and num_faces (faces in the photo; default len(faces))."""
  probs = classify_faces(classifier, np.stack([f.crop for f in faces]), tta=tta)
  num_faces = len(faces) if num_faces is None else num_faces
  out = []
  for f, p in zip(faces, probs):
    flags = list(f.flags) + (["low_confidence"] if float(p.max()) < LOW_CONFIDENCE else [])
    out.append(emotion.describe(p) | {"face_box": f.box.as_list() if f.box else None, "angle": round(f.angle, 1),
                                      "flags": flags, "num_faces": num_faces})
  return out


def mean_of_faces(described: list[dict]) -> dict:
  """Several faces' descriptions -> the description of their mean probabilities (so its valence and arousal
  are the faces' mean point), with the faces themselves under "faces"."""
  probs = np.mean([[d["probabilities"][label] for label in emotion.FER_LABELS] for d in described], axis=0)
  return emotion.describe(probs) | {"face_box": None, "num_faces": len(described), "mean_of_faces": len(described),
                                    "faces": described}


@dataclasses.dataclass
class FaceReading:
  """What one photo's faces say. `faces` holds one description per reported face, largest first (see
  `describe_faces`); `display` is the largest face as pictures show it; `num_faces` counts the faces found (0
  when detection was off); `which` is "largest" or "all"."""
  image: str
  faces: list[dict]
  display: np.ndarray
  num_faces: int
  which: str = "largest"

  @property
  def condition(self) -> dict:
    """The description that music is conditioned on: the largest face, or with `which="all"` the faces'
    mean (`mean_of_faces`)."""
    return self.faces[0] if self.which == "largest" else mean_of_faces(self.faces)


def read_photo(classifier: FerClassifier, image, *, detect: bool = True, which: str = "largest",
               tta: str | None = None, found=None) -> FaceReading:
  """A photo (path or array) -> its FaceReading: detect -> level -> crop -> classify -> describe.

  `found` is `detection.prepare_faces(image, detect=detect)` when the caller already has it (e.g. to fail on a bad
  photo before loading a model). Raises UserError when the file is unreadable or (with detect) holds no face.
  """
  if which not in FACE_CHOICES:
    raise UserError(f"unknown --faces {which!r}; use one of {', '.join(FACE_CHOICES)}")
  gray, faces = found if found is not None else detection.prepare_faces(image, detect=detect)
  num_faces = len(faces) if detect else 0
  name = os.fspath(image) if isinstance(image, (str, os.PathLike)) else "image"
  described = describe_faces(classifier, faces if which == "all" else faces[:1], tta=tta, num_faces=num_faces)
  return FaceReading(name, described, faces[0].display(gray), num_faces, which)


def timed_classify(classifier: FerClassifier, images: np.ndarray, *, tta: str | None = None,
                   batch_size: int = 256) -> tuple[np.ndarray, float]:
  """classify_faces, plus the throughput in images/s measured after compilation."""
  tta = tta or classifier.default_tta
  if len(images):
    classifier.forward(tta, min(batch_size, len(images)))  # compile outside the timed region
  start = time.perf_counter()
  probs = classify_faces(classifier, images, tta=tta, batch_size=batch_size)
  seconds = time.perf_counter() - start
  return probs, len(images) / max(seconds, 1e-9)
