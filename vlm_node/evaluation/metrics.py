"""The figures of an evaluation, computed from FrameRecords and their matches.

Definitions (docs/evaluation.md repeats them for readers of the reports):

* Signs, per class: a labelled sign read with its class is a true positive of that class; a
  labelled sign not read, or read as another class, is a false negative of its class; a reading
  that matches no label, or carries the wrong class, is a false positive of the class it claims.
  precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2PR / (P + R); `all` sums the counts
  over classes (micro average). Only analysed frames whose signs are labelled count.
* Speed values: of the labelled speed_limit signs that carry a value, the share read with the
  right class, value and unit (`value_accuracy`); `accuracy_of_read` divides by the ones read
  with the right class instead, separating "missed" from "misread".
* Tracks: a reading is correct when it matches a label with class, value and unit right. A false
  confirmation is a `confirmed` reading that is not correct (what a planner would act on wrongly);
  a tentative reading that is not correct is an error the k-of-n rule kept back. Frames to
  confirm: for each track, its camera's analysed frames from the first one it was seen in up to
  and including the first one it was confirmed in (k consecutive sightings give k).
* Anonymization (offline only: the node publishes counts, not boxes): recall, precision and leak
  rate of `vlm_node.evaluation.redaction.score_image`, summed over frames.
* Latency: offline, decode + anonymize + analyse + track of one frame; live, the frame's
  publication by the player to its result's arrival (the node's own figure, from its camera
  callback, is reported beside it as node latency). p50/p95/p99 interpolate linearly between
  samples (numpy's default).
  Throughput = analysed frames / wall seconds; real-time factor = recorded seconds / wall
  seconds (above 1: faster than the bag was recorded).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from vlm_node.evaluation.redaction import KINDS, KindCounts, score_image
from vlm_node.evaluation.labels import ImageLabel, LabelKey
from vlm_node.evaluation.matching import FrameMatch, MatchedRun, match_records
from vlm_node.evaluation.records import STATUSES, FrameRecord, RunInfo

SPEED_CLASS = "speed_limit"


def ratio(num: float, den: float) -> float | None:
    """num / den rounded for reports, None where there is nothing to divide by (never 0.0:
    "no data" must not read as "all wrong")."""
    return round(num / den, 4) if den else None


# ------------------------------------------------------------------------------ signs
@dataclass
class ClassCounts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float | None:
        return ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float | None:
        return ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def to_json(self) -> dict[str, Any]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "labelled": self.tp + self.fn,
                "precision": self.precision, "recall": self.recall, "f1": self.f1}


@dataclass
class SignMetrics:
    frames: int = 0
    per_class: dict[str, ClassCounts] = field(default_factory=dict)
    # label class (or "(none)" for false readings) -> read class (or "(none)": missed) -> n
    confusion: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def total(self) -> ClassCounts:
        return ClassCounts(sum(c.tp for c in self.per_class.values()),
                           sum(c.fp for c in self.per_class.values()),
                           sum(c.fn for c in self.per_class.values()))

    def to_json(self) -> dict[str, Any]:
        return {"frames": self.frames, "all": self.total.to_json(),
                "per_class": {k: v.to_json() for k, v in sorted(self.per_class.items())},
                "confusion": {k: dict(sorted(v.items()))
                              for k, v in sorted(self.confusion.items())}}


def sign_metrics(frames: Sequence[FrameMatch]) -> SignMetrics:
    out = SignMetrics(frames=len(frames))

    def counts(cls: str) -> ClassCounts:
        return out.per_class.setdefault(cls, ClassCounts())

    for frame in frames:
        for m in frame.signs:
            out.confusion.setdefault(m.label_class, Counter())[m.read_class] += 1
            if m.class_ok:
                counts(m.label_class).tp += 1
                continue
            if m.label is not None:
                counts(m.label_class).fn += 1
            if m.reading is not None:
                counts(m.read_class).fp += 1
    return out


# ------------------------------------------------------------------------------ speed values
@dataclass
class SpeedMetrics:
    labelled: int = 0
    class_ok: int = 0
    value_ok: int = 0
    misread: list[dict[str, Any]] = field(default_factory=list)  # right class, wrong value

    @property
    def value_accuracy(self) -> float | None:
        return ratio(self.value_ok, self.labelled)

    @property
    def accuracy_of_read(self) -> float | None:
        return ratio(self.value_ok, self.class_ok)

    def to_json(self) -> dict[str, Any]:
        return {"labelled": self.labelled, "read": self.class_ok, "value_ok": self.value_ok,
                "value_accuracy": self.value_accuracy,
                "accuracy_of_read": self.accuracy_of_read, "misread": self.misread}


def speed_metrics(frames: Sequence[FrameMatch]) -> SpeedMetrics:
    out = SpeedMetrics()
    for frame in frames:
        for m in frame.signs:
            if m.label is None or m.label_class != SPEED_CLASS or m.label.get("value") is None:
                continue
            out.labelled += 1
            out.class_ok += int(m.class_ok)
            out.value_ok += int(m.value_ok)
            if m.class_ok and not m.value_ok and m.reading is not None:
                out.misread.append({"camera": frame.record.camera,
                                    "stamp_ns": frame.record.stamp_ns,
                                    "label": {"value": m.label["value"],
                                              "unit": m.label.get("unit", "")},
                                    "read": {"value": m.reading.value,
                                             "unit": m.reading.unit}})
    return out


# ------------------------------------------------------------------------------ tracks
@dataclass
class Distribution:
    """Summary of a sample; percentiles interpolate linearly between samples."""

    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Iterable[float]) -> "Distribution | None":
        arr = np.asarray(list(values), dtype=float)
        if arr.size == 0:
            return None
        p50, p95, p99 = (float(v) for v in np.percentile(arr, [50, 95, 99]))
        return cls(int(arr.size), float(arr.mean()), p50, p95, p99, float(arr.max()))

    def to_json(self, ndigits: int = 2) -> dict[str, Any]:
        return {"count": self.count, "mean": round(self.mean, ndigits),
                "p50": round(self.p50, ndigits), "p95": round(self.p95, ndigits),
                "p99": round(self.p99, ndigits), "max": round(self.max, ndigits)}


@dataclass
class TrackMetrics:
    readings: int = 0  # in labelled, analysed frames
    confirmed: int = 0
    confirmed_correct: int = 0
    false_confirmations: int = 0
    tentative: int = 0
    tentative_wrong: int = 0
    tracks: int = 0  # over all analysed frames
    tracks_confirmed: int = 0
    frames_to_confirm: list[int] = field(default_factory=list)
    ms_to_confirm: list[float] = field(default_factory=list)  # header stamps

    @property
    def false_confirmation_rate(self) -> float | None:
        return ratio(self.false_confirmations, self.confirmed)

    def to_json(self) -> dict[str, Any]:
        frames = Distribution.of(self.frames_to_confirm)
        ms = Distribution.of(self.ms_to_confirm)
        return {"readings": self.readings, "confirmed": self.confirmed,
                "confirmed_correct": self.confirmed_correct,
                "false_confirmations": self.false_confirmations,
                "false_confirmation_rate": self.false_confirmation_rate,
                "confirmed_precision": ratio(self.confirmed_correct, self.confirmed),
                "tentative": self.tentative, "tentative_wrong": self.tentative_wrong,
                "tracks": self.tracks, "tracks_confirmed": self.tracks_confirmed,
                "frames_to_confirm": frames.to_json() if frames else None,
                "ms_to_confirm": ms.to_json(1) if ms else None}


def track_metrics(records: Sequence[FrameRecord], frames: Sequence[FrameMatch]) -> TrackMetrics:
    out = TrackMetrics()
    for frame in frames:
        for m in frame.signs:
            if m.reading is None:
                continue
            out.readings += 1
            if m.reading.track_state == "confirmed":
                out.confirmed += 1
                out.confirmed_correct += int(m.value_ok)
                out.false_confirmations += int(not m.value_ok)
            else:
                out.tentative += 1
                out.tentative_wrong += int(not m.value_ok)
    # (camera, track id) -> (position of first sighting, its stamp); position counts the
    # camera's analysed frames, so frames the node skipped do not stretch the figure.
    first: dict[tuple[str, int], tuple[int, int]] = {}
    done: set[tuple[str, int]] = set()
    position: Counter[str] = Counter()
    for rec in records:
        if not rec.analysed:
            continue
        pos = position[rec.camera]
        position[rec.camera] += 1
        for r in rec.readings:
            key = (rec.camera, r.track_id)
            if r.track_id == 0 or key in done:  # 0: untracked
                continue
            start = first.setdefault(key, (pos, rec.stamp_ns))
            if r.track_state == "confirmed":
                done.add(key)
                out.frames_to_confirm.append(pos - start[0] + 1)
                out.ms_to_confirm.append((rec.stamp_ns - start[1]) / 1e6)
    out.tracks, out.tracks_confirmed = len(first), len(done)
    return out


# ------------------------------------------------------------------------------ anonymization
@dataclass
class AnonymizationMetrics:
    frames_scored: int = 0  # frames with anonymizer boxes and face or plate labels
    per_kind: dict[str, KindCounts] = field(default_factory=dict)
    labelled: Counter[str] = field(default_factory=Counter)  # in anonymized frames
    redacted: Counter[str] = field(default_factory=Counter)  # regions the system reported
    scored: bool = False  # False: no boxes (live), counts only
    per_frame: dict[int, dict[str, KindCounts]] = field(default_factory=dict)  # record index

    def to_json(self) -> dict[str, Any]:
        return {"scored": self.scored, "frames_scored": self.frames_scored,
                "per_kind": {k: self.per_kind[k].to_json() for k in KINDS
                             if k in self.per_kind},
                "labelled": {k: self.labelled[k] for k in KINDS},
                "redacted": {k: self.redacted[k] for k in KINDS}}


def anonymization_metrics(records: Sequence[FrameRecord], labelled: dict[int, ImageLabel],
                          margins: dict[str, float], iou: float = 0.3,
                          leak_coverage: float = 0.3) -> AnonymizationMetrics:
    """Scores analysed frames whose anonymizer boxes are known (offline); where only counts
    are known (live), compares redacted with labelled counts. Dropped frames are not scored:
    fail closed, nothing of them was released."""
    out = AnonymizationMetrics()
    for rec in records:
        if not rec.analysed:  # live: skipped frames report no counts; dropped: never released
            continue
        out.redacted["face"] += rec.faces
        out.redacted["plate"] += rec.plates
        label = labelled.get(rec.index)
        if label is None:
            continue
        boxes = {k: label.boxes(k) for k in KINDS}
        for k in KINDS:
            out.labelled[k] += len(boxes[k] or ())
        if rec.detections is None or all(v is None for v in boxes.values()):
            continue
        out.scored = True
        out.frames_scored += 1
        counts = score_image(boxes, rec.detections, label.width, label.height, margins=margins,
                             iou=iou, leak_coverage=leak_coverage)
        out.per_frame[rec.index] = counts
        for k, c in counts.items():
            out.per_kind.setdefault(k, KindCounts()).add(c)
    return out


# ------------------------------------------------------------------------------ time
@dataclass
class TimingMetrics:
    latency: Distribution | None
    anonymize: Distribution | None
    analysis: Distribution | None
    wall_s: float
    recorded_s: float
    analysed: int
    node_latency: Distribution | None = None  # live: the node's own latency_ms

    @property
    def frames_per_s(self) -> float | None:
        return ratio(self.analysed, self.wall_s)

    @property
    def real_time_factor(self) -> float | None:
        return ratio(self.recorded_s, self.wall_s)

    def to_json(self) -> dict[str, Any]:
        def dist(d: Distribution | None) -> dict[str, Any] | None:
            return d.to_json(1) if d else None
        return {"latency_ms": dist(self.latency), "node_latency_ms": dist(self.node_latency),
                "anonymize_ms": dist(self.anonymize),
                "analysis_ms": dist(self.analysis), "wall_s": round(self.wall_s, 3),
                "recorded_s": round(self.recorded_s, 3), "frames_per_s": self.frames_per_s,
                "real_time_factor": self.real_time_factor}


def timing_metrics(records: Sequence[FrameRecord], wall_s: float, recorded_s: float
                   ) -> TimingMetrics:
    done = [r for r in records if r.analysed]
    return TimingMetrics(
        Distribution.of(r.latency_ms for r in done if r.latency_ms is not None),
        Distribution.of(r.anonymize_ms for r in done if r.anonymize_ms is not None),
        Distribution.of(r.analysis_ms for r in done if r.analysis_ms is not None),
        wall_s, recorded_s, len(done),
        Distribution.of(r.node_latency_ms for r in done if r.node_latency_ms is not None))


def recorded_seconds(log_times_ns: Sequence[int]) -> float:
    """How long the messages take at their recorded rate: n times the mean interval (so 30
    frames at 10 Hz are 3.0 s, not the 2.9 s between the first and the last)."""
    n = len(log_times_ns)
    if n < 2:
        return 0.0
    span = (max(log_times_ns) - min(log_times_ns)) / 1e9
    return span * n / (n - 1)


# ------------------------------------------------------------------------------ coverage
@dataclass
class Coverage:
    messages: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    per_camera: dict[str, Counter[str]] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)  # why not analysed / dropped
    degraded: int = 0
    unlabelled: int = 0
    orphan_labels: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"messages": self.messages,
                **{s: self.by_status[s] for s in STATUSES},
                "per_camera": {c: {s: v[s] for s in STATUSES}
                               for c, v in sorted(self.per_camera.items())},
                "reasons": dict(sorted(self.reasons.items())), "degraded": self.degraded,
                "unlabelled_messages": self.unlabelled, "orphan_labels": self.orphan_labels}


def coverage(records: Sequence[FrameRecord], matched: MatchedRun) -> Coverage:
    out = Coverage(messages=len(records), unlabelled=matched.unlabelled_records,
                   orphan_labels=len(matched.orphan_labels))
    for rec in records:
        out.by_status[rec.status] += 1
        out.per_camera.setdefault(rec.camera, Counter())[rec.status] += 1
        out.degraded += int(rec.analysed and rec.degraded)
        if rec.reason:  # "code: message" -> counted by code; frames keep the message
            out.reasons[rec.reason.split(":", 1)[0]] += 1
    return out


# ------------------------------------------------------------------------------ all of it
@dataclass
class Evaluation:
    info: RunInfo
    coverage: Coverage
    signs: SignMetrics
    speed: SpeedMetrics
    tracks: TrackMetrics
    anonymization: AnonymizationMetrics
    timing: TimingMetrics
    records: list[FrameRecord]
    matched: MatchedRun


def evaluate(records: Sequence[FrameRecord], labels: dict[LabelKey, ImageLabel],
             info: RunInfo, margins: dict[str, float], iou: float = 0.3) -> Evaluation:
    """Every figure of the report from the records of one run."""
    records = sorted(records, key=lambda r: r.index)
    matched = match_records(records, labels, iou)
    return Evaluation(info=info, coverage=coverage(records, matched),
                      signs=sign_metrics(matched.frames), speed=speed_metrics(matched.frames),
                      tracks=track_metrics(records, matched.frames),
                      anonymization=anonymization_metrics(records, matched.labelled, margins),
                      timing=timing_metrics(records, info.wall_s, info.recorded_s),
                      records=records, matched=matched)


def per_frame_rows(evaluation: Evaluation) -> list[dict[str, Any]]:
    """One row per image message (report.json `frames`, the timeline plot)."""
    by_index = {f.record.index: f for f in evaluation.matched.frames}
    rows = []
    for rec in evaluation.records:
        frame = by_index.get(rec.index)
        row: dict[str, Any] = {
            "index": rec.index, "camera": rec.camera, "stamp_ns": rec.stamp_ns,
            "log_time_ns": rec.log_time_ns, "status": rec.status, "reason": rec.reason,
            "latency_ms": None if rec.latency_ms is None else round(rec.latency_ms, 2),
            "node_latency_ms": (None if rec.node_latency_ms is None
                                else round(rec.node_latency_ms, 2)),
            "faces": rec.faces, "plates": rec.plates,
            "readings": [r.to_json() for r in rec.readings]}
        counts = evaluation.anonymization.per_frame.get(rec.index)
        if counts is not None:  # a leak must be traceable to its frame
            row["anonymization"] = {k: {"labels": c.labels, "matched": c.matched,
                                        "false_positives": c.false_positives,
                                        "leaked": c.leaked} for k, c in counts.items()}
        if frame is not None:
            row["labelled_signs"] = sum(1 for m in frame.signs if m.label is not None)
            row["signs_correct"] = sum(1 for m in frame.signs if m.value_ok)
            row["false_readings"] = sum(1 for m in frame.signs if m.label is None)
        rows.append(row)
    return rows
