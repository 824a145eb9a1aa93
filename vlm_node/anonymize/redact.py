"""Redaction of regions in place. Blur strength scales with the region, so a small face is as
unrecognisable as a large one, and a face region is redacted inside an ellipse (its shape),
leaving the corners of the box, often background, untouched."""
from __future__ import annotations

import cv2
import numpy as np

from vlm_node.geometry import Box


def _odd(n: float) -> int:
    k = max(3, int(n))
    return k if k % 2 else k + 1


def blur_region(image: np.ndarray, box: Box, ellipse: bool = False) -> None:
    """Blur `box` of `image` (HxWx3 uint8) in place so that it cannot be recovered.

    Two passes: the region is first shrunk to a few pixels per side and scaled back (which
    destroys the high frequencies a sharpening filter would need to recover detail) and then
    smoothed with a Gaussian whose kernel is half the region's size, so no block edges remain.
    """
    h, w = image.shape[:2]
    rows, cols = box.int_slices(w, h)
    roi = image[rows, cols]
    rh, rw = roi.shape[:2]
    if rh < 2 or rw < 2:
        return
    small = cv2.resize(roi, (max(1, rw // 8), max(1, rh // 8)), interpolation=cv2.INTER_AREA)
    coarse = cv2.resize(small, (rw, rh), interpolation=cv2.INTER_LINEAR)
    k = _odd(max(rh, rw) / 2)
    blurred = cv2.GaussianBlur(coarse, (k, k), 0)
    if ellipse:
        mask = np.zeros((rh, rw), np.uint8)
        cv2.ellipse(mask, (rw // 2, rh // 2), (max(1, rw // 2), max(1, rh // 2)), 0, 0, 360,
                    255, -1)
        np.copyto(roi, blurred, where=mask[:, :, None].astype(bool))
    else:
        roi[...] = blurred


def blur_full_frame(image: np.ndarray) -> None:
    """The fail-closed `full_blur` policy: nothing in the frame stays recognisable."""
    h, w = image.shape[:2]
    blur_region(image, Box(0, 0, w, h))
