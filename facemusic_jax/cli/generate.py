"""Generate emotion-conditioned music, from an emotion, a point of the valence-arousal plane, or face photos.

  python -m facemusic_jax.generate (--emotion NAME | --valence V --arousal A | --image PATH [PATH ...]) --out DIR
      [--num N] [--seconds S | --length T] [--temperature X] [--top_k K] [--top_p P] [--guidance G]
      [--contrast null|valence] [--key_strength K] [--key_scope negative|both] [--velocity_strength K]
      [--ending_strength K] [--attributes class|none] [--rerank N] [--seed S]
      [--music-checkpoint DIR] [--fer-checkpoint DIR] [--no-detect] [--faces all] [--noaudio] [--noplots]

NAME is a face emotion (angry, disgust, fear, happy, sad, surprise, neutral: mapped by the paper's rule) or a
music class (happiness, surprise, anger, sadness, others). V and A are on Russell's plane, in [-1, 1].
--image finds the largest face of a photo, reads its emotion with the FER classifier and conditions the music
on its valence-arousal vector; with --faces all, on the mean of every face's (summary.json lists each face). Each run writes N MIDI files, a WAV per piece when libfluidsynth is present,
piano rolls, the valence-arousal plane (and the face with its probabilities), summary.json and an index.html
that shows and plays it all. Several photos or a folder (--image a.jpg b.jpg, --image photos/) give one
sub-folder of DIR each, a progress bar and a table at the end; a bad photo is reported in one line and the
others are still processed. The batch of pieces is spread over every device; with JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES and JAX_PROCESS_ID set (as for train), over every device of every process, and process 0
writes the files.
"""

import os
import sys

import jax
from absl import app, flags

from facemusic_jax.cli import common
from facemusic_jax.core import parallel
from facemusic_jax.core.errors import UserError, exit_on_user_error
from facemusic_jax.music import generation

flags.DEFINE_string("emotion", None, "A face emotion or a music class.")
flags.DEFINE_float("valence", None, "Valence in [-1, 1] (with --arousal).")
flags.DEFINE_float("arousal", None, "Arousal in [-1, 1] (with --valence).")
flags.DEFINE_multi_string("image", None, "Photos or folders of photos (repeatable; more paths may follow the "
                          "flags): the emotion of each largest face conditions its music.")
flags.DEFINE_bool("no_detect", False, "Classify each whole --image (centre square) without face detection.")
flags.DEFINE_enum("faces", "largest", ["largest", "all"], "--image: condition on the largest face, or on the "
                  "mean emotion of all faces (the mean of their probabilities, so their mean valence-arousal).")
flags.DEFINE_alias("no-detect", "no_detect")
flags.DEFINE_string("fer_checkpoint", None, "FER classifier for --image (default: the shipped one).")
flags.DEFINE_alias("fer-checkpoint", "fer_checkpoint")
flags.DEFINE_string("checkpoint", None, "Music Transformer checkpoint (default: the shipped one).")
flags.DEFINE_alias("music_checkpoint", "checkpoint")
flags.DEFINE_alias("music-checkpoint", "checkpoint")
flags.DEFINE_string("out", None, "Output folder.")
flags.DEFINE_integer("num", 4, "Number of pieces per input.")
flags.DEFINE_integer("length", None, "Maximum tokens per piece, prompt included (default and limit: the "
                     "model's training window).")
flags.DEFINE_float("seconds", None, "Stop each piece once it lasts this long (within the token limit).")
flags.DEFINE_float("temperature", generation.DEFAULT_TEMPERATURE, "Sampling temperature (> 0).")
flags.DEFINE_integer("top_k", 0, "Keep the k most likely tokens (0: all).")
flags.DEFINE_float("top_p", generation.DEFAULT_TOP_P, "Nucleus sampling mass, in (0, 1] (1: off).")
flags.DEFINE_float("guidance", generation.DEFAULT_GUIDANCE, "Classifier-free guidance scale over the whole "
                   "condition (1: off; > 1 pushes the music further towards the emotion).")
flags.DEFINE_enum("contrast", generation.DEFAULT_CONTRAST, list(generation.CONTRASTS), "What guidance pushes "
                  "away from: null (no condition: classifier-free guidance) or valence (the same arousal with the "
                  "opposite valence).")
flags.DEFINE_float("key_strength", generation.DEFAULT_KEY_STRENGTH, "Key steering: lean note-ons toward a "
                   "major key for positive valence, a minor one for negative, by this many standard deviations of "
                   "the key profile, in [0, 10] (0: off).")
flags.DEFINE_alias("key-strength", "key_strength")
flags.DEFINE_enum("key_scope", generation.DEFAULT_KEY_SCOPE, list(generation.KEY_SCOPES), "Which requests key "
                  "steering applies to: negative (negative valence only, toward minor) or both (major for "
                  "positive valence too).")
flags.DEFINE_float("velocity_strength", generation.DEFAULT_VELOCITY_STRENGTH, "Velocity steering: lean the "
                   "notes' loudness toward that of EMOPIA's music at the requested arousal, in [0, 10] (0: off).")
flags.DEFINE_alias("velocity-strength", "velocity_strength")
flags.DEFINE_float("ending_strength", generation.DEFAULT_ENDING_STRENGTH, "The ending: from 75% of each piece's "
                   "budget (--length, --seconds or the model's window) on, lean toward ending the piece, up to this "
                   "many nats for EOS at the end, in [0, 20] (0: off; the piece is cut at the budget).")
flags.DEFINE_alias("ending-strength", "ending_strength")
flags.DEFINE_enum("attributes", generation.DEFAULT_ATTRIBUTES, list(generation.ATTRIBUTE_MODES), "For a model "
                  "conditioned on musical attributes (density, register, velocity, mode): class (those of real "
                  "pieces of the requested class) or none (emotion alone).")
flags.DEFINE_integer("rerank", 1, "Draw N candidates per piece and keep the one that best fits the requested "
                     "class by the symbolic emotion estimator (1: off).")
flags.DEFINE_integer("seed", 0, "Random seed: the same seed gives the same pieces.")
flags.DEFINE_bool("audio", True, "Render a WAV per piece (needs libfluidsynth).")
flags.DEFINE_bool("plots", True, "Draw piano rolls and the valence-arousal plane, and write index.html.")

FLAGS = flags.FLAGS


def sampling_options() -> dict:
  return dict(num=FLAGS.num, length=FLAGS.length, seconds=FLAGS.seconds, seed=FLAGS.seed,
              temperature=FLAGS.temperature, top_k=FLAGS.top_k, top_p=FLAGS.top_p, guidance=FLAGS.guidance,
              contrast=FLAGS.contrast, key_strength=FLAGS.key_strength, key_scope=FLAGS.key_scope,
              velocity_strength=FLAGS.velocity_strength, ending_strength=FLAGS.ending_strength,
              attributes=FLAGS.attributes, rerank=FLAGS.rerank,
              audio=FLAGS.audio, plots=FLAGS.plots)


def check_inputs(extra_args: list[str]) -> list[str] | None:
  """Validates the choice of input; returns the photos (None when the input is not --image)."""
  images = list(FLAGS.image or []) + extra_args if FLAGS.image else None
  if extra_args and not images:
    raise UserError(f"unexpected arguments: {' '.join(extra_args)}")
  given = [FLAGS.emotion is not None, FLAGS.valence is not None or FLAGS.arousal is not None, bool(images)]
  if sum(given) != 1:
    raise UserError("give exactly one of --emotion NAME, --valence V --arousal A, or --image PATH")
  if FLAGS.valence is not None or FLAGS.arousal is not None:
    if FLAGS.valence is None or FLAGS.arousal is None:
      raise UserError("--valence and --arousal go together")
  if not FLAGS.out:
    raise UserError("--out DIR is required")
  if FLAGS.num < 1:
    raise UserError(f"--num={FLAGS.num}: must be >= 1")
  generation.check_sampling(temperature=FLAGS.temperature, top_k=FLAGS.top_k, top_p=FLAGS.top_p,
                           guidance=FLAGS.guidance, rerank=FLAGS.rerank, seconds=FLAGS.seconds,
                           contrast=FLAGS.contrast, key_strength=FLAGS.key_strength,
                           key_scope=FLAGS.key_scope, velocity_strength=FLAGS.velocity_strength,
                           ending_strength=FLAGS.ending_strength,
                           attributes=FLAGS.attributes)
  return images


@exit_on_user_error
def main(argv):
  common.quiet_logging()
  images = check_inputs(argv[1:])
  with parallel.distributed():  # several processes (JAX_* variables): the batch spans them all
    return _generate(images)


def _generate(images):
  """Music for the photos (or the one emotion) the flags name; returns the exit code."""
  if images is not None:
    from facemusic_jax.face import detection
    images = detection.list_images(images)
  elif FLAGS.emotion is not None:
    condition = generation.condition_from_emotion(FLAGS.emotion)
  else:
    condition = generation.condition_from_va(FLAGS.valence, FLAGS.arousal)
  generator = generation.MusicGenerator(FLAGS.checkpoint)
  if images is not None:
    from facemusic_jax import face_to_music
    from facemusic_jax.face import classify
    single = len(images) == 1 and not os.path.isdir(FLAGS.image[0])
    return face_to_music.photos_to_music(images, FLAGS.out, classify.load_classifier(FLAGS.fer_checkpoint),
                                         generator, single=single, detect=not FLAGS.no_detect,
                                         which=FLAGS.faces, **sampling_options())
  summary = generation.write_run(FLAGS.out, generator, condition, **sampling_options())
  if jax.process_index() != 0:
    return 0
  if summary["audio_skipped"]:
    print(generation.AUDIO_SKIPPED, file=sys.stderr)
  print(generation.format_run(summary, FLAGS.out))
  return 0


def run():
  """The `facemusic-generate` console script."""
  app.run(main)


if __name__ == "__main__":
  run()
