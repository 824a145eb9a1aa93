"""Counters, rates and latency percentiles for diagnostics and benchmarks (no ROS here).

Rates and percentiles come from bounded windows (last N samples / last few seconds), so a node
running for days uses constant memory and reports current behaviour, not lifetime averages.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

# Reasons a frame or result is dropped; one vocabulary for counters, diagnostics and reports.
# stale_input: waited in the subscription queue longer than max_frame_age before the camera
# callback got to it; stale: waited too long in the analysis slot; stale_result: analysed, but
# too late to publish.
DROP_REASONS = ("decode_error", "stale_input", "anonymizer_failure", "stale", "stale_result",
                "backend_error", "superseded")


def percentiles(values: Iterable[float], qs: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
    """{"p50": .., "p95": ..} of `values` (NaN when empty)."""
    arr = np.fromiter(values, dtype=float)
    if arr.size == 0:
        return {f"p{q:g}": float("nan") for q in qs}
    return {f"p{q:g}": float(v) for q, v in zip(qs, np.percentile(arr, qs))}


@dataclass
class PartTimes:
    """Wall milliseconds spent in named parts of a repeated job, summed since the last `reset`.

    Why: a stage's total time says whether it meets its budget, not which part to cut, and
    guessing from a profiler run (which slows Python code more than OpenCV and model calls) has
    sent work the wrong way before. Each part is timed where it runs, two `perf_counter` calls
    (about a microsecond); the owner's caller divides by the frames it ran. `counts` holds how
    much work a part did (crops classified, ...), so its time can be read per item."""

    ms: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    clock: Callable[[], float] = time.perf_counter

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Add the wall time of the `with` body to part `name` (also when it raises)."""
        t0 = self.clock()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (self.clock() - t0) * 1000.0

    def count(self, name: str, n: int) -> None:
        """Add `n` items of work to part `name`."""
        self.counts[name] = self.counts.get(name, 0) + int(n)

    def reset(self) -> None:
        self.ms.clear()
        self.counts.clear()


@dataclass
class RateMeter:
    """Events per second over the last `window` seconds."""

    window: float = 5.0
    clock: Callable[[], float] = time.monotonic
    _times: deque = field(default_factory=deque)

    def mark(self) -> None:
        now = self.clock()
        self._times.append(now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()

    def rate(self) -> float:
        now = self.clock()
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], 1e-9)
        return (len(self._times) - 1) / span if span < self.window else len(self._times) / span


@dataclass
class CameraStats:
    """Everything diagnostics report for one camera. Thread-safe."""

    latency_window: int = 200
    received: int = 0
    anonymized: int = 0
    results: int = 0
    drops: Counter = field(default_factory=Counter)
    faces: int = 0
    plates: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.in_rate = RateMeter()
        self.anon_rate = RateMeter()
        self.result_rate = RateMeter()
        self.anonymize_ms: deque = deque(maxlen=self.latency_window)
        self.latency_ms: deque = deque(maxlen=self.latency_window)

    def on_received(self) -> None:
        with self._lock:
            self.received += 1
            self.in_rate.mark()

    def on_anonymized(self, ms: float, faces: int, plates: int) -> None:
        with self._lock:
            self.anonymized += 1
            self.faces += faces
            self.plates += plates
            self.anon_rate.mark()
            self.anonymize_ms.append(ms)

    def on_result(self, latency_ms: float) -> None:
        with self._lock:
            self.results += 1
            self.result_rate.mark()
            self.latency_ms.append(latency_ms)

    def on_drop(self, reason: str, n: int = 1) -> None:
        assert reason in DROP_REASONS, reason
        with self._lock:
            self.drops[reason] += n

    def snapshot(self) -> dict[str, float | int]:
        with self._lock:
            snap: dict[str, float | int] = {
                "frames_received": self.received, "frames_anonymized": self.anonymized,
                "results_published": self.results,
                "input_rate_hz": round(self.in_rate.rate(), 2),
                "anonymized_rate_hz": round(self.anon_rate.rate(), 2),
                "result_rate_hz": round(self.result_rate.rate(), 2),
                "faces_redacted": self.faces, "plates_redacted": self.plates,
            }
            for k, v in percentiles(self.anonymize_ms, (50, 95)).items():
                snap[f"anonymize_ms_{k}"] = round(v, 2)
            for k, v in percentiles(self.latency_ms, (50, 95)).items():
                snap[f"latency_ms_{k}"] = round(v, 2)
            for reason in DROP_REASONS:
                snap[f"dropped_{reason}"] = self.drops[reason]
            return snap
