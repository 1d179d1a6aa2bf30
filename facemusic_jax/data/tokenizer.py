"""MIDI <-> token ids: note_seq's performance events plus our special and emotion control tokens.

The Music Transformer's piano setting (Huang et al., 2018): drums dropped, every other instrument merged
into one performance, sustain pedal applied (notes held while the pedal is down), 10 ms absolute
quantization, and note_seq's `PerformanceOneHotEncoding` with 32 velocity bins = 388 events
(128 note-on, 128 note-off, 100 time-shifts of 10..1000 ms, 32 velocities).

Vocabulary (`MidiTokenizer`):
  0 PAD, 1 BOS, 2 EOS | 3 .. 390 the 388 performance events | 391 .. 394 one control per Russell quadrant
  (Q1..Q4, see `emotion`) | 395 the null control (no condition: unlabelled music, and the unconditioned
  branch of classifier-free guidance). Controls come last so adding one never renumbers an event.

`encode_*` return the bare event ids of a whole piece; the training pipeline adds BOS, the control token
and EOS around its crops. Bad files raise `EncodeError` with one of `REASONS`; `encode_corpus` counts
them and goes on, so a corpus pass never dies on one file.
"""

import collections
import dataclasses
import functools
import io
import math
import os
import warnings
from typing import Iterable, Iterator, Sequence

from absl import logging
import numpy as np
import pretty_midi


with warnings.catch_warnings():
  # note_seq imports pydub (audio), which warns about a missing ffmpeg we never use.
  warnings.simplefilter("ignore")
  import note_seq
  from note_seq import performance_lib
  from note_seq import sequences_lib

STEPS_PER_SECOND = 100  # 10 ms steps
NUM_VELOCITY_BINS = 32
MAX_SHIFT_STEPS = 100  # one time-shift event covers at most 1 s
# About an hour of dense piano; longer files are almost always broken or concatenated dumps.
DEFAULT_MAX_EVENTS = 200_000

# Why a file was skipped. Fixed so corpus summaries are comparable between runs.
REASONS = ("unreadable", "empty_file", "not_midi", "truncated", "parse_error", "no_notes",
           "only_drums", "too_long", "encode_error")


class EncodeError(ValueError):
  """A MIDI file that cannot become a training sequence; `reason` is one of `REASONS`."""

  def __init__(self, reason: str, detail: str = ""):
    assert reason in REASONS, reason
    super().__init__(f"{reason}: {detail}" if detail else reason)
    self.reason = reason
    self.detail = detail


# ---------------------------------------------------------------------------------------------------
# MIDI -> NoteSequence -> quantized performance
# ---------------------------------------------------------------------------------------------------


def _read_bytes(source: str | os.PathLike | bytes) -> bytes:
  if isinstance(source, (bytes, bytearray)):
    return bytes(source)
  try:
    with open(source, "rb") as f:
      return f.read()
  except OSError as e:
    raise EncodeError("unreadable", str(e)) from e


def _midi_payload(data: bytes) -> bytes:
  """The standard MIDI file inside `data`; RIFF-wrapped .rmi files carry it after a RIFF header."""
  if not data:
    raise EncodeError("empty_file")
  if data.startswith(b"MThd"):
    return data
  if data.startswith(b"RIFF") and data[8:12] == b"RMID" and b"MThd" in data:
    return data[data.index(b"MThd"):]
  raise EncodeError("not_midi", f"starts with {data[:4]!r}")


def load_midi(source: str | os.PathLike | bytes) -> note_seq.NoteSequence:
  """Parses a MIDI file (path or bytes) into a NoteSequence; raises EncodeError if it cannot."""
  data = _midi_payload(_read_bytes(source))
  try:
    with warnings.catch_warnings():
      # pretty_midi warns about tempo events on non-first tracks: common and harmless.
      warnings.simplefilter("ignore")
      pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
      ns = note_seq.midi_to_note_sequence(pm)
  except EOFError as e:  # mido's answer to every cut-off chunk
    raise EncodeError("truncated") from e
  except Exception as e:  # pylint: disable=broad-except  # mido/pretty_midi raise many types
    raise EncodeError("parse_error", f"{type(e).__name__}: {e}") from e
  return ns


def drop_drums(ns: note_seq.NoteSequence) -> note_seq.NoteSequence:
  """A copy of `ns` without drum notes (drums have no pitch in the piano vocabulary)."""
  out = note_seq.NoteSequence()
  out.CopyFrom(ns)
  del out.notes[:]
  out.notes.extend(note for note in ns.notes if not note.is_drum)
  return out


def note_sequence(pm) -> note_seq.NoteSequence:
  """A pretty_midi.PrettyMIDI as a NoteSequence."""
  return note_seq.midi_to_note_sequence(pm)


def sustained(ns: note_seq.NoteSequence) -> note_seq.NoteSequence:
  """Drums dropped and the sustain pedal folded into the note lengths: the notes the model hears."""
  return sequences_lib.apply_sustain_control_changes(drop_drums(ns))


def quantize_performance(ns: note_seq.NoteSequence) -> note_seq.NoteSequence:
  """Drums dropped, sustain applied, quantized to 10 ms steps: what the event encoding reads."""
  return sequences_lib.quantize_note_sequence_absolute(sustained(ns), STEPS_PER_SECOND)


# ---------------------------------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------------------------------


@functools.cache
def _encoding() -> note_seq.PerformanceOneHotEncoding:
  return note_seq.PerformanceOneHotEncoding(
      num_velocity_bins=NUM_VELOCITY_BINS, max_shift_steps=MAX_SHIFT_STEPS)


def _event_index(event_type: int, value: int) -> int:
  return _encoding().encode_event(performance_lib.PerformanceEvent(event_type, value))


@dataclasses.dataclass(frozen=True)
class MidiTokenizer:
  """Owns the vocabulary: specials, 388 performance events, a control per quadrant and the null control."""

  pad_id = 0
  bos_id = 1
  eos_id = 2
  event_offset = 3
  num_events = 388
  num_quadrants = 4

  def __post_init__(self):
    assert _encoding().num_classes == self.num_events, _encoding().num_classes

  @property
  def control_offset(self) -> int:
    return self.event_offset + self.num_events

  @property
  def null_id(self) -> int:
    return self.control_offset + self.num_quadrants

  @property
  def vocab_size(self) -> int:
    return self.null_id + 1

  def control_id(self, quadrant: int) -> int:
    """The control token of Russell quadrant 1..4."""
    if quadrant not in range(1, self.num_quadrants + 1):
      raise ValueError(f"unknown quadrant {quadrant!r}; expected 1..{self.num_quadrants}")
    return self.control_offset + quadrant - 1

  def is_event(self, ids) -> np.ndarray:
    """Which ids are performance events (not PAD, BOS, EOS or a control)."""
    ids = np.asarray(ids)
    return (ids >= self.event_offset) & (ids < self.control_offset)

  # Token ids of event boundaries, read from note_seq's encoding rather than assumed.
  @functools.cached_property
  def _note_on_ids(self) -> tuple[int, int]:
    start = self.event_offset + _event_index(performance_lib.PerformanceEvent.NOTE_ON, 0)
    return start, start + 128

  @property
  def note_on_range(self) -> tuple[int, int]:
    """[lo, hi) ids of the note-on events; a note-on's pitch is id - lo."""
    return self._note_on_ids

  @functools.cached_property
  def _note_off_ids(self) -> tuple[int, int]:
    start = self.event_offset + _event_index(performance_lib.PerformanceEvent.NOTE_OFF, 0)
    return start, start + 128

  @property
  def note_off_range(self) -> tuple[int, int]:
    """[lo, hi) ids of the note-off events; a note-off's pitch is id - lo."""
    return self._note_off_ids

  @property
  def time_shift_range(self) -> tuple[int, int]:
    """[lo, hi) ids of the time shifts; id advances id - lo + 1 steps of 10 ms."""
    lo, last = self._time_shift_ids
    return lo, last + 1

  @functools.cached_property
  def _time_shift_ids(self) -> tuple[int, int]:
    """[first, last] ids: a shift of n steps is first + n - 1."""
    shift = performance_lib.PerformanceEvent.TIME_SHIFT
    return (self.event_offset + _event_index(shift, 1),
            self.event_offset + _event_index(shift, MAX_SHIFT_STEPS))

  def time_steps(self, ids) -> np.ndarray:
    """The 10 ms steps each token advances the music (a time-shift of n steps: n; any other token: 0)."""
    ids = np.asarray(ids)
    lo, hi = self._time_shift_ids
    return np.where((ids >= lo) & (ids <= hi), ids - lo + 1, 0).astype(np.int32)

  # --- encoding --------------------------------------------------------------------------------

  def encode_sequence(self, ns: note_seq.NoteSequence, *, max_events: int | None = None) -> np.ndarray:
    """An unquantized NoteSequence -> int32 event ids (no BOS/EOS/control)."""
    pitched = [note for note in ns.notes if not note.is_drum]
    if not pitched:
      raise EncodeError("only_drums" if ns.notes else "no_notes")
    if max_events is not None:
      # Cheap lower bound (an on and an off per note, a shift per second) before the slow part.
      at_least = 2 * len(pitched) + int(max(note.end_time for note in pitched))
      if at_least > max_events:
        raise EncodeError("too_long", f">= {at_least} events")
    performance = performance_lib.Performance(
        quantize_performance(ns), num_velocity_bins=NUM_VELOCITY_BINS, max_shift_steps=MAX_SHIFT_STEPS)
    encoding = _encoding()
    ids = np.fromiter((self.event_offset + encoding.encode_event(e) for e in performance), np.int32,
                      count=len(performance))
    if max_events is not None and len(ids) > max_events:
      raise EncodeError("too_long", f"{len(ids)} events")
    return ids

  def encode_midi(self, source: str | os.PathLike | bytes, *,
                  max_events: int | None = None) -> np.ndarray:
    """A MIDI file (path or bytes) -> int32 event ids; raises EncodeError for files we skip."""
    return self.encode_sequence(load_midi(source), max_events=max_events)

  # --- decoding --------------------------------------------------------------------------------

  def decode(self, ids: Sequence[int] | np.ndarray, *,
             max_note_duration: float | None = None) -> note_seq.NoteSequence:
    """Token ids -> a one-instrument piano NoteSequence.

    PAD, BOS and control tokens are ignored and decoding stops at the first EOS (a sampler's output
    after EOS is not part of the piece). A note-off without a note-on is ignored; notes still on at the
    end stop at the last time step (or after `max_note_duration` seconds).
    """
    ids = np.asarray(ids).reshape(-1)
    eos = np.flatnonzero(ids == self.eos_id)
    if eos.size:
      ids = ids[:eos[0]]
    events = ids[(ids >= self.event_offset) & (ids < self.control_offset)] - self.event_offset
    performance = performance_lib.Performance(
        steps_per_second=STEPS_PER_SECOND, num_velocity_bins=NUM_VELOCITY_BINS,
        max_shift_steps=MAX_SHIFT_STEPS)
    encoding = _encoding()
    for index in events:
      performance.append(encoding.decode_event(int(index)))
    return performance.to_sequence(program=0, max_note_duration=max_note_duration)

  def to_midi(self, ids: Sequence[int] | np.ndarray, path: str | os.PathLike, *,
              max_note_duration: float | None = None) -> note_seq.NoteSequence:
    """Writes the decoded piece as a one-track piano MIDI file; returns its NoteSequence."""
    ns = self.decode(ids, max_note_duration=max_note_duration)
    note_seq.sequence_proto_to_midi_file(ns, os.fspath(path))
    return ns

  # --- augmentation on token ids ---------------------------------------------------------------

  def transpose(self, ids: np.ndarray, semitones: int) -> np.ndarray:
    """Shifts every note-on/off by `semitones`; notes that would leave MIDI's 0..127 are dropped.

    Dropping (rather than rejecting the whole crop, as Magenta's pipeline does) keeps every crop usable;
    it removes both the on and the off of such a pitch, so the rest decodes unchanged, and the result
    is shorter by the dropped tokens. With the full 128-pitch range this only touches the extreme
    pitches of a +-3 shift.
    """
    ids = np.asarray(ids, np.int32)
    if semitones == 0:
      return ids.copy()
    on_lo, on_hi = self._note_on_ids
    off_lo, off_hi = self._note_off_ids
    is_on = (ids >= on_lo) & (ids < on_hi)
    is_off = (ids >= off_lo) & (ids < off_hi)
    pitch = np.where(is_on, ids - on_lo, ids - off_lo) + semitones
    is_note = is_on | is_off
    keep = ~is_note | ((pitch >= 0) & (pitch < 128))
    return np.where(is_note, ids + semitones, ids)[keep].astype(np.int32)

  def time_stretch(self, ids: np.ndarray, factor: float) -> np.ndarray:
    """Scales time by `factor` (> 1 slower) on token ids, keeping every non-time token in order.

    Works on crops (a whole-piece alternative is `sequences_lib.stretch_note_sequence` before
    encoding). Each event moves to round(t * factor) steps; a note-off that would land on its own
    note-on's step is pushed one step later, so no note vanishes as zero-length.
    """
    if factor <= 0:
      raise ValueError(f"stretch factor must be positive, got {factor}")
    shift_lo, shift_hi = self._time_shift_ids
    off_lo, off_hi = self._note_off_ids
    on_lo, on_hi = self._note_on_ids
    open_onsets = collections.defaultdict(collections.deque)  # pitch -> new steps of its note-ons
    out = []
    t = 0  # original step
    now = 0  # stretched step already emitted
    for token in np.asarray(ids).reshape(-1).tolist():
      if shift_lo <= token <= shift_hi:
        t += token - shift_lo + 1
        continue
      target = max(now, math.floor(t * factor + 0.5))
      if off_lo <= token < off_hi and open_onsets[token - off_lo]:
        if open_onsets[token - off_lo].popleft() == target:
          target += 1
      while target > now:
        step = min(target - now, MAX_SHIFT_STEPS)
        out.append(shift_lo + step - 1)
        now += step
      if on_lo <= token < on_hi:
        open_onsets[token - on_lo].append(now)
      out.append(token)
    return np.asarray(out, np.int32)


# ---------------------------------------------------------------------------------------------------
# Corpus pass
# ---------------------------------------------------------------------------------------------------


def encode_corpus(paths: Iterable[str | os.PathLike], tokenizer: MidiTokenizer | None = None, *,
                  max_events: int | None = DEFAULT_MAX_EVENTS,
                  stats: collections.Counter | None = None) -> Iterator[tuple[str | os.PathLike, np.ndarray]]:
  """Yields (path, ids) for every file that encodes; skipped files are counted in `stats` by reason.

  `stats` also counts "encoded". It fills as the generator is consumed. An unexpected exception inside
  note_seq is counted as "encode_error" and logged, so one odd file never stops the pass.
  """
  tokenizer = tokenizer or MidiTokenizer()
  stats = stats if stats is not None else collections.Counter()
  for path in paths:
    try:
      ids = tokenizer.encode_midi(path, max_events=max_events)
    except EncodeError as e:
      stats[e.reason] += 1
      logging.debug("skipped %s: %s", path, e)
      continue
    except Exception as e:  # pylint: disable=broad-except
      stats["encode_error"] += 1
      logging.warning("skipped %s: %s: %s", path, type(e).__name__, e)
      continue
    stats["encoded"] += 1
    yield path, ids
