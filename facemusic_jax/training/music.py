"""The Music Transformer task: what the generic loop needs to train on emotion-labelled token datasets."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from facemusic_jax.data import music_pipeline, pipeline
from facemusic_jax.models.music_transformer import MusicTransformer, drop_condition
from facemusic_jax.music import tokenizer

tokenizer_for = tokenizer.for_config


class MusicTask:
  name = "music"
  best_metric = "neg_nll"  # higher is better for the loop's best checkpoint
  throughput_unit = "tok/s"

  def __init__(self, config):
    self.cond_dropout = config.cond_dropout
    self.control_token = config.control_token
    self.null_id = tokenizer_for(config).null_id
    self.attr_dropout = config.get("attr_dropout", 0.0)

  build_model = staticmethod(MusicTransformer.from_config)

  @staticmethod
  def items_per_example(config) -> int:
    return config.seq_len

  def train_dataset(self, config, *, process_batch_size: int):
    source = music_pipeline.sources(config, "train")
    table = None
    if config.balance_power:  # windows balanced over the quadrants (unlabelled pieces count as one group)
      table = pipeline.balanced_index_table(music_pipeline.quadrant_labels(source), config.balance_power)
    return pipeline.train_iter_dataset(
        source, seed=config.seed, batch_size=process_batch_size, index_table=table,
        transform=music_pipeline.TrainTransform(music_pipeline.example_config(config), tokenizer_for(config)),
        num_workers=config.num_workers)

  def write_artifacts(self, config, workdir: str) -> None:
    """What generation needs beside the weights: with attributes, the table of the attributes of the labelled
    training pieces of each class (`attributes.AttributeTable`), from the training split only."""
    names = tuple(config.model.get("attributes", ()))
    if not names:
      return
    music_pipeline.attribute_table(music_pipeline.sources(config, "train"), music_pipeline.example_config(config),
                                   tokenizer_for(config)).save(workdir)

  def eval_batches(self, config, *, process_batch_size: int):
    arrays = music_pipeline.eval_examples(music_pipeline.sources(config, config.eval_split),
                                          music_pipeline.example_config(config),
                                          tokenizer_for(config), max_windows_per_piece=config.eval_windows)
    return pipeline.eval_batches(arrays, process_batch_size)

  def loss(self, model, batch, rng):
    drop_key, cond_key = jax.random.split(rng)
    attr_key = jax.random.fold_in(cond_key, 1)
    # Classifier-free guidance learns the unconditioned model on the same weights: the whole condition (the
    # control token, the vector and the attributes) is dropped for a `cond_dropout` share of the examples.
    guided = jnp.ones_like(batch["cond"])
    if self.cond_dropout:
      guided = jax.random.bernoulli(cond_key, 1.0 - self.cond_dropout, guided.shape)
    keep = batch["cond"] & guided
    inputs = drop_condition(batch["inputs"], keep, self.null_id, self.control_token)
    attrs = batch.get("attrs")
    if attrs is not None:  # attributes are dropped alone too, so emotion without attributes is learned
      attr_keep = guided & jax.random.bernoulli(attr_key, 1.0 - self.attr_dropout, guided.shape)
      attrs = jnp.where(attr_keep[:, None], attrs, 0)
    logits = model(inputs, batch["va"], key_mask=inputs != 0, cond_keep=keep, attrs=attrs,
                   rngs=nnx.Rngs(dropout=drop_key))
    nll, correct, weights = token_stats(logits, batch["targets"], batch["weights"])
    denom = jnp.maximum(weights.sum(), 1.0)
    return nll.sum() / denom, {"accuracy": correct.sum() / denom}

  def eval_outputs(self, model, batch):
    logits = model(batch["inputs"], batch["va"], key_mask=batch["inputs"] != 0, cond_keep=batch["cond"],
                   attrs=batch.get("attrs"))
    nll, correct, weights = token_stats(logits, batch["targets"], batch["weights"])
    return {"nll_sum": nll.sum(-1), "correct": correct.sum(-1), "tokens": weights.sum(-1)}

  def summarize(self, outputs) -> dict:
    tokens = max(float(outputs["tokens"].sum()), 1.0)
    nll = float(outputs["nll_sum"].sum()) / tokens
    return {"nll": nll, "neg_nll": -nll, "perplexity": float(np.exp(nll)),
            "accuracy": float(outputs["correct"].sum()) / tokens, "tokens": int(tokens), "n": len(outputs["tokens"])}


def token_stats(logits, targets, weights):
  """Per-token negative log-likelihood, top-1 hits and weights, all zero where weights are."""
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets) * weights
  correct = (logits.argmax(-1) == targets) * weights
  return nll, correct, weights


def default_config():
  """The loop's keys plus the music task's (configs/music_*.py override)."""
  import ml_collections
  from facemusic_jax.training.loop import default_config as loop_defaults
  c = loop_defaults()
  c.task = "music"
  c.datasets = "music21_corpus"  # comma-separated "name" or "name:manual_dir"
  c.dataset_options = ml_collections.ConfigDict()
  c.vocabulary = "performance"  # tokenizer.VOCABULARIES: "performance" (note-off events) or "notes" (durations)
  c.eval_windows = 4
  c.seq_len = 2048
  c.control_token = True
  c.cond_dropout = 0.1  # classifier-free guidance: drop the whole condition (token and vector) this often
  c.attr_dropout = 0.1  # with model.attributes: drop the attributes alone this often (emotion without them)
  c.balance_power = 1.0  # 0: windows as the data has them; 1: every quadrant as often as the largest
  # > 0: training windows of unlabelled pieces get the symbolic estimator's condition when it gives their
  # quadrant at least this probability (music_pipeline.WeakLabeller); 0: they stay unconditioned.
  c.weak_min_fit = 0.0
  c.augment = ml_collections.ConfigDict(dict(max_transpose=3, max_stretch=0.05))
  c.model = ml_collections.ConfigDict(dict(d_model=512, num_layers=8, num_heads=8, d_ff=2048,
                                           max_relative_distance=2048, dropout=0.1, conditioning="add",
                                           dtype="float32", attributes=()))
  c.learning_rate = 3e-4
  c.weight_decay = 0.01
  c.grad_clip_norm = 1.0
  c.warmup_steps = 2000
  c.end_lr_factor = 0.1
  c.batch_size = 32
  c.eval_batch_size = 32
  c.num_train_steps = 100_000
  c.eval_every_steps = 2000
  return c
