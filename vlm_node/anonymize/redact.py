"""Redaction of regions in place: blur, pixelate, fill, a synthetic plate, or a replaced face.

Strength scales with the region, so a small face is as unrecognisable as a large one: every mode
first throws away all detail finer than 1/`cells` of the region (blur and pixelate both go
through a tiny image of the region), which is what a sharpening filter would need to bring the
face back. Faces are redacted inside an ellipse (their shape), leaving the box corners, often
background, untouched; plates as rectangles. `replace` (face_replace.py) puts a k-Same average
face over the blur of `blur` mode inside the same ellipse, and a synthetic plate on plates.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from vlm_node.anonymize.face_replace import MIN_FACE_PX, FaceReplacer, usable
from vlm_node.anonymize.synthetic import render_plate
from vlm_node.geometry import Box
from vlm_node.results import Detection

# Detail kept by `blur`: the region is reduced to this many cells across its long side before
# smoothing. 6 cells leave a face as a few skin-coloured blobs (identity distances in
# docs/anonymizer.md).
BLUR_CELLS = 6


def redaction_region(det: Detection, margin: float, width: int, height: int
                     ) -> tuple[Box, bool]:
    """The box that is redacted for `det` (grown by `margin`, clipped to the frame) and
    whether the redaction is elliptical (faces) or rectangular (plates)."""
    return det.box.expanded(margin).clipped(width, height), det.kind == "face"


def region_mask(width: int, height: int, regions: list[tuple[Box, bool]]) -> np.ndarray:
    """Boolean HxW mask of every pixel the regions redact (used by leak metrics)."""
    mask = np.zeros((height, width), np.uint8)
    for box, ellipse in regions:
        rows, cols = box.int_slices(width, height)
        sub = mask[rows, cols]
        if sub.size == 0:
            continue
        if ellipse:
            sub |= _ellipse(sub.shape[1], sub.shape[0])
        else:
            sub[...] = 1
    return mask.astype(bool)


def _ellipse(w: int, h: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (((w - 1) / 2.0, (h - 1) / 2.0), (float(w), float(h)), 0.0), 255, -1)
    return (m > 0).astype(np.uint8)


def blurred(roi: np.ndarray, cells: int = BLUR_CELLS) -> np.ndarray:
    """A copy of `roi` with no detail finer than 1/`cells` of its long side: reduced to a tiny
    image by area averaging (which cannot alias detail back in), then enlarged smoothly. The
    smoothing (a Gaussian one cell wide, so no block edges remain) runs on an intermediate
    image 8 px per cell, which makes the cost independent of the region's size."""
    rh, rw = roi.shape[:2]
    small = cv2.resize(roi, cell_grid(rw, rh, cells), interpolation=cv2.INTER_AREA)
    return smooth_enlarged(small, rw, rh)


def cell_grid(rw: int, rh: int, cells: int = BLUR_CELLS) -> tuple[int, int]:
    """(w, h) of the tiny image a `rw` x `rh` region is reduced to: `cells` across its long
    side."""
    f = cells / max(rh, rw)
    return max(1, round(rw * f)), max(1, round(rh * f))


def smooth_enlarged(small: np.ndarray, rw: int, rh: int) -> np.ndarray:
    """`small` (a cell grid) enlarged to `rw` x `rh` without block edges: through an image
    8 px per cell smoothed by a Gaussian one cell wide."""
    sh, sw = small.shape[:2]
    mid = cv2.resize(small, (sw * 8, sh * 8), interpolation=cv2.INTER_LINEAR)
    mid = cv2.GaussianBlur(mid, (0, 0), 4.0, borderType=cv2.BORDER_REPLICATE)
    return cv2.resize(mid, (rw, rh), interpolation=cv2.INTER_LINEAR)


def pixelated(roi: np.ndarray, blocks: int) -> np.ndarray:
    """A copy of `roi` made of square blocks of side ceil(long side / `blocks`), each the mean
    colour of the pixels it covers."""
    rh, rw = roi.shape[:2]
    bs = max(1, math.ceil(max(rh, rw) / blocks))
    gw, gh = math.ceil(rw / bs), math.ceil(rh / bs)
    padded = cv2.copyMakeBorder(roi, 0, gh * bs - rh, 0, gw * bs - rw, cv2.BORDER_REPLICATE)
    small = padded.reshape(gh, bs, gw, bs, 3).mean(axis=(1, 3))
    big = np.repeat(np.repeat(np.rint(small).astype(np.uint8), bs, 0), bs, 1)
    return big[:rh, :rw]


def redact(image: np.ndarray, box: Box, ellipse: bool, mode: str, *, blocks: int = 8,
           fill_value: int = 96, seed: int = 0, landmarks: np.ndarray | None = None,
           replacer: FaceReplacer | None = None) -> str:
    """Redact `box` of `image` (HxWx3 uint8) in place with `mode`. `synthetic` replaces a
    rectangular region with a rendered fake plate; for elliptical (face) regions it blurs.
    `replace` puts `replacer`'s average face onto a face's five `landmarks` (frame pixels),
    a synthetic plate on plates, and blurs faces it cannot replace. Returns what was done:
    the mode, or `blur:<reason>` for a face `replace` had to blur (counted by the caller)."""
    h, w = image.shape[:2]
    rows, cols = box.int_slices(w, h)
    roi = image[rows, cols]
    rh, rw = roi.shape[:2]
    if rh == 0 or rw == 0:
        return mode
    done = mode
    if mode == "blur" or (mode == "synthetic" and ellipse):
        new = blurred(roi)
    elif mode == "replace" and ellipse:
        reason = usable(landmarks) if replacer is not None else "no_bank"
        if reason is None and min(rw, rh) < MIN_FACE_PX:
            reason = "too_small"
        if reason is None:
            new = replacer.replace(image, rows, cols, landmarks, seed)
        else:
            new = blurred(roi)
            done = f"blur:{reason}"
    elif mode == "pixelate":
        new = pixelated(roi, blocks)
    elif mode == "fill":
        new = np.full_like(roi, fill_value)
    elif mode in ("synthetic", "replace"):
        new = render_plate(roi, np.random.default_rng(seed))
    else:
        raise ValueError(f"unknown redaction mode {mode!r}")
    if ellipse:
        # cv2.copyTo with the 0/1 mask: the same pixels as np.copyto(where=mask[..., None]),
        # 0.2 ms instead of 6.6 ms for a 462x636 face (thread CPU, same process, under load)
        cv2.copyTo(new, _ellipse(rw, rh), roi)
    else:
        roi[...] = new
    return done


def blur_full_frame(image: np.ndarray) -> None:
    """The fail-closed `full_blur` policy: nothing in the frame stays recognisable (the frame
    keeps only colour blobs 1/12 of its long side across)."""
    image[...] = blurred(image, cells=12)
