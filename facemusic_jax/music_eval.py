"""Emotion control of a Music Transformer, measured without listeners.

For every music class, N pieces are generated with that class's condition and scored by the symbolic
emotion estimator (`facemusic_jax.estimator`, trained on EMOPIA's human labels). The fraction whose estimated
class matches the requested one stands beside the paper's listening test (Table 2). The estimator itself
reaches about .68 on held-out EMOPIA quadrants, so it bounds what this score can show: read the numbers as a
ranking of checkpoints and settings, not as a listening test. Distribution statistics of generated and
training music (pitch classes, note density, velocity, pitch range) catch a model that pleases the estimator
with unmusical output.
"""

import numpy as np

from facemusic_jax import emotion, estimator, music_gen

# The paper's listening-test accuracy per music class (Table 2).
PAPER_TABLE2: dict[str, float] = {"happiness": 0.851, "anger": 0.755, "surprise": 0.799, "sadness": 0.873,
                                  "others": 0.683}


def music_quadrant(music_class: str) -> int:
  """The EMOPIA quadrant that holds a music class (Q1 holds happiness and surprise)."""
  return next(q for q, names in emotion.QUADRANT_MUSIC_CLASSES.items() if music_class in names)


def note_arrays(ns) -> dict[str, np.ndarray]:
  """A NoteSequence -> arrays of pitch, velocity, start and end of its non-drum notes."""
  notes = [n for n in ns.notes if not n.is_drum]
  return {"pitch": np.array([n.pitch for n in notes], np.int32),
          "velocity": np.array([n.velocity for n in notes], np.float64),
          "start": np.array([n.start_time for n in notes], np.float64),
          "end": np.array([n.end_time for n in notes], np.float64)}


def distribution_stats(pieces: list[dict[str, np.ndarray]]) -> dict:
  """Statistics of a set of pieces (each from `note_arrays`). Per-piece quantities are averaged over the
  pieces that have notes; the pitch-class histogram and velocities pool every note."""
  voiced = [p for p in pieces if len(p["pitch"])]
  if not voiced:
    return {"pieces": len(pieces), "pieces_with_notes": 0}
  pitches = np.concatenate([p["pitch"] for p in voiced])
  velocities = np.concatenate([p["velocity"] for p in voiced])
  hist = np.bincount(pitches % 12, minlength=12).astype(np.float64)
  seconds = np.array([max(p["end"].max() - p["start"].min(), 1e-3) for p in voiced])
  return {
      "pieces": len(pieces), "pieces_with_notes": len(voiced),
      "notes_per_piece": float(np.mean([len(p["pitch"]) for p in voiced])),
      "seconds_per_piece": float(seconds.mean()),
      "notes_per_s": float(np.mean([len(p["pitch"]) / s for p, s in zip(voiced, seconds)])),
      "velocity_mean": float(velocities.mean()), "velocity_std": float(velocities.std()),
      "pitch_mean": float(pitches.mean()),
      "pitch_range": float(np.mean([p["pitch"].max() - p["pitch"].min() for p in voiced])),
      "pitch_class_histogram": [round(float(x), 4) for x in hist / hist.sum()],
  }


def histogram_overlap(a, b) -> float:
  """Intersection of two normalized histograms: 1 when equal, 0 when disjoint."""
  return float(np.minimum(np.asarray(a), np.asarray(b)).sum())


def control_accuracy(requested: list[str], estimated: list[str | None]) -> dict:
  """Per-class accuracy of estimated vs requested classes (an unscorable piece, None, counts as wrong), the
  quadrant-level accuracy, and the confusion counts (rows requested, columns estimated + 'unscored')."""
  columns = list(emotion.MUSIC_CLASSES) + ["unscored"]
  confusion = {c: dict.fromkeys(columns, 0) for c in emotion.MUSIC_CLASSES}
  for want, got in zip(requested, estimated):
    confusion[want][got or "unscored"] += 1
  per_class = {}
  for c in emotion.MUSIC_CLASSES:
    n = sum(confusion[c].values())
    if n:
      same_quadrant = sum(k for g, k in confusion[c].items()
                          if g != "unscored" and music_quadrant(g) == music_quadrant(c))
      per_class[c] = {"n": n, "accuracy": confusion[c][c] / n, "quadrant_accuracy": same_quadrant / n,
                      "paper": PAPER_TABLE2[c]}
  total = sum(v["n"] for v in per_class.values())
  return {
      "per_class": per_class,
      "accuracy": sum(v["accuracy"] * v["n"] for v in per_class.values()) / max(total, 1),
      "quadrant_accuracy": sum(v["quadrant_accuracy"] * v["n"] for v in per_class.values()) / max(total, 1),
      "paper_mean": float(np.mean(list(PAPER_TABLE2.values()))),
      "confusion": confusion,
  }


def estimate_classes(sequences, est=None) -> list[str | None]:
  """NoteSequences -> the estimator's music class for each (None when a piece has no notes)."""
  from note_seq import midi_io
  out = []
  for ns in sequences:
    if not any(not n.is_drum for n in ns.notes):
      out.append(None)
      continue
    out.append(estimator.predict(midi_io.note_sequence_to_pretty_midi(ns), est)["music_emotion"])
  return out


def reference_pieces(config, split: str = "validation", max_pieces: int = 200) -> list[dict[str, np.ndarray]]:
  """The notes of up to `max_pieces` examples (evenly spaced) of the checkpoint's own datasets."""
  from facemusic_jax.data.tokenizer import MidiTokenizer
  from facemusic_jax.training import music
  source = music.sources(config, split)
  tok = MidiTokenizer()
  picks = np.unique(np.linspace(0, len(source) - 1, min(max_pieces, len(source))).astype(int))
  return [note_arrays(tok.decode(source[int(i)]["tokens"])) for i in picks]


def evaluate(generator, *, num: int, length: int = 1024, seed: int = 0, temperature: float | None = None,
             top_k: int = 0, top_p: float = 0.95, guidance: float = 1.0, reference: bool = True,
             reference_split: str = "validation") -> dict:
  """Generates `num` pieces per music class with `generator` (a music_gen.MusicGenerator) and reports the
  estimator's control accuracy beside the paper's Table 2, plus generated-vs-training statistics."""
  temperature = music_gen.DEFAULT_TEMPERATURE if temperature is None else temperature
  tok = generator.tokenizer
  requested, sequences, per_class_notes, speeds = [], [], {}, []
  for k, name in enumerate(emotion.MUSIC_CLASSES):
    condition = music_gen.condition_from_emotion(name)
    pieces, tokens_per_s = generator.generate(condition, num=num, length=length, seed=seed + 1000 * k,
                                              temperature=temperature, top_k=top_k, top_p=top_p,
                                              guidance=guidance)
    speeds.append(tokens_per_s)
    decoded = [tok.decode(ids, max_note_duration=music_gen.MAX_NOTE_SECONDS) for ids in pieces]  # as written
    sequences += decoded
    requested += [name] * len(decoded)
    per_class_notes[name] = [note_arrays(ns) for ns in decoded]
  report = control_accuracy(requested, estimate_classes(sequences))
  generated = distribution_stats([p for v in per_class_notes.values() for p in v])
  report["distribution"] = {"generated": generated,
                            "generated_per_class": {c: distribution_stats(v) for c, v in per_class_notes.items()}}
  if reference:
    ref = distribution_stats(reference_pieces(generator.config, reference_split))
    report["distribution"]["training"] = ref
    if "pitch_class_histogram" in ref and "pitch_class_histogram" in generated:
      report["distribution"]["pitch_class_overlap"] = histogram_overlap(ref["pitch_class_histogram"],
                                                                        generated["pitch_class_histogram"])
  return report | {"checkpoint": generator.checkpoint, "num_per_class": num, "length": length, "seed": seed,
                   "temperature": temperature, "top_k": top_k, "top_p": top_p, "guidance": guidance,
                   "tokens_per_s": float(np.mean(speeds))}
