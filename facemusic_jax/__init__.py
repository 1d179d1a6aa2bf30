"""facemusic_jax: face photo -> facial emotion -> Russell valence-arousal vector -> emotion-conditioned music."""

import contextlib as _contextlib
import io as _io
import os as _os

__version__ = "0.1.0"

# The shipped checkpoints and estimator weights (package data, so they travel with a non-editable install).
RELEASE_DIR = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "release")

# pyfluidsynth (imported by pretty_midi) prints "'fluidsynth' was found at ..." to stdout at import
# time whenever $CI is set, which corrupts the one-JSON-object output of our `--json` commands.
# Import it once here, silenced, so every later import finds it in sys.modules.
with _contextlib.redirect_stdout(_io.StringIO()):
  try:
    import fluidsynth as _fluidsynth  # noqa: F401
  except (ImportError, OSError):  # no libfluidsynth: audio rendering reports it when asked for
    pass
