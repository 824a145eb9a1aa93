"""Running a detector model over a frame at a bounded pixel budget: scaling, tiling, merging.

A 1080p camera frame holds faces of 15 px next to faces of 400 px. A detector fed the whole
frame shrunk to its input size loses the small ones; fed the frame at full resolution it costs
four times more. So each detector gets a *pixel budget* (`max_side`: the long side of the frame
as the model sees it; small frames are enlarged up to `max_upscale`), models with a fixed input
size see that scaled frame as overlapping tiles, and an optional *global pass* shows them the
whole frame once more at their input size so that objects larger than a tile are seen whole.
Boxes from all views are mapped back to frame pixels and merged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from vlm_node.geometry import iou_matrix


@dataclass(frozen=True, slots=True)
class View:
    """A part of the frame (`x0, y0, w, h` in frame pixels) seen by the model at `scale`
    (model pixels per frame pixel)."""

    x0: int
    y0: int
    w: int
    h: int
    scale: float


@dataclass(slots=True)
class RawDetections:
    """Model output in some pixel frame: boxes (N, 4) x1 y1 x2 y2, scores (N,), and points
    (N, K, 2) that travel with each box (face landmarks, text-quad corners; K may be 0)."""

    boxes: np.ndarray
    scores: np.ndarray
    points: np.ndarray

    @classmethod
    def empty(cls, k: int = 0) -> "RawDetections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                   np.zeros((0, k, 2), np.float32))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def select(self, keep: np.ndarray | list[int]) -> "RawDetections":
        return RawDetections(self.boxes[keep], self.scores[keep], self.points[keep])

    @classmethod
    def concat(cls, parts: list["RawDetections"], k: int = 0) -> "RawDetections":
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty(k)
        return cls(np.concatenate([p.boxes for p in parts]),
                   np.concatenate([p.scores for p in parts]),
                   np.concatenate([p.points for p in parts]))


class Model(Protocol):
    """A detector network. `input_size` is its fixed (w, h), or None when any size that is a
    multiple of `stride` works. `predict` takes a BGR image of exactly that size (or any size
    for dynamic models; they pad internally) and returns detections in its pixels."""

    name: str
    input_size: tuple[int, int] | None
    stride: int

    def predict(self, image: np.ndarray, threshold: float) -> RawDetections: ...


def working_scale(width: int, height: int, max_side: int, max_upscale: float) -> float:
    """Scale at which the model sees the frame: the long side becomes at most `max_side`
    (0 = native resolution), and small frames are enlarged by at most `max_upscale`."""
    long_side = max(width, height)
    if max_side <= 0:
        return 1.0
    return min(float(max_upscale), max_side / long_side)


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spread tile offsets covering [0, length) with at least `overlap` px shared."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (n - 1)
    return [int(round(i * step)) for i in range(n)]


GLOBAL_SIDE = 640
"""Long side of the whole-frame pass of a dynamic-input model: the crop size face detectors
are trained on (YuNet, WIDER FACE), so that faces too large for the working scale (a person
right in front of the camera) are seen at a size the model knows."""


def plan_views(width: int, height: int, input_size: tuple[int, int] | None, scale: float,
               overlap: int, global_pass: bool) -> list[View]:
    """The views that cover a `width` x `height` frame at `scale` for a model with fixed
    `input_size` (tiles of that size, `overlap` model pixels shared) or a dynamic model (one
    view of the whole frame). `global_pass` adds the whole frame once more, fitted into the
    input size (fixed models, when tiled) or to a long side of GLOBAL_SIDE (dynamic models,
    when the working view is larger)."""
    if input_size is None:
        views = [View(0, 0, width, height, scale)]
        long_side = max(width, height)
        if global_pass and long_side * scale > GLOBAL_SIDE:
            views.append(View(0, 0, width, height, GLOBAL_SIDE / long_side))
        return views
    tw, th = input_size
    sw, sh = width * scale, height * scale
    if sw <= tw and sh <= th:
        return [View(0, 0, width, height, scale)]
    views: list[View] = []
    tile_w, tile_h = tw / scale, th / scale  # a tile's extent in frame pixels
    ov = overlap / scale
    for y in _starts(height, int(round(tile_h)), int(round(ov))):
        for x in _starts(width, int(round(tile_w)), int(round(ov))):
            w = min(int(round(tile_w)), width - x)
            h = min(int(round(tile_h)), height - y)
            views.append(View(x, y, w, h, scale))
    if global_pass:
        views.append(View(0, 0, width, height, min(tw / width, th / height)))
    return views


def run_view(model: Model, frame: np.ndarray, view: View, threshold: float) -> RawDetections:
    """Crop, resize and pad `view` of `frame` for `model`, run it, and map the detections back
    to frame pixels."""
    crop = frame[view.y0:view.y0 + view.h, view.x0:view.x0 + view.w]
    mw = max(1, int(round(view.w * view.scale)))
    mh = max(1, int(round(view.h * view.scale)))
    if (mw, mh) != (view.w, view.h):
        interp = cv2.INTER_AREA if view.scale < 1 else cv2.INTER_LINEAR
        crop = cv2.resize(crop, (mw, mh), interpolation=interp)
    if model.input_size is not None:
        tw, th = model.input_size
        mw, mh = min(mw, tw), min(mh, th)
        padded = np.zeros((th, tw, 3), np.uint8)
        padded[:mh, :mw] = crop[:mh, :mw]
        crop = padded
    out = model.predict(np.ascontiguousarray(crop), threshold)
    if not len(out):
        return out
    sx = view.w / mw
    sy = view.h / mh
    boxes = out.boxes.astype(np.float32) * np.array([sx, sy, sx, sy], np.float32)
    boxes += np.array([view.x0, view.y0, view.x0, view.y0], np.float32)
    points = out.points.astype(np.float32) * np.array([sx, sy], np.float32)
    points += np.array([view.x0, view.y0], np.float32)
    return RawDetections(boxes, out.scores.astype(np.float32), points)


class CorruptOutput(ValueError):
    """A model returned numbers that are not boxes (NaN, inf, inverted corners)."""


def merge(dets: RawDetections, iou_threshold: float, containment: float = 0.8) -> RawDetections:
    """Greedy non-maximum suppression, highest score first (see `merge_indices`)."""
    if len(dets) <= 1:
        return dets
    return dets.select(merge_indices(dets.boxes, dets.scores, iou_threshold, containment))


def merge_indices(b: np.ndarray, scores: np.ndarray, iou_threshold: float,
                  containment: float = 0.8) -> np.ndarray:
    """Indices kept by greedy NMS over boxes `b` (N, 4 xyxy). A box is also dropped when
    `containment` of its area lies inside a kept box: a tile border cuts a face into a partial
    box that overlaps the whole one by less than the IoU threshold but is the same face."""
    areas = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    suppressed = np.zeros(len(b), bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        iw = np.clip(np.minimum(b[i, 2], b[:, 2]) - np.maximum(b[i, 0], b[:, 0]), 0, None)
        ih = np.clip(np.minimum(b[i, 3], b[:, 3]) - np.maximum(b[i, 1], b[:, 1]), 0, None)
        inter = iw * ih
        union = areas[i] + areas - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
        inside = np.where(areas > 0, inter / np.maximum(areas, 1e-9), 0.0)
        suppressed |= (iou > iou_threshold) | (inside >= containment)
    return np.array(keep, dtype=int)


def added_where_new(base: RawDetections, extra: RawDetections, iou_threshold: float
                    ) -> RawDetections:
    """`base` and the boxes of `extra` that overlap none of `base` by `iou_threshold` or more:
    a second pass only adds faces, it never moves or replaces what the first pass found."""
    if not len(extra):
        return base
    if len(base):
        iou = iou_matrix(_xywh(extra.boxes), _xywh(base.boxes))
        extra = extra.select(np.flatnonzero(iou.max(axis=1) < iou_threshold))
    return RawDetections.concat([base, extra], base.points.shape[1] if len(base)
                                else extra.points.shape[1])


def _xywh(xyxy: np.ndarray) -> np.ndarray:
    out = xyxy.astype(np.float64).reshape(-1, 4).copy()
    out[:, 2:] -= out[:, :2]
    return out


def check_finite(dets: RawDetections, source: str) -> None:
    """Corrupt model output (NaN, inf, inverted boxes) is a failure, not an empty result: the
    anonymizer must then fail closed instead of trusting a broken detector."""
    if not (np.isfinite(dets.boxes).all() and np.isfinite(dets.scores).all()):
        raise CorruptOutput(f"{source} returned non-finite boxes or scores")
    if len(dets) and ((dets.boxes[:, 2] < dets.boxes[:, 0]).any()
                      or (dets.boxes[:, 3] < dets.boxes[:, 1]).any()):
        raise CorruptOutput(f"{source} returned boxes with negative width or height")
