"""The learned sign proposer: where in a frame signs are, as a few ranked boxes.

A small fully convolutional network (trained here, `vlm_node.tools.train_sign_proposer`; model
card docs/sign_proposer.md) maps a BGR frame to a heatmap of sign centres at stride 4 and each
centre's width and height. Why: the colour/shape search sends ~110-180 boxes a frame to the
classifier and, with its Hough pass, costs most of the 1080p sign stage; on held-out
development photos the proposer's ten best boxes cover about as many signs. The reader uses
it as its search on large frames and adds its boxes to the colour/shape search on smaller ones
(`analysis.ocr.learned_*`; docs/sign_proposer.md says what is measured and what is next).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vlm_node.anonymize.runtime import Runtime
from vlm_node.geometry import Box
from vlm_node.paths import ASSETS

DEFAULT_MODEL = ASSETS / "models" / "sign_proposer" / "sign_proposer.onnx"
MULTIPLE = 16  # the network halves the frame four times


def peaks(heat: np.ndarray, sizes: np.ndarray, stride: int, k: int, min_score: float
          ) -> list[tuple[Box, float]]:
    """The `k` highest local maxima (3x3) of `heat` (probabilities, h x w) at or above
    `min_score`, as boxes centred on their cells with `exp(sizes) * stride` as width and
    height (`sizes`: 2 x h x w log sizes in cells), best first."""
    local = heat >= cv2.dilate(heat, np.ones((3, 3), np.uint8))
    scores = np.where(local & (heat >= min_score), heat, -1.0).ravel()
    k = min(k, int(np.count_nonzero(scores >= 0)))
    if k <= 0:
        return []
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    ys, xs = np.divmod(top, heat.shape[1])
    ws = np.exp(sizes[0].ravel()[top]) * stride
    hs = np.exp(sizes[1].ravel()[top]) * stride
    return [(Box(float((x + 0.5) * stride - w / 2), float((y + 0.5) * stride - h / 2),
                 float(w), float(h)), float(s))
            for x, y, w, h, s in zip(xs, ys, ws, hs, scores[top])]


class SignProposer:
    """Runs the shipped (or a given) proposer model on whole frames."""

    def __init__(self, model_path: str | Path = DEFAULT_MODEL,
                 runtime: Runtime = Runtime(threads=0)) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"sign proposer model not found: {path}")
        self._session = runtime.session(path)
        self._input = self._session.get_inputs()[0].name
        meta = self._session.get_modelmeta().custom_metadata_map
        self.stride = int(meta.get("stride", 4))
        self.path = path

    def propose(self, bgr: np.ndarray, k: int = 10, min_score: float = 0.05
                ) -> list[tuple[Box, float]]:
        """Up to `k` (box, score) pairs in `bgr`'s pixels, best first. The frame is padded
        with black to a multiple of 16 on its right and bottom (boxes keep its coordinates)."""
        if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR frame, got {bgr.shape} {bgr.dtype}")
        h, w = bgr.shape[:2]
        ph, pw = -h % MULTIPLE, -w % MULTIPLE
        frame = cv2.copyMakeBorder(bgr, 0, ph, 0, pw, cv2.BORDER_CONSTANT) if ph or pw else bgr
        batch = frame.transpose(2, 0, 1)[None].astype(np.float32)
        maps = self._session.run(None, {self._input: batch})[0][0]
        heat = 1.0 / (1.0 + np.exp(-maps[0]))
        return peaks(heat.astype(np.float32), maps[1:], self.stride, k, min_score)
