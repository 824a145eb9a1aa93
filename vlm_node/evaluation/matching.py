"""Sign readings against labelled signs, frame by frame, and results against labels by topic and
stamp.

Box matching is `vlm_node.render.evaluate.score_image` (each labelled sign takes the free
reading with the highest IoU >= 0.3), the same rule the OCR benchmark and the demo score with,
so figures from `vlm-node eval` compare with theirs. Added here only what a bag needs on top:
a label or reading without a box (image-level labels, a VLM that gives no box) pairs with a free
reading of the same class in that frame, as `vlm-node analyze --labels` does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from vlm_node.evaluation.labels import FrameLabel, LabelKey
from vlm_node.evaluation.records import FrameRecord
from vlm_node.render.evaluate import _value_matches, score_image
from vlm_node.results import SignReading

MATCH_IOU = 0.3
NONE = "(none)"  # confusion-matrix row of false readings / column of missed signs


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
                and _value_matches(self.reading, self.label))


def match_signs(readings: Sequence[SignReading], signs: Sequence[dict[str, Any]],
                iou: float = MATCH_IOU) -> list[SignMatch]:
    """One SignMatch per labelled sign (in label order), then one per unmatched reading."""
    pairs, free = score_image(readings, signs, iou)
    matches: list[SignMatch] = []
    for label, reading in pairs:
        if reading is None:
            reading = next((r for r in free if r.sign_class == label["class"]
                            and (label.get("box") is None or r.box is None)), None)
            free = [r for r in free if r is not reading]
        matches.append(SignMatch(label, reading))
    return matches + [SignMatch(None, r) for r in free]


@dataclass
class FrameMatch:
    """An analysed frame whose signs are labelled, with its matches."""

    record: FrameRecord
    label: FrameLabel
    signs: list[SignMatch]


@dataclass
class MatchedRun:
    """Records joined with labels by (topic, stamp_ns)."""

    frames: list[FrameMatch] = field(default_factory=list)  # analysed, signs labelled
    labelled: dict[int, FrameLabel] = field(default_factory=dict)  # record index -> label
    unlabelled_records: int = 0  # messages with no label entry at all
    orphan_labels: list[LabelKey] = field(default_factory=list)  # labels of no bag message


def match_records(records: Iterable[FrameRecord], labels: dict[LabelKey, FrameLabel],
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
