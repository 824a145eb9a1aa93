"""Triangle proposals: warning and yield signs found by their outline where no paint colour
finds them.

Against a bright or overcast sky a triangle's red rim photographs dark and grey; the colour
masks then hold no region for it, yet the classifier reads such a sign surely through its own
box (on the GTSDB development photos 00300-00599, 17 of the triangular signs missed were
proposed by nothing, and the classifier read most of them at >= 0.97 through their labels).
The rim is still darker than the sign's face and than the sky around it, so a threshold
against the local mean brightness turns it into a dark band whose contours are triangles.
Each closed contour that approximates to a convex, roughly equilateral triangle with one side
near horizontal becomes a box for the classifier, which may read it only as a triangular
class (`GtsrbClass.is_triangle`): a round or square sign on such a box is not what was seen.

One pass over the search image (a few ms at 960x540); `analysis.ocr.triangle_proposals`
turns it off. Measured in docs/sign_classifier.md.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from vlm_node.geometry import Box, contour_rects

BLOCK = 11
"""Side (px of the search image) of the window whose mean a pixel is compared with: about the
size of the small signs the pass is for. 15 and 21 found fewer of the development triangles,
and the bright-polarity pass (the face instead of the rim) fewer again at the same cost."""

OFFSET = 4
"""Grey levels below the local mean for a pixel to count as rim."""

_EPSILON = 0.08  # polygon approximation tolerance, share of the contour's perimeter
_MAX_SIDE_RATIO = 1.35  # longest / shortest side of an accepted triangle
_LEVEL_DEGREES = 15.0  # one side within this of horizontal: signs stand upright
_MIN_FILL = 0.3  # triangle area / bounding box area (a sliver is no sign)


def _triangle(contour: np.ndarray) -> bool:
    """Whether a contour is a sign-like triangle (see the module docstring)."""
    approx = cv2.approxPolyDP(contour, _EPSILON * cv2.arcLength(contour, True), True)
    if len(approx) != 3 or not cv2.isContourConvex(approx):
        return False
    pts = approx.reshape(3, 2).astype(np.float64)
    edges = [pts[(i + 1) % 3] - pts[i] for i in range(3)]
    sides = [float(np.hypot(*e)) for e in edges]
    if max(sides) > _MAX_SIDE_RATIO * min(sides):
        return False
    angles = (abs(math.degrees(math.atan2(e[1], e[0]))) % 180.0 for e in edges)
    if not any(min(a, 180.0 - a) < _LEVEL_DEGREES for a in angles):
        return False
    x, y, w, h = cv2.boundingRect(approx)
    return cv2.contourArea(approx) >= _MIN_FILL * w * h


def find_triangles(bgr: np.ndarray, min_side: int, max_share: float = 0.4) -> list[Box]:
    """Boxes of triangular outlines in `bgr` whose larger side is `min_side` px to `max_share`
    of the image's shorter side, largest first, none inside another by IoU > 0.7."""
    from vlm_node.analysis.sign_candidates import box_nms

    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    rim = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV,
                                BLOCK, OFFSET)
    contours, _ = cv2.findContours(rim, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    largest = max_share * min(grey.shape[:2])
    # the size and aspect checks for all contours at once: ~98 % are specks of the threshold
    rects = contour_rects(contours)
    w, h = rects[:, 2], rects[:, 3]
    side, aspect = np.maximum(w, h), w / h
    fits = (min_side <= side) & (side <= largest) & (0.7 <= aspect) & (aspect <= 1.6)
    out = [Box(*(float(v) for v in rects[i])) for i in np.flatnonzero(fits).tolist()
           if _triangle(contours[i])]
    keep = box_nms(out, [b.area for b in out], 0.7)
    return [out[i] for i in keep]
