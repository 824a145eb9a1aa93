import cv2
import numpy as np
import pytest

from vlm_node.geometry import Box, contour_rects, nms


def test_iou_and_coverage():
    a, b = Box(0, 0, 10, 10), Box(5, 0, 10, 10)
    assert a.iou(b) == pytest.approx(50 / 150)
    assert a.coverage_by(Box(0, 0, 5, 10)) == pytest.approx(0.5)
    assert a.iou(Box(20, 20, 5, 5)) == 0.0
    assert Box(0, 0, 0, 0).iou(Box(0, 0, 0, 0)) == 0.0


def test_expand_clip_slices():
    b = Box(10, 20, 10, 20).expanded(0.5)
    assert b == Box(5, 10, 20, 40)
    assert Box(-5, -5, 20, 20).clipped(10, 8) == Box(0, 0, 10, 8)
    rows, cols = Box(1.5, 2.5, 3.2, 1.1).int_slices(100, 100)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (2, 4, 1, 5)
    rows, cols = Box(90, 90, 50, 50).int_slices(100, 95)
    assert (rows.stop, cols.stop) == (95, 100)


def test_nms():
    boxes = [Box(0, 0, 10, 10), Box(1, 1, 10, 10), Box(50, 50, 5, 5)]
    assert nms(boxes, [0.5, 0.9, 0.3], 0.3) == [1, 2]
    with pytest.raises(ValueError):
        Box.from_list([1, 2, 3])


def test_contour_rects_equal_opencvs_bounding_rects():
    """All contours of a speckled threshold (specks, holes, one-point contours) at once give
    exactly cv2.boundingRect's rectangles, in order; none gives an empty 0 x 4 array."""
    rng = np.random.default_rng(3)
    image = (rng.random((120, 160)) > 0.6).astype(np.uint8) * 255
    cv2.rectangle(image, (20, 30), (90, 100), 255, 3)  # a ring with a hole
    contours, _ = cv2.findContours(image, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    assert len(contours) > 100
    assert min(len(c) for c in contours) == 1
    expected = np.array([cv2.boundingRect(c) for c in contours])
    got = contour_rects(contours)
    assert got.dtype == np.int64 and got.shape == (len(contours), 4)
    np.testing.assert_array_equal(got, expected)
    assert contour_rects([]).shape == (0, 4)
