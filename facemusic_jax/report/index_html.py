"""index.html of a generation run: one static page that shows the input, its emotion and every piece.

The page is self-contained (inline CSS, no network) and every link is relative to the run's folder, so the
folder can be moved, zipped or served as is. The one inline script only counts the images that loaded
(body[data-images-loaded]), which lets a headless browser check the page without a screenshot diff.
"""

import html
import os
import urllib.parse

from facemusic_jax import emotion

CSS = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1em 2em; color: #222; }
header { border-bottom: 2px solid #ddd; margin-bottom: 1em; }
h1 { margin-bottom: .2em; } .vector { font-family: monospace; font-size: 1.1em; color: #555; }
.row { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
img { max-width: 100%; } .plane { max-width: 480px; } .face { max-width: 560px; }
table.probs td, table.probs th { padding: .15em .8em; text-align: left; } table.probs .top { font-weight: bold;
  color: crimson; } td.num { text-align: right; font-family: monospace; }
.pieces { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 1em; }
.card { border: 1px solid #ddd; border-radius: 8px; padding: .8em; background: #fafafa; }
.card h3 { margin: 0 0 .4em; } .card audio { width: 100%; margin: .4em 0; } .meta { color: #666; }
footer { margin-top: 2em; padding-top: .5em; border-top: 1px solid #ddd; color: #666; font-size: .9em; }
"""

COUNT_IMAGES = ("window.addEventListener('load', function () { document.body.dataset.imagesLoaded = "
                "Array.prototype.filter.call(document.images, function (i) { return i.complete && "
                "i.naturalWidth > 0; }).length; });")


def _text(value) -> str:
  return html.escape(str(value))


def _url(path: str, out_dir: str) -> str:
  """A file's path (absolute or relative to the cwd) -> an escaped URL relative to out_dir."""
  rel = os.path.relpath(os.path.abspath(path), os.path.abspath(out_dir)).replace(os.sep, "/")
  return html.escape(urllib.parse.quote(rel), quote=True)


def _number(value, spec: str) -> str:
  try:
    return format(float(value), spec)
  except (TypeError, ValueError):
    return _text(value)


def _input(summary: dict) -> str:
  given = summary.get("input") or {}
  if "image" in given:
    return f"image <code>{_text(given['image'])}</code>"
  if "emotion" in given:
    return f"emotion <code>{_text(given['emotion'])}</code>"
  if "valence" in given:
    return (f"valence {_number(given['valence'], '+.2f')}, "
            f"arousal {_number(given.get('arousal'), '+.2f')}")
  return _text(given)


def _face(summary: dict, out_dir: str) -> str:
  face = summary.get("face")
  if not face:
    return ""
  probs = face.get("probabilities") or {}
  top = max(probs, key=probs.get) if probs else None
  rows = "".join(
      f'<tr class="{"top" if name == top else ""}"><td>{_text(name)}</td>'
      f'<td class="num">{_number(probs[name] * 100, ".1f")}%</td></tr>'
      for name in [*emotion.FER_LABELS, *(k for k in probs if k not in emotion.FER_LABELS)] if name in probs)
  detail = f"{_text(face.get('num_faces', '?'))} face(s) found"
  if face.get("face_box"):
    detail += ", box " + _text(" ".join(str(int(x)) for x in face["face_box"]))
  plot = summary.get("plots", {}).get("face")
  image = f'<img class="face" src="{_url(plot, out_dir)}" alt="face and probabilities">' if plot else ""
  return f"""
<section><h2>Face: {_text(face.get('emotion'))}</h2>
<p class="meta">{detail}; expected vector (valence {_number(face.get('valence'), '+.2f')},
arousal {_number(face.get('arousal'), '+.2f')}) &rarr; music class {_text(face.get('music_emotion'))}</p>
<div class="row"><table class="probs"><tr><th>emotion</th><th>probability</th></tr>{rows}</table>{image}</div>
</section>"""


def _piece(i: int, entry: dict, out_dir: str) -> str:
  name = os.path.basename(entry["midi"])
  parts = [f"<h3>{_text(name)}</h3>"]
  if entry.get("piano_roll"):
    parts.append(f'<img src="{_url(entry["piano_roll"], out_dir)}" alt="piano roll of piece {i + 1}">')
  if entry.get("wav"):
    parts.append(f'<audio controls preload="none" src="{_url(entry["wav"], out_dir)}"></audio>')
  parts.append(f'<p class="meta"><a href="{_url(entry["midi"], out_dir)}" download>MIDI</a>'
               + (f' &middot; <a href="{_url(entry["wav"], out_dir)}" download>WAV</a>' if entry.get("wav") else "")
               + f" &middot; {_text(entry.get('notes', '?'))} notes &middot; "
               f"{_number(entry.get('seconds', 0), '.1f')} s &middot; {_text(entry.get('tokens', '?'))} tokens</p>")
  return '<div class="card">' + "\n".join(parts) + "</div>"


def write_index(out_dir: str, summary: dict) -> str:
  """Writes out_dir/index.html for a run's summary (the dict of summary.json) and returns its path."""
  os.makedirs(out_dir, exist_ok=True)
  music_class = summary.get("music_emotion", "?")
  vector = f"({_number(summary.get('valence'), '+.2f')}, {_number(summary.get('arousal'), '+.2f')})"
  plane = summary.get("plots", {}).get("va_plane")
  plane_html = (f'<section><h2>Valence&ndash;arousal plane</h2><img class="plane" src="{_url(plane, out_dir)}"'
                f' alt="valence-arousal plane"></section>') if plane else ""
  files = summary.get("files", [])
  pieces = "\n".join(_piece(i, entry, out_dir) for i, entry in enumerate(files))
  footer = " &middot; ".join(
      f"{key.replace('_', ' ')} {_text(summary[key])}"
      for key in ("checkpoint", "seed", "temperature", "top_k", "top_p", "guidance", "length", "devices",
                  "tokens_per_s") if key in summary)
  page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>facemusic: {_text(music_class)}</title><style>{CSS}</style></head>
<body>
<header><h1>Music class: {_text(music_class)}</h1>
<p class="vector">valence, arousal = {vector}</p>
<p>input: {_input(summary)}</p></header>
{_face(summary, out_dir)}
{plane_html}
<section><h2>Pieces ({len(files)})</h2><div class="pieces">
{pieces}
</div></section>
<footer>{footer}</footer>
<script>{COUNT_IMAGES}</script>
</body></html>
"""
  path = os.path.join(out_dir, "index.html")
  with open(path, "w", encoding="utf-8") as f:
    f.write(page)
  return path
