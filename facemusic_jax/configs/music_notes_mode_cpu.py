"""configs/music_notes_cpu.py with EMOPIA's valence placed by mode: within its quadrant's valence half, each
clip's valence follows its Krumhansl-Schmuckler mode strength (more minor, lower), as its arousal follows its
note rate. The control token stays the quadrant; the continuous vector now carries mode, the symbolic cue of
valence that the note-rate placement left out (the estimator heard arousal but not valence in the
note-rate model's music).

  python -m facemusic_jax.train --config configs/music_notes_mode_cpu.py --workdir workdirs/music_notes_mode_cpu

About 45 minutes on 2 CPU cores after stage 1 (configs/music_pretrain_notes_cpu.py).

Measured against configs/music_notes_cpu.py (trained the same way, same stage 1), and not shipped:
- EMOPIA validation NLL per note: 11.063 vs 11.062 (scripts/heldout_nll.py --seq-len 1024);
- the model as a classifier of the validation windows (--condition classify): .58 vs .54, within noise;
- the shipping rule (music/generation.py's, seed 100, 8 pieces per class, guidance 1 / 2 / 3): quadrant accuracy
  .525 / .375 / .600 vs .55 / .60 / .625, so the rule, fixed before the run, kept the note-rate model.
"""

from facemusic_jax.training import load_config


def get_config():
  c = load_config("music_notes_cpu")
  c.dataset_options = {"emopia": {"placement": "note_rate_mode"}}
  return c
