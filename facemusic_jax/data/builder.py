"""What every dataset builder of the project shares: TFDS without downloads or TensorFlow, one convention for
counting what was kept and what was skipped, and one way to prepare a dataset once and reuse it.

Counts live in one `collections.Counter` per build: `ok/<split>` for each kept example and `skipped/<reason>`
for each file or row left out (a builder may add its own keys). They are logged after a build and saved in
the dataset's metadata (`info.metadata["counts"]`), so a reused dataset reports them too.
"""

import collections
import os

import tensorflow_datasets as tfds
from absl import logging

from facemusic_jax.core.errors import UserError
from facemusic_jax.data import prepare_builder


def skip(stats: collections.Counter, reason: str, n: int = 1) -> None:
  if n:
    stats[f"skipped/{reason}"] += n


def summary(stats, prefix: str) -> str:
  """'a=1, b=2' of the counts under `prefix` ('ok/' or 'skipped/')."""
  return ", ".join(f"{key[len(prefix):]}={n}" for key, n in sorted(stats.items()) if key.startswith(prefix))


def log_counts(name: str, source, stats) -> None:
  logging.info("%s from %s: %s", name, source, summary(stats, "ok/") or "no examples")
  skipped = summary(stats, "skipped/")
  if skipped:
    logging.warning("%s from %s: skipped %s", name, source, skipped)


def nothing_found(name: str, source, stats, expected: str, what: str = "example") -> UserError:
  return UserError(f"{source}: no valid {name} {what} ({summary(stats, 'skipped/') or 'no files'}); "
                   f"expected {expected}")


class LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A TFDS builder over a manual dir: nothing to download, features built here, counts saved as metadata.

  Subclasses set `_DESCRIPTION` and `_features()` and fill `self.stats` while they generate.
  """

  # Nothing is downloaded, so there are no checksums. Saying so up front also avoids TFDS 4.9.10's search
  # for a checksums file beside a packaged builder, which imports `importlib_resources`.
  url_infos = None
  _DESCRIPTION = ""
  _SUPERVISED_KEYS = None
  _HOMEPAGE = None

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.stats = collections.Counter()

  def _features(self) -> tfds.features.FeaturesDict:
    raise NotImplementedError

  def _info(self) -> tfds.core.DatasetInfo:
    # Built directly: `dataset_info_from_configs` looks for metadata files beside the builder's module.
    return tfds.core.DatasetInfo(builder=self, description=self._DESCRIPTION, features=self._features(),
                                 supervised_keys=self._SUPERVISED_KEYS, homepage=self._HOMEPAGE,
                                 metadata=tfds.core.MetadataDict())

  def _download_and_prepare(self, dl_manager, download_config):
    super()._download_and_prepare(dl_manager, download_config)
    # After generation: the counts fill while the examples are generated (or come from Beam's metrics).
    self.info.metadata["counts"] = dict(self.stats)
    self.log_counts(self._source_name(dl_manager), self.stats)

  def _source_name(self, dl_manager) -> str:
    return str(dl_manager.manual_dir)

  def log_counts(self, source, stats) -> None:
    log_counts(self.name, source, stats)


def prepare(builder: LocalBuilder, manual_dir, expected: str, **download_options) -> dict:
  """Builds `builder` from `manual_dir` once (a one-line error when the folder is missing or empty; `expected`
  says what it should hold) and returns {split: random-access source}. An already prepared dataset is reused
  and its saved counts logged; the manual dir is then not read."""
  if builder.is_prepared():
    logging.info("%s (%s): reusing %s", builder.name, builder.builder_config.name, builder.data_dir)
    builder.log_counts(builder.data_dir, collections.Counter(builder.info.metadata.get("counts", {})))
  else:
    manual = os.fspath(manual_dir) if manual_dir else None
    if manual is not None and "://" not in manual and (not os.path.isdir(manual) or not os.listdir(manual)):
      raise UserError(f"{manual}: missing or empty folder; expected {expected}")
    prepare_builder(builder, tfds.download.DownloadConfig(manual_dir=manual, **download_options))
  return builder.as_data_source()
