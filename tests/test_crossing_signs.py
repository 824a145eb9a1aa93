"""Blue-square pedestrian-crossing signs (analysis/crossing_signs.py), a design GTSRB has no
class for: found on real photos, published with source "shape", and not taken from the other
signs of the GTSDB development photos, a text banner's "A" or a plain blue square."""
import json

import cv2
import numpy as np
import pytest

from helpers import read_bgr, shared
from vlm_node import vocab
from vlm_node.analysis.crossing_signs import MIN_BLUE_SHARE, crossing_score
from vlm_node.analysis.ocr_backend import CROSSING_CONFIDENCE, OcrBackend, OcrConfig
from vlm_node.geometry import Box

# German crossing signs (Zeichen 350) on GTSDB development photos: GTSDB does not label them
# (not a GTSRB class), so their boxes are written here: a 32 px one and a 101 px one
GERMAN = [("gtsdb_00001.jpg", Box(621, 190, 32, 32)), ("gtsdb_00262.jpg", Box(618, 83, 101, 95))]


@pytest.fixture(scope="module")
def backend():
    with OcrBackend() as b:
        yield b


@pytest.mark.parametrize("file, sign", GERMAN)
def test_a_crossing_sign_is_read_by_its_shape(backend, file, sign):
    bgr = read_bgr(shared("signs_real_dev") / file)
    assert crossing_score(bgr, sign) >= MIN_BLUE_SHARE
    hits = [r for r in backend.read_signs(bgr) if r.box is not None and r.box.iou(sign) >= 0.5]
    assert [(r.sign_class, r.source, r.value) for r in hits] == [
        ("pedestrian_crossing", "shape", None)]
    assert hits[0].confidence == CROSSING_CONFIDENCE
    assert "shape" in vocab.SOURCES and "pedestrian_crossing" in vocab.SIGN_CLASSES
    with OcrBackend(OcrConfig(crossing_signs=False)) as off:
        assert not [r for r in off.read_signs(bgr) if r.box is not None
                    and r.box.iou(sign) >= 0.5 and r.sign_class == "pedestrian_crossing"]


def test_no_other_labelled_sign_is_taken_for_a_crossing():
    labels = json.loads(shared("signs_real_dev/labels.json").read_text())
    tested = 0
    for entry in labels["images"]:
        if "gtsdb_" not in entry["file"]:
            continue
        bgr = read_bgr(shared(entry["file"]))
        for sign in entry["signs"]:
            tested += 1
            assert crossing_score(bgr, Box.from_list(sign["box"])) < MIN_BLUE_SHARE, sign
    assert tested == 801  # GTSDB 00000-00599: blue round and square classes among them


def test_a_letter_a_on_a_navy_banner_is_no_crossing():
    """GTSDB 00096: the "A" of "EINGANG" on a navy banner passes the triangle tests; the
    walker (dark, not blue, inside the triangle) is what it lacks."""
    bgr = read_bgr(shared("signs_real_dev") / "gtsdb_00096.jpg")
    assert crossing_score(bgr, Box(207, 278, 20, 20)) == 0.0


def test_plain_and_tiny_boxes_are_no_crossing():
    img = np.full((120, 120, 3), (170, 90, 20), np.uint8)  # a blue square, nothing on it
    assert crossing_score(img, Box(10, 10, 100, 100)) == 0.0
    pts = np.array([[60, 25], [25, 90], [95, 90]], np.int32)
    cv2.fillConvexPoly(img, pts, (255, 255, 255))  # a white triangle, no walker
    assert crossing_score(img, Box(10, 10, 100, 100)) == 0.0
    cv2.rectangle(img, (55, 50), (65, 85), (20, 20, 20), -1)  # a dark figure in it
    assert crossing_score(img, Box(10, 10, 100, 100)) >= MIN_BLUE_SHARE
    flipped = np.ascontiguousarray(img[::-1])  # apex down: a yield sign's shape, not this
    assert crossing_score(flipped, Box(10, 10, 100, 100)) == 0.0
    assert crossing_score(img, Box(10, 10, 12, 12)) == 0.0  # too small to test
