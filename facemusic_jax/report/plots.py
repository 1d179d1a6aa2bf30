"""The pictures of a generation run: the valence-arousal plane, the face with its probabilities, piano rolls.

Each function draws one figure, writes it as a PNG and returns the path. Agg is selected before pyplot is
imported so that nothing here ever needs a display.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.patches import Polygon, Rectangle  # noqa: E402

from facemusic_jax import emotion  # noqa: E402

DPI = 100

# The music-class rule's regions on Russell's plane (valence x, arousal y). In Spotify space E=(a+1)/2 and
# V=(v+1)/2, so E >= .5 is a >= 0, V >= .5 is v >= 0, and E < V is a < v: quadrant 1 splits along a = v.
REGIONS: dict[str, tuple[list[tuple[float, float]], tuple[float, float]]] = {
    # name: (polygon, where its name is written)
    "happiness": ([(0, 0), (1, 0), (1, 1)], (0.72, 0.22)),
    "surprise": ([(0, 0), (1, 1), (0, 1)], (0.22, 0.93)),
    "anger": ([(-1, 0), (0, 0), (0, 1), (-1, 1)], (-0.5, 0.62)),
    "sadness": ([(-1, -1), (0, -1), (0, 0), (-1, 0)], (-0.5, -0.6)),
    "others": ([(0, -1), (1, -1), (1, 0), (0, 0)], (0.5, -0.6)),
}
REGION_COLOURS = {"happiness": "#e0a800", "surprise": "#f28e2b", "anger": "#e15759", "sadness": "#4e79a7",
                  "others": "#59a14f"}


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  try:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
  finally:
    plt.close(fig)
  return path


def va_plane(path: str, point: tuple[float, float] | None = None, label: str | None = None,
             title: str | None = None) -> str:
  """Russell's plane with Table 1's seven face emotions (the paper's Fig. 2), the music-class regions and,
  when given, this input's (valence, arousal) vector as an arrow from the origin."""
  fig, ax = plt.subplots(figsize=(6, 6))
  for name, (polygon, (tx, ty)) in REGIONS.items():
    ax.add_patch(Polygon(polygon, closed=True, facecolor=REGION_COLOURS[name], alpha=0.12,
                         edgecolor=REGION_COLOURS[name], linewidth=0.8))
    ax.text(tx, ty, name, ha="center", va="center", fontsize=12, color=REGION_COLOURS[name], alpha=0.6,
            style="italic")
  ax.axhline(0, color="0.3", linewidth=1)
  ax.axvline(0, color="0.3", linewidth=1)
  for name, (v, a) in emotion.FACE_VA.items():
    ax.plot(v, a, "o", color="0.15", markersize=6)
    ax.annotate(name, (v, a), textcoords="offset points", xytext=(6, 5), fontsize=10)
  if point is not None:
    v, a = (float(x) for x in point)
    ax.annotate("", xy=(v, a), xytext=(0, 0),
                arrowprops=dict(arrowstyle="-|>", color="crimson", linewidth=2, shrinkA=0, shrinkB=0))
    ax.plot(v, a, "*", color="crimson", markersize=16, markeredgecolor="white", zorder=5,
            label=label or f"({v:+.2f}, {a:+.2f})")
    ax.legend(loc="lower left", fontsize=10, framealpha=0.9)
  ax.set_xlim(-1, 1)
  ax.set_ylim(-1, 1)
  ax.set_aspect("equal")
  ax.set_xlabel("valence")
  ax.set_ylabel("arousal")
  ax.set_title(title or "valence-arousal plane")
  ax.grid(True, color="0.9", linewidth=0.5)
  return _save(fig, path)


def _gray(crop) -> np.ndarray:
  image = np.asarray(crop)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  elif image.ndim == 3 and image.shape[-1] >= 3:  # ITU-R 601 luma, the same weights as PIL's "L"
    image = image[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
  if image.ndim != 2:
    raise ValueError(f"expected a (H, W), (H, W, 1) or (H, W, 3) image, got shape {np.shape(crop)}")
  return image


def face_probabilities(path: str, crop, probabilities: dict[str, float], title: str | None = None) -> str:
  """The face crop (gray) beside a bar chart of its 7 emotion probabilities, the top class highlighted."""
  labels = list(emotion.FER_LABELS)
  values = np.array([float(probabilities.get(name, 0.0)) for name in labels])
  top = int(np.argmax(values))
  fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4), gridspec_kw={"width_ratios": [1, 1.4]})
  left.imshow(_gray(crop), cmap="gray", vmin=0, vmax=255)
  left.axis("off")
  colours = ["crimson" if i == top else "#9aa7b8" for i in range(len(labels))]
  y = np.arange(len(labels))
  right.barh(y, values * 100, color=colours)
  right.set_yticks(y, labels)
  right.invert_yaxis()  # FER_LABELS order from the top
  right.set_xlim(0, 115)
  right.set_xlabel("probability (%)")
  for i, value in enumerate(values):
    right.text(value * 100 + 1.5, i, f"{value * 100:.1f}%", va="center", fontsize=9,
               fontweight="bold" if i == top else "normal")
  right.spines[["top", "right"]].set_visible(False)
  fig.suptitle(title or f"face: {labels[top]}")
  return _save(fig, path)


def piano_roll(path: str, midi, title: str | None = None) -> str:
  """Every non-drum note as a rectangle (seconds on x, MIDI pitch on y), darker for louder notes."""
  import pretty_midi
  pm = midi if isinstance(midi, pretty_midi.PrettyMIDI) else pretty_midi.PrettyMIDI(str(midi))
  notes = [n for inst in pm.instruments if not inst.is_drum for n in inst.notes]
  fig, ax = plt.subplots(figsize=(10, 4))
  if not notes:
    ax.text(0.5, 0.5, "no notes", ha="center", va="center", fontsize=20, color="0.4", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
  else:
    cmap = plt.get_cmap("viridis")
    velocity = np.array([n.velocity for n in notes]) / 127.0
    boxes = [Rectangle((n.start, n.pitch - 0.4), max(n.end - n.start, 1e-3), 0.8) for n in notes]
    colours = cmap(0.15 + 0.75 * velocity)
    colours[:, 3] = 0.35 + 0.65 * velocity
    ax.add_collection(PatchCollection(boxes, facecolors=colours, edgecolors="none"))
    low, high = min(n.pitch for n in notes), max(n.pitch for n in notes)
    ax.set_xlim(0, max(n.end for n in notes) * 1.01)
    ax.set_ylim(low - 1.5, high + 1.5)
    ticks = [p for p in range(low - 1, high + 2) if p % 12 == 0] or sorted({low, high})  # the C's, else the ends
    ax.set_yticks(ticks, [pretty_midi.note_number_to_name(p) for p in ticks])
    ax.grid(True, axis="y", color="0.9", linewidth=0.5)
    ax.set_axisbelow(True)  # grid lines behind the notes
  ax.set_xlabel("time (s)")
  ax.set_ylabel("pitch")
  ax.set_title(title or f"{len(notes)} notes")
  return _save(fig, path)
