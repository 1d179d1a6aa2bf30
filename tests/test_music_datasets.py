"""Music TFDS builders (EMOPIA, music21's corpus, MetaMIDI, Pop1K7, POP909) on small fixtures written here."""

import csv
import hashlib
import io

import numpy as np
import pretty_midi
import pytest

from facemusic_jax import emotion, labels
from facemusic_jax.core.errors import UserError
from facemusic_jax.data import music_datasets
from facemusic_jax.data.music_datasets import base, music21_corpus, piano
from facemusic_jax.music import tokenizer

TOKENIZER = tokenizer.get()


def _midi_bytes(seed: int, num_notes: int = 8) -> bytes:
  """A short piano piece whose notes depend on `seed`, so every fixture file encodes differently."""
  pm = pretty_midi.PrettyMIDI()
  piano = pretty_midi.Instrument(program=0)
  for i in range(num_notes):
    start = 0.25 * i
    piano.notes.append(pretty_midi.Note(velocity=40 + 5 * (i % 8), pitch=48 + (seed * 5 + i * 3) % 36,
                                        start=start, end=start + 0.2 + 0.05 * (seed % 3)))
  pm.instruments.append(piano)
  return _write(pm)


def _no_notes_midi() -> bytes:
  pm = pretty_midi.PrettyMIDI()
  pm.instruments.append(pretty_midi.Instrument(program=0))
  return _write(pm)


def _write(pm: pretty_midi.PrettyMIDI) -> bytes:
  buffer = io.BytesIO()
  pm.write(buffer)
  return buffer.getvalue()


def _records(source) -> dict:
  """{source_id: record} of a random-access source."""
  return {record["source_id"].decode(): record for record in (source[i] for i in range(len(source)))}


def _skips(counts) -> dict:
  return {key.split("/", 1)[1]: n for key, n in counts.items() if key.startswith("skipped/")}


# ---------------------------------------------------------------------------------------------------
# EMOPIA.

# (clip id, quadrant): 11 songs; song "mix" has clips in two quadrants, as some EMOPIA songs do.
EMOPIA_CLIPS = [("Q1_aaa_0", 1), ("Q1_aaa_1", 1), ("Q2_bbb_0", 2), ("Q2_bbb_1", 2), ("Q3_ccc_0", 3),
                ("Q4_ddd_0", 4), ("Q1_eee_0", 1), ("Q2_fff_0", 2), ("Q3_ggg_0", 3), ("Q3_ggg_1", 3),
                ("Q4_hhh_0", 4), ("Q1_mix_0", 1), ("Q3_mix_1", 3), ("Q4_i_j_0", 4), ("Q2_kkk_0", 2)]
EMOPIA_BAD = {"Q2_bbb_2": b"", "Q4_ddd_1": b"this is not a MIDI file\n"}  # labelled, unreadable


@pytest.fixture
def emopia_dir(tmp_path):
  root = tmp_path / "emopia"
  (root / "midis").mkdir(parents=True)
  for i, (clip, _) in enumerate(EMOPIA_CLIPS):
    (root / "midis" / f"{clip}.mid").write_bytes(_midi_bytes(i, num_notes=4 + 3 * (i % 4)))
  for clip, data in EMOPIA_BAD.items():
    (root / "midis" / f"{clip}.mid").write_bytes(data)
  (root / "midis" / "Q1_zzz_0.mid").write_bytes(_midi_bytes(99))  # not in label.csv
  with open(root / "label.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["ID", "4Q", "annotator"])
    for clip, q in EMOPIA_CLIPS + [(clip, int(clip[1])) for clip in EMOPIA_BAD]:
      writer.writerow([clip, q, "A"])
  return root


def test_emopia_round_trip_labels_split_and_counts(emopia_dir, tmp_path):
  splits = music_datasets.prepare("emopia", emopia_dir, tmp_path / "tfds", num_workers=1)
  assert set(splits) == {"train", "validation"}
  records = {split: _records(source) for split, source in splits.items()}
  every = {**records["train"], **records["validation"]}
  assert sorted(every) == sorted(clip for clip, _ in EMOPIA_CLIPS)
  quadrant = dict(EMOPIA_CLIPS)
  for clip, record in every.items():
    expected = TOKENIZER.encode_midi(emopia_dir / "midis" / f"{clip}.mid",
                                     max_events=tokenizer.DEFAULT_MAX_EVENTS)
    assert record["tokens"].dtype == np.int32
    np.testing.assert_array_equal(record["tokens"], expected)
    # DESIGN: Q1 (+V, +A), Q2 (-V, +A), Q3 (-V, -A), Q4 (+V, -A); valence at the quadrant's centre.
    sign_v, sign_a = emotion.QUADRANT_SIGNS[quadrant[clip]]
    assert record["valence"] == pytest.approx(0.75 if sign_v > 0 else 0.25)
    assert (record["arousal"] > 0.5) == (sign_a > 0) and 0.0 <= record["arousal"] <= 1.0
    music = emotion.MUSIC_CLASSES[record["music_class"]]
    assert music in emotion.QUADRANT_MUSIC_CLASSES[quadrant[clip]]
    assert record["song_id"].decode() == clip.split("_", 1)[1].rsplit("_", 1)[0]
  # Whole songs on each side, never a song cut in two (song "mix" spans two quadrants).
  songs = {split: {r["song_id"] for r in recs.values()} for split, recs in records.items()}
  assert songs["train"] and songs["validation"] and not songs["train"] & songs["validation"]
  builder = music_datasets.make_builder("emopia", tmp_path / "tfds", {})
  counts = builder.info.metadata["counts"]
  assert _skips(counts) == {"empty_file": 1, "not_midi": 1, "no_label": 1}
  assert counts["ok/train"] + counts["ok/validation"] == len(EMOPIA_CLIPS)


def test_emopia_split_is_fixed_and_prepare_is_idempotent(emopia_dir, tmp_path):
  first = music_datasets.prepare("emopia", emopia_dir, tmp_path / "a", num_workers=1)
  validation = sorted(_records(first["validation"]))
  for path in (emopia_dir / "midis").iterdir():
    path.unlink()  # A prepared dataset is reused: the manual dir is not read again.
  again = music_datasets.prepare("emopia", emopia_dir, tmp_path / "a", num_workers=1)
  assert sorted(_records(again["validation"])) == validation
  assert len(again["train"]) == len(first["train"])


def test_the_note_vocabulary_is_built_as_its_own_copy_and_checked_on_reuse(emopia_dir, tmp_path):
  notes = tokenizer.get("notes")
  splits = music_datasets.prepare("emopia", emopia_dir, tmp_path / "notes", num_workers=1, vocabulary="notes")
  for clip, record in {**_records(splits["train"]), **_records(splits["validation"])}.items():
    np.testing.assert_array_equal(record["tokens"], notes.encode_midi(emopia_dir / "midis" / f"{clip}.mid"))
  builder = music_datasets.make_builder("emopia", tmp_path / "notes", {}, "notes")
  assert builder.info.metadata["vocabulary"] == "notes"
  with pytest.raises(UserError, match="holds emopia in the 'notes' vocabulary, not 'performance'"):
    music_datasets.prepare("emopia", emopia_dir, tmp_path / "notes", num_workers=1)
  with pytest.raises(UserError, match="vocabulary='remi': use one of performance, notes"):
    music_datasets.prepare("emopia", emopia_dir, tmp_path / "remi", vocabulary="remi")


def test_emopia_nothing_valid_is_a_user_error(tmp_path):
  root = tmp_path / "emopia"
  (root / "midis").mkdir(parents=True)
  (root / "midis" / "Q1_aaa_0.mid").write_bytes(b"")
  (root / "label.csv").write_text("ID,4Q,annotator\nQ1_aaa_0,1,A\n")
  with pytest.raises(UserError, match="no valid EMOPIA piece.*empty_file=1"):
    music_datasets.prepare("emopia", root, tmp_path / "tfds", num_workers=1)
  bare = tmp_path / "bare"
  bare.mkdir()
  (bare / "Q1_aaa_0.mid").write_bytes(_midi_bytes(0))
  with pytest.raises(UserError, match="no label.csv"):
    music_datasets.prepare("emopia", bare, tmp_path / "tfds2", num_workers=1)


def test_parallel_encoding_matches_in_process(emopia_dir):
  paths = sorted(str(p) for p in (emopia_dir / "midis").iterdir())[:6]
  one = list(base.parallel_map(base.encode_file, paths, num_workers=1))
  two = list(base.parallel_map(base.encode_file, paths, num_workers=2, chunksize=2))
  assert len(one) == len(two) == 6
  for (ids_a, stats_a), (ids_b, stats_b) in zip(one, two):
    assert stats_a == stats_b
    assert (ids_a is None and ids_b is None) or np.array_equal(ids_a, ids_b)


# ---------------------------------------------------------------------------------------------------
# music21's bundled corpus.


def test_music21_corpus_sample(tmp_path):
  pytest.importorskip("music21")
  splits = music_datasets.prepare("music21_corpus", "", tmp_path / "tfds", max_pieces=3, num_workers=1)
  records = {k: r for source in splits.values() for k, r in _records(source).items()}
  pieces = [music21_corpus.music21_piece_id(p)
            for p in music21_corpus.sample_pieces(music21_corpus.music21_pieces(), 3)]
  assert records and set(records) <= set(pieces)
  for record in records.values():
    assert record["tokens"].dtype == np.int32 and len(record["tokens"]) > 10
    assert 0.0 <= record["valence"] <= 1.0 and 0.0 <= record["arousal"] <= 1.0
    music = emotion.music_class(energy=float(record["arousal"]), valence=float(record["valence"]))
    assert record["music_class"] == emotion.music_class_index(music)
    assert "song_id" not in record
  counts = music_datasets.make_builder("music21_corpus", tmp_path / "tfds", {"max_pieces": 3})
  counts = counts.info.metadata["counts"]
  assert sum(n for k, n in counts.items() if k.startswith(("ok/", "skipped/"))) == 3


def test_music21_failure_is_counted():
  pytest.importorskip("music21")
  # An Essen tune that music21 10.5.1 parses but cannot write as MIDI (a doubled time signature).
  piece_id, record, stats = music21_corpus.music21_example(("essenFolksong/han1.abc", 113))
  assert piece_id == "essenFolksong/han1.abc#113" and record is None
  assert stats == {"skipped/music21_midi_error": 1}


def test_music21_pieces_cover_the_corpus():
  pytest.importorskip("music21")
  pieces = music21_corpus.music21_pieces()
  assert len(pieces) > 10_000  # Each tune of a multi-tune ABC file is its own piece.
  assert not any(path.endswith(".rntxt") for path, _ in pieces)
  assert music21_corpus.sample_pieces(pieces, 5) == music21_corpus.sample_pieces(pieces, 5)


# ---------------------------------------------------------------------------------------------------
# MetaMIDI.


def _track_ids(n: int, split: str) -> list[str]:
  """n 22-character Spotify ids whose songs land in `split` (the split is a hash of the song)."""
  ids, i = [], 0
  while len(ids) < n:
    sid = f"{i:022d}"
    if base.hash_split(sid) == split:
      ids.append(sid)
    i += 1
  return ids


@pytest.fixture
def metamidi_dir(tmp_path):
  """MMD_MIDI/<c1>/<c2>/<c3>/<md5>.mid + labels.csv; files 0 and 1 match the same Spotify track."""
  root = tmp_path / "metamidi"
  songs = _track_ids(6, "train") + _track_ids(2, "validation")
  songs.insert(1, songs[0])
  contents = [_midi_bytes(i) for i in range(len(songs))]
  contents += [_midi_bytes(50)[:40], _no_notes_midi(), b"MThd"]  # truncated, no notes, cut header
  songs += _track_ids(3, "train")[-3:]
  rows = []
  for i, (data, sid) in enumerate(zip(contents, songs)):
    md5 = hashlib.md5(data + bytes([i])).hexdigest()
    file = f"{md5[0]}/{md5[1]}/{md5[2]}/{md5}.mid"
    (root / "MMD_MIDI" / file).parent.mkdir(parents=True, exist_ok=True)
    (root / "MMD_MIDI" / file).write_bytes(data)
    valence, arousal = (i * 0.37) % 1.0, (i * 0.61) % 1.0
    rows.append(labels.make_label(file, valence, arousal, "spotify", md5=md5, spotify_id=sid,
                                  match_score="0.9"))
  rows.append(labels.make_label("f/f/f/ffffffffffffffffffffffffffffffff.mid", 0.5, 0.5, "spotify",
                                md5="f" * 32, spotify_id="1" * 22))  # listed, not on disk
  labels.write_labels_csv(str(root / "labels.csv"), rows)
  return root, {row.file: row for row in rows}


def _check_metamidi(splits, root, rows):
  records = {split: _records(source) for split, source in splits.items()}
  assert set(records) == {"train", "validation"}
  every = {**records["train"], **records["validation"]}
  assert len(every) == 9
  for file, record in every.items():
    np.testing.assert_array_equal(record["tokens"], TOKENIZER.encode_midi(root / "MMD_MIDI" / file))
    assert record["valence"] == pytest.approx(rows[file].valence)
    assert record["arousal"] == pytest.approx(rows[file].arousal)
    assert emotion.MUSIC_CLASSES[record["music_class"]] == rows[file].music_emotion
    assert record["song_id"].decode() == rows[file].spotify_id
  songs = {split: {r["song_id"] for r in recs.values()} for split, recs in records.items()}
  assert not songs["train"] & songs["validation"]
  return every


METAMIDI_SKIPS = {"truncated": 1, "no_notes": 1, "unreadable": 1}


def test_metamidi_plain(metamidi_dir, tmp_path):
  root, rows = metamidi_dir
  splits = music_datasets.prepare("metamidi", root, tmp_path / "tfds", num_workers=1)
  _check_metamidi(splits, root, rows)
  counts = music_datasets.make_builder("metamidi", tmp_path / "tfds", {}).info.metadata["counts"]
  skips = _skips(counts)
  assert skips.pop("parse_error", 0) + skips.pop("truncated", 0) == 2  # The two cut-off files.
  assert skips == {"no_notes": 1, "unreadable": 1}


def test_metamidi_labels_csv_option_and_bad_rows(metamidi_dir, tmp_path):
  root, _ = metamidi_dir
  text = (root / "labels.csv").read_text()
  header, first = text.splitlines()[:2]
  bad = first.split(",")
  bad[1] = "1.5"  # valence outside [0, 1]
  csv_path = tmp_path / "mine.csv"
  csv_path.write_text("\n".join([header, ",".join(bad), first, first]) + "\n")
  splits = music_datasets.prepare("metamidi", root, tmp_path / "tfds", labels_csv=str(csv_path),
                                  num_workers=1)
  assert sum(len(s) for s in splits.values()) == 1
  counts = music_datasets.make_builder("metamidi", tmp_path / "tfds", {}).info.metadata["counts"]
  assert _skips(counts) == {"bad_label_row": 1, "duplicate_label_row": 1}
  (tmp_path / "nolabels.csv").write_text("file,valence\n")
  with pytest.raises(UserError, match="not a labels CSV"):
    music_datasets.prepare("metamidi", root, tmp_path / "t2", labels_csv=str(tmp_path / "nolabels.csv"))


def test_metamidi_beam_matches_plain(metamidi_dir, tmp_path):
  pytest.importorskip("apache_beam")
  root, rows = metamidi_dir
  plain = music_datasets.prepare("metamidi", root, tmp_path / "plain", num_workers=1)
  plain = _check_metamidi(plain, root, rows)
  splits = music_datasets.prepare("metamidi", root, tmp_path / "beam", beam_runner="DirectRunner")
  beam = _check_metamidi(splits, root, rows)
  assert beam.keys() == plain.keys()
  counts = {name: music_datasets.make_builder("metamidi", tmp_path / name, {}).info.metadata["counts"]
            for name in ("plain", "beam")}
  assert counts["beam"] == counts["plain"]


# ---------------------------------------------------------------------------------------------------
# prepare().


def test_prepare_rejects_unknown_names_and_options(tmp_path):
  with pytest.raises(UserError, match="unknown music dataset"):
    music_datasets.prepare("lakh", tmp_path, tmp_path / "tfds")
  with pytest.raises(UserError, match="no option max_pieces"):
    music_datasets.prepare("emopia", tmp_path, tmp_path / "tfds", max_pieces=3)
  with pytest.raises(UserError, match="missing or empty folder"):
    music_datasets.prepare("emopia", tmp_path / "nowhere", tmp_path / "tfds")


# ---------------------------------------------------------------------------------------------------
# Pop1K7 and POP909: unlabelled piano corpora, with EMOPIA's validation songs kept out by note content.


def _notes(seed: int, n: int, start: float = 0.0) -> list:
  """n monophonic notes whose pitches come from `seed`: two different seeds share no long pitch run."""
  pitches = np.random.default_rng(seed).integers(40, 90, n)
  return [pretty_midi.Note(70, int(p), start + 0.2 * i, start + 0.2 * i + 0.15) for i, p in enumerate(pitches)]


def _piece(*tracks) -> bytes:
  pm = pretty_midi.PrettyMIDI()
  for name, notes in tracks:
    inst = pretty_midi.Instrument(program=0, name=name)
    inst.notes.extend(notes)
    pm.instruments.append(inst)
  return _write(pm)


@pytest.fixture
def pop_and_emopia(tmp_path):
  """An EMOPIA folder of 30-note clips (10 songs) and a Pop1K7-like folder: 6 pieces, one of which plays a
  validation clip in its middle, one a training clip, and a broken file."""
  emopia = tmp_path / "emopia"
  (emopia / "midis").mkdir(parents=True)
  clips = [(f"Q{1 + k % 4}_song{k}_0", 1 + k % 4) for k in range(10)]
  for k, (clip, _) in enumerate(clips):
    (emopia / "midis" / f"{clip}.mid").write_bytes(_piece(("piano", _notes(1000 + k, 30))))
  with open(emopia / "label.csv", "w", newline="") as f:
    csv.writer(f).writerows([["ID", "4Q", "annotator"]] + [[c, q, "A"] for c, q in clips])
  index = piano.emopia_validation_index(emopia, num_workers=1)
  validation = sorted(index.sizes)
  train = sorted(c for c, _ in clips if c not in index.sizes)
  pop = tmp_path / "pop1k7"
  (pop / "src_001").mkdir(parents=True)
  for k in range(4):
    (pop / "src_001" / f"{k}.mid").write_bytes(_piece(("piano", _notes(k, 60))))
  seed_of = {c: 1000 + int(c.split("_")[1][4:]) for c, _ in clips}
  (pop / "src_001" / "with_val.mid").write_bytes(
      _piece(("piano", _notes(7, 20) + _notes(seed_of[validation[0]], 30, start=4.0) + _notes(8, 20, start=10.0))))
  (pop / "src_001" / "with_train.mid").write_bytes(
      _piece(("piano", _notes(9, 20) + _notes(seed_of[train[0]], 30, start=4.0))))
  (pop / "src_001" / "broken.mid").write_bytes(b"MThd broken")
  return emopia, pop


def test_containment_by_hand():
  from facemusic_jax.data import overlap
  on = TOKENIZER.note_on_range[0]
  shift = TOKENIZER.event_offset + tokenizer._event_index(tokenizer.performance_lib.PerformanceEvent.TIME_SHIFT, 5)
  clip = [on + p for p in range(60, 70)]  # 10 note-ons: 3 distinct 8-grams
  index = overlap.ContainmentIndex([("clip", np.array(clip))], n=8)
  # Time shifts and other events between the notes do not matter; only the pitch order does.
  piece = np.array([on + 30, shift] + [x for t in clip for x in (t, shift)])
  assert index.containment(piece) == {"clip": 1.0}
  assert index.containment(np.array(clip[:9])) == {"clip": pytest.approx(2 / 3)}  # 2 of its 3 8-grams
  assert index.containment(np.array(clip[::-1])) == {}
  assert index.contained(piece) == ["clip"] and index.contained(np.array(clip[:8]), threshold=0.5) == []


def test_pop1k7_leaves_out_pieces_that_hold_an_emopia_validation_clip(pop_and_emopia, tmp_path):
  emopia, pop = pop_and_emopia
  splits = music_datasets.prepare("pop1k7", pop, tmp_path / "tfds", emopia_dir=str(emopia), num_workers=1)
  every = {k: v for source in splits.values() for k, v in _records(source).items()}
  kept = {f"src_001/{k}.mid" for k in range(4)} | {"src_001/with_train.mid"}
  assert set(every) == kept
  for file, record in every.items():
    np.testing.assert_array_equal(record["tokens"], TOKENIZER.encode_midi(pop / file))
    assert "valence" not in record and "music_class" not in record  # unlabelled: the null control
    assert record["song_id"].decode() == file[:-4]
  for split, source in splits.items():
    assert all(base.hash_split(r["song_id"].decode()) == split for r in _records(source).values())
  builder = music_datasets.make_builder("pop1k7", tmp_path / "tfds", {"emopia_dir": str(emopia)})
  counts = builder.info.metadata["counts"]
  assert _skips(counts) == {"overlaps_emopia_validation": 1, "truncated": 1}
  # Without EMOPIA nothing is left out (another prepared copy: the option is part of its name).
  plain = music_datasets.prepare("pop1k7", pop, tmp_path / "tfds", num_workers=1)
  assert sum(len(s) for s in plain.values()) == 6


def test_pop909_merges_its_three_tracks(tmp_path):
  root = tmp_path / "pop909"
  root.mkdir()
  melody, bridge, piano = _notes(1, 12), _notes(2, 9), _notes(3, 15)
  (root / "001.mid").write_bytes(_piece(("MELODY", melody), ("BRIDGE", bridge), ("PIANO", piano)))
  (root / "002.mid").write_bytes(_piece(("MELODY", _notes(4, 10))))
  splits = music_datasets.prepare("pop909", root, tmp_path / "tfds", num_workers=1)
  every = {k: v for source in splits.values() for k, v in _records(source).items()}
  ns = TOKENIZER.decode(every["001.mid"]["tokens"])
  assert len(ns.notes) == len(melody) + len(bridge) + len(piano)
  assert sorted(n.pitch for n in ns.notes) == sorted(n.pitch for n in melody + bridge + piano)


def test_pop_corpus_errors_are_one_line(tmp_path):
  with pytest.raises(UserError, match="missing or empty folder"):
    music_datasets.prepare("pop909", tmp_path / "nowhere", tmp_path / "tfds")
  (tmp_path / "pop").mkdir()
  (tmp_path / "pop" / "a.mid").write_bytes(_midi_bytes(0))
  with pytest.raises(UserError, match="no label.csv"):
    music_datasets.prepare("pop1k7", tmp_path / "pop", tmp_path / "tfds", emopia_dir=str(tmp_path / "pop"))
