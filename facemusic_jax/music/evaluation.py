"""Emotion control of a Music Transformer, measured without listeners.

For every music class, N pieces are generated with that class's condition and scored by the symbolic
emotion estimator (`facemusic_jax.music.estimator`, trained on the training songs of EMOPIA's human labels). The
fraction whose estimated class matches the requested one stands beside the paper's listening test (Table 2),
with a 95% Wilson interval, and so does the quadrant-level fraction (EMOPIA's human labels are quadrants).
Beside each quadrant stands the evaluator's own ceiling: its accuracy on the real EMOPIA clips of the
validation songs, read through the same tokenize -> decode path (from the estimator's metadata). A generated
quadrant can score above that ceiling (the music may be more typical of its quadrant than real clips are),
so read the scores as a ranking of checkpoints and settings, not as a listening test. Distribution
statistics of generated and training music (pitch classes, note density, velocity, pitch range) catch a
model that pleases the estimator with unmusical output.

Sampling settings are chosen on other seeds than the reported ones (see generation.py defaults).
"""

import json
import os

import numpy as np

from facemusic_jax import emotion
from facemusic_jax.core import checkpointing
from facemusic_jax.core.metrics import wilson_interval
from facemusic_jax.music import estimator, generation, tokenizer

# The second judge `evaluate music` uses when no --classifier is given (configs/music_emotion_cpu.py).
SHIPPED_CLASSIFIER = os.path.join(checkpointing.RELEASE_DIR, "music_emotion")
CEILING_FILE = "ceiling_validation.json"

# The paper's listening-test accuracy per music class (Table 2).
PAPER_TABLE2: dict[str, float] = {"happiness": 0.851, "anger": 0.755, "surprise": 0.799, "sadness": 0.873,
                                  "others": 0.683}


def note_arrays(ns) -> dict[str, np.ndarray]:
  """A NoteSequence -> arrays of pitch, velocity, start and end of its non-drum notes."""
  notes = [n for n in ns.notes if not n.is_drum]
  return {"pitch": np.array([n.pitch for n in notes], np.int32),
          "velocity": np.array([n.velocity for n in notes], np.float64),
          "start": np.array([n.start_time for n in notes], np.float64),
          "end": np.array([n.end_time for n in notes], np.float64)}


def polyphony(start: np.ndarray, end: np.ndarray) -> float:
  """How many notes sound at once on average while any sounds: the notes' total length over the length of
  their union."""
  order = np.argsort(start)
  union, reach = 0.0, -np.inf
  for s, e in zip(start[order], end[order]):
    union += max(0.0, e - max(s, reach))
    reach = max(reach, e)
  return float((end - start).sum() / max(union, 1e-9))


def distribution_stats(pieces: list[dict[str, np.ndarray]]) -> dict:
  """Statistics of a set of pieces (each from `note_arrays`). Per-piece quantities are averaged over the
  pieces that have notes; the pitch-class histogram, velocities and note lengths pool every note."""
  voiced = [p for p in pieces if len(p["pitch"])]
  if not voiced:
    return {"pieces": len(pieces), "pieces_with_notes": 0}
  pitches = np.concatenate([p["pitch"] for p in voiced])
  velocities = np.concatenate([p["velocity"] for p in voiced])
  durations = np.concatenate([p["end"] - p["start"] for p in voiced])
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
      "note_seconds_median": float(np.median(durations)), "note_seconds_p90": float(np.percentile(durations, 90)),
      "polyphony": float(np.mean([polyphony(p["start"], p["end"]) for p in voiced])),
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
  per_class, quadrant_hits = {}, {q: [0, 0] for q in emotion.QUADRANT_SIGNS}
  for c in emotion.MUSIC_CLASSES:
    n = sum(confusion[c].values())
    if n:
      same_quadrant = sum(k for g, k in confusion[c].items()
                          if g != "unscored" and emotion.class_quadrant(g) == emotion.class_quadrant(c))
      per_class[c] = {"n": n, "accuracy": confusion[c][c] / n, "ci95": wilson_interval(confusion[c][c], n),
                      "quadrant_accuracy": same_quadrant / n, "paper": PAPER_TABLE2[c]}
      quadrant_hits[emotion.class_quadrant(c)][0] += same_quadrant
      quadrant_hits[emotion.class_quadrant(c)][1] += n
  per_quadrant = {f"Q{q}": {"n": n, "accuracy": k / n, "ci95": wilson_interval(k, n)}
                  for q, (k, n) in quadrant_hits.items() if n}
  total = sum(v["n"] for v in per_class.values())
  return {
      "per_class": per_class,
      "per_quadrant": per_quadrant,
      "accuracy": sum(v["accuracy"] * v["n"] for v in per_class.values()) / max(total, 1),
      "quadrant_accuracy": sum(v["quadrant_accuracy"] * v["n"] for v in per_class.values()) / max(total, 1),
      "paper_mean": float(np.mean(list(PAPER_TABLE2.values()))),
      "confusion": confusion,
  }


def evaluator_ceiling(est=None) -> dict:
  """The estimator's own accuracy on real EMOPIA validation clips through tokenize -> decode, per quadrant and
  per music class (each clip's class as the training data labels it), as scripts/train_estimator.py stored it;
  empty for weights without that record."""
  meta = (est or estimator.load()).meta
  held_out = meta.get("validation_decoded", {})
  return {"quadrant": held_out.get("quadrant"), "per_quadrant": held_out.get("per_quadrant", {}),
          "per_class": held_out.get("per_class", {}), "clips": meta.get("split", {}).get("validation_clips")}


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


# ------------------------------------------------------------------------------------- the second judge


class QuadrantClassifier:
  """A trained music emotion classifier (configs/music_emotion_cpu.py): NoteSequences or token events ->
  probabilities of EMOPIA's four quadrants, averaged over up to `max_windows` consecutive windows."""

  def __init__(self, checkpoint: str | None = None, *, max_windows: int = 4, batch_size: int = 32):
    import jax
    from flax import nnx
    from facemusic_jax.models.music_transformer import MusicEmotionClassifier
    from facemusic_jax.models.music_transformer import classifier_inputs
    self.checkpoint = checkpointing.resolve(checkpoint, "music_emotion", "music_emotion_cpu")
    model, self.config = checkpointing.load_model(self.checkpoint, MusicEmotionClassifier.from_config)
    self.tokenizer = tokenizer.for_config(self.config)
    self.max_windows, self.batch_size = max_windows, batch_size
    graphdef, variables = nnx.split(model)
    null_id = self.tokenizer.null_id

    def probs(variables, inputs):
      tokens, mask = classifier_inputs(inputs, null_id)
      return jax.nn.softmax(nnx.merge(graphdef, variables)(tokens, mask))

    self._probs = jax.jit(probs)
    self._variables = variables

  def windows(self, events: np.ndarray) -> np.ndarray:
    """One piece's events -> its (W, seq_len) input windows, framed as in training (BOS, null control)."""
    from facemusic_jax.data import music_pipeline
    cfg = music_pipeline.MusicExampleConfig(seq_len=self.config.seq_len, control_token=True)
    need = cfg.seq_len + 1 - cfg.prefix_len
    events = np.asarray(events, np.int32)
    count = max(1, min(self.max_windows, -(-len(events) // need)))
    return np.stack([music_pipeline.frame(events[w * need:(w + 1) * need], 0, self.tokenizer, cfg,
                                          (w + 1) * need >= len(events))["inputs"] for w in range(count)])

  def classify_events(self, pieces) -> np.ndarray:
    """Token events of this classifier's vocabulary, one array per piece -> (N, 4) quadrant probabilities."""
    windows = [self.windows(e) for e in pieces]
    flat = np.concatenate(windows)
    pad = -len(flat) % self.batch_size  # whole batches: one compilation
    flat = np.concatenate([flat, np.zeros((pad, flat.shape[1]), flat.dtype)])
    probs = np.concatenate([np.asarray(self._probs(self._variables, flat[i:i + self.batch_size]))
                            for i in range(0, len(flat), self.batch_size)])
    ends = np.cumsum([len(w) for w in windows])
    return np.stack([probs[e - len(w):e].mean(0) for w, e in zip(windows, ends)])

  def classify(self, sequences) -> list[int | None]:
    """NoteSequences -> the likeliest quadrant (1..4) of each (None for a piece without notes)."""
    events = [self.tokenizer.encode_sequence(ns) if any(not n.is_drum for n in ns.notes) else None
              for ns in sequences]
    scored = [e for e in events if e is not None and len(e)]
    quadrants = iter(self.classify_events(scored).argmax(-1) + 1) if scored else iter(())
    return [int(next(quadrants)) if e is not None and len(e) else None for e in events]

  def ceiling(self) -> dict:
    """Its own per-quadrant accuracy on the real pieces of the validation split of its training datasets
    (EMOPIA's validation songs: nothing was chosen on them), with 95% intervals. Computed once and kept in
    the checkpoint folder (CEILING_FILE), so a shipped classifier needs no dataset to report it."""
    path = os.path.join(self.checkpoint, CEILING_FILE)
    if os.path.isfile(path):
      with open(path) as f:
        return json.load(f)
    result = self._ceiling("validation")
    try:
      with open(path, "w") as f:
        json.dump(result, f, indent=1)
    except OSError:  # a read-only install: report it all the same
      pass
    return result

  def _ceiling(self, split: str) -> dict:
    from facemusic_jax.data import music_pipeline
    from facemusic_jax.data import music_pipeline
    source = music_pipeline.sources(self.config, split)
    records = [source[i] for i in range(len(source))]
    labelled = [(r, music_pipeline.condition(r)[0]) for r in records]
    labelled = [(r, q) for r, q in labelled if q > 0]
    # Through the same path as generated music: tokens -> NoteSequence -> this classifier's tokens.
    sequences = [self.tokenizer.decode(np.asarray(r["tokens"], np.int32)) for r, _ in labelled]
    predicted = np.array([q or 0 for q in self.classify(sequences)])
    truth = np.array([q for _, q in labelled])
    result = quadrant_scores(truth, predicted) | {"pieces": len(truth), "split": split}
    return json.loads(json.dumps(result))  # the form it has when read back from CEILING_FILE


def quadrant_scores(truth: np.ndarray, predicted: np.ndarray) -> dict:
  """Overall and per-quadrant accuracy of quadrant predictions (1..4), each with its 95% Wilson interval."""
  truth, predicted = np.asarray(truth), np.asarray(predicted)
  per_q = {}
  for q in emotion.QUADRANT_SIGNS:
    n, k = int((truth == q).sum()), int(((truth == q) & (predicted == q)).sum())
    if n:
      per_q[f"Q{q}"] = {"n": n, "accuracy": k / n, "ci95": wilson_interval(k, n)}
  hits = int((truth == predicted).sum())
  return {"accuracy": hits / max(len(truth), 1), "ci95": wilson_interval(hits, len(truth)), "per_quadrant": per_q}


def judge_control(classifier: QuadrantClassifier, requested: list[str], judged: list[int | None]) -> dict:
  """The second judge's quadrant-level control accuracy, from its verdicts `judged` on the generated pieces
  (a piece without notes, None, counts as a miss), beside its own ceiling on real validation pieces."""
  predicted = np.array([q or 0 for q in judged])
  truth = np.array([emotion.class_quadrant(c) for c in requested])
  return quadrant_scores(truth, predicted) | {"checkpoint": classifier.checkpoint, "ceiling": classifier.ceiling()}


def write_pieces(out: str, requested: list[str], sequences, estimated: list[str | None],
                 judged: list[int | None] | None) -> str:
  """The scored pieces as `<class>_<i>.mid` in `out`, and pieces.csv (file, requested class and quadrant, the
  estimator's class, the second judge's quadrant): material for a blind listening test. Returns the CSV path."""
  import csv
  from note_seq import midi_io
  os.makedirs(out, exist_ok=True)
  rows, seen = [], {}
  for i, (name, ns) in enumerate(zip(requested, sequences)):
    k = seen[name] = seen.get(name, -1) + 1
    file = f"{name}_{k:03d}.mid"
    midi_io.note_sequence_to_midi_file(ns, os.path.join(out, file))
    judge = judged[i] if judged is not None else None
    rows.append({"file": file, "requested": name, "requested_quadrant": emotion.class_quadrant(name),
                 "estimator": estimated[i] or "", "second_judge_quadrant": judge or ""})
  path = os.path.join(out, "pieces.csv")
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  return path


def reference_pieces(config, split: str = "validation", max_pieces: int = 200) -> list[dict[str, np.ndarray]]:
  """The notes of up to `max_pieces` examples (evenly spaced) of the checkpoint's own datasets."""
  from facemusic_jax.data import music_pipeline
  source = music_pipeline.sources(config, split)
  tok = tokenizer.for_config(config)
  picks = np.unique(np.linspace(0, len(source) - 1, min(max_pieces, len(source))).astype(int))
  return [note_arrays(tok.decode(source[int(i)]["tokens"])) for i in picks]


def evaluate(generator, *, num: int, length: int | None = None, seconds: float | None = None, seed: int = 0,
             temperature: float | None = None, top_k: int = 0, top_p: float | None = None,
             guidance: float | None = None, contrast: str | None = None, key_strength: float | None = None,
             key_scope: str | None = None, velocity_strength: float | None = None,
             ending_strength: float | None = None, attributes: str | None = None, rerank: int = 1,
             reference: bool = True,
             reference_split: str = "validation", classifier: QuadrantClassifier | None = None,
             out: str | None = None) -> dict:
  """Generates `num` pieces per music class with `generator` (a generation.MusicGenerator) and reports the
  estimator's control accuracy (per class and per quadrant, with intervals) beside the paper's Table 2 and the
  estimator's own ceiling, plus generated-vs-training statistics. Class k samples with seed + 1000 * k. With
  `out`, every scored piece is written there as MIDI, with pieces.csv (see write_pieces)."""
  options = generation.sampling_options(length=length, seconds=seconds, seed=seed, top_k=top_k, rerank=rerank,
                                       temperature=temperature, top_p=top_p, guidance=guidance, contrast=contrast,
                                       key_strength=key_strength, key_scope=key_scope,
                                       velocity_strength=velocity_strength, ending_strength=ending_strength,
                                       attributes=attributes)
  tok = generator.tokenizer
  requested, sequences, per_class_notes, speeds, ended = [], [], {}, [], []
  for k, name in enumerate(emotion.MUSIC_CLASSES):
    condition = generation.condition_from_emotion(name)
    result = generator.generate(condition, num=num, **(options | {"seed": seed + 1000 * k}))
    speeds.append(result.tokens_per_s)
    ended += result.ended.tolist()
    decoded = [tok.decode(ids, max_note_duration=generation.MAX_NOTE_SECONDS) for ids in result.pieces]  # as written
    sequences += decoded
    requested += [name] * len(decoded)
    per_class_notes[name] = [note_arrays(ns) for ns in decoded]
  estimated = estimate_classes(sequences)
  report = control_accuracy(requested, estimated)
  report["evaluator_ceiling"] = evaluator_ceiling()
  judged = classifier.classify(sequences) if classifier is not None else None
  if classifier is not None:
    report["second_judge"] = judge_control(classifier, requested, judged)
  if out:
    report["pieces"] = write_pieces(out, requested, sequences, estimated, judged)
  generated = distribution_stats([p for v in per_class_notes.values() for p in v])
  report["distribution"] = {"generated": generated,
                            "generated_per_class": {c: distribution_stats(v) for c, v in per_class_notes.items()}}
  if reference:
    ref = distribution_stats(reference_pieces(generator.config, reference_split))
    report["distribution"]["training"] = ref
    if "pitch_class_histogram" in ref and "pitch_class_histogram" in generated:
      report["distribution"]["pitch_class_overlap"] = histogram_overlap(ref["pitch_class_histogram"],
                                                                        generated["pitch_class_histogram"])
  return report | {"checkpoint": generator.checkpoint, "num_per_class": num, **options,
                   "length": options["length"] or generator.max_length,
                   "ended_with_eos": float(np.mean(ended)), "tokens_per_s": float(np.mean(speeds))}


# ------------------------------------------------------------------------------------------- report


def _interval(ci) -> str:
  return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def format_report(report: dict) -> str:
  """Control accuracy per class beside the paper's Table 2 and per quadrant beside the evaluator's ceiling,
  then the distribution statistics."""
  lines = [f"checkpoint:  {report['checkpoint']}",
           f"pieces:      {report['num_per_class']} per class, <= {report['length']} tokens"
           + (f" / {report['seconds']} s" if report.get("seconds") else "")
           + f", seed {report['seed']}, temperature {report['temperature']}, top-p {report['top_p']}, "
           f"guidance {report['guidance']} from {report['contrast']}, key steering {report['key_strength']} "
           f"({report['key_scope']}), velocity steering {report['velocity_strength']}, ending {report['ending_strength']}, "
           f"rerank {report['rerank']} "
           f"({report['tokens_per_s']:.0f} tokens/s, "
           f"{report['ended_with_eos']:.0%} ended with EOS)",
           "",
           f"{'class':<10} {'estimator':>9} {'95% interval':>13} {'quadrant':>8} {'paper':>6} {'ceiling':>8}   "
           "(paper: listening test, Table 2; ceiling: the estimator on real EMOPIA validation clips of the class)"]
  class_ceiling = report.get("evaluator_ceiling", {}).get("per_class", {})
  for name, row in report["per_class"].items():
    real = class_ceiling.get(name)
    lines.append(f"{name:<10} {row['accuracy']:>9.3f} {_interval(row['ci95']):>13} {row['quadrant_accuracy']:>8.3f} "
                 f"{row['paper']:>6.3f} " + (f"{real['accuracy']:>8.3f} of {real['n']}" if real else f"{'-':>8}"))
  lines.append(f"{'mean':<10} {report['accuracy']:>9.3f} {'':>13} {report['quadrant_accuracy']:>8.3f} "
               f"{report['paper_mean']:>6.3f}")
  ceiling = report.get("evaluator_ceiling", {}).get("per_quadrant", {})
  lines += ["", f"{'quadrant':<10} {'estimator':>9} {'95% interval':>13}   evaluator's own accuracy on real "
                f"EMOPIA validation clips (tokenize -> decode)"]
  for q, row in report["per_quadrant"].items():
    real = ceiling.get(q)
    lines.append(f"{q:<10} {row['accuracy']:>9.3f} {_interval(row['ci95']):>13}   " +
                 (f"{real['accuracy']:.3f} {_interval(real['ci95'])} of {real['n']}" if real else "-"))
  judge = report.get("second_judge")
  if judge:
    lines += ["", f"{'quadrant':<10} {'classifier':>10} {'95% interval':>13}   second judge ({judge['checkpoint']}); its own "
                  f"accuracy on real EMOPIA validation pieces"]
    for q, row in judge["per_quadrant"].items():
      real = judge["ceiling"]["per_quadrant"].get(q)
      lines.append(f"{q:<10} {row['accuracy']:>10.3f} {_interval(row['ci95']):>13}   " +
                   (f"{real['accuracy']:.3f} {_interval(real['ci95'])} of {real['n']}" if real else "-"))
    lines.append(f"{'all':<10} {judge['accuracy']:>10.3f} {_interval(judge['ci95']):>13}   "
                 f"{judge['ceiling']['accuracy']:.3f} {_interval(judge['ceiling']['ci95'])}")
  dist = report["distribution"]
  columns = [("generated", dist["generated"])] + ([("training", dist["training"])] if "training" in dist else [])
  keys = ("notes_per_piece", "seconds_per_piece", "notes_per_s", "velocity_mean", "velocity_std", "pitch_mean",
          "pitch_range", "note_seconds_median", "note_seconds_p90", "polyphony")
  lines += ["", f"{'statistic':<18}" + "".join(f"{name:>11}" for name, _ in columns)]
  for key in keys:
    lines.append(f"{key:<18}" + "".join(f"{d[key]:>11.2f}" if key in d else f"{'-':>11}" for _, d in columns))
  if "pitch_class_overlap" in dist:
    lines.append(f"pitch-class histogram overlap (generated vs training): {dist['pitch_class_overlap']:.3f}")
  if "pieces" in report:
    lines.append(f"the pieces, with what was asked and what each judge heard: {report['pieces']}")
  return "\n".join(lines)
