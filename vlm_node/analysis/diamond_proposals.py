"""Diamond proposals: priority-road signs found by their yellow field.

A priority-road sign is a white diamond with a yellow diamond in its middle about half its
width. The colour proposals box the yellow field only (when its paint passes the yellow mask at
all), and the classifier reads the field's box as background: its crop shows a yellow square
with no white border. On the GTSDB development photos 00000-00299 the classifier read all 19
missed priority-road signs at >= 0.99 through their labelled boxes, while the search's best box
on each overlapped the sign by IoU 0.25-0.6 or not at all; the fields of most of them were
orange (hue 13-15 after white balance, under the yellow mask's 15) or dark (value 55-110, under
its 90), as yellow paint photographs in the shade and at dusk.

So a looser yellow-to-orange mask is searched for regions shaped like a diamond (a convex
four-corner outline filling about half its upright bounding box, roughly as wide as tall), and
each is grown to the sign's size around its centre. The boxes may only be read as priority
road (`GtsrbClass.is_diamond`): an orange diamond is nothing else the classifier knows, and a
box grown from a region that was not a sign's field is read surely as nothing.
`analysis.ocr.diamond_proposals` turns the pass off; measured in docs/sign_classifier.md.
"""
from __future__ import annotations

import cv2
import numpy as np

from vlm_node.geometry import Box

LOOSE_YELLOW = "yellow_loose"
LIGHT = "light"
"""Keys of the loose yellow mask and of the light mask in `proposal_masks`' dict."""

LOOSE_YELLOW_LOW = (8, 90, 35)
LOOSE_YELLOW_HIGH = (35, 255, 255)
"""HSV range (OpenCV, hue 0-180) of a priority-road field after grey-world white balance: from
orange to yellow, saturated, down to dark (`proposal_masks`' yellow mask starts at hue 15 and
value 90)."""

LIGHT_MAX_SATURATION = 80
LIGHT_MIN_VALUE = 60
"""A light pixel (the sign's white border, grey at dusk) after white balance."""

MIN_BORDER_LIGHT = 0.8
"""Share of the band around a field (1.3-1.8 field half-diagonals from its centre, in the L1
metric a diamond has) that must be light: a sign's white border. Development photos (GTSDB
00000-00299, the WIDER crowd tune half): 15 of 17 labelled priority-road fields pass, against
95 of 527 diamond-shaped yellow and orange regions in crowds (dots on flags, skin, brass) and
267 of 1,261 elsewhere on the road photos."""

FIELD_GROWTH = 2.0
"""The sign's width over its yellow field's: measured on the development photos' labelled signs
the loose mask's field is 0.42-0.63 of the sign (median 0.47)."""

# outline area / bounding box area: a diamond fills 0.5 (the development photos' priority-road
# fields 0.49-0.60 at 6-35 px), a disc 0.785 (a drawn 31 px one 0.71)
_MIN_FILL, _MAX_FILL = 0.35, 0.65
_MAX_ASPECT = 1.4  # longer / shorter side of the bounding box
_EPSILON = 0.1  # polygon approximation tolerance, share of the contour's perimeter
_POLYGON_MIN_SIDE = 12  # below this a field is too few pixels for its corners: fill alone


def diamond_masks(hsv_balanced: np.ndarray) -> dict[str, np.ndarray]:
    """The masks (uint8 0/255) the pass reads, from a white-balanced HSV image: where fields
    may be (LOOSE_YELLOW) and where a white border may be (LIGHT)."""
    return {LOOSE_YELLOW: cv2.inRange(hsv_balanced, LOOSE_YELLOW_LOW, LOOSE_YELLOW_HIGH),
            LIGHT: cv2.inRange(hsv_balanced, (0, 0, LIGHT_MIN_VALUE),
                               (180, LIGHT_MAX_SATURATION, 255))}


def border_light(light: np.ndarray, cx: float, cy: float, half: float) -> float:
    """Share of light pixels in the diamond band 1.3-1.8 `half` (the field's half-diagonal)
    around (cx, cy): where a priority-road sign has its white border."""
    height, width = light.shape[:2]
    reach = 1.8 * half
    x0, x1 = max(0, int(cx - reach)), min(width, int(cx + reach) + 1)
    y0, y1 = max(0, int(cy - reach)), min(height, int(cy + reach) + 1)
    if x1 <= x0 or y1 <= y0:
        return 0.0
    ys, xs = np.mgrid[y0:y1, x0:x1]
    dist = (np.abs(xs - cx) + np.abs(ys - cy)) / max(half, 1.0)
    band = (dist >= 1.3) & (dist <= 1.8)
    if not band.any():
        return 0.0
    return float(np.count_nonzero(light[y0:y1, x0:x1][band])) / float(np.count_nonzero(band))


def _diamond(contour: np.ndarray, w: int, h: int) -> bool:
    """Whether a region is shaped like a sign's diamond field (see the module docstring)."""
    if max(w, h) > _MAX_ASPECT * min(w, h):
        return False
    fill = cv2.contourArea(contour) / float(w * h)
    if not _MIN_FILL <= fill <= _MAX_FILL:
        return False
    if max(w, h) < _POLYGON_MIN_SIDE:
        return True
    hull = cv2.convexHull(contour)
    approx = cv2.approxPolyDP(hull, _EPSILON * cv2.arcLength(hull, True), True)
    if len(approx) != 4:
        return False
    # a diamond's corners lie at the middles of its box's sides, not at the box's corners
    x, y = cv2.boundingRect(contour)[:2]
    pts = approx.reshape(4, 2).astype(np.float64) - (x, y)
    corner = np.array([(0, 0), (w, 0), (0, h), (w, h)], np.float64)
    nearest = np.hypot(*(pts[:, None, :] - corner[None, :, :]).transpose(2, 0, 1)).min(axis=1)
    return bool((nearest > 0.25 * min(w, h)).all())


def find_diamonds(masks: dict[str, np.ndarray], min_side: float, max_side: float) -> list[Box]:
    """Sign boxes grown from the diamond-shaped regions of `masks` (`diamond_masks`) with a
    light border, in the masks' pixels, whose grown side is `min_side` to `max_side`; none
    inside another by IoU > 0.7."""
    from vlm_node.analysis.sign_candidates import box_nms

    closed = cv2.morphologyEx(masks[LOOSE_YELLOW], cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out: list[Box] = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        side = FIELD_GROWTH * max(w, h)
        if not min_side <= side <= max_side or not _diamond(contour, w, h):
            continue
        cx, cy = x + w / 2.0, y + h / 2.0
        if border_light(masks[LIGHT], cx, cy, max(w, h) / 2.0) < MIN_BORDER_LIGHT:
            continue
        out.append(Box(cx - side / 2.0, cy - side / 2.0, side, side))
    keep = box_nms(out, [b.area for b in out], 0.7)
    return [out[i] for i in keep]
