"""Stage 1 of the shipped recipe (the note-duration vocabulary): configs/music_pretrain_cpu.py (same model, data and EMOPIA exclusion) in
the "notes" vocabulary (note-on + duration; see facemusic_jax/music/tokenizer.py), with one cosine schedule.

  python -m facemusic_jax.train --config configs/music_pretrain_notes_cpu.py --workdir workdirs/music_pretrain_notes_cpu

Why: the performance-vocabulary model must remember every sounding note until it emits its note-off; the
2,400-step CPU model does that badly (generated notes ring 3.5-5.6 s at the 90th percentile against EMOPIA's
1.6 s), and capping its notes at 1 s after sampling moved the estimator's happiness fit from .11 to .39 on
seed-100 pieces: the held notes, not the condition, decided what the estimator heard. A duration token decides
a note's length when it starts. About 80 minutes on 2 CPU cores; it resumes from its workdir. Stage 2:
configs/music_notes_cpu.py.
"""

from facemusic_jax.training import load_config


def get_config():
  c = load_config("music_pretrain_cpu")
  c.vocabulary = "notes"
  c.num_train_steps = 2400  # the shipped performance model's steps; ~2 s per step (8 x 512 tokens) on 2 cores
  return c
