"""Round outlines proposed by the gradient Hough transform (analysis/circle_proposals.py)."""
from __future__ import annotations

import cv2
import numpy as np

from vlm_node.analysis.circle_proposals import find_circles
from vlm_node.geometry import Box


def test_a_dark_ring_is_proposed_with_its_rim_inside_the_box():
    img = np.full((200, 300, 3), 90, np.uint8)
    cv2.circle(img, (150, 100), 20, (40, 40, 50), 4)  # a dusk rim: dark, hardly red
    cv2.circle(img, (150, 100), 17, (120, 120, 120), -1)
    boxes = find_circles(img, 5, 40)
    ring = Box(128, 78, 44, 44)
    assert boxes and max(b.iou(ring) for b in boxes) >= 0.7
    best = max(boxes, key=ring.iou)
    assert best.x <= 130 and best.x2 >= 170  # the whole rim is inside


def test_nothing_round_nothing_proposed_and_radius_limits_hold():
    flat = np.full((120, 160, 3), 128, np.uint8)
    cv2.rectangle(flat, (20, 20), (80, 80), (30, 30, 30), -1)
    assert find_circles(flat, 5, 40) == []
    img = np.full((200, 300, 3), 90, np.uint8)
    cv2.circle(img, (150, 100), 20, (40, 40, 50), 4)
    assert find_circles(img, 30, 60) == []  # a 20 px ring is below the range
    assert find_circles(img, 10, 5) == []  # an empty range


def test_a_big_ring_is_found_by_the_shrunk_pass_only_when_asked():
    # a sign passed close by: radius 150 px, far beyond the road-scene range (40 px here)
    img = np.full((600, 800, 3), 170, np.uint8)
    cv2.circle(img, (400, 300), 150, (70, 60, 110), 10)  # a thin maroon rim against the light
    cv2.circle(img, (400, 300), 144, (235, 235, 235), -1)
    ring = Box(250, 150, 300, 300)
    assert not any(b.iou(ring) > 0.5 for b in find_circles(img, 5, 40))
    big = [b for b in find_circles(img, 5, 40, 200) if b.iou(ring) > 0.5]
    assert big and max(b.iou(ring) for b in big) >= 0.75
