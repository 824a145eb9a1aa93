"""CarryOver's numpy association gives exactly what the plain greedy pass over sorted
(iou, det, track) tuples gave: same pairs, same tie order, same tracks and carried boxes."""
from __future__ import annotations

import copy
import random

import numpy as np
import pytest

from vlm_node.anonymize.tracking import CarryOver, Track
from vlm_node.geometry import Box, box_array, iou_matrix
from vlm_node.results import Detection

KINDS = ("face", "plate", "person")


def reference_associate(carry: CarryOver, detections: list[Detection]) -> dict[int, int]:
    """The association as first written: every same-kind pair in Python, predicted box per
    pair, sorted best first, taken greedily until a pair falls under the threshold."""
    pairs = sorted(((det.box.iou(carry.predicted(t) if t.misses else t.box), di, ti)
                    for di, det in enumerate(detections)
                    for ti, t in enumerate(carry.tracks) if t.kind == det.kind),
                   reverse=True)
    det_track: dict[int, int] = {}
    used: set[int] = set()
    for iou, di, ti in pairs:
        if iou < carry.iou_threshold:
            break
        if di in det_track or ti in used:
            continue
        det_track[di] = ti
        used.add(ti)
    return det_track


class ReferenceCarryOver(CarryOver):
    def _associate(self, detections):
        return reference_associate(self, detections)


def _box(rng: random.Random, width: int, height: int, grid: bool) -> Box:
    """Boxes on a coarse grid repeat exactly (ties); some reach outside the frame or are
    empty, as clipped detector boxes and predictions can be."""
    if grid:
        x, y = rng.randrange(-20, width, 20), rng.randrange(-20, height, 20)
        w, h = rng.choice((0, 20, 40, 60)), rng.choice((0, 20, 40, 60))
        return Box(float(x), float(y), float(w), float(h))
    x, y = rng.uniform(-30, width), rng.uniform(-30, height)
    return Box(x, y, rng.uniform(0, 80), rng.uniform(0, 80))


def _detections(rng: random.Random, n: int, width: int, height: int) -> list[Detection]:
    grid = rng.random() < 0.5
    kinds = KINDS[:rng.randint(1, 3)]
    out = []
    for _ in range(n):
        marks = tuple((rng.uniform(0, width), rng.uniform(0, height)) for _ in range(5)) \
            if rng.random() < 0.5 else None
        out.append(Detection(rng.choice(kinds), _box(rng, width, height, grid),
                             rng.random(), rng.choice(("scrfd", "yunet")), marks))
    return out


def _jitter(rng: random.Random, dets: list[Detection], width: int,
            height: int) -> list[Detection]:
    """Next frame: most objects move a little, some vanish (tracks miss), some appear, some
    are duplicated (identical boxes tie)."""
    out = []
    for d in dets:
        if rng.random() < 0.25:
            continue
        b = d.box
        dx, dy = rng.choice((0.0, rng.uniform(-15, 15))), rng.choice((0.0, rng.uniform(-15, 15)))
        s = rng.choice((1.0, rng.uniform(0.7, 1.3)))
        out.append(Detection(d.kind, Box(b.x + dx, b.y + dy, b.w * s, b.h * s), rng.random(),
                             d.detector, d.landmarks))
        if rng.random() < 0.1:
            out.append(out[-1])
    out += _detections(rng, rng.randint(0, 4), width, height)
    rng.shuffle(out)
    return out


def _state(carry: CarryOver) -> list[tuple]:
    return [(t.id, t.kind, t.box, t.score, t.detector, t.velocity, t.misses, t.landmarks)
            for t in carry.tracks]


@pytest.mark.parametrize("seed", range(60))
def test_update_sequences_match_reference(seed):
    rng = random.Random(seed)
    width, height = rng.choice(((320, 240), (640, 360), (1920, 1080)))
    params = dict(frames=rng.randint(0, 4), iou_threshold=rng.choice((0.0, 0.2, 0.3, 0.5)),
                  growth=rng.choice((0.0, 0.1, 0.25)),
                  hold=rng.choice(({}, {"plate": 5}, {"face": 2, "plate": 7})))
    new, ref = CarryOver(**copy.deepcopy(params)), ReferenceCarryOver(**copy.deepcopy(params))
    dets = _detections(rng, rng.randint(0, 40), width, height)
    first = len(dets)
    matched = lost = 0
    for frame in range(12):
        keep = frozenset(k for k in KINDS if rng.random() < 0.3)
        if frame == 8 and rng.random() < 0.3:
            width, height = height, width  # camera reconfigured: all tracks dropped
        assert new._associate(dets) == reference_associate(new, dets)
        matched += len(new._associate(dets))
        out_new = new.update(list(dets), width, height, keep)
        out_ref = ref.update(list(dets), width, height, keep)
        assert out_new == out_ref
        assert _state(new) == _state(ref)
        lost += sum(t.misses > 0 for t in new.tracks)
        dets = _jitter(rng, dets, width, height) if rng.random() < 0.9 else []
    if first >= 5 and max(params["frames"], *params["hold"].values(), 0) > 0:
        assert matched and lost  # the sequence exercised matching and lost tracks


@pytest.mark.parametrize("seed", range(200))
def test_associate_matches_reference_with_lost_tracks(seed):
    """Tracks in every state (lost for 0-3 frames with a velocity, all kinds) against dense
    random detections: identical pairs."""
    rng = random.Random(1000 + seed)
    width, height = 640, 480
    carry = CarryOver(frames=3, iou_threshold=rng.choice((0.0, 0.1, 0.2, 0.4)),
                      growth=rng.choice((0.0, 0.1)))
    carry._size = (width, height)
    grid = rng.random() < 0.5
    for i in range(rng.randint(0, 30)):
        carry.tracks.append(Track(i + 1, rng.choice(KINDS), _box(rng, width, height, grid),
                                  0.9, "scrfd", (rng.uniform(-10, 10), rng.uniform(-10, 10)),
                                  rng.choice((0, 0, 1, 2, 3))))
    dets = _detections(rng, rng.randint(0, 30), width, height)
    if carry.tracks and rng.random() < 0.5:  # some detections exactly on tracks' boxes
        dets += [Detection(t.kind, t.box, 0.5) for t in rng.sample(carry.tracks, 3)
                 if rng.random() < 0.7] if len(carry.tracks) >= 3 else []
    assert carry._associate(dets) == reference_associate(carry, dets)


def test_ties_follow_the_reverse_tuple_order():
    """Two detections on one box and two tracks on it: the pair with the higher detection
    index and then the higher track index is taken first, as sorted((iou, di, ti),
    reverse=True) did."""
    carry = CarryOver()
    carry._size = (100, 100)
    b = Box(10.0, 10.0, 20.0, 20.0)
    carry.tracks = [Track(1, "face", b, 0.9, "x"), Track(2, "face", b, 0.9, "x")]
    dets = [Detection("face", b, 0.9), Detection("face", b, 0.9)]
    assert carry._associate(dets) == {1: 1, 0: 0}
    assert carry._associate(dets[:1]) == {0: 1}


def test_kinds_never_pair_and_threshold_applies():
    carry = CarryOver(iou_threshold=0.5)
    carry._size = (100, 100)
    carry.tracks = [Track(1, "plate", Box(0.0, 0.0, 10.0, 10.0), 0.9, "x"),
                    Track(2, "face", Box(50.0, 50.0, 10.0, 10.0), 0.9, "x")]
    dets = [Detection("face", Box(0.0, 0.0, 10.0, 10.0), 0.9),   # on the plate: no pair
            Detection("face", Box(52.0, 50.0, 10.0, 10.0), 0.9),  # IoU 0.667 with face
            Detection("face", Box(57.0, 50.0, 10.0, 10.0), 0.9)]  # IoU 0.176: under 0.5
    assert carry._associate(dets) == {1: 1}
    assert carry._associate([]) == {}


def test_iou_matrix_is_bit_identical_to_box_iou():
    rng = random.Random(7)
    a = [_box(rng, 200, 200, rng.random() < 0.5) for _ in range(40)]
    b = [_box(rng, 200, 200, rng.random() < 0.5) for _ in range(35)]
    m = iou_matrix(box_array(a), box_array(b))
    assert m.shape == (40, 35)
    assert m.tolist() == [[x.iou(y) for y in b] for x in a]
    assert 0 < np.count_nonzero(m) < m.size
    assert iou_matrix(box_array([]), box_array(b)).shape == (0, 35)
