"""Emotion-conditioned music generation as a library: the CLI (`generate`), the demo, `evaluate music` and the
notebook all go through here, so a piece is made, written and described the same way everywhere.

  gen = MusicGenerator()                      # the shipped checkpoint, or MusicGenerator("workdir")
  condition = condition_from_emotion("happy")
  summary = write_run("out/happy", gen, condition, num=4)   # MIDI, WAV, plots, summary.json, index.html

A condition is a dict: {"input": what the user gave, "music_emotion": class, "valence", "arousal" (Russell,
[-1, 1]), optional "face": the classifier's description}. No absl flags live here.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from facemusic_jax import checkpointing, emotion, parallel, sampling
from facemusic_jax.data.tokenizer import MidiTokenizer
from facemusic_jax.errors import UserError
from facemusic_jax.training import music

SAMPLE_RATE = 22050
# A sampled note-on whose note-off never comes would otherwise drone to the end of the piece; EMOPIA's
# pedalled notes rarely ring longer than this.
MAX_NOTE_SECONDS = 8.0
# Sampling temperature of every entry point. On the shipped model, `evaluate music --num 20` (2 seeds) gave a
# mean control accuracy of .52 at 0.8 against .44 at 1.0 (.48 at 0.9, .44 at 0.6): happiness went .05 -> .33.
DEFAULT_TEMPERATURE = 0.8
AUDIO_SKIPPED = ("audio skipped: libfluidsynth or pyfluidsynth is missing (apt-get install libfluidsynth3); "
                 "MIDI files are written")


# ----------------------------------------------------------------------------------------- conditions


def condition_from_emotion(name: str) -> dict:
  """A FER label (mapped by the paper's rule) or a music class name."""
  try:
    music_class, (v, a) = emotion.resolve_emotion(name)
  except ValueError as e:
    raise UserError(str(e)) from None
  return {"input": {"emotion": name}, "music_emotion": music_class, "valence": v, "arousal": a}


def condition_from_va(valence: float, arousal: float) -> dict:
  """A point of Russell's plane; its class follows the paper's rule."""
  for name, x in (("valence", valence), ("arousal", arousal)):
    if not -1.0 <= x <= 1.0:
      raise UserError(f"--{name}={x} is outside [-1, 1] (Russell's plane)")
  return {"input": {"valence": valence, "arousal": arousal},
          "music_emotion": emotion.music_class_from_russell(valence, arousal),
          "valence": float(valence), "arousal": float(arousal)}


def condition_from_face(face: dict, image: str) -> dict:
  """`inference.classify_photo`'s result: the expected (valence, arousal) of the 7 probabilities conditions the
  music, the class is the arg-max emotion's (Table 1 through the paper's face -> music map)."""
  return {"input": {"image": image}, "music_emotion": face["music_emotion"], "valence": face["valence"],
          "arousal": face["arousal"], "face": face}


# ----------------------------------------------------------------------------------------- generation


class MusicGenerator:
  """A loaded Music Transformer and its compiled, device-sharded samplers (one per shape and options)."""

  def __init__(self, checkpoint: str | None = None):
    self.checkpoint = os.path.abspath(checkpointing.resolve(checkpoint, "music_cpu", "music_cpu"))
    model, self.config = checkpointing.load_model(self.checkpoint, music.build_model)
    self.graphdef, state = nnx.split(model)
    self.devices = jax.local_devices()
    self.mesh = parallel.make_mesh(self.devices)
    self.state = parallel.replicate(state, self.mesh)
    self.tokenizer = MidiTokenizer()
    self._compiled = {}

  def prompt(self, music_emotion: str) -> list[int]:
    tok = self.tokenizer
    return [tok.bos_id] + ([tok.control_id(music_emotion)] if self.config.control_token else [])

  def _sampler(self, length: int, options: tuple, prompts, va, keys):
    """The sampler compiled ahead of time for these shapes and options (compiling by a first run would
    generate every piece twice)."""
    key = (length, options, prompts.shape)
    if key not in self._compiled:
      tok = self.tokenizer
      fn = sampling.make_sharded_generate_fn(self.graphdef, self.mesh, max_len=length, eos_id=tok.eos_id,
                                             pad_id=tok.pad_id, **dict(options))
      self._compiled[key] = fn.lower(self.state, prompts, va, keys).compile()
    return self._compiled[key]

  def generate(self, condition: dict, *, num: int, length: int = 1024, seed: int = 0,
               temperature: float = DEFAULT_TEMPERATURE, top_k: int = 0, top_p: float = 0.95,
               guidance: float = 1.0) -> tuple[list[np.ndarray], float]:
    """`num` pieces (token ids, prompt included, cut at EOS) spread over every local device, and the
    generated tokens/s (compilation excluded)."""
    if num < 1 or length < 3:
      raise UserError(f"num must be >= 1 and length >= 3 (got num={num}, length={length})")
    prompt = self.prompt(condition["music_emotion"])
    batch = -(-num // len(self.devices)) * len(self.devices)  # whole shards; the extra pieces are dropped
    options = (("temperature", temperature), ("top_k", top_k), ("top_p", top_p), ("guidance_scale", guidance))
    prompts = jnp.tile(jnp.array([prompt], jnp.int32), (batch, 1))
    va = jnp.tile(jnp.array([[condition["valence"], condition["arousal"]]], jnp.float32), (batch, 1))
    keys = sampling.sample_keys(seed, batch)
    fn = self._sampler(length, options, prompts, va, keys)
    start = time.perf_counter()
    tokens, lengths = jax.block_until_ready(fn(self.state, prompts, va, keys))
    seconds = time.perf_counter() - start
    tokens, lengths = np.asarray(tokens)[:num], np.asarray(lengths)[:num]
    generated = int((lengths - len(prompt)).sum())
    return [t[:n] for t, n in zip(tokens, lengths)], generated / max(seconds, 1e-9)


# ----------------------------------------------------------------------------------------- outputs


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


def write_pieces(out_dir: str, pieces, music_emotion: str, *, audio: bool = True,
                 piano_rolls: bool = True) -> tuple[list[dict], bool]:
  """Token sequences -> out_dir/<class>_NN.mid (+ .wav, + .png piano roll). Returns (file entries, whether
  audio was asked for but could not be rendered)."""
  from facemusic_jax import plots
  os.makedirs(out_dir, exist_ok=True)
  tok = MidiTokenizer()
  files, audio_skipped = [], False
  for i, ids in enumerate(pieces):
    midi = os.path.join(out_dir, f"{music_emotion}_{i:02d}.mid")
    ns = tok.to_midi(ids, midi, max_note_duration=MAX_NOTE_SECONDS)
    entry = {"midi": midi, "tokens": int(len(ids)), "notes": len(ns.notes), "seconds": round(ns.total_time, 2)}
    if audio and not audio_skipped:
      wav = render_audio(midi, midi[:-4] + ".wav")
      if wav:
        entry["wav"] = wav
      else:
        audio_skipped = True
    if piano_rolls:
      entry["piano_roll"] = plots.piano_roll(midi[:-4] + ".png", midi, title=f"{music_emotion} #{i + 1}")
    files.append(entry)
  return files, audio_skipped


def write_condition_plots(out_dir: str, condition: dict, crop: np.ndarray | None = None) -> dict:
  """The valence-arousal plane with this input's point, and the face crop with its probabilities."""
  from facemusic_jax import plots
  os.makedirs(out_dir, exist_ok=True)
  face = condition.get("face")
  label = f"this face: {face['emotion']}" if face else f"{condition['music_emotion']}"
  out = {"va_plane": plots.va_plane(os.path.join(out_dir, "va_plane.png"),
                                    point=(condition["valence"], condition["arousal"]), label=label)}
  if face is not None and crop is not None:
    out["face"] = plots.face_probabilities(os.path.join(out_dir, "face.png"), crop, face["probabilities"],
                                           title=os.path.basename(condition["input"]["image"]))
  return out


def write_run(out_dir: str, generator: MusicGenerator, condition: dict, *, num: int = 4, length: int = 1024,
              seed: int = 0, temperature: float = DEFAULT_TEMPERATURE, top_k: int = 0, top_p: float = 0.95,
              guidance: float = 1.0, audio: bool = True, plots: bool = True,
              crop: np.ndarray | None = None) -> dict:
  """Generates and writes everything for one condition: MIDI, WAV, piano rolls, the V-A plane, the face
  plot, summary.json and index.html. Returns the summary (with "audio_skipped")."""
  pieces, tokens_per_s = generator.generate(condition, num=num, length=length, seed=seed,
                                            temperature=temperature, top_k=top_k, top_p=top_p, guidance=guidance)
  files, audio_skipped = write_pieces(out_dir, pieces, condition["music_emotion"], audio=audio,
                                      piano_rolls=plots)
  summary = {
      "input": condition["input"], "music_emotion": condition["music_emotion"],
      "valence": float(condition["valence"]), "arousal": float(condition["arousal"]),
      "face": condition.get("face"), "checkpoint": generator.checkpoint, "seed": seed,
      "temperature": temperature, "top_k": top_k, "top_p": top_p, "guidance": guidance, "length": length,
      "devices": len(generator.devices), "tokens_per_s": round(tokens_per_s, 1),
      "plots": write_condition_plots(out_dir, condition, crop) if plots else {}, "files": files,
  }
  if plots:
    summary["index"] = os.path.join(out_dir, "index.html")
  with open(os.path.join(out_dir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  if plots:
    from facemusic_jax import report
    report.write_index(out_dir, summary)
  return summary | {"audio_skipped": audio_skipped}


def format_run(summary: dict, out_dir: str) -> str:
  """What a run made, for the terminal: the face (if any), the condition, each piece, the page to open."""
  lines = []
  face = summary.get("face")
  if face:
    lines.append(f"{summary['input']['image']}: {face['emotion']} face "
                 f"({face['probabilities'][face['emotion']]:.0%}), box {face['face_box']}")
  lines.append(f"{summary['music_emotion']} (valence {summary['valence']:+.2f}, arousal {summary['arousal']:+.2f}):"
               f" {len(summary['files'])} pieces at {summary['tokens_per_s']:.0f} tokens/s in {out_dir}")
  for entry in summary["files"]:
    lines.append(f"  {entry['midi']}  {entry['notes']} notes, {entry['seconds']} s" +
                 (f"  + {os.path.basename(entry['wav'])}" if "wav" in entry else ""))
  if "index" in summary:
    lines.append(f"  open {summary['index']}")
  return "\n".join(lines)
