"""A non-editable install, used from outside the repository: the shipped checkpoints and configs travel with
the package, so `generate` and `predict` work from any folder."""

import json
import os
import shutil
import subprocess
import sys

import cv2
from skimage import data

from conftest import REPO


def test_installed_package_generates_and_predicts_from_another_folder(tmp_path):
  # Built from a copy of the sources, so no build/ left in the repo by an earlier build can fill a gap.
  source = tmp_path / "source"
  shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
      ".git", ".venv", "build", "workdirs", "out", "*.egg-info", "__pycache__", ".pytest_cache"))
  site = tmp_path / "site"
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                  "--target", str(site), str(source)], check=True, capture_output=True)
  # The package runs from `site` alone: PYTHONPATH puts it before the editable install, the cwd is elsewhere.
  env = dict(os.environ, PYTHONPATH=str(site))
  work = tmp_path / "elsewhere"
  work.mkdir()
  photo = work / "astronaut.png"
  cv2.imwrite(str(photo), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))

  def run(*args):
    r = subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout

  run("-m", "facemusic_jax.generate", "--emotion", "happy", "--num", "1", "--length", "48", "--out", "out",
      "--noaudio", "--noplots")
  summary = json.loads((work / "out" / "summary.json").read_text())
  assert summary["checkpoint"].startswith(str(site)), summary["checkpoint"]
  assert os.path.getsize(work / summary["files"][0]["midi"]) > 0

  result = json.loads(run("-m", "facemusic_jax.predict", "--image", str(photo), "--json"))
  assert result["emotion"] == "happy" and result["num_faces"] == 1  # the shipped classifier, as in the repo
  assert run("-c", "import facemusic_jax; print(facemusic_jax.__file__)").startswith(str(site))
