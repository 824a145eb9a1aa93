"""The one rule that pairs what the system found with what is labelled, and the join of a bag's
results with its labels by topic and stamp.

**Boxes** (faces, plates and signs alike, `greedy_pairs`): one to one, greedily by descending
IoU over all label/detection pairs of the image; a pair counts when IoU >= the threshold.
Taking the globally best pair first (rather than each label in file order taking its best free
detection) makes the result independent of the order labels are written in.

**Signs** (`match_signs`), threshold `MATCH_IOU` = 0.3 because readers box the sign face while
labels box the whole drawn sign (plate, border, post-free) and small signs lose IoU fast:

1. Boxed labels and boxed readings pair by `greedy_pairs`, whatever their classes: a reading
   on the sign with the wrong class is a *misread* (a confusion-matrix entry), not a false
   reading plus a missed sign.
2. Then each label still unpaired where the label or the reading has no box (image-level
   labels, a VLM that gives no box) takes the first free reading of the same class in that
   image: without a box only the class can say which sign a reading is about.
3. A pair is class-correct when the classes are equal and value-correct when also the value
   (and the unit, where the label has one) is equal (`value_matches`); a sign without a value
   needs only the class. Readings left free are false readings; labels left free are missed.

`vlm-node analyze --labels`, `vlm-node eval` and the OCR benchmark all score with this rule, so
their figures compare.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from vlm_node.evaluation.labels import ImageLabel, LabelKey
from vlm_node.evaluation.records import FrameRecord
from vlm_node.geometry import Box
from vlm_node.results import SignReading

MATCH_IOU = 0.3
NONE = "(none)"  # confusion-matrix row of false readings / column of missed signs


def greedy_pairs(labels: Sequence[Box | None], found: Sequence[Box | None],
                 iou: float) -> list[tuple[int, int]]:
    """One-to-one (label index, found index) pairs with IoU >= `iou`, best pairs first.
    None boxes pair with nothing."""
    pairs = sorted(((lb.iou(fb), li, fi) for li, lb in enumerate(labels) if lb is not None
                    for fi, fb in enumerate(found) if fb is not None), reverse=True)
    used_l: set[int] = set()
    used_f: set[int] = set()
    out = []
    for v, li, fi in pairs:
        if v < iou:
            break
        if li in used_l or fi in used_f:
            continue
        used_l.add(li)
        used_f.add(fi)
        out.append((li, fi))
    return out


def value_matches(reading: SignReading, sign: dict[str, Any]) -> bool:
    """Value (and unit, where labelled) of a reading equal the label's; true for a label
    without a value (the class is all there is to get right)."""
    if sign.get("value") is None:
        return True
    if reading.value is None or abs(float(reading.value) - float(sign["value"])) > 1e-6:
        return False
    return not sign.get("unit") or reading.unit == sign["unit"]


def label_box(sign: dict[str, Any]) -> Box | None:
    return Box.from_list(sign["box"]) if sign.get("box") else None


@dataclass
class SignMatch:
    """A labelled sign and the reading paired with it; either side may be missing (a missed
    sign has no reading, a false reading no label)."""

    label: dict[str, Any] | None
    reading: SignReading | None

    @property
    def label_class(self) -> str:
        return str(self.label["class"]) if self.label is not None else NONE

    @property
    def read_class(self) -> str:
        return self.reading.sign_class if self.reading is not None else NONE

    @property
    def class_ok(self) -> bool:
        return (self.label is not None and self.reading is not None
                and self.reading.sign_class == self.label["class"])

    @property
    def value_ok(self) -> bool:
        """Class right and, where the label has a value, value (and unit, if labelled) too."""
        return (self.class_ok and self.reading is not None and self.label is not None
                and value_matches(self.reading, self.label))


def scaled_signs(signs: Sequence[dict[str, Any]], fx: float, fy: float, dx: float = 0.0,
                 dy: float = 0.0) -> list[dict[str, Any]]:
    """Labelled signs with their boxes in a frame resized by (fx, fy) and placed at (dx, dy)
    (a letterboxed frame)."""
    out = []
    for sign in signs:
        sign = dict(sign)
        if sign.get("box"):
            x, y, w, h = sign["box"]
            sign["box"] = [x * fx + dx, y * fy + dy, w * fx, h * fy]
        out.append(sign)
    return out


def match_signs(readings: Sequence[SignReading], signs: Sequence[dict[str, Any]],
                iou: float = MATCH_IOU) -> list[SignMatch]:
    """One SignMatch per labelled sign (in label order), then one per unmatched reading, in
    reading order (the rule: module docstring)."""
    paired = dict(greedy_pairs([label_box(s) for s in signs], [r.box for r in readings], iou))
    used = set(paired.values())
    for li, sign in enumerate(signs):
        if li in paired:
            continue
        has_box = label_box(sign) is not None
        for ri, r in enumerate(readings):
            if ri not in used and r.sign_class == sign["class"] and (not has_box
                                                                     or r.box is None):
                paired[li] = ri
                used.add(ri)
                break
    matches = [SignMatch(sign, readings[paired[li]] if li in paired else None)
               for li, sign in enumerate(signs)]
    return matches + [SignMatch(None, r) for ri, r in enumerate(readings) if ri not in used]


@dataclass
class FrameMatch:
    """An analysed frame whose signs are labelled, with its matches."""

    record: FrameRecord
    label: ImageLabel
    signs: list[SignMatch]


@dataclass
class MatchedRun:
    """Records joined with labels by (topic, stamp_ns)."""

    frames: list[FrameMatch] = field(default_factory=list)  # analysed, signs labelled
    labelled: dict[int, ImageLabel] = field(default_factory=dict)  # record index -> label
    unlabelled_records: int = 0  # messages with no label entry at all
    orphan_labels: list[LabelKey] = field(default_factory=list)  # labels of no bag message


def match_records(records: Iterable[FrameRecord], labels: dict[LabelKey, ImageLabel],
                  iou: float = MATCH_IOU) -> MatchedRun:
    """Join records and labels; sign matches only for analysed frames whose signs are
    labelled (a frame without a result cannot be scored for signs, whatever the reason)."""
    run = MatchedRun()
    seen: set[LabelKey] = set()
    for rec in records:
        label = labels.get(rec.key)
        if label is None:
            run.unlabelled_records += 1
            continue
        seen.add(rec.key)
        run.labelled[rec.index] = label
        if rec.analysed and label.signs is not None:
            run.frames.append(FrameMatch(rec, label, match_signs(rec.readings, label.signs,
                                                                 iou)))
    run.orphan_labels = sorted(k for k in labels if k not in seen)
    return run
