"""Stacked proposals: the sign above or below a sign already read, on the same post.

German roads (GTSDB) hang two or three signs of about one width in a column on one post: a
speed limit over a no-overtaking sign, a warning triangle over a limit, a stop sign under a
direction arrow.
The colour regions serve such a column badly: signs of one paint merge into one tall region,
a dark or dusk neighbour leaves no region at all, and a proposal cut from the merged region is
off-centre, so the classifier calls it background. Of the 62 signs of the GTSDB development
photos 00300-00599 missed with their class (2026-12-04), 27 had no box near them and 26 only
boxes the classifier called background, yet it read 46 of those 53 right through their
labelled box; many sat directly above or below a sign that was read.

A sign that was read is the best guide to its neighbours: about the same width, the same
column, one sign height (or a little more, the gap between plates) up or down. Those few boxes
go to the classifier in a second batch and are read under the same rules as any other box
(threshold, paint, people, verifier, OCR's second opinion on a value). Measured in
docs/sign_classifier.md; `analysis.ocr.stacked_proposals` turns it off.
"""
from __future__ import annotations

from collections.abc import Iterable

from vlm_node.geometry import Box

STEPS = (1.0, 1.15)
"""Distances between the centres of a sign and a neighbour, in their mean height (1.0: touching;
1.15: a gap of 0.15 of it, typical between plates). A finer set (1.0, 1.1, 1.2, 1.3), a second
round seeded by the neighbours found, and neighbours to the left and right found no more signs
on the development photos."""

SCALES = (0.8, 1.0, 1.25)
"""A neighbour's size relative to the sign, on the sign's vertical axis: mostly the same width,
but a priority diamond or a stop octagon is wider than the disc under it. Against 1.0 alone,
GTSDB 00300-00599 289 -> 293 signs with their class, 00000-00299 368 -> 371; five sizes
(0.7-1.4) read one more sign, lost a speed value to a neighbour's reading and read two more
unlabelled Kaggle signs."""

KNOWN_IOU = 0.2
"""A neighbour box overlapping a box already read by more than this is that sign again (the
reader drops those before classifying)."""


def stacked_boxes(signs: Iterable[Box], width: int, height: int) -> list[Box]:
    """Boxes of `SCALES` times the size of each sign in `signs`, on its vertical axis, `STEPS`
    mean heights above and below it, inside the `width` x `height` frame, in order (sign by
    sign, scale by scale; nearest first, above before below)."""
    out: list[Box] = []
    for sign in signs:
        cx, cy = sign.x + sign.w / 2, sign.y + sign.h / 2
        for scale in SCALES:
            w, h = sign.w * scale, sign.h * scale
            for step in STEPS:
                for direction in (-1, 1):
                    y = cy + direction * step * (sign.h + h) / 2
                    box = Box(cx - w / 2, y - h / 2, w, h)
                    if box.x < 0 or box.y < 0 or box.x2 > width or box.y2 > height:
                        continue
                    out.append(box)
    return out
