"""Traffic-sign faces drawn from geometry and real fonts, as RGBA images (alpha = sign shape).

No traffic-sign photographs with a clear licence were found, so evaluation and demo scenes use
signs drawn here in the Vienna Convention look (plus the US "SPEED LIMIT" rectangle). Drawing
happens on a 4x supersampled canvas and is downsampled with Lanczos, which gives antialiased
edges without depending on PIL's (aliased) polygon rasteriser.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vlm_node import vocab

SUPERSAMPLE = 4

Color = tuple[int, int, int]
Point = tuple[float, float]

# Approximations of the RAL colours used by European signs (RGB).
RED: Color = (200, 22, 30)
WHITE: Color = (246, 246, 242)
BLACK: Color = (24, 24, 24)
BLUE: Color = (0, 82, 160)
YELLOW: Color = (250, 196, 0)
GREY: Color = (120, 120, 120)
DARK_GREY: Color = (70, 70, 70)
GREEN: Color = (20, 140, 60)
AMBER: Color = (245, 160, 0)

STYLES = ("vienna", "us")


@lru_cache(maxsize=None)
def font_path(name: str = "DejaVuSans-Bold.ttf") -> Path:
    """A TrueType font shipped with matplotlib (DejaVu), so no system fonts are needed."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
    if not path.is_file():
        raise FileNotFoundError(f"font {name} not found in matplotlib's data ({path})")
    return path


@lru_cache(maxsize=32)
def _font(size: int, name: str = "DejaVuSans-Bold.ttf") -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(name)), size)


@dataclass(frozen=True, slots=True)
class SignSpec:
    """What to draw: a vocabulary class, the number on it (if any) and the regional style.

    `style="us"` draws MUTCD shapes where they differ (the white SPEED LIMIT rectangle, the
    yellow advisory plaque), whose numbers are in mph.
    """

    sign_class: str
    value: float | None = None
    style: str = "vienna"

    def __post_init__(self) -> None:
        if self.sign_class not in RENDERERS:
            raise ValueError(f"cannot render sign class {self.sign_class!r}; renderable: "
                             f"{', '.join(RENDERABLE_CLASSES)}")
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {self.style!r}")
        if self.sign_class in VALUE_CLASSES and self.value is None:
            raise ValueError(f"{self.sign_class} needs a value")
        if self.sign_class not in VALUE_CLASSES and self.value is not None:
            raise ValueError(f"{self.sign_class} carries no number (value must be None)")

    @property
    def unit(self) -> str:
        """The vocabulary unit of `value` ("" for signs without a number)."""
        if self.sign_class not in VALUE_CLASSES:
            return ""
        units = vocab.VALUE_RULES[self.sign_class][0]
        if self.style == "us" and "mph" in units:
            return "mph"
        return units[0]

    @property
    def aspect(self) -> float:
        """Width / height of the drawn sign."""
        return _ASPECT.get((self.sign_class, self.style), _ASPECT.get((self.sign_class, ""), 1.0))


def format_value(value: float) -> str:
    """The number as printed on a sign: integers without decimals, others with one (3.5)."""
    return str(int(round(value))) if float(value).is_integer() else f"{value:.1f}"


class _Canvas:
    """Drawing in unit coordinates (0..aspect horizontally, 0..1 vertically) on a supersampled
    RGBA image, so sign geometry reads like the construction drawings it imitates."""

    def __init__(self, height_px: int, aspect: float = 1.0) -> None:
        self.out_h = max(8, int(height_px))
        self.out_w = max(8, int(round(self.out_h * aspect)))
        self.s = self.out_h * SUPERSAMPLE
        self.image = Image.new("RGBA", (self.out_w * SUPERSAMPLE, self.s), (0, 0, 0, 0))
        self.draw = ImageDraw.Draw(self.image)

    def _p(self, pts: Sequence[Point]) -> list[tuple[float, float]]:
        return [(x * self.s, y * self.s) for x, y in pts]

    def polygon(self, pts: Sequence[Point], fill: Color) -> None:
        self.draw.polygon(self._p(pts), fill=fill + (255,))

    def disc(self, cx: float, cy: float, r: float, fill: Color) -> None:
        s = self.s
        self.draw.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s],
                          fill=fill + (255,))

    def rect(self, x1: float, y1: float, x2: float, y2: float, fill: Color,
             radius: float = 0.0) -> None:
        s = self.s
        box = [x1 * s, y1 * s, x2 * s, y2 * s]
        if radius > 0:
            self.draw.rounded_rectangle(box, radius=radius * s, fill=fill + (255,))
        else:
            self.draw.rectangle(box, fill=fill + (255,))

    def line(self, pts: Sequence[Point], width: float, fill: Color) -> None:
        self.draw.line(self._p(pts), fill=fill + (255,), width=max(1, int(width * self.s)),
                       joint="curve")
        # Round caps: PIL lines end square, which looks wrong for pictogram limbs.
        for x, y in (pts[0], pts[-1]):
            self.disc(x, y, width / 2, fill)

    def arc(self, cx: float, cy: float, r: float, start: float, end: float, width: float,
            fill: Color) -> None:
        s = self.s
        self.draw.arc([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], start, end,
                      fill=fill + (255,), width=max(1, int(width * s)))

    def text(self, text: str, cx: float, cy: float, max_w: float, height: float, fill: Color,
             font: str = "DejaVuSans-Bold.ttf") -> None:
        """Draw `text` with its ink exactly `height` tall, centred on (cx, cy); squeezed
        horizontally to `max_w` when wider (a stand-in for the condensed DIN sign fonts)."""
        big = _font(200, font)
        x0, y0, x1, y1 = big.getbbox(text)
        mask = Image.new("L", (x1 - x0 + 4, y1 - y0 + 4), 0)
        ImageDraw.Draw(mask).text((2 - x0, 2 - y0), text, fill=255, font=big)
        ink = mask.getbbox()
        if ink is None:
            return
        mask = mask.crop(ink)
        th = height * self.s
        tw = min(max_w * self.s, th * mask.width / mask.height)
        mask = mask.resize((max(1, int(round(tw))), max(1, int(round(th)))), Image.LANCZOS)
        layer = Image.new("RGBA", mask.size, fill + (255,))
        pos = (int(round(cx * self.s - mask.width / 2)), int(round(cy * self.s - mask.height / 2)))
        self.image.paste(layer, pos, mask)

    def clip_to(self, shape: "_Canvas") -> None:
        """Keep only pixels inside `shape`'s alpha (stripes and bars stay inside the sign)."""
        alpha = np.minimum(np.asarray(self.image.getchannel("A")),
                           np.asarray(shape.image.getchannel("A")))
        self.image.putalpha(Image.fromarray(alpha))

    def finish(self) -> np.ndarray:
        small = self.image.resize((self.out_w, self.out_h), Image.LANCZOS)
        return np.asarray(small, dtype=np.uint8).copy()


# --- sign bodies ----------------------------------------------------------------------------


def _ring_sign(c: _Canvas, rim: Color = RED, inner: Color = WHITE, rim_w: float = 0.11) -> None:
    """A Vienna prohibitory disc: thin white edge, coloured rim, inner disc."""
    c.disc(0.5, 0.5, 0.5, WHITE)
    c.disc(0.5, 0.5, 0.485, rim)
    c.disc(0.5, 0.5, 0.485 - rim_w, inner)


def _blue_disc(c: _Canvas) -> None:
    c.disc(0.5, 0.5, 0.5, WHITE)
    c.disc(0.5, 0.5, 0.485, BLUE)


def _triangle(c: _Canvas, up: bool = True, inner: Color = WHITE) -> None:
    """A warning (apex up) or yield (apex down) triangle with red border and white edge."""
    h = math.sqrt(3) / 2  # equilateral, side 1

    def tri(inset: float) -> list[Point]:
        # Inset measured perpendicular to the edges: the incentre sits at 1/3 height.
        k = 1 - inset / (h / 3)
        cx, cy = 0.5, (1 - h) / 2 + (2 * h / 3 if up else h / 3)
        base = [(0.0, (1 + h) / 2), (1.0, (1 + h) / 2), (0.5, (1 - h) / 2)] if up else \
            [(0.0, (1 - h) / 2), (1.0, (1 - h) / 2), (0.5, (1 + h) / 2)]
        return [(cx + (x - cx) * k, cy + (y - cy) * k) for x, y in base]

    c.polygon(tri(0.0), WHITE)
    c.polygon(tri(0.012), RED)
    c.polygon(tri(0.105), inner)


def _octagon(c: _Canvas, inset: float, fill: Color) -> None:
    r = (0.5 - inset) / math.cos(math.pi / 8)
    c.polygon([(0.5 + r * math.cos(math.pi / 8 + k * math.pi / 4),
                0.5 + r * math.sin(math.pi / 8 + k * math.pi / 4)) for k in range(8)], fill)


def _stripes(c: _Canvas, color: Color, n: int = 5, width: float = 0.025,
             gap: float = 0.045) -> None:
    """Parallel diagonal lines from top right to bottom left (the 'end of' marking)."""
    layer = _Canvas(c.out_h, c.out_w / c.out_h)
    for i in range(n):
        off = (i - (n - 1) / 2) * gap
        layer.line([(0.85 + off, 0.15 + off), (0.15 + off, 0.85 + off)], width, color)
    layer.clip_to(c)
    c.image.alpha_composite(layer.image)


def _red_bar(c: _Canvas, color: Color = RED, width: float = 0.1, cross: bool = False) -> None:
    """The diagonal bar of prohibition signs (top left to bottom right), clipped to the disc."""
    layer = _Canvas(c.out_h, 1.0)
    layer.line([(0.15, 0.15), (0.85, 0.85)], width, color)
    if cross:
        layer.line([(0.85, 0.15), (0.15, 0.85)], width, color)
    mask = _Canvas(c.out_h, 1.0)
    mask.disc(0.5, 0.5, 0.485, WHITE)
    layer.clip_to(mask)
    c.image.alpha_composite(layer.image)


# --- pictograms (unit coordinates inside the sign) -------------------------------------------


def _arrow(c: _Canvas, pts: Sequence[Point], width: float, head: float, fill: Color) -> None:
    """A polyline arrow whose head points along the last segment."""
    (x0, y0), (x1, y1) = pts[-2], pts[-1]
    ang = math.atan2(y1 - y0, x1 - x0)
    back = (x1 - head * 0.9 * math.cos(ang), y1 - head * 0.9 * math.sin(ang))
    c.line([*pts[:-1], back], width, fill)
    nx, ny = -math.sin(ang), math.cos(ang)
    c.polygon([(x1, y1), (back[0] + nx * head * 0.6, back[1] + ny * head * 0.6),
               (back[0] - nx * head * 0.6, back[1] - ny * head * 0.6)], fill)


def _car(c: _Canvas, cx: float, cy: float, w: float, fill: Color) -> None:
    """A car seen from behind: body, cabin and wheels."""
    h = w * 0.75
    c.rect(cx - w / 2, cy - h * 0.05, cx + w / 2, cy + h * 0.45, fill, radius=w * 0.12)
    c.polygon([(cx - w * 0.38, cy), (cx + w * 0.38, cy), (cx + w * 0.3, cy - h * 0.45),
               (cx - w * 0.3, cy - h * 0.45)], fill)
    c.rect(cx - w * 0.45, cy + h * 0.35, cx - w * 0.25, cy + h * 0.6, fill)
    c.rect(cx + w * 0.25, cy + h * 0.35, cx + w * 0.45, cy + h * 0.6, fill)


def _person(c: _Canvas, x: float, y: float, s: float, fill: Color, walking: bool = True) -> None:
    """A walking figure `s` tall whose feet are at (x, y)."""
    w = s * 0.12
    hip, neck = (x, y - s * 0.45), (x + s * 0.05, y - s * 0.8)
    c.disc(x + s * 0.08, y - s * 0.92, s * 0.08, fill)
    c.line([neck, hip], w, fill)
    spread = 0.22 if walking else 0.08
    c.line([hip, (x - s * spread, y)], w, fill)
    c.line([hip, (x + s * 0.05, y - s * 0.22), (x + s * spread, y)], w, fill)
    c.line([(neck[0], neck[1] + s * 0.05), (x - s * 0.2, y - s * 0.5)], w * 0.9, fill)
    c.line([(neck[0], neck[1] + s * 0.05), (x + s * 0.25, y - s * 0.55)], w * 0.9, fill)


# --- one function per class -------------------------------------------------------------------


def _speed_limit(c: _Canvas, spec: SignSpec) -> None:
    assert spec.value is not None
    text = format_value(spec.value)
    if spec.style == "us":
        # MUTCD R2-1: white rectangle, black border line, SPEED / LIMIT above the number.
        a = c.out_w / c.out_h
        c.rect(0, 0, a, 1, BLACK, radius=0.06)
        c.rect(0.012, 0.012, a - 0.012, 0.988, WHITE, radius=0.05)
        c.rect(0.03, 0.03, a - 0.03, 0.97, BLACK, radius=0.045)
        c.rect(0.045, 0.045, a - 0.045, 0.955, WHITE, radius=0.035)
        c.text("SPEED", a / 2, 0.17, a * 0.78, 0.12, BLACK)
        c.text("LIMIT", a / 2, 0.36, a * 0.7, 0.12, BLACK)
        c.text(text, a / 2, 0.68, a * 0.76, 0.4, BLACK)
        return
    _ring_sign(c)
    # Three digits are squeezed and a little lower, as on real signs.
    wide = len(text) >= 3
    c.text(text, 0.5, 0.5, 0.68 if wide else 0.62, 0.36 if wide else 0.4, BLACK)


def _end_speed_limit(c: _Canvas, spec: SignSpec) -> None:
    assert spec.value is not None
    c.disc(0.5, 0.5, 0.5, WHITE)
    c.disc(0.5, 0.5, 0.49, DARK_GREY)
    c.disc(0.5, 0.5, 0.478, WHITE)
    text = format_value(spec.value)
    c.text(text, 0.5, 0.5, 0.62 if len(text) < 3 else 0.7, 0.4, GREY)
    _stripes(c, BLACK)


def _minimum_speed(c: _Canvas, spec: SignSpec) -> None:
    assert spec.value is not None
    _blue_disc(c)
    text = format_value(spec.value)
    c.text(text, 0.5, 0.5, 0.62 if len(text) < 3 else 0.7, 0.4, WHITE)


def _advisory_speed(c: _Canvas, spec: SignSpec) -> None:
    assert spec.value is not None
    # Rendered as the US W13-1P plaque: yellow square, "45" over "MPH" (or "km/h").
    c.rect(0, 0, 1, 1, BLACK, radius=0.08)
    c.rect(0.02, 0.02, 0.98, 0.98, YELLOW, radius=0.07)
    c.rect(0.05, 0.05, 0.95, 0.95, BLACK, radius=0.06)
    c.rect(0.07, 0.07, 0.93, 0.93, YELLOW, radius=0.05)
    c.text(format_value(spec.value), 0.5, 0.4, 0.72, 0.4, BLACK)
    c.text("MPH" if spec.unit == "mph" else "km/h", 0.5, 0.78, 0.6, 0.16, BLACK)


def _stop(c: _Canvas, spec: SignSpec) -> None:
    _octagon(c, 0.0, WHITE)
    _octagon(c, 0.025, RED)
    c.text("STOP", 0.5, 0.5, 0.78, 0.3, WHITE)


def _yield(c: _Canvas, spec: SignSpec) -> None:
    _triangle(c, up=False)


def _priority_road(c: _Canvas, spec: SignSpec, end: bool = False) -> None:
    c.polygon([(0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.0, 0.5)], DARK_GREY)
    c.polygon([(0.5, 0.01), (0.99, 0.5), (0.5, 0.99), (0.01, 0.5)], WHITE)
    c.polygon([(0.5, 0.2), (0.8, 0.5), (0.5, 0.8), (0.2, 0.5)], YELLOW)
    if end:
        _stripes(c, DARK_GREY, n=5, width=0.03, gap=0.05)


def _no_entry(c: _Canvas, spec: SignSpec) -> None:
    c.disc(0.5, 0.5, 0.5, WHITE)
    c.disc(0.5, 0.5, 0.485, RED)
    c.rect(0.18, 0.41, 0.82, 0.59, WHITE)


def _no_vehicles(c: _Canvas, spec: SignSpec) -> None:
    _ring_sign(c)


def _no_overtaking(c: _Canvas, spec: SignSpec, end: bool = False) -> None:
    if end:
        c.disc(0.5, 0.5, 0.5, WHITE)
        c.disc(0.5, 0.5, 0.49, DARK_GREY)
        c.disc(0.5, 0.5, 0.478, WHITE)
        _car(c, 0.34, 0.5, 0.22, GREY)
        _car(c, 0.66, 0.5, 0.22, GREY)
        _stripes(c, BLACK)
        return
    _ring_sign(c)
    _car(c, 0.34, 0.5, 0.22, RED)
    _car(c, 0.66, 0.5, 0.22, BLACK)


def _no_turn(c: _Canvas, spec: SignSpec) -> None:
    _ring_sign(c)
    if spec.sign_class == "no_u_turn":
        _arrow(c, [(0.6, 0.72), (0.6, 0.42)], 0.07, 0.0, BLACK)
        c.arc(0.5, 0.42, 0.1, 180, 360, 0.07, BLACK)
        _arrow(c, [(0.4, 0.42), (0.4, 0.7)], 0.07, 0.16, BLACK)
    else:
        sx = 1 if spec.sign_class == "no_right_turn" else -1
        _arrow(c, [(0.5 - 0.08 * sx, 0.75), (0.5 - 0.08 * sx, 0.42), (0.5 + 0.22 * sx, 0.42)],
               0.08, 0.18, BLACK)
    _red_bar(c)


def _no_parking(c: _Canvas, spec: SignSpec) -> None:
    _ring_sign(c, inner=BLUE)
    _red_bar(c, cross=spec.sign_class == "no_stopping")


def _value_limit(c: _Canvas, spec: SignSpec) -> None:
    assert spec.value is not None
    _ring_sign(c)
    text = f"{format_value(spec.value)} {spec.unit}"
    narrow = spec.sign_class == "width_limit"
    c.text(text, 0.5, 0.5, 0.42 if narrow else 0.6, 0.16 if narrow else 0.2, BLACK)
    if spec.sign_class == "height_limit":
        c.polygon([(0.42, 0.2), (0.58, 0.2), (0.5, 0.3)], BLACK)
        c.polygon([(0.42, 0.8), (0.58, 0.8), (0.5, 0.7)], BLACK)
    elif spec.sign_class == "width_limit":
        c.polygon([(0.27, 0.42), (0.27, 0.58), (0.18, 0.5)], BLACK)
        c.polygon([(0.73, 0.42), (0.73, 0.58), (0.82, 0.5)], BLACK)


def _mandatory(c: _Canvas, spec: SignSpec) -> None:
    _blue_disc(c)
    k = spec.sign_class
    if k == "ahead_only":
        _arrow(c, [(0.5, 0.8), (0.5, 0.2)], 0.1, 0.26, WHITE)
    elif k in ("turn_left", "turn_right"):
        sx = 1 if k == "turn_right" else -1
        _arrow(c, [(0.5 - 0.12 * sx, 0.8), (0.5 - 0.12 * sx, 0.45), (0.5 + 0.3 * sx, 0.45)],
               0.1, 0.26, WHITE)
    elif k in ("keep_left", "keep_right"):
        sx = 1 if k == "keep_right" else -1
        _arrow(c, [(0.5 - 0.2 * sx, 0.22), (0.5 + 0.2 * sx, 0.72)], 0.1, 0.26, WHITE)
    elif k == "roundabout":
        for i in range(3):
            a0 = -90 + i * 120
            c.arc(0.5, 0.5, 0.24, a0 + 20, a0 + 95, 0.08, WHITE)
            ang = math.radians(a0 + 100)
            tip = (0.5 + 0.24 * math.cos(ang), 0.5 + 0.24 * math.sin(ang))
            tx, ty = -math.sin(ang), math.cos(ang)
            nx, ny = math.cos(ang), math.sin(ang)
            base = (tip[0] - tx * 0.1, tip[1] - ty * 0.1)
            c.polygon([(tip[0] + tx * 0.04, tip[1] + ty * 0.04),
                       (base[0] + nx * 0.09, base[1] + ny * 0.09),
                       (base[0] - nx * 0.09, base[1] - ny * 0.09)], WHITE)


def _one_way(c: _Canvas, spec: SignSpec) -> None:
    a = c.out_w / c.out_h
    c.rect(0, 0, a, 1, WHITE, radius=0.05)
    c.rect(0.03, 0.03, a - 0.03, 0.97, BLUE, radius=0.04)
    c.polygon([(0.25, 0.38), (a - 0.6, 0.38), (a - 0.6, 0.2), (a - 0.2, 0.5),
               (a - 0.6, 0.8), (a - 0.6, 0.62), (0.25, 0.62)], WHITE)


def _blue_square(c: _Canvas) -> None:
    c.rect(0, 0, 1, 1, WHITE, radius=0.06)
    c.rect(0.03, 0.03, 0.97, 0.97, BLUE, radius=0.05)


def _pedestrian_crossing(c: _Canvas, spec: SignSpec) -> None:
    _blue_square(c)
    c.polygon([(0.5, 0.1), (0.9, 0.86), (0.1, 0.86)], WHITE)
    for i in range(4):
        x = 0.25 + i * 0.14
        c.polygon([(x, 0.82), (x + 0.08, 0.82), (x + 0.06, 0.74), (x - 0.01, 0.74)], BLACK)
    _person(c, 0.5, 0.7, 0.42, BLACK)


def _parking(c: _Canvas, spec: SignSpec) -> None:
    _blue_square(c)
    c.text("P", 0.5, 0.5, 0.6, 0.68, WHITE)


def _motorway(c: _Canvas, spec: SignSpec) -> None:
    _blue_square(c)
    # Two carriageways passing under a bridge, in perspective.
    c.rect(0.15, 0.22, 0.85, 0.32, WHITE)
    c.polygon([(0.3, 0.36), (0.46, 0.36), (0.4, 0.85), (0.14, 0.85)], WHITE)
    c.polygon([(0.54, 0.36), (0.7, 0.36), (0.86, 0.85), (0.6, 0.85)], WHITE)
    if spec.sign_class == "end_motorway":
        layer = _Canvas(c.out_h, 1.0)
        layer.line([(0.9, 0.1), (0.1, 0.9)], 0.09, RED)
        c.image.alpha_composite(layer.image)


def _warning(c: _Canvas, spec: SignSpec) -> None:
    _triangle(c, up=True)
    k = spec.sign_class
    # The triangle's inner area spans roughly y 0.35..0.85 around x = 0.5.
    if k == "general_caution":
        c.polygon([(0.465, 0.4), (0.535, 0.4), (0.515, 0.68), (0.485, 0.68)], BLACK)
        c.disc(0.5, 0.76, 0.035, BLACK)
    elif k == "traffic_signals":
        c.rect(0.43, 0.36, 0.57, 0.84, BLACK, radius=0.03)
        c.disc(0.5, 0.44, 0.045, RED)
        c.disc(0.5, 0.6, 0.045, AMBER)
        c.disc(0.5, 0.76, 0.045, GREEN)
    elif k == "roadworks":
        c.polygon([(0.3, 0.82), (0.7, 0.82), (0.62, 0.74), (0.38, 0.77)], BLACK)  # heap
        _person(c, 0.5, 0.8, 0.38, BLACK)
        c.line([(0.4, 0.6), (0.34, 0.76)], 0.025, BLACK)  # shovel
    elif k == "children":
        _person(c, 0.42, 0.83, 0.4, BLACK)
        _person(c, 0.6, 0.83, 0.3, BLACK)
    elif k == "pedestrian_crossing":
        _person(c, 0.5, 0.83, 0.42, BLACK)
    elif k in ("curve_left", "curve_right"):
        sx = 1 if k == "curve_right" else -1
        _arrow(c, [(0.5 - 0.06 * sx, 0.84), (0.5 - 0.06 * sx, 0.62), (0.5 + 0.02 * sx, 0.5),
                   (0.5 + 0.1 * sx, 0.4)], 0.05, 0.12, BLACK)
    elif k == "slippery_road":
        _car(c, 0.5, 0.55, 0.2, BLACK)
        for sx in (-1, 1):
            c.line([(0.5 + sx * 0.05, 0.68), (0.5 + sx * 0.11, 0.74), (0.5 + sx * 0.05, 0.8),
                    (0.5 + sx * 0.11, 0.86)], 0.022, BLACK)
    elif k == "railway_crossing":
        for x in (0.34, 0.5, 0.66):
            c.rect(x - 0.02, 0.5, x + 0.02, 0.82, BLACK)
        c.rect(0.28, 0.56, 0.72, 0.6, BLACK)
        c.rect(0.28, 0.68, 0.72, 0.72, BLACK)
    elif k == "animals":
        # A leaping deer reduced to body, legs, neck and antlers.
        c.polygon([(0.35, 0.62), (0.58, 0.56), (0.62, 0.64), (0.38, 0.7)], BLACK)
        c.line([(0.38, 0.68), (0.3, 0.8)], 0.025, BLACK)
        c.line([(0.42, 0.68), (0.4, 0.82)], 0.025, BLACK)
        c.line([(0.58, 0.62), (0.68, 0.74)], 0.025, BLACK)
        c.line([(0.56, 0.6), (0.66, 0.5)], 0.03, BLACK)
        c.line([(0.62, 0.52), (0.64, 0.42)], 0.015, BLACK)
        c.line([(0.66, 0.5), (0.7, 0.42)], 0.015, BLACK)


def _end_priority_road(c: _Canvas, spec: SignSpec) -> None:
    _priority_road(c, spec, end=True)


def _end_no_overtaking(c: _Canvas, spec: SignSpec) -> None:
    _no_overtaking(c, spec, end=True)


Renderer = Callable[[_Canvas, SignSpec], None]

RENDERERS: dict[str, Renderer] = {
    "speed_limit": _speed_limit,
    "end_speed_limit": _end_speed_limit,
    "minimum_speed": _minimum_speed,
    "advisory_speed": _advisory_speed,
    "stop": _stop,
    "yield": _yield,
    "priority_road": _priority_road,
    "end_priority_road": _end_priority_road,
    "no_entry": _no_entry,
    "no_vehicles": _no_vehicles,
    "no_overtaking": _no_overtaking,
    "end_no_overtaking": _end_no_overtaking,
    "no_left_turn": _no_turn,
    "no_right_turn": _no_turn,
    "no_u_turn": _no_turn,
    "no_parking": _no_parking,
    "no_stopping": _no_parking,
    "weight_limit": _value_limit,
    "height_limit": _value_limit,
    "width_limit": _value_limit,
    "ahead_only": _mandatory,
    "turn_left": _mandatory,
    "turn_right": _mandatory,
    "keep_left": _mandatory,
    "keep_right": _mandatory,
    "roundabout": _mandatory,
    "one_way": _one_way,
    "pedestrian_crossing": _pedestrian_crossing,
    "children": _warning,
    "roadworks": _warning,
    "traffic_signals": _warning,
    "general_caution": _warning,
    "slippery_road": _warning,
    "curve_left": _warning,
    "curve_right": _warning,
    "railway_crossing": _warning,
    "animals": _warning,
    "parking": _parking,
    "motorway": _motorway,
    "end_motorway": _motorway,
}

# Every renderable class must be a vocabulary class (import fails loudly otherwise).
for _name in RENDERERS:
    assert _name in vocab.SIGN_CLASSES, f"renderer for {_name!r}, which TrafficSign.msg lacks"

RENDERABLE_CLASSES: tuple[str, ...] = tuple(RENDERERS)
VALUE_CLASSES: frozenset[str] = frozenset(vocab.VALUE_RULES)

_ASPECT: dict[tuple[str, str], float] = {
    ("speed_limit", "us"): 0.8,  # MUTCD R2-1 is 24 x 30 in
    ("one_way", ""): 2.0,
}


def render_sign(spec: SignSpec, height: int = 200) -> np.ndarray:
    """The sign as an RGBA uint8 array `height` pixels tall (width from the sign's aspect);
    alpha is the sign's shape, antialiased."""
    canvas = _Canvas(height, spec.aspect)
    RENDERERS[spec.sign_class](canvas, spec)
    return canvas.finish()
