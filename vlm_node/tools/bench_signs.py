"""`vlm-node bench signs`: the sign stage (the OCR backend's reader: colour/shape search, the
classifier, OCR) on real photos at a camera's resolution, per setting, with accuracy beside the
time when the photos are labelled.

Why a benchmark of its own: the stage's target is a time per 1080p frame on real road photos,
and every change to the search trades time against signs found. Each photo is read by every
setting in turn in one process (the same warm caches, the same machine load for all), so the
ratios hold even where the absolute times move with the host. The reader runs alone: no
anonymizer, so no text hints or people boxes from it (the node passes both), which is what the
stage's own figures in docs/sign_classifier.md measure.
"""
from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from vlm_node.analysis.ocr_backend import OcrBackend, OcrConfig
from vlm_node.evaluation.labels import ImageLabel
from vlm_node.evaluation.signs import SignScore, score_signs
from vlm_node.results import AnalysisResult


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

    def figures(self, first: "SettingRun") -> dict[str, Any]:
        wall = np.asarray(self.wall_ms)
        out: dict[str, Any] = {
            "frames": int(wall.size), "median_ms": round(float(np.median(wall)), 1),
            "mean_ms": round(float(wall.mean()), 1),
            "p95_ms": round(float(np.percentile(wall, 95)), 1),
            "cpu_ms_per_frame": round(float(np.mean(self.cpu_ms)), 1),
            "median_vs_first": round(float(np.median(wall) / np.median(first.wall_ms)), 3),
            "readings": self.readings, "speed_values": self.speed_values}
        if self.score.images:
            sc = self.score
            out["signs"] = {"images": sc.images, "classes": [sc.class_correct, sc.labelled],
                            "values": [sc.speed_correct, sc.speed_labelled],
                            "wrong_values": sc.speed_wrong + sc.speed_unlabelled,
                            "readings_on_no_label": sc.unmatched_readings}
        return out


def cpu_seconds() -> float:
    """This process's CPU time, all threads (the Hough thread and the inference threads
    included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def scaled_signs(signs: Sequence[dict[str, Any]], fx: float, fy: float
                 ) -> list[dict[str, Any]]:
    """Labelled signs with their boxes in a frame resized by (fx, fy)."""
    out = []
    for sign in signs:
        sign = dict(sign)
        if sign.get("box"):
            x, y, w, h = sign["box"]
            sign["box"] = [x * fx, y * fy, w * fx, h * fy]
        out.append(sign)
    return out


def bench_signs(images: Sequence[Path], settings: Sequence[tuple[str, OcrConfig]],
                size: tuple[int, int] | None = (1920, 1080),
                labels: dict[Path, ImageLabel] | None = None, warmup: int = 3,
                print_fn: Callable[[str], None] = print,
                progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Read every image with every setting in turn and return (and print) per setting the
    median / mean / p95 wall time a frame, CPU time a frame and, for images in `labels`, the
    sign scores of `vlm-node analyze --labels` (the same matching rule).

    `size`: each photo is resized to it (labels scaled alike); None keeps each photo's size.
    `warmup`: the first photos are read this many times by every setting before timing
    (OpenVINO prepares each new input shape on its first call)."""
    if not settings:
        raise ValueError("no setting to measure")
    if not images:
        raise ValueError("no images to read")
    labels = labels or {}
    runs = [SettingRun(name, config) for name, config in settings]
    readers = [OcrBackend(run.config) for run in runs]
    try:
        for reader in readers:
            reader.load()

        def frame(path: Path) -> tuple[np.ndarray, float, float]:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise FileNotFoundError(f"{path}: not an image OpenCV can read")
            if size is None:
                return bgr, 1.0, 1.0
            h, w = bgr.shape[:2]
            return cv2.resize(bgr, size), size[0] / w, size[1] / h

        for path in list(images)[:max(0, warmup)]:
            bgr, _, _ = frame(path)
            for reader in readers:
                reader.read_signs(bgr)
        for i, path in enumerate(images):
            bgr, fx, fy = frame(path)
            label = labels.get(path.resolve())
            for run, reader in zip(runs, readers):
                c0, t0 = cpu_seconds(), time.perf_counter()
                readings = reader.read_signs(bgr)
                run.wall_ms.append((time.perf_counter() - t0) * 1000.0)
                run.cpu_ms.append((cpu_seconds() - c0) * 1000.0)
                run.readings += len(readings)
                run.speed_values += sum(1 for r in readings if r.sign_class == "speed_limit"
                                        and r.value is not None)
                if label is not None and label.signs is not None:
                    score_signs(run.score, scaled_signs(label.signs, fx, fy),
                                AnalysisResult(signs=readings, backend="ocr"))
            if progress is not None:
                progress(i + 1, len(images))
    finally:
        for reader in readers:
            reader.close()
    first = runs[0]
    figures = {"images": len(images), "size": list(size) if size else "native",
               "cpus": os.cpu_count(), "warmup": warmup,
               "settings": {run.name: run.figures(first) for run in runs}}
    print_table(figures, print_fn)
    return figures


def print_table(figures: dict[str, Any], print_fn: Callable[[str], None] = print) -> None:
    size = figures["size"]
    where = "at their own size" if size == "native" else f"resized to {size[0]}x{size[1]}"
    print_fn(f"{figures['images']} photos {where}, {figures['cpus']} CPUs; each read by every "
             f"setting in turn after {figures['warmup']} warm-up photos (the reader alone)")
    scored = any("signs" in f for f in figures["settings"].values())
    head = (f"{'setting':<28} {'median ms':>9} {'mean':>7} {'p95':>7} {'CPU ms':>7} "
            f"{'vs first':>8} {'readings':>8} {'values':>6}")
    if scored:
        head += f" {'classes':>11} {'values right':>12} {'wrong':>5} {'no label':>8}"
    print_fn(head)
    for name, f in figures["settings"].items():
        line = (f"{name:<28} {f['median_ms']:>9.1f} {f['mean_ms']:>7.1f} {f['p95_ms']:>7.1f} "
                f"{f['cpu_ms_per_frame']:>7.1f} {f['median_vs_first']:>7.2f}x "
                f"{f['readings']:>8} {f['speed_values']:>6}")
        if "signs" in f:
            s = f["signs"]
            classes, values = "/".join(map(str, s["classes"])), "/".join(map(str, s["values"]))
            line += (f" {classes:>11} {values:>12} {s['wrong_values']:>5} "
                     f"{s['readings_on_no_label']:>8}")
        print_fn(line)
