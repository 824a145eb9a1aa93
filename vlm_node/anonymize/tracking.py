"""Temporal carry-over: a region stays redacted for a few frames after its detector lost it.

Detectors flicker: a face turned for one frame, motion blur, a plate behind a wiper. A single
missed frame in a 10 Hz stream is a readable face in a published image. So every detection
starts or updates a track (one camera = one Anonymizer = one tracker); a track that finds no
detection is carried `carry_frames` frames, moved by its last observed motion and grown by
`carry_growth` per missed frame so that it still covers the object while it keeps moving.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from vlm_node.geometry import Box, box_array, iou_matrix
from vlm_node.results import Detection


@dataclass(slots=True)
class Track:
    """One redacted object followed across frames of one camera."""

    id: int
    kind: str
    box: Box
    score: float
    detector: str
    velocity: tuple[float, float] = (0.0, 0.0)  # centre motion per frame, pixels
    misses: int = 0
    # the last detection's face landmarks: a carried face is moved with its box, so `replace`
    # mode keeps its average face on it instead of blurring it for the missed frames
    landmarks: tuple[tuple[float, float], ...] | None = None


@dataclass
class CarryOver:
    """Associates detections with tracks by IoU (greedy, best pairs first, same kind only) and
    emits carried boxes for tracks that were not seen in this frame."""

    frames: int = 3
    iou_threshold: float = 0.2
    growth: float = 0.1
    # kind -> frames a lost track of that kind is carried at least (more than `frames`): a
    # plate found by a band of the rotating plate scan is carried until its band comes round
    # again (plate_scan.py)
    hold: dict[str, int] = field(default_factory=dict)
    tracks: list[Track] = field(default_factory=list)
    _next_id: int = 1
    _size: tuple[int, int] | None = None

    def reset(self) -> None:
        self.tracks.clear()
        self._size = None

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of the frames the tracks belong to; None before the first."""
        return self._size

    def update(self, detections: list[Detection], width: int, height: int,
               keep_size: frozenset[str] = frozenset()
               ) -> tuple[list[tuple[Detection, int]], list[tuple[Detection, int]]]:
        """Feed this frame's detections; returns (detections with their track ids, carried
        detections with their track ids). A new frame size (camera reconfigured) drops all
        tracks: old boxes mean nothing in the new geometry.

        `keep_size`: kinds whose detections in this frame come from a cheaper pass than the
        one that started their tracks (face_thorough_every): a matched track moves to the
        detection's centre but keeps at least its own width and height, so that a smaller
        box from the cheap pass never shrinks the region the thorough pass redacted."""
        if self._size != (width, height):
            self.tracks.clear()
            self._size = (width, height)
        det_track = self._associate(detections)
        used: set[int] = set(det_track.values())
        seen: list[tuple[Detection, int]] = []
        for di, det in enumerate(detections):
            if di in det_track:
                t = self.tracks[det_track[di]]
                (ox, oy), (nx, ny) = t.box.center, det.box.center
                steps = t.misses + 1
                t.velocity = ((nx - ox) / steps, (ny - oy) / steps)
                if det.kind in keep_size and (t.box.w > det.box.w or t.box.h > det.box.h):
                    bw, bh = max(t.box.w, det.box.w), max(t.box.h, det.box.h)
                    det = dataclasses.replace(det, box=Box(nx - bw / 2, ny - bh / 2, bw,
                                                           bh).clipped(width, height))
                t.box, t.score, t.detector, t.misses = det.box, det.score, det.detector, 0
                t.landmarks = det.landmarks
            else:
                t = Track(self._next_id, det.kind, det.box, det.score, det.detector,
                          landmarks=det.landmarks)
                self._next_id += 1
                self.tracks.append(t)
                used.add(len(self.tracks) - 1)
            seen.append((det, t.id))
        carried: list[tuple[Detection, int]] = []
        alive: list[Track] = []
        for ti, t in enumerate(self.tracks):
            if ti in used:
                alive.append(t)
                continue
            t.misses += 1
            if t.misses > max(self.frames, self.hold.get(t.kind, 0)):
                continue
            alive.append(t)
            box = self.predicted(t)
            if box.w > 0 and box.h > 0:
                carried.append((Detection(t.kind, box, t.score, f"carry:{t.detector}",
                                          _moved(t)), t.id))
        self.tracks = alive
        return seen, carried

    def _associate(self, detections: list[Detection]) -> dict[int, int]:
        """Detection index -> track index: greedy over same-kind pairs, highest IoU first (ties:
        higher detection index, then higher track index first), pairs under `iou_threshold`
        never. One numpy IoU matrix; a lost track is matched where it is expected to be now
        (`predicted`, computed once per track), not where it was last seen."""
        if not detections or not self.tracks:
            return {}
        kinds: dict[str, int] = {}
        dk = np.array([kinds.setdefault(d.kind, len(kinds)) for d in detections])
        tk = np.array([kinds.get(t.kind, -1) for t in self.tracks])
        same = dk[:, None] == tk[None, :]
        if not same.any():
            return {}
        db = box_array([d.box for d in detections])
        tb = box_array([self.predicted(t) if t.misses else t.box for t in self.tracks])
        iou = iou_matrix(db, tb)
        # the pairs a greedy pass can take: same kind, at or above the threshold
        di, ti = np.nonzero(same & (iou >= self.iou_threshold))
        if di.size == 0:
            return {}
        vals = iou[di, ti]
        # best pairs first; equal IoU: higher detection index, then higher track index first
        # (the order of (iou, di, ti) tuples sorted in reverse)
        order = np.lexsort((-ti, -di, -vals))
        det_track: dict[int, int] = {}
        used: set[int] = set()
        limit = min(len(detections), len(self.tracks))
        for d, t in zip(di[order].tolist(), ti[order].tolist()):
            if d in det_track or t in used:
                continue
            det_track[d] = t
            used.add(t)
            if len(used) == limit:
                break
        return det_track

    def predicted(self, t: Track) -> Box:
        """Where a lost track's object is expected now: last box moved `misses` steps along its
        velocity, grown on every side by the distance moved plus `growth` per missed frame."""
        dx, dy = t.velocity[0] * t.misses, t.velocity[1] * t.misses
        grow = self.growth * t.misses
        b = t.box.shifted(dx, dy)
        gx = b.w * grow + abs(t.velocity[0])
        gy = b.h * grow + abs(t.velocity[1])
        out = Box(b.x - gx, b.y - gy, b.w + 2 * gx, b.h + 2 * gy)
        assert self._size is not None
        return out.clipped(*self._size)


def _moved(t: Track) -> tuple[tuple[float, float], ...] | None:
    """A lost track's landmarks moved `misses` steps along its velocity (as its box is)."""
    if t.landmarks is None:
        return None
    dx, dy = t.velocity[0] * t.misses, t.velocity[1] * t.misses
    return tuple((x + dx, y + dy) for x, y in t.landmarks)
