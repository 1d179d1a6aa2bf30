"""FER2013 reading and TFDS building on small fixtures written here (no real data needed)."""

import collections
import csv

import cv2
import numpy as np
import pytest

from facemusic_jax.data import fer2013
from facemusic_jax.emotion import FER_LABELS
from facemusic_jax.errors import UserError

ANGRY, DISGUST, FEAR, HAPPY, SAD, SURPRISE, NEUTRAL = range(7)


def _shade(label):
  """Pixel value that encodes a label, far enough apart to survive JPEG."""
  return 10 + 30 * label


def _label_of(image):
  return int(round((float(image.mean()) - 10) / 30))


def _write_image(path, label, size=48, colour=False):
  path.parent.mkdir(parents=True, exist_ok=True)
  image = np.full((size, size, 3) if colour else (size, size), _shade(label), np.uint8)
  assert cv2.imwrite(str(path), image)


@pytest.fixture
def image_dir(tmp_path):
  """Kaggle image-folder layout; folder names chosen so that sorted position != FER2013 index."""
  root = tmp_path / "images"
  for name, label in [("happy", HAPPY), ("angry", ANGRY), ("surprise", SURPRISE)]:
    for i in range(2):
      _write_image(root / "train" / name / f"Training_{label}{i}.jpg", label)
    _write_image(root / "test" / name / f"PublicTest_{label}.png", label)
  _write_image(root / "train" / "Neutral" / "face.png", NEUTRAL)  # Case; no prefix -> folder's split.
  _write_image(root / "train" / "neutral" / "big.png", NEUTRAL, size=64, colour=True)  # Resized, gray.
  _write_image(root / "train" / "sad" / "PublicTest_9.png", SAD)  # The name beats the folder.
  _write_image(root / "test" / "sad" / "PrivateTest_1.png", SAD)
  _write_image(root / "test" / "fear" / "other.png", FEAR)
  # Bad entries, one per reason.
  (root / "train" / "happy" / "empty.jpg").write_bytes(b"")
  (root / "train" / "angry" / "text.jpg").write_text("not an image")
  (root / "train" / "happy" / "notes.txt").write_text("notes")
  _write_image(root / "train" / "contempt" / "Training_99.png", NEUTRAL)
  return root


# Rows: (emotion, pixels or None for random, Usage).
_CSV_ROWS = [
    (ANGRY, None, "Training"),
    (DISGUST, None, "Training"),
    (FEAR, None, "PublicTest"),
    (HAPPY, None, "PublicTest"),
    (SAD, None, "PrivateTest"),
    (SURPRISE, None, "PrivateTest"),
    (NEUTRAL, None, "Training"),
    (HAPPY, " ".join(["1"] * 2303), "Training"),  # pixel_count
    (HAPPY, "1 2 x " + " ".join(["1"] * 2301), "Training"),  # non_numeric
    (HAPPY, " ".join(["256"] * 2304), "Training"),  # pixel_range
    (9, None, "Training"),  # unknown_label
    (HAPPY, None, "Bogus"),  # unknown_usage
]


def _write_csv(folder, rows, name="fer2013.csv"):
  """Writes a Kaggle-style CSV; returns {key: (split, pixels, label)} for the rows meant to be valid."""
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  expected = {}
  with open(folder / name, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["emotion", "pixels", "Usage"])
    for i, (emotion, pixels, usage) in enumerate(rows):
      if pixels is None:
        values = rng.integers(0, 256, 48 * 48, dtype=np.uint8)
        pixels = " ".join(map(str, values))
        split = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}.get(usage)
        if split and emotion < 7:
          expected[f"csv:{i}"] = (split, values.reshape(48, 48, 1), emotion)
      writer.writerow([emotion, pixels, usage])
  return expected


def _by_id(source):
  return {source[i]["id"].decode(): source[i] for i in range(len(source))}


def test_image_folders_map_classes_by_name_and_assign_splits(image_dir):
  stats = collections.Counter()
  examples = {key: (split, image, label)
              for split, key, image, label in fer2013.iter_examples(image_dir, stats=stats)}
  for key, (_, image, label) in examples.items():
    assert image.shape == (48, 48, 1) and image.dtype == np.uint8
    assert label == _label_of(image), key
  splits = {key: split for key, (split, _, _) in examples.items()}
  assert splits["train/happy/Training_30.jpg"] == "train"
  assert splits["test/happy/PublicTest_3.png"] == "validation"
  assert splits["train/Neutral/face.png"] == "train"
  assert splits["train/sad/PublicTest_9.png"] == "validation"
  assert splits["test/sad/PrivateTest_1.png"] == "test"
  assert splits["test/fear/other.png"] == "validation"
  assert examples["train/angry/Training_00.jpg"][2] == ANGRY
  assert examples["train/happy/Training_31.jpg"][2] == HAPPY
  assert stats == {"ok/train": 8, "ok/validation": 5, "ok/test": 1, "resized": 1,
                   "skipped/empty_file": 1, "skipped/unreadable_image": 1, "skipped/not_an_image": 1,
                   "skipped/unknown_class": 1}
  # Stable keys in a stable order.
  assert [key for _, key, _, _ in fer2013.iter_examples(image_dir)] == list(examples)


def test_prepare_image_folders_round_trip(image_dir, tmp_path):
  sources = fer2013.prepare(image_dir, tmp_path / "tfds")
  assert {split: len(source) for split, source in sources.items()} == {
      "train": 8, "validation": 5, "test": 1}
  for source in sources.values():
    for record in _by_id(source).values():
      assert record["image"].shape == (48, 48, 1) and record["image"].dtype == np.uint8
      assert record["label"] == _label_of(record["image"])
  builder = fer2013.Fer2013(data_dir=tmp_path / "tfds", file_format="array_record")
  assert builder.info.features["label"].names == list(FER_LABELS)
  assert builder.info.metadata["counts"]["skipped/empty_file"] == 1


def test_csv_round_trip_is_exact_and_counts_bad_rows(tmp_path):
  expected = _write_csv(tmp_path / "manual", _CSV_ROWS)
  stats = collections.Counter()
  assert len(list(fer2013.iter_examples(tmp_path / "manual", stats=stats))) == 7
  assert stats == {"ok/train": 3, "ok/validation": 2, "ok/test": 2, "skipped/pixel_count": 1,
                   "skipped/non_numeric": 1, "skipped/pixel_range": 1, "skipped/unknown_label": 1,
                   "skipped/unknown_usage": 1}

  sources = fer2013.prepare(tmp_path / "manual", tmp_path / "tfds")
  assert set(sources) == {"train", "validation", "test"}
  seen = 0
  for split, source in sources.items():
    for key, record in _by_id(source).items():
      want_split, want_pixels, want_label = expected[key]
      assert split == want_split
      np.testing.assert_array_equal(record["image"], want_pixels)
      assert record["label"] == want_label
      seen += 1
  assert seen == len(expected) == 7


def test_csv_without_private_test_rows_has_no_test_split(tmp_path):
  rows = [row for row in _CSV_ROWS[:7] if row[2] != "PrivateTest"]
  _write_csv(tmp_path / "manual", rows, name="my_copy.csv")  # Any single CSV with the right columns.
  sources = fer2013.prepare(tmp_path / "manual", tmp_path / "tfds")
  assert {split: len(source) for split, source in sources.items()} == {"train": 3, "validation": 2}


def _write_ferplus(folder, vote_rows):
  columns = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
             "unknown", "NF"]
  with open(folder / "fer2013new.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["Usage", "Image name"] + columns)
    for i, (usage, votes) in enumerate(vote_rows):
      writer.writerow([usage, f"fer{i:07d}.png"] + [votes.get(name, 0) for name in columns])


def test_ferplus_majority_vote(tmp_path):
  manual = tmp_path / "manual"
  _write_csv(manual, _CSV_ROWS[:7])
  _write_ferplus(manual, [
      ("Training", {"happiness": 6, "anger": 4}),  # FER2013 says angry; FER+ majority is happy.
      ("Training", {"anger": 5, "disgust": 5}),  # Tie.
      ("PublicTest", {"contempt": 7, "fear": 3}),  # Contempt majority.
      ("PublicTest", {"sadness": 8, "neutral": 2}),
      ("PrivateTest", {"NF": 10}),  # Not a face.
      ("PrivateTest", {"surprise": 9, "unknown": 1}),
      ("Training", {"unknown": 6, "neutral": 4}),
  ])
  stats = collections.Counter()
  labels = {key: (split, label)
            for split, key, _, label in fer2013.iter_examples(manual, ferplus=True, stats=stats)}
  assert labels == {"csv:0": ("train", HAPPY), "csv:3": ("validation", SAD),
                    "csv:5": ("test", SURPRISE)}
  assert stats == {"ok/train": 1, "ok/validation": 1, "ok/test": 1, "skipped/ferplus_no_majority": 1,
                   "skipped/ferplus_contempt": 1, "skipped/ferplus_nf": 1, "skipped/ferplus_unknown": 1}

  # Both configs live side by side in one data_dir.
  plain = fer2013.prepare(manual, tmp_path / "tfds")
  plus = fer2013.prepare(manual, tmp_path / "tfds", ferplus=True)
  assert len(plain["train"]) == 3 and _by_id(plain["train"])["csv:0"]["label"] == ANGRY
  assert {split: len(source) for split, source in plus.items()} == {"train": 1, "validation": 1, "test": 1}
  assert _by_id(plus["train"])["csv:0"]["label"] == HAPPY


@pytest.mark.parametrize("votes,expected", [
    ({"happiness": 4, "sadness": 3, "neutral": 3}, "ferplus_no_majority"),  # a plurality, not a majority
    ({"anger": 5, "disgust": 5}, "ferplus_no_majority"),  # a tie
    # Single votes are outliers: 4 of the 6 votes left is a majority (4 of all 10 would not be).
    ({"happiness": 4, "anger": 2, "fear": 1, "sadness": 1, "neutral": 1, "surprise": 1}, HAPPY),
    ({"sadness": 6, "neutral": 4}, SAD),
    ({"neutral": 1}, "ferplus_no_majority"),  # nothing but outliers
    ({}, "ferplus_no_votes"),
    ({"contempt": 6, "fear": 2, "anger": 2}, "ferplus_contempt"),  # a majority we have no class for
    ({"surprise": 5, "unknown": 1, "NF": 1}, SURPRISE),
])
def test_ferplus_majority_as_microsoft_defines_it(votes, expected):
  row = {name: votes.get("NF" if name == "nf" else name, 0) for name in fer2013._FERPLUS_VOTES}
  assert fer2013._ferplus_label(row) == expected


def test_ferplus_errors(tmp_path, image_dir):
  with pytest.raises(UserError, match="CSV layout"):
    list(fer2013.iter_examples(image_dir, ferplus=True))
  _write_csv(tmp_path / "manual", _CSV_ROWS[:3])
  with pytest.raises(UserError, match="fer2013new.csv"):
    list(fer2013.iter_examples(tmp_path / "manual", ferplus=True))
  _write_ferplus(tmp_path / "manual", [("Training", {"happiness": 3})])  # One row short of 3.
  with pytest.raises(UserError, match="rows"):
    list(fer2013.iter_examples(tmp_path / "manual", ferplus=True))


def test_prepare_is_idempotent(image_dir, tmp_path):
  first = fer2013.prepare(image_dir, tmp_path / "tfds")
  files = sorted((tmp_path / "tfds").rglob("*.array_record*"))
  stamps = [p.stat().st_mtime_ns for p in files]
  for path in sorted(image_dir.rglob("*"), reverse=True):  # Reuse must not need the source any more.
    path.rmdir() if path.is_dir() else path.unlink()
  second = fer2013.prepare(image_dir, tmp_path / "tfds")
  assert sorted((tmp_path / "tfds").rglob("*.array_record*")) == files
  assert [p.stat().st_mtime_ns for p in files] == stamps
  assert {s: len(v) for s, v in second.items()} == {s: len(v) for s, v in first.items()}


def test_user_errors_when_nothing_valid(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(UserError, match="empty"):
    fer2013.prepare(empty, tmp_path / "tfds")
  with pytest.raises(UserError, match="no FER2013 data"):
    list(fer2013.iter_examples(empty))
  with pytest.raises(UserError, match="no such"):
    list(fer2013.iter_examples(tmp_path / "missing"))
  only_bad = tmp_path / "bad"
  (only_bad / "train" / "happy").mkdir(parents=True)
  (only_bad / "train" / "happy" / "x.jpg").write_bytes(b"")
  with pytest.raises(UserError, match="empty_file=1"):
    fer2013.prepare(only_bad, tmp_path / "tfds")
  with pytest.raises(UserError, match="missing column"):
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "fer2013.csv").write_text("a,b\n1,2\n")
    list(fer2013.iter_examples(tmp_path / "csv"))


def test_load_split_arrays(image_dir, tmp_path):
  images, labels = fer2013.load_split_arrays(image_dir / "test")  # Every image in the class folders.
  assert images.shape == (5, 48, 48, 1) and images.dtype == np.uint8 and labels.dtype == np.int32
  assert sorted(labels.tolist()) == [ANGRY, FEAR, HAPPY, SAD, SURPRISE]
  assert [_label_of(image) for image in images] == labels.tolist()

  images, labels = fer2013.load_split_arrays(image_dir, split="train")
  assert len(labels) == 8 and sorted(set(labels.tolist())) == [ANGRY, HAPPY, SURPRISE, NEUTRAL]

  expected = _write_csv(tmp_path / "manual", _CSV_ROWS)
  images, labels = fer2013.load_split_arrays(tmp_path / "manual" / "fer2013.csv", split="test")
  want = [expected[key] for key in sorted(expected) if expected[key][0] == "test"]
  np.testing.assert_array_equal(images, np.stack([pixels for _, pixels, _ in want]))
  assert labels.tolist() == [label for _, _, label in want]

  with pytest.raises(UserError, match="not one of"):
    fer2013.load_split_arrays(image_dir, split="bogus")
  _write_csv(tmp_path / "train_only", _CSV_ROWS[:2])
  with pytest.raises(UserError, match="split 'test'"):
    fer2013.load_split_arrays(tmp_path / "train_only", split="test")
