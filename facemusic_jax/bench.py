"""`python -m facemusic_jax.bench`; the command lives in facemusic_jax/cli/bench.py."""

from facemusic_jax.cli import bench as _command

__doc__ = _command.__doc__  # what --help shows

if __name__ == "__main__":
  _command.run()
