"""MIDI tokenizers (both vocabularies): layout, encode -> decode -> MIDI round trips, augmentation, bad-file
corpus, and the note vocabulary's decoding rules by hand."""

import collections
import io
import struct

import numpy as np
import pretty_midi
import pytest

from facemusic_jax import emotion
from facemusic_jax.music import tokenizer as tokenizer_lib
from facemusic_jax.music.tokenizer import EncodeError

sequences_lib = tokenizer_lib.sequences_lib  # note_seq, imported quietly by the tokenizer

STEP = 0.01
VELOCITY_BIN = 4  # ceil(127 / 32)
MIDI_TICK = 60 / (120 * 220)  # written files: 220 ticks per quarter at 120 bpm


def _random_notes(rng, n, pitches=range(36, 96)):
  """Non-overlapping notes per pitch at off-grid times, with some gaps longer than one time shift."""
  notes, free_at = [], collections.defaultdict(float)
  t = 0.0
  for _ in range(n):
    t += rng.choice([rng.uniform(0.0, 0.2), rng.uniform(1.2, 2.5)], p=[0.9, 0.1])
    pitch = int(rng.choice(list(pitches)))
    start = max(t, free_at[pitch] + 0.03)
    end = start + rng.uniform(0.02, 1.5)
    free_at[pitch] = end
    notes.append(pretty_midi.Note(int(rng.integers(1, 128)), pitch, start, end))
  return notes


def _midi_bytes(*instruments, pedal=()):
  pm = pretty_midi.PrettyMIDI()
  for program, is_drum, notes in instruments:
    inst = pretty_midi.Instrument(program, is_drum=is_drum)
    inst.notes.extend(notes)
    pm.instruments.append(inst)
  for time, value in pedal:
    pm.instruments[0].control_changes.append(pretty_midi.ControlChange(64, value, time))
  buf = io.BytesIO()
  pm.write(buf)
  return buf.getvalue()


def _sorted(notes):
  return sorted(((n.start, n.pitch, n.end, n.velocity) for n in notes), key=lambda x: (x[0], x[1]))


def _file_notes(data):
  """The non-drum notes a MIDI file really holds (times rounded to its ticks)."""
  pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
  return _sorted(n for inst in pm.instruments if not inst.is_drum for n in inst.notes)


def _sorted_ns(ns):
  return sorted(((n.start_time, n.pitch, n.end_time, n.velocity) for n in ns.notes),
                key=lambda x: (x[0], x[1]))


def _duration_bin_halfwidth(seconds: float) -> float:
  """Half the spacing of the note vocabulary's durations around `seconds` (its docstring's grid)."""
  for limit, half in ((0.5, 0.0), (1.0, 0.01), (2.0, 0.025), (4.0, 0.05)):
    if seconds < limit:
      return half
  return 0.125


def _assert_notes_close(got, want, time_tol=STEP, tok=None, roundings=1):
  """Notes match one to one: same pitch, onset within time_tol, duration within time_tol (plus `roundings`
  times the duration grid's half spacing in the note vocabulary), velocity within a bin."""
  assert len(got) == len(want)
  # Pair the k-th note of each pitch: test pieces never overlap notes of one pitch.
  by_pitch = lambda notes: sorted(notes, key=lambda x: (x[1], x[0]))
  for g, w in zip(by_pitch(got), by_pitch(want)):
    assert g[1] == w[1]
    assert abs(g[0] - w[0]) <= time_tol + 1e-6
    duration = w[2] - w[0]
    grid = roundings * _duration_bin_halfwidth(duration) if tok is not None and tok.name == "notes" else 0.0
    assert abs((g[2] - g[0]) - duration) <= time_tol + grid + 1e-6
    assert 0 <= w[3] - g[3] < VELOCITY_BIN  # decoded velocity is its bin's lower edge


@pytest.fixture(scope="module", params=sorted(tokenizer_lib.VOCABULARIES))
def tok(request):
  return tokenizer_lib.get(request.param)


@pytest.fixture(scope="module")
def perf():
  return tokenizer_lib.get("performance")


@pytest.fixture(scope="module")
def notes():
  return tokenizer_lib.get("notes")


def test_unknown_vocabulary_is_named():
  with pytest.raises(ValueError, match="unknown vocabulary 'remi'; use one of: performance, notes"):
    tokenizer_lib.get("remi")


def test_note_vocabulary_layout(notes):
  """Hand-counted: 128 note-ons, 131 durations, 100 shifts, 32 velocities after the 3 specials."""
  assert notes.num_events == 391
  assert (notes.note_on_range, notes.duration_range, notes.time_shift_range, notes.velocity_range) == (
      (3, 131), (131, 262), (262, 362), (362, 394))
  assert [notes.control_id(q) for q in (1, 2, 3, 4)] == [394, 395, 396, 397]
  assert notes.null_id == 398 and notes.vocab_size == 399
  steps = tokenizer_lib.DURATION_STEPS
  assert (steps[0], steps[49], steps[50], steps[-1]) == (1, 50, 52, 800) and (np.diff(steps) > 0).all()
  # Nearest length, ties to the shorter (51 lies between 50 and 52, 53 between 52 and 54); beyond 8 s is 8 s.
  assert tokenizer_lib.duration_bin([1, 50, 51, 53, 54, 10_000]).tolist() == [0, 49, 49, 50, 51, 130]
  assert notes.time_steps([262, 361, 131, 3]).tolist() == [1, 100, 0, 0]


def test_note_vocabulary_encodes_by_hand(notes):
  """Two notes at 0 s (pitches ordered), one at 1.5 s with another velocity: shifts, velocity, on, duration."""
  data = _midi_bytes((0, False, [pretty_midi.Note(80, 64, 0.0, 0.5), pretty_midi.Note(80, 60, 0.0, 1.2),
                                 pretty_midi.Note(40, 67, 1.5, 1.6)]))
  velocity = lambda v: 362 + (v - 1) // VELOCITY_BIN  # bin b (1-based) is id 362 + b - 1
  on, duration, shift = lambda p: 3 + p, lambda i: 131 + i, lambda n: 262 + n - 1
  assert notes.encode_midi(data).tolist() == [
      velocity(80), on(60), duration(50 + 25 + 3),  # 1.2 s = 120 steps: bin 78 (105, 110, ... 115, 120)
      on(64), duration(49),  # 0.5 s = 50 steps
      shift(100), shift(50), velocity(40), on(67), duration(9)]


def test_note_vocabulary_decoding_rules(notes):
  """A re-struck sounding pitch ends there; a note-on without its duration and a lone duration are dropped;
  max_note_duration caps."""
  on, duration, shift = lambda p: 3 + p, lambda i: 131 + i, lambda n: 262 + n - 1
  ids = [on(60), duration(99),  # 60 for 1.5 s (bin 99: 105 + 5 * 9 = 150 steps) ...
         shift(50), on(60), duration(9),  # ... struck again at 0.5 s: the first ends at 0.5 s
         duration(3),  # a duration without a note-on
         on(62), shift(10), on(64), duration(19)]  # 62 never gets a duration
  got = [(n.pitch, round(n.start_time, 2), round(n.end_time, 2)) for n in notes.decode(ids).notes]
  assert got == [(60, 0.0, 0.5), (60, 0.5, 0.6), (64, 0.6, 0.8)]
  capped = notes.decode([on(60), duration(130)], max_note_duration=2.0)
  assert [(n.start_time, n.end_time) for n in capped.notes] == [(0.0, 2.0)]
  assert notes.decode([on(60), duration(130)]).notes[0].end_time == 8.0


def test_performance_vocabulary(perf):
  tok = perf
  assert tok.num_events == 388 == tokenizer_lib._encoding().num_classes
  assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
  assert [tok.control_id(q) for q in (1, 2, 3, 4)] == list(range(391, 395))
  assert tok.null_id == 395 and tok.vocab_size == 396
  for bad in (0, 5, "Q1"):
    with pytest.raises(ValueError):
      tok.control_id(bad)
  ids = np.arange(tok.vocab_size)
  assert tok.is_event(ids).sum() == 388 and not tok.is_event([0, 1, 2, 391, 395]).any()


def test_time_steps_of_tokens(perf):
  """A time-shift of n steps advances n; a decoded piece lasts the sum (hand-built: 3 shifts + notes)."""
  tok = perf
  shift = lambda n: tok.event_offset + tokenizer_lib._event_index(
      tokenizer_lib.performance_lib.PerformanceEvent.TIME_SHIFT, n)
  on = tok.note_on_range[0] + 60
  ids = np.array([on, shift(100), shift(50), shift(1), tok.eos_id, tok.control_id(1)])
  assert tok.time_steps(ids).tolist() == [0, 100, 50, 1, 0, 0]


def test_event_ranges_decode_to_their_events(perf):
  """The id ranges the sampler's note rules use: each id decodes to the event its range claims."""
  tok = perf
  events = tokenizer_lib.performance_lib.PerformanceEvent
  for (lo, hi), kind, first in ((tok.note_on_range, events.NOTE_ON, 0), (tok.note_off_range, events.NOTE_OFF, 0),
                                (tok.time_shift_range, events.TIME_SHIFT, 1)):
    for i in (lo, hi - 1):
      event = tokenizer_lib._encoding().decode_event(i - tok.event_offset)
      assert event.event_type == kind and event.event_value == first + i - lo
  lo, hi = tok.time_shift_range
  assert tok.time_steps([lo, hi - 1, hi]).tolist() == [1, 100, 0]


def test_round_trip_merges_instruments_and_drops_drums(tok, tmp_path):
  rng = np.random.default_rng(0)
  piano, strings = _random_notes(rng, 120), _random_notes(rng, 80, pitches=range(96, 128))
  drums = [pretty_midi.Note(100, 36, 0.5 * i, 0.5 * i + 0.1) for i in range(20)]
  data = _midi_bytes((0, False, piano), (48, False, strings), (0, True, drums))
  path = tmp_path / "piece.mid"
  path.write_bytes(data)

  ids = tok.encode_midi(path)
  assert ids.dtype == np.int32 and ids.ndim == 1
  assert ids.min() >= tok.event_offset and ids.max() < tok.control_offset
  np.testing.assert_array_equal(ids, tok.encode_midi(data))

  want = _file_notes(data)
  assert len(want) == len(piano) + len(strings)
  _assert_notes_close(_sorted_ns(tok.decode(ids)), want, tok=tok)
  tok.to_midi(ids, tmp_path / "out.mid")
  back = pretty_midi.PrettyMIDI(str(tmp_path / "out.mid"))
  assert len(back.instruments) == 1 and not back.instruments[0].is_drum
  _assert_notes_close(_sorted(back.instruments[0].notes), want, time_tol=STEP + MIDI_TICK, tok=tok)


def test_sustain_pedal_extends_notes(tok):
  notes = [pretty_midi.Note(90, 60, 0.0, 0.2), pretty_midi.Note(90, 64, 1.5, 1.7)]
  data = _midi_bytes((0, False, notes), pedal=[(0.1, 127), (1.0, 0)])
  got = _sorted_ns(tok.decode(tok.encode_midi(data)))
  assert got[0][1] == 60 and got[0][2] == pytest.approx(1.0, abs=STEP)
  assert got[1][1] == 64 and got[1][2] == pytest.approx(1.7, abs=STEP)


def test_decode_ignores_specials_and_stops_at_eos(tok):
  rng = np.random.default_rng(1)
  ids = tok.encode_midi(_midi_bytes((0, False, _random_notes(rng, 30))))
  wrapped = np.concatenate([[tok.bos_id, tok.control_id(3)], ids,
                            [tok.eos_id], ids[:10], [tok.pad_id] * 5])
  assert _sorted_ns(tok.decode(wrapped)) == _sorted_ns(tok.decode(ids))


def test_transpose_matches_note_sequence_transposition(tok):
  rng = np.random.default_rng(2)
  ns = tokenizer_lib.load_midi(_midi_bytes((0, False, _random_notes(rng, 60))))
  ids = tok.encode_sequence(ns)
  for semitones in (-3, -1, 0, 2, 3):
    shifted, _ = sequences_lib.transpose_note_sequence(ns, semitones)
    np.testing.assert_array_equal(tok.transpose(ids, semitones), tok.encode_sequence(shifted))


def test_transpose_drops_notes_leaving_the_midi_range(tok):
  notes = [pretty_midi.Note(80, p, 0.1 * i, 0.1 * i + 0.5) for i, p in enumerate([1, 60, 126, 127])]
  ids = tok.encode_midi(_midi_bytes((0, False, notes)))
  assert sorted(n.pitch for n in tok.decode(tok.transpose(ids, 3)).notes) == [4, 63]
  assert sorted(n.pitch for n in tok.decode(tok.transpose(ids, -3)).notes) == [57, 123, 124]
  if tok.name == "notes":  # a dropped note takes its duration with it
    assert len(tok.transpose(ids, 3)) == len(ids) - 4 and len(tok.transpose(ids, -3)) == len(ids) - 2


@pytest.mark.parametrize("factor", [0.95, 1.05])
def test_time_stretch_matches_stretched_sequence(tok, factor):
  rng = np.random.default_rng(3)
  notes = _random_notes(rng, 80) + [pretty_midi.Note(70, 100, 3.0, 3.01)]  # a one-step note survives
  ns = tokenizer_lib.load_midi(_midi_bytes((0, False, notes)))
  got = tok.decode(tok.time_stretch(tok.encode_sequence(ns), factor))
  want = tok.decode(tok.encode_sequence(sequences_lib.stretch_note_sequence(ns, factor)))
  # Stretching already-quantized times rounds twice: within two steps of the exact stretch.
  _assert_notes_close(_sorted_ns(got), _sorted_ns(want), time_tol=2 * STEP, tok=tok, roundings=2)


def test_riff_wrapped_midi(tok):
  data = _midi_bytes((0, False, [pretty_midi.Note(80, 60, 0.0, 0.5)]))
  riff = b"RIFF" + struct.pack("<I", len(data) + 12) + b"RMIDdata" + struct.pack("<I", len(data)) + data
  np.testing.assert_array_equal(tok.encode_midi(riff), tok.encode_midi(data))


def test_corrupt_corpus_counts_every_bad_file(tok, tmp_path):
  rng = np.random.default_rng(4)
  good = _midi_bytes((0, False, _random_notes(rng, 40)), (0, True, [pretty_midi.Note(90, 38, 0, .1)]))
  header = b"MThd" + struct.pack(">IHHH", 6, 1, 1, 480)
  track = b"\x00\x40\x40\x00\xff\x2f\x00"  # a data byte where a status byte must be
  files = {
      "good1.mid": good,
      "good2.midi": _midi_bytes((40, False, _random_notes(rng, 20))),
      "truncated.mid": good[:len(good) // 2],
      "zero.mid": b"",
      "readme.mid": b"This is not a MIDI file, just text renamed .mid\n",
      "no_notes.mid": _midi_bytes(),
      "drums.mid": _midi_bytes((0, True, [pretty_midi.Note(100, 36, 0.2 * i, 0.2 * i + .1)
                                          for i in range(8)])),
      "garbled.mid": header + b"MTrk" + struct.pack(">I", len(track)) + track,
      "long.mid": _midi_bytes((0, False, _random_notes(rng, 400))),
  }
  for name, data in files.items():
    (tmp_path / name).write_bytes(data)
  paths = [tmp_path / name for name in files] + [tmp_path / "missing.mid"]

  stats = collections.Counter()
  encoded = dict(tokenizer_lib.encode_corpus(paths, tok, max_events=500, stats=stats))
  assert sorted(p.name for p in encoded) == ["good1.mid", "good2.midi"]
  assert stats == collections.Counter(
      encoded=2, truncated=1, empty_file=1, not_midi=1, no_notes=1, only_drums=1, parse_error=1,
      too_long=1, unreadable=1)
  assert set(stats) - {"encoded"} <= set(tokenizer_lib.REASONS)
  np.testing.assert_array_equal(encoded[tmp_path / "good1.mid"], tok.encode_midi(good))

  with pytest.raises(EncodeError) as err:
    tok.encode_midi(tmp_path / "zero.mid")
  assert err.value.reason == "empty_file"
