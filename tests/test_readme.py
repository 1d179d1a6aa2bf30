"""Every `python -m facemusic_jax.X ...` command in the README names a real module, subcommand, config and flags.

The commands that need data or hours are not run here; this keeps their spelling from drifting away from the
code. (The quick ones run for real in the other tests and in `make demo`.)
"""

import json
import os
import re
import shlex
import subprocess
import sys

from conftest import REPO

# What each CLI module offers, printed by a subprocess per module (their absl flags share one global registry).
_PROBE = """
import json, sys, importlib
from absl import flags
m = importlib.import_module(sys.argv[1])
subs = [getattr(m, n) for n in ("SUBCOMMANDS", "SOURCES", "BENCHMARKS") if hasattr(m, n)]
print(json.dumps({"flags": sorted(flags.FLAGS), "subcommands": sorted(subs[0]) if subs else None}))
"""


def readme_commands() -> list[list[str]]:
  """The README's `python -m facemusic_jax...` command lines, continuations joined, comments and
  optional-argument brackets removed."""
  with open(os.path.join(REPO, "README.md")) as f:
    text = f.read().replace("\\\n", " ")
  commands = []
  for line in text.splitlines():
    m = re.search(r"python -m (facemusic_jax\.\w+)([^`\"#|]*)", line)
    if m:
      args = re.sub(r"[\[\]]", " ", m.group(2))
      commands.append([m.group(1)] + shlex.split(args))
  return commands


def probe(modules) -> dict:
  procs = {m: subprocess.Popen([sys.executable, "-c", _PROBE, m], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for m in modules}
  out = {}
  for m, p in procs.items():
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, f"{m}: {stderr[-2000:]}"
    out[m] = json.loads(stdout.strip().splitlines()[-1])
  return out


def test_readme_commands_match_the_code():
  commands = readme_commands()
  modules = sorted({c[0] for c in commands})
  assert {"facemusic_jax.train", "facemusic_jax.generate", "facemusic_jax.evaluate", "facemusic_jax.predict",
          "facemusic_jax.label", "facemusic_jax.bench"} <= set(modules)
  info = probe(modules)
  problems = []
  for module, *args in commands:
    config = None
    if "--config" in args:
      from facemusic_jax.training import load_config
      config = load_config(os.path.join(REPO, args[args.index("--config") + 1]))
    known = set(info[module]["flags"])
    subs = info[module]["subcommands"]
    if subs is not None and (not args or args[0] not in subs):
      problems.append(f"{module} {' '.join(args)}: first argument is not one of {subs}")
    for arg in args:
      if arg.startswith("--config."):
        node = config
        for key in arg[len("--config."):].split("=")[0].split("."):
          if node is None or key not in node:
            problems.append(f"{module}: {arg}: the config has no such key")
            break
          node = node[key]
        continue
      if arg.startswith("--"):
        name = arg[2:].split("=")[0]
        if name not in known and not (name.startswith("no") and name[2:] in known):
          problems.append(f"{module}: unknown flag --{name}")
  assert not problems, "\n".join(problems)
