"""MIDI tokenizer: vocabulary, encode -> decode -> MIDI round trips, augmentation, bad-file corpus."""

import collections
import io
import struct

import numpy as np
import pretty_midi
import pytest

from facemusic_jax import emotion
from facemusic_jax.data import tokenizer as tokenizer_lib
from facemusic_jax.data.tokenizer import EncodeError, MidiTokenizer

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


def _assert_notes_close(got, want, time_tol=STEP):
  """Notes match one to one: same pitch, onset and duration within time_tol, velocity within a bin."""
  assert len(got) == len(want)
  # Pair the k-th note of each pitch: test pieces never overlap notes of one pitch.
  by_pitch = lambda notes: sorted(notes, key=lambda x: (x[1], x[0]))
  for g, w in zip(by_pitch(got), by_pitch(want)):
    assert g[1] == w[1]
    assert abs(g[0] - w[0]) <= time_tol + 1e-6
    assert abs((g[2] - g[0]) - (w[2] - w[0])) <= time_tol + 1e-6
    assert 0 <= w[3] - g[3] < VELOCITY_BIN  # decoded velocity is its bin's lower edge


@pytest.fixture(scope="module")
def tok():
  return MidiTokenizer()


def test_vocabulary(tok):
  assert tok.num_events == 388 == tokenizer_lib._encoding().num_classes
  assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
  assert [tok.control_id(q) for q in (1, 2, 3, 4)] == list(range(391, 395))
  assert tok.null_id == 395 and tok.vocab_size == 396
  for bad in (0, 5, "Q1"):
    with pytest.raises(ValueError):
      tok.control_id(bad)
  ids = np.arange(tok.vocab_size)
  assert tok.is_event(ids).sum() == 388 and not tok.is_event([0, 1, 2, 391, 395]).any()


def test_time_steps_of_tokens(tok):
  """A time-shift of n steps advances n; a decoded piece lasts the sum (hand-built: 3 shifts + notes)."""
  shift = lambda n: tok.event_offset + tokenizer_lib._event_index(
      tokenizer_lib.performance_lib.PerformanceEvent.TIME_SHIFT, n)
  on = tok.note_on_range[0] + 60
  ids = np.array([on, shift(100), shift(50), shift(1), tok.eos_id, tok.control_id(1)])
  assert tok.time_steps(ids).tolist() == [0, 100, 50, 1, 0, 0]


def test_event_ranges_decode_to_their_events(tok):
  """The id ranges the sampler's note rules use: each id decodes to the event its range claims."""
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
  _assert_notes_close(_sorted_ns(tok.decode(ids)), want)
  tok.to_midi(ids, tmp_path / "out.mid")
  back = pretty_midi.PrettyMIDI(str(tmp_path / "out.mid"))
  assert len(back.instruments) == 1 and not back.instruments[0].is_drum
  _assert_notes_close(_sorted(back.instruments[0].notes), want, time_tol=STEP + MIDI_TICK)


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


@pytest.mark.parametrize("factor", [0.95, 1.05])
def test_time_stretch_matches_stretched_sequence(tok, factor):
  rng = np.random.default_rng(3)
  notes = _random_notes(rng, 80) + [pretty_midi.Note(70, 100, 3.0, 3.01)]  # a one-step note survives
  ns = tokenizer_lib.load_midi(_midi_bytes((0, False, notes)))
  got = tok.decode(tok.time_stretch(tok.encode_sequence(ns), factor))
  want = tok.decode(tok.encode_sequence(sequences_lib.stretch_note_sequence(ns, factor)))
  # Stretching already-quantized times rounds twice: within two steps of the exact stretch.
  _assert_notes_close(_sorted_ns(got), _sorted_ns(want), time_tol=2 * STEP)


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
