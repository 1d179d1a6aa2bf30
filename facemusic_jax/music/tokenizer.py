"""MIDI <-> token ids: piano events in one of two vocabularies, plus our special and emotion control tokens.

Both read a piece as the Music Transformer's piano setting does (Huang et al., 2018): drums dropped, every
other instrument merged into one performance, sustain pedal applied (notes held while the pedal is down),
10 ms absolute quantization, 100 time-shifts of 10..1000 ms and 32 velocity bins. They differ in how a note
ends (a model's `config.vocabulary` names its vocabulary):

  performance  note_seq's `PerformanceOneHotEncoding`: 128 note-on, 128 note-off, 100 time-shifts,
               32 velocities = 388 events (the paper's vocabulary).
  notes        note-on + duration (as in REMI or MuMIDI, on the same absolute grid): 128 note-on,
               131 durations up to 8 s, 100 time-shifts, 32 velocities = 391 events. See `NoteTokenizer`.

Vocabulary: 0 PAD, 1 BOS, 2 EOS | 3 .. 3+E-1 the E events | one control per Russell quadrant (Q1..Q4, see
`emotion`) | the null control (no condition: unlabelled music, and the unconditioned branch of
classifier-free guidance). Controls come last so adding one never renumbers an event.

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


class MidiTokenizer:
  """The vocabulary layout every vocabulary shares: specials, `num_events` events, a control per quadrant and
  the null control. Subclasses define the events (`PerformanceTokenizer`, `NoteTokenizer`)."""

  name = ""
  pad_id = 0
  bos_id = 1
  eos_id = 2
  event_offset = 3
  num_events = 0
  num_quadrants = 4

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
    """Which ids are events (not PAD, BOS, EOS or a control)."""
    ids = np.asarray(ids)
    return (ids >= self.event_offset) & (ids < self.control_offset)

  @property
  def note_on_range(self) -> tuple[int, int]:
    """[lo, hi) ids of the note-on events; a note-on's pitch is id - lo."""
    raise NotImplementedError

  @property
  def time_shift_range(self) -> tuple[int, int]:
    """[lo, hi) ids of the time shifts; id advances id - lo + 1 steps of 10 ms."""
    raise NotImplementedError

  @property
  def velocity_range(self) -> tuple[int, int]:
    """[lo, hi) ids of the NUM_VELOCITY_BINS velocity events; id sets note_seq's velocity bin id - lo + 1."""
    raise NotImplementedError

  def velocity_values(self) -> np.ndarray:
    """(NUM_VELOCITY_BINS,) the MIDI velocity each velocity event sets, in id order."""
    return np.array([performance_lib.velocity_bin_to_velocity(b, NUM_VELOCITY_BINS)
                     for b in range(1, NUM_VELOCITY_BINS + 1)], np.float64)

  def time_steps(self, ids) -> np.ndarray:
    """The 10 ms steps each token advances the music (a time-shift of n steps: n; any other token: 0)."""
    ids = np.asarray(ids)
    lo, hi = self.time_shift_range
    return np.where((ids >= lo) & (ids < hi), ids - lo + 1, 0).astype(np.int32)

  def _shifts(self, steps: int) -> list[int]:
    """Time-shift ids that advance `steps` (longest first)."""
    lo = self.time_shift_range[0]
    out = []
    while steps > 0:
      n = min(steps, MAX_SHIFT_STEPS)
      out.append(lo + n - 1)
      steps -= n
    return out

  def encode_sequence(self, ns: note_seq.NoteSequence, *, max_events: int | None = None) -> np.ndarray:
    """An unquantized NoteSequence -> int32 event ids (no BOS/EOS/control)."""
    pitched = [note for note in ns.notes if not note.is_drum]
    if not pitched:
      raise EncodeError("only_drums" if ns.notes else "no_notes")
    if max_events is not None:
      # Cheap lower bound (two events per note, a shift per second) before the slow part.
      at_least = 2 * len(pitched) + int(max(note.end_time for note in pitched))
      if at_least > max_events:
        raise EncodeError("too_long", f">= {at_least} events")
    ids = self._encode_quantized(quantize_performance(ns))
    if max_events is not None and len(ids) > max_events:
      raise EncodeError("too_long", f"{len(ids)} events")
    return ids

  def _encode_quantized(self, quantized: note_seq.NoteSequence) -> np.ndarray:
    raise NotImplementedError

  def encode_midi(self, source: str | os.PathLike | bytes, *,
                  max_events: int | None = None) -> np.ndarray:
    """A MIDI file (path or bytes) -> int32 event ids; raises EncodeError for files we skip."""
    return self.encode_sequence(load_midi(source), max_events=max_events)

  def events(self, ids) -> np.ndarray:
    """The event ids of a token sequence up to its first EOS (PAD, BOS and controls dropped)."""
    ids = np.asarray(ids).reshape(-1)
    eos = np.flatnonzero(ids == self.eos_id)
    if eos.size:
      ids = ids[:eos[0]]
    return ids[self.is_event(ids)]

  def decode(self, ids: Sequence[int] | np.ndarray, *,
             max_note_duration: float | None = None) -> note_seq.NoteSequence:
    """Token ids -> a one-instrument piano NoteSequence.

    PAD, BOS and control tokens are ignored and decoding stops at the first EOS (a sampler's output after
    EOS is not part of the piece). Notes last at most `max_note_duration` seconds when given.
    """
    raise NotImplementedError

  def to_midi(self, ids: Sequence[int] | np.ndarray, path: str | os.PathLike, *,
              max_note_duration: float | None = None) -> note_seq.NoteSequence:
    """Writes the decoded piece as a one-track piano MIDI file; returns its NoteSequence."""
    ns = self.decode(ids, max_note_duration=max_note_duration)
    note_seq.sequence_proto_to_midi_file(ns, os.fspath(path))
    return ns

  def transpose(self, ids: np.ndarray, semitones: int) -> np.ndarray:
    """Shifts every note by `semitones` on token ids; notes that would leave MIDI's 0..127 are dropped."""
    raise NotImplementedError

  def time_stretch(self, ids: np.ndarray, factor: float) -> np.ndarray:
    """Scales time by `factor` (> 1 slower) on token ids, keeping every other token in order."""
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class PerformanceTokenizer(MidiTokenizer):
  """note_seq's performance events: 128 note-on, 128 note-off, 100 time-shifts, 32 velocities (388)."""

  name = "performance"
  num_events = 388

  def __post_init__(self):
    assert _encoding().num_classes == self.num_events, _encoding().num_classes

  # Token ids of event boundaries, read from note_seq's encoding rather than assumed.
  @functools.cached_property
  def note_on_range(self) -> tuple[int, int]:
    start = self.event_offset + _event_index(performance_lib.PerformanceEvent.NOTE_ON, 0)
    return start, start + 128

  @functools.cached_property
  def note_off_range(self) -> tuple[int, int]:
    """[lo, hi) ids of the note-off events; a note-off's pitch is id - lo."""
    start = self.event_offset + _event_index(performance_lib.PerformanceEvent.NOTE_OFF, 0)
    return start, start + 128

  @functools.cached_property
  def time_shift_range(self) -> tuple[int, int]:
    shift = performance_lib.PerformanceEvent.TIME_SHIFT
    return (self.event_offset + _event_index(shift, 1),
            self.event_offset + _event_index(shift, MAX_SHIFT_STEPS) + 1)

  @functools.cached_property
  def velocity_range(self) -> tuple[int, int]:
    velocity = performance_lib.PerformanceEvent.VELOCITY
    return (self.event_offset + _event_index(velocity, 1),
            self.event_offset + _event_index(velocity, NUM_VELOCITY_BINS) + 1)

  def _encode_quantized(self, quantized):
    performance = performance_lib.Performance(
        quantized, num_velocity_bins=NUM_VELOCITY_BINS, max_shift_steps=MAX_SHIFT_STEPS)
    encoding = _encoding()
    return np.fromiter((self.event_offset + encoding.encode_event(e) for e in performance), np.int32,
                       count=len(performance))

  def decode(self, ids, *, max_note_duration=None):
    """See `MidiTokenizer.decode`; a note-off without a note-on is ignored, and notes still on at the end stop
    at the last time step."""
    performance = performance_lib.Performance(
        steps_per_second=STEPS_PER_SECOND, num_velocity_bins=NUM_VELOCITY_BINS,
        max_shift_steps=MAX_SHIFT_STEPS)
    encoding = _encoding()
    for index in self.events(ids) - self.event_offset:
      performance.append(encoding.decode_event(int(index)))
    return performance.to_sequence(program=0, max_note_duration=max_note_duration)

  def transpose(self, ids, semitones):
    """See `MidiTokenizer.transpose`.

    Dropping (rather than rejecting the whole crop, as Magenta's pipeline does) keeps every crop usable;
    it removes both the on and the off of such a pitch, so the rest decodes unchanged, and the result
    is shorter by the dropped tokens. With the full 128-pitch range this only touches the extreme
    pitches of a +-3 shift.
    """
    ids = np.asarray(ids, np.int32)
    if semitones == 0:
      return ids.copy()
    on_lo, on_hi = self.note_on_range
    off_lo, off_hi = self.note_off_range
    is_on = (ids >= on_lo) & (ids < on_hi)
    is_off = (ids >= off_lo) & (ids < off_hi)
    pitch = np.where(is_on, ids - on_lo, ids - off_lo) + semitones
    is_note = is_on | is_off
    keep = ~is_note | ((pitch >= 0) & (pitch < 128))
    return np.where(is_note, ids + semitones, ids)[keep].astype(np.int32)

  def time_stretch(self, ids, factor):
    """See `MidiTokenizer.time_stretch`.

    Works on crops (a whole-piece alternative is `sequences_lib.stretch_note_sequence` before
    encoding). Each event moves to round(t * factor) steps; a note-off that would land on its own
    note-on's step is pushed one step later, so no note vanishes as zero-length.
    """
    if factor <= 0:
      raise ValueError(f"stretch factor must be positive, got {factor}")
    shift_lo, shift_hi = self.time_shift_range
    off_lo, off_hi = self.note_off_range
    on_lo, on_hi = self.note_on_range
    open_onsets = collections.defaultdict(collections.deque)  # pitch -> new steps of its note-ons
    out = []
    t = 0  # original step
    now = 0  # stretched step already emitted
    for token in np.asarray(ids).reshape(-1).tolist():
      if shift_lo <= token < shift_hi:
        t += token - shift_lo + 1
        continue
      target = max(now, math.floor(t * factor + 0.5))
      if off_lo <= token < off_hi and open_onsets[token - off_lo]:
        if open_onsets[token - off_lo].popleft() == target:
          target += 1
      out.extend(self._shifts(target - now))
      now = max(now, target)
      if on_lo <= token < on_hi:
        open_onsets[token - on_lo].append(now)
      out.append(token)
    return np.asarray(out, np.int32)


def _duration_steps() -> np.ndarray:
  """The note lengths (in 10 ms steps) a duration token can say: fine where the ear is fine, coarser for long
  notes, up to 8 s (the longest note the samplers allow)."""
  return np.concatenate([np.arange(1, 51), np.arange(52, 101, 2), np.arange(105, 201, 5),
                         np.arange(210, 401, 10), np.arange(425, 801, 25)]).astype(np.int32)


DURATION_STEPS = _duration_steps()


def duration_bin(steps) -> np.ndarray:
  """The index of the duration token nearest each length in steps (ties to the shorter; beyond 8 s: 8 s)."""
  mids = (DURATION_STEPS[1:] + DURATION_STEPS[:-1]) / 2
  return np.searchsorted(mids, np.asarray(steps), side="left").astype(np.int32)


@dataclasses.dataclass(frozen=True)
class NoteTokenizer(MidiTokenizer):
  """Note-on + duration events: a note is [time shifts] [velocity] note-on(pitch) duration(length).

  A note's length is said when it starts, so a sampled note always ends; the performance vocabulary asks the
  model to remember every sounding note until it emits its note-off, which small models do badly (notes
  that ring for seconds, piled into clusters). Same 10 ms grid, time shifts and velocity bins as
  `PerformanceTokenizer`; notes that start together are ordered by pitch. Events: 128 note-on,
  len(DURATION_STEPS) = 131 durations (10 ms steps to 0.5 s, then 20, 50, 100 and 250 ms steps to 8 s),
  100 time shifts, 32 velocities.
  """

  name = "notes"
  num_events = 128 + len(DURATION_STEPS) + MAX_SHIFT_STEPS + NUM_VELOCITY_BINS

  @property
  def note_on_range(self) -> tuple[int, int]:
    return self.event_offset, self.event_offset + 128

  @property
  def duration_range(self) -> tuple[int, int]:
    """[lo, hi) ids of the durations; id lasts DURATION_STEPS[id - lo] steps."""
    lo = self.note_on_range[1]
    return lo, lo + len(DURATION_STEPS)

  @property
  def time_shift_range(self) -> tuple[int, int]:
    lo = self.duration_range[1]
    return lo, lo + MAX_SHIFT_STEPS

  @property
  def velocity_range(self) -> tuple[int, int]:
    lo = self.time_shift_range[1]
    return lo, lo + NUM_VELOCITY_BINS

  def _encode_quantized(self, quantized):
    notes = sorted((n.quantized_start_step, n.pitch, n.quantized_end_step, n.velocity) for n in quantized.notes)
    on, dur, vel = self.note_on_range[0], self.duration_range[0], self.velocity_range[0]
    out, now, velocity = [], 0, None
    for start, pitch, end, v in notes:
      out.extend(self._shifts(start - now))
      now = start
      v = performance_lib.velocity_to_bin(v, NUM_VELOCITY_BINS)
      if v != velocity:
        out.append(vel + v - 1)
        velocity = v
      out.extend((on + pitch, dur + int(duration_bin(max(end - start, 1)))))
    return np.asarray(out, np.int32)

  def decode(self, ids, *, max_note_duration=None):
    """See `MidiTokenizer.decode`. A note-on without its duration is dropped, as is a duration without a
    note-on; a pitch struck again while it sounds ends there (a piano cannot sound one key twice)."""
    events = self.events(ids)
    (on, on_end), (dur, dur_end) = self.note_on_range, self.duration_range
    (shift, shift_end), (vel, vel_end) = self.time_shift_range, self.velocity_range
    limit = math.inf if max_note_duration is None else max_note_duration * STEPS_PER_SECOND
    now, velocity, pending = 0, 100, None  # note_seq's default velocity before any velocity event
    notes, sounding = [], {}  # [start, pitch, end, velocity]; pitch -> its latest note
    for token in events.tolist():
      if on <= token < on_end:
        pending = token - on
        continue
      if dur <= token < dur_end and pending is not None:
        previous = sounding.get(pending)
        if previous is not None and previous[2] > now:
          previous[2] = now
        notes.append([now, pending, now + min(int(DURATION_STEPS[token - dur]), limit), velocity])
        sounding[pending] = notes[-1]
      elif shift <= token < shift_end:
        now += token - shift + 1
      elif vel <= token < vel_end:
        velocity = performance_lib.velocity_bin_to_velocity(token - vel + 1, NUM_VELOCITY_BINS)
      pending = None
    ns = note_seq.NoteSequence(ticks_per_quarter=note_seq.constants.STANDARD_PPQ)
    for start, pitch, end, v in notes:
      if end > start:  # a note struck again on its own step is replaced by the new one
        ns.notes.add(pitch=pitch, velocity=v, start_time=start / STEPS_PER_SECOND,
                     end_time=end / STEPS_PER_SECOND, program=0, instrument=0)
    ns.total_time = max((n.end_time for n in ns.notes), default=0.0)
    return ns

  def transpose(self, ids, semitones):
    """See `MidiTokenizer.transpose`; a note leaving the range loses its note-on and its duration."""
    ids = np.asarray(ids, np.int32)
    on_lo, on_hi = self.note_on_range
    dur_lo, dur_hi = self.duration_range
    is_on = (ids >= on_lo) & (ids < on_hi)
    pitch = ids - on_lo + semitones
    out_of_range = is_on & ((pitch < 0) | (pitch >= 128))
    its_duration = np.zeros_like(out_of_range)
    its_duration[1:] = out_of_range[:-1] & (ids[1:] >= dur_lo) & (ids[1:] < dur_hi)
    return np.where(is_on, ids + semitones, ids)[~(out_of_range | its_duration)].astype(np.int32)

  def time_stretch(self, ids, factor):
    """See `MidiTokenizer.time_stretch`: every event moves to round(t * factor) steps and every duration to
    the bin nearest its stretched length (so no note vanishes)."""
    if factor <= 0:
      raise ValueError(f"stretch factor must be positive, got {factor}")
    (shift_lo, shift_hi), (dur_lo, dur_hi) = self.time_shift_range, self.duration_range
    out, t, now = [], 0, 0  # original step; stretched step already emitted
    for token in np.asarray(ids).reshape(-1).tolist():
      if shift_lo <= token < shift_hi:
        t += token - shift_lo + 1
        continue
      target = math.floor(t * factor + 0.5)
      out.extend(self._shifts(target - now))
      now = max(now, target)
      if dur_lo <= token < dur_hi:
        token = dur_lo + int(duration_bin(max(1, math.floor(DURATION_STEPS[token - dur_lo] * factor + 0.5))))
      out.append(token)
    return np.asarray(out, np.int32)


VOCABULARIES = {"performance": PerformanceTokenizer, "notes": NoteTokenizer}
DEFAULT_VOCABULARY = "performance"  # what a config (or a checkpoint) that names none was trained on


@functools.cache
def get(vocabulary: str = DEFAULT_VOCABULARY) -> MidiTokenizer:
  """The tokenizer of a vocabulary by name (a model's `config.vocabulary`)."""
  if vocabulary not in VOCABULARIES:
    raise ValueError(f"unknown vocabulary {vocabulary!r}; use one of: {', '.join(VOCABULARIES)}")
  return VOCABULARIES[vocabulary]()


def for_config(config) -> MidiTokenizer:
  """The tokenizer of a model config's vocabulary (a checkpoint saved before configs named one: "performance")."""
  return get(config.get("vocabulary", DEFAULT_VOCABULARY))


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
  tokenizer = tokenizer or get()
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
