"""What an anonymize-bag run reports: counts per topic, per-stage times and throughput, for one
bag (`BagAnonymizeSummary`) and for a batch of bags (`BatchSummary`).

Kept apart from the code that produces the figures because two runners fill them: the
single-process path counts as it goes, the chunked (Ray) path adds up one summary per chunk
(`BagAnonymizeSummary.absorb`), so both report the same figures in the same format.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from vlm_node.counts import Counts


__all__ = ["STAGES", "DROP_REASONS", "TopicCounts", "Validation", "BagAnonymizeSummary",
           "BatchSummary"]

STAGES = ("read", "decode", "faces", "plates", "redact", "encode", "write")
# Dropped-frame reasons, in report order.
DROP_REASONS = ("decode_error", "unsupported_encoding", "anonymizer_failure", "encode_error")


@dataclass
class TopicCounts(Counts):
    """What happened to one image topic; `add` sums another part of it (a later time chunk)."""

    messages: int = 0
    written: int = 0
    faces: int = 0
    plates: int = 0
    full_frame_redacted: int = 0
    dropped: Counter = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {"messages": self.messages, "written": self.written, "faces": self.faces,
                "plates": self.plates, "full_frame_redacted": self.full_frame_redacted,
                "dropped": {r: self.dropped[r] for r in DROP_REASONS if self.dropped[r]}}


@dataclass
class Validation:
    """The run's redactions scored against labels (`--labels`): recall, precision and leak
    rate per kind as `vlm-node anonymize --labels` defines them (evaluation/redaction.py),
    over the labelled frames that were written. A labelled frame that was dropped is counted
    apart: it was not written, so nothing of it can leak, but it was not scored either."""

    labelled: int = 0  # entries of the labels file for the anonymized topics of this bag
    frames: int = 0  # labelled frames anonymized, written and scored
    dropped: int = 0  # labelled frames dropped (not written)
    kinds: dict[str, Any] = field(default_factory=dict)  # kind -> counts (`LabelScorer`)

    @property
    def not_found(self) -> int:
        """Labels that named no frame of the bag (a wrong file, or stamps that are log times
        instead of header stamps): reported, so that a mismatch cannot pass as a clean run."""
        return max(0, self.labelled - self.frames - self.dropped)

    def add(self, other: "Validation") -> None:
        """Add the counts of a time chunk (`labelled` is the bag's, set once by its owner)."""
        self.frames += other.frames
        self.dropped += other.dropped
        for kind, counts in other.kinds.items():
            if kind in self.kinds:
                self.kinds[kind].add(counts)
            else:
                self.kinds[kind] = counts.copy()

    def to_json(self) -> dict[str, Any]:
        return {"labelled": self.labelled, "frames": self.frames, "dropped": self.dropped,
                "not_found": self.not_found,
                **{kind: c.to_json() for kind, c in self.kinds.items()}}

    def report(self) -> str:
        parts = []
        for kind, c in self.kinds.items():
            figures = c.to_json()
            if not c.labels and not c.detections:
                parts.append(f"{kind}s: none labelled or found")
                continue

            def fmt(key: str) -> str:
                return "-" if figures[key] is None else f"{figures[key]:.3f}"
            parts.append(f"{kind}s recall {fmt('recall')} ({c.matched}/{c.labels}), "
                         f"precision {fmt('precision')}, leak rate {fmt('leak_rate')} "
                         f"({c.leaked} leaked)")
        dropped = f", {self.dropped} labelled frames dropped" if self.dropped else ""
        missing = (f", {self.not_found} labels matched no frame (check their topics and header "
                   f"stamps)" if self.not_found else "")
        return (f"validation on {self.frames} labelled frames{dropped}{missing}: "
                + "; ".join(parts))


def _add_counts(into: dict[str, int], other: dict[str, int]) -> None:
    for topic, n in other.items():
        into[topic] = into.get(topic, 0) + n


@dataclass
class BagAnonymizeSummary:
    """Counts and timings of one bag; `to_json()` is what `--summary` writes for it."""

    input: str
    output: str
    storage_in: str
    storage_out: str
    bag_seconds: float
    images: dict[str, TopicCounts] = field(default_factory=dict)
    copied: dict[str, int] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    results_written: int = 0
    seconds: float = 0.0  # wall time end to end, opening the bag and loading models included
    setup_seconds: float = 0.0  # of which before the first message (models, connections)
    stage_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    config: dict[str, Any] = field(default_factory=dict)
    # Chunked runs only (0 in the single-process path): how the bag was split and what the
    # split cost beyond the frames themselves.
    chunks: int = 0
    workers: int = 0
    warmup_frames: int = 0  # frames of a previous chunk re-run for carry-over, not written
    chunk_setup_seconds: float = 0.0  # summed over chunks: bag opened, models loaded in tasks
    merge_seconds: float = 0.0  # in the driver: chunk bags copied into the output bag
    validation: Validation | None = None  # with labels only
    frames_in_flight: int = 1  # frames in detection at once (their stage times overlap)

    @property
    def frames(self) -> int:
        return sum(c.messages for c in self.images.values())

    @property
    def dropped(self) -> int:
        return sum(sum(c.dropped.values()) for c in self.images.values())

    @property
    def faces(self) -> int:
        return sum(c.faces for c in self.images.values())

    @property
    def plates(self) -> int:
        return sum(c.plates for c in self.images.values())

    @property
    def messages_read(self) -> int:
        """Messages of the input that this run accounted for (every one is anonymized,
        copied, or counted as excluded)."""
        return self.frames + sum(self.copied.values()) + sum(self.excluded.values())

    @property
    def messages_written(self) -> int:
        return (sum(c.written for c in self.images.values()) + sum(self.copied.values())
                + self.results_written)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def realtime_factor(self) -> float:
        """Recorded time processed per second of wall time (> 1: faster than real time)."""
        return self.bag_seconds / self.seconds if self.seconds > 0 else 0.0

    def absorb(self, part: "BagAnonymizeSummary") -> None:
        """Add the counts and stage times of one time chunk of this bag (wall times are the
        caller's: chunks overlap in time)."""
        for topic, counts in part.images.items():
            self.images.setdefault(topic, TopicCounts()).add(counts)
        _add_counts(self.copied, part.copied)
        _add_counts(self.excluded, part.excluded)
        self.results_written += part.results_written
        for stage, ms in part.stage_ms.items():
            self.stage_ms[stage] = self.stage_ms.get(stage, 0.0) + ms
        self.warmup_frames += part.warmup_frames
        self.chunk_setup_seconds += part.setup_seconds
        if part.validation is not None:
            if self.validation is None:
                self.validation = Validation()
            self.validation.add(part.validation)

    def to_json(self) -> dict[str, Any]:
        per_frame = {k: round(v / self.frames, 2) if self.frames else 0.0
                     for k, v in self.stage_ms.items()}
        data = {"input": self.input, "output": self.output, "storage_in": self.storage_in,
                "storage_out": self.storage_out, "bag_seconds": round(self.bag_seconds, 3),
                "seconds": round(self.seconds, 3),
                "setup_seconds": round(self.setup_seconds, 3), "frames": self.frames,
                "frames_per_second": round(self.frames_per_second, 3),
                "realtime_factor": round(self.realtime_factor, 3), "faces": self.faces,
                "plates": self.plates, "dropped": self.dropped,
                "images": {t: c.to_json() for t, c in self.images.items()},
                "copied": self.copied, "excluded": self.excluded,
                "results_written": self.results_written, "stage_ms_per_frame": per_frame,
                "frames_in_flight": self.frames_in_flight, "config": self.config}
        if self.validation is not None:
            data["validation"] = self.validation.to_json()
        if self.chunks:
            data["chunked"] = {"chunks": self.chunks, "workers": self.workers,
                               "warmup_frames": self.warmup_frames,
                               "chunk_setup_seconds": round(self.chunk_setup_seconds, 3),
                               "merge_seconds": round(self.merge_seconds, 3)}
        return data

    def report(self) -> str:
        """Human-readable summary for the terminal."""
        lines = [f"{self.input} -> {self.output} ({self.storage_in} -> {self.storage_out})"]
        for topic, c in self.images.items():
            drops = ", ".join(f"{r} {n}" for r, n in c.to_json()["dropped"].items())
            lines.append(f"  {topic}: {c.written}/{c.messages} anonymized, faces {c.faces}, "
                         f"plates {c.plates}" + (f", DROPPED: {drops}" if drops else "")
                         + (f", full-frame blurred {c.full_frame_redacted}"
                            if c.full_frame_redacted else ""))
        for topic, n in self.copied.items():
            lines.append(f"  {topic}: {n} copied")
        for topic, n in self.excluded.items():
            lines.append(f"  {topic}: {n} NOT written (image topic not selected by --topics)")
        if self.results_written:
            lines.append(f"  results: {self.results_written} messages")
        stages = ", ".join(f"{k} {v:.1f}" for k, v in self.to_json()["stage_ms_per_frame"]
                           .items())
        lines.append(f"{self.frames} frames, {self.faces} faces and {self.plates} plates "
                     f"redacted, {self.dropped} dropped; {self.seconds:.1f} s "
                     f"({self.setup_seconds:.1f} s set-up), "
                     f"{self.frames_per_second:.2f} frames/s, real-time factor "
                     f"{self.realtime_factor:.2f} ({self.bag_seconds:.1f} s of recording)")
        summed = (" (CPU time summed over the chunks)" if self.chunks else
                  f" ({self.frames_in_flight} frames in flight: stage times overlap)"
                  if self.frames_in_flight > 1 else "")
        lines.append(f"ms per frame: {stages}{summed}")
        if self.validation is not None:
            lines.append(self.validation.report())
        if self.chunks:
            lines.append(f"chunks: {self.chunks} on up to {self.workers} workers, "
                         f"{self.warmup_frames} warm-up frames re-run (not written), "
                         f"{self.chunk_setup_seconds:.1f} s set-up in the tasks, "
                         f"{self.merge_seconds:.1f} s merging in the driver")
        return "\n".join(lines)


@dataclass
class BatchSummary:
    """Several bags in one call (or one bag on Ray). A bag that failed has no output and is
    listed in `failed` with its error; the others are complete."""

    runner: str  # "single-process" or "ray"
    bags: list[BagAnonymizeSummary] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # input -> error
    seconds: float = 0.0  # wall time of the whole call, connecting to the cluster included
    connect_seconds: float = 0.0  # of which connecting to (or starting) the Ray cluster
    workers: int = 1
    cluster_cpus: int = 0
    nodes: int = 0

    @property
    def frames(self) -> int:
        return sum(b.frames for b in self.bags)

    @property
    def dropped(self) -> int:
        return sum(b.dropped for b in self.bags)

    @property
    def chunks(self) -> int:
        return sum(b.chunks for b in self.bags)

    @property
    def bag_seconds(self) -> float:
        return sum(b.bag_seconds for b in self.bags)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def realtime_factor(self) -> float:
        """Recorded time of all written bags per second of wall time."""
        return self.bag_seconds / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"runner": self.runner, "bags": [b.to_json() for b in self.bags],
                "failed": self.failed, "frames": self.frames, "dropped": self.dropped,
                "seconds": round(self.seconds, 3),
                "connect_seconds": round(self.connect_seconds, 3),
                "bag_seconds": round(self.bag_seconds, 3),
                "frames_per_second": round(self.frames_per_second, 3),
                "realtime_factor": round(self.realtime_factor, 3), "workers": self.workers,
                "chunks": self.chunks, "cluster_cpus": self.cluster_cpus, "nodes": self.nodes}

    def report(self) -> str:
        parts = [b.report() for b in self.bags]
        parts += [f"FAILED {src}: {error} (no output written)" for src, error in
                  self.failed.items()]
        where = (f"{self.workers} workers on {self.nodes} node(s) with {self.cluster_cpus} "
                 f"CPUs, {self.chunks} chunks, {self.connect_seconds:.1f} s connecting"
                 if self.runner == "ray" else "one process")
        parts.append(f"total: {len(self.bags)} bags written, {len(self.failed)} failed; "
                     f"{self.frames} frames, {self.dropped} dropped; {self.seconds:.1f} s, "
                     f"{self.frames_per_second:.2f} frames/s, real-time factor "
                     f"{self.realtime_factor:.2f} ({self.bag_seconds:.1f} s of recording); "
                     f"{self.runner}: {where}")
        return "\n\n".join(parts)
