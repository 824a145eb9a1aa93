"""Face detection with YuNet (OpenCV DNN). The model is the 230 kB ONNX file shipped in
`vlm_node/assets/models/yunet/` (Apache-2.0), so detection works offline from a fresh clone."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vlm_node.geometry import Box
from vlm_node.results import Detection

DEFAULT_YUNET = Path(__file__).resolve().parent.parent / "assets" / "models" / "yunet" / \
    "yunet_s_640_640.onnx"


class YuNetFaceDetector:
    """cv2.FaceDetectorYN wrapper returning `Detection`s. Not thread-safe: one per thread/camera."""

    name = "yunet"
    kind = "face"

    def __init__(self, model_path: str | Path = "", score_threshold: float = 0.6,
                 nms_threshold: float = 0.3, top_k: int = 5000) -> None:
        path = Path(model_path) if model_path else DEFAULT_YUNET
        if not path.is_file():
            raise FileNotFoundError(f"face model not found: {path} (parameter anonymizer.face_model)")
        self.model_path = path
        self._detector = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold,
                                                   nms_threshold, top_k)
        self._size: tuple[int, int] = (320, 320)

    def set_thresholds(self, score: float, nms: float) -> None:
        self._detector.setScoreThreshold(score)
        self._detector.setNMSThreshold(nms)

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        if (w, h) != self._size:
            self._detector.setInputSize((w, h))
            self._size = (w, h)
        _, faces = self._detector.detect(image)
        if faces is None:
            return []
        out = []
        for row in faces:
            x, y, bw, bh = (float(v) for v in row[:4])
            score = float(row[-1])
            if not all(np.isfinite((x, y, bw, bh, score))) or bw <= 0 or bh <= 0:
                raise ValueError(f"face detector returned a corrupt box {row[:4].tolist()}")
            out.append(Detection("face", Box(x, y, bw, bh).clipped(w, h), score, self.name))
        return out
