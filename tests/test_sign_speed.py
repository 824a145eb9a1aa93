"""The sign stage's shortcuts give the same answers as the one-at-a-time code they replace:
crops cut for all boxes at once, answers for all rows at once, proposal regions sized all at
once, and distances measured only where the regions are."""
import cv2
import numpy as np
import pytest

from helpers import SHARED_DATA, read_bgr
from vlm_node.analysis.gtsrb import BACKGROUND, CLASSIFIER_LABELS, gtsrb_class
from vlm_node.analysis.sign_candidates import (BLUE_RIM, PROPOSAL_PAINTS, ProposalConfig,
                                               _distance_window, _region_boxes,
                                               _stacked_squares, box_nms, find_proposals,
                                               proposal_masks)
from vlm_node.analysis.sign_classifier import (_SPEED_INDEX, INPUT_SIZE, SPEED_FAMILY,
                                               SignClass, SignClassifier, crop_box, cut,
                                               prepare_crops, resize_to_input, speed_mass)
from vlm_node.geometry import Box


@pytest.fixture(scope="module")
def clf():
    return SignClassifier()


def _one_by_one(rgb, boxes):
    return np.stack([resize_to_input(cut(rgb, crop_box(b))).transpose(2, 0, 1)
                     for b in boxes]).astype(np.float32)


def _random_boxes(rng, width, height, n):
    boxes = []
    for _ in range(n):
        side = float(rng.choice([rng.uniform(3, 30), rng.uniform(30, 200)]))
        x = rng.uniform(-0.5 * side, width - 0.5 * side)
        y = rng.uniform(-0.5 * side, height - 0.5 * side)
        boxes.append(Box(x, y, side * rng.uniform(0.6, 1.6), side))
    return boxes


def test_batched_crops_are_the_crops_cut_one_by_one():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    boxes = _random_boxes(rng, 320, 240, 300)
    # exact halves (round half to even), the frame's edges and corners, boxes wholly outside
    # and a box too small to round to one pixel
    boxes += [Box(10.5, 20.5, 30.0, 30.0), Box(-2.5, -2.5, 25.0, 25.0), Box(300.0, 220.0, 40.0,
              40.0), Box(0.0, 0.0, 320.0, 240.0), Box(-60.0, 10.0, 20.0, 20.0),
              Box(400.0, 300.0, 15.0, 15.0), Box(100.2, 100.2, 0.1, 0.1),
              Box(32.0 / 1.2, 10.0, 32.0 / 1.2, 32.0 / 1.2)]
    batch = prepare_crops(rgb, boxes)
    assert batch.shape == (len(boxes), 3, INPUT_SIZE, INPUT_SIZE)
    assert batch.dtype == np.float32
    np.testing.assert_array_equal(batch, _one_by_one(rgb, boxes))


def test_batched_crops_of_no_boxes_are_an_empty_batch():
    batch = prepare_crops(np.zeros((10, 10, 3), np.uint8), [])
    assert batch.shape == (0, 3, INPUT_SIZE, INPUT_SIZE)


def _reference_answer(clf, p):
    """The one-row answer as it was computed before `results` batched it."""
    order = np.argsort(p)[::-1]
    best, second = int(order[0]), int(order[1])
    prob = float(p[best])
    label, runner = CLASSIFIER_LABELS[best], CLASSIFIER_LABELS[second]
    speed = float(p[_SPEED_INDEX].sum())
    if label != BACKGROUND and prob >= clf.info.min_probability:
        return SignClass(label, prob, gtsrb_class(best), runner, speed)
    if speed >= clf.info.min_probability:
        return SignClass(SPEED_FAMILY, speed, None, label, speed)
    return SignClass(BACKGROUND, prob if label == BACKGROUND else 1.0 - prob, None,
                     label if label != BACKGROUND else runner, speed)


def _random_probabilities(rng, n):
    logits = rng.normal(0, 3, (n, len(CLASSIFIER_LABELS))).astype(np.float32)
    # rows leaning to the speed family as a whole: every branch of the answer occurs
    logits[: n // 3, _SPEED_INDEX] += 4.0
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def test_batched_answers_are_the_one_row_answers_bit_for_bit(clf):
    probs = _random_probabilities(np.random.default_rng(5), 3000)
    got = clf.results(probs)
    want = [_reference_answer(clf, p) for p in probs]
    assert got == want
    assert [clf.result(p) for p in probs[:50]] == want[:50]
    kinds = {r.label if r.label in (BACKGROUND, SPEED_FAMILY) else "class" for r in got}
    assert kinds == {BACKGROUND, SPEED_FAMILY, "class"}


def test_speed_mass_has_the_bits_of_each_row_summed_alone():
    probs = _random_probabilities(np.random.default_rng(7), 5000)
    want = np.array([p[_SPEED_INDEX].sum() for p in probs], np.float32)
    got = speed_mass(probs)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    assert speed_mass(np.zeros((0, len(CLASSIFIER_LABELS)), np.float32)).shape == (0,)


def test_classify_answers_as_the_one_by_one_path(clf):
    rng = np.random.default_rng(11)
    rgb = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    boxes = _random_boxes(rng, 300, 200, 40)
    want = [_reference_answer(clf, p) for p in clf.probabilities(_one_by_one(rgb, boxes))]
    assert clf.classify(rgb, boxes) == want
    assert clf.results(np.zeros((0, len(CLASSIFIER_LABELS)), np.float32)) == []


def _reference_region_boxes(contours, hierarchy, colour, cfg, largest):
    """`find_proposals`' boxes for one colour as its loop over regions made them, one by one."""
    out = []
    for cnt, links in zip(contours, hierarchy):
        x, y, w, h = cv2.boundingRect(cnt)
        hole = links[3] >= 0
        if hole:
            if max(w, h) < 4:
                continue
            grow = 0.22 * max(w, h) + 1
            box = Box(x - grow, y - grow, w + 2 * grow, h + 2 * grow)
        else:
            if cv2.contourArea(cnt) < 0.12 * w * h:
                continue
            box = Box(float(x), float(y), float(w), float(h))
            if colour == "blue" and max(w, h) < cfg.min_size_px:
                # a small blue face grown by the white rim around it: the whole sign
                rim = BLUE_RIM * max(w, h)
                box = Box(x - rim, y - rim, w + 2 * rim, h + 2 * rim)
                if box.w <= largest and box.h <= largest and max(box.w, box.h) >= \
                        cfg.min_size_px and not (box.w > 1.8 * box.h or box.h > 1.8 * box.w):
                    out.append(box)
                continue
        if not hole and cfg.split_stacked and (colour != "blue" or cfg.split_stacked_blue):
            out += _stacked_squares(box, cfg.min_size_px, largest)
        if not cfg.min_size_px <= max(box.w, box.h) <= largest:
            continue
        if box.w > 1.8 * box.h or box.h > 1.8 * box.w:
            continue
        out.append(box)
    return out


def _blobs(rng, size=(480, 640), n=400):
    """A mask of rectangles, discs, rings and strokes of every size, some at the edges."""
    mask = np.zeros(size, np.uint8)
    for _ in range(n):
        x, y = int(rng.integers(-20, size[1])), int(rng.integers(-20, size[0]))
        a, b = int(rng.integers(1, 90)), int(rng.integers(1, 90))
        kind = rng.integers(4)
        if kind == 0:
            cv2.rectangle(mask, (x, y), (x + a, y + b), 255, -1)
        elif kind == 1:
            cv2.circle(mask, (x, y), a // 2, 255, -1)
        elif kind == 2:
            cv2.circle(mask, (x, y), a // 2 + 2, 255, max(1, a // 8))
        else:
            cv2.line(mask, (x, y), (x + a, y + b), 255, 1)
    return mask


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("colour", ["red", "blue"])
def test_region_boxes_are_the_boxes_made_one_by_one(seed, colour):
    mask = _blobs(np.random.default_rng(seed))
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    for cfg in (ProposalConfig(), ProposalConfig(split_stacked_blue=True, min_size_px=20)):
        want = _reference_region_boxes(contours, hierarchy[0], colour, cfg, 288.0)
        got = _region_boxes(contours, hierarchy[0][:, 3] >= 0, colour, cfg, 288.0)
        assert got == want
        assert len(want) > 20


def test_proposals_of_a_real_photo_are_unchanged_in_number_and_place():
    # gtsdb_00367 (development half): the stacked 120 and no-overtaking pair of
    # test_stacked_signs_get_a_box_each, among ~1000 regions
    bgr = read_bgr(SHARED_DATA / "signs_real_dev" / "gtsdb_00367.jpg")
    cfg = ProposalConfig(bright_discs=False)
    masks = proposal_masks(bgr, cfg)
    want = []
    for colour in PROPOSAL_PAINTS:
        mask = masks[colour]
        closed = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
        contours, hierarchy = cv2.findContours(closed, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        largest = 0.6 * min(bgr.shape[:2])
        want += _reference_region_boxes(contours, hierarchy[0], colour, cfg, largest)
    keep = box_nms(want, [b.area for b in want], 0.6)
    want = sorted((want[i] for i in keep), key=lambda b: b.area)
    assert len(want) > 20
    assert find_proposals(bgr, cfg, masks) == want


def test_distances_in_the_window_are_the_full_frames_bit_for_bit():
    """`_inscribed_discs` measures distances only in `_distance_window`: the same float32
    values as over the whole frame, for regions anywhere (edges and corners too), in frames of
    any width, and the same peaks."""
    kernel = np.ones((5, 5))
    for seed in range(150):
        rng = np.random.default_rng(seed)
        height, width = int(rng.integers(60, 600)), int(rng.integers(60, 1100))
        mask = np.zeros((height, width), np.uint8)
        for _ in range(int(rng.integers(1, 7))):
            cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
            cv2.circle(mask, (cx, cy), int(rng.integers(4, 50)), 255, -1)
            cv2.rectangle(mask, (cx, cy), (cx + int(rng.integers(3, 80)),
                                           cy + int(rng.integers(3, 30))), 255, -1)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        rows, cols = _distance_window(contours, mask.shape)
        full = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
        part = cv2.distanceTransform(mask[rows, cols], cv2.DIST_L2, 3)
        np.testing.assert_array_equal(part, full[rows, cols])
        outside = full.copy()
        outside[rows, cols] = 0
        assert not outside.any()
        np.testing.assert_array_equal(part >= cv2.dilate(part, kernel),
                                      (full >= cv2.dilate(full, kernel))[rows, cols])
        assert cols.start % 16 == 0 and (cols.stop % 16 == 0 or cols.stop == width)
