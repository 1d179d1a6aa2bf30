"""`python -m facemusic_jax.evaluate`; the command lives in facemusic_jax/cli/evaluate.py."""

from facemusic_jax.cli import evaluate as _command

__doc__ = _command.__doc__  # what --help shows

if __name__ == "__main__":
  _command.run()
