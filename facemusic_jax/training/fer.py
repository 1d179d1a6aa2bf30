"""The FER task: what the generic loop needs to train VGG16 on FER2013 (or the embedded synthetic faces)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from facemusic_jax import emotion
from facemusic_jax.core.errors import UserError
from facemusic_jax.core.metrics import classification_report
from facemusic_jax.data import fer_pipeline
from facemusic_jax.face.classify import predict_outputs
from facemusic_jax.models.vgg import VGG


class FerTask:
  name = "fer"
  best_metric = "accuracy"
  throughput_unit = "img/s"

  def __init__(self, config):
    self.tta = config.tta
    self.label_smoothing = config.label_smoothing
    self.mixup_alpha = float(config.get("mixup_alpha") or 0.0)
    if self.mixup_alpha < 0:
      raise UserError(f"--config.mixup_alpha={self.mixup_alpha}: use 0 (off) or a Beta parameter > 0, e.g. 0.2")

  @staticmethod
  def items_per_example(config) -> int:
    return 1

  build_model = staticmethod(VGG.from_config)

  def train_dataset(self, config, *, process_batch_size: int):
    return fer_pipeline.train_dataset(config, process_batch_size=process_batch_size)

  def eval_batches(self, config, *, process_batch_size: int):
    return fer_pipeline.eval_batches(config, process_batch_size=process_batch_size)

  def loss(self, model, batch, rng):
    images, labels = batch["image"], batch["label"]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, len(emotion.FER_LABELS)), self.label_smoothing)
    if self.mixup_alpha:  # a separate stream, so runs without mixup draw their dropout exactly as before
      lam = jax.random.beta(jax.random.fold_in(rng, 1), self.mixup_alpha, self.mixup_alpha)
      images, targets = mixup(images, targets, lam)
    logits = model(images, rngs=nnx.Rngs(dropout=rng))
    loss = optax.softmax_cross_entropy(logits, targets).mean()
    return loss, {"accuracy": (logits.argmax(-1) == labels).mean()}

  def eval_outputs(self, model, batch):
    return predict_outputs(model, batch["image"], self.tta) | {"label": batch["label"]}

  def summarize(self, outputs) -> dict:
    report = classification_report(outputs["label"], outputs["pred"], emotion.FER_LABELS)
    nll = -np.log(np.maximum(outputs["probs"][np.arange(len(outputs["label"])), outputs["label"]], 1e-12))
    report["loss"] = float(nll.mean())
    return report


def mixup(images, targets, lam):
  """Mixup (Zhang et al., 2018) within the batch: each example blended with the one before it (the batch rolled
  by one), images in pixel space and soft targets alike, by the same weight lam in [0, 1]."""
  blend = lambda a: lam * a + (1.0 - lam) * jnp.roll(a, 1, axis=0)
  return blend(images.astype(jnp.float32)), blend(targets)


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
  c.mixup_alpha = 0.0  # > 0: mixup with lam ~ Beta(alpha, alpha) per batch (0.2 is the usual choice)
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
