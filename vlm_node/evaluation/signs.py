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
from typing import Any, Callable, Iterable, Sequence

import cv2
import numpy as np

from vlm_node.counts import Counts
from vlm_node.evaluation.labels import load_labels
from vlm_node.evaluation.matching import MATCH_IOU, label_box, match_signs
from vlm_node.evaluation.redaction import ratio
from vlm_node.geometry import Box
from vlm_node.results import AnalysisResult, SignReading

Reader = Callable[[np.ndarray], list[SignReading]]

SIZE_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("<32 px", 0, 32), ("32-63 px", 32, 64), ("64-127 px", 64, 128), (">=128 px", 128, 1e9))


VALUE_SIZES: tuple[tuple[str, float, float], ...] = (
    ("<16 px", 0, 16), ("16-29 px", 16, 30), ("30-60 px", 30, 61), (">60 px", 61, 1e9))
"""Real speed-limit signs by the larger side of their labelled box, as the sign targets are
stated (values on real 30-60 px crops; full-frame road signs mostly 16-40 px)."""


def size_bucket(box: Box, buckets: Sequence[tuple[str, float, float]] = SIZE_BUCKETS) -> str:
    """Bucket of a sign by its larger side in pixels."""
    side = max(box.w, box.h)
    for name, lo, hi in buckets:
        if lo <= side < hi:
            return name
    return buckets[-1][0]


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


@dataclass
class SignScore:
    """Counts over labelled images (matching: `vlm_node.evaluation.matching.match_signs`)."""

    images: int = 0
    labelled: int = 0
    class_correct: int = 0
    speed_labelled: int = 0  # speed_limit labels with a value
    speed_correct: int = 0
    # a published speed value that is wrong: on a labelled sign whose class or value differs,
    # or on no labelled sign at all (a planner would act on either)
    speed_wrong: int = 0
    speed_unlabelled: int = 0
    unmatched_readings: int = 0
    degraded_images: int = 0
    per_class: dict[str, list[int]] = field(default_factory=dict)  # class -> [correct, total]
    # VALUE_SIZES bucket -> [right values, valued speed limits labelled, wrong values]
    value_by_size: dict[str, list[int]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"images": self.images, "labelled_signs": self.labelled,
                "class_accuracy": ratio(self.class_correct, self.labelled),
                "speed_limit_signs": self.speed_labelled,
                "speed_limit_value_accuracy": ratio(self.speed_correct, self.speed_labelled),
                "wrong_speed_values": self.speed_wrong,
                "speed_values_on_no_labelled_sign": self.speed_unlabelled,
                "unmatched_readings": self.unmatched_readings,
                "degraded_images": self.degraded_images,
                "per_class": {c: {"correct": v[0], "labelled": v[1]}
                              for c, v in sorted(self.per_class.items())},
                "speed_values_by_size": {
                    name: {"correct": v[0], "labelled": v[1], "wrong": v[2],
                           "accuracy": ratio(v[0], v[1])}
                    for name, _, _ in VALUE_SIZES if (v := self.value_by_size.get(name))}}


@dataclass(frozen=True)
class SignMiss:
    """A labelled sign with a box that was not read right: nothing read on it, another class,
    or (a speed limit with a value) no value or another one."""

    label: dict[str, Any]
    reading: SignReading | None
    box: Box  # the label's

    def captions(self, index: int) -> list[str]:
        """Two short lines for montage tile `index`: the tile's number, the sign's size and
        what the label says; what was read."""
        def said(cls: str, value: float | None) -> str:
            return f"{value:g}" if cls == "speed_limit" and value is not None else cls[:16]

        read = ("nothing" if self.reading is None
                else said(self.reading.sign_class, self.reading.value))
        label = said(str(self.label["class"]), self.label.get("value"))
        return [f"{index} {int(max(self.box.w, self.box.h))}px {label}", f"-> {read}"]


def score_signs(score: SignScore, signs: Sequence[dict[str, Any]],
                result: AnalysisResult) -> list[SignMiss]:
    """Add one image's readings, matched against its labelled signs, to `score`; return the
    labelled signs with a box that were not read right (for a montage of misses)."""
    misses: list[SignMiss] = []
    score.images += 1
    score.degraded_images += int(result.degraded)
    for m in match_signs(result.signs, signs):
        speed_value = m.reading is not None and m.reading.sign_class == "speed_limit" and \
            m.reading.value is not None
        if m.label is None:
            score.unmatched_readings += 1
            score.speed_unlabelled += int(speed_value)
            continue
        if speed_value and not (m.label_class == "speed_limit" and m.value_ok):
            score.speed_wrong += int(m.label_class != "speed_limit"
                                     or m.label.get("value") is not None)
        score.labelled += 1
        score.class_correct += int(m.class_ok)
        box = label_box(m.label)
        counts = score.per_class.setdefault(m.label_class, [0, 0])
        counts[0] += int(m.class_ok)
        counts[1] += 1
        if m.label_class == "speed_limit" and m.label.get("value") is not None:
            score.speed_labelled += 1
            score.speed_correct += int(m.value_ok)
            if box is not None:
                sized = score.value_by_size.setdefault(size_bucket(box, VALUE_SIZES), [0, 0, 0])
                sized[0] += int(m.value_ok)
                sized[1] += 1
                sized[2] += int(speed_value and not m.value_ok)
        if box is not None and not (m.class_ok and m.value_ok):
            misses.append(SignMiss(m.label, m.reading, box))
    return misses
