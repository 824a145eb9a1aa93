"""What the plate pass of a video frame takes over from the frames before, instead of
computing it again.

On a 2-core machine the plate pass of a busy 1080p frame is mostly two models: the PP-OCR text
detector (one band of the frame plus the vehicle regions, plate_scan.py) and PP-OCR
recognition, which reads every candidate line to tell plates from sign and shop text (tens of
ms per line on 2 loaded cores: a frame with a dozen lines of text costs more than the
detector). On video much of that repeats: the same lines are read again each time their band
or vehicle comes round, and a scene that stands or pans shows the same pixels frame after
frame. Two memories, one camera each:

* `ReadCache`: a line whose pixels are found again (normalised correlation >= 0.9, searched
  a few pixels around) where a line was read in the last `max_age` frames takes over that
  reading instead of calling recognition. Same pixels, same reading: the plate decision is
  the one a fresh reading would give.
* `AreaMemory`: a rectangle the partial plan must search (the band, a vehicle region) whose
  pixels are unchanged since a band or vehicle search of the last `max_age` frames covered
  them (the whole picture's shift measured by phase correlation, then every 32x32 px block
  within 8 grey levels on average, at quarter resolution) takes over the text lines found
  then, moved with the scene; only the strip that came in at the frame's border is searched.
  A plate of 40 px width pasted into a still scene changed its block by 12 or more, a 3 px
  pan of real photos left most blocks under 5 (so most of a panning frame is still
  searched); anything that moves on its own, or a camera driving forward, fails the test and
  the rectangle is searched (fail safe: when unsure, run the detector). The whole pass's
  lines are never taken over: the band and vehicle crops of the next frames are other views
  of the same pixels and found plates the whole pass had missed.

Both are used only by the video plan, in frame order, one frame at a time (the node, the
benches). Offline runs with frames in flight and recordings (`for_recordings`,
`for_frames_in_flight`) switch them off (`plate_reuse_frames: 0`), so their output does not
depend on timing; stills never use them. Both are forgotten when the stream restarts.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from vlm_node.anonymize.multiscale import RawDetections, merge, working_scale
from vlm_node.anonymize.plate_scan import PlateScan, ScanRect, dedupe_lines, scan_rects
from vlm_node.anonymize.plates import TextPlateDetector, accepted_plates
from vlm_node.results import TextHint


LINE_SEARCH = 0.3
"""A cached line is searched this fraction of its height (at least 4 px) around its old place:
motion of a few pixels per frame, and the detector's box of one line moving by as much."""

REGION_SCALE = 4
"""Areas are compared at 1/REGION_SCALE of frame resolution (a 1080p frame at 480x270)."""

BORDER_REACH = 0.2
"""Where the scene moved in from outside the frame, the strip searched again reaches this
fraction of the frame height (216 px at 1080p) further in than the new pixels: wider than a
plate near the camera, so that a plate entering at the border is searched whole, not only
its newest part."""


def _grey(frame: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """The grey pixels of a rectangle of `frame` (clipped to it)."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    part = frame[y1:y2, x1:x2]
    return cv2.cvtColor(part, cv2.COLOR_BGR2GRAY) if part.ndim == 3 else part


def _int_box(box: np.ndarray) -> tuple[int, int, int, int]:
    return (int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])),
            int(np.ceil(box[3])))


def find_patch(frame: np.ndarray, patch: np.ndarray, x1: int, y1: int, search: int
               ) -> tuple[float, int, int]:
    """(normalised correlation, dx, dy) of the best place of `patch` (grey) in `frame` within
    `search` px of (x1, y1); correlation -1 when the patch is flat (no texture to match) or
    the search window leaves the frame too far."""
    ph, pw = patch.shape[:2]
    if float(patch.std()) < 4.0:
        return -1.0, 0, 0
    h, w = frame.shape[:2]
    wx1, wy1 = max(0, x1 - search), max(0, y1 - search)
    wx2, wy2 = min(w, x1 + pw + search), min(h, y1 + ph + search)
    if wx2 - wx1 < pw or wy2 - wy1 < ph:
        return -1.0, 0, 0
    window = _grey(frame, wx1, wy1, wx2, wy2)
    scores = cv2.matchTemplate(window, patch, cv2.TM_CCOEFF_NORMED)
    _, best, _, (bx, by) = cv2.minMaxLoc(scores)
    return float(best), wx1 + bx - x1, wy1 + by - y1


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


@dataclass(slots=True)
class CachedRead:
    """A line read on frame `frame`: where (x1 y1 x2 y2 frame px), its pixels, and what
    recognition read."""

    box: np.ndarray
    patch: np.ndarray  # the grey frame pixels inside `box`
    text: str
    frame: int


@dataclass
class ReadCache:
    """Readings of text lines kept for `max_age` frames (see the module docstring)."""

    max_age: int = 3
    min_similarity: float = 0.9
    # the line's box, moved with its pixels, must match the old one this closely: a reading
    # belongs to its crop, and a box of another extent over the same plate (a band crop's
    # whole line where the whole pass had a part) reads otherwise (a plate was lost on
    # 16 frames of a moving clip at 0.6)
    min_iou: float = 0.85
    entries: list[CachedRead] = field(default_factory=list)
    frame: int = 0
    hits: int = 0
    misses: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    consult: bool = True  # False: this frame's readings are stored, none taken over

    def next_frame(self, consult: bool = True) -> None:
        """Called once per frame before its lines are read: readings older than `max_age`
        frames are dropped, so every line is read afresh at least that often. `consult`
        False: the frame reads every line itself (a whole pass), its readings are kept for
        the frames after it."""
        with self._lock:
            self.consult = consult
            self.frame += 1
            self.entries = [e for e in self.entries if self.frame - e.frame <= self.max_age]

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()

    def lookup(self, box: np.ndarray, frame: np.ndarray) -> str | None:
        """The reading of a cached line whose pixels are found again (correlation at least
        `min_similarity`, within LINE_SEARCH of its old place) where this frame's line `box`
        lies (IoU of the moved box with `box` at least `min_iou`), or None: the line must be
        read."""
        with self._lock:
            if not self.consult:
                return None
            for e in self.entries:
                if _iou(e.box, box) < 0.5:
                    continue
                x1, y1, _, _ = _int_box(e.box)
                search = max(4, int(LINE_SEARCH * (e.box[3] - e.box[1])))
                sim, dx, dy = find_patch(frame, e.patch, x1, y1, search)
                if sim >= self.min_similarity and _iou(e.box + np.array(
                        [dx, dy, dx, dy], np.float32), box) >= self.min_iou:
                    self.hits += 1
                    return e.text
            self.misses += 1
            return None

    def store(self, box: np.ndarray, frame: np.ndarray, text: str) -> None:
        """Remember what the line at `box` read on the current frame (a newer reading of
        about the same place replaces an older one)."""
        patch = _grey(frame, *_int_box(box))
        if patch.shape[0] < 4 or patch.shape[1] < 4 or float(patch.std()) < 4.0:
            return
        with self._lock:
            self.entries = [e for e in self.entries if _iou(e.box, box) < 0.5]
            self.entries.append(CachedRead(np.asarray(box, np.float32).copy(), patch, text,
                                           self.frame))


@dataclass(slots=True)
class ScannedArea:
    """A rectangle (x1, y1, x2, y2 frame px) the text detector searched on frame `frame`, and
    the text lines it found there (frame px)."""

    rect: tuple[int, int, int, int]
    lines: RawDetections
    frame: int


@dataclass
class AreaMemory:
    """Text lines of rectangles searched in the last `max_age` frames, taken over for a
    rectangle of this frame whose pixels are found unchanged there (see the module
    docstring). The scene's motion since the area's frame is measured by phase correlation
    of the two frames at 1/REGION_SCALE resolution; after moving the old pixels by it, every
    block of `block` x `block` (reduced) pixels must differ by at most `max_diff` grey levels
    on average: a plate that appeared, even a small one, changes its block by tens of levels,
    and motion that is not a shift of the whole picture (driving forward, people walking)
    leaves blocks that differ, so the rectangle is searched again."""

    max_age: int = 6
    max_diff: float = 8.0
    block: int = 8
    min_response: float = 0.2  # phase-correlation peak below which motion is unknown
    areas: list[ScannedArea] = field(default_factory=list)
    frame: int = 0
    taken: int = 0
    searched: int = 0
    _history: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _shifts: dict[int, tuple[float, float] | None] = field(default_factory=dict, repr=False)
    _window: np.ndarray | None = field(default=None, repr=False)

    def clear(self) -> None:
        self.areas.clear()
        self._history.clear()
        self._shifts.clear()

    def next_frame(self, image: np.ndarray, restart: bool) -> None:
        """Called once per frame of the video plan, in frame order, before `take`. `restart`:
        a whole pass (first frame of a stream, a cut): nothing before it is taken over."""
        if restart:
            self.clear()
        self.frame += 1
        h, w = image.shape[:2]
        small = cv2.resize(image, (max(8, w // REGION_SCALE), max(8, h // REGION_SCALE)),
                           interpolation=cv2.INTER_AREA)
        grey = (cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3
                else small).astype(np.float32)
        if self._window is None or self._window.shape != grey.shape:
            self._window = cv2.createHanningWindow((grey.shape[1], grey.shape[0]), cv2.CV_32F)
            self.clear()
        self._history = {f: g for f, g in self._history.items()
                         if self.frame - f <= self.max_age}
        self._history[self.frame] = grey
        self._shifts = {}
        self.areas = [a for a in self.areas if self.frame - a.frame <= self.max_age]

    def _shift_since(self, frame: int) -> tuple[float, float] | None:
        """The scene's shift (frame px) from frame `frame` to this one, or None when the
        phase correlation finds no clear single shift."""
        if frame not in self._shifts:
            old, cur = self._history.get(frame), self._history[self.frame]
            shift = None
            if old is not None:
                # copies: with a window, OpenCV 4 multiplies its float inputs in place
                (dx, dy), response = cv2.phaseCorrelate(old.copy(), cur.copy(), self._window)
                if response >= self.min_response:
                    shift = (dx * REGION_SCALE, dy * REGION_SCALE)
            self._shifts[frame] = shift
        return self._shifts[frame]

    def take(self, rect: tuple[int, int, int, int]
             ) -> tuple[RawDetections, list[tuple[int, int, int, int]]] | None:
        """The text lines of `rect` taken over from the latest area that held its pixels
        unchanged (moved along with the scene), and the strips of `rect` that must still be
        searched: where the scene moved in from outside the frame, reaching BORDER_REACH x
        frame height further in, so that a plate entering at the border is searched whole.
        None: `rect` must be searched."""
        x1, y1, x2, y2 = rect
        s = REGION_SCALE
        cur = self._history[self.frame]
        fh, fw = cur.shape[0] * s, cur.shape[1] * s
        reach = int(BORDER_REACH * fh)
        for area in sorted(self.areas, key=lambda a: -a.frame):
            shift = self._shift_since(area.frame)
            if shift is None:
                continue
            dx, dy = shift
            # the part of `rect` whose pixels were inside the frame then
            vx1, vy1 = int(np.ceil(max(x1, dx))), int(np.ceil(max(y1, dy)))
            vx2, vy2 = int(np.floor(min(x2, fw + dx))), int(np.floor(min(y2, fh + dy)))
            if vx2 - vx1 < 2 * s or vy2 - vy1 < 2 * s:
                continue
            ax1, ay1, ax2, ay2 = area.rect
            # (up to a pixel: the measured shift is a fraction of a pixel off)
            if not (ax1 <= vx1 - dx + 1 and ay1 <= vy1 - dy + 1 and vx2 - dx - 1 <= ax2
                    and vy2 - dy - 1 <= ay2):
                continue
            size = (max(1, int(round((vx2 - vx1) / s))), max(1, int(round((vy2 - vy1) / s))))
            centre = ((vx1 + vx2) / 2 / s, (vy1 + vy2) / 2 / s)
            now = cv2.getRectSubPix(cur, size, centre)
            then = cv2.getRectSubPix(self._history[area.frame], size,
                                     (centre[0] - dx / s, centre[1] - dy / s))
            if not self._unchanged(now, then):
                continue
            self.taken += 1
            strips = []
            if vx1 > x1:
                strips.append((x1, y1, min(x2, vx1 + reach), y2))
            if vx2 < x2:
                strips.append((max(x1, vx2 - reach), y1, x2, y2))
            if vy1 > y1:
                strips.append((x1, y1, x2, min(y2, vy1 + reach)))
            if vy2 < y2:
                strips.append((x1, max(y1, vy2 - reach), x2, y2))
            lines = area.lines
            if not len(lines):
                return lines, strips
            b = lines.boxes
            inside = ((b[:, 2] > vx1 - dx) & (b[:, 0] < vx2 - dx) & (b[:, 3] > vy1 - dy)
                      & (b[:, 1] < vy2 - dy))
            moved = lines.select(np.nonzero(inside)[0])
            off = np.array([dx, dy], np.float32)
            return RawDetections(moved.boxes + np.tile(off, 2), moved.scores,
                                 moved.points + off), strips
        self.searched += 1
        return None

    def _unchanged(self, now: np.ndarray, then: np.ndarray) -> bool:
        """Whether every block of the two reduced grey images differs by at most
        `max_diff` on average (a margin of one block at the border is included: a partial
        block counts as a block)."""
        diff = np.abs(now - then)
        h, w = diff.shape
        b = self.block
        ph, pw = -(-h // b) * b, -(-w // b) * b
        if (ph, pw) != (h, w):
            diff = cv2.copyMakeBorder(diff, 0, ph - h, 0, pw - w, cv2.BORDER_REFLECT)
        blocks = diff.reshape(ph // b, b, pw // b, b).mean(axis=(1, 3))
        return float(blocks.max()) <= self.max_diff

    def store(self, rect: tuple[int, int, int, int], lines: RawDetections) -> None:
        """The text lines found by searching `rect` on this frame."""
        self.areas.append(ScannedArea(rect, lines, self.frame))

    def forget_around(self, boxes: Sequence[np.ndarray], margin: int = 32) -> None:
        """Drop the areas that reach within `margin` px of any of `boxes` (x1 y1 x2 y2 of
        this frame): what lies there is searched again."""
        for b in boxes:
            self.areas = [a for a in self.areas
                          if not (a.rect[0] - margin < b[2] and b[0] < a.rect[2] + margin
                                  and a.rect[1] - margin < b[3] and b[1] < a.rect[3] + margin)]


@dataclass
class PlateMemory:
    """One camera's memories of the video plan's plate pass (`ReadCache`, `AreaMemory`)."""

    reads: ReadCache = field(default_factory=ReadCache)
    areas: AreaMemory = field(default_factory=AreaMemory)

    def forget(self) -> None:
        """The stream restarted: nothing seen before applies."""
        self.reads.clear()
        self.areas.clear()

    def scan(self, detector: TextPlateDetector, frame: np.ndarray, scan: PlateScan,
             reuse_frames: int) -> tuple[RawDetections, list[TextHint]]:
        """Plates and sign-text hints in the part of `frame` that `scan` covers (a frame of
        the video plan: the whole frame, or a band and vehicle regions): each rectangle's
        text lines are searched, or taken over where its pixels are unchanged (`reuse_frames`
        > 0, partial frames only), then judged together (one plate decision, one read
        budget), reading through the `ReadCache`."""
        h, w = frame.shape[:2]
        scale = working_scale(w, h, detector.max_side, detector.max_upscale)
        rects = [(0, 0, w, h)] if scan.full else scan_rects(scan, w, h)
        cache = None
        if reuse_frames > 0:
            self.reads.max_age = self.areas.max_age = reuse_frames
            self.reads.next_frame(consult=not scan.full)
            self.areas.next_frame(frame, restart=scan.full)
            cache = self.reads
        parts: list[RawDetections] = []
        owner: list[int] = []
        for i, rect in enumerate(rects):
            taken = self.areas.take(rect) if cache is not None and not scan.full else None
            if taken is None:
                # the first rectangle is the whole frame or the band (`scan_rects`)
                found = detector.lines_of_rect(frame, ScanRect(*rect, scale, recurring=i == 0))
                if cache is not None and not scan.full:
                    # not the whole pass's lines: the band and vehicle crops of the frames
                    # after it are other views of the same pixels (the network sees other
                    # borders), and on busy 1080p frames they found plates the whole pass had
                    # missed; so each is searched once before its lines are taken over
                    self.areas.store(rect, found)
                searched = [found]
            else:
                searched = [taken[0]] + [detector.lines_of_rect(frame, ScanRect(*r, scale))
                                         for r in taken[1]]
            for found in searched:
                owner += [len(parts)] * len(found)
                parts.append(found)
        lines = RawDetections.concat(parts, 4)
        lines = lines.select(dedupe_lines(lines.boxes, np.array(owner, int)))
        candidates, hints = detector.examine(frame, lines=lines, cache=cache)
        if cache is not None:
            # text that was judged not to be a plate is searched again next time: on such
            # borderline text the decision can flip with the detector's box (a plate read
            # as a dealer's name was accepted on 1 of 3 band crops), and taking the old
            # lines over would repeat a miss instead of giving it another chance
            self.areas.forget_around([c.box for c in candidates if not c.accepted])
        dets = accepted_plates(candidates)
        if not scan.full and len(dets) > 1:
            dets = merge(dets, 0.3)
        return dets, hints
