"""A seconds-long music emotion classifier for tests: configs/music_tiny.py's data and size, the
music_emotion task."""

from facemusic_jax.training import load_config


def get_config():
  c = load_config("music_tiny")
  c.task = "music_emotion"
  c.cond_dropout = 0.0
  return c
