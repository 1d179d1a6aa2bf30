"""`python -m facemusic_jax.predict`; the command lives in facemusic_jax/cli/predict.py."""

from facemusic_jax.cli import predict as _command

__doc__ = _command.__doc__  # what --help shows

if __name__ == "__main__":
  _command.run()
