"""FER2013 (or the embedded synthetic faces) for training, from a config: where the data is, its prepared
TFDS sources, the augmented and class-balanced training iterator, and the evaluation batches."""

import functools
import os

import numpy as np

from facemusic_jax import data, emotion
from facemusic_jax.core.errors import UserError
from facemusic_jax.data import augment, fer2013, pipeline, synthetic_faces


def manual_dir(config) -> str:
  if config.dataset == "synthetic":
    return synthetic_faces.write_image_folders(os.path.join(data.cache_dir(), "synthetic_faces"),
                                               train_per_class=config.synthetic_train_per_class,
                                               test_per_class=config.synthetic_test_per_class)
  if config.dataset != "fer2013":
    raise UserError(f"unknown dataset {config.dataset!r}; use --config.dataset=fer2013 or synthetic")
  if not config.data_dir:
    raise UserError("no FER2013 location: pass --config.data_dir=DIR (a folder with fer2013.csv, or with "
                    "train/<class>/ and test/<class>/ image folders)")
  return config.data_dir


def tfds_dir(config, manual: str) -> str:
  return config.tfds_data_dir or data.prepared_dir("fer2013", manual)


@functools.lru_cache(maxsize=4)
def _sources(manual: str, data_dir: str, ferplus: bool):
  return fer2013.prepare(manual, data_dir, ferplus=ferplus)


def sources(config) -> dict:
  manual = manual_dir(config)
  return _sources(manual, tfds_dir(config, manual), bool(config.ferplus))


def source_labels(source) -> np.ndarray:
  return np.array([int(source[i]["label"]) for i in range(len(source))], np.int64)


def source_arrays(source) -> dict[str, np.ndarray]:
  records = [source[i] for i in range(len(source))]
  return {"image": np.stack([r["image"] for r in records]).astype(np.uint8),
          "label": np.array([int(r["label"]) for r in records], np.int32)}


class _Augment:
  """Per-record transform for Grain's random_map (a class so worker processes can unpickle it)."""

  def __init__(self, cfg: augment.AugmentConfig):
    self.cfg = cfg

  def __call__(self, record, rng: np.random.Generator):
    return {"image": augment.augment(np.asarray(record["image"]), rng, self.cfg),
            "label": np.int32(record["label"])}


def train_dataset(config, *, process_batch_size: int):
  """The infinite, augmented training batches of this process, classes oversampled by config.class_balance."""
  train = sources(config)["train"]
  power = config.class_balance
  table = pipeline.balanced_index_table(source_labels(train), power, len(emotion.FER_LABELS)) if power else None
  return pipeline.train_iter_dataset(
      train, seed=config.seed, batch_size=process_batch_size,
      transform=_Augment(augment.from_config(config.augment)), index_table=table,
      num_workers=config.num_workers)


def eval_batches(config, *, process_batch_size: int):
  """What best/ is chosen on: by default the validation split carved out of FER2013 Training, never the test
  split (PublicTest), which is only evaluated once per shipped model and reported."""
  srcs = sources(config)
  split = fer2013.resolve_split(config.eval_split)
  if split not in srcs:
    raise UserError(f"the prepared FER2013 data has no {split!r} split (it has {', '.join(srcs)}); "
                    f"set --config.eval_split")
  return pipeline.eval_batches(source_arrays(srcs[split]), process_batch_size)
