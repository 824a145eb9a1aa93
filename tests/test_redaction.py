"""Redaction modes: blur that sharpening cannot undo, pixelate blocks, fill, synthetic plates,
elliptical face masks, and identity removal measured with dlib's face embedding."""
import cv2
import numpy as np
import pytest

from helpers import read_bgr, shared
from vlm_node.anonymize import identity
from vlm_node.anonymize.redact import blurred, pixelated, redact, region_mask
from vlm_node.anonymize.synthetic import random_text, render_plate
from vlm_node.geometry import Box

MODES = ("blur", "pixelate", "fill", "synthetic")


@pytest.fixture(scope="module")
def portrait():
    img = read_bgr(shared("faces/face_recognition_examples/obama.jpg"))
    det = cv2.FaceDetectorYN.create(
        str(shared("face_models/yunet/yunet_s_640_640.onnx")), "", (img.shape[1], img.shape[0]),
        0.8, 0.3, 10)
    _, faces = det.detect(img)
    x, y, w, h = faces[0][:4]
    return img, Box(float(x), float(y), float(w), float(h))


def _highpass_correlation(a: np.ndarray, b: np.ndarray) -> float:
    la = cv2.Laplacian(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).astype(np.float32), cv2.CV_32F)
    lb = cv2.Laplacian(cv2.cvtColor(b, cv2.COLOR_BGR2GRAY).astype(np.float32), cv2.CV_32F)
    la, lb = la - la.mean(), lb - lb.mean()
    return float((la * lb).sum() / (np.linalg.norm(la) * np.linalg.norm(lb) + 1e-9))


def test_blur_cannot_be_recovered_by_sharpening(portrait):
    img, box = portrait
    rows, cols = box.int_slices(img.shape[1], img.shape[0])
    face = img[rows, cols].copy()
    out = blurred(face)
    sharpened = {
        "unsharp": cv2.addWeighted(out, 5.0, cv2.GaussianBlur(out, (0, 0), 3), -4.0, 0),
        "laplacian": np.clip(out.astype(np.float32) - 3 * cv2.Laplacian(
            out.astype(np.float32), cv2.CV_32F), 0, 255).astype(np.uint8)}
    assert _highpass_correlation(face, face) > 0.99
    for name, s in sharpened.items():
        # the detail a sharpening filter brings back is not the face's detail
        assert abs(_highpass_correlation(face, s)) < 0.1, name
    # and there is almost no detail left to bring back: Laplacian energy down > 100x
    energy = lambda x: cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()  # noqa
    assert energy(out) < energy(face) / 100


def test_blur_has_no_block_edges():
    rng = np.random.default_rng(0)
    roi = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    out = blurred(roi).astype(int)
    assert np.abs(np.diff(out, axis=1)).max() <= 12 and np.abs(np.diff(out, axis=0)).max() <= 12


def test_pixelate_block_size_scales_with_the_region():
    rng = np.random.default_rng(1)
    roi = rng.integers(0, 256, (40, 80, 3), dtype=np.uint8)
    out = pixelated(roi, blocks=8)  # long side 80 -> blocks of 10 px
    assert out.shape == roi.shape
    for by in range(0, 40, 10):
        for bx in range(0, 80, 10):
            block = out[by:by + 10, bx:bx + 10]
            assert (block == block[0, 0]).all()
            assert np.allclose(block[0, 0], roi[by:by + 10, bx:bx + 10].reshape(-1, 3).mean(0),
                               atol=1)
    assert not (out[0, 0] == out[0, 10]).all() or not (out[0, 0] == out[10, 0]).all()


def test_fill_and_ellipse_mask():
    img = np.full((100, 100, 3), 200, np.uint8)
    redact(img, Box(20, 20, 60, 40), ellipse=True, mode="fill", fill_value=10)
    assert (img[40, 50] == 10).all()  # centre filled
    assert (img[21, 21] == 200).all()  # box corner outside the ellipse untouched
    assert (img[10, 50] == 200).all()  # outside the box untouched
    mask = region_mask(100, 100, [(Box(20, 20, 60, 40), True)])
    assert mask[40, 50] and not mask[21, 21]
    assert (img[mask] == 10).all() and (img[~mask] == 200).all()


def test_synthetic_plate_differs_and_stays_in_the_box():
    img = read_bgr(shared("plates/images/Cars0.jpg"))
    original = img.copy()
    box = Box(188, 194, 160, 74)
    redact(img, box, ellipse=False, mode="synthetic", seed=7)
    rows, cols = box.int_slices(416, 416)
    before, after = original[rows, cols].astype(int), img[rows, cols].astype(int)
    assert np.abs(after - before).mean() > 25
    outside = np.ones((416, 416), bool)
    outside[rows, cols] = False
    assert np.array_equal(img[outside], original[outside])
    gray = cv2.cvtColor(img[rows, cols], cv2.COLOR_BGR2GRAY)
    # a plate: mostly bright background (as bright as the real plate's) with dark glyphs
    assert np.median(gray) > 120 and (gray < np.median(gray) - 60).mean() > 0.05
    again = original.copy()
    redact(again, box, ellipse=False, mode="synthetic", seed=7)
    assert np.array_equal(again, img)  # stable per track seed: no flicker in video


def test_synthetic_text_is_random_and_plate_shaped():
    rng = np.random.default_rng(3)
    one = {random_text(rng, False)[0] for _ in range(50)}
    assert len(one) == 50
    assert all(4 <= sum(c.isalnum() for c in t) <= 7 for t in one)
    assert len(random_text(rng, True)) == 2
    yellow = np.zeros((30, 100, 3), np.uint8)
    yellow[:] = (20, 200, 240)
    plate = render_plate(yellow, rng)
    assert plate.shape == yellow.shape and plate[2:-2, 2:-2, 2].mean() > plate[..., 0].mean()


def test_faces_in_synthetic_mode_are_blurred(portrait):
    img, box = portrait
    a, b = img.copy(), img.copy()
    redact(a, box, ellipse=True, mode="synthetic")
    redact(b, box, ellipse=True, mode="blur")
    assert np.array_equal(a, b)


@pytest.fixture(scope="module")
def dlib_ready():
    reason = identity.available()
    if reason:
        pytest.skip(f"identity test needs dlib: {reason}")


@pytest.mark.parametrize("mode", MODES)
def test_redacted_face_loses_its_identity(dlib_ready, portrait, mode):
    img, box = portrait
    out = img.copy()
    redact(out, box.expanded(0.25).clipped(img.shape[1], img.shape[0]), ellipse=True, mode=mode)
    same = identity.identity_distance(img, img, box)
    assert same is not None and same.distance is not None and same.distance < 0.05
    result = identity.identity_distance(img, out, box)
    assert result is not None
    assert result.removed  # either no face found any more, or > 0.6 from the original
    assert result.forced_distance > identity.SAME_PERSON
