"""Tests for facemusic_jax.face.detection on skimage's bundled astronaut photo and synthetic images (no network)."""

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from facemusic_jax.core.errors import UserError
from facemusic_jax.face import detection


@pytest.fixture(scope="module")
def astronaut_gray():
  return detection.to_gray(data.astronaut())


def _two_face_canvas(gray):
  """The astronaut on the left and a 0.6x copy of her head pasted on a plain background to the right."""
  canvas = np.full((512, 900), 120, np.uint8)
  canvas[:, :512] = gray
  head = cv2.resize(gray[20:220, 140:310], None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
  canvas[200:200 + head.shape[0], 650:650 + head.shape[1]] = head
  return canvas


def _block_mean(image, k):
  """Naive k-fold downscale (what INTER_AREA does for integer factors)."""
  h, w = image.shape
  return image.reshape(h // k, k, w // k, k).astype(np.float64).mean(axis=(1, 3))


def _assert_one_line_user_error(excinfo, *needles):
  message = str(excinfo.value)
  assert "\n" not in message
  for needle in needles:
    assert needle in message


# --- detection ------------------------------------------------------------------------------------------


def test_astronaut_has_one_face_in_plausible_place(astronaut_gray):
  boxes = detection.detect_faces(astronaut_gray)
  assert len(boxes) == 1
  box = boxes[0]
  # Checked by eye on the 512x512 image: her face (brows to chin) spans about x 175-275, y 65-165.
  assert 200 <= box.x + box.w / 2 <= 250 and 90 <= box.y + box.h / 2 <= 140
  assert 60 <= box.w <= 140 and 60 <= box.h <= 140
  assert box.as_list() == [box.x, box.y, box.w, box.h]
  assert all(type(v) is int for v in box.as_list())


def test_two_faces_largest_first(astronaut_gray):
  boxes = detection.detect_faces(_two_face_canvas(astronaut_gray))
  assert len(boxes) == 2
  big, small = boxes
  assert big.area > small.area
  assert big.x + big.w / 2 < 512 < small.x  # the original is the big one, the pasted copy the small one
  crop, box, count = detection.prepare_face(_two_face_canvas(astronaut_gray))
  assert (box, count) == (big, 2) and crop.shape == (48, 48, 1)


def test_large_photo_boxes_in_original_pixels(astronaut_gray):
  # Above the detection size limit the image is shrunk for the cascade; boxes must come back full size.
  big = cv2.resize(astronaut_gray, None, fx=2.5, fy=2.5, interpolation=cv2.INTER_CUBIC)
  box = detection.detect_faces(big)[0]
  small = detection.detect_faces(astronaut_gray)[0]
  assert abs(box.x - 2.5 * small.x) < 25 and abs(box.w - 2.5 * small.w) < 25


@pytest.mark.parametrize("image", [np.zeros((300, 400), np.uint8),
                                   np.random.default_rng(0).integers(0, 256, (300, 400), dtype=np.uint8)],
                         ids=["blank", "noise"])
def test_no_face_raises_advertised_error(image, tmp_path):
  assert detection.detect_faces(image) == []
  with pytest.raises(UserError) as excinfo:
    detection.prepare_face(image)
  _assert_one_line_user_error(excinfo, "no face found in", "use --no-detect to classify the whole image")
  path = tmp_path / "wall.png"
  cv2.imwrite(str(path), image)
  with pytest.raises(UserError) as excinfo:
    detection.prepare_face(path)
  assert str(excinfo.value) == (f"no face found in {path} (also turned by up to 45 degrees); use --no-detect to "
                                "classify the whole image")


def test_no_detect_uses_whole_image():
  image = np.random.default_rng(0).integers(0, 256, (300, 400), dtype=np.uint8)
  crop, box, count = detection.prepare_face(image, detect=False)
  assert box is None and count == 0
  np.testing.assert_array_equal(crop, detection.whole_image(image))


# --- cropping -------------------------------------------------------------------------------------------


def _gradient(h=200, w=240):
  ys, xs = np.indices((h, w))
  return ((xs * 3 + ys * 7) % 256).astype(np.uint8)


def test_crop_face_matches_naive_crop_and_resize():
  image = _gradient()
  box = detection.FaceBox(x=50, y=40, w=80, h=80)  # side with 10% margin each way: 96 = 2 * 48
  crop = detection.crop_face(image, box, margin=0.1)
  assert crop.shape == (48, 48, 1) and crop.dtype == np.uint8
  # Centre (90, 80), side 96 -> rows 32:128, cols 42:138.
  expected = _block_mean(image[32:128, 42:138], 2)
  assert np.abs(crop[..., 0] - expected).max() <= 0.5 + 1e-9


def test_crop_face_non_square_box_uses_longer_side():
  image = _gradient()
  crop = detection.crop_face(image, detection.FaceBox(x=60, y=40, w=60, h=96), margin=0.0)
  expected = _block_mean(image[40:136, 42:138], 2)  # centre (90, 88), side 96
  assert np.abs(crop[..., 0] - expected).max() <= 0.5 + 1e-9


def test_crop_face_out_of_bounds_pads_with_edge():
  image = _gradient()
  box = detection.FaceBox(x=0, y=0, w=80, h=80)  # square spans -8..88 in both axes
  crop = detection.crop_face(image, box, margin=0.1)
  padded = np.pad(image, 8, mode="edge")
  expected = _block_mean(padded[0:96, 0:96], 2)
  assert np.abs(crop[..., 0] - expected).max() <= 0.5 + 1e-9
  # Fully outside on the right/bottom too: every pixel is the replicated corner.
  corner = detection.crop_face(image, detection.FaceBox(x=400, y=400, w=10, h=10))
  assert (corner == image[-1, -1]).all()


def test_whole_image_is_centre_square():
  image = _gradient(h=96, w=200)
  out = detection.whole_image(image)
  expected = _block_mean(image[:, 52:148], 2)
  assert out.shape == (48, 48, 1)
  assert np.abs(out[..., 0] - expected).max() <= 0.5 + 1e-9


def test_astronaut_crop_is_model_input(astronaut_gray):
  crop, box, count = detection.prepare_face(data.astronaut())
  assert crop.shape == (48, 48, 1) and crop.dtype == np.uint8 and count == 1
  np.testing.assert_array_equal(crop, detection.crop_face(astronaut_gray, box))


# --- colour handling ------------------------------------------------------------------------------------


def test_to_gray_formats():
  rgb = data.astronaut()
  gray = detection.to_gray(rgb)
  assert gray.shape == (512, 512) and gray.dtype == np.uint8
  np.testing.assert_array_equal(gray, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
  rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 77, np.uint8)], axis=-1)
  np.testing.assert_array_equal(detection.to_gray(rgba), gray)
  np.testing.assert_array_equal(detection.to_gray(gray), gray)
  np.testing.assert_array_equal(detection.to_gray(gray[..., None]), gray)
  as_float = detection.to_gray(rgb.astype(np.float32) / 255.0)
  assert np.abs(as_float.astype(int) - gray).max() <= 1
  with pytest.raises(ValueError):
    detection.to_gray(np.zeros((4, 4, 2), np.uint8))


@pytest.mark.parametrize("convert", [
    lambda a: a,
    lambda a: np.dstack([a, np.full(a.shape[:2], 255, np.uint8)]),
    lambda a: cv2.cvtColor(a, cv2.COLOR_RGB2GRAY),
], ids=["rgb", "rgba", "gray"])
def test_prepare_face_accepts_rgb_rgba_gray(convert):
  crop, box, count = detection.prepare_face(convert(data.astronaut()))
  assert count == 1 and crop.shape == (48, 48, 1)
  assert 200 <= box.x + box.w / 2 <= 250


# --- loading --------------------------------------------------------------------------------------------


def test_load_image_reads_formats(tmp_path, astronaut_gray):
  rgb = data.astronaut()
  png = tmp_path / "astronaut.png"
  cv2.imwrite(str(png), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
  loaded = detection.load_image(png)
  assert loaded.shape == (512, 512) and loaded.dtype == np.uint8
  assert np.abs(loaded.astype(int) - astronaut_gray).max() <= 1
  gif = tmp_path / "astronaut.gif"
  Image.fromarray(astronaut_gray).save(gif)
  assert detection.load_image(str(gif)).shape == (512, 512)
  _, box, count = detection.prepare_face(png)
  assert count == 1 and 200 <= box.x + box.w / 2 <= 250


def test_load_image_missing_file(tmp_path):
  path = tmp_path / "nope.jpg"
  with pytest.raises(UserError) as excinfo:
    detection.load_image(path)
  _assert_one_line_user_error(excinfo, str(path), "not found")


def test_load_image_text_file_named_jpg(tmp_path):
  path = tmp_path / "notes.jpg"
  path.write_text("this is not a photo\n")
  with pytest.raises(UserError) as excinfo:
    detection.load_image(path)
  _assert_one_line_user_error(excinfo, str(path), "not a readable image")


def test_load_image_empty_file(tmp_path):
  path = tmp_path / "empty.jpg"
  path.write_bytes(b"")
  with pytest.raises(UserError) as excinfo:
    detection.load_image(path)
  _assert_one_line_user_error(excinfo, str(path), "empty")


def test_load_image_directory(tmp_path):
  with pytest.raises(UserError) as excinfo:
    detection.prepare_face(tmp_path)
  _assert_one_line_user_error(excinfo, str(tmp_path), "directory")


def test_load_image_truncated_jpeg(tmp_path):
  ok, encoded = cv2.imencode(".jpg", data.camera())
  path = tmp_path / "cut.jpg"
  path.write_bytes(encoded.tobytes()[:200])  # header only: decoders give up
  with pytest.raises(UserError) as excinfo:
    detection.load_image(path)
  assert ok
  _assert_one_line_user_error(excinfo, str(path))


# --- photos as people take them: turned, several faces, quality --------------------------------------------


def _turned(gray, degrees, fill=None):
  """The photo turned counter-clockwise by `degrees` on a canvas that holds all of it, and the map from the
  photo's pixels to the canvas's (an independent expectation for where a face must be found)."""
  h, w = gray.shape
  m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
  size = (int(np.ceil(h * abs(m[0, 1]) + w * abs(m[0, 0]))), int(np.ceil(h * abs(m[0, 0]) + w * abs(m[0, 1]))))
  m[:, 2] += (size[0] / 2 - w / 2, size[1] / 2 - h / 2)
  border = dict(borderMode=cv2.BORDER_REPLICATE) if fill is None else dict(borderMode=cv2.BORDER_CONSTANT,
                                                                           borderValue=fill)
  return cv2.warpAffine(gray, m, size, flags=cv2.INTER_LINEAR, **border), m


def _centre(box):
  return np.array([box.x + box.w / 2, box.y + box.h / 2])


def _corr(a, b):
  return float(np.corrcoef(a.astype(float).ravel(), b.astype(float).ravel())[0, 1])


@pytest.fixture(scope="module")
def upright(astronaut_gray):
  faces = detection.find_faces(astronaut_gray)
  assert len(faces) == 1 and faces[0].angle == 0.0 and faces[0].flags == []
  # Upright, find_faces crops exactly as before: the detector's box, as crop_face cuts it.
  box = detection.detect_faces(astronaut_gray)[0]
  assert faces[0].box == box
  np.testing.assert_array_equal(faces[0].crop, detection.crop_face(astronaut_gray, box))
  return faces[0]


@pytest.mark.parametrize("degrees", [20, -30, 45])
def test_a_turned_face_is_found_where_it_is_and_levelled(astronaut_gray, upright, degrees):
  photo, m = _turned(astronaut_gray, degrees)
  faces = detection.find_faces(photo)
  assert len(faces) == 1
  found = faces[0]
  expected = m @ np.append(_centre(upright.box), 1.0)  # where the upright face went
  assert np.hypot(*(np.array(found.centre) - expected)) < 0.2 * upright.box.w
  assert abs(found.angle + degrees) < 8  # levelled: turned back by about what the photo was turned
  assert ("tilted" in found.flags) == (abs(found.angle) > detection.TILTED_DEGREES)
  # The levelled crop looks like the upright one, and more so than the same square not levelled.
  unlevelled = detection._levelled_square(photo, found.centre, found.side, 0.0, detection.INPUT_SIZE)
  assert _corr(found.crop, upright.crop) > 0.75 > _corr(unlevelled, upright.crop)


def test_levelling_makes_the_shipped_classifier_agree_with_the_upright_photo(astronaut_gray, upright):
  from facemusic_jax.face import classify
  classifier = classify.load_classifier()
  photo, _ = _turned(astronaut_gray, -30)
  found = detection.find_faces(photo)[0]
  unlevelled = detection._levelled_square(photo, found.centre, found.side, 0.0, detection.INPUT_SIZE)
  p_up, p_level, p_raw = classify.classify_faces(classifier, np.stack([upright.crop, found.crop, unlevelled]))
  assert p_level.argmax() == p_up.argmax()
  assert np.abs(p_level - p_up).sum() < np.abs(p_raw - p_up).sum()


def _group_photo(gray):
  """Her head upright, a 0.7x copy of it, and a copy turned 30 degrees, on a plain wall; the face centres
  where they were pasted (computed from the pasting, not by detection)."""
  head = gray[40:300, 140:310]
  centre_in_head = _centre(detection.detect_faces(gray)[0]) - (140, 40)
  canvas = np.full((600, 1000), 200, np.uint8)
  canvas[20:280, 40:210] = head
  small = cv2.resize(head, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
  canvas[300:300 + small.shape[0], 60:60 + small.shape[1]] = small
  turned, m = _turned(head, 30, fill=200)
  canvas[100:100 + turned.shape[0], 500:500 + turned.shape[1]] = turned
  return canvas, [centre_in_head + (40, 20), (m @ np.append(centre_in_head, 1.0)) + (500, 100),
                  0.7 * centre_in_head + (60, 300)]


def test_every_face_of_a_group_photo_largest_first(astronaut_gray):
  canvas, centres = _group_photo(astronaut_gray)
  faces = detection.find_faces(canvas)
  assert len(faces) == 3
  assert [f.box.area for f in faces] == sorted((f.box.area for f in faces), reverse=True)
  for f in faces:  # each found face is one of the pasted ones, each pasted one found once
    distances = [np.hypot(*(np.array(f.centre) - c)) for c in centres]
    assert min(distances) < 0.2 * f.box.w
  assert sorted(int(np.argmin([np.hypot(*(np.array(f.centre) - c)) for c in centres])) for f in faces) == [0, 1, 2]
  turned = min(faces, key=lambda f: np.hypot(*(np.array(f.centre) - centres[1])))
  assert abs(turned.angle + 30) < 8 and "tilted" in turned.flags


def test_small_and_blurred_faces_say_so(astronaut_gray):
  assert detection.find_faces(astronaut_gray)[0].flags == []
  blurred = detection.find_faces(cv2.GaussianBlur(astronaut_gray, (0, 0), 3))
  assert blurred and "blurred" in blurred[0].flags and "small" not in blurred[0].flags
  small = detection.find_faces(cv2.resize(astronaut_gray, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA))
  assert small and small[0].box.w < detection.SMALL_FACE_PIXELS and "small" in small[0].flags
