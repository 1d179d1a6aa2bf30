"""Datasets, augmentation, tokenization and input pipelines."""

import contextlib
import hashlib
import os
import sys


def cache_dir() -> str:
  """Where generated and prepared data live ($FACEMUSIC_CACHE, default ~/.cache/facemusic_jax)."""
  return os.path.expanduser(os.environ.get("FACEMUSIC_CACHE", "~/.cache/facemusic_jax"))


def prepared_dir(name: str, manual_dir: str) -> str:
  """The TFDS data_dir for dataset `name` built from `manual_dir`: one folder per source folder, so copies
  built from different sources never mix."""
  key = hashlib.sha1(os.path.abspath(manual_dir or name).encode()).hexdigest()[:10]
  base = os.path.basename(os.path.normpath(manual_dir)) if manual_dir else name
  return os.path.join(cache_dir(), "tfds", f"{base}-{key}")


def prepare_builder(builder, download_config) -> None:
  """Builds a TFDS dataset with TFDS's progress messages on stderr: it prints them to stdout, where they
  would break a command's `--json` output on the run that prepares the data."""
  with contextlib.redirect_stdout(sys.stderr):
    builder.download_and_prepare(download_config=download_config)
