"""Argument types shared by the subcommands, so every `--size` reads and fails the same way."""
from __future__ import annotations

import argparse

MIN_SIDE, MAX_SIDE = 16, 8192


def frame_size(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H). An argparse `type`: a bad value becomes a usage error naming the
    option."""
    w, sep, h = text.strip().lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}")
    size = int(w), int(h)
    if not all(MIN_SIDE <= v <= MAX_SIDE for v in size):
        raise argparse.ArgumentTypeError(
            f"{text!r}: width and height must be between {MIN_SIDE} and {MAX_SIDE}")
    return size


def frame_sizes(text: str) -> list[tuple[int, int]]:
    """'WxH,WxH,...' -> [(W, H), ...]."""
    return [frame_size(part) for part in text.split(",") if part.strip()]
