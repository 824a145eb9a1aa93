"""Synthetic licence plates: a rendered fake plate replaces a detected one, so an anonymized
frame still looks like a road scene (a blurred rectangle on every car draws the eye and changes
what a scene-understanding model sees) while carrying nothing of the real registration.

Nothing of the original plate is used except its colour family (yellow or white background,
so a UK rear plate stays yellow) and its background brightness (a plate in shadow stays dark).
The characters are random, drawn from the caller's generator (seeded per tracked plate, so a
fake plate does not flicker between frames); they are not checked against any register, and a
chance match with a real registration would still say nothing about the vehicle in the image.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # no I, O, Q: too easily confused with 1 and 0
DIGITS = "0123456789"
# Layouts of one-line and two-line plates: L = letter, N = digit, space = gap.
ONE_LINE = ("LL NNNN", "LLL NNN", "LL NN LLL", "NNN LLL", "L NNN LL", "LL NNN L")
TWO_LINE = (("LL", "NNNN"), ("LLL", "NNN"), ("NN", "LLNN"))
WHITE = (238, 240, 236)  # BGR
YELLOW = (20, 200, 250)
INK = (28, 28, 28)

_CANVAS_H = 120  # rendering height in pixels; the result is resized to the target region


@lru_cache(maxsize=1)
def _font_file() -> Path:
    """DejaVu Sans Bold from matplotlib's data: a condensed-looking bold sans close to plate
    lettering, available without system fonts."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
    if not path.is_file():
        raise FileNotFoundError(f"font for synthetic plates not found: {path}")
    return path


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_font_file()), size)


def random_text(rng: np.random.Generator, two_lines: bool) -> list[str]:
    """Random characters in a plate-like layout (one string per line)."""
    layouts = TWO_LINE if two_lines else tuple((x,) for x in ONE_LINE)
    layout = layouts[int(rng.integers(len(layouts)))]
    return ["".join(LETTERS[int(rng.integers(len(LETTERS)))] if c == "L" else
                    DIGITS[int(rng.integers(10))] if c == "N" else " " for c in line)
            for line in layout]


def _is_yellow(roi: np.ndarray) -> bool:
    hsv = cv2.cvtColor(roi, cv2.COLOR_BGR2HSV)
    yellow = (hsv[..., 0] >= 15) & (hsv[..., 0] <= 35) & (hsv[..., 1] > 100) & (hsv[..., 2] > 90)
    return float(yellow.mean()) > 0.3


def render_plate(roi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A fake plate of the same size as `roi` (HxWx3 BGR uint8), in the colour family and
    brightness of `roi`, with random characters, a dark border and rounded proportions."""
    rh, rw = roi.shape[:2]
    aspect = max(rw / max(rh, 1), 0.5)
    ch = _CANVAS_H
    cw = max(int(round(ch * aspect)), 24)
    background = YELLOW if _is_yellow(roi) else WHITE
    canvas = Image.new("RGB", (cw, ch), background[::-1])
    draw = ImageDraw.Draw(canvas)
    border = max(2, ch // 28)
    inset = max(2, ch // 20)
    draw.rounded_rectangle([inset, inset, cw - 1 - inset, ch - 1 - inset], radius=ch // 10,
                           outline=INK[::-1], width=border)
    lines = random_text(rng, two_lines=aspect < 2.2)
    inner_w, inner_h = cw - 4 * inset - 2 * border, ch - 4 * inset - 2 * border
    line_h = inner_h / len(lines)
    size = int(line_h * 0.95)
    while size > 6:  # largest font for which every line fits the plate
        font = _font(size)
        widths = [draw.textbbox((0, 0), t, font=font)[2] for t in lines]
        if max(widths) <= inner_w * 0.92:
            break
        size -= 2
    font = _font(max(size, 6))
    top = (ch - line_h * len(lines)) / 2
    for i, text in enumerate(lines):
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
        x = (cw - (x1 - x0)) / 2 - x0
        y = top + i * line_h + (line_h - (y1 - y0)) / 2 - y0
        draw.text((x, y), text, fill=INK[::-1], font=font)
    plate = cv2.cvtColor(np.asarray(canvas), cv2.COLOR_RGB2BGR)
    plate = cv2.resize(plate, (rw, rh), interpolation=cv2.INTER_AREA)
    # match the brightness of the real plate's background (its brightest tenth: shadow, night),
    # not its content
    target = float(np.percentile(cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY), 90))
    current = float(np.percentile(cv2.cvtColor(plate, cv2.COLOR_BGR2GRAY), 90))
    gain = float(np.clip(target / max(current, 1.0), 0.35, 1.05))
    return np.clip(plate.astype(np.float32) * gain, 0, 255).astype(np.uint8)
