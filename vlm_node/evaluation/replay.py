"""Offline, deterministic replay of a bag through the core pipeline (no DDS, no node process).

Every image message, in bag order, goes through what the node does to a frame it analyses:
decode -> anonymize (one anonymizer per camera, with its carry-over state) -> analyse -> track
(one tracker per camera). Unlike the node, nothing is skipped: the replay takes as long as the
frames need, so it measures the models, not the scheduling (`--live` measures that).

`frames_in_flight` frames are decoded and run through the detectors at once
(`pipeline.run_in_flight`) while this thread releases (carry-over, redaction), analyses and
tracks the oldest one, strictly in bag order: the records are those of a one-at-a-time run;
only the wall time shrinks (the stages of one frame cannot keep 2 cores busy). A frame's
latency is the time its own stages took: decode + detection + release + analysis + tracking.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vlm_node.analysis.engine import analyzer_from_config, tracker_factory_from_config
from vlm_node.anonymize.anonymizer import PendingFrame
from vlm_node.anonymize.config import frames_in_flight_for
from vlm_node.bags import io
from vlm_node.config import NodeConfig
from vlm_node.errors import (AnalysisError, AnonymizationError, BagError, ConfigError,
                             ImageConversionError)
from vlm_node.evaluation.records import ANALYSED, DROPPED, FrameRecord, RunOutput
from vlm_node.frames import AnonymizedFrame, FrameMeta
from vlm_node.pipeline import Pipeline, run_in_flight
from vlm_node.results import AnalysisResult


@dataclass
class _Detected:
    """A frame between detection and release: its record so far, its metadata, its
    detections (None when it could not be decoded: the record says why) and the ms spent."""

    rec: FrameRecord
    meta: FrameMeta | None
    pending: PendingFrame | None
    ms: float


def replay(bag_path: str | Path, config: NodeConfig, cameras: dict[str, str],
           progress: bool = True, clock: Callable[[], float] = time.perf_counter,
           frames_in_flight: int | None = None,
           on_frame: Callable[[FrameRecord, AnonymizedFrame, AnalysisResult], None] | None = None
           ) -> RunOutput:
    """Run every image message of `cameras` (topic -> camera name) through the pipeline.
    `config.anonymizer` is used as given (callers pass `for_frames_in_flight(...)` of it);
    `frames_in_flight` None: the default of `frames_in_flight_for`. `on_frame` sees every
    analysed frame (anonymized only) with its record and result, e.g. to draw it."""
    from tqdm import tqdm

    if not config.analysis_enabled:
        raise AnalysisError("analysis_enabled is false: there is nothing to evaluate")
    frames_in_flight = frames_in_flight_for(config.anonymizer, frames_in_flight)
    if frames_in_flight < 1:
        raise ConfigError(f"frames in flight must be at least 1, got {frames_in_flight}")
    t_load = clock()
    trackers = tracker_factory_from_config(config)
    pipeline = Pipeline(config.anonymizer, analyzer_from_config(config), trackers)
    records: list[FrameRecord] = []
    log_times: list[int] = []
    try:
        # anonymizer state per topic (its stream), as anonymize-bag keeps it: two topics that
        # name one camera (raw and rectified) must not carry regions into each other
        for topic in cameras:
            pipeline.add_camera(topic)
        load_s = clock() - t_load
        t0 = clock()
        with io.open_bag(bag_path) as bag:
            total = sum(bag.topics[t].count for t in cameras)
            bar = tqdm(bag.messages(cameras), total=total, desc="eval", unit="frame",
                       file=sys.stderr, disable=None if progress else True)

            def detect(item: tuple[int, io.BagMessage]) -> _Detected:
                i, message = item
                return _detect(pipeline, bag, message, i, cameras[message.topic], clock)
            for _, job in run_in_flight(enumerate(bar), detect, frames_in_flight,
                                        name="eval_detect"):
                assert job is not None
                log_times.append(job.rec.log_time_ns)
                records.append(_finish(pipeline, job, clock, on_frame))
            bar.close()
        wall_s = clock() - t0
    finally:
        pipeline.close()
    return RunOutput(records, wall_s, load_s, log_times)


def _detect(pipeline: Pipeline, bag: io.Bag, message: io.BagMessage, index: int,
            camera: str, clock: Callable[[], float]) -> _Detected:
    """Decode a message and run the detectors on it (no state touched: may run in a pool).
    A frame that cannot be decoded is recorded as dropped with the reason, as the node counts
    it, and the replay goes on."""
    t0 = clock()
    rec = FrameRecord(index, message.topic, camera, stamp_ns=message.timestamp,
                      log_time_ns=message.timestamp)
    try:
        msg = bag.deserialize(message)
    except BagError as exc:
        rec.status, rec.reason = DROPPED, f"decode_error: {exc}"
        return _Detected(rec, None, None, 0.0)
    rec.stamp_ns = io.stamp_ns(msg.header)
    try:
        bgr = io.image_to_bgr(msg, message.msgtype)
    except ImageConversionError as exc:
        rec.status, rec.reason = DROPPED, f"decode_error: {exc}"
        return _Detected(rec, None, None, 0.0)
    rec.height, rec.width = bgr.shape[:2]
    meta = FrameMeta(camera, rec.stamp_ns, msg.header.frame_id, time.monotonic())
    pending = pipeline.detect(message.topic, bgr, rec.stamp_ns)
    return _Detected(rec, meta, pending, (clock() - t0) * 1e3)


def _finish(pipeline: Pipeline, job: _Detected, clock: Callable[[], float],
            on_frame: Callable[[FrameRecord, AnonymizedFrame, AnalysisResult], None] | None = None
            ) -> FrameRecord:
    """Release (carry-over, redaction), analyse and track a detected frame, in bag order."""
    rec = job.rec
    if job.pending is None or job.meta is None:
        return rec
    t0 = clock()
    try:
        frame = pipeline.release(job.meta, job.pending, stream=rec.topic)
    except AnonymizationError as exc:
        rec.status, rec.reason = DROPPED, f"anonymizer_failure: {exc}"
        return rec
    rec.detections, rec.anonymize_ms = frame.detections, frame.anonymize_ms
    try:
        result = pipeline.analyze([frame])[0]
    except AnalysisError as exc:
        rec.status, rec.reason = DROPPED, f"backend_error: {exc}"
        return rec
    rec.status = ANALYSED
    rec.latency_ms = job.ms + (clock() - t0) * 1e3
    rec.readings = list(result.analysis.signs)
    rec.faces, rec.plates = result.faces, result.plates
    rec.analysis_ms = result.analysis.analysis_ms
    rec.degraded, rec.degraded_reason = result.analysis.degraded, result.analysis.degraded_reason
    rec.backend = result.analysis.backend
    if on_frame is not None:
        on_frame(rec, frame, result.analysis)
    return rec
