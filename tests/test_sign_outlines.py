"""Signs the colour regions used to miss: triangular outlines as proposals, round outlines read
as any round class, the tops of tall regions read as any class, small blue faces grown by their
white rim, the other signs on a post read through the box of the one that was read. Real GTSDB
photos whose signs were missed are read, shapes limit what an outline may be, and each setting
switches its part off."""
import dataclasses

import cv2
import numpy as np
import pytest

from helpers import read_bgr, shared, sign_classes_near
from vlm_node.analysis.gtsrb import GTSRB_CLASSES, ROUND_IDS, TRIANGLE_IDS
from vlm_node.analysis.ocr_backend import OcrBackend
from vlm_node.analysis.ocr_config import OcrConfig
from vlm_node.analysis.stacked_proposals import stacked_boxes
from vlm_node.analysis.triangle_proposals import find_triangles
from vlm_node.geometry import Box


def _canvas(grey=200):
    return np.full((200, 300, 3), grey, np.uint8)


def _triangle(img, centre, side, angle_deg=0.0, rim=(90, 90, 110), thickness=3, down=False):
    cx, cy = centre
    r = side / np.sqrt(3)
    start = 90 if down else -90
    pts = np.array([[cx + r * np.cos(np.radians(start + angle_deg + k * 120)),
                     cy + r * np.sin(np.radians(start + angle_deg + k * 120))]
                    for k in range(3)], np.int32)
    cv2.fillPoly(img, [pts], (235, 235, 235))
    cv2.polylines(img, [pts], True, rim, thickness)
    return Box.from_xyxy(*pts.min(axis=0), *pts.max(axis=0))


def test_a_grey_rimmed_triangle_is_proposed_either_way_up():
    """A warning sign (point up) and a yield sign (point down) whose rims kept no colour, on an
    overcast grey: both outlines come back, boxed on the sign."""
    img = _canvas()
    up = _triangle(img, (80, 100), 40)
    down = _triangle(img, (220, 100), 40, down=True)
    found = find_triangles(img, min_side=12)
    for sign in (up, down):
        assert max(b.iou(sign) for b in found) > 0.6


def test_circles_tilted_and_tiny_triangles_are_not_proposed():
    img = _canvas()
    cv2.circle(img, (60, 100), 22, (90, 90, 110), 3)  # a round sign
    _triangle(img, (160, 100), 40, angle_deg=45)  # no side near horizontal
    _triangle(img, (260, 100), 8, thickness=1)  # under min_side
    assert find_triangles(img, min_side=12) == []


def test_triangle_ids_are_the_triangular_signs():
    names = {GTSRB_CLASSES[i].name for i in TRIANGLE_IDS}
    assert {"yield", "general_caution", "roadworks", "priority_next_intersection",
            "animals"} <= names
    assert not names & {"stop", "no_entry", "priority_road", "speed_limit_50", "keep_right"}
    assert GTSRB_CLASSES[13].is_triangle and not GTSRB_CLASSES[14].is_triangle
    rounds = {GTSRB_CLASSES[i].name for i in ROUND_IDS}
    assert {"speed_limit_30", "no_entry", "keep_right", "roundabout", "no_overtaking",
            "end_all_limits"} <= rounds
    assert not rounds & names and not rounds & {"stop", "priority_road"}
    assert len(ROUND_IDS | TRIANGLE_IDS) == len(GTSRB_CLASSES) - 2  # the diamond, the octagon


@pytest.fixture(scope="module")
def readers():
    def make(**changes):
        # the full search's rules, each against the same search without it: the learned boxes
        # added beside it (`learned_adds`) would read some of these signs either way
        backend = OcrBackend(dataclasses.replace(OcrConfig(), learned_adds=False, **changes))
        backend.load()
        return backend

    # the contrasts also leave out the stacked proposals, which find some of the same signs
    # through the sign above or below them
    out = {"default": make(), "no_stacked": make(stacked_proposals=False),
           "no_triangles": make(triangle_proposals=False, stacked_proposals=False),
           "neither": make(triangle_proposals=False, square_tops_any_class=False,
                           stacked_proposals=False),
           "speed_circles": make(circle_round_classes=False, stacked_proposals=False)}
    yield out
    for backend in out.values():
        backend.close()


@pytest.mark.parametrize("file,box,sign_class", [
    ("gtsdb_00444.jpg", Box(227, 317, 30, 27), "curve_right"),   # backlit, grey rim
    ("gtsdb_00459.jpg", Box(526, 309, 22, 20), "roadworks"),
    ("gtsdb_00443.jpg", Box(490, 330, 19, 17), "general_caution"),  # above a speed limit
])
def test_backlit_warning_signs_are_read_through_their_outline(readers, file, box, sign_class):
    assert sign_classes_near(readers["default"], file, box) == [sign_class]
    assert sign_class not in sign_classes_near(readers["no_triangles"], file, box)


def test_a_triangle_box_does_not_displace_a_colour_regions_reading(readers):
    """gtsdb_00499: the triangle pass finds the yield sign's inner edge, which the classifier
    reads more surely than the colour region's box but the verifier then rejects; the
    triangle's box ranks last among boxes of one sign, so the region's reading stays."""
    yield_sign = Box(605, 298, 29, 26)
    assert sign_classes_near(readers["default"], "gtsdb_00499.jpg", yield_sign) == ["yield"]


def test_the_top_of_a_tall_region_may_be_any_sign(readers):
    """gtsdb_00426: a roadworks sign's face runs on into the white "800 m" panel below it; the
    region's box reads as background, its top square as roadworks."""
    box = Box(646, 235, 73, 67)
    assert sign_classes_near(readers["no_triangles"], "gtsdb_00426.jpg", box) == ["roadworks"]
    assert sign_classes_near(readers["neither"], "gtsdb_00426.jpg", box) == []


@pytest.mark.parametrize("file,box,sign_class", [
    ("gtsdb_00482.jpg", Box(156, 317, 22, 26), "no_entry"),
    ("gtsdb_00497.jpg", Box(235, 367, 21, 24), "keep_right"),
    ("gtsdb_00517.jpg", Box(163, 253, 45, 45), "no_overtaking_trucks"),  # backlit
])
def test_round_outlines_are_read_as_round_signs(readers, file, box, sign_class):
    """Dusk and backlit round signs no colour region boxed: the Hough outline reads them at
    >= 0.99, and they are published now that outlines may be any round class, not only speed
    limits."""
    assert sign_classes_near(readers["default"], file, box) == [sign_class]
    assert sign_classes_near(readers["speed_circles"], file, box) == []


@pytest.mark.parametrize("file,box", [("gtsdb_00487.jpg", Box(375, 364, 12, 12)),
                                      ("gtsdb_00490.jpg", Box(386, 358, 15, 15))])
def test_a_small_blue_face_grows_by_its_white_rim(readers, monkeypatch, file, box):
    """12-15 px keep-right signs whose blue faces are 10-11 px, under the proposals' 12 px
    floor: grown by the white rim (BLUE_RIM) the face is the sign's box, and it is read."""
    import vlm_node.analysis.sign_candidates as candidates

    assert sign_classes_near(readers["default"], file, box) == ["keep_right"]
    monkeypatch.setattr(candidates, "BLUE_RIM", 0.0)
    assert sign_classes_near(readers["default"], file, box) == []


def test_stacked_boxes_are_above_and_below_the_sign_on_its_axis(monkeypatch):
    import vlm_node.analysis.stacked_proposals as stacked

    sign = Box(100, 100, 20, 20)
    boxes = stacked_boxes([sign], 300, 200)
    assert len(boxes) == 4 * len(stacked.SCALES)
    assert all(b.x + b.w / 2 == 110 for b in boxes)  # one column
    monkeypatch.setattr(stacked, "SCALES", (1.0,))
    assert [(b.x, b.y, b.w, b.h) for b in stacked_boxes([sign], 300, 200)] == [
        (100, 80, 20, 20), (100, 120, 20, 20), (100, 77, 20, 20), (100, 123, 20, 20)]
    monkeypatch.setattr(stacked, "SCALES", (1.25,))
    above, below = stacked_boxes([sign], 300, 200)[:2]
    assert above.w == above.h == 25 and above.y2 == sign.y  # touching, on top
    assert below.y == sign.y2


def test_stacked_boxes_stay_inside_the_frame_and_off_known_signs(monkeypatch):
    import vlm_node.analysis.stacked_proposals as stacked

    from vlm_node.analysis.ocr_backend import _not_known
    from vlm_node.geometry import box_array

    monkeypatch.setattr(stacked, "SCALES", (1.0,))
    top = Box(10, 5, 20, 20)  # no room above it
    below_known = Box(10, 25, 20, 20)  # the sign under it was already read
    # as the reader filters them: boxes on a sign already read are that sign again
    boxes = _not_known(stacked_boxes([top], 300, 200), box_array([top, below_known]),
                       stacked.KNOWN_IOU)
    assert boxes == []
    bottom = Box(10, 170, 20, 20)  # no room below it
    assert stacked_boxes([bottom], 300, 200) == [Box(10, 150, 20, 20), Box(10, 147, 20, 20)]


@pytest.mark.parametrize("file,box,reading", [
    ("gtsdb_00443.jpg", Box(493, 346, 14, 13), ("speed_limit", 120.0)),  # under a warning
    ("gtsdb_00380.jpg", Box(331, 336, 16, 14), ("no_overtaking_trucks", None)),  # dusk
    ("gtsdb_00405.jpg", Box(754, 248, 31, 31), ("priority_road", None)),  # above a 70
    ("gtsdb_00071.jpg", Box(477, 285, 17, 16), ("speed_limit", 30.0)),
])
def test_the_other_signs_on_a_post_aresign_classes_near(readers, file, box, reading):
    """Real GTSDB photos whose second sign on a post no colour region boxed well: read
    through the box of the sign above or below it, and not without the setting."""
    bgr = read_bgr(shared("signs_real_dev") / file)

    def near(backend):
        return [(r.sign_class, r.value) for r in backend.read_signs(bgr)
                if r.box is not None and r.box.iou(box) >= 0.3]

    assert near(readers["default"]) == [reading]
    assert near(readers["no_stacked"]) == []


def test_no_stacked_neighbour_is_read_on_a_person(readers):
    """The neighbour boxes follow the rule of the round outlines: nothing on the anonymizer's
    people is classified (a badge or a face under a hat is no sign)."""
    bgr = read_bgr(shared("signs_real_dev") / "gtsdb_00443.jpg")
    sign = Box(493, 346, 14, 13)
    person = Box(480, 340, 40, 90)  # as if a pedestrian stood where the 120 hangs

    def near(people):
        return [r.sign_class for r in readers["default"].read_signs(bgr, (), people)
                if r.box is not None and r.box.iou(sign) >= 0.3]

    assert near(()) == ["speed_limit"]
    assert near((person,)) == []
