"""What the system produced for each image message of a bag, whichever way it ran.

The offline replay and the live run over DDS fill the same `FrameRecord`, so matching, metrics,
reports and plots do not know (or care) which one produced them. Every image message gets a
record, including those that produced no result, so coverage is explicit: a frame the node
skipped (it keeps only the latest frame per camera) is `not_analysed`, not a miss of the model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vlm_node.results import Detection, SignReading

ANALYSED = "analysed"
NOT_ANALYSED = "not_analysed"  # live: superseded by a newer frame, stale, or lost on the wire
DROPPED = "dropped"  # not decoded, not anonymized (fail closed) or the backend failed
STATUSES = (ANALYSED, NOT_ANALYSED, DROPPED)


@dataclass
class FrameRecord:
    """One image message and its outcome.

    `detections` are the anonymizer's boxes; only the offline replay has them (the node
    publishes counts, not boxes), and anonymization recall / leak rate need them.
    `latency_ms` is decode + anonymize + analyse + track offline; live it is from the
    player publishing the frame to the result arriving (same host, one clock), which includes
    time in DDS and in the node's input queue. `node_latency_ms` is the node's own figure
    (frame entering its camera callback -> result published), live only: the difference
    between the two is time the frame waited before the node took it.
    """

    index: int  # position among the bag's image messages (bag order)
    topic: str
    camera: str
    stamp_ns: int  # header stamp
    log_time_ns: int  # bag receive time: the recorded rate
    status: str = ANALYSED
    reason: str = ""
    width: int = 0
    height: int = 0
    readings: list[SignReading] = field(default_factory=list)
    detections: tuple[Detection, ...] | None = None
    faces: int = 0
    plates: int = 0
    latency_ms: float | None = None
    node_latency_ms: float | None = None
    anonymize_ms: float | None = None
    analysis_ms: float | None = None
    degraded: bool = False
    degraded_reason: str = ""
    backend: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")

    @property
    def key(self) -> tuple[str, int]:
        return (self.topic, self.stamp_ns)

    @property
    def analysed(self) -> bool:
        return self.status == ANALYSED


@dataclass
class RunInfo:
    """How the records were produced: for the report header and the throughput figures."""

    mode: str  # "offline" or "live"
    bag: str
    labels: str
    backend: str  # what answered (e.g. "ocr"), from the results
    configured_backend: str  # analysis.backend as configured
    degraded_reason: str = ""
    wall_s: float = 0.0  # processing (offline) or playback-to-last-result (live) wall time
    load_s: float = 0.0  # model loading (offline) / node start until connected (live)
    recorded_s: float = 0.0  # duration the messages cover at their recorded rate
    rate: float = 1.0  # live: playback speed as a multiple of the recorded rate
    playback_s: float = 0.0  # live: first to last publication (the recorded span / rate)
    cameras: dict[str, str] = field(default_factory=dict)  # camera -> topic
    machine: str = ""
    # the complete effective configuration (every parameter), so a report says what produced it
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunOutput:
    """What the offline replay and the live run return: one record per image message, in bag
    order, and the clocks the throughput figures need."""

    records: list[FrameRecord]
    wall_s: float  # offline: processing, model loading excluded; live: first frame to last result
    load_s: float  # offline: building the pipeline; live: node start until connected
    log_times_ns: list[int]  # bag log times of the image messages
    playback_s: float = 0.0  # live: first to last publication
    node_log: str = ""  # live: the node process's output
