"""Stage 2 of the shipped recipe: configs/music_cpu.py (EMOPIA's training songs, conditions, guidance
dropout, 1,024-token windows) fine-tuned from configs/music_pretrain_notes_cpu.py, in the "notes" vocabulary
(note-on + duration). The shipped release/music_cpu is trained with it.

  python -m facemusic_jax.train --config configs/music_pretrain_notes_cpu.py --workdir workdirs/music_pretrain_notes_cpu
  python -m facemusic_jax.train --config configs/music_notes_cpu.py --workdir workdirs/music_notes_cpu

About 45 minutes on 2 CPU cores after stage 1.
"""

from facemusic_jax.training import load_config


def get_config():
  c = load_config("music_cpu")
  c.vocabulary = "notes"
  c.init_from = "workdirs/music_pretrain_notes_cpu"
  return c
