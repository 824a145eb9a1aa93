"""Views a detector sees of a frame (tiles, whole-frame passes) and the shipped dynamic YuNet."""
from __future__ import annotations

import numpy as np
import pytest

from vlm_node.anonymize.faces import DEFAULT_FILES, YuNet
from vlm_node.anonymize.multiscale import (GLOBAL_SIDE, RawDetections, View, added_where_new,
                                           plan_views, run_view)
from vlm_node.anonymize.runtime import Runtime, shipped_model
from vlm_node.geometry import Box
from vlm_node.tools.render.scenes import make_road_scene


def test_dynamic_model_sees_the_whole_frame_once_plus_a_global_pass():
    views = plan_views(1920, 1080, None, 1280 / 1920, 64, True)
    assert views == [View(0, 0, 1920, 1080, 1280 / 1920),
                     View(0, 0, 1920, 1080, GLOBAL_SIDE / 1920)]
    assert plan_views(1920, 1080, None, 1280 / 1920, 64, False) == views[:1]


def test_no_global_pass_when_the_working_view_is_already_small():
    # a 640x480 frame at native scale is already at the global pass's size
    assert plan_views(640, 480, None, 1.0, 64, True) == [View(0, 0, 640, 480, 1.0)]


@pytest.mark.parametrize("size", [(1920, 1080), (1280, 720), (4000, 3000)])
def test_fixed_input_tiles_cover_the_frame_with_the_requested_overlap(size):
    w, h = size
    scale = 1280 / max(w, h)
    views = plan_views(w, h, (640, 640), scale, 64, True)
    tiles, whole = views[:-1], views[-1]
    assert (whole.x0, whole.y0, whole.w, whole.h) == (0, 0, w, h)
    assert whole.scale == pytest.approx(min(640 / w, 640 / h))
    covered = np.zeros((h, w), bool)
    for v in tiles:
        # a tile is at most the model input, in frame pixels
        assert v.w * scale <= 640 + 1 and v.h * scale <= 640 + 1
        covered[v.y0:v.y0 + v.h, v.x0:v.x0 + v.w] = True
    assert covered.all()
    xs = sorted({v.x0 for v in tiles})
    widths = {v.x0: v.w for v in tiles}
    for a, b in zip(xs, xs[1:]):
        assert a + widths[a] - b >= round(64 / scale) - 1  # neighbours share the overlap


def test_shipped_yunet_takes_any_frame_size_and_finds_the_face():
    model = YuNet(shipped_model(DEFAULT_FILES["yunet"]), Runtime())
    assert model.input_size is None  # declared dynamic: no tiling needed
    scene = make_road_scene(0, (1280, 720))
    (face,) = scene.faces
    for view in plan_views(1280, 720, None, 1.0, 0, True):
        found = run_view(model, scene.image, view, 0.6)
        boxes = [Box(b[0], b[1], b[2] - b[0], b[3] - b[1]) for b in found.boxes]
        assert max(b.iou(face) for b in boxes) > 0.5, view


def _raw(boxes, k=5):
    b = np.array(boxes, np.float32).reshape(-1, 4)
    return RawDetections(b, np.linspace(0.9, 0.5, len(b)).astype(np.float32),
                         np.zeros((len(b), k, 2), np.float32))


def test_a_second_pass_only_adds_faces_where_the_first_found_none():
    first = _raw([[0, 0, 20, 20], [50, 50, 70, 70]])
    second = _raw([[1, 1, 21, 21],  # the first face again (IoU 0.82): not added
                   [60, 50, 80, 70],  # half over the second (IoU 0.33): not added
                   [65, 50, 85, 70],  # a quarter over it (IoU 0.14): a new face
                   [200, 10, 230, 40]])  # nowhere near: a new face
    out = added_where_new(first, second, 0.3)
    np.testing.assert_array_equal(out.boxes[:2], first.boxes)  # kept as they were, first
    assert out.boxes[2:].tolist() == [[65, 50, 85, 70], [200, 10, 230, 40]]
    assert out.points.shape == (4, 5, 2)
    assert len(added_where_new(first, _raw([]), 0.3)) == 2
    assert added_where_new(_raw([]), second, 0.3).boxes.tolist() == second.boxes.tolist()
