"""Stage 3 of the shipped recipe: the emotion-conditioned model of configs/music_notes_cpu.py, fine-tuned to
also follow musical attributes (note density, register, velocity and mode of each window; data/attributes.py;
EmoGen, Kang et al. 2023) on EMOPIA's training songs. The new attribute embeddings start at zero, so training
starts from the model it refines. The shipped release/music_cpu is trained with it (from the stage-2 model
that was shipped before it, kept as workdirs/music_notes_cpu or release history).

  python -m facemusic_jax.train --config configs/music_attr_cpu.py --workdir workdirs/music_attr_cpu \
      --config.init_from=workdirs/music_notes_cpu

At generation a class asks for the attributes of one real training piece of that class (the table the run
writes as attributes.json beside config.json). About 30 minutes on 2 CPU cores.
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
