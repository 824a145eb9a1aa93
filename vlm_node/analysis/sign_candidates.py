"""Traffic-sign candidates from colour and shape, without a learned detector.

Signs are built to be found this way: a few saturated colours (red, blue, yellow, white) in a
few regular shapes (discs, rings, octagons, triangles, diamonds, rectangles). Each colour mask is
split into connected regions and holes; a region becomes a candidate only when its outline fits
one of those shapes and its inside looks like a sign's (a red ring holds a light disc with a
dark legend, a red octagon holds white letters). Red cars, tail lights and brick walls are red
too, which is why the inside checks matter as much as the colour.

Three ways in, because a sign's own outline is often merged with what stands behind it:
- holes of the red mask: the light disc or triangle inside a red rim (prohibitory and warning
  signs), whose outline stays clean when the rim touches a red car;
- holes of the white mask: the coloured face inside a sign's thin white edge (stop, no entry,
  blue mandatory signs), clean when the face itself touches same-coloured paint;
- outer outlines of red, blue, yellow and white regions (small and isolated signs, priority
  road diamonds, US speed-limit rectangles).

The OCR backend reads the candidates; this module only says where to look, what shape and
colours it saw there, and where the legend (number or text) sits.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import Enum
from typing import Sequence

import cv2
import numpy as np

from vlm_node.analysis.diamond_proposals import diamond_masks
from vlm_node.geometry import Box, box_array, contour_rects, nms, window
from vlm_node.params import setting


class Shape(str, Enum):
    """Outline of a sign face."""

    CIRCLE = "circle"
    OCTAGON = "octagon"
    TRIANGLE_UP = "triangle_up"
    TRIANGLE_DOWN = "triangle_down"
    DIAMOND = "diamond"
    RECTANGLE = "rectangle"


@dataclass(frozen=True, slots=True)
class SignCandidate:
    """A region that looks like a sign face.

    `border` is the sign's outer paint (the rim of a ring, the body of a filled sign, white for
    the US rectangle); `inner` the dominant colour of its face inside the rim. `filled` tells a
    red disc (no entry, stop) from a red ring (speed limit). `legend` is where the number or
    text sits, for OCR. `dark_fraction` / `light_fraction` are the shares of dark and white
    pixels on the face (digits and pictograms / letters on a coloured sign).
    """

    box: Box
    shape: Shape
    border: str
    inner: str
    filled: bool
    score: float
    legend: Box
    dark_fraction: float = 0.0
    light_fraction: float = 0.0
    # How it was found: "rim" (hole of a red rim), "edge" (hole of a white edge), "body" (outer
    # outline), "disc" (inscribed in a larger region of its colour)
    found_by: str = ""

    def to_json(self) -> dict[str, object]:
        return {"box": self.box.to_list(), "shape": self.shape.value, "border": self.border,
                "inner": self.inner, "filled": self.filled, "score": round(self.score, 3),
                "legend": self.legend.to_list()}


@dataclass
class CandidateConfig:
    """Colour thresholds (OpenCV HSV: H 0..180, S and V 0..255) and size limits."""

    min_size_px: int = setting(14, "Smallest candidate side in pixels (signs smaller than this "
                                   "cannot be read anyway).", min=6, max=200)
    max_size_frac: float = setting(0.7, "Largest candidate side as a fraction of the image's "
                                        "shorter side.", min=0.05, max=1.0)
    min_saturation: int = setting(70, "Minimum HSV saturation of red/blue/yellow sign paint.",
                                  min=10, max=250)
    min_value: int = setting(45, "Minimum HSV value (brightness) of sign paint.", min=0, max=250)
    white_max_saturation: int = setting(60, "Maximum HSV saturation of white sign background.",
                                        min=5, max=200)
    min_score: float = setting(0.45, "Candidates scoring below this are dropped.",
                               min=0.0, max=1.0)
    max_candidates: int = setting(12, "At most this many candidates per frame (best first).",
                                  min=1, max=200)
    find_white_signs: bool = setting(True, "Also look for white rectangles and discs (US speed "
                                           "limits, end-of-limit signs); costs some false "
                                           "candidates on white cars and walls.")


# --- colour ------------------------------------------------------------------------------------

_RED_HUE = (9, 165)  # hue <= 9 or >= 165 (red wraps around 0)
_BLUE_HUE = (98, 128)
_YELLOW_HUE = (18, 34)


def colour_masks(hsv: np.ndarray, cfg: CandidateConfig) -> dict[str, np.ndarray]:
    """Binary masks (uint8 0/255) of sign paint: red, blue, yellow and white."""
    smin, vmin = cfg.min_saturation, cfg.min_value
    red = cv2.bitwise_or(cv2.inRange(hsv, (0, smin, vmin), (_RED_HUE[0], 255, 255)),
                         cv2.inRange(hsv, (_RED_HUE[1], smin, vmin), (180, 255, 255)))
    # Sign blue is deep and bright; dark navy car paint is not.
    blue = cv2.inRange(hsv, (_BLUE_HUE[0], max(smin, 120), max(vmin, 60)),
                       (_BLUE_HUE[1], 255, 255))
    yellow = cv2.inRange(hsv, (_YELLOW_HUE[0], smin, max(vmin, 110)), (_YELLOW_HUE[1], 255, 255))
    # White relative to the frame and to the neighbourhood: sign faces are retroreflective
    # and among the brightest surfaces, but a sign in shade is only brighter than what
    # surrounds it, and a dull frame has no pixel above a fixed threshold.
    v = np.ascontiguousarray(hsv[..., 2])
    thr = float(np.clip(np.percentile(v[::4, ::4], 60), 110, 170))
    bright = cv2.threshold(v, thr - 1, 255, cv2.THRESH_BINARY)[1]
    local = cv2.add(cv2.blur(v, (41, 41)), 12)
    brighter = cv2.compare(v, local, cv2.CMP_GE)
    grey = cv2.inRange(hsv, (0, 0, 90), (180, cfg.white_max_saturation, 255))
    white = cv2.bitwise_and(grey, cv2.bitwise_or(bright, brighter))
    return {"red": red, "blue": blue, "yellow": yellow, "white": white}


@dataclass(frozen=True, slots=True)
class _Face:
    """Pixel statistics of a candidate's face (the region inside its outline)."""

    shares: dict[str, float]  # red, blue, yellow, white: shares of the region
    dark: float  # share of dark (legend) pixels: well below the face's bright level
    # Extent of the white pixels relative to the region's box: (width, height, centre y), all
    # 0..1 (5th-95th percentile, so stray pixels do not count).
    white_extent: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def dominant(self, exclude: str) -> str:
        best = max((k for k in self.shares if k != exclude), key=self.shares.get,
                   default="other")
        return best if self.shares.get(best, 0.0) >= 0.25 else "other"


def _face(frame: "_Frame", region: np.ndarray, origin: tuple[int, int], body: str = ""
          ) -> _Face:
    """Statistics of `region` (bool array) placed at `origin` (x, y) in the frame.

    With `body` (the paint of a filled sign), white means much less saturated and about as
    bright as that paint: small white letters on red blur to pink, which no fixed threshold
    calls white."""
    hsv, masks = frame.hsv, frame.raw
    white_max_s = frame.cfg.white_max_saturation + 20.0
    x, y = origin
    h, w = region.shape
    n = float(region.sum())
    if n == 0:
        return _Face({}, 0.0)
    shares = {k: float((m[y:y + h, x:x + w][region] > 0).sum()) / n for k, m in masks.items()
              if k != "white"}
    patch = hsv[y:y + h, x:x + w][region]
    s = patch[:, 1].astype(np.float32)
    v = patch[:, 2].astype(np.float32)
    hi = float(np.percentile(v, 95))
    # White and dark relative to the face's own brightest pixels: a sign in shade still has a
    # white background and a dark legend.
    white = (s <= white_max_s) & (v >= max(80.0, 0.72 * hi))
    if body:
        paint = masks[body][y:y + h, x:x + w][region] > 0
        if paint.sum() >= 8:
            s_ref, v_ref = float(np.median(s[paint])), float(np.median(v[paint]))
            white |= (s <= 0.6 * s_ref) & (v >= 0.85 * v_ref) & (v >= 80.0)
    shares["white"] = float(white.sum()) / n
    coloured = (s >= 90) & (v >= 0.55 * hi)
    dark = float(((v < 0.6 * hi) & ~coloured).sum()) / n if hi > 60 else 0.0
    extent = (0.0, 0.0, 0.0)
    # Where the white sits, ignoring the outline's own blurred edge (a tenth of the size).
    k = max(1, int(round(0.1 * min(w, h))))
    core = cv2.erode(region.astype(np.uint8), np.ones((2 * k + 1, 2 * k + 1), np.uint8)) > 0
    ys, xs = np.nonzero(region)
    in_core = core[ys, xs] & white
    if in_core.sum() >= 4:
        wx, wy = xs[in_core], ys[in_core]
        x5, x95 = np.percentile(wx, [5, 95])
        y5, y95 = np.percentile(wy, [5, 95])
        extent = (float(x95 - x5 + 1) / w, float(y95 - y5 + 1) / h, float(wy.mean() + 0.5) / h)
    return _Face(shares, dark, extent)


# --- shape -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ShapeFit:
    shape: Shape
    fit: float  # 0..1, how well the outline matches the shape


def _fit_shape(contour: np.ndarray) -> _ShapeFit | None:
    """The regular shape the (filled) outline matches best, if any matches well.

    Three area ratios separate the shapes even for blurred outlines 15 px across, where
    corner counts are unreliable: the hull's area over its fitted ellipse (about 1 for a disc),
    over its minimum enclosing triangle (about 1 for a triangle, 0.6 for a disc) and over its
    minimum-area rectangle (1 for rectangles and diamonds, 0.79 for a disc, 0.5 for a
    triangle)."""
    area = cv2.contourArea(contour)
    if area < 30:
        return None
    hull = cv2.convexHull(contour)
    hull_area = cv2.contourArea(hull)
    if hull_area <= 0 or len(hull) < 5:
        return None
    solidity = area / hull_area
    if solidity < 0.8:
        return None
    x, y, w, h = cv2.boundingRect(hull)
    aspect = w / h
    bbox_fill = hull_area / float(w * h)
    (_, _), (ea, eb), _ = cv2.fitEllipse(hull)
    ell = hull_area / max(1e-6, math.pi * ea * eb / 4)
    (_, _), (rw, rh), _ = cv2.minAreaRect(hull)
    rect = hull_area / max(1.0, rw * rh)
    if not ((0.88 <= ell <= 1.1 and rect < 0.9) or (ell < 0.9 and rect < 0.8) or rect >= 0.88):
        return None  # no shape can match; skip the costly triangle fit
    t_area, tri_pts = cv2.minEnclosingTriangle(hull)
    tri = hull_area / t_area if t_area > 0 else 0.0

    # A disc seen at an angle is taller than wide (driving past); much wider than tall it is
    # something else.
    if 0.88 <= ell <= 1.1 and rect < 0.9 and tri < 0.75 and 0.5 < aspect < 1.3:
        fit = solidity * max(0.0, 1.0 - abs(1.0 - ell) * 2.0)
        perim = cv2.arcLength(hull, True)
        corners = len(cv2.approxPolyDP(hull, 0.015 * perim, True))
        if min(w, h) >= 36 and 7 <= corners <= 9 and 0.8 < bbox_fill < 0.9:
            return _ShapeFit(Shape.OCTAGON, fit)
        return _ShapeFit(Shape.CIRCLE, fit)
    if tri >= 0.78 and ell < 0.9 and rect < 0.8 and 0.5 < aspect < 2.0:
        pts = tri_pts.reshape(-1, 2)
        up = int((pts[:, 1] < pts[:, 1].mean()).sum()) == 1
        return _ShapeFit(Shape.TRIANGLE_UP if up else Shape.TRIANGLE_DOWN,
                         solidity * min(1.0, tri / 0.92))
    if rect >= 0.88 and tri < 0.75:
        if bbox_fill < 0.65 and 0.7 < aspect < 1.4:
            return _ShapeFit(Shape.DIAMOND, solidity * rect)
        if bbox_fill > 0.85:
            return _ShapeFit(Shape.RECTANGLE, solidity * rect)
    return None


# --- candidates --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Frame:
    hsv: np.ndarray
    masks: dict[str, np.ndarray]  # closed masks used for outlines
    raw: dict[str, np.ndarray]  # unclosed masks used for pixel statistics
    cfg: CandidateConfig

    @property
    def size(self) -> tuple[int, int]:
        return self.hsv.shape[1], self.hsv.shape[0]


def _region(cnt: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = rect
    local = np.zeros((h, w), np.uint8)
    cv2.drawContours(local, [cnt - [x, y]], -1, 255, thickness=-1)
    return local > 0


def _contours(mask: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    return list(contours), (hierarchy[0] if hierarchy is not None else np.empty((0, 4), int))


def _size_ok(rect: tuple[int, int, int, int], frame: _Frame, scale: float = 1.0) -> bool:
    _, _, w, h = rect
    cfg = frame.cfg
    max_side = cfg.max_size_frac * min(frame.size)
    return (min(w, h) >= cfg.min_size_px * scale and max(w, h) <= max_side
            and 0.45 < w / h < 2.2)


def _rim_ratio(mask: np.ndarray, hole: np.ndarray, n_rays: int = 24) -> tuple[float, float]:
    """Walk outwards from the hole's boundary along rays from its centroid and measure how far
    the colour continues: returns (rim thickness / distance from the centroid, share of rays
    that meet the colour at once). A sign's rim is its inner shape scaled about the centre, so
    the ratio is the same on every ray; paint behind the sign makes some rays run long, which
    a low percentile ignores."""
    m = cv2.moments(hole)
    if m["m00"] <= 0:
        return 0.0, 0.0
    cx, cy = m["m10"] / m["m00"], m["m01"] / m["m00"]
    pts = hole.reshape(-1, 2).astype(np.float32)
    pts = pts[np.linspace(0, len(pts), n_rays, endpoint=False).astype(int)]
    d = pts - np.float32([cx, cy])
    dist = np.linalg.norm(d, axis=1)
    keep = dist > 1.0
    pts, d, dist = pts[keep], d[keep], dist[keep]
    if len(pts) < 6:
        return 0.0, 0.0
    unit = d / dist[:, None]
    n_steps = int(max(3.0, float(dist.max()) * 1.2))
    steps = np.arange(1, n_steps + 1, dtype=np.float32)
    xs = np.rint(pts[:, None, 0] + unit[:, None, 0] * steps).astype(int)
    ys = np.rint(pts[:, None, 1] + unit[:, None, 1] * steps).astype(int)
    h, w = mask.shape
    valid = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    on = np.zeros(xs.shape, bool)
    on[valid] = mask[ys[valid], xs[valid]] > 0
    starts = on[:, :2].any(axis=1)
    # Thickness: index of the first off pixel after the first on pixel.
    first_on = np.argmax(on, axis=1)
    after = np.arange(n_steps)[None, :] >= first_on[:, None]
    off_after = ~on & after
    thickness = np.where(off_after.any(axis=1), np.argmax(off_after, axis=1), n_steps)
    if not starts.any():
        return 0.0, 0.0
    ratios = thickness[starts].astype(np.float32) / dist[starts]
    return float(np.percentile(ratios, 30)), float(starts.mean())


# Rim thickness / inner radius of rimmed signs (the sign scaled about its centre): about 0.3
# for prohibitory rings, 0.35-0.6 for triangles; generous windows for perspective and blur.
_RIM_RATIO = {Shape.CIRCLE: (0.12, 0.6, 0.3), Shape.TRIANGLE_UP: (0.18, 0.9, 0.45),
              Shape.TRIANGLE_DOWN: (0.18, 0.9, 0.45)}


# Sign red is far more saturated than skin, brick or rust, which share its hue. Measured as the
# 75th percentile over the rim, so blur at the rim's edges does not pull it down.
_RIM_MIN_SATURATION = 100.0


def _rim_saturation(frame: _Frame, outer: np.ndarray, hole: np.ndarray) -> float:
    """Saturation (75th percentile) of the ring between `outer` and `hole` contours."""
    x, y, w, h = cv2.boundingRect(outer)
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(frame.size[0], x + w), min(frame.size[1], y + h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0.0
    ring = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.drawContours(ring, [outer - [x0, y0]], -1, 255, thickness=-1)
    cv2.drawContours(ring, [hole - [x0, y0]], -1, 0, thickness=-1)
    sat = frame.hsv[y0:y1, x0:x1, 1][ring > 0]
    return float(np.percentile(sat, 75)) if len(sat) else 0.0


def _border_share(frame: _Frame, cnt: np.ndarray, rect: tuple[int, int, int, int],
                  colour: str) -> float:
    """Share of `colour` in the outer band (8 % of the size) of the region's convex hull: a
    sign painted through has its colour all around its edge; a letter 'C' or a shape cut
    by something else does not."""
    x, y, w, h = rect
    hull = cv2.convexHull(cnt) - [x, y]
    full = np.zeros((h, w), np.uint8)
    cv2.drawContours(full, [hull], -1, 255, thickness=-1)
    k = max(1, int(round(0.08 * min(w, h))))
    inner = cv2.erode(full, np.ones((2 * k + 1, 2 * k + 1), np.uint8))
    band = (full > 0) & (inner == 0)
    if not band.any():
        return 0.0
    return float((frame.masks[colour][y:y + h, x:x + w][band] > 0).mean())


def _rimmed(frame: _Frame, hole: np.ndarray, rect: tuple[int, int, int, int]
            ) -> SignCandidate | None:
    """A red ring or red-bordered triangle, found from the light shape it encloses."""
    if not _size_ok(rect, frame, scale=0.6):
        return None
    fit = _fit_shape(hole)
    if fit is None:
        return None
    shape = Shape.CIRCLE if fit.shape == Shape.OCTAGON else fit.shape
    if shape not in _RIM_RATIO:
        return None
    red = frame.masks["red"]
    ratio, closed = _rim_ratio(red, hole)
    if closed < 0.75:
        return None
    lo, hi, typical = _RIM_RATIO[shape]
    x, y, w, h = rect
    face = _face(frame, _region(hole, rect), (x, y))
    inner = face.dominant("red")
    allowed = ("white", "blue") if shape == Shape.CIRCLE else ("white", "yellow")
    if inner not in allowed:
        return None
    score = fit.fit * closed
    if ratio > hi:
        # Red continues past the rim (a sign in front of a red car): trust the shape only
        # when the face looks like a sign's (light, with a legend), and assume a normal rim.
        if inner != "white" or face.shares.get("white", 0.0) < 0.45 or \
                not 0.04 < face.dark < 0.55:
            return None
        ratio, score = typical, score * 0.85
    elif ratio < lo:
        return None
    # Every sign read here has a legend (number, pictogram); an empty light disc inside red
    # is far more often a lamp or a reflection than a 'road closed' sign.
    if shape == Shape.CIRCLE and inner == "white" and not 0.04 < face.dark < 0.6:
        return None
    light = face.shares.get("white", 0.0)
    score *= min(1.0, 0.45 + light + (0.3 if inner == "blue" else 0.0))
    m = cv2.moments(hole)
    cx, cy = m["m10"] / m["m00"], m["m01"] / m["m00"]
    k = 1.0 + ratio
    outer = ((hole.astype(np.float32) - (cx, cy)) * k + (cx, cy)).astype(np.int32)
    if _rim_saturation(frame, outer, hole) < _RIM_MIN_SATURATION:
        return None
    box = Box.from_xyxy(cx + (x - cx) * k, cy + (y - cy) * k,
                        cx + (x + w - cx) * k, cy + (y + h - cy) * k).clipped(*frame.size)
    legend = Box(float(x), float(y), float(w), float(h))
    return SignCandidate(box, shape, "red", inner, False, float(min(1.0, score)), legend,
                         face.dark, light)


# The outlines a sign painted through in each colour can have (stop and no entry; blue
# mandatory discs and squares; the priority road diamond), and of a white sign with a dark
# legend (the US speed-limit rectangle, the end-of-limit disc).
_FACE_SHAPES = {"red": (Shape.CIRCLE, Shape.OCTAGON),
                "blue": (Shape.CIRCLE, Shape.OCTAGON, Shape.RECTANGLE),
                "yellow": (Shape.DIAMOND,)}


def _white_outline_ok(shape: Shape, box: Box) -> bool:
    """A white sign's outline: a portrait rectangle, or a disc of at least 20 px (the
    stripes of an end-of-limit sign are not visible smaller)."""
    if shape == Shape.RECTANGLE:
        return 0.55 < box.w / box.h < 0.95
    return shape in (Shape.CIRCLE, Shape.OCTAGON) and min(box.w, box.h) >= 20


def _outline_ok(colour: str, shape: Shape, box: Box) -> bool:
    """Whether a `colour` region with this outline can be a sign at all: checked before its
    face's pixel statistics are computed, which cost far more than this."""
    if colour == "white":
        return _white_outline_ok(shape, box)
    return shape in _FACE_SHAPES.get(colour, ())


def _coloured_face(frame: _Frame, colour: str, fit: _ShapeFit, box: Box, face: _Face
                   ) -> SignCandidate | None:
    """Judge a face painted in `colour` through (stop, no entry, blue mandatory signs,
    priority road): the colour must dominate and its legend must be white."""
    shape, score = fit.shape, fit.fit
    if shape not in _FACE_SHAPES.get(colour, ()):
        return None
    body = face.shares.get(colour, 0.0)
    light = face.shares.get("white", 0.0)
    legend = box.expanded(-0.12)
    if colour == "red":
        if body < 0.45:
            return None
        if not 0.06 < light < 0.5 or body + light < 0.75:
            return None
        # STOP lettering and the no-entry bar: a wide, low white band across the middle. The
        # hot spot of a lit tail lamp is compact or off-centre.
        ew, eh, ey = face.white_extent
        if ew < 0.5 or eh > 0.55 or not 0.35 < ey < 0.65:
            return None
        score *= min(1.0, 0.5 + (body + light) * 0.5)
    elif colour == "blue":
        shape = Shape.CIRCLE if shape == Shape.OCTAGON else shape
        if body < 0.4:
            return None
        if not 0.06 < light < 0.6 or body + light < 0.75:
            return None
        # Arrows and numbers span much of a blue sign; the counter of a letter 'P' does not.
        if max(face.white_extent[:2]) < 0.45:
            return None
    elif colour == "yellow":
        # A priority road sign's yellow field; the white border around it belongs to the
        # sign (the field spans about 60 % of its diagonal).
        if body < 0.75:
            return None
        legend = box
        box = box.expanded(0.3).clipped(*frame.size)
        if _diamond_border_white(frame, legend, box) < 0.35:
            return None  # a yellow-striped tie or a road marking, not a sign
    else:
        return None
    inner = "white" if colour != "yellow" else "yellow"
    return SignCandidate(box, shape, colour, inner, True, float(min(1.0, score)), legend,
                         face.dark, light)


def _diamond_border_white(frame: _Frame, field: Box, sign: Box) -> float:
    """Share of light, unsaturated pixels in the white border of a priority-road sign: the
    diamond between the yellow field and the sign's outline."""
    x, y, w, h = (int(round(v)) for v in (sign.x, sign.y, sign.w, sign.h))
    if w < 4 or h < 4:
        return 0.0
    hsv = frame.hsv[y:y + h, x:x + w]
    h, w = hsv.shape[:2]

    def diamond(b: Box) -> np.ndarray:
        cx, cy = b.x + b.w / 2 - x, b.y + b.h / 2 - y
        return np.int32([[cx, b.y - y], [b.x2 - x, cy], [cx, b.y2 - y], [b.x - x, cy]])

    band = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(band, diamond(field.expanded(0.2)), 255)
    cv2.fillConvexPoly(band, diamond(field.expanded(0.05)), 0)
    sel = hsv[band > 0]
    if len(sel) == 0:
        return 0.0
    v = sel[:, 2].astype(np.float32)
    light = (sel[:, 1] <= frame.cfg.white_max_saturation + 20) & \
        (v >= max(80.0, 0.7 * float(np.percentile(hsv[..., 2], 95))))
    return float(light.mean())


def _trim_pole(cnt: np.ndarray, rect: tuple[int, int, int, int]
               ) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """The region without vertical parts narrower than 30 % of its width (a pole), as the
    largest remaining contour and its bounding rect in frame coordinates."""
    x, y, w, h = rect
    local = _region(cnt, rect).astype(np.uint8) * 255
    kw = max(3, int(0.3 * w)) | 1
    opened = cv2.morphologyEx(local, cv2.MORPH_OPEN, np.ones((1, kw), np.uint8))
    found, _ = cv2.findContours(opened, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not found:
        return None
    best = max(found, key=cv2.contourArea) + [x, y]
    return best, cv2.boundingRect(best)


def _filled(frame: _Frame, colour: str, cnt: np.ndarray, rect: tuple[int, int, int, int]
            ) -> SignCandidate | None:
    """A sign outlined by its own paint: the region's outer contour is the sign."""
    # The yellow field of a priority sign is about 60 % of the sign.
    if not _size_ok(rect, frame, scale=0.6 if colour == "yellow" else 1.0):
        return None
    fit = _fit_shape(cnt)
    if fit is None and colour == "white":
        # A white sign merges with the grey pole under it; cut off parts narrower than a
        # third of the region and try again.
        trimmed = _trim_pole(cnt, rect)
        if trimmed is not None:
            cnt, rect = trimmed
            if _size_ok(rect, frame):
                fit = _fit_shape(cnt)
    if fit is None:
        return None
    x, y, w, h = rect
    box = Box(float(x), float(y), float(w), float(h))
    if not _outline_ok(colour, fit.shape, box):
        return None
    if colour in ("red", "blue") and _border_share(frame, cnt, rect, colour) < 0.8:
        return None
    face = _face(frame, _region(cnt, rect), (x, y), body=colour if colour != "white" else "")
    if colour == "white":
        return _white_face(frame, fit, box, face)
    return _coloured_face(frame, colour, fit, box, face)


def _white_face(frame: _Frame, fit: _ShapeFit, box: Box, face: _Face) -> SignCandidate | None:
    """A white sign with a dark legend: the US speed-limit rectangle (portrait) or an
    end-of-limit disc."""
    if not _white_outline_ok(fit.shape, box):
        return None
    if fit.shape == Shape.RECTANGLE:
        if not 0.1 < face.dark < 0.55:
            return None
        legend = box.expanded(-0.03)
    else:
        # The only white discs in the vocabulary are 'end of' signs, crossed by diagonal
        # stripes from top right to bottom left; logos, lamps and wheels are not.
        if not 0.08 < face.dark < 0.6 or face.shares.get("red", 0.0) > 0.1:
            return None
        if _stripe_evidence(frame, box) < 0.12:
            return None
        legend = box.expanded(-0.1)
    return SignCandidate(box, fit.shape, "white", "black", True, fit.fit, legend, face.dark,
                         face.shares.get("white", 0.0))


def _stripe_evidence(frame: _Frame, box: Box) -> float:
    """How much darker the rising diagonal is than the falling one, sampled off-centre (where
    the number is not), as a fraction of the face's white: about 0.3 for an end-of-limit
    sign's stripes, about 0 for a plain disc."""
    x, y, w, h = (int(round(v)) for v in (box.x, box.y, box.w, box.h))
    v = frame.hsv[y:y + h, x:x + w, 2].astype(np.float32)
    if v.size == 0 or min(w, h) < 12:
        return 0.0
    hi = float(np.percentile(v, 95))
    r = max(1, int(round(0.08 * min(w, h))))

    def mean_at(fx: float, fy: float) -> float:
        cx, cy = int(fx * w), int(fy * h)
        win = v[max(0, cy - r):cy + r + 1, max(0, cx - r):cx + r + 1]
        return float(win.mean()) if win.size else hi

    rising = max(mean_at(0.72, 0.28), mean_at(0.28, 0.72))
    falling = min(mean_at(0.28, 0.28), mean_at(0.72, 0.72))
    return (falling - rising) / max(hi, 1.0)


def _edged(frame: _Frame, hole: np.ndarray, rect: tuple[int, int, int, int]
           ) -> SignCandidate | None:
    """A coloured sign inside its thin white edge (a hole of the white mask)."""
    if not _size_ok(rect, frame):
        return None
    fit = _fit_shape(hole)
    if fit is None or fit.shape not in (Shape.CIRCLE, Shape.OCTAGON, Shape.RECTANGLE):
        return None
    x, y, w, h = rect
    region = _region(hole, rect)
    colour = _face(frame, region, (x, y)).dominant("white")
    if colour not in ("red", "blue") or not _outline_ok(colour, fit.shape, Box(x, y, w, h)) \
            or _border_share(frame, hole, rect, colour) < 0.8:
        return None
    face = _face(frame, region, (x, y), body=colour)
    # The edge is about 2-3 % of the sign's width on each side.
    box = Box(float(x), float(y), float(w), float(h)).expanded(0.03).clipped(*frame.size)
    return _coloured_face(frame, colour, fit, box, face)


def _scan(frame: _Frame, colour: str, mask: np.ndarray, outer: bool, holes: bool
          ) -> list[SignCandidate]:
    contours, hierarchy = _contours(mask)
    min_len = 2 * frame.cfg.min_size_px * 0.6  # a contour's point count bounds its perimeter
    out = []
    for i, cnt in enumerate(contours):
        is_hole = hierarchy[i][3] != -1
        if (is_hole and not holes) or (not is_hole and not outer) or len(cnt) < min_len:
            continue
        rect = cv2.boundingRect(cnt)
        if is_hole:
            cand = _rimmed(frame, cnt, rect) if colour == "red" else _edged(frame, cnt, rect)
        else:
            cand = _filled(frame, colour, cnt, rect)
        if cand is not None:
            cand = dataclasses.replace(cand, found_by="body" if not is_hole else
                                       "rim" if colour == "red" else "edge")
        if cand is not None and cand.score >= frame.cfg.min_score:
            out.append(cand)
    return out


def _distance_window(regions: Sequence[np.ndarray], shape: tuple[int, int]
                     ) -> tuple[slice, slice]:
    """Where `_inscribed_discs` measures distances: the regions' box with a ring of background
    around it (the nearest background pixel of any point inside lies within it), its columns
    widened to multiples of 16. Why: the distances are then the whole frame's, bit for bit,
    at a fraction of the cost (most frames' red regions cover a small part of it); OpenCV's
    float chamfer pass rounds differently in a window whose columns do not line up with the
    frame's SIMD lanes (1 ulp here and there, enough to reorder equal peaks)."""
    h, w = shape
    bx, by, bw, bh = cv2.boundingRect(np.concatenate(regions))
    x0, x1 = max(0, bx - 1) // 16 * 16, min(w, -(-(bx + bw + 1) // 16) * 16)
    return slice(max(0, by - 1), min(h, by + bh + 1)), slice(x0, x1)


def _inscribed_discs(frame: _Frame, colour: str, mask: np.ndarray,
                     limit: int = 24) -> list[SignCandidate]:
    """Filled discs and octagons merged with same-coloured surroundings (a stop sign in front
    of a red car): the largest circles inscribed in the colour regions (peaks of the distance
    transform), kept when the colour ends just outside most of their circumference."""
    cfg = frame.cfg
    filled = np.zeros_like(mask)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    big = [c for c in contours if cv2.contourArea(c) >= math.pi * (cfg.min_size_px / 2) ** 2]
    if not big:
        return []
    cv2.drawContours(filled, big, -1, 255, thickness=-1)  # legends are holes: fill them
    h, w = mask.shape
    rows, cols = _distance_window(big, (h, w))
    y0, x0 = rows.start, cols.start
    dist = cv2.distanceTransform(filled[rows, cols], cv2.DIST_L2, 3)
    peaks = (dist >= cfg.min_size_px / 2) & (dist >= cv2.dilate(dist, np.ones((5, 5))))
    ys, xs = np.nonzero(peaks)
    radii = dist[ys, xs]
    ys, xs = ys + y0, xs + x0
    order = np.argsort(-radii)
    max_r = cfg.max_size_frac * min(frame.size) / 2
    kept: list[tuple[float, float, float]] = []
    out = []
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    # A large painted area is a plateau of thousands of peaks, nearly all inside a circle
    # already kept: each kept circle marks the peaks it holds at once.
    fx, fy = xs.astype(np.float64), ys.astype(np.float64)
    inside = np.zeros(len(xs), bool)
    for i in order:
        if inside[i]:
            continue
        cx, cy, r = float(xs[i]), float(ys[i]), float(radii[i])
        if r > max_r:
            continue
        kept.append((cx, cy, r))
        if len(kept) > limit:
            break
        d = np.hypot(fx - cx, fy - cy)
        inside |= d < r - 1e-9
        for j in np.flatnonzero(np.abs(d - r) <= 1e-9):  # on the edge: decide as math does
            inside[j] |= math.hypot(fx[j] - cx, fy[j] - cy) < r
        ring = r * 1.12 + 1.5  # just outside a disc, and outside an octagon's corners
        px = np.clip(np.rint(cx + ring * np.cos(angles)).astype(int), 0, w - 1)
        py = np.clip(np.rint(cy + ring * np.sin(angles)).astype(int), 0, h - 1)
        outside = float((filled[py, px] == 0).mean())
        if outside < 0.6:
            continue
        # The sign's own paint runs all round just inside its edge (the legend is inside);
        # in a letter 'C' or a gap between shapes it does not.
        px = np.clip(np.rint(cx + 0.88 * r * np.cos(angles)).astype(int), 0, w - 1)
        py = np.clip(np.rint(cy + 0.88 * r * np.sin(angles)).astype(int), 0, h - 1)
        if float((mask[py, px] > 0).mean()) < 0.85:
            continue
        box = Box(cx - r * 1.04, cy - r * 1.04, r * 2.08, r * 2.08).clipped(*frame.size)
        x0, y0 = int(box.x), int(box.y)
        region = np.zeros((int(math.ceil(box.y2)) - y0, int(math.ceil(box.x2)) - x0), np.uint8)
        cv2.circle(region, (int(round(cx)) - x0, int(round(cy)) - y0), int(r), 1, -1)
        face = _face(frame, region > 0, (x0, y0), body=colour)
        cand = _coloured_face(frame, colour, _ShapeFit(Shape.CIRCLE, outside), box, face)
        if cand is not None and cand.score >= cfg.min_score:
            out.append(dataclasses.replace(cand, found_by="disc"))
    return out


def _disc(size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def find_candidates(bgr: np.ndarray, cfg: CandidateConfig | None = None) -> list[SignCandidate]:
    """Sign candidates in a BGR frame, best first, at most `cfg.max_candidates`."""
    cfg = cfg or CandidateConfig()
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    raw = colour_masks(hsv, cfg)
    kernel = np.ones((3, 3), np.uint8)
    closed = {k: cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel) for k, m in raw.items()}
    frame = _Frame(hsv, closed, raw, cfg)
    cands: list[SignCandidate] = []
    cands += _scan(frame, "red", closed["red"], outer=True, holes=True)
    cands += _scan(frame, "blue", closed["blue"], outer=True, holes=False)
    cands += _inscribed_discs(frame, "red", closed["red"])
    cands += _inscribed_discs(frame, "blue", closed["blue"])
    cands += _scan(frame, "yellow", closed["yellow"], outer=True, holes=False)
    # White, unclosed and closed: its holes are the coloured faces inside a thin white edge,
    # which a closing erases on small signs and which blur breaks open on large ones.
    cands += _scan(frame, "white", raw["white"], outer=cfg.find_white_signs, holes=True)
    cands += _scan(frame, "white", closed["white"], outer=False, holes=True)
    if cfg.find_white_signs:
        # Stripes and digits cut a white sign apart and its pole joins it to the white ground
        # or sky: close small gaps, then open to cut poles (two widths for two sign sizes).
        wide = cv2.morphologyEx(raw["white"], cv2.MORPH_CLOSE, _disc(7))
        for k in (5, 9):
            opened = cv2.morphologyEx(wide, cv2.MORPH_OPEN, _disc(k))
            cands += _scan(frame, "white", opened, outer=True, holes=False)
    return _select(cands, cfg)


def _select(cands: list[SignCandidate], cfg: CandidateConfig) -> list[SignCandidate]:
    """Drop duplicates and candidates nested inside a better one (the white disc inside a red
    ring, the 'O' of STOP), keep the best `max_candidates`."""
    outer = [c for c in cands
             if not any(o is not c and o.box.area > c.box.area and c.box.coverage_by(o.box) > 0.7
                        for o in cands)]
    out = [outer[i] for i in nms([c.box for c in outer], [c.score for c in outer], 0.4)]
    return out[:cfg.max_candidates]


# --- proposals for the classifier --------------------------------------------------------------

@dataclass
class ProposalConfig:
    """High-recall proposals for the sign classifier (`find_proposals`)."""

    red_ratio: float = setting(0.15, "A pixel is sign red when R exceeds max(G, B) by this share "
                                     "of R (after grey-world white balance).", min=0.02, max=0.8)
    red_margin: int = setting(5, "... and by at least this many grey levels.", min=1, max=80)
    loose_red_ratio: float = setting(0.08, "A second, looser red mask (desaturated rims at "
                                           "dusk); 0 = none.", min=0.0, max=0.8)
    loose_red_margin: int = setting(3, "Grey-level margin of the looser red mask.", min=1,
                                    max=80)
    bright_discs: bool = setting(True, "Also propose compact regions brighter than their "
                                       "surroundings (the light face of a ring sign whose red "
                                       "rim is lost in a dark frame), grown by a rim's width.")
    min_paint: float = setting(0.03, "A classified sign is kept only when at least this share "
                                     "of its box is its paint colour (red rim, blue face); 0 = "
                                     "no check. 97 % of the labelled red and blue GTSDB signs "
                                     "(images 300-599) have more.", min=0.0, max=1.0)
    min_size_px: int = setting(
        12, "Smallest proposal side in pixels (at ~10 px the 32 px crop is mostly blur; on the "
            "GTSDB development photos most readings that small were false).", min=4, max=200)
    split_stacked: bool = setting(True, "Also propose the top and bottom squares of red paint "
                                        "regions 1.5-3.5 times as tall as wide (two signs on "
                                        "one post; left and right when side by side).")
    split_stacked_blue: bool = setting(
        False, "... and of blue regions too. Off: on the development photos (GTSDB 300-599, "
               "Kaggle road0-437) none of their squares was a sign, and at 1080p they are "
               "~9 classifier crops a frame.")
    yellow_regions: bool = setting(
        True, "Propose yellow paint regions too (false: the yellow mask only counts as "
              "paint). On the development photos none was a sign the classifier accepted, "
              "and false reads one more tune-half speed value, but it also lets one more "
              "false sign through on the photos without signs (a box they suppressed in the "
              "proposals' NMS), so they stay.")
    max_proposals: int = setting(400, "At most this many proposals per frame (smallest "
                                      "first); each costs the classifier ~0.05 ms.",
                                 min=1, max=1000)


def _balanced(bgr: np.ndarray) -> np.ndarray:
    """Grey-world white balance (uint8): a blue dusk or a yellow street light tints the whole
    frame, and a sign's red rim only stays redder than its surroundings after the tint is
    divided out."""
    means = np.asarray(cv2.mean(bgr[::8, ::8])[:3], np.float32)
    gains = float(means.mean()) / np.maximum(means, 1.0)
    return cv2.transform(bgr, np.diag(gains).astype(np.float32))


def _red(b: np.ndarray, g: np.ndarray, r: np.ndarray, ratio: float, margin: int) -> np.ndarray:
    excess = cv2.subtract(r, cv2.max(g, b))
    need = cv2.max(cv2.convertScaleAbs(r, alpha=ratio), np.full_like(r, margin))
    return cv2.bitwise_and(cv2.compare(excess, need, cv2.CMP_GE),
                           cv2.compare(r, np.full_like(r, 20), cv2.CMP_GE))


PROPOSAL_PAINTS = ("red", "red_loose", "blue", "yellow")
"""The masks of `proposal_masks` whose regions `find_proposals` proposes, in this order (the
dict also holds the priority-road pass's masks, `diamond_masks`, which are never proposed)."""


def find_proposals_near(bgr: np.ndarray, cfg: ProposalConfig, masks: dict[str, np.ndarray],
                        near: Sequence[Box], grow: float) -> list[Box]:
    """`find_proposals` inside each of the `near` boxes grown `grow` times about its centre
    (in `bgr`'s pixels), the boxes in `bgr`'s pixels. Why: a learned proposer's box is a
    heatmap cell's guess of a sign's place and size, while the classifier and the verifier were
    tuned on the tight boxes of paint regions; a window's regions cost ~0.4 ms (ten: ~3.7 ms),
    the whole frame's ~9 ms at 960x540. A region may be as large as in the whole frame."""
    height, width = bgr.shape[:2]
    largest = 0.6 * min(height, width)
    out: list[Box] = []
    for box in near:
        rows, cols = window(box, grow, width, height)
        if rows.stop - rows.start < 2 or cols.stop - cols.start < 2:
            continue
        roi = {k: v[rows, cols] for k, v in masks.items()}
        out += [b.shifted(cols.start, rows.start)
                for b in find_proposals(bgr[rows, cols], cfg, roi, largest)]
    # neighbouring boxes' windows overlap: a region found twice is one proposal
    keep = box_nms(out, [b.area for b in out], 0.9)
    return sorted((out[i] for i in keep), key=lambda b: b.area)


def proposal_masks(bgr: np.ndarray, cfg: ProposalConfig) -> dict[str, np.ndarray]:
    """Loose paint masks (uint8 0/255): red relative to the pixel's own brightness, so a rim in
    a dark or dusky frame (RGB 30,14,15) still counts (twice: a looser mask finds desaturated
    rims, the stricter one keeps rims apart from red next to them); blue and yellow by hue."""
    balanced = _balanced(bgr)
    b, g, r = cv2.split(balanced)
    masks = {"red": _red(b, g, r, cfg.red_ratio, cfg.red_margin)}
    if cfg.loose_red_ratio > 0:
        masks["red_loose"] = _red(b, g, r, cfg.loose_red_ratio, cfg.loose_red_margin)
    hsv = cv2.cvtColor(balanced, cv2.COLOR_BGR2HSV)
    masks["blue"] = cv2.inRange(hsv, (95, 90, 40), (130, 255, 255))
    masks["yellow"] = cv2.inRange(hsv, (15, 80, 90), (35, 255, 255))
    # read by the priority-road pass only (`diamond_proposals`), never proposed as regions
    masks.update(diamond_masks(hsv))
    return masks


def _bright_discs(bgr: np.ndarray, cfg: ProposalConfig) -> list[Box]:
    """Compact, unsaturated regions at least 12 grey levels brighter than their 31 px
    neighbourhood (a sign's light face), grown by a rim's width."""
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    v = hsv[..., 2]
    local = cv2.add(cv2.blur(v, (31, 31)), 12)
    mask = cv2.bitwise_and(cv2.compare(v, local, cv2.CMP_GE),
                           cv2.compare(hsv[..., 1], np.full_like(v, 90), cv2.CMP_LT))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    # a textured frame has thousands of specks: filter them all at once, not one by one
    x, y, w, h, area = (stats[1:, i].astype(np.int64) for i in range(5))
    side = np.maximum(w, h)
    ok = (side >= 7) & (side <= 150) & (w <= 1.5 * h) & (h <= 1.5 * w) & (area >= 0.5 * w * h)
    grow = 0.25 * side + 1
    return [Box(float(x[i] - grow[i]), float(y[i] - grow[i]), float(w[i] + 2 * grow[i]),
                float(h[i] + 2 * grow[i])) for i in np.flatnonzero(ok)]


def box_nms(boxes: list[Box], scores: list[float], iou_threshold: float) -> list[int]:
    """`geometry.nms` (same result: greedy, highest score first, ties in input order),
    vectorised: a 1080p frame has hundreds to a few thousand raw proposals, and a loop over
    them in Python took most of the sign stage's time. Only boxes that overlap can suppress
    one another, and proposals are small: the overlapping pairs are found by a sweep over the
    boxes sorted by left edge, their IoU computed in one pass (same float64 arithmetic as
    `geometry.nms`'s), and the greedy pass walks only those pairs."""
    n = len(boxes)
    if n == 0:
        return []
    xywh = np.array([(b.x, b.y, b.w, b.h) for b in boxes], np.float64)
    x1, y1 = xywh[:, 0], xywh[:, 1]
    x2, y2 = x1 + xywh[:, 2], y1 + xywh[:, 3]
    area = xywh[:, 2] * xywh[:, 3]
    by_x = np.argsort(x1, kind="stable")
    # pairs (a, b), b after a in left-edge order, whose left edge lies before a's right edge:
    # every pair with a positive overlap is among them
    stop = np.searchsorted(x1[by_x], x2[by_x], side="left")
    count = np.maximum(stop - np.arange(n) - 1, 0)
    total = int(count.sum())
    first = np.repeat(np.arange(n), count)
    second = first + 1 + np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    a, b = by_x[first], by_x[second]
    iw = np.minimum(x2[a], x2[b]) - np.maximum(x1[a], x1[b])
    ih = np.minimum(y2[a], y2[b]) - np.maximum(y1[a], y1[b])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = area[a] + area[b] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    close = iou > iou_threshold
    a, b = a[close], b[close]
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for i, j in zip(a.tolist(), b.tolist()):
        neighbours[i].append(j)
        neighbours[j].append(i)
    suppressed = [False] * n
    keep: list[int] = []
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable").tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        for j in neighbours[i]:
            suppressed[j] = True
    return keep


def _stacked_squares(box: Box, min_px: int, largest: float) -> list[Box]:
    """Two signs on one post (a speed limit above a no-overtaking sign, a warning above a
    limit) are one paint region, 1.5-3.5 times as tall as wide: its top and bottom squares are
    the signs (side by side, its left and right ones). The whole region is no sign's box, and
    the classifier reads neither sign through it."""
    long_, short = max(box.w, box.h), min(box.w, box.h)
    if not 1.5 <= long_ / max(short, 1.0) <= 3.5 or not min_px <= short <= largest:
        return []
    return list(_end_boxes(box))


def _end_boxes(box: Box) -> tuple[Box, Box]:
    """The squares at the two ends of a box's long side: top and bottom of a tall box, left
    and right of a wide one."""
    if box.h >= box.w:
        return Box(box.x, box.y, box.w, box.w), Box(box.x, box.y2 - box.w, box.w, box.w)
    return Box(box.x, box.y, box.h, box.h), Box(box.x2 - box.h, box.y, box.h, box.h)


def end_squares(boxes: Sequence[Box], min_ratio: float, min_side: float = 0.0) -> list[Box]:
    """The end squares of every box at least `min_ratio` times as long as wide, each once: the
    top square of a tall box, the left and right ones of a wide box. Why: a colour region often
    runs on past its sign (a speed limit's white face into the panel hung below it, or into a
    light sky beside it), and the classifier reads a sign only through a crop about its own
    square; on the development photos three speed limits were proposed only through such
    boxes. Only the top of a tall box: supplementary panels hang below signs, and the bottom
    squares (a third of the squares at 1080p) read no further sign there. Red regions 1.5-3.5
    times as long are already split both ways (`ProposalConfig.split_stacked`: two signs on
    one post)."""
    if min_ratio <= 0:
        return []
    seen = set(boxes)
    out: list[Box] = []
    for box in boxes:
        if max(box.w, box.h) < min_ratio * min(box.w, box.h):
            continue
        if min(box.w, box.h) < min_side:
            continue
        first, last = _end_boxes(box)
        for end in (first,) if box.h >= box.w else (first, last):
            if end not in seen:
                seen.add(end)
                out.append(end)
    return out


def paint_share(masks: dict[str, np.ndarray], box: Box, colour: str) -> float:
    """Share of `box`'s pixels that are `colour` paint in `proposal_masks` (the loose red mask
    for red): a sign's rim or face covers a fifth or more of its box; letters, faces and lamps
    that a classifier takes for a sign often have none."""
    mask = masks.get("red_loose", masks["red"]) if colour == "red" else masks[colour]
    height, width = mask.shape[:2]
    ys, xs = box.int_slices(width, height)
    region = mask[ys, xs]
    return float(np.count_nonzero(region)) / region.size if region.size else 0.0


PAINT_COLOURS = ("red", "blue", "yellow")


def paint_integrals(masks: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Integral images of the paint masks in PAINT_COLOURS order (red: the loose mask when
    there is one, as `paint_share` reads it): made once a frame, they give any box's paint
    share in four lookups (`max_paint_shares`, the proposal ranker's features)."""
    return [cv2.integral(cv2.threshold(masks.get("red_loose", masks["red"]) if colour == "red"
                                       else masks[colour], 0, 1, cv2.THRESH_BINARY)[1])
            for colour in PAINT_COLOURS]


def pixel_rects(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """N x 4 int x1, y1, x2, y2 of boxes (rows of x y w h, `box_array`) grown to whole pixels
    and clipped to a width x height image."""
    return np.stack([np.clip(np.floor(boxes[:, 0]), 0, width),
                     np.clip(np.floor(boxes[:, 1]), 0, height),
                     np.clip(np.ceil(boxes[:, 0] + boxes[:, 2]), 0, width),
                     np.clip(np.ceil(boxes[:, 1] + boxes[:, 3]), 0, height)], 1).astype(int)


def rect_shares(integral: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """Share of each of `rects` (`pixel_rects`) that is set in the mask of `integral`."""
    x1, y1, x2, y2 = (rects[:, i] for i in range(4))
    count = integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]
    return count / np.maximum((x2 - x1) * (y2 - y1), 1)


def max_paint_shares(masks: dict[str, np.ndarray], boxes: list[Box],
                     integrals: list[np.ndarray] | None = None) -> np.ndarray:
    """For each box, the largest share of its pixels that one paint colour (red, blue,
    yellow; `paint_share`'s masks) covers, from integral images (`paint_integrals`, made here
    unless given): one pass per colour for all boxes."""
    if not boxes:
        return np.zeros(0)
    height, width = masks["red"].shape[:2]
    rects = pixel_rects(box_array(boxes), width, height)
    return np.max([rect_shares(ii, rects)
                   for ii in (integrals or paint_integrals(masks))], axis=0)


BLUE_RIM = 0.1
"""Width of the white rim around a blue sign's face, as a share of the face's width on each
side: how much a small blue region grows to become the sign's box. On GTSDB 00300-00599 it
brought 279 -> 285 of 347 signs with their class (00000-00299: 362 -> 364) for two more
readings on the 141 crowd photos; growing every blue region instead (not only the small
ones) read as many signs and ten more false ones."""


def _region_boxes(contours: Sequence[np.ndarray], holes: np.ndarray, colour: str,
                  cfg: ProposalConfig, largest: float) -> list[Box]:
    """`find_proposals`' boxes for one colour's regions, in contour order: a hole grown by a
    rim's width, a region's own box, and the squares of a stacked pair. A 1080p frame has
    about a thousand regions, nearly all specks: sizes are checked for all at once, and only
    the few that can give a box are looked at one by one."""
    rects = contour_rects(contours)
    x, y, w, h = (rects[:, i].astype(np.float64) for i in range(4))
    side = np.maximum(w, h)
    grow = 0.22 * side + 1  # a ring's rim is ~1/5 of its inner diameter
    # a blue face too small for min_size_px on its own (a 12-16 px keep-right sign has a 10-11
    # px face) is grown by the white rim around it and classified as the whole sign
    rim = np.where(~holes & (side < cfg.min_size_px), BLUE_RIM * side, 0.0) \
        if colour == "blue" else np.zeros_like(side)
    bw = np.where(holes, w + 2 * grow, w + 2 * rim)
    bh = np.where(holes, h + 2 * grow, h + 2 * rim)
    bside = np.maximum(bw, bh)
    own = ((cfg.min_size_px <= bside) & (bside <= largest)
           & ~(bw > 1.8 * bh) & ~(bh > 1.8 * bw))
    own &= ~holes | (side >= 4)
    stacked = np.zeros_like(own)
    if cfg.split_stacked and (colour != "blue" or cfg.split_stacked_blue):
        short = np.minimum(w, h)
        ratio = side / np.maximum(short, 1.0)
        stacked = (~holes & (1.5 <= ratio) & (ratio <= 3.5) & (cfg.min_size_px <= short)
                   & (short <= largest))
    out: list[Box] = []
    for i in np.flatnonzero(own | stacked).tolist():
        if holes[i]:
            g = float(grow[i])
            out.append(Box(float(x[i] - g), float(y[i] - g), float(bw[i]), float(bh[i])))
            continue
        rx, ry, rw, rh = (int(v) for v in rects[i])
        if cv2.contourArea(contours[i]) < 0.12 * rw * rh:
            continue  # thin strokes and lines, not a sign face or ring
        box = Box(float(rx), float(ry), float(rw), float(rh))
        if rim[i] > 0:
            if own[i]:
                r = float(rim[i])
                out.append(Box(float(rx - r), float(ry - r), float(bw[i]), float(bh[i])))
            continue
        if stacked[i]:
            out += _stacked_squares(box, cfg.min_size_px, largest)
        if own[i]:
            out.append(box)
    return out


def find_proposals(bgr: np.ndarray, cfg: ProposalConfig | None = None,
                   masks: dict[str, np.ndarray] | None = None,
                   largest: float | None = None) -> list[Box]:
    """Boxes that may hold a sign, for a classifier to verify: every roughly square region of
    sign paint (red, blue, yellow), every hole in the paint grown by a rim's width (the light
    face inside a red ring or triangle), and compact bright regions grown the same way. No
    inside checks: recall is the point, and the classifier's `background` class rejects tail
    lights, red cars and brick. `masks`: `proposal_masks(bgr, cfg)` when already computed.
    `largest`: a region's largest side (default 0.6 of `bgr`'s short side; a window of a frame
    passes the frame's)."""
    cfg = cfg or ProposalConfig()
    height, width = bgr.shape[:2]
    largest = 0.6 * min(height, width) if largest is None else largest
    kernel = np.ones((3, 3), np.uint8)
    out: list[Box] = []
    masks = masks if masks is not None else proposal_masks(bgr, cfg)
    for colour in PROPOSAL_PAINTS:
        mask = masks.get(colour)
        if mask is None or (colour == "yellow" and not cfg.yellow_regions):
            continue
        # closed: a thin rim broken by blur or JPEG becomes a ring again
        closed = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
        contours, hierarchy = cv2.findContours(closed, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        if hierarchy is not None:
            out += _region_boxes(contours, hierarchy[0][:, 3] >= 0, colour, cfg, largest)
    if cfg.bright_discs:
        out += [b for b in _bright_discs(bgr, cfg)
                if cfg.min_size_px <= max(b.w, b.h) <= largest]
    keep = box_nms(out, [b.area for b in out], 0.6)
    # smallest first under the cap: small far signs are the ones only proposals find
    return sorted((out[i] for i in keep), key=lambda b: b.area)[:cfg.max_proposals]
