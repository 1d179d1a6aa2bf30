"""FER2013 (48x48 gray faces, 7 emotions) as a TFDS dataset in ArrayRecord files, built without TensorFlow.

Users have FER2013 in one of two layouts, and both are read from the folder they point at:
- the Kaggle CSV `fer2013.csv` (emotion, pixels, Usage), optionally with the FER+ relabelling
  `fer2013new.csv` next to it (majority vote of 10 annotators);
- image folders `train/<class>/*.jpg` and `test/<class>/*.jpg`, classes named, not numbered.

Labels are FER2013's own indices (`FER_LABELS`); image folders map to them by name, never by sorted
position. Bad rows and images are skipped and counted by reason, so one broken file never stops a build.

Splits (`SPLITS`), the same in both layouts:
- `train`: FER2013 Training minus the carved part below.
- `validation`: a fixed, stratified ~10% of FER2013 Training, carved out of it. Checkpoint selection (best/),
  the test-time-view choice and every tuning decision use this split and nothing else.
- `test`: FER2013 PublicTest (Kaggle's `test/` folder). Evaluated once per shipped model: the figure we report.
- `private_test`: FER2013 PrivateTest, when the data has it (the CSV does).
`publictest`/`public_test` and `privatetest` name `test` and `private_test` (`resolve_split`).

The carve rule (`carve_validation`), the same for every build, whatever order the files are listed in:
the Training examples of each class (by the label this config uses) are ranked by the SHA-256 of
`CARVE_SALT + carve key`, ties by the full example key; the first `validation_count(n)` of the class's n
examples are `validation`, where `validation_count(n) = (n + 5) // 10` (n/10 rounded half up), but at least
1 for a class with 2 or more examples. The carve key is the example key's file stem: `Training_123` for
`train/happy/Training_123.jpg` (so moving the folder, renaming the class folder or re-encoding the image does
not move an image across the carve), `csv:<row>` for the CSV's 0-based data row. Only valid examples are
ranked: skipped files and rows are not counted in n.
"""

import collections
import csv
import dataclasses
import hashlib
import os
import pathlib
from typing import Iterable, Iterator

from absl import logging
import cv2
import numpy as np
import tensorflow_datasets as tfds

from facemusic_jax.core.errors import UserError
from facemusic_jax.data import builder
from facemusic_jax.face import detection
from facemusic_jax.emotion import FER_LABELS

IMAGE_SIZE = 48
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)
SPLITS = ("train", "validation", "test", "private_test")
# What each split is, for reports.
SPLIT_DESCRIPTIONS = {
    "train": "train (Training minus the carved validation part)",
    "validation": "validation (carved from Training; used for selection)",
    "test": "test (PublicTest; reported)",
    "private_test": "private_test (PrivateTest)",
}
# Other names users give the FER2013 halves, lower-cased, '-' read as '_'.
SPLIT_ALIASES = {"publictest": "test", "public_test": "test", "privatetest": "private_test"}
# Changing the salt or the rule re-draws the validation split: bump the builder's VERSION with it.
CARVE_SALT = b"facemusic_jax/fer2013/validation/v1:"

CSV_NAME = "fer2013.csv"
FERPLUS_CSV_NAME = "fer2013new.csv"
_CSV_COLUMNS = ("emotion", "pixels", "usage")  # Compared lower-cased.
# The source's own halves. Part of `train` becomes `validation` afterwards (`carve_validation`).
_USAGE_TO_SPLIT = {"training": "train", "publictest": "test", "privatetest": "private_test"}
# Image-file names carry their FER2013 usage (e.g. `PublicTest_123.jpg`); it beats the folder.
_NAME_PREFIX_TO_SPLIT = {"training_": "train", "publictest_": "test", "privatetest_": "private_test"}
# Kaggle's image copy calls the PublicTest half `test/`. A `val/` or `validation/` folder of some other copy is
# held-out data too, so it is read like `test/`: our validation split is always carved from Training.
_FOLDER_TO_SPLIT = {"train": "train", "training": "train", "test": "test", "val": "test", "validation": "test"}
# Spellings seen in other image-folder copies, mapped to our names.
_CLASS_ALIASES = {"anger": "angry", "disgusted": "disgust", "fearful": "fear", "happiness": "happy",
                  "sadness": "sad", "surprised": "surprise"}
# FER+ vote columns, in file order; the last three are not emotions and their majority drops the row.
_FERPLUS_VOTES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                  "unknown", "nf")
_FERPLUS_TO_FER = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
                   "anger": "angry", "disgust": "disgust", "fear": "fear"}

_EXPECTED = (f"a folder holding {CSV_NAME} (columns emotion,pixels,Usage) or train/ and test/ folders of "
             f"class folders ({', '.join(FER_LABELS)})")


# ---------------------------------------------------------------------------------------------------
# Kaggle CSV layout.


def _open_csv(path: pathlib.Path, required: tuple[str, ...]) -> tuple[csv.DictReader, object]:
  """A DictReader with lower-cased column names, after checking the columns we need are there."""
  f = open(path, newline="", encoding="utf-8-sig")  # Closed by the caller; -sig drops a BOM.
  reader = csv.DictReader(f)
  names = [name.strip().lower() for name in (reader.fieldnames or [])]
  missing = [name for name in required if name not in names]
  if missing:
    f.close()
    raise UserError(f"{path}: missing column(s) {', '.join(missing)} (found {', '.join(names) or 'none'}); "
                    f"expected the Kaggle FER2013 CSV header")
  reader.fieldnames = names
  return reader, f


def _has_columns(path: pathlib.Path, required: tuple[str, ...]) -> bool:
  with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
    header = next(csv.reader(f), [])
  return all(name in [h.strip().lower() for h in header] for name in required)


def _find_csv(folder: pathlib.Path) -> pathlib.Path | None:
  """`fer2013.csv`, else the one CSV in `folder` with FER2013's columns (None if there is none)."""
  named = folder / CSV_NAME
  if named.is_file():
    return named
  candidates = [p for p in sorted(folder.iterdir())
                if p.is_file() and p.suffix.lower() == ".csv" and p.name != FERPLUS_CSV_NAME
                and _has_columns(p, _CSV_COLUMNS)]
  if len(candidates) > 1:
    raise UserError(f"{folder}: several FER2013 CSVs ({', '.join(p.name for p in candidates)}); "
                    f"rename the one to use to {CSV_NAME}")
  return candidates[0] if candidates else None


def _parse_pixels(text: str | None) -> np.ndarray | str:
  """The `pixels` field -> a (48, 48, 1) uint8 image, or the reason it is not one."""
  text = (text or "").strip()
  if not text:
    return "pixel_count"
  # Checking the characters first lets the fast C parser below run on clean input only.
  digits = text.replace(" ", "")
  if not (digits.isascii() and digits.isdigit()):
    return "non_numeric"
  values = np.fromstring(text, dtype=np.int64, sep=" ")
  if values.size != IMAGE_SIZE * IMAGE_SIZE:
    return "pixel_count"
  if values.max() > 255:
    return "pixel_range"
  return values.astype(np.uint8).reshape(IMAGE_SHAPE)


def _parse_label(text: str | None) -> int | None:
  try:
    label = int((text or "").strip())
  except ValueError:
    return None
  return label if 0 <= label < len(FER_LABELS) else None


def _ferplus_label(row: dict) -> int | str:
  """A FER+ row of vote counts -> our label index, or the reason to drop the row.

  Microsoft's "majority" mode: single votes are dropped as outliers, then the top emotion needs more than half
  of the votes left; anything else (ties, weak pluralities) has no majority and is dropped.
  """
  try:
    votes = [int(float(row.get(name) or 0)) for name in _FERPLUS_VOTES]
  except ValueError:
    return "ferplus_bad_votes"
  if sum(votes) <= 0:
    return "ferplus_no_votes"
  kept = [v if v > 1 else 0 for v in votes]
  top = max(kept)
  if not top > sum(kept) / 2:
    return "ferplus_no_majority"
  winner = _FERPLUS_VOTES[kept.index(top)]
  if winner not in _FERPLUS_TO_FER:
    return f"ferplus_{winner}"
  return FER_LABELS.index(_FERPLUS_TO_FER[winner])


def _read_ferplus(path: pathlib.Path) -> list[tuple[str, int | str]]:
  """fer2013new.csv -> per row (usage, label or skip reason); rows align with fer2013.csv's rows."""
  if not path.is_file():
    raise UserError(f"{path}: FER+ labels not found; put Microsoft's {FERPLUS_CSV_NAME} next to "
                    f"{CSV_NAME} or turn FER+ off")
  reader, f = _open_csv(path, ("usage",) + _FERPLUS_VOTES)
  with f:
    return [((row.get("usage") or "").strip().lower(), _ferplus_label(row)) for row in reader]


def _iter_csv(path: pathlib.Path, ferplus: bool, stats: collections.Counter) -> Iterator[tuple]:
  """Yields (split, key, image, label) for the valid rows of a Kaggle FER2013 CSV."""
  ferplus_rows = _read_ferplus(path.parent / FERPLUS_CSV_NAME) if ferplus else None
  reader, f = _open_csv(path, _CSV_COLUMNS)
  with f:
    row_index = -1
    for row_index, row in enumerate(reader):
      usage = (row.get("usage") or "").strip().lower()
      split = _USAGE_TO_SPLIT.get(usage)
      if split is None:
        builder.skip(stats, "unknown_usage")
        continue
      if ferplus:
        if row_index >= len(ferplus_rows):
          raise UserError(f"{path.parent / FERPLUS_CSV_NAME}: has {len(ferplus_rows)} rows but {path.name} "
                          f"has more; use the FER+ file made for this exact CSV")
        ferplus_usage, label = ferplus_rows[row_index]
        if ferplus_usage != usage:  # The two files must list the same images in the same order.
          builder.skip(stats, "ferplus_usage_mismatch")
          continue
        if isinstance(label, str):
          builder.skip(stats, label)
          continue
      else:
        label = _parse_label(row.get("emotion"))
        if label is None:
          builder.skip(stats, "unknown_label")
          continue
      image = _parse_pixels(row.get("pixels"))
      if isinstance(image, str):
        builder.skip(stats, image)
        continue
      yield split, f"csv:{row_index}", image, label
  if ferplus and len(ferplus_rows) != row_index + 1:
    raise UserError(f"{path.parent / FERPLUS_CSV_NAME}: has {len(ferplus_rows)} rows but {path.name} has "
                    f"{row_index + 1}; use the FER+ file made for this exact CSV")


# ---------------------------------------------------------------------------------------------------
# Image-folder layout.


def _class_index(folder_name: str) -> int | None:
  name = folder_name.strip().lower()
  name = _CLASS_ALIASES.get(name, name)
  return FER_LABELS.index(name) if name in FER_LABELS else None


def _split_from_name(file_name: str, default: str) -> str:
  lower = file_name.lower()
  for prefix, split in _NAME_PREFIX_TO_SPLIT.items():
    if lower.startswith(prefix):
      return split
  return default


def _read_image(path: pathlib.Path, stats: collections.Counter) -> np.ndarray | str:
  """An image file -> (48, 48, 1) uint8 gray, or the reason it cannot be read."""
  try:
    data = path.read_bytes()
  except OSError:
    return "unreadable_file"
  if not data:
    return "empty_file"
  image = detection.decode_gray(np.frombuffer(data, np.uint8))
  if image is None:
    return "unreadable_image"
  if image.shape != (IMAGE_SIZE, IMAGE_SIZE):
    stats["resized"] += 1
    shrink = image.shape[0] > IMAGE_SIZE or image.shape[1] > IMAGE_SIZE
    image = cv2.resize(image, (IMAGE_SIZE, IMAGE_SIZE),
                       interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
  return image.reshape(IMAGE_SHAPE)


def _iter_class_folders(folder: pathlib.Path, root: pathlib.Path, default_split: str,
                        stats: collections.Counter) -> Iterator[tuple]:
  """Yields (split, key, image, label) for the images in `folder/<class>/`, keyed by path from `root`."""
  for class_dir in sorted(folder.iterdir(), key=lambda p: p.name):
    if class_dir.name.startswith("."):
      continue
    if not class_dir.is_dir():
      builder.skip(stats, "not_in_class_folder")
      continue
    label = _class_index(class_dir.name)
    for path in sorted(class_dir.iterdir(), key=lambda p: p.name):
      if path.name.startswith(".") or path.is_dir():
        continue  # Hidden files (.DS_Store) and nested folders are not part of the layout.
      if label is None:
        builder.skip(stats, "unknown_class")
        continue
      if path.suffix.lower() not in detection.IMAGE_SUFFIXES:
        builder.skip(stats, "not_an_image")
        continue
      image = _read_image(path, stats)
      if isinstance(image, str):
        builder.skip(stats, image)
        continue
      yield _split_from_name(path.name, default_split), path.relative_to(root).as_posix(), image, label


# ---------------------------------------------------------------------------------------------------
# Layout detection and the example stream.


@dataclasses.dataclass(frozen=True)
class _Layout:
  csv_path: pathlib.Path | None = None
  # (folder of class folders, split for files whose names do not say); empty for the CSV layout.
  folders: tuple[tuple[pathlib.Path, str], ...] = ()
  bare_class_folders: bool = False  # `path` itself holds the class folders (e.g. .../fer2013/test).


def _is_class_folder_parent(folder: pathlib.Path) -> bool:
  return any(child.is_dir() and _class_index(child.name) is not None for child in folder.iterdir())


def _detect_layout(path: str | os.PathLike) -> _Layout:
  path = pathlib.Path(path)
  if path.is_file():
    if path.suffix.lower() != ".csv":
      raise UserError(f"{path}: not a CSV; expected {_EXPECTED}")
    return _Layout(csv_path=path)
  if not path.is_dir():
    raise UserError(f"{path}: no such file or folder; expected {_EXPECTED}")
  csv_path = _find_csv(path)
  if csv_path is not None:
    return _Layout(csv_path=csv_path)
  split_dirs = tuple((child, _FOLDER_TO_SPLIT[child.name.lower()]) for child in sorted(path.iterdir())
                     if child.is_dir() and child.name.lower() in _FOLDER_TO_SPLIT)
  if split_dirs:
    return _Layout(folders=split_dirs)
  if _is_class_folder_parent(path):
    return _Layout(folders=((path, _FOLDER_TO_SPLIT.get(path.name.lower(), "train")),),
                   bare_class_folders=True)
  raise UserError(f"{path}: no FER2013 data found; expected {_EXPECTED}")


def _iter_layout(layout: _Layout, ferplus: bool, stats: collections.Counter) -> Iterator[tuple]:
  """(split, key, image, label) in reading order, split as the source says (train, test or private_test):
  validation is not carved yet."""
  if layout.csv_path is not None:
    examples = _iter_csv(layout.csv_path, ferplus, stats)
  elif ferplus:
    raise UserError(f"{layout.folders[0][0]}: FER+ labels need the CSV layout ({CSV_NAME} + "
                    f"{FERPLUS_CSV_NAME}), not image folders; point at the CSVs or turn FER+ off")
  else:
    root = layout.folders[0][0] if layout.bare_class_folders else layout.folders[0][0].parent
    examples = (example for folder, split in layout.folders
                for example in _iter_class_folders(folder, root, split, stats))
  yield from examples


# ---------------------------------------------------------------------------------------------------
# The validation split, carved out of Training.


def carve_key(key: str) -> str:
  """The part of an example key the carve hashes: its file stem ('Training_123'), or the CSV key ('csv:17')."""
  return pathlib.PurePosixPath(key).stem


def validation_count(n: int) -> int:
  """How many of a class's n Training examples are carved into validation: n/10 rounded half up, at least
  one when n >= 2 (so a class in the data is in both splits), none when n < 2."""
  return max((n + 5) // 10, 1 if n >= 2 else 0)


def _carve_rank(key: str) -> tuple[str, str]:
  return hashlib.sha256(CARVE_SALT + carve_key(key).encode("utf-8")).hexdigest(), key


def carve_validation(train: Iterable[tuple[str, int]]) -> set[str]:
  """The keys of the validation split, given the (key, label) pairs of every valid Training example.

  Per label, the examples are ranked by `_carve_rank` (SHA-256 of CARVE_SALT + carve key, then the key) and
  the first `validation_count(n)` are carved: a stratified ~10% that depends on the set of examples only,
  never on the order they come in.
  """
  by_label = collections.defaultdict(list)
  for key, label in train:
    by_label[label].append(key)
  carved = set()
  for keys in by_label.values():
    carved.update(sorted(keys, key=_carve_rank)[:validation_count(len(keys))])
  return carved


def _read_examples(layout: _Layout, ferplus: bool, stats: collections.Counter) -> list[tuple]:
  """Every valid (split, key, image, label) of the layout in reading order, validation carved out of train;
  counts 'ok/<split>' in `stats`."""
  examples = list(_iter_layout(layout, ferplus, stats))
  carved = carve_validation((key, label) for split, key, _, label in examples if split == "train")
  examples = [("validation" if key in carved else split, key, image, label)
              for split, key, image, label in examples]
  for split, *_ in examples:
    stats[f"ok/{split}"] += 1
  return examples


def resolve_split(name: str) -> str:
  """A split name as users write it -> one of SPLITS ('PublicTest' -> 'test'); UserError if unknown."""
  key = name.strip().lower().replace("-", "_")
  key = SPLIT_ALIASES.get(key, key)
  if key not in SPLITS:
    raise UserError(f"split {name!r} is not one of {', '.join(SPLITS)} (or publictest, privatetest)")
  return key


def iter_examples(manual_dir, *, ferplus: bool = False,
                  stats: collections.Counter | None = None) -> Iterator[tuple[str, str, np.ndarray, int]]:
  """Yields (split, key, image uint8 (48, 48, 1), label) for every valid example under `manual_dir`.

  `manual_dir` holds `fer2013.csv` (+ `fer2013new.csv` for `ferplus`) or `train/`, `test/` image
  folders (a CSV file or a lone folder of class folders also works). Splits are SPLITS' (validation carved
  out of Training, see the module docstring); the whole source is read before the first example comes.
  `stats` (a Counter) receives 'skipped/<reason>' and 'ok/<split>' counts. Raises UserError when nothing
  valid is found.
  """
  stats = collections.Counter() if stats is None else stats
  examples = _read_examples(_detect_layout(manual_dir), ferplus, stats)
  if not examples:
    raise UserError(f"{manual_dir}: no valid FER2013 example ({builder.summary(stats, 'skipped/') or 'no files'}); "
                    f"expected {_EXPECTED}")
  yield from examples


def _log_stats(source, stats: collections.Counter) -> None:
  builder.log_counts("FER2013", source, stats)
  if stats["resized"]:
    logging.info("FER2013 from %s: resized %d images to %dx%d", source, stats["resized"], IMAGE_SIZE,
                 IMAGE_SIZE)


# ---------------------------------------------------------------------------------------------------
# TFDS builder.


class Fer2013(builder.LocalBuilder):
  """FER2013 faces with FER2013 labels ('default') or FER+ majority-vote labels ('ferplus')."""

  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {
      "1.0.0": "First release: Kaggle CSV or image folders, FER+ relabelling.",
      "2.0.0": "Splits change meaning: validation is a stratified ~10% carved out of Training (was PublicTest), "
               "train is the rest of Training, test is PublicTest (was PrivateTest), private_test is PrivateTest.",
  }
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name="default", description="FER2013's own labels."),
      tfds.core.BuilderConfig(name="ferplus", description="FER+ majority vote over 10 annotators; "
                              "rows won by contempt/unknown/not-a-face, or tied, are dropped."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Point the manual dir at a folder holding FER2013 in either layout:
  1. Kaggle CSV: {CSV_NAME} with columns emotion,pixels,Usage (from the Kaggle challenge
     "challenges-in-representation-learning-facial-expression-recognition-challenge").
     Usage Training/PublicTest/PrivateTest -> splits train (+ validation)/test/private_test. For FER+
     labels also put Microsoft's {FERPLUS_CSV_NAME} (github.com/microsoft/FERPlus) in the same folder.
  2. Image folders: train/<class>/*.jpg and test/<class>/*.jpg, <class> one of
     {', '.join(FER_LABELS)} (matched by name). Files named Training_*, PublicTest_*, PrivateTest_*
     go to train (+ validation)/test/private_test; other files follow their folder (train -> train,
     test or val -> test).
  The validation split is a fixed, stratified ~10% of Training per class (see fer2013.py's docstring).
  """
  _DESCRIPTION = "FER2013: 48x48 grayscale faces labelled with one of 7 emotions."
  _SUPERVISED_KEYS = ("image", "label")
  _HOMEPAGE = "https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge"

  def _features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        # Tensor, not Image: the Image feature needs TensorFlow.
        "image": tfds.features.Tensor(shape=IMAGE_SHAPE, dtype=np.uint8),
        "label": tfds.features.ClassLabel(names=FER_LABELS),
        "id": tfds.features.Text(),  # Read back as bytes, e.g. b'csv:17' or b'train/happy/x.jpg'.
    })

  def log_counts(self, source, stats) -> None:
    _log_stats(source, stats)

  def _split_generators(self, dl_manager):
    # Read everything first (about 80 MB for all of FER2013): only splits with examples may be
    # generated, since TFDS fails on an empty split, and which are empty is known only after reading.
    by_split = collections.defaultdict(list)
    ferplus = self.builder_config.name == "ferplus"
    for split, key, image, label in iter_examples(dl_manager.manual_dir, ferplus=ferplus, stats=self.stats):
      by_split[split].append((key, image, label))
    return {split: self._generate_examples(by_split[split]) for split in SPLITS if by_split[split]}

  def _generate_examples(self, examples):
    for key, image, label in examples:
      yield key, {"image": image, "label": label, "id": key}


def prepare(manual_dir, data_dir, *, ferplus: bool = False) -> dict:
  """Builds FER2013 into `data_dir` once and returns {split: random-access source} for its splits.

  A dataset of the same config already prepared in `data_dir` is reused (the manual dir is then not
  read). Items of each source are dicts of numpy arrays: image (48, 48, 1) uint8, label int, id bytes.
  """
  fer = Fer2013(config="ferplus" if ferplus else "default", data_dir=os.fspath(data_dir),
                file_format="array_record")
  return builder.prepare(fer, manual_dir, _EXPECTED)


def is_class_folder(path) -> bool:
  """Whether `path` is a lone folder of class folders (e.g. .../fer2013/test), which means "these images":
  `load_split_arrays` returns all of it, whatever split is asked for."""
  return _detect_layout(path).bare_class_folders


def load_splits(path, splits: Iterable[str], *,
                ferplus: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{split: (images (N, 48, 48, 1) uint8, labels (N,) int32)} for each of `splits`, reading `path` once.

  `path` is a manual dir or a FER2013 CSV; split names go through `resolve_split` (the keys are the resolved
  names). For a folder of class folders every split is all of its images. UserError for an empty split.
  """
  names = list(dict.fromkeys(resolve_split(name) for name in splits))
  layout = _detect_layout(path)
  stats = collections.Counter()
  examples = _read_examples(layout, ferplus, stats)
  _log_stats(path, stats)
  found = collections.defaultdict(list)
  for example_split, _, image, label in examples:
    for name in names:
      if layout.bare_class_folders or example_split == name:
        found[name].append((image, label))
  out = {}
  for name in names:
    if not found.get(name):
      have = ", ".join(key.split("/", 1)[1] for key in sorted(stats) if key.startswith("ok/"))
      raise UserError(f"{path}: no valid FER2013 example for split {name!r} (found splits: "
                      f"{have or 'none'}; {builder.summary(stats, 'skipped/') or 'nothing skipped'}); "
                      f"expected {_EXPECTED}")
    images, labels = zip(*found[name])
    out[name] = np.stack(images), np.asarray(labels, np.int32)
  return out


def load_split_arrays(path, *, split: str = "test",
                      ferplus: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Images (N, 48, 48, 1) uint8 and labels (N,) int32 of one split, for evaluation.

  `path` is a manual dir or a FER2013 CSV (then `split` picks train, validation (carved from Training),
  test (PublicTest) or private_test (PrivateTest); 'publictest' also names test), or a folder of class
  folders such as .../fer2013/test (then every image in it, whatever `split` says).
  """
  return load_splits(path, [split], ferplus=ferplus)[resolve_split(split)]
