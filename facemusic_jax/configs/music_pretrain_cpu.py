"""Stage 1 of the performance-vocabulary recipe (EMOPIA's own: pretrain on pop piano, then fine-tune on EMOPIA): the CPU-sized
Music Transformer learns piano on Pop1K7 + POP909, unconditioned (the null control). Pieces that contain an
EMOPIA validation clip are left out (by note content), so the fine-tuned model is judged on unseen songs.

  python -m facemusic_jax.train --config configs/music_pretrain_cpu.py --workdir workdirs/music_pretrain_cpu

About 2 hours on 2 CPU cores; stage 2 is configs/music_cpu.py. The previously shipped weights were trained in two
sessions: 1,200 steps with num_train_steps=1200, then resumed with 2,400 (so the cosine schedule jumped from
its end back to its midpoint at step 1,200); validation NLL 3.165 at step 1,200, then see metrics.jsonl.
"""

from facemusic_jax.training.music import default_config

EMOPIA = "../shared/data/emopia"


def get_config():
  c = default_config()
  c.datasets = "pop1k7:../shared/data/pop1k7,pop909:../shared/data/pop909"
  c.dataset_options.pop1k7 = dict(emopia_dir=EMOPIA)
  c.dataset_options.pop909 = dict(emopia_dir=EMOPIA)
  # Both stages' architecture (stage 2 loads these weights); distances up to stage 2's 1,024-token windows.
  c.model.update(d_model=256, num_layers=4, num_heads=8, d_ff=1024, max_relative_distance=1024, dropout=0.1)
  c.balance_power = 0.0  # nothing is labelled
  c.seq_len = 512
  c.batch_size = 8
  c.eval_batch_size = 32
  c.eval_windows = 1
  c.learning_rate = 1e-3
  c.warmup_steps = 200
  c.num_train_steps = 2400  # ~1,900 training tokens/s on 2 cores (bench train_music): 9.8M tokens
  c.eval_every_steps = 400
  c.checkpoint_every_steps = 200
  c.log_every_steps = 50
  c.num_workers = 1
  return c
