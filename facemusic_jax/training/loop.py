"""The one training loop of the project. A task file (fer.py, ...) supplies what is model-specific.

The loop owns: the mesh and shardings, the optimizer from the config, the jitted train/eval steps, the
eval/checkpoint/log schedule, exact resume (train state + Grain iterator state), preemption (SIGTERM saves
before exit), a stop on non-finite loss that keeps the last good checkpoint, and metrics writing.

The task is a `task.Task` (training/task.py says what it provides).
"""

import dataclasses
import json
import signal
import time
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from tqdm import tqdm

from facemusic_jax.core import checkpointing, parallel
from facemusic_jax.core.errors import UserError
from facemusic_jax.core.metrics import MetricWriter


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any  # nnx.State of nnx.Param
  rest: Any  # nnx.State of everything else (BatchNorm statistics, ...)
  opt_state: Any
  # Reduce-on-plateau bookkeeping, kept in the state so a resumed run continues it exactly.
  lr_scale: jax.Array
  best_metric: jax.Array
  bad_evals: jax.Array
  # The exponential moving average of params (config.ema_decay > 0), or None.
  ema_params: Any = None


# ----------------------------------------------------------------------------------------------- config


def default_config():
  """Every key the loop reads, with generic defaults; each task's default_config() starts from this."""
  import ml_collections
  c = ml_collections.ConfigDict()
  c.task = ""
  c.seed = 0
  c.num_workers = 2  # Grain worker processes per host (0: read in the training process)
  c.eval_split = "validation"
  c.optimizer = "adamw"  # sgd | adamw
  c.learning_rate = 1e-3
  c.momentum = 0.9  # sgd
  c.nesterov = True  # sgd
  c.b1 = 0.9  # adamw
  c.b2 = 0.98  # adamw
  c.weight_decay = 0.0
  c.grad_clip_norm = 0.0  # 0: off
  c.schedule = "cosine"  # cosine | constant | plateau
  c.warmup_steps = 0
  c.end_lr_factor = 0.0  # cosine: final LR as a fraction of the peak
  c.plateau_factor = 0.75  # plateau: LR multiplier after `plateau_patience` evals without improvement
  c.plateau_patience = 5
  c.plateau_min_delta = 0.0
  c.batch_size = 64  # global, split over every device of every host
  c.eval_batch_size = 256
  c.num_train_steps = 1000
  c.log_every_steps = 100
  c.eval_every_steps = 1000
  c.checkpoint_every_steps = 1000
  c.progress_bar = True
  # What best/ (the weights inference loads) keeps: "best", the best eval by the task's metric; or "last", the
  # latest eval's, for a run whose eval split must not choose anything (its figures are reported).
  c.select_checkpoint = "best"
  # A checkpoint dir (training workdir or release dir) whose best weights start a fresh run (fine-tuning);
  # the optimizer starts anew. Ignored when the workdir already holds a checkpoint to resume.
  c.init_from = ""
  # Weight EMA: with a decay in (0, 1) the loop keeps an exponential moving average of the parameters, and
  # evaluation, best/ and so inference use it (the raw weights' score is logged as raw_<metric>). 0: off.
  c.ema_decay = 0.0
  # Learning-rate multipliers by parameter path (a dotted path part, e.g. {"attr_embed": 20.0}): parameters new
  # to a fine-tuned model start at zero and would otherwise learn at the pretrained model's pace.
  c.lr_multipliers = ml_collections.ConfigDict()
  return c


# ----------------------------------------------------------------------------------------------- optimizer


def learning_rate_schedule(config) -> optax.Schedule:
  peak, steps = config.learning_rate, config.num_train_steps
  warmup, kind = config.warmup_steps, config.schedule
  if kind == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, peak, max(warmup, 1), max(steps, warmup + 1),
                                              end_value=peak * config.end_lr_factor)
  if kind in ("constant", "plateau"):  # plateau scaling is applied by the loop through lr_scale
    if warmup:
      return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), optax.constant_schedule(peak)],
                                  [warmup])
    return optax.constant_schedule(peak)
  raise ValueError(f"unknown schedule {kind!r}; use cosine, constant or plateau")


def make_optimizer(config) -> optax.GradientTransformation:
  lr = learning_rate_schedule(config)
  name = config.optimizer
  wd = config.weight_decay
  if name == "sgd":
    # Coupled L2 weight decay, as in the paper's SGD recipe (wd 1e-4).
    tx = optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr, momentum=config.momentum,
                                                              nesterov=config.nesterov))
  elif name == "adamw":
    tx = optax.adamw(lr, b1=config.b1, b2=config.b2, weight_decay=wd)
  else:
    raise ValueError(f"unknown optimizer {name!r}; use sgd or adamw")
  if config.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  return tx


def ema_update(ema, params, step, decay: float):
  """The moving average after the update that made `params` at `step` (0-based): the decay warms up as
  min(decay, (1 + step) / (10 + step)), so the first, random weights are soon forgotten."""
  d = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
  return jax.tree.map(lambda e, p: (d * e + (1.0 - d) * p).astype(e.dtype), ema, params)


def plateau_update(lr_scale, best, bad, metric, *, factor, patience, min_delta):
  """Reduce-on-plateau on a higher-is-better eval metric: pure, so it is easy to test and to resume."""
  if metric > best + min_delta:
    return lr_scale, metric, 0
  bad += 1
  if bad >= patience:
    return lr_scale * factor, best, 0
  return lr_scale, best, bad


# ----------------------------------------------------------------------------------------------- steps


def init_state(task, config, tx, mesh) -> tuple[nnx.GraphDef, TrainState]:
  def init():
    model = task.build_model(config, nnx.Rngs(config.seed))
    _, params, rest = nnx.split(model, nnx.Param, ...)
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, rest=rest, opt_state=tx.init(params),
        lr_scale=jnp.ones((), jnp.float32), best_metric=jnp.full((), -jnp.inf, jnp.float32),
        bad_evals=jnp.zeros((), jnp.int32),
        ema_params=jax.tree.map(jnp.copy, params) if config.get("ema_decay") else None)

  # One compiled initializer instead of eager per-layer dispatch (which compiles every kernel shape).
  graphdef = nnx.graphdef(nnx.eval_shape(lambda: task.build_model(config, nnx.Rngs(config.seed))))
  state = jax.jit(init, out_shardings=parallel.replicated(mesh))()
  return graphdef, state


def warm_start(state: TrainState, task, config, tx, mesh) -> TrainState:
  """`state` with the weights of config.init_from's best checkpoint and a fresh optimizer state.

  The architecture must be the same, except that this run may add conditioning attributes
  (model.attributes): their new parameters keep their initialization (zero: the model starts as the one it
  fine-tunes)."""
  from flax import traverse_util

  def shape_keys(c):  # what decides the variables' shapes (dropout may differ; attributes may be added)
    keys = {k: v for k, v in c.model.to_dict().items() if k not in ("dropout", "attributes")}
    return json.loads(json.dumps(keys))  # a saved config reads tuples back as lists

  from_config = checkpointing.read_config(config.init_from)
  if shape_keys(from_config) != shape_keys(config):
    raise UserError(f"--config.init_from={config.init_from}: its model {shape_keys(from_config)} differs from "
                    f"this run's {shape_keys(config)}; fine-tune with the same architecture")
  source_config = config.copy_and_resolve_references()
  if "attributes" in source_config.model:  # a music model: build the source with the attributes it had
    source_config.model.attributes = list(from_config.model.get("attributes", ()))
  model, _ = checkpointing.load_model(config.init_from, lambda _, rngs: task.build_model(source_config, rngs))
  _, source, rest = nnx.split(model, nnx.Param, ...)
  target = traverse_util.flatten_dict(nnx.to_pure_dict(jax.device_get(state.params)))
  loaded = traverse_util.flatten_dict(nnx.to_pure_dict(source))
  extra = sorted(set(loaded) - set(target))
  if extra or any(loaded[k].shape != target[k].shape for k in loaded):
    raise UserError(f"--config.init_from={config.init_from}: its parameters {extra or 'shapes'} do not fit this "
                    f"run's model; fine-tune with the same architecture")
  added = sorted(set(target) - set(loaded))
  if added:
    logging.info("warm start: %d new parameters keep their initialization: %s", len(added),
                 ", ".join(".".join(map(str, k)) for k in added))
  params = jax.device_get(state.params)
  nnx.replace_by_pure_dict(params, traverse_util.unflatten_dict(target | loaded))
  params, rest = jax.device_put((params, rest), parallel.replicated(mesh))
  opt_state = jax.jit(tx.init, out_shardings=parallel.replicated(mesh))(params)
  ema = None if state.ema_params is None else jax.tree.map(jnp.copy, params)  # the average starts at the weights
  return state.replace(params=params, rest=rest, opt_state=opt_state, ema_params=ema)


def param_path(path) -> str:
  """A pytree path as dots: ('blocks', 0, 'attn', 'qkv', 'kernel') -> 'blocks.0.attn.qkv.kernel'."""
  return ".".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def scale_updates(updates, multipliers: dict):
  """Each update times the multiplier of the first name in `multipliers` that is a part of its path."""
  if not multipliers:
    return updates

  def scale(path, u):
    parts = param_path(path).split(".")
    return next((u * jnp.asarray(m, u.dtype) for name, m in multipliers.items() if name in parts), u)

  return jax.tree_util.tree_map_with_path(scale, updates)


def make_train_step(task, graphdef, tx, config, mesh):
  base_key = jax.random.key(config.seed)
  ema_decay = float(config.get("ema_decay") or 0.0)
  if not 0.0 <= ema_decay < 1.0:
    raise UserError(f"--config.ema_decay={ema_decay}: use 0 (off) or a decay in (0, 1), e.g. 0.999")
  multipliers = config.get("lr_multipliers") or {}
  multipliers = multipliers.to_dict() if hasattr(multipliers, "to_dict") else dict(multipliers)

  def train_step(state: TrainState, batch):
    rng = jax.random.fold_in(base_key, state.step)

    def loss_fn(params, rest):
      # copy=True: fresh Variables at this trace level, so BatchNorm may update its statistics in place.
      model = nnx.merge(graphdef, params, rest, copy=True)
      model.train()
      loss, metrics = task.loss(model, batch, rng)
      return loss, (metrics, nnx.state(model, nnx.Not(nnx.Param)))

    (loss, (metrics, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state.rest)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    # Scaling the final update equals scaling the learning rate, for SGD-momentum and AdamW alike.
    updates = jax.tree.map(lambda u: u * state.lr_scale.astype(u.dtype), updates)
    updates = scale_updates(updates, multipliers)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
    ema = ema_update(state.ema_params, params, state.step, ema_decay) if ema_decay else state.ema_params
    new_state = state.replace(step=state.step + 1, params=params, rest=rest, opt_state=opt_state, ema_params=ema)
    return new_state, metrics

  rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  return jax.jit(train_step, in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=0)


def make_probe_step(task, graphdef, config, mesh):
  """(state, batch) -> whether the state's own weights are finite and give a finite training loss on `batch`.

  The train step's loss is computed with the weights *before* its update, so without this probe a checkpoint
  would be saved with weights nothing has checked yet (after a learning-rate blow-up they are finite but give
  NaN outputs)."""
  base_key = jax.random.key(config.seed)

  def probe(state: TrainState, batch):
    model = nnx.merge(graphdef, state.params, state.rest, copy=True)
    model.train()
    loss, _ = task.loss(model, batch, jax.random.fold_in(base_key, state.step))
    finite = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(state.params)]
    return jnp.isfinite(loss) & jnp.all(jnp.stack(finite))

  rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  return jax.jit(probe, in_shardings=(rep, data), out_shardings=rep)


def make_eval_step(task, graphdef, mesh):

  def eval_step(params, rest, batch):
    model = nnx.merge(graphdef, params, rest, copy=True)
    model.eval()
    return dict(task.eval_outputs(model, batch), mask=batch["mask"])

  rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  return jax.jit(eval_step, in_shardings=(rep, rep, data), out_shardings=data)


def evaluated_weights(state: TrainState):
  """The parameters evaluation, best/ and inference use: the moving average when there is one."""
  return state.params if state.ema_params is None else state.ema_params


def evaluate(task, eval_step, params, rest, batches, mesh) -> dict:
  outputs = []
  for batch in batches:
    out = eval_step(params, rest, parallel.to_global(batch, mesh))
    out = parallel.to_host(out)
    keep = np.asarray(out.pop("mask"), bool)
    outputs.append({k: np.asarray(v)[keep] for k, v in out.items()})
  merged = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
  return task.summarize(merged)


# ----------------------------------------------------------------------------------------------- loop


@dataclasses.dataclass
class _Preemption:
  requested: bool = False

  def __call__(self, signum, frame):
    logging.warning("signal %d received: saving a checkpoint before exit", signum)
    self.requested = True


def _diverged(what, step: int, last_saved: int, workdir: str) -> UserError:
  kept = f"the last good checkpoint (step {last_saved}) is kept" if last_saved else "no checkpoint was saved"
  return UserError(f"training diverged by step {step} in {workdir} ({what}); {kept}; lower --config.learning_rate (or set "
                   f"--config.grad_clip_norm) and run again to resume")


def _check_finite(losses, step, last_saved, workdir):
  vals = np.asarray(jax.device_get(losses), np.float64)
  if vals.size and not np.all(np.isfinite(vals)):
    raise _diverged(f"the loss became {vals[~np.isfinite(vals)][0]}", step, last_saved, workdir)


def _scalar_means(history: list[dict]) -> dict:
  host = jax.device_get(history)
  return {k: float(np.mean([h[k] for h in host])) for k in host[0]}


def train_and_evaluate(task, config, workdir: str) -> dict:
  """Trains `task` under `config`, resuming from `workdir` when it holds a checkpoint. Returns the last
  eval metrics (or {} if no eval ran)."""
  mesh = parallel.make_mesh()
  process_batch = parallel.check_batch_size(config.batch_size)
  tx = make_optimizer(config)
  graphdef, state = init_state(task, config, tx, mesh)
  train_step = make_train_step(task, graphdef, tx, config, mesh)
  eval_step = make_eval_step(task, graphdef, mesh)
  probe_step = make_probe_step(task, graphdef, config, mesh)
  checkpointing.save_config(workdir, config)
  if hasattr(task, "write_artifacts") and jax.process_index() == 0:
    task.write_artifacts(config, workdir)

  data_iter = iter(task.train_dataset(config, process_batch_size=process_batch))
  eval_batches = task.eval_batches(config, process_batch_size=config.eval_batch_size // jax.process_count())
  latest = checkpointing.latest_manager(workdir)
  keep_last = config.get("select_checkpoint", "best") == "last"
  if config.get("select_checkpoint", "best") not in ("best", "last"):
    raise UserError(f"--config.select_checkpoint={config.select_checkpoint}: use best or last")
  best = checkpointing.best_manager(workdir, "step" if keep_last else task.best_metric)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
  step0, restored = checkpointing.restore_train_state(latest, abstract, data_iter)
  if restored is not None:
    state = restored
    logging.warning("resumed from %s at step %d", workdir, step0)
  elif config.get("init_from"):
    state = warm_start(state, task, config, tx, mesh)
    logging.info("started from the weights of %s", config.init_from)
  start = int(state.step)
  total = config.num_train_steps
  writer = MetricWriter(workdir)
  preempt = _Preemption()
  old_handler = signal.signal(signal.SIGTERM, preempt)

  eval_metrics: dict = {}
  history: list[dict] = []
  last_saved = step0
  log_every, eval_every = config.log_every_steps, config.eval_every_steps
  ckpt_every = config.checkpoint_every_steps
  items_per_step = config.batch_size * task.items_per_example(config)
  bar = tqdm(total=total, initial=start, desc=f"train {task.name}", unit="step", dynamic_ncols=True,
             disable=jax.process_index() != 0 or not config.progress_bar)
  t_window, n_window = time.perf_counter(), 0
  step = start
  try:
    while step < total:
      batch = parallel.to_global(next(data_iter), mesh)
      state, metrics = train_step(state, batch)
      history.append(metrics)
      step += 1
      n_window += 1
      bar.update(1)
      # A signal may reach only some processes: all of them stop at the same step, or the rest would hang in
      # the next collective.
      stop = parallel.any_process(preempt.requested)

      is_last = step == total
      if step % log_every == 0 or is_last or stop:
        _check_finite([h["loss"] for h in history], step, last_saved, workdir)
        summary = _scalar_means(history)
        dt = time.perf_counter() - t_window
        summary.update(items_per_s=items_per_step * n_window / dt, steps_per_s=n_window / dt,
                       lr_scale=float(state.lr_scale))
        writer.write(step, "train", summary)
        bar.set_postfix(loss=f"{summary['loss']:.4f}", **{task.throughput_unit: f"{summary['items_per_s']:.0f}"})
        history, t_window, n_window = [], time.perf_counter(), 0

      if step % eval_every == 0 or is_last:
        eval_metrics = evaluate(task, eval_step, evaluated_weights(state), state.rest, eval_batches, mesh)
        if state.ema_params is not None:  # what the average is worth against the weights it averages
          raw = evaluate(task, eval_step, state.params, state.rest, eval_batches, mesh)
          eval_metrics[f"raw_{task.best_metric}"] = raw[task.best_metric]
        writer.write(step, "eval", eval_metrics)
        score = float(eval_metrics[task.best_metric])
        logging.info("step %d eval %s=%.4f", step, task.best_metric, score)
        if score > float(state.best_metric) or keep_last:
          checkpointing.save_best(best, step, nnx.merge_state(evaluated_weights(state), state.rest),
                                  {task.best_metric: score, "step": step})
        if config.schedule == "plateau":
          scale, best_m, bad = plateau_update(
              float(state.lr_scale), float(state.best_metric), int(state.bad_evals), score,
              factor=config.plateau_factor, patience=config.plateau_patience,
              min_delta=config.plateau_min_delta)
        else:
          scale, best_m, bad = float(state.lr_scale), max(score, float(state.best_metric)), 0
        state = state.replace(lr_scale=jnp.asarray(scale, jnp.float32), best_metric=jnp.asarray(best_m, jnp.float32),
                              bad_evals=jnp.asarray(bad, jnp.int32))
        state = parallel.replicate(state, mesh)

      if step % ckpt_every == 0 or is_last or stop:
        _check_finite([h["loss"] for h in history], step, last_saved, workdir)
        if not bool(probe_step(state, batch)):  # only weights that have given a finite loss are saved
          raise _diverged("its weights give a non-finite loss", step, last_saved, workdir)
        checkpointing.save_train_state(latest, step, state, data_iter)
        last_saved = step
      if stop:
        latest.wait_until_finished()
        logging.warning("preempted at step %d; checkpoint saved in %s", step, workdir)
        break
  finally:
    bar.close()
    latest.wait_until_finished()
    latest.close()
    best.close()
    writer.close()
    signal.signal(signal.SIGTERM, old_handler)
    closer = getattr(data_iter, "close", None)
    if closer:
      closer()
  return eval_metrics
