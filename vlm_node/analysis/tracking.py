"""Per-camera sign tracks, so a planner can act on stable readings only.

A reading continues a track of the same class whose box overlaps it (IoU >= threshold), or, when
either has no box, the most recently seen track of that class. A track remembers, for each of the
last n frames in which it was seen, the value read; a reading is `confirmed` when its own value
was seen in at least k of the last n frames, `tentative` before. So a value change on a tracked
sign (a variable speed sign switching from 80 to 60, or one OCR misreading) keeps the track id,
publishes the new value as tentative, and confirms it only once it has been read k times: a
single misread never reaches the planner as confirmed, and a real change is confirmed k frames
later. A track not seen for m frames expires; its id is never reused on that camera.
"""
from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field

from vlm_node.analysis.config import TrackingConfig
from vlm_node.errors import ConfigError
from vlm_node.geometry import Box
from vlm_node.results import SignReading


@dataclass
class Track:
    track_id: int
    sign_class: str
    box: Box | None
    last_seen: int
    # (frame, value) for frames of the window in which the track was seen
    history: deque[tuple[int, float | None]] = field(default_factory=deque)

    def hits(self, value: float | None) -> int:
        return sum(1 for _, v in self.history if _same(v, value))


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) < 1e-6


class SignTracker:
    """One camera's tracks. Not thread-safe: the analysis worker is its only user."""

    def __init__(self, k: int = 3, n: int = 5, m: int = 10, iou_threshold: float = 0.3) -> None:
        if not 1 <= k <= n:
            raise ConfigError(f"tracking needs 1 <= k <= n; got k={k}, n={n}")
        if m < 1:
            raise ConfigError(f"tracking.m={m} must be at least 1")
        self.k, self.n, self.m, self.iou_threshold = k, n, m, iou_threshold
        self.frame = 0
        self.tracks: list[Track] = []
        self._next_id = 1

    @classmethod
    def from_config(cls, config: TrackingConfig) -> "SignTracker":
        return cls(config.k, config.n, config.m, config.iou_threshold)

    def _associate(self, signs: list[SignReading]) -> dict[int, Track]:
        scored = []
        for i, s in enumerate(signs):
            for t in self.tracks:
                if t.sign_class != s.sign_class:
                    continue
                if s.box is not None and t.box is not None:
                    iou = s.box.iou(t.box)
                    if iou >= self.iou_threshold:
                        scored.append((1, iou, t.last_seen, i, t))
                else:  # class only: weaker than any box match, recent tracks first
                    scored.append((0, 0.0, t.last_seen, i, t))
        scored.sort(key=lambda e: e[:3], reverse=True)
        matched: dict[int, Track] = {}
        taken: set[int] = set()
        for _, _, _, i, t in scored:
            if i not in matched and t.track_id not in taken:
                matched[i] = t
                taken.add(t.track_id)
        return matched

    def update(self, signs: list[SignReading]) -> list[SignReading]:
        """This frame's readings with track_id and track_state set (new objects)."""
        self.frame += 1
        matched = self._associate(signs)
        out = []
        for i, s in enumerate(signs):
            track = matched.get(i)
            if track is None:
                track = Track(self._next_id, s.sign_class, s.box, self.frame)
                self._next_id += 1
                self.tracks.append(track)
            track.box = s.box or track.box
            track.last_seen = self.frame
            track.history.append((self.frame, s.value))
            while track.history and track.history[0][0] <= self.frame - self.n:
                track.history.popleft()
            state = "confirmed" if track.hits(s.value) >= self.k else "tentative"
            out.append(dataclasses.replace(s, track_id=track.track_id, track_state=state))
        self.tracks = [t for t in self.tracks if self.frame - t.last_seen < self.m]
        return out
