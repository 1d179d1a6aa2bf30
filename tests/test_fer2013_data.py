"""FER2013 reading and TFDS building on small fixtures written here (no real data needed)."""

import collections
import csv
import hashlib
import pathlib

import cv2
import numpy as np
import pytest

from facemusic_jax.core.errors import UserError
from facemusic_jax.data import fer2013
from facemusic_jax.emotion import FER_LABELS

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
        split = {"Training": "train", "PublicTest": "test", "PrivateTest": "private_test"}.get(usage)
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
  # Training images (by name, or by folder when the name does not say) go to train or the carved
  # validation split; each of these four classes has 2, so one of each is carved.
  training = {"train/happy/Training_30.jpg", "train/happy/Training_31.jpg", "train/angry/Training_00.jpg",
              "train/angry/Training_01.jpg", "train/surprise/Training_50.jpg", "train/surprise/Training_51.jpg",
              "train/Neutral/face.png", "train/neutral/big.png"}
  assert {key for key, split in splits.items() if split in ("train", "validation")} == training
  carved = [examples[key][2] for key, split in splits.items() if split == "validation"]
  assert sorted(carved) == [ANGRY, HAPPY, SURPRISE, NEUTRAL]
  assert splits["test/happy/PublicTest_3.png"] == "test"  # PublicTest is the test split.
  assert splits["train/sad/PublicTest_9.png"] == "test"  # The name beats the folder.
  assert splits["test/sad/PrivateTest_1.png"] == "private_test"
  assert splits["test/fear/other.png"] == "test"
  assert examples["train/angry/Training_00.jpg"][2] == ANGRY
  assert examples["train/happy/Training_31.jpg"][2] == HAPPY
  assert stats == {"ok/train": 4, "ok/validation": 4, "ok/test": 5, "ok/private_test": 1, "resized": 1,
                   "skipped/empty_file": 1, "skipped/unreadable_image": 1, "skipped/not_an_image": 1,
                   "skipped/unknown_class": 1}
  # Stable keys in a stable order.
  assert [key for _, key, _, _ in fer2013.iter_examples(image_dir)] == list(examples)


def test_prepare_image_folders_round_trip(image_dir, tmp_path, capfd):
  sources = fer2013.prepare(image_dir, tmp_path / "tfds")
  # TFDS's "Downloading and preparing" messages go to stderr: the run that builds the data keeps a
  # `--json` command's stdout one JSON object.
  assert capfd.readouterr().out == ""
  assert {split: len(source) for split, source in sources.items()} == {
      "train": 4, "validation": 4, "test": 5, "private_test": 1}
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
  # One valid Training row per class: too few to carve any (a class needs 2), so no validation split.
  assert stats == {"ok/train": 3, "ok/test": 2, "ok/private_test": 2, "skipped/pixel_count": 1,
                   "skipped/non_numeric": 1, "skipped/pixel_range": 1, "skipped/unknown_label": 1,
                   "skipped/unknown_usage": 1}

  sources = fer2013.prepare(tmp_path / "manual", tmp_path / "tfds")
  assert set(sources) == {"train", "test", "private_test"}
  seen = 0
  for split, source in sources.items():
    for key, record in _by_id(source).items():
      want_split, want_pixels, want_label = expected[key]
      assert split == want_split
      np.testing.assert_array_equal(record["image"], want_pixels)
      assert record["label"] == want_label
      seen += 1
  assert seen == len(expected) == 7


def test_csv_without_private_test_rows_has_no_private_test_split(tmp_path):
  rows = [row for row in _CSV_ROWS[:7] if row[2] != "PrivateTest"]
  _write_csv(tmp_path / "manual", rows, name="my_copy.csv")  # Any single CSV with the right columns.
  sources = fer2013.prepare(tmp_path / "manual", tmp_path / "tfds")
  assert {split: len(source) for split, source in sources.items()} == {"train": 3, "test": 2}


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
  assert labels == {"csv:0": ("train", HAPPY), "csv:3": ("test", SAD),
                    "csv:5": ("private_test", SURPRISE)}
  assert stats == {"ok/train": 1, "ok/test": 1, "ok/private_test": 1, "skipped/ferplus_no_majority": 1,
                   "skipped/ferplus_contempt": 1, "skipped/ferplus_nf": 1, "skipped/ferplus_unknown": 1}

  # Both configs live side by side in one data_dir.
  plain = fer2013.prepare(manual, tmp_path / "tfds")
  plus = fer2013.prepare(manual, tmp_path / "tfds", ferplus=True)
  assert len(plain["train"]) == 3 and _by_id(plain["train"])["csv:0"]["label"] == ANGRY
  assert {split: len(source) for split, source in plus.items()} == {"train": 1, "test": 1, "private_test": 1}
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
  for split in ("validation", "test", "train"):  # Every image in the class folders, whatever the split.
    images, labels = fer2013.load_split_arrays(image_dir / "test", split=split)
    assert images.shape == (5, 48, 48, 1) and images.dtype == np.uint8 and labels.dtype == np.int32
    assert sorted(labels.tolist()) == [ANGRY, FEAR, HAPPY, SAD, SURPRISE]
    assert [_label_of(image) for image in images] == labels.tolist()
  assert fer2013.is_class_folder(image_dir / "test") and not fer2013.is_class_folder(image_dir)

  # One image of each of the four Training classes is carved into validation; train keeps the other.
  for split in ("train", "validation"):
    images, labels = fer2013.load_split_arrays(image_dir, split=split)
    assert sorted(labels.tolist()) == [ANGRY, HAPPY, SURPRISE, NEUTRAL]
  _, labels = fer2013.load_split_arrays(image_dir, split="test")
  assert sorted(labels.tolist()) == [ANGRY, FEAR, HAPPY, SAD, SURPRISE]  # PublicTest, by name or folder

  expected = _write_csv(tmp_path / "manual", _CSV_ROWS)
  for split, usage_split, names in [("test", "test", ("test", "PublicTest", "public_test", "publictest")),
                                    ("private_test", "private_test", ("private_test", "PrivateTest"))]:
    want = [expected[key] for key in sorted(expected) if expected[key][0] == usage_split]
    for name in names:
      images, labels = fer2013.load_split_arrays(tmp_path / "manual" / "fer2013.csv", split=name)
      np.testing.assert_array_equal(images, np.stack([pixels for _, pixels, _ in want]))
      assert labels.tolist() == [label for _, _, label in want]
  both = fer2013.load_splits(tmp_path / "manual", ["test", "publictest", "private_test"])
  assert list(both) == ["test", "private_test"] and [len(v[1]) for v in both.values()] == [2, 2]

  with pytest.raises(UserError, match="not one of"):
    fer2013.load_split_arrays(image_dir, split="bogus")
  _write_csv(tmp_path / "train_only", _CSV_ROWS[:2])
  with pytest.raises(UserError, match="split 'test'"):
    fer2013.load_split_arrays(tmp_path / "train_only", split="test")


# ---------------------------------------------------------------------------------------------------
# The validation split: a fixed, stratified ~10% carved out of Training.

# Training images per class, chosen to exercise the rule (n/10 rounded half up, at least 1 when n >= 2) ...
_TRAINING_COUNTS = {ANGRY: 15, DISGUST: 1, FEAR: 2, HAPPY: 25, SAD: 14, SURPRISE: 5, NEUTRAL: 34}
# ... and the validation images per class, worked out by hand: 1.5 -> 2, 0.1 -> 0 (one image: nothing to
# carve), 0.2 -> 1 (the minimum), 2.5 -> 3, 1.4 -> 1, 0.5 -> 1, 3.4 -> 3.
_CARVED_COUNTS = {ANGRY: 2, DISGUST: 0, FEAR: 1, HAPPY: 3, SAD: 1, SURPRISE: 1, NEUTRAL: 3}
_SALT = b"facemusic_jax/fer2013/validation/v1:"  # Changing it re-draws the split: bump Fer2013.VERSION.


def _spec_carve(keys_by_label):
  """The documented rule, restated: per class, rank by SHA-256(salt + file stem), ties by key, take the
  hand-counted number."""
  carved = set()
  for label, keys in keys_by_label.items():
    ranked = sorted(keys, key=lambda k: (hashlib.sha256(_SALT + pathlib.PurePosixPath(k).stem.encode())
                                         .hexdigest(), k))
    carved |= set(ranked[:_CARVED_COUNTS[label]])
  return carved


def _write_carve_folders(root, class_folder=lambda name: name, suffix=".png"):
  """train/<class>/Training_<random id> per _TRAINING_COUNTS, test/<class>/PublicTest_* and PrivateTest_*
  (random ids: name order is not hash order). Returns {split: {key: label}} as the source says."""
  rng = np.random.default_rng(7)
  ids = iter(rng.permutation(100_000)[:200].tolist())
  written = {"train": {}, "test": {}, "private_test": {}}
  for label, name in enumerate(FER_LABELS):
    files = [("train", "Training", n) for n in [_TRAINING_COUNTS[label]]]
    files += [("test", "PublicTest", 2), ("test", "PrivateTest", 1)]
    for folder, prefix, n in files:
      for _ in range(n):
        key = f"{folder}/{class_folder(name)}/{prefix}_{next(ids)}{suffix}"
        _write_image(root / key, label)
        written["private_test" if prefix == "PrivateTest" else folder][key] = label
  return written


def _by_label(keys_to_labels):
  out = collections.defaultdict(list)
  for key, label in keys_to_labels.items():
    out[label].append(key)
  return out


def _splits_of(manual, **kwargs):
  """{split: {key: label}} as iter_examples assigns them."""
  out = collections.defaultdict(dict)
  for split, key, _, label in fer2013.iter_examples(manual, **kwargs):
    out[split][key] = label
  return dict(out)


@pytest.fixture
def carve_dir(tmp_path):
  root = tmp_path / "carve"
  return root, _write_carve_folders(root)


@pytest.mark.parametrize("n,expected", [
    (0, 0), (1, 0), (2, 1), (4, 1), (5, 1), (14, 1), (15, 2), (24, 2), (25, 3),
    # FER2013's own Training classes: half-up, not Python's round-half-even (4,965 -> 497, not 496).
    (3995, 400), (436, 44), (4097, 410), (7215, 722), (4830, 483), (3171, 317), (4965, 497)])
def test_validation_count_is_a_tenth_rounded_half_up(n, expected):
  assert fer2013.validation_count(n) == expected


def test_image_folders_carve_a_stratified_validation_split(carve_dir):
  root, written = carve_dir
  splits = _splits_of(root)
  assert set(splits) == {"train", "validation", "test", "private_test"}
  train, validation = splits["train"], splits["validation"]
  # Stratified: the hand-counted number per class, so within one of a tenth of it.
  counts = collections.Counter(validation.values())
  assert {label: counts[label] for label in range(7)} == _CARVED_COUNTS
  for label, n in _TRAINING_COUNTS.items():
    assert abs(counts[label] - n / 10) <= 1
  # A carve: disjoint from train, and together they are Training, labels kept.
  assert not set(train) & set(validation)
  assert train | validation == written["train"]
  # The documented rule, not merely some 10%.
  assert set(validation) == _spec_carve(_by_label(written["train"]))
  assert splits["test"] == written["test"]  # PublicTest is the test split.
  assert splits["private_test"] == written["private_test"]


def test_carve_ignores_order_and_location(carve_dir, tmp_path, monkeypatch):
  root, written = carve_dir
  carved = set(_splits_of(root)["validation"])
  # The same images read in the reverse order.
  read = fer2013._iter_layout
  monkeypatch.setattr(fer2013, "_iter_layout", lambda *args: list(read(*args))[::-1])
  assert set(_splits_of(root)["validation"]) == carved
  monkeypatch.undo()
  pairs = list(written["train"].items())
  for seed in range(3):
    order = np.random.default_rng(seed).permutation(len(pairs))
    assert fer2013.carve_validation(pairs[i] for i in order) == carved
  # Another copy: elsewhere, class folders spelled differently, re-encoded: the same images are carved.
  other = _write_carve_folders(tmp_path / "elsewhere" / "copy", class_folder=str.upper, suffix=".bmp")
  stems = lambda keys: {pathlib.PurePosixPath(k).stem for k in keys}
  assert stems(_splits_of(tmp_path / "elsewhere" / "copy")["validation"]) == stems(carved)
  assert stems(other["train"]) == stems(written["train"])


def test_prepared_validation_split_is_the_carve_and_stable_across_builds(carve_dir, tmp_path):
  root, written = carve_dir
  carved = _splits_of(root)["validation"]
  ids = []
  for data_dir in ("tfds_a", "tfds_b"):  # Two independent builds.
    sources = fer2013.prepare(root, tmp_path / data_dir)
    ids.append({split: {key: int(record["label"]) for key, record in _by_id(source).items()}
                for split, source in sources.items()})
  assert ids[0] == ids[1]
  assert ids[0]["validation"] == carved
  assert ids[0]["train"] | ids[0]["validation"] == written["train"]
  assert ids[0]["test"] == written["test"] and ids[0]["private_test"] == written["private_test"]


def test_csv_carves_the_same_way(tmp_path):
  rng = np.random.default_rng(3)
  rows = [(label, None, "Training") for label, n in _TRAINING_COUNTS.items() for _ in range(n)]
  rows += [(label, None, usage) for label in range(7) for usage in ("PublicTest", "PrivateTest")]
  rows = [rows[i] for i in rng.permutation(len(rows))]  # Usages interleaved, classes shuffled.
  expected = _write_csv(tmp_path / "manual", rows)
  source = {split: {key: label for key, (s, _, label) in expected.items() if s == split}
            for split in ("train", "test", "private_test")}
  splits = _splits_of(tmp_path / "manual")
  train, validation = splits["train"], splits["validation"]
  counts = collections.Counter(validation.values())
  assert {label: counts[label] for label in range(7)} == _CARVED_COUNTS
  assert not set(train) & set(validation) and train | validation == source["train"]
  assert set(validation) == _spec_carve(_by_label(source["train"]))  # Keys 'csv:<row>' hashed as they are.
  assert splits["test"] == source["test"] and splits["private_test"] == source["private_test"]
  sources = fer2013.prepare(tmp_path / "manual", tmp_path / "tfds")
  assert {split: set(_by_id(s)) for split, s in sources.items()} == {
      split: set(keys) for split, keys in splits.items()}
