"""Circle proposals: round signs found by their outline where no paint colour finds them.

At dusk, against the light or under an overcast sky a red rim keeps no red: on the GTSDB
development photos 15 of 138 speed-limit signs were proposed by no colour mask (their rims'
red excess over max(G, B) is -5 to +1 grey levels after white balance), yet the classifier
reads most of them surely through their own box. Their outline is still a circle, so a
gradient Hough transform proposes them. It costs a full-frame edge pass and finds many round
things that are not signs (wheels, lamps, letters), which the classifier then has to reject,
so it is a setting (`analysis.ocr.circle_proposals`) with its price in the model card.
"""
from __future__ import annotations

import cv2
import numpy as np

from vlm_node.geometry import Box

# A sign's outer edge: the Hough circle usually lands on the rim's inner or outer edge; the box
# is grown 10 % beyond the radius so that a ring whose inner edge was found is still inside.
_RIM_GROWTH = 1.1


def find_circles(bgr: np.ndarray, min_radius: int, max_radius: int) -> list[Box]:
    """Boxes around the circles of `bgr`'s grey image with radius in [min_radius, max_radius]
    pixels, in `bgr`'s coordinates. HOUGH_GRADIENT_ALT (edge-orientation voting with a
    circularity score, 0.6 here) rather than the classic accumulator: on the development photos
    the classic one needed ~290 circles a frame for half the signs the ALT variant finds with
    ~11."""
    if max_radius < max(1, min_radius):
        return []
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    found = cv2.HoughCircles(grey, cv2.HOUGH_GRADIENT_ALT, dp=1.5, minDist=8, param1=150,
                             param2=0.6, minRadius=max(1, min_radius), maxRadius=max_radius)
    if found is None:
        return []
    return [Box(float(x - _RIM_GROWTH * r), float(y - _RIM_GROWTH * r),
                float(2 * _RIM_GROWTH * r), float(2 * _RIM_GROWTH * r)) for x, y, r in found[0]]
