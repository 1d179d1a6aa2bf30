"""`python -m facemusic_jax.demo`; the command lives in facemusic_jax/cli/demo.py."""

from facemusic_jax.cli import demo as _command

__doc__ = _command.__doc__  # what --help shows

if __name__ == "__main__":
  _command.run()
