"""Image measures of a sign's legend crop, for OCR and the rules around it: cutting and sizing
the crop, whitening what lies outside a ring, binarizing, counting glyphs, finding text rows
and ink columns, and telling an exclamation mark, a bar and a limit sign's arrowheads apart.

Pure functions of pixels (numpy and OpenCV); the backend (`vlm_node.analysis.ocr_backend`)
decides what a measure means for a reading.
"""
from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

RED_HUE_MAX = 15  # OpenCV hue (0-180) within this of 0 is the rim's red (and orange-red)


# --- crops -------------------------------------------------------------------------------------


def legend_crop(bgr: np.ndarray, box: Any) -> np.ndarray:
    ys, xs = box.int_slices(bgr.shape[1], bgr.shape[0])
    return bgr[ys, xs]


def to_height(img: np.ndarray, height: int, interpolation: int) -> np.ndarray:
    """`img` resized to `height` rows, its aspect kept."""
    k = height / img.shape[0]
    return cv2.resize(img, (max(1, int(round(img.shape[1] * k))), height),
                      interpolation=interpolation)


def enlarge(img: np.ndarray, height: int) -> np.ndarray:
    if img.shape[0] >= height or img.shape[0] == 0:
        return img
    return to_height(img, height, cv2.INTER_CUBIC)


def shrink(img: np.ndarray, height: int) -> np.ndarray:
    """`img` scaled down (area average) to `height` rows when it is taller. Why: the
    recogniser reads 48 px high lines and the glyph count needs a few dozen rows, while a
    round outline seen from near gives a 300-500 px legend whose whitening and masks cost
    ~2 ms each at full size (most of a rendered 1080p frame's ring jobs)."""
    if img.shape[0] <= height:
        return img
    return to_height(img, height, cv2.INTER_AREA)


def kth_of_histogram(cumulative: np.ndarray, k: int) -> int:
    """The k-th smallest (0-based) of the 8-bit values whose cumulative histogram this is."""
    return int(np.searchsorted(cumulative, k, side="right"))


def histogram_percentile(hist: np.ndarray, q: float) -> float:
    """`np.percentile(values, q)` (linear interpolation, numpy's arithmetic to the bit) of
    the 8-bit values counted in `hist`, without sorting them."""
    cumulative = np.cumsum(hist)
    n = int(cumulative[-1])
    pos = (n - 1) * (q / 100)
    k = math.floor(pos)
    t = pos - k
    a = float(kth_of_histogram(cumulative, k))
    b = float(kth_of_histogram(cumulative, min(k + 1, n - 1)))
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t


def histogram_median(hist: np.ndarray) -> float:
    """`np.median` of the 8-bit values counted in `hist`."""
    cumulative = np.cumsum(hist)
    n = int(cumulative[-1])
    if n % 2:
        return float(kth_of_histogram(cumulative, n // 2))
    return (kth_of_histogram(cumulative, n // 2 - 1) + kth_of_histogram(cumulative, n // 2)) / 2


def histogram(image: np.ndarray, mask: np.ndarray, channel: int = 0) -> np.ndarray:
    """The 256-bin histogram of one channel of `image` under `mask` (no copy of the channel)."""
    return cv2.calcHist([image], [channel], mask, [256], [0, 256]).ravel().astype(np.int64)


def whiten_outside_ellipse(crop: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Paint everything outside the crop's inscribed ellipse (times `scale`) with the crop's
    white, so the remains of a red rim in the corners are not read as '(' or '1'. The white:
    per channel the median of the pixels inside whose grey is within 10 levels of the inside's
    90th percentile; both from histograms (a ring read costs two of these, and a frame's
    outlines several reads: sorting the pixels was ~40 % of them)."""
    h, w = crop.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    axes = (max(1, int(w * scale) // 2), max(1, int(h * scale) // 2))
    cv2.ellipse(mask, (w // 2, h // 2), axes, 0, 0, 360, 255, -1)
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    fill = np.array([255.0, 255.0, 255.0])
    inside = histogram(gray, mask)
    if inside.any():
        white = histogram_percentile(inside, 90)
        bg = cv2.bitwise_and(mask, (gray >= white - 10).view(np.uint8) * np.uint8(255))
        if cv2.countNonZero(bg):
            fill = np.array([histogram_median(histogram(crop, bg, c)) for c in range(3)])
    # the white everywhere, the crop copied back inside the ellipse (cv2 rather than numpy's
    # boolean indexing: the same pixels, ~15 % of the function's time saved)
    out = np.empty_like(crop)
    out[:] = fill.astype(np.uint8)
    cv2.copyTo(crop, mask, out)
    return out


def binarized(crop: np.ndarray, light_legend: bool) -> np.ndarray:
    """Black legend on white (Otsu on grey), as a 3-channel image for the recogniser."""
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    gray = cv2.normalize(gray, None, 0, 255, cv2.NORM_MINMAX)
    mode = cv2.THRESH_BINARY if not light_legend else cv2.THRESH_BINARY_INV
    _, bw = cv2.threshold(gray, 0, 255, mode + cv2.THRESH_OTSU)
    return cv2.cvtColor(bw, cv2.COLOR_GRAY2BGR)


def without_stripes(crop: np.ndarray, size: int = 128) -> np.ndarray:
    """An end-of-limit legend with its diagonal stripes closed away: a grey closing along
    the falling diagonal, perpendicular to the thin rising stripes, fills them with the
    white around them and leaves the thicker digit strokes standing."""
    gray = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), (size, size),
                      interpolation=cv2.INTER_CUBIC)
    closed = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, np.eye(7, dtype=np.uint8))
    return cv2.cvtColor(closed, cv2.COLOR_GRAY2BGR)


def dark_mask(crop: np.ndarray) -> np.ndarray:
    """Legend ink: darker than Otsu's threshold and not saturated red (sign red is dark in
    grey but is the rim, not the legend). Only red is excluded, not every saturated colour: a
    dark navy legend (many non-German signs) is saturated too, and excluding it left only its
    blurred outline as ink (a "0" then made two glyphs, its outline and its hole's)."""
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    _, bw = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    hue = hsv[..., 0]
    red = (hsv[..., 1] >= 110) & ((hue <= RED_HUE_MAX) | (hue >= 180 - RED_HUE_MAX))
    return (bw > 0) & ~red


def count_glyphs(row: np.ndarray) -> int:
    """Ink blobs at least 60 % as tall as the text row (digits; not specks or dots). A blob
    lying inside another's bounding box is part of the same glyph (the hole of a "0" whose
    stroke broke into an outer and an inner outline), not a digit of its own; a sliver at the
    very left or right end of the row is the rim's inner edge left by an off-centre box (a
    "1" is as thin, but it sits inside the text, not at the disc's edge)."""
    if row.size == 0:
        return 0
    n, _, stats, _ = cv2.connectedComponentsWithStats(row.astype(np.uint8))
    h, w = row.shape[:2]

    def rim_sliver(st: np.ndarray) -> bool:
        centre = st[cv2.CC_STAT_LEFT] + st[cv2.CC_STAT_WIDTH] / 2
        return bool(st[cv2.CC_STAT_WIDTH] < 0.2 * h and
                    (centre < 0.08 * w or centre > 0.92 * w))

    tall = [st for st in stats[1:] if st[cv2.CC_STAT_HEIGHT] >= 0.6 * h and not rim_sliver(st)]

    def inside(a: np.ndarray, b: np.ndarray) -> bool:
        ax, ay, aw, ah = a[:4]
        bx, by, bw, bh = b[:4]
        return bool(bx <= ax and by <= ay and ax + aw <= bx + bw and ay + ah <= by + bh
                    and (aw, ah) != (bw, bh))

    return sum(1 for a in tall if not any(inside(a, b) for b in tall if b is not a))


BRIDGE_PX = 3
"""Side of the opening `without_bridges` applies to a legend's ink (at legend_height_px)."""


def without_bridges(ink: np.ndarray) -> np.ndarray:
    """`ink` (a legend's text row at legend_height_px) without strokes under `BRIDGE_PX`
    wide. Why: a twig or a cable behind a pale sign, or a dark seam, joins the 4 and the 0 of a
    40 by a line a pixel or two wide, and the pair is counted as one glyph; the strict reads
    that want as many digits as glyphs then reject the right number (Kaggle road281/282). A
    digit's own stroke is ~8 px at this height and survives. The count of the job is the
    larger of the two (`_job`): opening can also erase a faint, thin "1"."""
    kernel = np.ones((BRIDGE_PX, BRIDGE_PX), np.uint8)
    return cv2.morphologyEx(ink.astype(np.uint8), cv2.MORPH_OPEN, kernel)


def ink_columns(row: np.ndarray, dark: np.ndarray, text_h: int) -> np.ndarray:
    """`row` cut to the columns holding ink, with half a text height of white on each side.
    Why: a lone digit (a 5 km/h sign) in a row as wide as the disc is mostly white space, and
    the recogniser then scores it low or reads nothing; cut to its width it reads like any
    number. The rim's ends (outer 10 %) are not ink."""
    w = dark.shape[1]
    margin = max(2, text_h // 2)
    glyph = tall_blob_columns(dark, text_h)
    if glyph is not None:
        left, right = max(0, glyph[0] - margin), min(w, glyph[1] + margin)
        return row[:, left:right] if right - left < w else row
    mx = max(1, int(w * 0.1))
    cols = np.flatnonzero(dark[:, mx:w - mx].any(axis=0))
    if cols.size == 0:
        return row
    left, right = max(0, mx + cols[0] - margin), min(w, mx + cols[-1] + 1 + margin)
    return row[:, left:right] if right - left < w else row


def tall_blob_columns(dark: np.ndarray, text_h: int) -> tuple[int, int] | None:
    """The columns (first, past-last) of the ink blobs at least 0.6 text heights tall that
    are not thin slivers (under a fifth of the text height wide): the digit, without the rim's
    inner edge that an off-centre ring box leaves in the row, which the recogniser read as a
    bracket or a "1" (Kaggle road173/road184: a 5 read "15)"). None when there is none."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(dark.astype(np.uint8))
    tall = [st for st in stats[1:] if st[cv2.CC_STAT_HEIGHT] >= 0.6 * text_h
            and st[cv2.CC_STAT_WIDTH] >= 0.2 * text_h]
    if not tall:
        return None
    return (int(min(st[cv2.CC_STAT_LEFT] for st in tall)),
            int(max(st[cv2.CC_STAT_LEFT] + st[cv2.CC_STAT_WIDTH] for st in tall)))


def row_bands(dark: np.ndarray, min_frac: float = 0.25) -> list[tuple[int, int]]:
    """Text rows of a legend: runs of rows holding dark pixels, keeping those at least
    `min_frac` as tall as the tallest (drops borders and specks)."""
    h, w = dark.shape
    # Ignore the outer 10 % / 4 % (the sign's border line, tilted by perspective).
    mx, my = max(1, int(w * 0.1)), max(1, int(h * 0.04))
    prof = dark[:, mx:w - mx].mean(axis=1)
    prof[:my] = 0
    prof[h - my:] = 0
    on = prof > 0.05
    bands, start = [], None
    for i, v in enumerate(on):
        if v and start is None:
            start = i
        elif not v and start is not None:
            bands.append((start, i))
            start = None
    if start is not None:
        bands.append((start, h))
    if not bands:
        return []
    tallest = max(b - a for a, b in bands)
    return [(a, b) for a, b in bands if (b - a) >= min_frac * tallest and b - a >= 3]


# --- shape checks for legends without text -----------------------------------------------------


def is_exclamation(crop: np.ndarray) -> bool:
    """A '!' pictogram: a tall bar above a dot, centred, and nothing else of size."""
    dark = dark_mask(crop).astype(np.uint8)
    h, w = dark.shape
    n, _, stats, _ = cv2.connectedComponentsWithStats(dark)
    parts = [s for s in stats[1:] if s[cv2.CC_STAT_AREA] >= max(3, 0.004 * h * w)]
    # Keep what lies in the middle third across (the slanted sides of the triangle and its
    # blurred red border fall outside it).
    parts = [s for s in parts if 0.3 * w <= s[0] + s[2] / 2 <= 0.7 * w
             and s[2] < 0.4 * w]
    if len(parts) != 2:
        return False
    bar, dot = sorted(parts, key=lambda s: -s[cv2.CC_STAT_HEIGHT])
    bx, by, bw, bh = bar[:4]
    dx, dy, dw, dh = dot[:4]
    return (bh >= 2.2 * bw and bh >= 0.3 * h and dy > by + bh * 0.8
            and abs((bx + bw / 2) - (dx + dw / 2)) <= max(2.0, bw) and dh <= 0.5 * bh)


def is_bar(crop: np.ndarray) -> bool:
    """The no-entry legend: one solid white bar, wide and low, across the middle."""
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    s, v = hsv[..., 1].astype(np.float32), hsv[..., 2].astype(np.float32)
    light = ((s < 0.5 * np.median(s)) & (v > 0.8 * np.median(v))).astype(np.uint8)
    h, w = light.shape
    # Only inside the disc: the legend box's corners show what is behind the sign.
    disc = np.zeros_like(light)
    cv2.ellipse(disc, (w // 2, h // 2), (max(1, w // 2), max(1, h // 2)), 0, 0, 360, 1, -1)
    light &= disc
    n, _, stats, _ = cv2.connectedComponentsWithStats(light)
    parts = [st for st in stats[1:] if st[cv2.CC_STAT_AREA] >= 0.01 * h * w]
    if len(parts) != 1:
        return False
    x, y, bw, bh, area = parts[0]
    return (bw >= 0.6 * w and bw >= 2.5 * bh and area >= 0.7 * bw * bh
            and 0.3 * h < y + bh / 2 < 0.7 * h)


def limit_class(crop: np.ndarray) -> str | None:
    """Height or width limit from the arrowheads around the "3.5 m": above and below the text
    (height) or left and right of it (width); None when neither shows."""
    dark = dark_mask(crop)
    h, w = dark.shape
    bands = row_bands(dark, min_frac=0.5)
    if not bands:
        return None
    a, b = max(bands, key=lambda ab: ab[1] - ab[0])  # the text row
    centre = slice(int(w * 0.35), int(w * 0.65) + 1)
    above = dark[max(0, int(h * 0.08)):a, centre]
    below = dark[b:int(h * 0.92), centre]
    if above.size and below.size and above.mean() > 0.06 and below.mean() > 0.06:
        return "height_limit"
    # Width: a separate small blob at each end of the text row, clear of the text.
    n, _, stats, _ = cv2.connectedComponentsWithStats(dark[a:b].astype(np.uint8))
    blobs = sorted((st for st in stats[1:] if st[cv2.CC_STAT_AREA] >= 3), key=lambda st: st[0])
    if len(blobs) >= 3:
        left, right = blobs[0], blobs[-1]
        if left[0] + left[2] <= 0.2 * w and blobs[1][0] >= left[0] + left[2] + 0.02 * w and \
                right[0] >= 0.8 * w and right[0] >= blobs[-2][0] + blobs[-2][2] + 0.02 * w:
            return "width_limit"
    return None
