"""Circle proposals: round signs found by their outline where no paint colour finds them.

At dusk, against the light or under an overcast sky a red rim keeps no red: on the GTSDB
development photos 15 of 138 speed-limit signs were proposed by no colour mask (their rims'
red excess over max(G, B) is -5 to +1 grey levels after white balance), yet the classifier
reads most of them surely through their own box. Their outline is still a circle, so a
gradient Hough transform proposes them. It costs a full-frame edge pass and finds many round
things that are not signs (wheels, lamps, letters), which the classifier then has to reject,
so it is a setting (`analysis.ocr.circle_proposals`) with its price in the model card.
"""
from __future__ import annotations

import cv2
import numpy as np

from vlm_node.geometry import Box

# A sign's outer edge: the Hough circle usually lands on the rim's inner or outer edge; the box
# is grown 10 % beyond the radius so that a ring whose inner edge was found is still inside.
_RIM_GROWTH = 1.1


# The pass for large circles runs on a copy shrunk so that its smallest radius is this many
# pixels: a large circle keeps its outline when shrunk, and the pass then costs a few ms.
_LARGE_PASS_MIN_RADIUS = 12


def _hough(grey: np.ndarray, min_radius: int, max_radius: int, min_dist: float
           ) -> list[tuple[float, float, float]]:
    """HOUGH_GRADIENT_ALT (edge-orientation voting with a circularity score, 0.6 here) rather
    than the classic accumulator: on the development photos the classic one needed ~290
    circles a frame for half the signs the ALT variant finds with ~11. Centres at least
    `min_dist` apart: 16 px at the search's 960 px gave the same signs as 8 px with 0.6x the
    time (a ring's inner and outer edges otherwise both come back)."""
    if max_radius < max(1, min_radius):
        return []
    found = cv2.HoughCircles(grey, cv2.HOUGH_GRADIENT_ALT, dp=1.5, minDist=min_dist,
                             param1=150, param2=0.6, minRadius=max(1, min_radius),
                             maxRadius=max_radius)
    return [] if found is None else [(float(x), float(y), float(r)) for x, y, r in found[0]]


def find_circles(bgr: np.ndarray, min_radius: int, max_radius: int,
                 large_max_radius: int = 0) -> list[Box]:
    """Boxes around the circles of `bgr`'s grey image with radius in [min_radius, max_radius]
    pixels, in `bgr`'s coordinates; with `large_max_radius` also those up to that radius, found
    on a shrunk copy. Why the large pass: a sign passed close by, or photographed from near,
    fills a fifth of the frame or more; on the Kaggle development photos 39 of 61 speed limits
    were only within reach of radii beyond 0.085 of the frame's short side."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    circles = _hough(grey, min_radius, max_radius, 16.0)
    if large_max_radius > max_radius:
        f = min(1.0, _LARGE_PASS_MIN_RADIUS / max(1, max_radius))
        shrunk = (cv2.resize(grey, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
                  if f < 1.0 else grey)
        circles += [(x / f, y / f, r / f) for x, y, r in
                    _hough(shrunk, max(1, round(max_radius * f)), round(large_max_radius * f),
                           max(2.0, 16.0 * f))]
    return [Box(x - _RIM_GROWTH * r, y - _RIM_GROWTH * r, 2 * _RIM_GROWTH * r,
                2 * _RIM_GROWTH * r) for x, y, r in circles]


# fit_ring looks at the box grown by this share of its side each way (a proposal can cut the
# ring), at least at this many pixels (a 20 px sign's rim is 2 px: too thin to vote), for a
# circle of this share of the box's side in radius (a box around a sign and its post is up to
# twice as tall as the ring).
_FIT_MARGIN = 0.15
_FIT_MIN_SIDE = 64.0
# ... and at most this many: the pass's cost grows with the radii it tries (0.2 ms at 64 px,
# 1.1 ms at 128, 11 ms at 256, 33 ms at 400 on the 2.1 GHz host), while a ring 128 px across
# is still placed within a pixel or two.
_FIT_MAX_SIDE = 128.0
_FIT_RADII = (0.3, 0.6)


def fit_ring(bgr: np.ndarray, box: Box, max_side: float = _FIT_MAX_SIDE) -> Box:
    """The box of the most circular outline inside `box` (`ring_in`), or `box` when none is
    found."""
    ring = ring_in(bgr, box, max_side)
    return box if ring is None else ring


def ring_in(bgr: np.ndarray, box: Box, max_side: float = _FIT_MAX_SIDE) -> Box | None:
    """The box of the most circular outline inside `box` (a colour proposal, or the shape
    finder's ring, that OCR is about to read as a speed sign), None when none is found. Why: a
    colour region's box often spans the sign with its post, a plate below or the rim of a
    second sign, and the legend cut from its middle then holds part of the rim, which the
    recogniser reads as a bracket or a "1" ("(40)", "40)"); on the Kaggle development photos
    this cost 21 speed values. One gradient Hough pass on the box's patch, enlarged to
    `_FIT_MIN_SIDE` or shrunk to `max_side`, with the frame pass's thresholds
    (`_hough`): on the 138 speed limits of >= 20 px in the development photos, boxes grown
    over the post or to one side fit the sign at IoU >= 0.75 in 175 of 276 cases, and in
    none worse than the box given."""
    side = max(box.w, box.h)
    margin = _FIT_MARGIN * side
    height, width = bgr.shape[:2]
    x0, y0 = int(max(0, box.x - margin)), int(max(0, box.y - margin))
    x1, y1 = int(min(width, box.x2 + margin)), int(min(height, box.y2 + margin))
    if min(x1 - x0, y1 - y0) < 8:
        return None
    patch = cv2.cvtColor(bgr[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
    f = max(1.0, _FIT_MIN_SIDE / side) if side < max_side else max_side / side
    if f != 1.0:
        patch = cv2.resize(patch, None, fx=f, fy=f,
                           interpolation=cv2.INTER_CUBIC if f > 1.0 else cv2.INTER_AREA)
    s = side * f
    found = cv2.HoughCircles(patch, cv2.HOUGH_GRADIENT_ALT, dp=1.0, minDist=s, param1=150,
                             param2=0.6, minRadius=int(_FIT_RADII[0] * s),
                             maxRadius=int(_FIT_RADII[1] * s))
    if found is None:
        return None
    cx, cy, r = (float(v) / f for v in found[0][0])
    return Box(x0 + cx - r, y0 + cy - r, 2 * r, 2 * r)
