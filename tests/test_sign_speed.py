"""The sign stage's batched shortcuts give the same answers as the one-at-a-time code they
replace: crops cut for all boxes at once, answers for all rows at once, and the search's masks
and regions computed more cheaply."""
import numpy as np
import pytest

from vlm_node.analysis.gtsrb import BACKGROUND, CLASSIFIER_LABELS, gtsrb_class
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
