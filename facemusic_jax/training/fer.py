"""The FER task: what the generic loop needs to train VGG16 on FER2013 (or the embedded synthetic faces)."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from facemusic_jax import emotion
from facemusic_jax import data
from facemusic_jax.data import augment, fer2013, pipeline, synthetic_faces
from facemusic_jax.errors import UserError
from facemusic_jax.inference import predict_outputs
from facemusic_jax.metrics import classification_report
from facemusic_jax.models.vgg import VGG

# ------------------------------------------------------------------------------------------ data


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


# ------------------------------------------------------------------------------------------ task


class FerTask:
  name = "fer"
  best_metric = "accuracy"
  throughput_unit = "img/s"

  def __init__(self, config):
    self.tta = config.tta
    self.label_smoothing = config.label_smoothing

  @staticmethod
  def items_per_example(config) -> int:
    return 1

  build_model = staticmethod(VGG.from_config)

  def train_dataset(self, config, *, process_batch_size: int):
    train = sources(config)["train"]
    power = config.class_balance
    table = pipeline.balanced_index_table(source_labels(train), power, len(emotion.FER_LABELS)) if power else None
    return pipeline.train_iter_dataset(
        train, seed=config.seed, batch_size=process_batch_size,
        transform=_Augment(augment.from_config(config.augment)), index_table=table,
        num_workers=config.num_workers)

  def eval_batches(self, config, *, process_batch_size: int):
    # What best/ is chosen on: by default the validation split carved out of FER2013 Training, never the
    # test split (PublicTest), which is only evaluated once per shipped model and reported.
    srcs = sources(config)
    split = fer2013.resolve_split(config.eval_split)
    if split not in srcs:
      raise UserError(f"the prepared FER2013 data has no {split!r} split (it has {', '.join(srcs)}); "
                      f"set --config.eval_split")
    return pipeline.eval_batches(source_arrays(srcs[split]), process_batch_size)

  def loss(self, model, batch, rng):
    logits = model(batch["image"], rngs=nnx.Rngs(dropout=rng))
    labels = batch["label"]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), self.label_smoothing)
    loss = optax.softmax_cross_entropy(logits, targets).mean()
    return loss, {"accuracy": (logits.argmax(-1) == labels).mean()}

  def eval_outputs(self, model, batch):
    return predict_outputs(model, batch["image"], self.tta) | {"label": batch["label"]}

  def summarize(self, outputs) -> dict:
    report = classification_report(outputs["label"], outputs["pred"], emotion.FER_LABELS)
    nll = -np.log(np.maximum(outputs["probs"][np.arange(len(outputs["label"])), outputs["label"]], 1e-12))
    report["loss"] = float(nll.mean())
    return report


def default_config():
  """The loop's keys plus the FER task's, with the accelerator recipe's values (configs/ override)."""
  import ml_collections
  from facemusic_jax.training.loop import default_config as loop_defaults
  c = loop_defaults()
  c.task = "fer"
  # eval_split stays the loop's "validation": the ~10% of FER2013 Training carved out by data/fer2013.py. It
  # chooses best/ (and the LR plateau); tta and every other setting are tuned on it too. "test" is PublicTest,
  # evaluated once per shipped model with `evaluate fer` and reported.
  # Data: a FER2013 folder (fer2013.csv, or train/ + test/ image folders) or the embedded synthetic faces.
  c.dataset = "fer2013"
  c.data_dir = ""
  c.tfds_data_dir = ""  # default: ~/.cache/facemusic_jax/tfds/<folder>-<hash>
  c.ferplus = False
  c.synthetic_train_per_class = 60
  c.synthetic_test_per_class = 15
  c.class_balance = 0.5  # 0 natural distribution ... 1 every class oversampled to the largest
  c.augment = ml_collections.ConfigDict(dict(flip=True, max_rotation_deg=10.0, max_shift=0.2, max_zoom=0.0,
                                             erase_prob=0.5, erase_area=(0.02, 0.2)))
  c.tta = "ten_crop"
  c.label_smoothing = 0.0
  c.model = ml_collections.ConfigDict(dict(width=1.0, head_dims=(4096, 4096), dropout=0.5, dtype="float32"))
  # The paper: SGD Nesterov 0.01, momentum 0.9, wd 1e-4, LR x0.75 on plateau, batch 64, 300 epochs.
  c.optimizer = "sgd"
  c.learning_rate = 0.01
  c.weight_decay = 1e-4
  c.schedule = "plateau"
  c.plateau_factor = 0.75
  c.plateau_patience = 5
  c.batch_size = 64
  # 404 steps = one epoch of the 25,836 train images (FER2013's 28,709 Training minus the 2,873 carved out
  # for validation).
  c.num_train_steps = 300 * 404
  c.eval_every_steps = 404
  c.checkpoint_every_steps = 404
  return c
