"""Latest-frame slots: how the node keeps analysis fresh without ever building a backlog.

Camera callbacks `put` anonymized frames at camera rate; each camera has one slot and a new frame
replaces the old one (which is counted as `superseded`, not as an error: analysis is slower than
the cameras by design). The analysis worker `take`s the freshest frame of every camera whose slot
is full and whose analysis-rate budget allows, as one batch; frames older than `max_frame_age`
are dropped and counted as `stale` instead of being analysed and published as if fresh.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from vlm_node.frames import AnonymizedFrame


@dataclass
class _Slot:
    frame: AnonymizedFrame | None = None
    min_interval: float = 0.0  # seconds between analyses of this camera; 0 = no limit
    last_taken: float = float("-inf")


@dataclass
class SchedulerCounts:
    superseded: int = 0
    stale: int = 0
    taken: int = 0


@dataclass
class LatestFrameScheduler:
    """Thread-safe: any number of producer threads, one or more consumer threads."""

    max_frame_age: float = 1.0
    clock: Callable[[], float] = time.monotonic
    counts: dict[str, SchedulerCounts] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._slots: dict[str, _Slot] = {}
        self._cond = threading.Condition()
        self._closed = False

    def add_camera(self, camera: str, analysis_rate: float = 0.0) -> None:
        with self._cond:
            self._slots[camera] = _Slot(min_interval=1.0 / analysis_rate if analysis_rate > 0
                                        else 0.0)
            self.counts[camera] = SchedulerCounts()

    def set_rate(self, camera: str, analysis_rate: float) -> None:
        with self._cond:
            self._slots[camera].min_interval = 1.0 / analysis_rate if analysis_rate > 0 else 0.0
            self._cond.notify_all()

    def put(self, frame: AnonymizedFrame) -> None:
        camera = frame.meta.camera
        with self._cond:
            slot = self._slots[camera]
            if slot.frame is not None:
                self.counts[camera].superseded += 1
            slot.frame = frame
            self._cond.notify_all()

    def _age(self, frame: AnonymizedFrame, now: float) -> float:
        return now - frame.meta.received

    def _ready(self, now: float) -> tuple[list[str], float]:
        """Cameras ready now, and how long until the next rate-limited one becomes ready."""
        ready, wait = [], float("inf")
        for name, slot in self._slots.items():
            if slot.frame is None:
                continue
            due = slot.last_taken + slot.min_interval
            if due <= now:
                ready.append(name)
            else:
                wait = min(wait, due - now)
        return ready, wait

    def take(self, timeout: float | None = None, max_batch: int = 0) -> list[AnonymizedFrame]:
        """Block until at least one fresh frame is due (or timeout / close); return the batch,
        one frame per camera, oldest-waiting camera first. Stale frames are dropped here."""
        deadline = None if timeout is None else self.clock() + timeout
        with self._cond:
            while not self._closed:
                now = self.clock()
                ready, wait = self._ready(now)
                batch: list[AnonymizedFrame] = []
                for name in sorted(ready, key=lambda n: self._slots[n].last_taken):
                    slot = self._slots[name]
                    frame, slot.frame = slot.frame, None
                    assert frame is not None
                    if self._age(frame, now) > self.max_frame_age:
                        self.counts[name].stale += 1
                        continue
                    if max_batch and len(batch) >= max_batch:
                        slot.frame = frame  # keep it for the next batch
                        continue
                    slot.last_taken = now
                    self.counts[name].taken += 1
                    batch.append(frame)
                if batch:
                    return batch
                remaining = None if deadline is None else deadline - now
                if remaining is not None and remaining <= 0:
                    return []
                waits = [w for w in (wait, remaining) if w is not None and w != float("inf")]
                self._cond.wait(min(waits) if waits else None)
            return []

    def close(self) -> None:
        """Wake and release every waiting consumer (shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def is_fresh(self, frame: AnonymizedFrame) -> bool:
        """Whether a result for `frame` may still be published (checked again after analysis)."""
        return self._age(frame, self.clock()) <= self.max_frame_age
