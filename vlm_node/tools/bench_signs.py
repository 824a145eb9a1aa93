"""`vlm-node bench signs`: the sign stage (the OCR backend's reader: colour/shape search, the
classifier, OCR) on real photos at a camera's resolution, per setting, with accuracy beside the
time when the photos are labelled.

Why a benchmark of its own: the stage's target is a time per 1080p frame on real road photos,
and every change to the search trades time against signs found. Each photo is read by every
setting in turn in one process (the same warm caches, the same machine load for all), so the
ratios hold even where the absolute times move with the host. By default each photo is first
anonymized by the configured anonymizer (`Pipeline.anonymize`, untimed, once for all settings)
and read as the node reads it (`OcrBackend.read_frame`: the anonymized pixels, the anonymizer's
sign text, people and vehicles); `anonymizer=None` reads the raw photo alone, as the stage's
older figures in docs/sign_classifier.md were taken.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from vlm_node.analysis.ocr_backend import OcrBackend

from vlm_node.analysis.ocr_config import OcrConfig
from vlm_node.anonymize.config import AnonymizerConfig
from vlm_node.errors import AnonymizationError
from vlm_node.frames import AnonymizedFrame, FrameMeta
from vlm_node.evaluation.labels import ImageLabel
from vlm_node.evaluation.matching import scaled_signs
from vlm_node.evaluation.signs import SignScore, score_signs
from vlm_node.tools.bench_node import letterboxed
from vlm_node.results import AnalysisResult, SignReading
from vlm_node.stats import PartTimes


@dataclass
class SettingRun:
    """One setting's reader and what it measured."""

    name: str
    config: OcrConfig
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    score: SignScore = field(default_factory=SignScore)
    readings: int = 0
    speed_values: int = 0  # readings that publish a speed-limit value
    parts: PartTimes = field(default_factory=PartTimes)  # the reader's, over the timed frames

    def parts_per_frame(self) -> dict[str, float]:
        """Mean wall ms a frame of each timed part of the reader (`OcrBackend.part_times`) and
        of the rest of its frame ("other": the mean frame time less the top-level parts; a
        dotted name such as "search.finder" is a part of "search", counted there)."""
        n = max(1, len(self.wall_ms))
        out = {name: round(ms / n, 1) for name, ms in self.parts.ms.items()}
        top = sum(ms for name, ms in self.parts.ms.items() if "." not in name)
        out["other"] = round(sum(self.wall_ms) / n - top / n, 1)
        return out

    def items_per_frame(self) -> dict[str, float]:
        """Mean items of work a frame of each counted part ("classify": the boxes of the first
        classifier batch)."""
        n = max(1, len(self.wall_ms))
        return {name: round(count / n, 1) for name, count in self.parts.counts.items()}

    def figures(self, first: "SettingRun") -> dict[str, Any]:
        wall = np.asarray(self.wall_ms)
        out: dict[str, Any] = {
            "frames": int(wall.size), "median_ms": round(float(np.median(wall)), 1),
            "mean_ms": round(float(wall.mean()), 1),
            "p95_ms": round(float(np.percentile(wall, 95)), 1),
            "cpu_ms_per_frame": round(float(np.mean(self.cpu_ms)), 1),
            "median_vs_first": round(float(np.median(wall) / np.median(first.wall_ms)), 3),
            "readings": self.readings, "speed_values": self.speed_values,
            "parts_ms_per_frame": self.parts_per_frame(),
            "parts_items_per_frame": self.items_per_frame()}
        if self.score.images:
            sc = self.score
            out["signs"] = {"images": sc.images, "classes": [sc.class_correct, sc.labelled],
                            "values": [sc.speed_correct, sc.speed_labelled],
                            "wrong_values": sc.speed_wrong + sc.speed_unlabelled,
                            # of which on a labelled sign / on no labelled sign
                            "wrong_values_on_signs": sc.speed_wrong,
                            "values_on_no_sign": sc.speed_unlabelled,
                            "readings_on_no_label": sc.unmatched_readings}
        return out


def as_frame(bgr: np.ndarray, size: tuple[int, int] | None, fit: bool = False
             ) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A photo as the frame to read at `size` (None: as it is), stretched or, with `fit`,
    letterboxed; and where its labels go, (fx, fy, dx, dy) for `scaled_signs`."""
    if size is None:
        return bgr, (1.0, 1.0, 0.0, 0.0)
    if fit:
        frame, scale, dx, dy = letterboxed(bgr, size)
        return frame, (scale, scale, dx, dy)
    h, w = bgr.shape[:2]
    return cv2.resize(bgr, size), (size[0] / w, size[1] / h, 0.0, 0.0)


def bench_signs(images: Sequence[Path], settings: Sequence[tuple[str, OcrConfig]],
                size: tuple[int, int] | None = (1920, 1080),
                labels: dict[Path, ImageLabel] | None = None, warmup: int = 3,
                print_fn: Callable[[str], None] = print,
                progress: Callable[[int, int], None] | None = None,
                anonymizer: AnonymizerConfig | None = None, fit: bool = False
                ) -> dict[str, Any]:
    """Read every image with every setting in turn and return (and print) per setting the
    median / mean / p95 wall time a frame, CPU time a frame and, for images in `labels`, the
    sign scores of `vlm-node analyze --labels` (the same matching rule).

    `size`: each photo is resized to it (labels scaled alike); None keeps each photo's size.
    `fit`: keep each photo's aspect instead and letterbox it in `size` (`bench_node.letterboxed`).
    `warmup`: the first photos are read by every setting before timing (OpenVINO prepares each
    new input shape on its first call). `anonymizer`: anonymize each photo with it first and
    read it as the node does; None reads the raw photo alone. A photo the anonymizer fails on
    is skipped (fail closed) and counted."""
    if not settings:
        raise ValueError("no setting to measure")
    if not images:
        raise ValueError("no images to read")
    labels = labels or {}
    runs = [SettingRun(name, config) for name, config in settings]
    readers = [OcrBackend(run.config) for run in runs]
    pipeline = None
    skipped = 0
    try:
        if anonymizer is not None:
            from vlm_node.pipeline import Pipeline

            pipeline = Pipeline(anonymizer)
        for reader in readers:
            reader.load()

        # raw mode reads the array itself: an AnonymizedFrame is only ever made by the anonymizer
        def frame(index: int, path: Path
                  ) -> tuple[AnonymizedFrame | np.ndarray | None, tuple[float, ...]]:
            """The photo as the frame to read, and where its labels go: (fx, fy, dx, dy)."""
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise FileNotFoundError(f"{path}: not an image OpenCV can read")
            bgr, place = as_frame(bgr, size, fit)
            if pipeline is None:
                return bgr, place
            pipeline.reset("bench")  # unrelated photos: nothing carried from the last one
            try:
                return pipeline.anonymize(FrameMeta("bench", index, str(path)), bgr), place
            except AnonymizationError:
                return None, place

        def read(reader: OcrBackend, item: AnonymizedFrame | np.ndarray) -> list[SignReading]:
            if isinstance(item, AnonymizedFrame):
                return reader.read_frame(item)
            return reader.read_signs(item)

        for index, path in enumerate(list(images)[:max(0, warmup)]):
            warm, _ = frame(index, path)
            for reader in readers:
                if warm is not None:
                    read(reader, warm)
        for reader in readers:
            reader.part_times.reset()
        for i, path in enumerate(images):
            anonymized, place = frame(i, path)
            if progress is not None:
                progress(i + 1, len(images))
            if anonymized is None:
                skipped += 1
                continue
            label = labels.get(path.resolve())
            for run, reader in zip(runs, readers):
                # process CPU, every thread: the Hough thread and the inference pools too
                c0, t0 = time.process_time(), time.perf_counter()
                readings = read(reader, anonymized)
                run.wall_ms.append((time.perf_counter() - t0) * 1000.0)
                run.cpu_ms.append((time.process_time() - c0) * 1000.0)
                run.readings += len(readings)
                run.speed_values += sum(1 for r in readings if r.sign_class == "speed_limit"
                                        and r.value is not None)
                if label is not None and label.signs is not None:
                    score_signs(run.score, scaled_signs(label.signs, *place),
                                AnalysisResult(signs=readings, backend="ocr"))
        for run, reader in zip(runs, readers):
            run.parts = reader.part_times
    finally:
        for reader in readers:
            reader.close()
        if pipeline is not None:
            pipeline.close()
    if not runs[0].wall_ms:
        raise ValueError(f"none of the {len(images)} photos could be anonymized")
    first = runs[0]
    figures = {"images": len(images) - skipped, "not_anonymized": skipped,
               "anonymized": anonymizer is not None,
               "size": list(size) if size else "native", "fit": bool(fit and size),
               "cpus": os.cpu_count(), "warmup": warmup,
               "settings": {run.name: run.figures(first) for run in runs}}
    print_table(figures, print_fn)
    return figures


def print_table(figures: dict[str, Any], print_fn: Callable[[str], None] = print) -> None:
    size = figures["size"]
    where = ("at their own size" if size == "native" else
             f"letterboxed in {size[0]}x{size[1]}" if figures.get("fit") else
             f"resized to {size[0]}x{size[1]}")
    how = ("anonymized first, read as the node reads them" if figures["anonymized"]
           else "raw, the reader alone")
    print_fn(f"{figures['images']} photos {where} ({how}), {figures['cpus']} CPUs; each read "
             f"by every setting in turn after {figures['warmup']} warm-up photos")
    if figures["not_anonymized"]:
        print_fn(f"{figures['not_anonymized']} photos skipped: the anonymizer failed on them")
    scored = any("signs" in f for f in figures["settings"].values())
    head = (f"{'setting':<28} {'median ms':>9} {'mean':>7} {'p95':>7} {'CPU ms':>7} "
            f"{'vs first':>8} {'readings':>8} {'values':>6}")
    if scored:
        head += f" {'classes':>11} {'values right':>12} {'wrong (sign+none)':>17} {'no label':>8}"
    print_fn(head)
    for name, f in figures["settings"].items():
        line = (f"{name:<28} {f['median_ms']:>9.1f} {f['mean_ms']:>7.1f} {f['p95_ms']:>7.1f} "
                f"{f['cpu_ms_per_frame']:>7.1f} {f['median_vs_first']:>7.2f}x "
                f"{f['readings']:>8} {f['speed_values']:>6}")
        if "signs" in f:
            s = f["signs"]
            classes, values = "/".join(map(str, s["classes"])), "/".join(map(str, s["values"]))
            wrong = f"{s['wrong_values_on_signs']}+{s['values_on_no_sign']}"
            line += f" {classes:>11} {values:>12} {wrong:>17} {s['readings_on_no_label']:>8}"
        print_fn(line)
    for name, f in figures["settings"].items():
        parts = f["parts_ms_per_frame"]
        shown = []
        for part, ms in parts.items():
            if "." in part:
                continue
            inner = [f"{sub.split('.', 1)[1]} {v:.1f}" for sub, v in parts.items()
                     if sub.startswith(part + ".")]
            items = f["parts_items_per_frame"].get(part)
            if items is not None:
                inner.append(f"{items:.0f} crops")
            shown.append(f"{part} {ms:.1f}" + (f" ({', '.join(inner)})" if inner else ""))
        print_fn(f"{name}: ms a frame by part (mean): {', '.join(shown)}")
