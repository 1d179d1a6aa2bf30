"""`python -m facemusic_jax.train`; the command lives in facemusic_jax/cli/train.py."""

from facemusic_jax.cli import train as _command

__doc__ = _command.__doc__  # what --help shows

if __name__ == "__main__":
  _command.run()
