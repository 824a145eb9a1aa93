"""Priority-road signs found by their yellow field (`diamond_proposals`): a diamond-shaped region
of yellow to orange paint inside a light border becomes a box twice its width, which may only
be read as priority road. Real GTSDB photos whose priority-road signs the colour regions
missed are read, and shapes or borders that are no such sign give no box."""
import dataclasses

import cv2
import numpy as np
import pytest

from helpers import read_bgr, shared, sign_classes_near
from vlm_node.analysis.diamond_proposals import (FIELD_GROWTH, LIGHT, LOOSE_YELLOW,
                                                 border_light, find_diamonds)
from vlm_node.analysis.gtsrb import DIAMOND_IDS, GTSRB_CLASSES
from vlm_node.analysis.ocr_backend import OcrBackend
from vlm_node.analysis.ocr_config import OcrConfig
from vlm_node.analysis.sign_candidates import ProposalConfig, find_proposals, proposal_masks
from vlm_node.geometry import Box


def _diamond(centre, half):
    cx, cy = centre
    return np.array([(cx, cy - half), (cx + half, cy), (cx, cy + half), (cx - half, cy)],
                    np.int32)


def _priority_sign(img, centre, half, field=(0, 170, 235), border=(235, 235, 235)):
    """A priority-road sign: a light diamond, a dark edge, a field about half its width."""
    outer = _diamond(centre, half)
    cv2.fillConvexPoly(img, outer, border)
    cv2.polylines(img, [outer], True, (40, 40, 40), 1)
    inner = _diamond(centre, round(0.5 * half))
    cv2.fillConvexPoly(img, inner, field)
    cv2.polylines(img, [inner], True, (40, 40, 40), 1)
    return Box(centre[0] - half, centre[1] - half, 2 * half + 1, 2 * half + 1)


def _boxes(img):
    masks = proposal_masks(img, ProposalConfig())
    return find_diamonds(masks, 12, 0.6 * min(img.shape[:2])), masks


def test_a_priority_sign_in_shade_is_proposed_at_its_own_size():
    """Bright yellow and dusk orange fields (hue ~13 after white balance, value ~100: under the
    yellow mask's hue 15 and value 90) both give a box on the whole sign, not on the field."""
    img = np.full((200, 300, 3), (120, 110, 100), np.uint8)
    bright = _priority_sign(img, (80, 100), 30)
    dusk = _priority_sign(img, (220, 100), 24, field=(10, 55, 110), border=(150, 150, 150))
    found, masks = _boxes(img)
    assert len(found) == 2
    for sign in (bright, dusk):
        assert max(b.iou(sign) for b in found) > 0.8
    # the dusk field is no region of the ordinary yellow mask at all
    ys, xs = dusk.int_slices(300, 200)
    assert np.count_nonzero(masks["yellow"][ys, xs]) == 0
    assert np.count_nonzero(masks[LOOSE_YELLOW][ys, xs]) > 0


def test_fields_that_are_no_priority_sign_give_no_box():
    """A yellow diamond on a blue flag (no light border), a yellow disc with a white border
    (a disc fills 0.79 of its box, a diamond 0.5), an upright yellow square and a speck."""
    img = np.full((200, 400, 3), (120, 110, 100), np.uint8)
    cv2.rectangle(img, (20, 40), (140, 160), (160, 60, 20), -1)  # blue flag
    flag_dot = _diamond((80, 100), 14)
    cv2.fillConvexPoly(img, flag_dot, (0, 200, 240))
    cv2.circle(img, (200, 100), 30, (235, 235, 235), -1)
    cv2.circle(img, (200, 100), 15, (0, 200, 240), -1)
    cv2.rectangle(img, (270, 70), (330, 130), (235, 235, 235), -1)
    cv2.rectangle(img, (285, 85), (315, 115), (0, 200, 240), -1)
    _priority_sign(img, (370, 100), 4)  # grown to 9 px: under the 12 px floor
    found, masks = _boxes(img)
    assert found == []
    # the flag's diamond is shaped right but has no border: the border test is what drops it
    assert border_light(masks[LIGHT], 80, 100, 14) < 0.2


def test_the_loose_masks_are_never_proposed_as_regions():
    """The loose yellow and light masks serve the diamond pass only: the colour proposals of a
    real road photo are the same with or without them (an orange wall or a white panel is not
    proposed through them)."""
    bgr = read_bgr(shared("signs_real_dev") / "gtsdb_00192.jpg")
    cfg = ProposalConfig()
    masks = proposal_masks(bgr, cfg)
    assert np.count_nonzero(masks[LOOSE_YELLOW]) and np.count_nonzero(masks[LIGHT])
    without = {k: m for k, m in masks.items() if k not in (LOOSE_YELLOW, LIGHT)}
    assert find_proposals(bgr, cfg, masks) == find_proposals(bgr, cfg, without)


def test_priority_road_is_the_only_diamond():
    assert {GTSRB_CLASSES[i].name for i in DIAMOND_IDS} == {"priority_road"}
    assert GTSRB_CLASSES[12].is_diamond
    assert not any(c.is_diamond for c in GTSRB_CLASSES if c.class_id != 12)
    assert FIELD_GROWTH == pytest.approx(2.0)


@pytest.fixture(scope="module")
def readers():
    out = {}
    for name, on in (("default", True), ("off", False)):
        # (the full search: the learned boxes added beside it read some of these either way)
        out[name] = OcrBackend(dataclasses.replace(OcrConfig(), diamond_proposals=on,
                                                   learned_adds=False))
        out[name].load()
    yield out
    for backend in out.values():
        backend.close()


@pytest.mark.parametrize("file,box", [
    ("gtsdb_00262.jpg", Box(625, 22, 63, 62)),   # the field's own box read as background
    ("gtsdb_00192.jpg", Box(397, 157, 46, 47)),  # an orange field in the shade of trees
    ("gtsdb_00049.jpg", Box(591, 212, 26, 27)),
])
def test_missed_priority_road_signs_are_read_through_their_grown_field(readers, file, box):
    assert sign_classes_near(readers["default"], file, box) == ["priority_road"]
    assert sign_classes_near(readers["off"], file, box) == []


def test_a_grown_field_is_read_as_priority_road_only(readers, monkeypatch):
    """With only the diamonds' boxes left, the sign is published as priority road; the same
    boxes answered as another class without paint of its own (the end of 80) are dropped: a
    grown field is evidence of a priority-road sign and of nothing else. The verifier is
    taken out so that only the shape rule can drop them."""
    backend = readers["default"]
    bgr = read_bgr(shared("signs_real_dev") / "gtsdb_00262.jpg")
    found = backend._search(bgr)
    assert found.diamonds, "the sign's field gives a diamond box"
    stripped = dataclasses.replace(found, candidates=[], proposals=[], squares=[], circles=[],
                                   triangles=[])
    monkeypatch.setattr(backend, "_start_search", lambda _bgr: (stripped, list))
    monkeypatch.setattr(backend, "_verifier", None)
    monkeypatch.setattr(backend, "config", dataclasses.replace(backend.config,
                                                               stacked_proposals=False))
    assert {r.sign_class for r in backend.read_signs(bgr)} == {"priority_road"}
    real = backend._classifier.classify_refined
    end_80 = GTSRB_CLASSES[6]
    assert end_80.paint == "" and not end_80.is_diamond

    def as_end_80(rgb, boxes, n, **kw):
        moved, results = real(rgb, boxes, n, **kw)
        return moved, [dataclasses.replace(r, label=end_80.name, gtsrb=end_80) for r in results]

    monkeypatch.setattr(backend._classifier, "classify_refined", as_end_80)
    assert backend.read_signs(bgr) == []
