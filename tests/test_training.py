"""The generic training loop: data parallelism, exact resume after kill -9 / SIGTERM, NaN stop, plateau."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import REPO, load_config, run_module
from facemusic_jax.core import parallel
from facemusic_jax.training import get_task
from facemusic_jax.training.loop import init_state, make_optimizer, make_train_step, plateau_update

TRAIN = "facemusic_jax.train"


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _final_state(workdir, step):
  return ocp.PyTreeCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))


def _unboxed(tree):
  """A restored nnx.State ({..., 'kernel': {'value': array}}) as a pure dict ({..., 'kernel': array})."""
  if isinstance(tree, dict):
    return tree["value"] if tree.keys() == {"value"} else {k: _unboxed(v) for k, v in tree.items()}
  return tree


def _steps(workdir):
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def test_data_parallel_step_equals_single_device():
  """One step on an 8-device mesh (batch split 8 ways, BatchNorm statistics over the global batch) gives
  the same parameters as the same step on one device."""
  assert jax.device_count() == 8
  config = load_config("fer_tiny")
  task = get_task(config)
  tx = make_optimizer(config)
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (16, 48, 48, 1), dtype=np.uint8),
           "label": rng.integers(0, 7, 16).astype(np.int32)}
  results = []
  # One initial state (compiling the initializer takes as long as a train step), laid out on each mesh.
  graphdef, initial = init_state(task, config, tx, parallel.make_mesh())
  for devices in (jax.devices(), jax.devices()[:1]):
    mesh = parallel.make_mesh(devices)
    state = jax.device_put(jax.device_get(initial), parallel.replicated(mesh))  # fresh arrays: steps donate
    step = make_train_step(task, graphdef, tx, config, mesh)
    global_batch = parallel.to_global(batch, mesh)
    assert len(global_batch["image"].sharding.device_set) == len(devices)
    state, metrics = step(state, global_batch)
    state, metrics = step(state, global_batch)
    results.append((_leaves(state.params) + _leaves(state.rest), float(metrics["loss"])))
  (multi, loss_multi), (single, loss_single) = results
  assert loss_multi == pytest.approx(loss_single, rel=1e-5)
  for a, b in zip(multi, single):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def test_batch_size_must_split_over_devices():
  with pytest.raises(ValueError, match="not divisible"):
    parallel.check_batch_size(12)


@pytest.mark.parametrize("metric,expected", [
    (0.60, (1.0, 0.60, 0)),  # improvement resets the counter
    (0.50, (1.0, 0.55, 1)),  # no improvement, below patience
])
def test_plateau_update(metric, expected):
  assert plateau_update(1.0, 0.55, 0, metric, factor=0.75, patience=2, min_delta=0.0) == expected


def test_plateau_reduces_after_patience():
  scale, best, bad = 1.0, 0.5, 0
  for m in (0.5, 0.49):
    scale, best, bad = plateau_update(scale, best, bad, m, factor=0.75, patience=2, min_delta=0.0)
  assert (scale, best, bad) == (0.75, 0.5, 0)


def _train_cmd(workdir, *extra):
  return [sys.executable, "-m", TRAIN, "--config", "configs/fer_tiny.py", "--workdir", workdir,
          "--config.num_train_steps=16", "--config.checkpoint_every_steps=4", "--config.eval_every_steps=8",
          *extra]


def _interrupt_after_first_checkpoint(workdir, sig, *extra):
  """Starts a run, waits for its first finished checkpoint, sends `sig`; returns (returncode, stderr)."""
  proc = subprocess.Popen(_train_cmd(workdir, *extra), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  deadline = time.time() + 240
  while not _steps(workdir) and time.time() < deadline and proc.poll() is None:
    time.sleep(0.05)
  assert proc.poll() is None, "the run ended before it could be interrupted:\n" + proc.stderr.read()[-2000:]
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=120)
  return proc.returncode, err


def _train_records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if r["split"] == "train"]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
  """The same tiny run, never interrupted."""
  reference = str(tmp_path_factory.mktemp("reference"))
  done = subprocess.run(_train_cmd(reference), cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  return reference


# SIGKILL with the in-process iterator; SIGTERM (preemption) with Grain worker processes (mp_prefetch), whose
# iterator state must be restored exactly too. SIGTERM with several processes: tests/test_multihost.py.
@pytest.mark.parametrize("sig,workers", [(signal.SIGKILL, 0), (signal.SIGTERM, 2)])
def test_resume_after_interrupt_is_bit_identical(tmp_path, sig, workers, reference_run):
  reference = reference_run
  resumed = str(tmp_path / "resumed")
  extra = [f"--config.num_workers={workers}"]
  code, err = _interrupt_after_first_checkpoint(resumed, sig, *extra)
  if sig == signal.SIGTERM:
    assert code == 0, err[-3000:]  # preemption: save and exit cleanly
    assert "preempted" in err
  else:
    assert code == -signal.SIGKILL
  interrupted_at = max(_steps(resumed))
  assert interrupted_at < 16
  first_run = len(_train_records(resumed))
  again = subprocess.run(_train_cmd(resumed, *extra), cwd=REPO, capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-3000:]

  # The second run restored: it says from which step, and trained no step at or before it again (a run that
  # restarted from scratch would end bit-identical too, since training is deterministic).
  assert f"resumed from {resumed} at step {interrupted_at}" in again.stderr
  logged = [r["step"] for r in _train_records(resumed)[first_run:]]
  assert logged and min(logged) > interrupted_at and max(logged) == 16, logged

  a, b = _final_state(reference, 16), _final_state(resumed, 16)
  for x, y in zip(_leaves(a), _leaves(b)):
    np.testing.assert_array_equal(x, y)
  # The train-loss records after the interruption match too (same batches, same dropout). A stop on an odd step
  # leaves the next even record a mean over fewer steps, so comparison starts at the first full window.
  ref_losses = {r["step"]: r["loss"] for r in _train_records(reference)}
  res_losses = {r["step"]: r["loss"] for r in _train_records(resumed)}
  first = interrupted_at + 2 + interrupted_at % 2
  assert first <= 16
  for step in range(first, 17, 2):
    assert res_losses[step] == ref_losses[step]


def test_nan_loss_stops_with_a_clear_message_and_keeps_good_checkpoints(tmp_path):
  workdir = str(tmp_path / "nan")
  result = run_module(TRAIN, "--config", "configs/fer_tiny.py", "--workdir", workdir,
                      "--config.optimizer=sgd", "--config.learning_rate=1e30", "--config.num_train_steps=40",
                      "--config.checkpoint_every_steps=1", "--config.log_every_steps=1")
  assert result.returncode == 1
  lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and "diverged by step" in lines[0], result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  assert _steps(workdir), "no checkpoint was kept"
  # Every kept checkpoint loads and gives finite outputs (its weights, not only its loss record).
  from flax import nnx
  config = load_config("fer_tiny")
  # The model's structure only (nothing initialized), filled with each checkpoint's arrays; one jitted forward
  # pass instead of eager per-layer dispatch.
  abstract = nnx.eval_shape(lambda: get_task(config).build_model(config, nnx.Rngs(0)))
  abstract.eval()
  graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
  forward = jax.jit(lambda params, rest, images: nnx.merge(graphdef, params, rest)(images))
  images = np.random.default_rng(0).integers(0, 256, (4, 48, 48, 1)).astype(np.float32) / 255
  for step in _steps(workdir):
    state = _final_state(workdir, step)
    nnx.replace_by_pure_dict(params, _unboxed(state["params"]))
    nnx.replace_by_pure_dict(rest, _unboxed(state["rest"]))
    outputs = np.asarray(forward(params, rest, images))
    assert outputs.shape == (4, 7) and np.all(np.isfinite(outputs)), f"checkpoint {step} gives non-finite outputs"


def test_train_cli_bad_config_value_is_one_line(tmp_path):
  result = run_module(TRAIN, "--config", "configs/fer_tiny.py", "--workdir", str(tmp_path),
                      "--config.dataset=fer2013", "--config.data_dir=" + str(tmp_path / "missing"))
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith("error:")


def test_config_problems_name_the_key_and_the_closest_valid_ones():
  from facemusic_jax.cli import train
  base = ["train", "--config", "configs/fer_tiny.py", "--workdir", "w"]
  assert train.config_problem(base + ["--config.learning_rate=0.1", "--config.model.width=8"]) is None
  assert train.config_problem(base + ["--config.learnin_rate=1"]) == (
      "--config.learnin_rate: configs/fer_tiny.py has no such key (closest: learning_rate)")
  assert "closest: model.width" in train.config_problem(base + ["--config.model.widht=2"])
  assert "no such file" in train.config_problem(["train", "--config=configs/nope.py"])


def test_config_flag_takes_a_shipped_config_by_name_from_any_folder(tmp_path, monkeypatch):
  """--config NAME and --config configs/NAME.py (from a folder without configs/) both name the packaged file;
  an existing file is taken as it is."""
  from facemusic_jax.cli import train
  packaged = os.path.join(REPO, "facemusic_jax", "configs", "fer_tiny.py")
  monkeypatch.chdir(tmp_path)
  assert os.path.samefile(train.shipped_config_path("fer_tiny"), packaged)
  assert os.path.samefile(train.shipped_config_path("configs/fer_tiny.py"), packaged)
  (tmp_path / "mine.py").write_text("")
  assert train.shipped_config_path("mine.py") == "mine.py"
  assert train.shipped_config_path("nope") == "nope"
  assert train.with_config_path(["train", "--config", "fer_tiny", "--config=fer_demo"])[2:] == [
      train.shipped_config_path("fer_tiny"), "--config=" + train.shipped_config_path("fer_demo")]


def test_train_cli_unknown_config_key_is_one_line(tmp_path):
  result = run_module(TRAIN, "--config", "configs/fer_tiny.py", "--workdir", str(tmp_path), "--config.no_such_key=1")
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines() == [
      "error: --config.no_such_key: configs/fer_tiny.py has no such key (see the config file for its keys)"]


def test_init_from_starts_a_run_from_another_runs_best_weights(tmp_path):
  """Fine-tuning: a fresh run with --config.init_from starts from that run's best weights and a new optimizer
  state; a different architecture is a one-line error."""
  from flax import nnx
  from facemusic_jax.core import checkpointing
  from facemusic_jax.core.errors import UserError
  from facemusic_jax.models.music_transformer import MusicTransformer
  from facemusic_jax.training import loop, music
  pretrain = load_config("music_tiny", num_train_steps=3, eval_every_steps=3)
  task = get_task(pretrain)
  loop.train_and_evaluate(task, pretrain, str(tmp_path / "pre"))
  best, _ = checkpointing.load_model(str(tmp_path / "pre"), MusicTransformer.from_config)
  config = load_config("music_tiny", init_from=str(tmp_path / "pre"), seed=7)
  mesh = parallel.make_mesh()
  tx = make_optimizer(config)
  _, fresh = init_state(task, config, tx, mesh)
  started = loop.warm_start(fresh, task, config, tx, mesh)
  want = _leaves(nnx.state(best, nnx.Param))
  assert all(np.array_equal(a, b) for a, b in zip(_leaves(started.params), want))
  assert not all(np.array_equal(a, b) for a, b in zip(_leaves(fresh.params), want))  # seed 7 differs
  assert int(started.step) == 0
  wider = load_config("music_tiny", init_from=str(tmp_path / "pre"))
  wider.model.d_model = 64
  with pytest.raises(UserError, match="init_from.*same architecture"):
    loop.warm_start(fresh, task, wider, tx, mesh)


def test_weight_ema_follows_the_steps_and_is_what_best_keeps(tmp_path):
  """With --config.ema_decay the train step keeps the moving average of the parameters (against a naive
  average of each step's parameters, with the warm-up decay), and best/ (what inference loads) holds the
  average rather than the raw weights; the raw weights' score is logged beside it."""
  from flax import nnx, traverse_util
  from facemusic_jax.core import checkpointing
  from facemusic_jax.models.vgg import VGG
  from facemusic_jax.training import loop
  config = load_config("fer_tiny", ema_decay=0.5)
  task = get_task(config)
  tx = make_optimizer(config)
  mesh = parallel.make_mesh()
  graphdef, state = init_state(task, config, tx, mesh)
  step = make_train_step(task, graphdef, tx, config, mesh)
  rng = np.random.default_rng(0)
  average = _leaves(state.params)
  for k in range(3):
    batch = {"image": rng.integers(0, 256, (16, 48, 48, 1), dtype=np.uint8),
             "label": rng.integers(0, 7, 16).astype(np.int32)}
    state, _ = step(state, parallel.to_global(batch, mesh))
    d = min(0.5, (1 + k) / (10 + k))
    average = [d * a + (1 - d) * p for a, p in zip(average, _leaves(state.params))]
  for a, b in zip(average, _leaves(state.ema_params)):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
  assert not all(np.allclose(a, b) for a, b in zip(_leaves(state.ema_params), _leaves(state.params)))

  config = load_config("fer_tiny", ema_decay=0.5, num_train_steps=4, eval_every_steps=2, checkpoint_every_steps=4,
                       select_checkpoint="last", num_workers=0)
  workdir = str(tmp_path / "ema")
  loop.train_and_evaluate(task, config, workdir)
  final = _final_state(workdir, 4)
  best, _ = checkpointing.load_model(workdir, VGG.from_config)
  def by_path(tree):  # restored dicts order layer indices as strings ('10' < '2'): compare by path
    flat = traverse_util.flatten_dict(tree)
    return {tuple(map(str, k)): np.asarray(v) for k, v in flat.items()}

  kept = by_path(nnx.to_pure_dict(nnx.state(best, nnx.Param)))
  average, raw = by_path(_unboxed(final["ema_params"])), by_path(_unboxed(final["params"]))
  assert kept.keys() == average.keys() == raw.keys()
  assert all(np.array_equal(kept[k], average[k]) for k in kept)
  assert not all(np.array_equal(kept[k], raw[k]) for k in kept)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    evals = [r for r in map(json.loads, f) if r["split"] == "eval"]
  assert [r["step"] for r in evals] == [2, 4] and all(f"raw_{task.best_metric}" in r for r in evals)
  # A FER run fine-tunes from it: its saved config reads head_dims back as a list, and a FER model has no
  # conditioning attributes (both once made --config.init_from fail for FER).
  tuned = load_config("fer_tiny", init_from=workdir, seed=3, ema_decay=0.5)
  _, fresh = init_state(task, tuned, tx, mesh)
  started = loop.warm_start(fresh, task, tuned, tx, mesh)
  assert all(np.array_equal(v, kept[k]) for k, v in by_path(nnx.to_pure_dict(started.params)).items())
  assert all(np.array_equal(v, kept[k]) for k, v in by_path(nnx.to_pure_dict(started.ema_params)).items())


@pytest.mark.parametrize("env,match", [
    ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1"}, "JAX_NUM_PROCESSES and JAX_PROCESS_ID are not"),
    ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "x"}, "integers"),
    ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"}, r"in \[0, "),
])
def test_an_incomplete_launch_environment_is_one_line(monkeypatch, env, match):
  from facemusic_jax.core.errors import UserError
  for key in parallel._LAUNCH_ENV:
    monkeypatch.delenv(key, raising=False)
  for key, value in env.items():
    monkeypatch.setenv(key, value)
  with pytest.raises(UserError, match=match):
    parallel.maybe_initialize_distributed()


def _saved_state(workdir, devices, seed=0):
  """A fer_tiny train state initialized on the first `devices` devices, saved as step 1 in `workdir`."""
  from facemusic_jax.core import checkpointing
  config = load_config("fer_tiny", seed=seed)
  task = get_task(config)
  _, state = init_state(task, config, make_optimizer(config), parallel.make_mesh(jax.devices()[:devices]))
  mgr = checkpointing.latest_manager(workdir)
  checkpointing.save_train_state(mgr, 1, state)
  mgr.wait_until_finished()
  return mgr, state


def _abstract(devices, seed=1):
  """The shapes and shardings of a train state on the first `devices` devices (traced, never computed, so no
  value can come from it: whatever a restore returns was read from the checkpoint)."""
  config = load_config("fer_tiny", seed=seed)
  mesh = parallel.make_mesh(jax.devices()[:devices])
  state = jax.eval_shape(lambda: init_state(get_task(config), config, make_optimizer(config), mesh)[1])
  # init_state lays every leaf out replicated over the mesh.
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=parallel.replicated(mesh)), state)


@pytest.mark.parametrize("saved_on,restored_on", [(8, 1), (1, 8)])
def test_a_checkpoint_restores_on_another_number_of_devices(tmp_path, saved_on, restored_on):
  from facemusic_jax.core import checkpointing
  mgr, state = _saved_state(str(tmp_path), saved_on)
  mgr.close()
  step, restored = checkpointing.restore_train_state(checkpointing.latest_manager(str(tmp_path)),
                                                     _abstract(restored_on))
  assert step == 1
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert len(b.sharding.device_set) == restored_on


def test_an_unreadable_latest_checkpoint_is_set_aside_and_the_one_before_restored(tmp_path, caplog):
  from facemusic_jax.core import checkpointing
  mgr, state = _saved_state(str(tmp_path), 8)
  later = state.replace(step=state.step + 1, params=jax.tree.map(lambda x: x + 1, state.params))
  checkpointing.save_train_state(mgr, 2, later)
  mgr.wait_until_finished()
  mgr.close()
  # A truncated copy: every file of step 2's state is cut to half its size.
  for root, _, files in os.walk(tmp_path / "checkpoints" / "2" / "state"):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
  mgr = checkpointing.latest_manager(str(tmp_path))
  with caplog.at_level("WARNING"):
    step, restored = checkpointing.restore_train_state(mgr, _abstract(8))
  assert step == 1
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert len([r for r in caplog.records if "cannot be read" in r.getMessage()]) == 1
  assert (tmp_path / "checkpoints" / "2.unreadable" / "state").is_dir()  # kept for the user
  checkpointing.save_train_state(mgr, 2, later)  # training can save that step again
  mgr.wait_until_finished()
  assert mgr.all_steps() == [1, 2]


def test_configs_ship_inside_the_package():
  """load_config finds a config by name from the package itself (so a non-editable install can run demo and
  bench), and the repository's configs/ is the same folder."""
  import facemusic_jax
  from facemusic_jax import configs
  package = os.path.dirname(os.path.abspath(facemusic_jax.__file__))
  assert os.path.dirname(os.path.abspath(configs.__file__)) == os.path.join(package, "configs")
  assert os.path.samefile(os.path.join(REPO, "configs"), os.path.join(package, "configs"))
  assert load_config("music_notes_cpu").vocabulary == "notes"


def test_every_shipped_config_loads_with_only_its_tasks_keys():
  """A key a config sets that its task's defaults lack is a typo or a key no code reads: every shipped
  config loads, and its keys (nested included) are the defaults' keys."""
  import glob
  from facemusic_jax.training import fer, music

  def keys(config, prefix=""):
    out = set()
    for k, v in config.items():
      out.add(prefix + k)
      if hasattr(v, "items") and k not in ("dataset_options", "lr_multipliers"):  # free-form maps
        out |= keys(v, f"{prefix}{k}.")
    return out

  defaults = {"fer": keys(fer.default_config()), "music": keys(music.default_config()),
              "music_emotion": keys(music.default_config())}
  names = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "configs", "*.py"))
                 if not p.endswith("__init__.py"))
  assert "music_weak_cpu" in names and "fer_cpu" in names
  for name in names:
    config = load_config(name)
    extra = keys(config) - defaults[config.task]
    assert not extra, f"configs/{name}.py sets keys its task does not have: {sorted(extra)}"
