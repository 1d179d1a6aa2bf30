"""`python -m facemusic_jax.label`; the command lives in facemusic_jax/cli/label.py."""

from facemusic_jax.cli import label as _command

__doc__ = _command.__doc__  # what --help shows

if __name__ == "__main__":
  _command.run()
