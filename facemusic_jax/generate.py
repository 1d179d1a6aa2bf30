"""`python -m facemusic_jax.generate`; the command lives in facemusic_jax/cli/generate.py."""

from facemusic_jax.cli import generate as _command

__doc__ = _command.__doc__  # what --help shows

if __name__ == "__main__":
  _command.run()
