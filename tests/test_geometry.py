import pytest

from vlm_node.geometry import Box, nms


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
