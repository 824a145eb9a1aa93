"""Measuring the anonymizer against labelled images: recall, precision and leaks per kind, and
composite street-like frames built from labelled photos for resolution-dependent benchmarks.

Definitions (one place, used by `vlm-node anonymize --labels`, the benchmark and the tests):

* A *detection* is a box the detectors returned (before margins), carried-over regions
  included. Labels and detections are matched one to one, greedily by descending IoU; a pair
  counts when IoU >= `iou` (0.3: face labels are tight dlib boxes, detectors draw looser ones).
* *recall* = matched labels / labels; *precision* = matched detections / detections.
* A label is *leaked* when less than `leak_coverage` (0.3) of its box area lies inside the
  pixels that were actually redacted (margins and face ellipses included). Leak rate = leaked
  labels / labels. Unlike recall this does not care how well a box fits: a face inside a
  generous redaction is safe, a face half outside a tight one is counted as leaked when most of
  it is visible.
* Objects whose box's short side is below `ignore_below` pixels are neither counted when missed
  nor when detected without a label (small background faces are not labelled in the PASCAL
  photos); 0 scores everything.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np

from vlm_node.anonymize.redact import redaction_region, region_mask
from vlm_node.geometry import Box
from vlm_node.results import Detection

KINDS = ("face", "plate")
_LABEL_KEYS = {"face": "faces", "plate": "plates"}


@dataclass
class LabelledImage:
    """One image entry of a labels file; `boxes[kind]` is None where the kind is unlabelled."""

    path: Path
    relative: str
    boxes: dict[str, list[Box] | None]


def load_labels(path: str | Path) -> list[LabelledImage]:
    """Entries of a labels.json (format in shared/data/README.md); file paths are relative to
    the labels file's directory."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["images"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a labels file ({{\"images\": [...]}}): {exc}") from exc
    out = []
    for e in entries:
        boxes: dict[str, list[Box] | None] = {}
        for kind, key in _LABEL_KEYS.items():
            boxes[kind] = [Box.from_list(b) for b in e[key]] if key in e else None
        out.append(LabelledImage(path.parent / e["file"], e["file"], boxes))
    return out


def match(labels: Sequence[Box], dets: Sequence[Box], iou: float) -> list[tuple[int, int]]:
    """One-to-one (label index, detection index) pairs with IoU >= `iou`, best pairs first."""
    pairs = sorted(((lb.iou(db), li, di) for li, lb in enumerate(labels)
                    for di, db in enumerate(dets)), reverse=True)
    used_l: set[int] = set()
    used_d: set[int] = set()
    out = []
    for v, li, di in pairs:
        if v < iou:
            break
        if li in used_l or di in used_d:
            continue
        used_l.add(li)
        used_d.add(di)
        out.append((li, di))
    return out


@dataclass
class KindCounts:
    """Counts of one kind over a set of images."""

    labels: int = 0
    matched: int = 0
    detections: int = 0
    false_positives: int = 0
    leaked: int = 0

    def add(self, other: "KindCounts") -> None:
        for f in ("labels", "matched", "detections", "false_positives", "leaked"):
            setattr(self, f, getattr(self, f) + getattr(other, f))

    def to_json(self) -> dict[str, Any]:
        def ratio(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None
        return {"labels": self.labels, "matched": self.matched, "detections": self.detections,
                "false_positives": self.false_positives, "leaked": self.leaked,
                "recall": ratio(self.matched, self.labels),
                "precision": ratio(self.detections - self.false_positives, self.detections),
                "leak_rate": ratio(self.leaked, self.labels)}


def score_image(labels: dict[str, list[Box] | None], detections: Iterable[Detection],
                width: int, height: int, *, margins: dict[str, float], iou: float = 0.3,
                leak_coverage: float = 0.3, ignore_below: float = 0.0) -> dict[str, KindCounts]:
    """Counts per labelled kind for one image (kinds without labels are skipped)."""
    dets = list(detections)
    out: dict[str, KindCounts] = {}
    for kind in KINDS:
        boxes = labels.get(kind)
        if boxes is None:
            continue
        kind_dets = [d for d in dets if d.kind == kind]
        c = KindCounts()
        pairs = match(boxes, [d.box for d in kind_dets], iou)
        matched_l = {li for li, _ in pairs}
        mask = region_mask(width, height, [redaction_region(d, margins[kind], width, height)
                                           for d in kind_dets])
        ignored_l = {li for li, b in enumerate(boxes) if min(b.w, b.h) < ignore_below}
        for li, b in enumerate(boxes):
            if li in ignored_l:
                continue
            c.labels += 1
            c.matched += li in matched_l
            rows, cols = b.clipped(width, height).int_slices(width, height)
            covered = float(mask[rows, cols].mean()) if mask[rows, cols].size else 0.0
            c.leaked += covered < leak_coverage
        pair_of = {di: li for li, di in pairs}
        for di, d in enumerate(kind_dets):
            if di in pair_of:
                if pair_of[di] not in ignored_l:
                    c.detections += 1
            elif min(d.box.w, d.box.h) >= ignore_below:
                c.detections += 1
                c.false_positives += 1
        out[kind] = c
    return out


@dataclass
class Composite:
    """A frame assembled from labelled photos, with the labels moved along."""

    image: np.ndarray
    boxes: dict[str, list[Box]] = field(default_factory=dict)


def compose_frame(photos: Sequence[tuple[np.ndarray, dict[str, list[Box] | None]]],
                  size: tuple[int, int], rng: np.random.Generator,
                  grid: tuple[int, int] = (4, 3), scale_range: tuple[float, float] = (0.5, 1.0)
                  ) -> Composite:
    """A `size` (w, h) frame: a blurred, enlarged photo as backdrop and a `grid` of cells, each
    holding one photo scaled to fit the cell times a random factor in `scale_range` at a
    random position. Small factors make the small, distant faces and plates of a wide road
    camera. Only kinds labelled in every used photo are returned as labels."""
    w, h = size
    cols, rows = grid
    n = cols * rows
    order = rng.permutation(len(photos))
    chosen = [photos[int(order[i % len(photos)])] for i in range(n)]
    back = cv2.resize(chosen[0][0], (w, h), interpolation=cv2.INTER_LINEAR)
    frame = cv2.GaussianBlur(back, (0, 0), 25)
    boxes: dict[str, list[Box]] = {k: [] for k in KINDS}
    cw, ch = w / cols, h / rows
    for i, (img, labels) in enumerate(chosen):
        ih, iw = img.shape[:2]
        s = min(cw / iw, ch / ih) * float(rng.uniform(*scale_range))
        pw, ph = max(1, int(iw * s)), max(1, int(ih * s))
        cx, cy = (i % cols) * cw, (i // cols) * ch
        x0 = int(cx + rng.uniform(0, max(0.0, cw - pw)))
        y0 = int(cy + rng.uniform(0, max(0.0, ch - ph)))
        frame[y0:y0 + ph, x0:x0 + pw] = cv2.resize(img, (pw, ph), interpolation=cv2.INTER_AREA)
        sx, sy = pw / iw, ph / ih
        for kind in KINDS:
            for b in labels.get(kind) or []:
                boxes[kind].append(b.scaled(sx, sy).shifted(x0, y0))
    return Composite(frame, boxes)


def composite_set(items: Sequence[LabelledImage], size: tuple[int, int], count: int,
                  seed: int = 0, kinds: Sequence[str] = KINDS) -> list[Composite]:
    """`count` composites per kind in `kinds`, each from photos labelled with that kind only
    (a plate photo's unlabelled bystanders must not count as false faces)."""
    rng = np.random.default_rng(seed)
    out: list[Composite] = []
    for kind in kinds:
        photos = []
        for item in items:
            if item.boxes.get(kind) is None:
                continue
            img = cv2.imread(str(item.path), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"unreadable image {item.path}")
            photos.append((img, {kind: item.boxes[kind]}))
        if not photos:
            continue
        for _ in range(count):
            comp = compose_frame(photos, size, rng)
            comp.boxes = {kind: comp.boxes[kind]}
            out.append(comp)
    return out
