"""Street-like frames assembled from labelled photos, for benchmarks that depend on resolution
(`vlm-node bench anonymize`): the labelled photos are portraits and close-ups, a road camera
sees the same objects small and many to a frame."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from vlm_node.evaluation.redaction import KINDS
from vlm_node.geometry import Box


@dataclass
class Composite:
    """A frame assembled from labelled photos, with the labels moved along."""

    image: np.ndarray
    boxes: dict[str, list[Box]] = field(default_factory=dict)


def compose_frame(photos: Sequence[tuple[np.ndarray, dict[str, list[Box] | None]]],
                  size: tuple[int, int], rng: np.random.Generator,
                  grid: tuple[int, int] = (4, 3), scale_range: tuple[float, float] = (0.5, 1.0)
                  ) -> Composite:
    """A `size` (w, h) frame: a blurred, enlarged photo as backdrop and a `grid` of cells, each
    holding one photo scaled to fit the cell times a random factor in `scale_range` at a
    random position. Small factors make the small, distant faces and plates of a wide road
    camera. Only kinds labelled in every used photo are returned as labels."""
    w, h = size
    cols, rows = grid
    n = cols * rows
    order = rng.permutation(len(photos))
    chosen = [photos[int(order[i % len(photos)])] for i in range(n)]
    back = cv2.resize(chosen[0][0], (w, h), interpolation=cv2.INTER_LINEAR)
    frame = cv2.GaussianBlur(back, (0, 0), 25)
    boxes: dict[str, list[Box]] = {k: [] for k in KINDS}
    cw, ch = w / cols, h / rows
    for i, (img, labels) in enumerate(chosen):
        ih, iw = img.shape[:2]
        s = min(cw / iw, ch / ih) * float(rng.uniform(*scale_range))
        pw, ph = max(1, int(iw * s)), max(1, int(ih * s))
        cx, cy = (i % cols) * cw, (i // cols) * ch
        x0 = int(cx + rng.uniform(0, max(0.0, cw - pw)))
        y0 = int(cy + rng.uniform(0, max(0.0, ch - ph)))
        frame[y0:y0 + ph, x0:x0 + pw] = cv2.resize(img, (pw, ph), interpolation=cv2.INTER_AREA)
        sx, sy = pw / iw, ph / ih
        for kind in KINDS:
            for b in labels.get(kind) or []:
                boxes[kind].append(b.scaled(sx, sy).shifted(x0, y0))
    return Composite(frame, boxes)
