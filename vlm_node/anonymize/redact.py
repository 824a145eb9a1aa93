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


# The smoothing of `smooth_enlarged`: a Gaussian one cell (8 px) wide on the 8 px per cell
# image. OpenCV sizes its kernel for 8-bit images as round(sigma * 6 + 1) | 1 taps (25), so
# no output pixel depends on pixels further than _SMOOTH_REACH away.
_SMOOTH_SIGMA = 4.0
_SMOOTH_REACH = (round(_SMOOTH_SIGMA * 6 + 1) | 1) // 2


def smooth_enlarged(small: np.ndarray, rw: int, rh: int) -> np.ndarray:
    """`small` (a cell grid) enlarged to `rw` x `rh` without block edges: through an image
    8 px per cell smoothed by a Gaussian one cell wide."""
    return cv2.resize(_smoothed(_per_cell(small)), (rw, rh), interpolation=cv2.INTER_LINEAR)


def _per_cell(small: np.ndarray) -> np.ndarray:
    sh, sw = small.shape[:2]
    return cv2.resize(small, (sw * 8, sh * 8), interpolation=cv2.INTER_LINEAR)


def _smoothed(mid: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(mid, (0, 0), _SMOOTH_SIGMA, borderType=cv2.BORDER_REPLICATE)


def _smoothed_all(mids: list[np.ndarray]) -> list[np.ndarray]:
    """`_smoothed` of each 8-bit image, in one GaussianBlur call: the images side by side, each
    in its own border replicated `_SMOOTH_REACH` px wide, which is what the per-image call
    reads beyond its edges, so every pixel comes out the same. One call over a wide strip
    costs a fraction of many calls on images a few dozen pixels across (OpenCV's 8-bit
    Gaussian is slow near borders and on short rows)."""
    if len(mids) == 1:
        return [_smoothed(mids[0])]
    r = _SMOOTH_REACH
    widths = [m.shape[1] + 2 * r for m in mids]
    strip = np.zeros((max(m.shape[0] for m in mids) + 2 * r, sum(widths), mids[0].shape[2]),
                     mids[0].dtype)
    x = 0
    for m, sw in zip(mids, widths):
        strip[:m.shape[0] + 2 * r, x:x + sw] = cv2.copyMakeBorder(m, r, r, r, r,
                                                                  cv2.BORDER_REPLICATE)
        x += sw
    strip = _smoothed(strip)
    out, x = [], 0
    for m, sw in zip(mids, widths):
        out.append(strip[r:r + m.shape[0], x + r:x + r + m.shape[1]])
        x += sw
    return out


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


def blur_all(image: np.ndarray, regions: list[tuple[Box, bool]]) -> None:
    """`redact(image, box, ellipse, "blur")` for each region in order, with the same pixels as
    those calls one after another, but the smoothing of many regions done in one call.

    Regions are taken in waves: a region joins the wave after the last earlier region its
    rectangle overlaps (it must read what that one wrote, as it would in order), so a wave's
    regions are disjoint and read nothing another wave member writes. Each wave reads all its
    regions, smooths them together and writes them back in order."""
    h, w = image.shape[:2]
    spans = []
    for box, ellipse in regions:
        rows, cols = box.int_slices(w, h)
        y1, y2, _ = rows.indices(h)
        x1, x2, _ = cols.indices(w)
        if y2 > y1 and x2 > x1:
            spans.append((y1, y2, x1, x2, ellipse))
    if not spans:
        return
    rect = np.array([s[:4] for s in spans])
    y1, y2, x1, x2 = (rect[:, i] for i in range(4))
    overlap = ((y1[:, None] < y2[None, :]) & (y1[None, :] < y2[:, None])
               & (x1[:, None] < x2[None, :]) & (x1[None, :] < x2[:, None]))
    wave = np.zeros(len(spans), int)
    for k in range(1, len(spans)):
        before = wave[:k][overlap[k, :k]]
        if before.size:
            wave[k] = before.max() + 1
    for n in range(int(wave.max()) + 1):
        members = [spans[k] for k in np.flatnonzero(wave == n)]
        rois = [image[a:b, c:d] for a, b, c, d, _ in members]
        mids = [_per_cell(cv2.resize(roi, cell_grid(roi.shape[1], roi.shape[0]),
                                     interpolation=cv2.INTER_AREA)) for roi in rois]
        for roi, mid, (*_, ellipse) in zip(rois, _smoothed_all(mids), members):
            rh, rw = roi.shape[:2]
            new = cv2.resize(mid, (rw, rh), interpolation=cv2.INTER_LINEAR)
            if ellipse:
                cv2.copyTo(new, _ellipse(rw, rh), roi)
            else:
                roi[...] = new


def blur_full_frame(image: np.ndarray) -> None:
    """The fail-closed `full_blur` policy: nothing in the frame stays recognisable (the frame
    keeps only colour blobs 1/12 of its long side across)."""
    image[...] = blurred(image, cells=12)
