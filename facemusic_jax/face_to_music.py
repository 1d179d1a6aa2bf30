"""The whole product for photos: each photo's faces -> their emotion -> music, written to one folder per photo.

`generate --image`, `make demo` and the notebook call this; the steps themselves live in face/ (find, level,
crop, classify, describe) and music/ (condition, sample, write).
"""

import json
import os
import sys

import jax

from facemusic_jax.core.errors import UserError
from facemusic_jax.face import classify
from facemusic_jax.music import generation


def photo_to_music(out_dir: str, classifier: classify.FerClassifier, generator: generation.MusicGenerator, image,
                   *, detect: bool = True, which: str = "largest", **sampling) -> tuple[classify.FaceReading, dict]:
  """One photo -> its FaceReading and the summary of the music run written to `out_dir` (`sampling` as for
  `generation.write_run`). The music is conditioned on `reading.condition` (the largest face, or the mean of
  all faces); the pictures show the largest face."""
  reading = classify.read_photo(classifier, image, detect=detect, which=which)
  return reading, music_for_faces(out_dir, generator, reading, **sampling)


def music_for_faces(out_dir: str, generator: generation.MusicGenerator, reading: classify.FaceReading,
                    **sampling) -> dict:
  """The music run for a photo already read: conditioned on `reading.condition`, the pictures showing the
  largest face. Returns `generation.write_run`'s summary."""
  condition = generation.condition_from_face(reading.condition, reading.image)
  return generation.write_run(out_dir, generator, condition, crop=reading.display, **sampling)


def run_folders(images: list[str], out: str) -> dict[str, str]:
  """One output folder per photo: its file name without suffix, made unique."""
  folders, used = {}, set()
  for path in images:
    stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0] or "image"
    name, k = stem, 2
    while name in used:
      name, k = f"{stem}_{k}", k + 1
    used.add(name)
    folders[path] = os.path.join(out, name)
  return folders


def photos_to_music(images: list[str], out: str, classifier: classify.FerClassifier,
                    generator: generation.MusicGenerator, *, single: bool = False, detect: bool = True,
                    which: str = "largest", **sampling) -> int:
  """Music for every photo: with `single`, the one photo's files go to `out` itself; otherwise to a sub-folder
  each, with a progress bar, summary.json and a table at the end. A bad photo is reported in one line and
  counted, the rest still processed. Returns the exit status (1 when any photo failed)."""
  from tqdm import tqdm
  folders = {images[0]: out} if single else run_folders(images, out)
  rows, failed = [], 0
  for path in tqdm(images, desc="face -> music", unit="photo", disable=single, file=sys.stderr):
    try:
      reading, summary = photo_to_music(folders[path], classifier, generator, path, detect=detect, which=which,
                                        **sampling)
    except UserError as e:
      failed += 1
      tqdm.write(f"error: {e}", file=sys.stderr)
      rows.append({"image": path, "error": str(e)})
      continue
    if single and jax.process_index() == 0:
      print(generation.format_run(summary, folders[path]))
    rows.append({"image": path, "emotion": reading.condition["emotion"], "valence": summary["valence"],
                 "arousal": summary["arousal"], "music_emotion": summary["music_emotion"],
                 "pieces": len(summary["files"]), "out": folders[path], "audio_skipped": summary["audio_skipped"]})
  if any(r.get("audio_skipped") for r in rows):
    print(generation.AUDIO_SKIPPED, file=sys.stderr)
  if jax.process_index() != 0:  # process 0 reports
    return 1 if failed else 0
  if not single:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.json"), "w") as f:
      json.dump({"runs": rows, "processed": len(rows) - failed, "failed": failed}, f, indent=2)
    print(format_table(rows))
    print(f"{len(rows) - failed} of {len(rows)} photos -> music in {out}" +
          (f"; {failed} failed (see the errors above)" if failed else ""))
  return 1 if failed else 0


def format_table(rows: list[dict]) -> str:
  """The end-of-run table: one line per photo."""
  lines = [f"{'image':<28} {'face':<9} {'valence':>7} {'arousal':>7}  {'music':<9} {'pieces':>6}  output"]
  for r in rows:
    name = os.path.basename(r["image"])[:28]
    if "error" in r:
      lines.append(f"{name:<28} failed: {r['error']}")
    else:
      lines.append(f"{name:<28} {r['emotion']:<9} {r['valence']:>+7.2f} {r['arousal']:>+7.2f}  "
                   f"{r['music_emotion']:<9} {r['pieces']:>6}  {r['out']}")
  return "\n".join(lines)
