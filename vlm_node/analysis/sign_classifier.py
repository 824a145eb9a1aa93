"""The project's traffic-sign classifier: a small CNN trained here on the GTSRB training split,
shipped as ONNX and run by onnxruntime.

It answers, for each candidate crop, one of the 43 GTSRB classes or `background` (not a sign),
with a probability calibrated on held-out GTSRB tracks (temperature scaling, baked into the
graph), so the probability can drive `TrafficSign.confidence` and the k-of-n tracker as it is.
A candidate the classifier calls `background`, or whose best probability is below the
calibrated threshold stored with the model, is not a sign.

How a crop is cut from a frame (`crop_box`, `prepare_crops`) lives here and nowhere else: the
training tool (`vlm_node.tools.train_signs`) imports it, so training and runtime agree on margin,
size and colour order.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from vlm_node.analysis.gtsrb import (BACKGROUND, CLASSIFIER_LABELS, SPEED_LIMIT_IDS, GtsrbClass,
                                     gtsrb_class)
from vlm_node.anonymize.runtime import Runtime
from vlm_node.geometry import Box
from vlm_node.paths import ASSETS

log = logging.getLogger(__name__)

# Side of the square network input, in pixels.
INPUT_SIZE = 32
# The crop around a sign box: this fraction of the box's side is added on every side. GTSRB crops
# hold the sign with about a 10 % margin; training jitters around this value.
CROP_MARGIN = 0.1

DEFAULT_MODEL = ASSETS / "models" / "sign_classifier" / "sign_classifier.onnx"
# The same network quantized to int8 (`vlm-node train-signs --quantize`, docs/sign_classifier.md):
# about half the classifier's time on CPU, probabilities within a few hundredths of the float
# model's, so readings on the margin of a threshold can change.
SHIPPED_MODELS = {"fp32": DEFAULT_MODEL,
                  "int8": DEFAULT_MODEL.with_name("sign_classifier_int8.onnx")}


def crop_box(box: Box, margin: float = CROP_MARGIN) -> Box:
    """The region cut for the classifier around a sign box."""
    return Box(box.x - margin * box.w, box.y - margin * box.h,
               box.w * (1 + 2 * margin), box.h * (1 + 2 * margin))


def resize_to_input(patch_rgb: np.ndarray) -> np.ndarray:
    """A uint8 RGB patch resized to the network input (area filter when shrinking, so a large
    sign is not aliased; linear when enlarging)."""
    h, w = patch_rgb.shape[:2]
    interp = cv2.INTER_AREA if min(h, w) > INPUT_SIZE else cv2.INTER_LINEAR
    return cv2.resize(patch_rgb, (INPUT_SIZE, INPUT_SIZE), interpolation=interp)


def cut(rgb: np.ndarray, region: Box) -> np.ndarray:
    """Pixels of `region` from an RGB image; the part outside the image repeats its edge (a sign
    at the frame border keeps its shape instead of being stretched)."""
    h, w = rgb.shape[:2]
    x1, y1 = int(round(region.x)), int(round(region.y))
    x2, y2 = max(x1 + 1, int(round(region.x2))), max(y1 + 1, int(round(region.y2)))
    pad = (max(0, -y1), max(0, y2 - h), max(0, -x1), max(0, x2 - w))
    inside = rgb[max(0, y1):min(h, y2), max(0, x1):min(w, x2)]
    if inside.size == 0:
        return np.zeros((y2 - y1, x2 - x1, 3), np.uint8)
    if any(pad):
        inside = cv2.copyMakeBorder(inside, *pad, cv2.BORDER_REPLICATE)
    return inside


def prepare_crops(rgb: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    """A float32 NCHW batch (RGB, 0..255) of the crops for `boxes`; the graph normalises.

    The same pixels as `resize_to_input(cut(rgb, crop_box(box)))` for each box, with the
    regions' corners computed for all boxes at once and the crops resized into one uint8
    buffer that is converted in one step (a 1080p frame has ~250 crops)."""
    n = len(boxes)
    out = np.empty((n, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    if n:
        h, w = rgb.shape[:2]
        xywh = np.array([(b.x, b.y, b.w, b.h) for b in boxes], np.float64).reshape(n, 4)
        # crop_box's arithmetic, then cut's rounding (both round half to even)
        x = xywh[:, 0] - CROP_MARGIN * xywh[:, 2]
        y = xywh[:, 1] - CROP_MARGIN * xywh[:, 3]
        cw = xywh[:, 2] * (1 + 2 * CROP_MARGIN)
        ch = xywh[:, 3] * (1 + 2 * CROP_MARGIN)
        x1, y1 = np.round(x).astype(np.int64), np.round(y).astype(np.int64)
        x2 = np.maximum(x1 + 1, np.round(x + cw).astype(np.int64))
        y2 = np.maximum(y1 + 1, np.round(y + ch).astype(np.int64))
        size = (INPUT_SIZE, INPUT_SIZE)
        for i, (a, b, c, d) in enumerate(zip(x1.tolist(), y1.tolist(), x2.tolist(),
                                             y2.tolist())):
            if a >= 0 and b >= 0 and c <= w and d <= h:
                patch = rgb[b:d, a:c]
            else:
                patch = cut(rgb, Box(a, b, c - a, d - b))
            interp = cv2.INTER_AREA if min(d - b, c - a) > INPUT_SIZE else cv2.INTER_LINEAR
            cv2.resize(patch, size, dst=out[i], interpolation=interp)
    return out.transpose(0, 3, 1, 2).astype(np.float32)


SPEED_FAMILY = "speed_limit"

GROWN_SCALE = 1.3
GROWN_MIN_PROB = 0.9
"""`SignClassifier.grown_look`: how much a small box is grown, and the probability each of the
seven crops must give its class."""

REFINE_AGREEMENT = 0.8
"""Share of a refined box's six variants that must pick the class the first look leaned to
(0.8: five of six). Measured on the real crops of the model's held-out GTSRB tracks with the
second look: 0.5 gave 98.6 % right values at 30-60 px but 8 wrong ones at 16-29 px (the single
look: 2), 0.8 gives 98.4 % and 3, 1.0 gives 97.6 % and 2 while losing five development photo
signs. A wrong speed limit is worse than none."""


@dataclass(frozen=True, slots=True)
class SignClass:
    """One classified crop: the GTSRB id (or None) and the calibrated probability of the answer.

    Three kinds of answer: a GTSRB class (`gtsrb` set); `speed_limit` with no value (label
    SPEED_FAMILY: the speed-limit classes together pass the threshold but no single one does,
    as for a 40 or 90 sign, which GTSRB lacks: the number is left to OCR); or `background`.
    `runner_up` is the second most likely label (for logs and tests)."""

    label: str
    probability: float
    gtsrb: GtsrbClass | None
    runner_up: str = ""
    # the eight speed-limit classes' probability together, whatever the answer
    speed_mass: float = 0.0

    @property
    def is_sign(self) -> bool:
        return self.gtsrb is not None or self.label == SPEED_FAMILY

    @property
    def sign_class(self) -> str:
        if self.gtsrb is not None:
            return self.gtsrb.sign_class
        return SPEED_FAMILY if self.label == SPEED_FAMILY else BACKGROUND

    @property
    def value(self) -> float | None:
        return self.gtsrb.value if self.gtsrb else None

    @property
    def unit(self) -> str:
        return self.gtsrb.unit if self.gtsrb else ""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the training tool stored in the ONNX file's metadata."""

    labels: tuple[str, ...]
    min_probability: float
    temperature: float
    extra: dict[str, object]


class SignClassifier:
    """Classifies batches of sign crops with the shipped ONNX model (on the CPU)."""

    def __init__(self, model_path: str | Path = DEFAULT_MODEL,
                 runtime: Runtime = Runtime(threads=0)) -> None:
        """`runtime`: the engine and its threads (0 = all cores: one batch of ~150 crops per
        1080p frame takes ~50 ms on one core, ~25 ms on two with onnxruntime)."""
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"sign classifier model not found: {path}")
        self._session = runtime.session(path)
        self._input = self._session.get_inputs()[0].name
        meta = self._session.get_modelmeta().custom_metadata_map
        self.info = ModelInfo(labels=tuple(json.loads(meta["labels"])),
                              min_probability=float(meta["min_probability"]),
                              temperature=float(meta["temperature"]),
                              extra=json.loads(meta.get("training", "{}")))
        if self.info.labels != CLASSIFIER_LABELS:
            raise ValueError(f"{path}: the model's labels do not match vlm_node.analysis.gtsrb "
                             "(retrain, or update the table)")
        self.path = path
        self.min_agreement = REFINE_AGREEMENT

    @property
    def source_sha256(self) -> str:
        """sha256 of the float model whose answers these are: the file itself, or for a
        quantized copy (`vlm-node train-signs --quantize`) the source it records. Whatever was
        fitted on the classifier's probabilities (the sign verifier) is keyed by it."""
        meta = self._session.get_modelmeta().custom_metadata_map
        if "quantized" in meta:
            return str(json.loads(meta["quantized"])["source_sha256"])
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities (N x 44) for a prepared batch."""
        if len(batch) == 0:
            return np.zeros((0, len(CLASSIFIER_LABELS)), np.float32)
        return self._session.run(None, {self._input: batch})[0]

    def classify(self, rgb: np.ndarray, boxes: Sequence[Box]) -> list[SignClass]:
        """One result per box, in order. A crop below the calibrated threshold is background."""
        return self.results(self.probabilities(prepare_crops(rgb, boxes)))

    def classify_refined(self, rgb: np.ndarray, boxes: Sequence[Box], max_refined: int = 12,
                         min_sign: float = 0.3, min_px: float = 20.0, max_px: float = 60.0,
                         probs: np.ndarray | None = None) -> tuple[list[Box], list[SignClass]]:
        """`classify`, then a second look at the boxes the network leaned towards a sign on
        without accepting a numbered class (at most `max_refined`, most sign-like first,
        non-background probability >= `min_sign`): each is classified again shifted and
        scaled (`refine_boxes`), all in one batch, and the variant whose best class is most
        probable replaces it when that beats the first answer. Why: a proposal is a colour
        region's box, often off-centre or too wide, and the crop through it reads far less
        surely than the crop through the sign's own box (on the GTSDB development frames most
        speed signs proposed but not read were read at >= 0.93 through their labelled box).
        Returns the (possibly moved) boxes and the results, in order. `probs`: the boxes'
        `probabilities` when already computed (the caller classified them in parts)."""
        if probs is None:
            probs = self.probabilities(prepare_crops(rgb, boxes))
        results = self.results(probs)
        out_boxes = list(boxes)
        speed_p = probs[:, _SPEED_INDEX].sum(axis=1) if len(probs) else np.zeros(0)
        todo = [i for i in np.argsort(-speed_p) if speed_p[i] >= min_sign
                and results[i].value is None and min(boxes[i].w, boxes[i].h) >= min_px
                and max(boxes[i].w, boxes[i].h) <= max_px
                ][:max_refined]
        if not todo:
            return out_boxes, results
        variants = [refine_boxes(boxes[i]) for i in todo]
        flat = [b for v in variants for b in v]
        vprobs = self.probabilities(prepare_crops(rgb, flat))
        k = 0
        for i, vs in zip(todo, variants):
            block = vprobs[k:k + len(vs)]
            k += len(vs)
            # only the class the first look leaned to, and only when most variants agree:
            # the best of 15 looks at anything would find a sign in noise
            lean = int(_SPEED_INDEX[np.argmax(probs[i, _SPEED_INDEX])])
            if (block.argmax(axis=1) == lean).mean() < self.min_agreement:
                continue
            j = int(np.argmax(block[:, lean]))
            if block[j, lean] > probs[i, lean]:
                cand = self.result(block[j])
                if cand.gtsrb is not None and cand.gtsrb.class_id == lean:
                    out_boxes[int(i)], results[int(i)] = vs[j], cand
        return out_boxes, results

    def grown_look(self, rgb: np.ndarray, box: Box, res: SignClass) -> Box | None:
        """The box grown by GROWN_SCALE about its centre when that crop and its six shifted
        and scaled copies (`refine_boxes`) all give `res`'s class at >= GROWN_MIN_PROB, else
        None. Why: a box too small to trust with a speed value (`min_value_px`) is often a
        proposal on the sign's inner disc; through the whole sign a real one reads the same
        from every copy, while the development photos' small values on no sign fell apart
        (at most one copy of seven agreed). On held-out GTSRB tracks shrunk to 11-13 px it
        kept 689-849 of ~1,400 values from inner-disc boxes, none wrong."""
        if res.gtsrb is None:
            return None
        return self.grown_agrees(rgb, box, res.gtsrb.class_id)

    def grown_agrees(self, rgb: np.ndarray, box: Box, class_id: int, min_share: float = 1.0
                     ) -> Box | None:
        """`grown_look` for a given GTSRB class: the grown box when its own crop and at least
        `min_share` of all seven crops give `class_id` at >= GROWN_MIN_PROB, else None."""
        grown = box.expanded((GROWN_SCALE - 1.0) / 2)
        agree = self._sure_looks(rgb, grown, class_id)
        return grown if agree[0] and agree.mean() >= min_share else None

    def sure_looks(self, rgb: np.ndarray, box: Box, class_id: int) -> int:
        """How many of the seven looks at `box` (its own crop and `refine_boxes`' six) give
        `class_id` at >= GROWN_MIN_PROB."""
        return int(self._sure_looks(rgb, box, class_id).sum())

    def sure_looks_many(self, rgb: np.ndarray, boxes: Sequence[Box], class_ids: Sequence[int]
                        ) -> list[int]:
        """`sure_looks` of each box for its class, all in one batch."""
        return self._sure_matrix(rgb, boxes, class_ids).sum(axis=1).tolist()

    def _sure_looks(self, rgb: np.ndarray, box: Box, class_id: int) -> np.ndarray:
        return self._sure_matrix(rgb, [box], [class_id])[0]

    def _sure_matrix(self, rgb: np.ndarray, boxes: Sequence[Box], class_ids: Sequence[int]
                     ) -> np.ndarray:
        """N x 7 booleans: whether each of a box's seven looks (its crop, then
        `refine_boxes`') gives its class at >= GROWN_MIN_PROB."""
        looks = 1 + len(_VARIANTS)
        if not boxes:
            return np.zeros((0, looks), bool)
        crops = prepare_crops(rgb, [b for box in boxes for b in [box] + refine_boxes(box)])
        probs = self.probabilities(crops).reshape(len(boxes), looks, -1)
        ids = np.asarray(class_ids)[:, None]
        return (probs.argmax(axis=2) == ids) & \
            (np.take_along_axis(probs, ids[:, :, None], axis=2)[..., 0] >= GROWN_MIN_PROB)

    def classify_patches(self, patches_rgb: Sequence[np.ndarray]) -> list[SignClass]:
        """Results for whole RGB patches that already are sign crops (tests, crop datasets)."""
        batch = np.stack([resize_to_input(p).transpose(2, 0, 1) for p in patches_rgb]
                         ).astype(np.float32) if patches_rgb else np.zeros((0,), np.float32)
        return self.results(self.probabilities(batch))

    def results(self, probs: np.ndarray) -> list[SignClass]:
        """The answer for each row of calibrated probabilities (threshold, speed family),
        sorted and summed for all rows at once: a 1080p frame has ~250 rows, and one numpy
        pass per row cost as much as the network's run on 20 crops."""
        if len(probs) == 0:
            return []
        order = np.argsort(probs, axis=1)[:, ::-1]
        best, second = order[:, 0], order[:, 1]
        prob = probs[np.arange(len(probs)), best]
        speed = speed_mass(probs)
        return [self._answer(b, s, p, sp) for b, s, p, sp in
                zip(best.tolist(), second.tolist(), prob.tolist(), speed.tolist())]

    def _answer(self, best: int, second: int, prob: float, speed: float) -> SignClass:
        label = CLASSIFIER_LABELS[best]
        runner = CLASSIFIER_LABELS[second]
        if label != BACKGROUND and prob >= self.info.min_probability:
            return SignClass(label, prob, gtsrb_class(best), runner, speed)
        if speed >= self.info.min_probability:
            return SignClass(SPEED_FAMILY, speed, None, label, speed)
        return SignClass(BACKGROUND, prob if label == BACKGROUND else 1.0 - prob, None,
                         label if label != BACKGROUND else runner, speed)

    def result(self, p: np.ndarray) -> SignClass:
        """The answer for one row of calibrated probabilities (`results`)."""
        return self.results(p[None])[0]


_SPEED_INDEX = np.array(sorted(SPEED_LIMIT_IDS))
BACKGROUND_INDEX = CLASSIFIER_LABELS.index(BACKGROUND)


def speed_mass(probs: np.ndarray) -> np.ndarray:
    """Per row of probabilities (N x 44), the speed-limit classes' probability together, added
    in the order numpy adds one row's eight values (`row[_SPEED_INDEX].sum()`: eight lanes,
    then pairwise), so the batch gives each row the same float32 bits as summing it alone (a
    sum along axis 1 can differ in the last bit)."""
    s = probs[:, _SPEED_INDEX]
    if s.shape[1] != 8:
        return np.array([row.sum() for row in s], probs.dtype).reshape(len(s))
    return (((s[:, 0] + s[:, 1]) + (s[:, 2] + s[:, 3]))
            + ((s[:, 4] + s[:, 5]) + (s[:, 6] + s[:, 7])))


# Shifts (fractions of the box side) and scales of `refine_boxes`: a proposal is typically off
# by a tenth of the sign and up to a third too wide or too narrow.
_VARIANTS = ((0.0, 0.0, 0.82), (0.0, 0.0, 1.18), (-0.1, 0.0, 1.0), (0.1, 0.0, 1.0),
             (0.0, -0.1, 1.0), (0.0, 0.1, 1.0))


def refine_boxes(box: Box) -> list[Box]:
    """Shifted and scaled copies of a box about its centre (`_VARIANTS`: dx, dy as fractions
    of the side, scale)."""
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    return [Box(cx + dx * box.w - box.w * sc / 2, cy + dy * box.h - box.h * sc / 2,
                box.w * sc, box.h * sc) for dx, dy, sc in _VARIANTS]


@lru_cache(maxsize=4)
def shared_classifier(model_path: str = str(DEFAULT_MODEL)) -> SignClassifier:
    """One loaded classifier per model file and process (the session is thread-safe)."""
    return SignClassifier(model_path)
