"""configs/music_tiny.py conditioned on musical attributes too (tests)."""

from facemusic_jax.training import load_config


def get_config():
  c = load_config("music_tiny")
  c.model.attributes = ("density", "register", "velocity", "mode")
  c.attr_dropout = 0.1
  return c
