"""Offline, deterministic replay of a bag through the core pipeline (no DDS, no node process).

Every image message, in bag order, goes through what the node does to a frame it analyses:
decode -> anonymize (one anonymizer per camera, with its carry-over state) -> analyse -> track
(one tracker per camera). Unlike the node, nothing is skipped: the replay takes as long as the
frames need, so it measures the models, not the scheduling (`--live` measures that).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

from vlm_node.analysis.engine import analyzer_from_config, tracker_factory_from_config
from vlm_node.bags import io
from vlm_node.config import NodeConfig
from vlm_node.errors import AnalysisError, AnonymizationError, BagError, ImageConversionError
from vlm_node.evaluation.records import ANALYSED, DROPPED, FrameRecord, RunOutput
from vlm_node.frames import FrameMeta
from vlm_node.pipeline import Pipeline


def replay(bag_path: str | Path, config: NodeConfig, cameras: dict[str, str],
           progress: bool = True,
           clock: Callable[[], float] = time.perf_counter) -> RunOutput:
    """Run every image message of `cameras` (topic -> camera name) through the pipeline."""
    from tqdm import tqdm

    if not config.analysis_enabled:
        raise AnalysisError("analysis_enabled is false: there is nothing to evaluate")
    t_load = clock()
    trackers = tracker_factory_from_config(config)
    pipeline = Pipeline(config.anonymizer, analyzer_from_config(config), trackers)
    records: list[FrameRecord] = []
    log_times: list[int] = []
    try:
        for name in cameras.values():
            pipeline.add_camera(name)
        load_s = clock() - t_load
        t0 = clock()
        with io.open_bag(bag_path) as bag:
            total = sum(bag.topics[t].count for t in cameras)
            bar = tqdm(bag.messages(cameras), total=total, desc="eval", unit="frame",
                       file=sys.stderr, disable=None if progress else True)
            for i, message in enumerate(bar):
                log_times.append(message.timestamp)
                records.append(_process(pipeline, bag, message, i, cameras[message.topic],
                                        clock))
            bar.close()
        wall_s = clock() - t0
    finally:
        pipeline.close()
    return RunOutput(records, wall_s, load_s, log_times)


def _process(pipeline: Pipeline, bag: io.Bag, message: io.BagMessage, index: int,
             camera: str, clock: Callable[[], float]) -> FrameRecord:
    """One message -> one record; a frame that fails is recorded as dropped with the reason,
    as the node counts it, and the replay goes on."""
    t0 = clock()
    rec = FrameRecord(index, message.topic, camera, stamp_ns=message.timestamp,
                      log_time_ns=message.timestamp)
    try:
        msg = bag.deserialize(message)
    except BagError as exc:
        rec.status, rec.reason = DROPPED, f"decode_error: {exc}"
        return rec
    rec.stamp_ns = io.stamp_ns(msg.header)
    try:
        bgr = io.image_to_bgr(msg, message.msgtype)
    except ImageConversionError as exc:
        rec.status, rec.reason = DROPPED, f"decode_error: {exc}"
        return rec
    rec.height, rec.width = bgr.shape[:2]
    meta = FrameMeta(camera, rec.stamp_ns, msg.header.frame_id, time.monotonic())
    try:
        frame = pipeline.anonymize(meta, bgr)
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
    rec.latency_ms = (clock() - t0) * 1e3
    rec.readings = list(result.analysis.signs)
    rec.faces, rec.plates = result.faces, result.plates
    rec.analysis_ms = result.analysis.analysis_ms
    rec.degraded, rec.degraded_reason = result.analysis.degraded, result.analysis.degraded_reason
    rec.backend = result.analysis.backend
    return rec
