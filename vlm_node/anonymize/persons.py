"""A small COCO object detector (FastestDet, BSD-3) and the head backstop built on it.

Face detectors miss heads turned away, faces under hoods, helmets or hands, and faces too
blurred to look like faces; a person detector sees the whole body and does not care where the
person looks. The anonymizer uses it as a *backstop*: the head region of every person in which
no face detector found a face is redacted too (`head_regions`). The detector returns every COCO
class with a typed result (`ObjectDetection`), so scene analysis can reuse it for people,
vehicles and animals on the road without a second model.

FastestDet (github.com/dog-qiuqiu/FastestDet, 0.24 M parameters, 1 MB ONNX, fixed 352x352
input, COCO mAP@0.5 25.3 % per its README) was chosen because it is a public COCO ONNX file
well under 4 MB from its authors' own repository with a clear permissive licence (the YOLOX-nano
ONNX files under 4 MB found on GitHub were re-trained on other classes or came without a
licence). Its recall on small people is low, which is why the backstop complements the face
detectors rather than replacing them (docs/anonymizer.md).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from vlm_node.anonymize.multiscale import merge_indices
from vlm_node.anonymize.runtime import Runtime, shipped_model
from vlm_node.geometry import Box
from vlm_node.results import ObjectDetection  # noqa: F401 - its home; re-exported here

FASTESTDET_FILE = "fastestdet/FastestDet.onnx"
HEAD_DETECTOR = "head_backstop"
"""`Detection.detector` of a head region redacted because a person showed no face (kind
"face", so it is redacted, carried and counted like one)."""

# Class order of the FastestDet COCO model (its `coco.names`, the Darknet spelling).
COCO_CLASSES = (
    "person", "bicycle", "car", "motorbike", "aeroplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "sofa",
    "pottedplant", "bed", "diningtable", "toilet", "tvmonitor", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush")


class FastestDet:
    """FastestDet decoded from its single output map (1, 85, 22, 22): per cell an objectness
    (sigmoid), a centre offset (tanh, in cells), width and height (sigmoid, fractions of the
    input) and 80 class probabilities (softmax). Score = objectness x best class probability,
    as in the upstream ONNX example. The input is BGR scaled to [0, 1]."""

    name = "fastestdet"

    def __init__(self, path: Path | None = None, runtime: Runtime = Runtime(),
                 nms_threshold: float = 0.45) -> None:
        file = Path(path) if path else shipped_model(FASTESTDET_FILE)
        self.session = runtime.session(file)
        shape = self.session.get_inputs()[0].shape
        self.input_size = (int(shape[3]), int(shape[2]))  # (w, h); the export is fixed-size
        self.nms_threshold = nms_threshold
        self._input = self.session.get_inputs()[0].name

    def predict(self, image: np.ndarray, threshold: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (N, 4 xyxy, in `image` pixels), scores (N,) and class indices (N,) of the
        objects in `image` (any size: it is stretched to the input, as in training)."""
        h, w = image.shape[:2]
        iw, ih = self.input_size
        small = cv2.resize(image, (iw, ih), interpolation=cv2.INTER_AREA)
        blob = (small.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
        fm = self.session.run(None, {self._input: blob})[0][0]  # (85, gh, gw)
        gh, gw = fm.shape[1:]
        cls = fm[5:]
        cls_id = cls.argmax(0)
        score = fm[0] * np.take_along_axis(cls, cls_id[None], 0)[0]
        r, c = np.nonzero(score > threshold)
        if r.size == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int)
        cx = (c + np.tanh(fm[1, r, c])) / gw * w
        cy = (r + np.tanh(fm[2, r, c])) / gh * h
        bw = 1.0 / (1.0 + np.exp(-fm[3, r, c])) * w
        bh = 1.0 / (1.0 + np.exp(-fm[4, r, c])) * h
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        boxes = boxes.astype(np.float32)
        scores = score[r, c].astype(np.float32)
        ids = cls_id[r, c].astype(int)
        keep = _nms_per_class(boxes, scores, ids, self.nms_threshold)
        return boxes[keep], scores[keep], ids[keep]


def _nms_per_class(boxes: np.ndarray, scores: np.ndarray, ids: np.ndarray,
                   iou: float) -> np.ndarray:
    # offsetting each class far apart makes one NMS call class-aware
    offset = (ids.astype(np.float32) * 1e5)[:, None]
    return merge_indices(boxes + offset, scores, iou, containment=1.01)


class ObjectDetector:
    """FastestDet over a whole frame: one stretched pass, plus `tiles` x `tiles` overlapping
    crops when `tiles` > 1 (a 1080p frame stretched to 352 px keeps only people taller than
    about 60 px; 2 x 2 tiles halve that at four more inferences)."""

    def __init__(self, path: Path | None = None, runtime: Runtime = Runtime(), tiles: int = 1,
                 tile_overlap: float = 0.2) -> None:
        self.model = FastestDet(path, runtime)
        self.tiles = tiles
        self.tile_overlap = tile_overlap

    def _views(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        views = [(0, 0, width, height)]
        n = self.tiles
        if n > 1:
            tw = int(width / (n - (n - 1) * self.tile_overlap))
            th = int(height / (n - (n - 1) * self.tile_overlap))
            for i in range(n):
                for j in range(n):
                    x0 = int(round(j * (width - tw) / (n - 1)))
                    y0 = int(round(i * (height - th) / (n - 1)))
                    views.append((x0, y0, tw, th))
        return views

    def detect(self, frame: np.ndarray, threshold: float = 0.3,
               classes: Iterable[str] | None = None) -> list[ObjectDetection]:
        """Objects in `frame` (HxWx3 uint8 BGR) scoring above `threshold`, of `classes` only
        when given (COCO names)."""
        wanted = None if classes is None else {COCO_CLASSES.index(c) for c in classes}
        h, w = frame.shape[:2]
        all_b, all_s, all_c = [], [], []
        for x0, y0, vw, vh in self._views(w, h):
            b, s, c = self.model.predict(frame[y0:y0 + vh, x0:x0 + vw], threshold)
            all_b.append(b + np.array([x0, y0, x0, y0], np.float32))
            all_s.append(s)
            all_c.append(c)
        boxes, scores, ids = np.concatenate(all_b), np.concatenate(all_s), np.concatenate(all_c)
        if wanted is not None:
            sel = np.isin(ids, list(wanted))
            boxes, scores, ids = boxes[sel], scores[sel], ids[sel]
        if len(boxes) > 1 and len(self._views(w, h)) > 1:
            keep = merge_indices(boxes + (ids.astype(np.float32) * 1e5)[:, None], scores,
                                 self.model.nms_threshold, containment=0.8)
            boxes, scores, ids = boxes[keep], scores[keep], ids[keep]
        out = []
        for (x1, y1, x2, y2), s, c in zip(boxes.tolist(), scores.tolist(), ids.tolist()):
            box = Box.from_xyxy(x1, y1, x2, y2).clipped(w, h)
            if box.w > 0 and box.h > 0:
                out.append(ObjectDetection(COCO_CLASSES[c], int(c), float(s), box))
        return out


# Head of a person box: a box HEAD_WIDTH x the person's width wide (about a head and a half,
# so a head turned sideways or off-centre stays inside), as tall as it is wide but at most
# HEAD_MAX_HEIGHT of the person's height, centred horizontally, from the top of the box.
HEAD_WIDTH = 0.6
HEAD_MAX_HEIGHT = 0.5


def head_box(person: Box) -> Box:
    """Where the head of a person detected as `person` is (upright people; WHY the sizes:
    see HEAD_WIDTH)."""
    w = person.w * HEAD_WIDTH
    h = min(w, person.h * HEAD_MAX_HEIGHT)
    return Box(person.x + (person.w - w) / 2.0, person.y, w, h)


def faceless(persons: Sequence[Box], faces: Iterable[Box]) -> list[int]:
    """Indices of the `persons` in whose upper half no box of `faces` is centred: those people
    have a head the face detectors did not find (turned away, covered, blurred)."""
    centres = [f.center for f in faces]
    out = []
    for i, p in enumerate(persons):
        top = Box(p.x, p.y, p.w, p.h / 2.0)
        if not any(top.x <= cx <= top.x2 and top.y <= cy <= top.y2 for cx, cy in centres):
            out.append(i)
    return out


def head_regions(persons: Sequence[Box], faces: Iterable[Box]) -> list[Box]:
    """Head boxes of the `faceless` persons: what the backstop redacts."""
    return [head_box(persons[i]) for i in faceless(persons, faces)]
