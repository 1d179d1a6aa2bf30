"""Experimental stage 3: the emotion-conditioned model of configs/music_notes_cpu.py fine-tuned to also follow
musical attributes (note density, register, velocity and mode of each window; music/attributes.py; EmoGen,
Kang et al. 2023) on EMOPIA's training songs. The new attribute embeddings start at zero, so training starts
from the model it refines. Not shipped: neither setting tried here gave a model worth evaluating.

  python -m facemusic_jax.train --config configs/music_attr_cpu.py --workdir workdirs/music_attr_cpu \
      --config.init_from=facemusic_jax/release/music_cpu

Measured on 2 CPU cores, ~0.3 steps/s. At the base learning rate (no lr_multipliers) the attribute embeddings
reached norm .025 by step 250 (token embeddings: 1.1) and generation ignored them: density bin 1 vs 6 gave 1.7
vs 2.6 notes/s, velocity bin 1 vs 6 gave 47.9 vs 48.2. With the multipliers below (20x on the attribute
embeddings and the vector projection) the EMOPIA validation NLL went from 3.137 to 3.383 nats/token by step
100, and the training loss rose from 3.17 to 3.38: the stage was stopped there. Four coarse bins per window
carry few bits per token, so fine-tuning on EMOPIA's 960 clips gives them little to learn from; EmoGen
learns attributes from the start of pretraining on a large corpus, which is the next thing to try.
At generation a class asks for the attributes of one real training piece of that class (the table the run
writes as attributes.json beside config.json).
"""

from facemusic_jax.training import load_config


def get_config():
  c = load_config("music_notes_cpu")
  c.init_from = "workdirs/music_notes_cpu"
  c.model.attributes = ("density", "register", "velocity", "mode")
  c.attr_dropout = 0.1  # emotion alone (no attributes) stays learned
  c.learning_rate = 3e-4
  # The conditioning parameters learn 20x faster: zero-init attribute embeddings at the base rate reached
  # norm .025 in 250 steps (token embeddings: 1.1) and the model did not follow them (tried and measured).
  c.lr_multipliers = {"attr_embed": 20.0, "cond_proj": 20.0}
  c.warmup_steps = 50
  c.num_train_steps = 400
  c.eval_every_steps = 100
  c.checkpoint_every_steps = 100
  c.select_checkpoint = "last"  # EMOPIA's validation songs report; they choose nothing (not even the step)
  return c
