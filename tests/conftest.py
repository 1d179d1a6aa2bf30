"""Shared fixtures. Every test runs on 8 virtual CPU devices (the Makefile sets XLA_FLAGS)."""

import os
import sys
import tempfile

import pytest

# Generated fixtures (synthetic faces, prepared TFDS copies) go to one temp cache per test process (each
# pytest-xdist worker its own, so no two prepare the same dataset at once); set before any facemusic_jax
# module reads it.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER or "FACEMUSIC_CACHE" not in os.environ:
  os.environ["FACEMUSIC_CACHE"] = tempfile.mkdtemp(prefix=f"facemusic_cache_{_WORKER or 'main'}_")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# The suite is compile-bound, and many tests compile the same programs again (the fer_tiny train step in each
# CLI run of a resume test, the same init_state in several checkpoint tests): one persistent XLA compilation
# cache per test process, inherited by every subprocess it starts, compiles each program once. A fresh
# folder per process (never the user's cache), so nothing compiled by another jax or source version is read.
os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix=f"facemusic_xla_cache_{_WORKER or 'main'}_")
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.1"
if "jax" in sys.modules:  # a plugin imported jax before this file: its config already read the environment
  import jax
  jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str, **overrides):
  """configs/<name>.py's get_config(); dotted keys ("model.width") reach nested fields."""
  from facemusic_jax.training import load_config as load
  config = load(name)
  for key, value in overrides.items():
    target = config
    *path, leaf = key.split(".")
    for p in path:
      target = target[p]
    target[leaf] = value
  return config


def run_module(module: str, *args, timeout=300, env=None):
  """Runs `python -m module args` from the repo root like a user would; returns CompletedProcess."""
  import subprocess
  full_env = dict(os.environ, **(env or {}))
  return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=full_env,
                        capture_output=True, text=True, timeout=timeout)



def _untrained_music_checkpoint(tmp_path_factory, **overrides):
  from flax import nnx
  from facemusic_jax.core import checkpointing
  from facemusic_jax.models.music_transformer import MusicTransformer
  workdir = str(tmp_path_factory.mktemp("music_ckpt"))
  config = load_config("music_tiny", **overrides)
  model = MusicTransformer.from_config(config, nnx.Rngs(0))
  checkpointing.save_config(workdir, config)
  best = checkpointing.best_manager(workdir, "neg_nll")
  checkpointing.save_best(best, 1, nnx.state(model), {"neg_nll": -5.0})
  best.close()
  return workdir


@pytest.fixture(scope="session")
def music_checkpoint(tmp_path_factory):
  """config.json + best/ with a freshly initialized music_tiny model: the layout a training run writes."""
  return _untrained_music_checkpoint(tmp_path_factory)


@pytest.fixture(scope="session")
def notes_checkpoint(tmp_path_factory):
  """The same in the note-duration vocabulary."""
  return _untrained_music_checkpoint(tmp_path_factory, vocabulary="notes")


def audio_available() -> bool:
  """Whether pyfluidsynth finds libfluidsynth, so WAV files can be rendered."""
  try:
    import fluidsynth  # noqa: F401
    return True
  except (ImportError, OSError):
    return False
