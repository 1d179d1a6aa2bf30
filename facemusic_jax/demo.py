"""`make demo`: the face half of the pipeline on a fresh machine, with nothing to download.

1. Reads the emotion of a public-domain photo that scikit-image ships (NASA's portrait of astronaut Eileen
   Collins) with the shipped FER checkpoint: face box, 7 probabilities, valence-arousal, music class.
2. Trains a small VGG16 for a few hundred steps on the embedded synthetic faces through the same loop and
   command as the real recipes, so the training loop is seen working. Re-running resumes where it stopped.
"""

import json
import os

import cv2
from absl import app, flags, logging

from facemusic_jax import inference
from facemusic_jax.errors import exit_on_user_error
from facemusic_jax.training import get_task, load_config
from facemusic_jax.training.loop import train_and_evaluate

flags.DEFINE_string("out", "out/demo", "Where the demo writes its files.")
flags.DEFINE_string("workdir", "workdirs/demo", "Work directory of the demo's training run (resumable).")


def sample_photo(out_dir: str) -> str:
  from skimage import data
  path = os.path.join(out_dir, "astronaut.png")
  if not os.path.exists(path):
    os.makedirs(out_dir, exist_ok=True)
    cv2.imwrite(path, cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
  return path


def last_eval(workdir: str) -> dict:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    evals = [r for r in map(json.loads, f) if r.get("split") == "eval"]
  return evals[-1] if evals else {}


@exit_on_user_error
def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  out, workdir = flags.FLAGS.out, flags.FLAGS.workdir

  print("== 1. Face -> emotion -> valence/arousal (shipped checkpoint) ==")
  photo = sample_photo(out)
  classifier = inference.load_classifier()
  result = inference.classify_photo(classifier, photo)
  print(f"photo: {photo} (scikit-image's astronaut, public domain)")
  print(f"face box [x, y, w, h]: {result['face_box']}")
  for name, p in sorted(result["probabilities"].items(), key=lambda kv: -kv[1]):
    print(f"  {name:9s} {p:6.1%} {'#' * int(round(p * 30))}")
  print(f"emotion: {result['emotion']}   valence {result['valence']:+.2f}   arousal {result['arousal']:+.2f}"
        f"   -> music class: {result['music_emotion']}")
  with open(os.path.join(out, "prediction.json"), "w") as f:
    json.dump(result, f, indent=2)

  print("\n== 2. The training loop on the embedded synthetic faces (configs/fer_demo.py) ==")
  config = load_config("fer_demo")
  print(f"same as: python -m facemusic_jax.train --config configs/fer_demo.py --workdir {workdir}")
  train_and_evaluate(get_task(config), config, workdir)
  ev = last_eval(workdir)
  if ev:
    print(f"step {ev['step']}: validation accuracy {ev['accuracy']:.1%} on {ev['n']} synthetic faces "
          f"(chance {1 / 7:.1%}); checkpoints in {workdir}")
  print(f"\nwrote {os.path.join(out, 'prediction.json')}")


if __name__ == "__main__":
  app.run(main)
