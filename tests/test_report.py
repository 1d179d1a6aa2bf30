"""The run's pictures (plots) and its page (report) on small inputs built here, with no model.

The page is checked twice: parsed with html.parser (links relative, on disk, text escaped), and opened in a
headless Chromium when one is installed (the images really load, the page renders).
"""

import html.parser
import os
import shutil
import subprocess
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from facemusic_jax import emotion
from facemusic_jax.report import index_html, plots

CRIMSON = np.array([220, 20, 60])  # the colour plots uses for "this one"


def read_png(path) -> np.ndarray:
  with Image.open(path) as image:
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB")).astype(int)


def assert_drawn(path, min_size=100):
  pixels = read_png(path)
  assert pixels.shape[0] > min_size and pixels.shape[1] > min_size
  assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10, "a blank image"
  return pixels


def crimson_pixels(pixels) -> int:
  return int((np.abs(pixels - CRIMSON).sum(-1) < 40).sum())


def write_midi(path, notes, drum=False):
  """notes: (pitch, start, end, velocity) tuples on one piano (or drum kit)."""
  import pretty_midi
  pm = pretty_midi.PrettyMIDI()
  inst = pretty_midi.Instrument(program=0, is_drum=drum)
  inst.notes = [pretty_midi.Note(velocity=v, pitch=p, start=s, end=e) for p, s, e, v in notes]
  pm.instruments.append(inst)
  pm.write(str(path))
  return str(path)


NOTES = [(60, 0.0, 0.5, 100), (64, 0.5, 1.0, 60), (67, 1.0, 2.0, 30), (72, 2.0, 3.0, 127)]


# ------------------------------------------------------------------------------------------------ plots


def test_va_plane_with_and_without_point(tmp_path):
  plain = assert_drawn(plots.va_plane(str(tmp_path / "plain.png")))
  marked = assert_drawn(plots.va_plane(str(tmp_path / "sub" / "marked.png"), point=(0.6, 0.85),
                                       label="this face: happy", title="a face"))
  assert crimson_pixels(plain) == 0
  assert crimson_pixels(marked) > 50  # the arrow and the star


def test_face_probabilities_every_crop_layout(tmp_path):
  probs = dict(zip(emotion.FER_LABELS, [0.05, 0.01, 0.04, 0.7, 0.1, 0.05, 0.05]))
  gray = np.tile(np.linspace(0, 255, 48, dtype=np.uint8), (48, 1))
  crops = {"2d": gray, "1ch": gray[..., None], "rgb": np.stack([gray, gray[::-1], gray.T], -1)}
  for name, crop in crops.items():
    path = plots.face_probabilities(str(tmp_path / f"{name}.png"), crop, probs, title="face.jpg")
    assert path == str(tmp_path / f"{name}.png")
    assert crimson_pixels(assert_drawn(path)) > 50  # the top bar
  with pytest.raises(ValueError):
    plots.face_probabilities(str(tmp_path / "bad.png"), np.zeros((2, 3, 4, 5), np.uint8), probs)


def test_piano_roll_of_a_midi_file_and_object(tmp_path):
  import pretty_midi
  midi = write_midi(tmp_path / "four.mid", NOTES)
  from_file = assert_drawn(plots.piano_roll(str(tmp_path / "file.png"), midi, title="four notes"))
  from_object = assert_drawn(plots.piano_roll(str(tmp_path / "obj.png"), pretty_midi.PrettyMIDI(midi),
                                              title="four notes"))
  np.testing.assert_array_equal(from_file, from_object)


def test_piano_roll_without_notes(tmp_path):
  empty = assert_drawn(plots.piano_roll(str(tmp_path / "empty.png"), write_midi(tmp_path / "e.mid", [])))
  # Drums are left out, so a drum-only file draws the same "no notes" picture.
  drums = read_png(plots.piano_roll(str(tmp_path / "drums.png"), write_midi(tmp_path / "d.mid", NOTES, drum=True)))
  np.testing.assert_array_equal(empty, drums)
  notes = read_png(plots.piano_roll(str(tmp_path / "notes.png"), write_midi(tmp_path / "n.mid", NOTES)))
  assert notes.shape != empty.shape or (notes != empty).any()


# ------------------------------------------------------------------------------------------------ page


class Page(html.parser.HTMLParser):
  """Every tag with its attributes, and the page's text."""

  def __init__(self, text):
    super().__init__()
    self.tags, self.text = [], []
    self.feed(text)

  def handle_starttag(self, tag, attrs):
    self.tags.append((tag, dict(attrs)))

  def handle_data(self, data):
    self.text.append(data)

  def all(self, tag, attr):
    return [attrs[attr] for t, attrs in self.tags if t == tag and attr in attrs]


def make_run(tmp_path, monkeypatch):
  """A run folder with two real pieces (one with a WAV, one without, one name needing URL quoting), its
  plots, and a summary whose paths mix absolute and cwd-relative forms."""
  from scipy.io import wavfile
  monkeypatch.chdir(tmp_path)
  out = tmp_path / "run"
  out.mkdir()
  first = write_midi(out / "happiness 00.mid", NOTES)
  second = write_midi(out / "happiness_01.mid", NOTES[:2])
  wav = str(out / "happiness 00.wav")
  wavfile.write(wav, 8000, (np.sin(np.arange(800) / 5) * 10000).astype(np.int16))
  probs = dict(zip(emotion.FER_LABELS, [0.05, 0.01, 0.04, 0.7, 0.1, 0.05, 0.05]))
  face = {"emotion": "happy", "probabilities": probs, "valence": 0.41, "arousal": 0.6,
          "music_emotion": "surprise", "face_box": [10, 12, 30, 30], "num_faces": 1}
  summary = {
      "input": {"image": "my <&> face.jpg"}, "music_emotion": "surprise", "valence": 0.41, "arousal": 0.6,
      "face": face, "checkpoint": "/abs/ckpt<x>", "seed": 3, "temperature": 0.9, "top_k": 0, "top_p": 0.95,
      "guidance": 1.0, "length": 64, "devices": 1, "tokens_per_s": 123.4,
      "plots": {"va_plane": plots.va_plane(str(out / "va_plane.png"), point=(0.41, 0.6)),
                "face": plots.face_probabilities("run/face.png", np.full((8, 8), 128, np.uint8), probs)},
      "files": [
          {"midi": first, "wav": wav, "piano_roll": plots.piano_roll(str(out / "happiness 00.png"), first),
           "tokens": 40, "notes": 4, "seconds": 3.0},
          {"midi": "run/happiness_01.mid", "piano_roll": plots.piano_roll("run/happiness_01.png", second),
           "tokens": 20, "notes": 2, "seconds": 1.0},
      ]}
  return out, summary


def local(out, src):
  assert not os.path.isabs(src) and "://" not in src, f"{src} is not relative"
  return os.path.join(out, urllib.parse.unquote(src))


def test_write_index(tmp_path, monkeypatch):
  out, summary = make_run(tmp_path, monkeypatch)
  path = index_html.write_index(str(out), summary)
  assert path == os.path.join(str(out), "index.html")
  with open(path, encoding="utf-8") as f:
    raw = f.read()
  page = Page(raw)
  text = " ".join(page.text)

  images = page.all("img", "src")
  assert len(images) == 4  # the face, the plane, two piano rolls
  for src in images:
    assert os.path.isfile(local(out, src)), src
  audio = page.all("audio", "src")
  assert len(audio) == 1 and os.path.samefile(local(out, audio[0]), out / "happiness 00.wav")
  midis = [href for href in page.all("a", "href") if href.endswith(".mid")]
  assert sorted(os.path.basename(local(out, h)) for h in midis) == ["happiness 00.mid", "happiness_01.mid"]
  for href in page.all("a", "href"):
    assert os.path.isfile(local(out, href))

  assert "surprise" in text and "+0.41" in text and "+0.60" in text
  assert "70.0%" in text and "happy" in text
  assert "my <&> face.jpg" in text and "my &lt;&amp;&gt; face.jpg" in raw and "<&>" not in raw
  assert "/abs/ckpt<x>" in text and "123.4" in text
  assert not any(t == "x" for t, _ in page.tags)  # the checkpoint's "<x>" did not become a tag


def test_write_index_without_face_or_plots(tmp_path):
  summary = {"input": {"valence": 0.3, "arousal": -0.2}, "music_emotion": "others", "valence": 0.3,
             "arousal": -0.2, "face": None, "plots": {}, "files": [{"midi": str(tmp_path / "a.mid"), "tokens": 1,
                                                                    "notes": 0, "seconds": 0.0}]}
  page = Page(open(index_html.write_index(str(tmp_path), summary), encoding="utf-8").read())
  assert page.all("img", "src") == [] and page.all("audio", "src") == []
  assert page.all("a", "href") == ["a.mid"]
  assert "others" in " ".join(page.text) and "-0.20" in " ".join(page.text)


def find_chromium():
  for name in ("chromium", "chromium-browser", "google-chrome"):
    if shutil.which(name):
      return shutil.which(name)
  return None


def test_page_in_headless_chromium(tmp_path, monkeypatch):
  browser = find_chromium()
  if browser is None:
    pytest.skip("no chromium, chromium-browser or google-chrome on PATH")
  out, summary = make_run(tmp_path, monkeypatch)
  url = "file://" + urllib.parse.quote(os.path.abspath(index_html.write_index(str(out), summary)))
  common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]

  dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=60)
  assert dom.returncode == 0, dom.stderr[-2000:]
  page = Page(dom.stdout)
  assert len(page.all("img", "src")) == 4 and len(page.all("audio", "src")) == 1
  body = [attrs for tag, attrs in page.tags if tag == "body"]
  assert body and body[0].get("data-images-loaded") == "4", "not every image loaded in the browser"

  shot = tmp_path / "shot.png"
  run = subprocess.run([*common, "--hide-scrollbars", "--window-size=1200,1600", f"--screenshot={shot}", url],
                       capture_output=True, text=True, timeout=60)
  assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
  assert_drawn(shot)
