"""The person detector (FastestDet) and the head backstop: the shipped model loads and is the
recorded file, people are found on a real photo, and a head the face detector does not find
(a man seen from behind) is redacted because of the backstop, and only then."""
import dataclasses
import hashlib

import numpy as np
import pytest

from helpers import read_bgr, shared
from vlm_node.anonymize import Anonymizer, AnonymizerConfig
from vlm_node.anonymize.persons import (COCO_CLASSES, FASTESTDET_FILE, FastestDet, ObjectDetection,
                                        ObjectDetector, faceless, head_box, head_regions)
from vlm_node.anonymize.redact import redaction_region, region_mask
from vlm_node.anonymize.runtime import shipped_model
from vlm_node.geometry import Box

# WIDER FACE training photo: a woman facing the camera shakes hands with a man seen from behind
# and the side (only her face is labelled). His head, read off the photo by eye:
BACK_PHOTO = "faces_wider_train/1_Handshaking_Handshaking_1_174.jpg"
HIS_HEAD = Box(730, 10, 150, 140)
HER_FACE = Box(404, 82, 92, 128)  # the label


def test_shipped_model_is_the_recorded_file():
    path = shipped_model(FASTESTDET_FILE)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == "31cb14c017fce347cb4c846ec62fdf00d76bb3beecdf4be21e7116ac67feb880"
    model = FastestDet()
    assert model.input_size == (352, 352)
    assert len(COCO_CLASSES) == 80 and COCO_CLASSES[0] == "person"


@pytest.fixture(scope="module")
def back_photo():
    return read_bgr(shared(BACK_PHOTO))


def test_detector_finds_both_people(back_photo):
    found = ObjectDetector().detect(back_photo, 0.5, classes=("person",))
    assert all(isinstance(o, ObjectDetection) and o.label == "person" and o.class_id == 0
               for o in found)
    # measured: the man at 0.84, the woman at 0.8x; each person box holds the head
    him = [o for o in found if HIS_HEAD.coverage_by(o.box) > 0.9]
    her = [o for o in found if HER_FACE.coverage_by(o.box) > 0.9]
    assert him and max(o.score for o in him) >= 0.7
    assert her


def test_tiles_find_at_least_what_one_pass_finds(back_photo):
    one = ObjectDetector(tiles=1).detect(back_photo, 0.5, classes=("person",))
    tiled = ObjectDetector(tiles=2).detect(back_photo, 0.5, classes=("person",))
    for o in one:
        assert max(o.box.iou(t.box) for t in tiled) > 0.5


def _coverage(image, dets, margin, box):
    h, w = image.shape[:2]
    mask = region_mask(w, h, [redaction_region(d, margin, w, h) for d in dets])
    rows, cols = box.int_slices(w, h)
    return float(mask[rows, cols].mean())


def test_backstop_redacts_a_head_seen_from_behind(back_photo):
    assert AnonymizerConfig().head_backstop  # on by default
    # at the default centerface threshold (0.12) the back of his head is boxed as a face too
    # (score 0.21 at the default 960 px budget); at 0.3 it is not, which is the case the
    # backstop is for
    config = AnonymizerConfig(plates=False, centerface_score_threshold=0.3)
    with_backstop = Anonymizer(config)
    dets = with_backstop.detect(back_photo.copy())
    heads = [d for d in dets if d.detector == "head_backstop"]
    assert len(heads) == 1  # the woman's face was found, so her head is not added
    assert _coverage(back_photo, dets, config.margin, HIS_HEAD) >= 0.8
    assert _coverage(back_photo, dets, config.margin, HER_FACE) >= 0.9
    without = Anonymizer(dataclasses.replace(config, head_backstop=False))
    plain = without.detect(back_photo.copy())
    assert _coverage(back_photo, plain, config.margin, HIS_HEAD) < 0.2  # the face stage misses him
    assert not any(d.detector == "head_backstop" for d in plain)


def test_head_box_geometry():
    person = Box(100, 50, 100, 300)
    head = head_box(person)
    assert (head.x, head.y, head.w, head.h) == pytest.approx((120, 50, 60, 60))
    # a wide box (arms out, cut off): the head is at most half its height
    squat = head_box(Box(0, 0, 200, 100))
    assert (squat.w, squat.h) == pytest.approx((120, 50))


def test_faceless_only_people_without_a_face_in_their_upper_half():
    people = [Box(0, 0, 100, 300), Box(200, 0, 100, 300), Box(400, 0, 100, 300)]
    faces = [Box(30, 10, 40, 40),  # head of person 0
             Box(230, 200, 40, 40)]  # lower half of person 1 (a face on a shirt, a child)
    assert faceless(people, faces) == [1, 2]
    assert head_regions(people, faces) == [head_box(people[1]), head_box(people[2])]
    assert faceless([], faces) == [] and faceless(people, []) == [0, 1, 2]


def test_backstop_can_be_switched_off_and_rebuilds():
    anon = Anonymizer(AnonymizerConfig(plates=False, head_backstop=False))
    assert [s.kind for s in anon.detectors] == ["face"]
    anon.reconfigure(dataclasses.replace(anon.config, head_backstop=True))
    assert [s.kind for s in anon.detectors] == ["face", "person"]
    blank = np.zeros((240, 320, 3), np.uint8)
    assert anon.detect(blank) == []


def test_thorough_option_file_layers_on_the_defaults():
    from helpers import REPO
    from vlm_node.config import resolve

    thorough = resolve([REPO / "config" / "anonymizer_thorough.yaml"]).anonymizer
    default = resolve([]).anonymizer
    assert (thorough.centerface_score_threshold, thorough.person_score_threshold) == (0.1, 0.5)
    assert (default.centerface_score_threshold, default.person_score_threshold) == (0.12, 0.7)
    assert thorough.face_detectors == default.face_detectors == ("centerface",)
    assert thorough.margin == default.margin == 0.1
    assert (thorough.face_dark_pass_below, default.face_dark_pass_below) == (90.0, 0.0)
