"""Where the plate pass looks in a frame of a video: vehicles every frame, the rest in turn.

The text detector that finds plates (PP-OCRv4 DBNet) costs ~140 ms for a 1080p frame at its
960 px budget on one core of a 2-core machine: more than a 10 Hz camera leaves. On video most of
that work repeats itself: a plate does not appear out of nowhere, it arrives on a vehicle. So a
frame of a stream is scanned in two parts:

* **vehicle regions**, every frame: the boxes of cars, buses, trucks and motorbikes that the
  anonymizer's COCO detector (the head backstop's FastestDet pass) found, grown by a margin, at
  the same scale as the whole-frame pass would see them;
* **one horizontal band** of the frame, in turn (`bands` bands, overlapping by more than a
  plate's height), so that every part of the frame is scanned every `bands` frames whatever
  the vehicle detector saw.

Plates found either way are tracked, and a plate track is carried at least `bands - 1` frames
(`CarryOver.hold`), so a plate found once stays redacted until its band comes round again even
when the vehicle detector loses its vehicle. What this cannot do is find, on the frame it
appears, a plate that is neither on a detected vehicle nor in that frame's band: such a plate is
found at the latest `bands - 1` frames later. That is the price, measured in
docs/anonymizer.md; `plate_scan_bands: 1` scans the whole frame every frame.

The first frame of a stream, and every frame after the stream was reset (new sequence, a gap
in time, a failure, a new frame size) is scanned whole: nothing is carried there yet.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from vlm_node.geometry import Box
from vlm_node.results import ObjectDetection, TextHint

VEHICLE_CLASSES = frozenset({"car", "bus", "truck", "motorbike"})
"""COCO classes (FastestDet's Darknet spelling) that carry licence plates."""

VEHICLE_GROW = 0.15
"""Each vehicle box grows by this fraction of its size on every side before it is scanned:
FastestDet's boxes are loose (one 352x352 pass over the frame), and a plate on the bumper sits
at the box's edge."""

VEHICLE_TOP = 0.3
"""The top of a vehicle box down to this fraction of its height is not scanned: plates sit on
bumpers and tailgates (a motorbike's under the seat), in the lower part of the vehicle seen
from front or back; the roof and windows are a third of the text detector's work there."""

BAND_OVERLAP = 0.1
"""Neighbouring bands share this fraction of the frame height (108 px at 1080p): a plate lower
than that lies whole in one band (1080p plates are 10-80 px high)."""


@dataclass(frozen=True, slots=True)
class PlateScan:
    """What the plate pass of one frame covers: the whole frame (`band` None), or band `band`
    of `bands` plus the `regions` (x1, y1, x2, y2 frame px) around vehicles."""

    band: int | None = None
    bands: int = 1
    regions: tuple[tuple[int, int, int, int], ...] = field(default=())

    @property
    def full(self) -> bool:
        return self.band is None


FULL = PlateScan()


@dataclass(frozen=True, slots=True)
class ScanRect:
    """A rectangle of a frame (x1, y1, x2, y2 frame px) searched for text at `scale` (model
    px per frame px). `recurring`: a rectangle of the same size on every frame of a stream
    (the whole frame, a band), which the detector runs on a model compiled for its shape."""

    x1: int
    y1: int
    x2: int
    y2: int
    scale: float
    recurring: bool = False


def dedupe_lines(boxes: np.ndarray, owner: np.ndarray, iou: float = 0.5,
                 containment: float = 0.8) -> np.ndarray:
    """Indices of the text lines (boxes N x 4, x1 y1 x2 y2) to keep when lines come from
    overlapping rectangles (`owner`: each line's rectangle): of two lines from different
    rectangles that overlap by more than `iou`, or when `containment` of one lies inside the
    other, the larger is kept (a line cut by one rectangle's edge is whole in the other).
    Lines of the same rectangle are never dropped: the detector already separated them."""
    n = len(boxes)
    if n < 2 or len(set(owner.tolist())) < 2:
        return np.arange(n)
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    iw = np.clip(np.minimum(boxes[:, None, 2], boxes[None, :, 2])
                 - np.maximum(boxes[:, None, 0], boxes[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(boxes[:, None, 3], boxes[None, :, 3])
                 - np.maximum(boxes[:, None, 1], boxes[None, :, 1]), 0, None)
    inter = iw * ih
    union = areas[:, None] + areas[None, :] - inter
    same = (inter / np.maximum(union, 1e-9) > iou) | (
        inter / np.maximum(areas[None, :], 1e-9) >= containment)  # [i, j]: j inside i
    same &= owner[:, None] != owner[None, :]
    dropped, kept = np.zeros(n, bool), np.zeros(n, bool)
    for i in np.argsort(-areas, kind="stable"):
        if not dropped[i]:
            kept[i] = True
            dropped |= same[i] & ~kept
    return np.nonzero(kept)[0]


def band_rows(height: int, bands: int, overlap: float = BAND_OVERLAP) -> list[tuple[int, int]]:
    """(y0, y1) of `bands` horizontal bands covering rows [0, height), neighbours sharing
    `overlap` x height rows."""
    if bands <= 1:
        return [(0, height)]
    ov = int(round(overlap * height))
    size = -(-(height + (bands - 1) * ov) // bands)
    rows = []
    for i in range(bands):
        y0 = min(i * (size - ov), max(0, height - size))
        rows.append((y0, min(height, y0 + size)))
    return rows


def vehicle_regions(objects: Iterable[ObjectDetection], width: int, height: int,
                    min_score: float, grow: float = VEHICLE_GROW, top: float = VEHICLE_TOP
                    ) -> list[tuple[int, int, int, int]]:
    """Rectangles around the lower part of the vehicles among `objects` (from `top` of the
    box's height down), grown by `grow` and clipped; rectangles that overlap are joined into
    their bounding rectangle (one text-detector call instead of two, and a plate between two
    cars is not cut)."""
    rects = []
    for o in objects:
        if o.label not in VEHICLE_CLASSES or o.score < min_score:
            continue
        b = o.box
        gx, gy = b.w * grow, b.h * grow
        x1, y1 = max(0, int(b.x - gx)), max(0, int(b.y + top * b.h))
        x2, y2 = min(width, int(b.x2 + gx + 1)), min(height, int(b.y2 + gy + 1))
        if x2 - x1 >= 8 and y2 - y1 >= 8:
            rects.append((x1, y1, x2, y2))
    return join_overlapping(rects)


def join_overlapping(rects: Sequence[tuple[int, int, int, int]]
                     ) -> list[tuple[int, int, int, int]]:
    """Rectangles with every overlapping pair replaced by its bounding rectangle, until none
    overlap."""
    out = list(rects)
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    out[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]),
                              max(a[3], b[3]))
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return out


def scan_rects(scan: PlateScan, width: int, height: int,
               overlap: float = BAND_OVERLAP) -> list[tuple[int, int, int, int]]:
    """The rectangles the text detector runs on for `scan`: the band (full width) and the
    parts of each vehicle region outside it, each reaching `overlap` x height rows into the
    band (as neighbouring bands overlap), so a plate on the band's edge lies whole in one."""
    if scan.full:
        return [(0, 0, width, height)]
    y0, y1 = band_rows(height, scan.bands)[scan.band or 0]
    ov = int(round(overlap * height))
    rects = [(0, y0, width, y1)]
    for x1, ry1, x2, ry2 in scan.regions:
        if ry1 < y0:  # the part above the band
            rects.append((x1, ry1, x2, min(ry2, y0 + ov)))
        if ry2 > y1:  # the part below it
            rects.append((x1, max(ry1, y1 - ov), x2, ry2))
    return rects


def in_band(box: Box, height: int, bands: int, band: int) -> bool:
    """Whether `box`'s centre lies in band `band` (the band a hint was found in)."""
    y0, y1 = band_rows(height, bands)[band]
    return y0 <= box.center[1] < y1


def carried_hints(fresh: Sequence[TextHint], stored: dict[int, list[TextHint]],
                  scan: PlateScan, height: int) -> list[TextHint]:
    """The sign-text hints to hand on with a frame: this frame's, plus the latest ones of
    the bands it did not scan (`stored`, updated here), so that the analysis keeps seeing a
    sign that lies in another band. A stored hint that overlaps a fresh one is left out."""
    if scan.full:
        stored.clear()
        if scan.bands > 1:
            for b in range(scan.bands):
                stored[b] = [h for h in fresh if in_band(h.box, height, scan.bands, b)]
        return list(fresh)
    assert scan.band is not None
    stored[scan.band] = [h for h in fresh if in_band(h.box, height, scan.bands, scan.band)]
    out = list(fresh)
    for b, hints in stored.items():
        if b == scan.band:
            continue
        out += [h for h in hints if all(h.box.iou(f.box) < 0.5 for f in out)]
    return out
