"""Montages of missed objects (faces the redaction left uncovered, signs not read right): one
tile per miss, the object with as much context again around it and its label box drawn, a
caption to count causes by. Shared by `vlm-node anonymize --misses-dir` and `vlm-node analyze
--misses-dir` so both look and number alike."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from vlm_node.geometry import Box


def tile(image: np.ndarray, box: Box, captions: Sequence[str], cell: int = 160,
         context: float = 2.0) -> np.ndarray:
    """A cell x cell BGR tile of `image` around `box` (a square `context` times its larger
    side, clipped to the image), the box in green and each caption a line at the top."""
    h, w = image.shape[:2]
    side = max(box.w, box.h) * context
    cx, cy = box.center
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x1, y1 = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
    crop = image[y0:y1, x0:x1].copy()
    cv2.rectangle(crop, (int(box.x - x0), int(box.y - y0)), (int(box.x2 - x0), int(box.y2 - y0)),
                  (0, 255, 0), 1)
    out = np.zeros((cell, cell, 3), np.uint8)
    if crop.size:
        f = cell / max(crop.shape[:2])
        size = (max(1, int(crop.shape[1] * f)), max(1, int(crop.shape[0] * f)))
        crop = cv2.resize(crop, size)
        out[:crop.shape[0], :crop.shape[1]] = crop
    for k, text in enumerate(captions):
        cv2.putText(out, text, (3, 14 + 15 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1,
                    cv2.LINE_AA)
    return out


def grid(tiles: Sequence[np.ndarray], cols: int = 8) -> np.ndarray | None:
    """The tiles (all one size) in rows of `cols`, the last row padded black; None for none."""
    if not tiles:
        return None
    blank = np.zeros_like(tiles[0])
    cells = list(tiles) + [blank] * (-len(tiles) % cols)
    return np.vstack([np.hstack(cells[r:r + cols]) for r in range(0, len(cells), cols)])
