"""Classify the facial emotion in a photo.

  python -m facemusic_jax.predict --image PATH [--checkpoint DIR] [--json] [--no-detect] [--faces all]
                                  [--tta none|flip|ten_crop]

Finds the faces (OpenCV Haar cascade, also turned up to 45 degrees), levels each by its eyes, crops it to
48x48 gray like FER2013, classifies it and places it on the valence-arousal plane with its music emotion
class. The default reports the largest face; --faces all reports every face, largest first. --json prints
one JSON object (with --faces all, a JSON list). A face that is small, blurred or strongly tilted, or whose
result is unsure, says so in "flags".
"""

import json
import sys

from absl import app, flags

from facemusic_jax import emotion
from facemusic_jax.cli import common
from facemusic_jax.core.errors import UserError, exit_on_user_error
from facemusic_jax.face import classify, detection

flags.DEFINE_string("image", None, "Photo to classify (JPEG, PNG, ...).")
flags.DEFINE_string("checkpoint", None, "Checkpoint dir: a training --workdir or a release dir "
                    "(default: the shipped release checkpoint).")
flags.DEFINE_boolean("json", False, "Print one JSON object instead of text.")
flags.DEFINE_boolean("no_detect", False, "Classify the whole image (centre square) without face detection.")
flags.DEFINE_alias("no-detect", "no_detect")
flags.DEFINE_enum("tta", None, list(classify.TTA_MODES), "Test-time views (default: the checkpoint's).")
flags.DEFINE_enum("faces", "largest", list(classify.FACE_CHOICES), "Which faces to report: the largest, or all.")
flags.mark_flag_as_required("image")

FLAGS = flags.FLAGS
_BAR_WIDTH = 30


def format_text(result: dict) -> str:
  """The human-readable report: emotion, the 7 probabilities with bars, the plane, the face box."""
  lines = [f"image:          {result['image']}"]
  box = result["face_box"]
  if box is None:
    lines.append("face:           whole image (--no-detect)")
  else:
    x, y, w, h = box
    lines.append(f"face:           x={x} y={y} w={w} h={h}" + (f", levelled by {result['angle']:+.0f} degrees"
                                                                 if result.get("angle") else ""))
  if result.get("flags"):
    lines.append(f"note:           {', '.join(result['flags'])}")
  lines.append(f"emotion:        {result['emotion']}")
  for label in emotion.FER_LABELS:  # label order, so two reports line up
    p = result["probabilities"][label]
    lines.append(f"  {label:<9} {p:6.1%}  {'#' * int(round(p * _BAR_WIDTH))}")
  lines.append(f"valence:        {result['valence']:+.3f}")
  lines.append(f"arousal:        {result['arousal']:+.3f}")
  lines.append(f"music emotion:  {result['music_emotion']}")
  return "\n".join(lines)


@exit_on_user_error
def main(argv):
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}; give one photo with --image")
  common.quiet_logging()
  checkpoint = classify.resolve_checkpoint(FLAGS.checkpoint)
  # Read the photo before loading the model: a bad file or a face-less photo fails in milliseconds.
  found = detection.prepare_faces(FLAGS.image, detect=not FLAGS.no_detect)
  if FLAGS.faces == "largest" and not FLAGS.no_detect and len(found[1]) > 1:
    print(f"{len(found[1])} faces found; using the largest (--faces all reports each)", file=sys.stderr)
  reading = classify.read_photo(classify.load_classifier(checkpoint), FLAGS.image, detect=not FLAGS.no_detect,
                                which=FLAGS.faces, tta=FLAGS.tta, found=found)
  results = [r | {"image": FLAGS.image} for r in reading.faces]
  if FLAGS.json:
    print(json.dumps(results if FLAGS.faces == "all" else results[0]))
  else:
    print("\n\n".join(format_text(r) for r in results))


def run():
  """The `facemusic-predict` console script."""
  app.run(main)


if __name__ == "__main__":
  run()
