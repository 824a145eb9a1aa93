"""Scoring the anonymizer against labelled faces and plates: recall, precision and leaks per
kind, for photo sets (`vlm-node anonymize --labels`, the benchmark) and bags
(`vlm-node anonymize-bag --labels`, `vlm-node eval`).

Definitions (one place):

* A *detection* is a box the detectors returned (before margins), carried-over regions
  included. Labels and detections pair by `matching.greedy_pairs` (one to one, best IoU
  first); a pair counts when IoU >= `iou` (0.3: face labels are often tight dlib boxes,
  detectors draw looser ones).
* *recall* = matched labels / labels; *precision* = matched detections / detections.
* A label is *leaked* when less than `leak_coverage` (0.3) of its box area lies inside the
  pixels that were actually redacted (margins and face ellipses included). Leak rate = leaked
  labels / labels. Unlike recall this does not care how well a box fits: a face inside a
  generous redaction is safe, a face half outside a tight one is counted as leaked when most of
  it is visible.
* Objects whose box's short side is below `ignore_below` pixels are neither counted when missed
  nor when detected without a label (small background faces are often not labelled); 0 scores
  everything. Likewise a detection that pairs with an *ignored* label box (`faces_ignore`:
  boxes the dataset marks invalid) counts neither way.

Counts are `KindCounts` (they add, `vlm_node.counts`), so totals over images, frames, chunks
and bags are sums; ratios are computed from the sums at the end.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from vlm_node.anonymize.redact import redaction_region, region_mask
from vlm_node.counts import Counts
from vlm_node.evaluation.labels import ImageLabel, LabelKey
from vlm_node.evaluation.matching import greedy_pairs
from vlm_node.geometry import Box
from vlm_node.results import Detection

KINDS = ("face", "plate")
REDACTION_IOU = 0.3


def ratio(a: float, b: float) -> float | None:
    """a / b to four places; None where nothing was counted (not 0: no evidence either way)."""
    return round(a / b, 4) if b else None


@dataclass
class KindCounts(Counts):
    """Counts of one kind over a set of images."""

    labels: int = 0
    matched: int = 0
    detections: int = 0
    false_positives: int = 0
    leaked: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"labels": self.labels, "matched": self.matched, "detections": self.detections,
                "false_positives": self.false_positives, "leaked": self.leaked,
                "recall": ratio(self.matched, self.labels),
                "precision": ratio(self.detections - self.false_positives, self.detections),
                "leak_rate": ratio(self.leaked, self.labels)}


def new_counts() -> dict[str, KindCounts]:
    """Zero counts for every kind, in report order."""
    return {k: KindCounts() for k in KINDS}


def score_image(labels: ImageLabel | Mapping[str, Sequence[Box] | None],
                detections: Iterable[Detection], width: int, height: int, *,
                margins: Mapping[str, float], iou: float = REDACTION_IOU,
                leak_coverage: float = 0.3, ignore_below: float = 0.0
                ) -> dict[str, KindCounts]:
    """Counts per labelled kind for one image (kinds without labels are skipped). `labels`:
    an ImageLabel (its `faces_ignore` honoured) or kind -> boxes."""
    if isinstance(labels, ImageLabel):
        boxes_of = {k: labels.boxes(k) for k in KINDS}
        ignored_of = {k: labels.ignored(k) for k in KINDS}
    else:
        boxes_of = {k: None if labels.get(k) is None else list(labels[k]) for k in KINDS}
        ignored_of = {}
    dets = list(detections)
    out: dict[str, KindCounts] = {}
    for kind in KINDS:
        boxes = boxes_of[kind]
        if boxes is None:
            continue
        kind_dets = [d for d in dets if d.kind == kind]
        c = KindCounts()
        pairs = greedy_pairs(boxes, [d.box for d in kind_dets], iou)
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
        free = [di for di in range(len(kind_dets)) if di not in pair_of]
        on_ignored = {free[fi] for _, fi in greedy_pairs(
            ignored_of.get(kind, []), [kind_dets[di].box for di in free], iou)}
        for di, d in enumerate(kind_dets):
            if di in pair_of:
                if pair_of[di] not in ignored_l:
                    c.detections += 1
            elif di not in on_ignored and min(d.box.w, d.box.h) >= ignore_below:
                c.detections += 1
                c.false_positives += 1
        out[kind] = c
    return out


@dataclass(frozen=True)
class BagRedactionScorer:
    """Scores the frames of a bag run against labels keyed by (topic, header stamp): what
    `vlm_node.bags` takes as `labels` (its `LabelScorer` protocol), so that the bag runners
    score without knowing the label format. Plain data: it pickles to Ray workers."""

    labels: Mapping[LabelKey, ImageLabel]

    def keys(self) -> Iterable[LabelKey]:
        return self.labels.keys()

    def labelled(self, key: LabelKey) -> bool:
        return key in self.labels

    def new_counts(self) -> dict[str, KindCounts]:
        return new_counts()

    def score(self, key: LabelKey, detections: Iterable[Detection], width: int, height: int,
              margins: Mapping[str, float]) -> dict[str, KindCounts]:
        label = self.labels[key]
        return score_image({k: label.boxes(k) for k in KINDS}, detections, width, height,
                           margins=margins)
