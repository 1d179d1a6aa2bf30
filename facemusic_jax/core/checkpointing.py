"""Orbax checkpoints, shared by every model.

A work directory holds:
  config.json        the run's config (enough to rebuild the model for inference)
  checkpoints/<step> the latest train state + the Grain iterator state, for exact resume
  best/<step>        the model variables with the best validation metric, for inference and release

`load_model(dir)` accepts a work directory or a release directory (config.json + best/).
"""

import json
import os

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx

from facemusic_jax import RELEASE_DIR
from facemusic_jax.core.errors import UserError

CONFIG_FILE = "config.json"


def resolve(checkpoint: str | None, release: str, train_config: str) -> str:
  """The checkpoint dir to load: `checkpoint` if given, else the shipped release/<release> (which must exist)."""
  if checkpoint:
    if not os.path.isdir(checkpoint):
      raise UserError(f"checkpoint {checkpoint}: no such directory; pass the --workdir of a training run "
                      f"or a release checkpoint")
    return checkpoint
  path = os.path.join(RELEASE_DIR, release)
  if not os.path.isdir(path):
    raise UserError(f"no checkpoint given and the release checkpoint {path} is missing; train one with "
                    f"`python -m facemusic_jax.train --config configs/{train_config}.py --workdir W` and pass W")
  return path


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def read_config(ckpt_dir: str) -> ml_collections.ConfigDict:
  path = os.path.join(ckpt_dir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise UserError(f"{ckpt_dir} is not a checkpoint directory (no {CONFIG_FILE}); pass the --workdir of a "
                    f"training run or a release checkpoint")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def latest_manager(workdir: str, *, max_to_keep: int = 2) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=True)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")), options=options)


def best_manager(workdir: str, metric: str) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=1, best_fn=lambda m: m.get(metric, float("-inf")), best_mode="max", create=True,
      enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "best")), options=options)


def save_train_state(mgr, step: int, state, data_iter=None) -> None:
  items = {"state": ocp.args.StandardSave(state)}
  if data_iter is not None:
    import grain  # only training saves an input pipeline; inference loads checkpoints without grain
    items["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
  mgr.save(step, args=ocp.args.Composite(**items))


def restore_train_state(mgr, abstract_state, data_iter=None):
  """Restores the newest readable step into `data_iter` (in place) and returns (step, state), or (None, None).

  The state is laid out as `abstract_state` says, whatever devices saved it. A step that cannot be read (a
  truncated copy, a disk error) is moved aside to `<step>.unreadable` (kept, never deleted) with one warning,
  and the step before it is tried.
  """
  for step in sorted(mgr.all_steps(), reverse=True):
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None:
      import grain
      items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
    try:
      restored = mgr.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # pylint: disable=broad-except  # Orbax/TensorStore raise many types
      _set_aside(mgr, step, e)
      continue
    return step, restored["state"]
  return None, None


def _set_aside(mgr, step: int, error: Exception) -> None:
  """Renames an unreadable step so that training can save that step again; every process waits for it."""
  path = os.path.join(str(mgr.directory), str(step))
  target, n = f"{path}.unreadable", 1
  while os.path.exists(target):
    n += 1
    target = f"{path}.unreadable{n}"
  logging.warning("checkpoint %s cannot be read (%s: %s); moved to %s, resuming from the step before", path,
                  type(error).__name__, (str(error).splitlines() or [""])[0], target)
  if jax.process_index() == 0:
    os.rename(path, target)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(f"set aside checkpoint {step}")
  mgr.reload()


def save_best(mgr, step: int, model_vars, metrics: dict) -> None:
  mgr.save(step, args=ocp.args.Composite(model=ocp.args.StandardSave(model_vars)), metrics=metrics)
  mgr.wait_until_finished()


def load_model(ckpt_dir: str, build_model):
  """Rebuilds the model from `ckpt_dir/config.json` with `build_model(config, rngs)` and loads the best
  variables onto the default device, whatever mesh trained them. Returns (model in eval mode, config)."""
  config = read_config(ckpt_dir)
  best_dir = os.path.abspath(os.path.join(ckpt_dir, "best"))
  if not os.path.isdir(best_dir):
    raise UserError(f"{ckpt_dir} has no best/ checkpoint yet; train until the first evaluation has run")
  mgr = ocp.CheckpointManager(best_dir, options=ocp.CheckpointManagerOptions(create=False))
  step = mgr.latest_step()
  if step is None:
    raise UserError(f"{best_dir} holds no checkpoint; train until the first evaluation has run")
  # Shapes only: the checkpoint overwrites every variable, and eager initialization would compile one
  # small program per layer shape (seconds on a CPU).
  graphdef, variables = nnx.split(nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0))))
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # this process's own
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), variables)
  restored = mgr.restore(step, args=ocp.args.Composite(model=ocp.args.StandardRestore(abstract)))
  mgr.close()
  model = nnx.merge(graphdef, restored["model"])
  model.eval()
  logging.info("loaded %s step %d", best_dir, step)
  return model, config
