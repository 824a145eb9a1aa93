"""Pedestrian-crossing signs of the blue-square design: a white triangle, apex up, with a
walker on it, on a blue square (Vienna Convention; Germany's sign 350, Russia's 5.19, most of
Europe). GTSRB has no such class (its "pedestrians" is the red warning triangle), so the
classifier calls them background: on the Kaggle development photos road0-road437 none of 92
was read. Their design is a shape test's easy case, so the reader tests the blue boxes the
search proposes for it (`OcrBackend`, setting `crossing_signs`).
"""
from __future__ import annotations

import cv2
import numpy as np

from vlm_node.geometry import Box

# The test looks at the box resized to this many pixels a side.
_SIDE = 64
# Blue paint: OpenCV hue 95-130 (0-180), saturated, not black.
_BLUE_HUE = (95, 130)
_BLUE_MIN_SAT = 80
_BLUE_MIN_VAL = 40
# White: unsaturated and near the crop's brightest (a sign in shade is grey, not white).
_WHITE_MAX_SAT = 90
_WHITE_MIN_VAL = 90
_WHITE_OF_BRIGHTEST = 0.7
# The white figure's convex hull: at least this share of the square (a blue sign's arrow or
# letter is thinner), filling its enclosing triangle this much.
_MIN_HULL = 0.12
_MIN_TRIANGLE_FILL = 0.85
# Apex up: the base's corners level within this share of the side, the apex this share above
# them and this close to their middle.
_LEVEL = 0.2
_APEX_HEIGHT = 0.25
_APEX_CENTRED = 0.2
# The walker and the zebra stripes: at least this share of the triangle's hull darker than
# this share of the crop's brightest value, and not blue.
_MIN_WALKER = 0.06
_DARK_OF_BRIGHTEST = 0.5
# What is not the white triangle is mostly blue.
MIN_BLUE_SHARE = 0.4
# Boxes smaller than this (side, px) are not tested: the triangle is a few pixels.
MIN_SIDE_PX = 16


def crossing_score(bgr: np.ndarray, box: Box) -> float:
    """The share of blue paint around a white apex-up triangle inside `box` of the BGR frame,
    or 0.0 when there is no such triangle; >= `MIN_BLUE_SHARE` reads as a crossing sign.
    Why a triangle's hull: the walker and the zebra stripes cut the white into pieces, but the
    largest white region inside the square (not touching its edge) still spans the triangle.
    The walker must show inside the triangle: a white "A" on a blue text sign passes every
    other test."""
    height, width = bgr.shape[:2]
    ys, xs = box.int_slices(width, height)
    crop = bgr[ys, xs]
    if min(crop.shape[:2]) < MIN_SIDE_PX:
        return 0.0
    crop = cv2.resize(crop, (_SIDE, _SIDE), interpolation=(
        cv2.INTER_AREA if crop.shape[0] > _SIDE else cv2.INTER_CUBIC))
    hue, sat, val = cv2.split(cv2.cvtColor(crop, cv2.COLOR_BGR2HSV))
    blue_hued = (hue >= _BLUE_HUE[0]) & (hue <= _BLUE_HUE[1]) & (sat >= _BLUE_MIN_SAT)
    blue = blue_hued & (val >= _BLUE_MIN_VAL)
    brightest = float(np.percentile(val, 95))
    white = ((sat < _WHITE_MAX_SAT) & (val >= max(_WHITE_MIN_VAL, _WHITE_OF_BRIGHTEST * brightest))
             & ~blue).astype(np.uint8)
    figure = _inner_region(white)
    if figure is None:
        return 0.0
    contours, _ = cv2.findContours(figure, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(max(contours, key=cv2.contourArea))
    hull_area = cv2.contourArea(hull)
    if hull_area < _MIN_HULL * _SIDE * _SIDE:
        return 0.0
    triangle_area, triangle = cv2.minEnclosingTriangle(hull)
    if hull_area < _MIN_TRIANGLE_FILL * triangle_area:
        return 0.0
    corners = cv2.approxPolyDP(hull, 0.08 * cv2.arcLength(hull, True), True).reshape(-1, 2)
    if not _apex_up(corners.astype(np.float32) if len(corners) == 3
                    else triangle.reshape(3, 2)):
        return 0.0
    # the walker: dark, not of blue hue, inside the triangle (a white letter "A" on a blue or
    # navy text sign holds only blue there, a pale sign's digit only grey-blue)
    inside = np.zeros_like(figure)
    cv2.fillConvexPoly(inside, hull, 1)
    dark = (val < _DARK_OF_BRIGHTEST * brightest) & ~blue_hued
    if dark[inside > 0].mean() < _MIN_WALKER:
        return 0.0
    return float(blue[figure == 0].mean())


def _inner_region(mask: np.ndarray) -> np.ndarray | None:
    """The largest 8-connected region of `mask` that does not touch the crop's edge (a sign's
    white rim or the sky beside it does), as a 0/1 mask; None when there is none."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    size = mask.shape[0]
    best, best_area = 0, 0
    for i in range(1, count):
        x, y, w, h, area = stats[i]
        if x > 0 and y > 0 and x + w < size and y + h < size and area > best_area:
            best, best_area = i, area
    return (labels == best).astype(np.uint8) if best else None


def _apex_up(corners: np.ndarray) -> bool:
    """Whether three corners make a triangle standing on a level base, apex up and centred."""
    top = int(np.argmin(corners[:, 1]))
    apex = corners[top]
    base = np.delete(corners, top, axis=0)
    return bool(abs(base[0, 1] - base[1, 1]) < _LEVEL * _SIDE
                and apex[1] < base[:, 1].min() - _APEX_HEIGHT * _SIDE
                and abs(apex[0] - base[:, 0].mean()) < _APEX_CENTRED * _SIDE)
