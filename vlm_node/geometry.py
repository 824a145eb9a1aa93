"""Axis-aligned pixel boxes: the one box type shared by detectors, redaction, signs and labels.

Boxes are `[x, y, w, h]` in pixels of the image as stored, the convention of the label files
(`labels.json`) and of `sensor_msgs/RegionOfInterest`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True, slots=True)
class Box:
    """A box `[x, y, w, h]` in pixels (float, so that scaling and expansion do not round)."""

    x: float
    y: float
    w: float
    h: float

    @classmethod
    def from_xyxy(cls, x1: float, y1: float, x2: float, y2: float) -> "Box":
        return cls(float(x1), float(y1), float(x2 - x1), float(y2 - y1))

    @classmethod
    def from_list(cls, values: Sequence[float]) -> "Box":
        if len(values) != 4:
            raise ValueError(f"a box is [x, y, w, h]; got {list(values)!r}")
        return cls(*(float(v) for v in values))

    @property
    def x2(self) -> float:
        return self.x + self.w

    @property
    def y2(self) -> float:
        return self.y + self.h

    @property
    def area(self) -> float:
        return max(0.0, self.w) * max(0.0, self.h)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2.0, self.y + self.h / 2.0)

    def to_list(self, ndigits: int | None = 1) -> list[float]:
        vals = [self.x, self.y, self.w, self.h]
        return [round(v, ndigits) for v in vals] if ndigits is not None else vals

    def scaled(self, sx: float, sy: float | None = None) -> "Box":
        sy = sx if sy is None else sy
        return Box(self.x * sx, self.y * sy, self.w * sx, self.h * sy)

    def shifted(self, dx: float, dy: float) -> "Box":
        return Box(self.x + dx, self.y + dy, self.w, self.h)

    def expanded(self, margin: float) -> "Box":
        """Grow by `margin` times width/height on every side (0.2 -> 40 % larger per axis)."""
        mx, my = self.w * margin, self.h * margin
        return Box(self.x - mx, self.y - my, self.w + 2 * mx, self.h + 2 * my)

    def clipped(self, width: int, height: int) -> "Box":
        x1, y1 = min(max(self.x, 0.0), width), min(max(self.y, 0.0), height)
        x2, y2 = min(max(self.x2, 0.0), width), min(max(self.y2, 0.0), height)
        return Box(x1, y1, x2 - x1, y2 - y1)

    def int_slices(self, width: int, height: int) -> tuple[slice, slice]:
        """Row and column slices covering the box (rounded outwards), clipped to the image."""
        x1 = max(0, int(self.x)) if self.x >= 0 else 0
        y1 = max(0, int(self.y)) if self.y >= 0 else 0
        x2 = min(width, int(-(-self.x2 // 1)))
        y2 = min(height, int(-(-self.y2 // 1)))
        return slice(y1, max(y1, y2)), slice(x1, max(x1, x2))

    def intersection(self, other: "Box") -> float:
        iw = min(self.x2, other.x2) - max(self.x, other.x)
        ih = min(self.y2, other.y2) - max(self.y, other.y)
        return iw * ih if iw > 0 and ih > 0 else 0.0

    def iou(self, other: "Box") -> float:
        inter = self.intersection(other)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def coverage_by(self, other: "Box") -> float:
        """Fraction of this box's area inside `other` (1.0 = fully covered)."""
        return self.intersection(other) / self.area if self.area > 0 else 0.0


def window(box: Box, grow: float, width: int, height: int) -> tuple[slice, slice]:
    """Row and column slices of the square `grow` times the box's longer side about its
    centre, clipped to a `width` x `height` image: where to look again around a box that only
    roughly places a sign (the learned proposer's)."""
    side = grow * max(box.w, box.h)
    cx, cy = box.center
    return Box(cx - side / 2, cy - side / 2, side, side).int_slices(width, height)


def nms(boxes: Sequence[Box], scores: Sequence[float], iou_threshold: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression, highest score first."""
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    keep: list[int] = []
    for i in order:
        if all(boxes[i].iou(boxes[k]) <= iou_threshold for k in keep):
            keep.append(i)
    return keep


def box_array(boxes: Sequence[Box]) -> np.ndarray:
    """Boxes as an N x 4 float64 array of x, y, w, h (the layout `iou_matrix` takes)."""
    return np.array([(b.x, b.y, b.w, b.h) for b in boxes], dtype=np.float64).reshape(-1, 4)


def contour_rects(contours: Sequence[np.ndarray]) -> np.ndarray:
    """The bounding rectangles of OpenCV contours as an N x 4 int64 array of x, y, w, h, the
    values `cv2.boundingRect` gives each one. Why at once: a thresholded 1080p search image
    has thousands of contours, nearly all specks a size check drops (the triangle pass's
    busiest development frame: 5,000 contours, 5.6 ms one call each against 1.7 ms at once;
    0.7 ms of its ~8 ms a frame on average)."""
    n = len(contours)
    if n == 0:
        return np.empty((0, 4), np.int64)
    lengths = np.fromiter(map(len, contours), np.int64, n)
    points = np.concatenate(contours).reshape(-1, 2).astype(np.int64, copy=False)
    starts = np.zeros(n, np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    low = np.minimum.reduceat(points, starts, axis=0)
    high = np.maximum.reduceat(points, starts, axis=0)
    return np.concatenate([low, high - low + 1], axis=1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (rows of x y w h, `box_array`) with every box of `b`, computed
    with the same float operations in the same order as `Box.iou`, so the values are
    bit-identical: callers that replace a Python loop of `Box.iou` with it keep their
    decisions exactly (tracking's association, the sign search's overlap filters)."""
    ax, ay, aw, ah = (a[:, i, None] for i in range(4))
    bx, by, bw, bh = (b[None, :, i] for i in range(4))
    iw = np.minimum(ax + aw, bx + bw) - np.maximum(ax, bx)
    ih = np.minimum(ay + ah, by + bh) - np.maximum(ay, by)
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_a = np.maximum(0.0, aw) * np.maximum(0.0, ah)
    area_b = np.maximum(0.0, bw) * np.maximum(0.0, bh)
    union = (area_a + area_b) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
