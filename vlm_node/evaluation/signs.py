"""Sign readers scored on a labelled image set (docs/labels.md): per class and per sign size,
with per-frame timing, for any callable that turns a BGR frame into SignReadings (the OCR
benchmark on rendered sets, `vlm_node.tools.render.evaluate.ocr_benchmark`, and any backend).

Matching is the project's one rule, `vlm_node.evaluation.matching.match_signs` (box IoU >= 0.3,
class and value checks), so these figures compare with `vlm-node eval`'s and `analyze`'s.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np

from vlm_node.counts import Counts
from vlm_node.evaluation.labels import load_labels
from vlm_node.evaluation.matching import MATCH_IOU, match_signs
from vlm_node.geometry import Box
from vlm_node.results import SignReading

Reader = Callable[[np.ndarray], list[SignReading]]

SIZE_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("<32 px", 0, 32), ("32-63 px", 32, 64), ("64-127 px", 64, 128), (">=128 px", 128, 1e9))


def size_bucket(box: Box) -> str:
    """Bucket of a sign by its larger side in pixels."""
    side = max(box.w, box.h)
    for name, lo, hi in SIZE_BUCKETS:
        if lo <= side < hi:
            return name
    return SIZE_BUCKETS[-1][0]


def label_key(sign: dict[str, Any]) -> str:
    """Class name for the tables; US speed limits (mph) are kept apart from km/h ones."""
    cls = str(sign["class"])
    return f"{cls} (mph)" if sign.get("unit") == "mph" else cls


@dataclass
class Tally(Counts):
    """Counts for one class or size bucket (they add: `Counts`)."""

    labelled: int = 0
    read: int = 0  # a reading overlaps the sign
    class_ok: int = 0
    value_ok: int = 0  # class, value and unit all right

    def count(self, read: bool, class_ok: bool, value_ok: bool) -> None:
        """One labelled sign."""
        self.labelled += 1
        self.read += int(read)
        self.class_ok += int(class_ok)
        self.value_ok += int(value_ok)

    @property
    def accuracy(self) -> float:
        """Share of labelled signs read with the right class, value and unit."""
        return self.value_ok / self.labelled if self.labelled else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"labelled": self.labelled, "read": self.read, "class_ok": self.class_ok,
                "value_ok": self.value_ok, "accuracy": round(self.accuracy, 4)}


@dataclass
class SignEvaluation:
    """Result of `evaluate_labels`."""

    images: int = 0
    by_class: dict[str, Tally] = field(default_factory=dict)
    by_size: dict[str, Tally] = field(default_factory=dict)
    false_readings: int = 0
    wrong: list[dict[str, Any]] = field(default_factory=list)  # misread and false readings
    ms_by_size: dict[str, list[float]] = field(default_factory=dict)  # "WxH" -> per frame

    @property
    def total(self) -> Tally:
        t = Tally()
        for tally in self.by_class.values():
            t.add(tally)
        return t

    def timing(self) -> dict[str, dict[str, float]]:
        """Mean / median / 90th percentile milliseconds per frame, by frame size."""
        out = {}
        for size, values in sorted(self.ms_by_size.items()):
            out[size] = {"frames": len(values), "mean": round(statistics.fmean(values), 1),
                         "p50": round(float(np.percentile(values, 50)), 1),
                         "p90": round(float(np.percentile(values, 90)), 1)}
        return out

    def to_json(self) -> dict[str, Any]:
        return {"images": self.images, "total": self.total.to_json(),
                "by_class": {k: v.to_json() for k, v in sorted(self.by_class.items())},
                "by_size": {k: self.by_size[k].to_json() for k, _, _ in SIZE_BUCKETS
                            if k in self.by_size},
                "false_readings": self.false_readings, "timing_ms": self.timing(),
                "wrong": self.wrong}

    def table(self) -> str:
        """A Markdown table: per class and per size bucket."""
        rows = ["| signs | labelled | read | class right | class+value right |",
                "|---|---:|---:|---:|---:|"]

        def row(name: str, t: Tally) -> str:
            return (f"| {name} | {t.labelled} | {t.read} | {t.class_ok} | {t.value_ok} "
                    f"({100 * t.accuracy:.0f} %) |")

        rows += [row(k, v) for k, v in sorted(self.by_class.items())]
        rows += [row(k, self.by_size[k]) for k, _, _ in SIZE_BUCKETS if k in self.by_size]
        rows.append(row("**all**", self.total))
        rows.append(f"\nfalse readings: {self.false_readings} in {self.images} images")
        return "\n".join(rows)


def evaluate_labels(labels_path: str | Path, reader: Reader, iou: float = MATCH_IOU,
                    limit: int | None = None) -> SignEvaluation:
    """Run `reader` on every image of a labels.json that has a `signs` list and score it."""
    labels_path = Path(labels_path)
    result = SignEvaluation()
    entries = [e for e in load_labels(labels_path) if e.signs is not None and e.path is not None]
    for entry in entries[:limit]:
        assert entry.path is not None and entry.signs is not None
        image = cv2.imread(str(entry.path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"{entry.path} (listed in {labels_path})")
        t0 = time.perf_counter()
        readings = reader(image)
        ms = (time.perf_counter() - t0) * 1000.0
        result.ms_by_size.setdefault(f"{image.shape[1]}x{image.shape[0]}", []).append(ms)
        result.images += 1
        for m in match_signs(readings, entry.signs, iou):
            if m.label is None:
                assert m.reading is not None
                result.false_readings += 1
                result.wrong.append({"file": entry.file, "label": None,
                                     "reading": m.reading.to_json()})
                continue
            sign = m.label
            for table, key in ((result.by_class, label_key(sign)),
                               (result.by_size, size_bucket(Box.from_list(sign["box"]))
                                if sign.get("box") else "no box")):
                table.setdefault(key, Tally()).count(m.reading is not None, m.class_ok,
                                                     m.value_ok)
            if m.reading is not None and not m.value_ok:
                result.wrong.append({"file": entry.file, "label": sign,
                                     "reading": m.reading.to_json()})
    return result


def false_readings(paths: Iterable[str | Path], reader: Reader) -> dict[str, list[SignReading]]:
    """Readings per image for images known to hold no traffic sign (each one is false)."""
    out = {}
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(str(path))
        out[str(path)] = reader(image)
    return out
