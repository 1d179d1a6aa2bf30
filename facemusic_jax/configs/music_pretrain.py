"""Stage 1 of the recipe at paper scale, for accelerators: 6 layers, 512 wide, 8 heads, 2,048-token windows,
bf16 compute, the note-duration vocabulary, unconditioned on Pop1K7 + POP909 (pieces holding an EMOPIA
validation clip left out).

  python -m facemusic_jax.train --config configs/music_pretrain.py --workdir workdirs/music_pretrain

3,000 steps x 32 windows x 2,048 tokens = 197M tokens (about 14 passes over the ~14M tokens of the two
corpora). Expected time, from the FLOPs (about 0.2 GFLOP per trained token) at 30% of an H200's bf16 peak:
a few minutes; unmeasured (no accelerator was lent when this was written). Stage 2: configs/music_transformer.py.
"""

from facemusic_jax.training import load_config


def get_config():
  c = load_config("music_pretrain_notes_cpu")  # same data, options and vocabulary ("notes")
  c.model.update(d_model=512, num_layers=6, num_heads=8, d_ff=2048, max_relative_distance=2048, dropout=0.1,
                 dtype="bfloat16")
  c.seq_len = 2048
  c.batch_size = 32
  c.eval_batch_size = 32
  c.eval_windows = 2
  c.learning_rate = 5e-4
  c.warmup_steps = 500
  c.num_train_steps = 3000
  c.eval_every_steps = 500
  c.checkpoint_every_steps = 500
  c.log_every_steps = 50
  c.num_workers = 8
  return c
