"""`make demo`: face -> music on a fresh machine, with nothing to download.

1. Reads the emotion of a public-domain photo that scikit-image ships (NASA's portrait of astronaut Eileen
   Collins) with the shipped FER checkpoint: face box, 7 probabilities, valence-arousal, music class; then
   the shipped Music Transformer writes pieces conditioned on that emotion: MIDI, WAV (with libfluidsynth),
   piano rolls, the valence-arousal plane and an index.html that shows and plays it all. This is what
   `python -m facemusic_jax.generate --image PHOTO --out DIR` does.
2. Trains a small VGG16 for a few hundred steps on the embedded synthetic faces through the same loop and
   command as the real recipes, so the training loop is seen working. Re-running resumes where it stopped.
"""

import json
import os

import cv2
from absl import app, flags

from facemusic_jax import face_to_music
from facemusic_jax.cli import common
from facemusic_jax.core.errors import exit_on_user_error
from facemusic_jax.face import classify
from facemusic_jax.music import generation
from facemusic_jax.training import get_task, load_config
from facemusic_jax.training.loop import train_and_evaluate

flags.DEFINE_string("out", "out/demo", "Where the demo writes its files.")
flags.DEFINE_string("workdir", "workdirs/demo", "Work directory of the demo's training run (resumable).")
flags.DEFINE_integer("num", 2, "Pieces to generate.")
flags.DEFINE_float("seconds", 30.0, "Length of each piece in seconds (within the model's training window).")


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
  common.quiet_logging()
  out, workdir = flags.FLAGS.out, flags.FLAGS.workdir

  print("== 1. Face -> emotion -> valence/arousal -> music (shipped checkpoints) ==")
  photo = sample_photo(out)
  reading = classify.read_photo(classify.load_classifier(), photo)
  result = reading.condition
  print(f"photo: {photo} (scikit-image's astronaut, public domain)")
  print(f"face box [x, y, w, h]: {result['face_box']}")
  for name, p in sorted(result["probabilities"].items(), key=lambda kv: -kv[1]):
    print(f"  {name:9s} {p:6.1%} {'#' * int(round(p * 30))}")
  print(f"emotion: {result['emotion']}   valence {result['valence']:+.2f}   arousal {result['arousal']:+.2f}"
        f"   -> music class: {result['music_emotion']}")
  with open(os.path.join(out, "prediction.json"), "w") as f:
    json.dump(result, f, indent=2)
  music_dir = os.path.join(out, "music")
  print(f"same as: python -m facemusic_jax.generate --image {photo} --num {flags.FLAGS.num} "
        f"--seconds {flags.FLAGS.seconds:g} --out {music_dir}")
  summary = face_to_music.music_for_faces(music_dir, generation.MusicGenerator(), reading, num=flags.FLAGS.num,
                                          seconds=flags.FLAGS.seconds)
  print(generation.format_run(summary, music_dir))
  if summary["audio_skipped"]:
    print("  " + generation.AUDIO_SKIPPED)

  print("\n== 2. The training loop on the embedded synthetic faces (configs/fer_demo.py) ==")
  config = load_config("fer_demo")
  print(f"same as: python -m facemusic_jax.train --config configs/fer_demo.py --workdir {workdir}")
  train_and_evaluate(get_task(config), config, workdir)
  ev = last_eval(workdir)
  if ev:
    print(f"step {ev['step']}: validation accuracy {ev['accuracy']:.1%} on {ev['n']} synthetic faces "
          f"(chance {1 / 7:.1%}); checkpoints in {workdir}")
  print(f"\nopen {summary['index']} to see the face, the valence-arousal plane and the piano rolls, "
        f"and to play the music")


def run():
  """The `facemusic-demo` console script."""
  app.run(main)


if __name__ == "__main__":
  run()
