"""Weak labels from the start: stage 1 of the shipped recipe (configs/music_pretrain_notes_cpu.py: Pop1K7 + POP909,
the notes vocabulary, pieces that contain an EMOPIA validation clip left out) with each training window conditioned
by the symbolic estimator's reading of it (music_pipeline.WeakLabeller; the estimator is trained on EMOPIA's
training songs only) when it gives the window's quadrant at least .5, and unconditioned otherwise. Held-out windows
are never labelled, so validation NLL is the unconditioned model's, as in the shipped stage 1. The question: does
170 hours of weakly conditioned piano teach the condition better than EMOPIA's 11 hours in stage 2 alone? (Fine-tuning
the shipped model on weak labels for 500 steps, configs/music_weak_cpu.py, improved held-out NLL and the second
judge but not the estimator.) Stage 2 is the shipped one, from these weights:

  python -m facemusic_jax.train --config configs/music_pretrain_weak_cpu.py --workdir workdirs/music_pretrain_weak_cpu
  python -m facemusic_jax.train --config configs/music_notes_cpu.py --workdir workdirs/music_weak_notes_cpu \\
      --config.init_from=workdirs/music_pretrain_weak_cpu

Stage 1 resumes from its workdir when interrupted.
"""

from facemusic_jax.training import load_config


def get_config():
  c = load_config("music_pretrain_notes_cpu")
  c.weak_min_fit = 0.5
  c.cond_dropout = 0.15  # as in stage 2: the unconditioned branch for guidance is learned throughout
  return c
