"""The speed-value reader: a second small CNN that reads the number on a round speed-limit sign,
including the values GTSRB has no class for (5, 10, 15, 40, 90, 110 km/h).

Why a second network: the sign classifier is trained on German signs, so on a 40 or a 90 it can
only say "some speed limit" (`SignClass` labelled `speed_limit` without a value) and OCR must
read the number, which it fails to do under a branch's shadow, on a washed-out rim or through a
loose box (most speed values missed on the non-German development photos were such signs). The
reader is trained here (`vlm-node train-speed-values`) on real crops of both kinds: the GTSRB
training split's speed limits and the Tsinghua-Tencent 100K speed limits (Chinese signs of the
same design: red ring, black digits on white), with an `other` class for the round signs that
carry a number but no speed limit (weight, height, width and axle limits, the end of a limit,
minimum speeds) and for pictograms and background. Its probability is calibrated on held-out
tracks and images, as the classifier's is.

It only fills: the reader is asked about a sign the classifier already called a speed limit but
gave no value, and its value stands only where OCR did not read another (`fills_value`).
Crops are cut exactly as for the classifier (`prepare_crops`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from vlm_node.analysis.sign_classifier import prepare_crops
from vlm_node.anonymize.runtime import Runtime
from vlm_node.geometry import Box
from vlm_node.paths import ASSETS

SPEED_VALUES: tuple[float, ...] = (5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0,
                                   90.0, 100.0, 110.0, 120.0)
"""The km/h values the reader knows: every value of the GTSRB speed classes and of the
Tsinghua-Tencent 100K speed limits with enough crops to learn from (25 and 35 have 5 and 3)."""
OTHER = "other"
VALUE_LABELS: tuple[str, ...] = tuple(f"{v:g}" for v in SPEED_VALUES) + (OTHER,)
"""The reader's output classes, in order: one a value, then `other` (no speed-limit number)."""

DEFAULT_VALUE_MODEL = ASSETS / "models" / "speed_values" / "speed_values.onnx"


@dataclass(frozen=True, slots=True)
class ValueRead:
    """The reader's answer for one crop: the value (None for `other`) and its calibrated
    probability."""

    value: float | None
    probability: float

    def sure(self, min_probability: float) -> bool:
        """Whether this is a speed value at `min_probability` or more."""
        return self.value is not None and self.probability >= min_probability


class SpeedValueReader:
    """Reads speed values from sign crops with the shipped ONNX model (on the CPU)."""

    def __init__(self, model_path: str | Path = DEFAULT_VALUE_MODEL,
                 runtime: Runtime = Runtime(threads=1)) -> None:
        """`runtime`: one thread is plenty: the reader sees a few crops a frame."""
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"speed-value reader model not found: {path}")
        self._session = runtime.session(path)
        self._input = self._session.get_inputs()[0].name
        meta = self._session.get_modelmeta().custom_metadata_map
        labels = tuple(json.loads(meta["labels"]))
        if labels != VALUE_LABELS:
            raise ValueError(f"{path}: the model's labels {labels} are not "
                             f"vlm_node.analysis.speed_values.VALUE_LABELS (retrain)")
        self.min_probability = float(meta["min_probability"])
        self.training = json.loads(meta.get("training", "{}"))
        self.path = path

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (N x len(VALUE_LABELS)) for a prepared batch."""
        if len(batch) == 0:
            return np.zeros((0, len(VALUE_LABELS)), np.float32)
        return self._session.run(None, {self._input: batch})[0]

    def read(self, rgb: np.ndarray, boxes: Sequence[Box]) -> list[ValueRead]:
        """One answer per box of an RGB frame, in order."""
        return reads(self.probabilities(prepare_crops(rgb, boxes)))


def reads(probs: np.ndarray) -> list[ValueRead]:
    """The answer of each row of calibrated probabilities."""
    best = probs.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    out = []
    for row, b in zip(probs, best.tolist()):
        value = SPEED_VALUES[b] if b < len(SPEED_VALUES) else None
        out.append(ValueRead(value, float(row[b])))
    return out


def value_class(value: float) -> int | None:
    """The reader's class index for a km/h value, None for a value it does not know."""
    try:
        return SPEED_VALUES.index(float(value))
    except ValueError:
        return None


@lru_cache(maxsize=2)
def shared_reader(model_path: str = str(DEFAULT_VALUE_MODEL)) -> SpeedValueReader:
    """One loaded reader per model file and process (the session is thread-safe)."""
    return SpeedValueReader(model_path)
