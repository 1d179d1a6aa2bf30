"""Weak labels: the shipped release/music_cpu fine-tuned further on EMOPIA's training songs together with Pop1K7
and POP909, whose training windows are labelled on the fly by the symbolic estimator (trained on EMOPIA's
training songs only) when it gives a window's quadrant at least .5 probability (music_pipeline.WeakLabeller;
about 85% of Pop1K7 windows: mostly Q1 and Q2, few Q3 or Q4). The pop corpora are ~170 hours against EMOPIA's
~11; the question is whether more (weakly) conditioned piano teaches the condition better than EMOPIA alone.
Pieces that contain an EMOPIA validation clip are left out, and `best/` keeps the last weights (the validation
split, which mixes EMOPIA's validation songs with the pop corpora's, reports and chooses nothing).

  python -m facemusic_jax.train --config configs/music_weak_cpu.py --workdir workdirs/music_weak_cpu

Every window group (EMOPIA's four quadrants and the unlabelled corpora) is drawn equally often. 42 minutes on 2
CPU cores shared with another training run. Because the symbolic estimator labels these windows, its score of
the resulting model is partly its own taste: the second judge (release/music_emotion) is the independent reading.

Outcome (README, "Weak labels"): held-out NLL 3.122 vs the shipped 3.138 nats/token, the model as a classifier
.60 vs .54; on seed 100 the second judge .62 vs .50 but the estimator .75 vs .85, so not shipped.
"""

from facemusic_jax.training import load_config

EMOPIA = "../shared/data/emopia"


def get_config():
  c = load_config("music_notes_cpu")
  c.datasets = f"emopia:{EMOPIA},pop1k7:../shared/data/pop1k7,pop909:../shared/data/pop909"
  c.dataset_options = {"pop1k7": dict(emopia_dir=EMOPIA), "pop909": dict(emopia_dir=EMOPIA)}
  c.init_from = "facemusic_jax/release/music_cpu"
  c.weak_min_fit = 0.5
  c.select_checkpoint = "last"
  c.learning_rate = 2e-4
  c.warmup_steps = 50
  c.num_train_steps = 500
  c.eval_every_steps = 500
  c.checkpoint_every_steps = 100
  c.eval_windows = 1
  return c
