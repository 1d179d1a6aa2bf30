"""Generate emotion-conditioned music.

  python -m facemusic_jax.generate (--emotion NAME | --valence V --arousal A | --image PATH) --out DIR
      [--num N] [--length T] [--temperature X] [--top_k K] [--top_p P] [--seed S] [--checkpoint DIR]

NAME is a face emotion (angry, disgust, fear, happy, sad, surprise, neutral: mapped by the paper's rule) or a
music class (happiness, surprise, anger, sadness, others). V and A are on Russell's plane, in [-1, 1].
--image reads the emotion of the largest face in a photo with the FER classifier. Writes N MIDI files, a WAV
per file when libfluidsynth is present, and summary.json; the batch is spread over every local device.
"""

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from flax import nnx

from facemusic_jax import checkpointing, emotion, parallel, sampling
from facemusic_jax.data.tokenizer import MidiTokenizer
from facemusic_jax.errors import UserError, exit_on_user_error
from facemusic_jax.training import music

flags.DEFINE_string("emotion", None, "A face emotion or a music class.")
flags.DEFINE_float("valence", None, "Valence in [-1, 1] (with --arousal).")
flags.DEFINE_float("arousal", None, "Arousal in [-1, 1] (with --valence).")
flags.DEFINE_string("image", None, "A photo: the emotion of its largest face conditions the music.")
flags.DEFINE_bool("detect", True, "Detect the face in --image (--nodetect classifies the whole image).")
flags.DEFINE_string("fer_checkpoint", None, "FER classifier for --image (default: the shipped one).")
flags.DEFINE_string("checkpoint", None, "Music Transformer checkpoint (default: the shipped one).")
flags.DEFINE_string("out", None, "Output folder.")
flags.DEFINE_integer("num", 4, "Number of pieces.")
flags.DEFINE_integer("length", 1024, "Maximum tokens per piece (prompt included).")
flags.DEFINE_float("temperature", 1.0, "Sampling temperature.")
flags.DEFINE_integer("top_k", 0, "Keep the k most likely tokens (0: all).")
flags.DEFINE_float("top_p", 0.95, "Nucleus sampling mass (1: off).")
flags.DEFINE_float("guidance", 1.0, "Classifier-free guidance scale (1: off).")
flags.DEFINE_integer("seed", 0, "Random seed: the same seed gives the same pieces.")
flags.DEFINE_bool("audio", True, "Render a WAV per piece (needs libfluidsynth).")

FLAGS = flags.FLAGS
SAMPLE_RATE = 22050


def resolve_condition() -> dict:
  """The flags -> {'music_emotion', 'valence', 'arousal' (Russell), 'input', optional 'face'}."""
  given = [FLAGS.emotion is not None, FLAGS.valence is not None or FLAGS.arousal is not None,
           FLAGS.image is not None]
  if sum(given) != 1:
    raise UserError("give exactly one of --emotion NAME, --valence V --arousal A, or --image PATH")
  if FLAGS.emotion is not None:
    try:
      music_class, (v, a) = emotion.resolve_emotion(FLAGS.emotion)
    except ValueError as e:
      raise UserError(str(e)) from None
    return {"input": {"emotion": FLAGS.emotion}, "music_emotion": music_class, "valence": v, "arousal": a}
  if FLAGS.image is not None:
    from facemusic_jax import inference
    classifier = inference.load_classifier(FLAGS.fer_checkpoint)
    face = inference.classify_photo(classifier, FLAGS.image, detect=FLAGS.detect)
    return {"input": {"image": FLAGS.image}, "music_emotion": face["music_emotion"], "valence": face["valence"],
            "arousal": face["arousal"], "face": face}
  if FLAGS.valence is None or FLAGS.arousal is None:
    raise UserError("--valence and --arousal go together")
  for name, x in (("valence", FLAGS.valence), ("arousal", FLAGS.arousal)):
    if not -1.0 <= x <= 1.0:
      raise UserError(f"--{name}={x} is outside [-1, 1] (Russell's plane)")
  return {"input": {"valence": FLAGS.valence, "arousal": FLAGS.arousal},
          "music_emotion": emotion.music_class_from_russell(FLAGS.valence, FLAGS.arousal),
          "valence": FLAGS.valence, "arousal": FLAGS.arousal}


def generate_pieces(model, config, condition: dict, *, num: int, length: int, seed: int, **sampling_options):
  """Samples `num` pieces over every local device; returns (token arrays, tokens/s)."""
  tok = MidiTokenizer()
  prompt = [tok.bos_id] + ([tok.control_id(condition["music_emotion"])] if config.control_token else [])
  devices = jax.local_devices()
  batch = -(-num // len(devices)) * len(devices)  # pad the batch to whole shards
  mesh = parallel.make_mesh(devices)
  graphdef, state = nnx.split(model)
  fn = sampling.make_sharded_generate_fn(graphdef, mesh, max_len=length, eos_id=tok.eos_id, pad_id=tok.pad_id,
                                         **sampling_options)
  prompts = jnp.tile(jnp.array([prompt], jnp.int32), (batch, 1))
  va = jnp.tile(jnp.array([[condition["valence"], condition["arousal"]]], jnp.float32), (batch, 1))
  keys = sampling.sample_keys(seed, batch)
  state = parallel.replicate(state, mesh)
  fn(state, prompts, va, keys)  # compile
  start = time.perf_counter()
  tokens, lengths = jax.block_until_ready(fn(state, prompts, va, keys))
  seconds = time.perf_counter() - start
  tokens, lengths = np.asarray(tokens)[:num], np.asarray(lengths)[:num]
  generated = int((lengths - len(prompt)).sum())
  return [t[:n] for t, n in zip(tokens, lengths)], generated / max(seconds, 1e-9)


def render_audio(midi_path: str, wav_path: str) -> str | None:
  """MIDI -> WAV with pretty_midi's fluidsynth and its bundled General MIDI soundfont; None if unavailable."""
  try:
    import pretty_midi
    from scipy.io import wavfile
    audio = pretty_midi.PrettyMIDI(midi_path).fluidsynth(fs=SAMPLE_RATE)
  except (ImportError, OSError) as e:
    logging.info("audio unavailable: %s", e)
    return None
  peak = max(float(np.abs(audio).max()), 1e-9)
  wavfile.write(wav_path, SAMPLE_RATE, (audio / peak * 0.9 * 32767).astype(np.int16))
  return wav_path


@exit_on_user_error
def main(argv):
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  if not FLAGS.out:
    raise UserError("--out DIR is required")
  if FLAGS.num < 1 or FLAGS.length < 3:
    raise UserError("--num must be >= 1 and --length >= 3")
  condition = resolve_condition()
  ckpt = checkpointing.resolve(FLAGS.checkpoint, "music_cpu", "music_cpu")
  model, config = checkpointing.load_model(ckpt, music.build_model)
  pieces, tokens_per_s = generate_pieces(
      model, config, condition, num=FLAGS.num, length=FLAGS.length, seed=FLAGS.seed,
      temperature=FLAGS.temperature, top_k=FLAGS.top_k, top_p=FLAGS.top_p, guidance_scale=FLAGS.guidance)

  os.makedirs(FLAGS.out, exist_ok=True)
  tok = MidiTokenizer()
  files, audio_skipped = [], False
  for i, ids in enumerate(pieces):
    midi = os.path.join(FLAGS.out, f"{condition['music_emotion']}_{i:02d}.mid")
    ns = tok.to_midi(ids, midi)
    entry = {"midi": midi, "tokens": len(ids), "notes": len(ns.notes), "seconds": round(ns.total_time, 2)}
    if FLAGS.audio and not audio_skipped:
      wav = render_audio(midi, midi[:-4] + ".wav")
      if wav:
        entry["wav"] = wav
      else:
        audio_skipped = True
        print("audio skipped: libfluidsynth or pyfluidsynth is missing (apt-get install libfluidsynth3); "
              "MIDI files are written", file=sys.stderr)
    files.append(entry)

  summary = {
      "input": condition["input"], "music_emotion": condition["music_emotion"],
      "valence": condition["valence"], "arousal": condition["arousal"], "face": condition.get("face"),
      "checkpoint": os.path.abspath(ckpt), "seed": FLAGS.seed, "temperature": FLAGS.temperature,
      "top_k": FLAGS.top_k, "top_p": FLAGS.top_p, "guidance": FLAGS.guidance, "length": FLAGS.length,
      "devices": len(jax.local_devices()), "tokens_per_s": round(tokens_per_s, 1), "files": files,
  }
  with open(os.path.join(FLAGS.out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  print(f"{condition['music_emotion']} (valence {condition['valence']:+.2f}, arousal {condition['arousal']:+.2f}):"
        f" {len(files)} pieces at {tokens_per_s:.0f} tokens/s in {FLAGS.out}")
  for entry in files:
    print(f"  {entry['midi']}  {entry['notes']} notes, {entry['seconds']} s" +
          (f"  + {os.path.basename(entry['wav'])}" if "wav" in entry else ""))


if __name__ == "__main__":
  app.run(main)
