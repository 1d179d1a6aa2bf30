"""Stage 2 of the recipe at paper scale, for accelerators: the pretrained 6-layer, 512-wide model
(configs/music_pretrain.py) fine-tuned with emotion conditions on EMOPIA's training songs, 2,048-token windows
(every EMOPIA clip whole), bf16 compute, classifier-free guidance dropout, and the musical attributes of
configs/music_attr_cpu.py (density, register, velocity, mode; learned here in one fine-tuning stage).

  python -m facemusic_jax.train --config configs/music_pretrain.py --workdir workdirs/music_pretrain
  python -m facemusic_jax.train --config configs/music_transformer.py --workdir workdirs/music

300 steps x 32 clips: about 10 passes over EMOPIA's ~960 training clips, a minute or two of H200 time by the
FLOPs (unmeasured). With MetaMIDI labelled
by `python -m facemusic_jax.label`, add it: --config.datasets=emopia:../shared/data/emopia,metamidi:/data/mmd
"""

from facemusic_jax.training import load_config


def get_config():
  c = load_config("music_notes_cpu")  # same data, vocabulary, conditioning and balancing
  stage1 = load_config("music_pretrain")
  c.model = stage1.model
  c.model.attributes = ("density", "register", "velocity", "mode")
  c.attr_dropout = 0.1
  c.init_from = "workdirs/music_pretrain"
  c.seq_len = 2048
  c.batch_size = 32
  c.eval_batch_size = 32
  c.eval_windows = 1
  c.learning_rate = 2e-4
  c.warmup_steps = 50
  c.num_train_steps = 300
  c.eval_every_steps = 50
  c.checkpoint_every_steps = 50
  c.log_every_steps = 10
  c.num_workers = 8
  return c
