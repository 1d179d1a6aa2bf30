"""The music emotion classifier task: windows of labelled pieces -> their EMOPIA quadrant.

The same data as the Music Transformer's (MusicTask's sources, quadrant-balanced windows, transposition and
time-stretch); the control token is replaced by the null control, so the label is never an input, and
unlabelled windows carry no weight. `music.evaluation` uses the trained classifier as a second judge of generated
music, beside the symbolic estimator.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from facemusic_jax.models.music_transformer import MusicEmotionClassifier, classifier_inputs
from facemusic_jax.training import music


class MusicEmotionTask(music.MusicTask):
  name = "music_emotion"
  best_metric = "accuracy"
  throughput_unit = "tok/s"

  build_model = staticmethod(MusicEmotionClassifier.from_config)

  def loss(self, model, batch, rng):
    inputs, mask = classifier_inputs(batch["inputs"], self.null_id)
    logits = model(inputs, mask, rngs=nnx.Rngs(dropout=rng))
    labels = jnp.maximum(batch["quadrant"] - 1, 0)
    weights = (batch["quadrant"] > 0).astype(jnp.float32)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, labels) * weights
    denom = jnp.maximum(weights.sum(), 1.0)
    return nll.sum() / denom, {"accuracy": ((logits.argmax(-1) == labels) * weights).sum() / denom}

  def eval_outputs(self, model, batch):
    inputs, mask = classifier_inputs(batch["inputs"], self.null_id)
    return {"probs": jax.nn.softmax(model(inputs, mask)), "quadrant": batch["quadrant"]}

  def summarize(self, outputs) -> dict:
    labelled = outputs["quadrant"] > 0
    labels, probs = outputs["quadrant"][labelled] - 1, outputs["probs"][labelled]
    hits = probs.argmax(-1) == labels
    per_q = {f"accuracy_Q{q + 1}": float(hits[labels == q].mean()) for q in range(4) if (labels == q).any()}
    nll = -np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-12))
    return {"accuracy": float(hits.mean()) if len(hits) else 0.0, "nll": float(nll.mean()) if len(nll) else 0.0,
            "n": int(labelled.sum()), **per_q}
