"""Anonymize a recorded rosbag2: every camera topic redacted, everything else copied verbatim.

Guarantees (tested in tests/test_bags_anonymize.py):

* **Fail closed.** Image messages are written only from an `AnonymizedFrame`'s pixels; a frame
  that cannot be decoded, anonymized or re-encoded is dropped and counted by reason, never
  copied. Image topics left out by `topics` are left out of the output too (reported as
  excluded), since copying them would put raw pixels into an "anonymized" bag.
* **Verbatim copies.** Every non-image message is written as the stored serialized bytes with
  its log time; every connection (image ones included) keeps its type, message definition,
  type hash, serialization format and offered QoS profiles; the input's custom_data is kept.
* **Same image layout.** Image keeps encoding, step (padded rows stay padded), byte order and
  header; CompressedImage keeps format string, codec, channels, bit depth, chroma sampling and
  an estimated JPEG quality (`vlm_node.bags.compressed`).
* **Atomic output.** The bag is written next to OUT and renamed into place at the end; a corrupt
  or truncated input raises BagError and leaves nothing at OUT.

Consecutive frames of one topic are a sequence (one Anonymizer per topic, so carry-over
bridges single-frame detector misses); a change of frame size on a topic starts a new sequence.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vlm_node.anonymize import Anonymizer, AnonymizerConfig
from vlm_node.bags import io
from vlm_node.bags.compressed import encode_like, inspect_compressed
from vlm_node.errors import (AnonymizationError, BagError, ConfigError, ImageConversionError,
                             UnsupportedEncodingError)
from vlm_node.frames import AnonymizedFrame, FrameMeta

__all__ = ["STAGES", "TopicCounts", "BagAnonymizeSummary", "load_anonymizer_config",
           "camera_name", "anonymize_bag"]

log = logging.getLogger(__name__)

STAGES = ("read", "decode", "faces", "plates", "redact", "encode", "write")
RESULTS_TYPE = "vlm_node_interfaces/msg/SceneUnderstanding"
# Dropped-frame reasons, in report order.
DROP_REASONS = ("decode_error", "unsupported_encoding", "anonymizer_failure", "encode_error")


@dataclass
class TopicCounts:
    """What happened to one image topic."""

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
class BagAnonymizeSummary:
    """Counts and timings of one run; `to_json()` is what `--summary` writes."""

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
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def realtime_factor(self) -> float:
        """Recorded time processed per second of wall time (> 1: faster than real time)."""
        return self.bag_seconds / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        per_frame = {k: round(v / self.frames, 2) if self.frames else 0.0
                     for k, v in self.stage_ms.items()}
        return {"input": self.input, "output": self.output, "storage_in": self.storage_in,
                "storage_out": self.storage_out, "bag_seconds": round(self.bag_seconds, 3),
                "seconds": round(self.seconds, 3),
                "setup_seconds": round(self.setup_seconds, 3), "frames": self.frames,
                "frames_per_second": round(self.frames_per_second, 3),
                "realtime_factor": round(self.realtime_factor, 3), "faces": self.faces,
                "plates": self.plates, "dropped": self.dropped,
                "images": {t: c.to_json() for t, c in self.images.items()},
                "copied": self.copied, "excluded": self.excluded,
                "results_written": self.results_written, "stage_ms_per_frame": per_frame,
                "config": self.config}

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
        lines.append(f"ms per frame: {stages}")
        return "\n".join(lines)


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested parameter mappings as dotted keys, so later files override single leaves."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def load_anonymizer_config(config: str | Path | None = None,
                           mode: str | None = None) -> AnonymizerConfig:
    """The node's anonymizer settings: config/default.yaml, then `config` (a ROS 2 parameters
    file, as `vlm-node run --config`), then `mode` for `anonymizer.redaction`."""
    from vlm_node.config import load_params_yaml, node_config_from_params
    from vlm_node.params import validate
    from vlm_node.paths import config_file

    params = _flatten(load_params_yaml(config_file("default.yaml")))
    if config is not None:
        params.update(_flatten(load_params_yaml(config)))
    anonymizer = node_config_from_params(params).anonymizer
    if mode is not None:
        anonymizer = dataclasses.replace(anonymizer, redaction=mode)
        validate(anonymizer, "anonymizer.")
    return anonymizer


def camera_name(topic: str) -> str:
    """`/front/image_raw/compressed` -> `front`: the first name component of an image topic."""
    parts = [p for p in topic.split("/") if p]
    return parts[0] if parts else topic


class _TopicAnonymizer:
    """One image topic: its Anonymizer (carry-over state), counters, and the decode ->
    anonymize -> re-encode path of its messages."""

    def __init__(self, topic: str, config: AnonymizerConfig, store: Any,
                 stages: dict[str, float]) -> None:
        self.topic = topic
        self.camera = camera_name(topic)
        self.anonymizer = Anonymizer(config)
        self.counts = TopicCounts()
        self._store = store
        self._stages = stages
        self._size: tuple[int, int] | None = None

    def process(self, bag: io.Bag, message: io.BagMessage) -> tuple[AnonymizedFrame, bytes] | None:
        """The anonymized frame and the serialized message to write, or None when the frame is
        dropped (counted by reason; the first drop of a reason is logged with its cause)."""
        self.counts.messages += 1
        stages = self._stages
        t0 = time.perf_counter()
        try:
            msg = bag.deserialize(message, self._store)
            bgr = io.image_to_bgr(msg, message.msgtype)
        except (BagError, ImageConversionError) as exc:
            return self._drop(message, _reason(exc), exc)
        t1 = time.perf_counter()
        stages["decode"] += (t1 - t0) * 1e3
        try:
            frame = self._anonymize(msg, bgr)
        except AnonymizationError as exc:
            return self._drop(message, "anonymizer_failure", exc)
        t2 = time.perf_counter()
        try:
            raw = self._store.serialize_cdr(_reencode(frame, msg, message.msgtype, self._store),
                                            message.msgtype)
        except (ImageConversionError, ValueError) as exc:
            return self._drop(message, "encode_error", exc)
        stages["encode"] += (time.perf_counter() - t2) * 1e3
        self.counts.written += 1
        self.counts.faces += frame.count("face")
        self.counts.plates += frame.count("plate")
        self.counts.full_frame_redacted += int(frame.full_frame_redacted)
        return frame, raw

    def _anonymize(self, msg: Any, bgr: np.ndarray) -> AnonymizedFrame:
        size = (bgr.shape[1], bgr.shape[0])
        if size != self._size:
            self.anonymizer.reset()  # carried boxes belong to the old geometry
            self._size = size
        meta = FrameMeta(self.camera, io.stamp_ns(msg.header), msg.header.frame_id)
        frame = self.anonymizer.anonymize(meta, bgr)
        last = self.anonymizer.stats.last_ms
        for stage in ("faces", "plates", "redact"):
            self._stages[stage] += last.get(f"{stage}_ms", 0.0)
        return frame

    def _drop(self, message: io.BagMessage, reason: str, exc: Exception) -> None:
        self.counts.dropped[reason] += 1
        if self.counts.dropped[reason] == 1:
            log.warning("%s: frame at %d dropped (%s): %s", message.topic, message.timestamp,
                        reason, exc)
        return None


def _reason(exc: Exception) -> str:
    return "unsupported_encoding" if isinstance(exc, UnsupportedEncodingError) else "decode_error"


def _reencode(frame: AnonymizedFrame, msg: Any, msgtype: str, store: Any) -> Any:
    """A message of the input's type and layout carrying the anonymized pixels."""
    if msgtype == io.IMAGE:
        return io.bgr_to_image(frame.image, msg.header, msg.encoding, int(msg.step),
                               bool(msg.is_bigendian), store)
    data = encode_like(frame.image, msg.format, inspect_compressed(msg.data))
    return store.types[io.COMPRESSED_IMAGE](header=msg.header, format=msg.format,
                                            data=np.frombuffer(data, dtype=np.uint8))


def _results_msg(store: Any, frame: AnonymizedFrame, msg_header: Any) -> Any:
    """A SceneUnderstanding with the redaction counts only: no analysis ran, which
    `degraded`/`degraded_reason` say so that no consumer reads "no signs" as a finding."""
    types = store.types
    return types[RESULTS_TYPE](
        header=msg_header, camera=frame.meta.camera, signs=[], has_scene=False,
        scene=types["vlm_node_interfaces/msg/SceneDescription"](
            summary="", weather="unknown", lighting="unknown", road_type="unknown",
            hazards=[], confidence=0.0),
        faces_redacted=frame.count("face"), plates_redacted=frame.count("plate"),
        backend="", model_id="", latency_ms=float(frame.anonymize_ms), analysis_ms=0.0,
        degraded=True, degraded_reason="anonymize-bag: no analysis ran; only the redaction "
                                       "counts are valid")


def _select(bag: io.Bag, topics: tuple[str, ...] | None) -> tuple[list[str], list[str]]:
    """(image topics to anonymize, image topics to leave out)."""
    images = bag.image_topics()
    if topics is None:
        return images, []
    unknown = [t for t in topics if t not in bag.topics]
    if unknown:
        raise ConfigError(f"--topics: {', '.join(unknown)} not in {bag.path} (topics: "
                          f"{', '.join(bag.topics)})")
    not_images = [t for t in topics if t not in images]
    if not_images:
        raise ConfigError(f"--topics: {', '.join(not_images)} are not image topics (image "
                          f"topics: {', '.join(images) or 'none'})")
    return [t for t in images if t in topics], [t for t in images if t not in topics]


def _check_options(bag: io.Bag, storage: str, results_topic: str | None) -> None:
    if storage not in io.STORAGES:
        raise ConfigError(f"storage must be one of {', '.join(io.STORAGES)}, got {storage!r}")
    if results_topic is not None and (not results_topic.startswith("/")
                                      or results_topic in bag.topics):
        raise ConfigError(f"--results-topic must be an absolute topic name not already in "
                          f"the bag, got {results_topic!r}")


def anonymize_bag(src: str | Path, dst: str | Path, config: AnonymizerConfig | None = None, *,
                  topics: tuple[str, ...] | None = None, storage: str | None = None,
                  results_topic: str | None = None, force: bool = False,
                  progress: bool | None = None,
                  on_message: Callable[[io.BagMessage], None] | None = None,
                  ) -> BagAnonymizeSummary:
    """Write an anonymized copy of bag `src` to the new bag directory `dst`; see the module
    docstring for what is guaranteed. `storage` defaults to the input's; `progress` None shows
    a tqdm bar only on a terminal; `on_message` is called after each message is read (tests
    use it to interrupt a run)."""
    src, dst = Path(src), Path(dst)
    config = config or AnonymizerConfig()
    if src.resolve() == dst.resolve() or src.resolve() in dst.resolve().parents:
        raise ConfigError(f"output {dst} would overwrite or sit inside the input {src}")
    t_start = time.perf_counter()
    with io.open_bag(src) as bag:
        selected, excluded = _select(bag, topics)
        out_storage = storage or bag.storage
        _check_options(bag, out_storage, results_topic)
        summary = BagAnonymizeSummary(str(src), str(dst), bag.storage, out_storage,
                                      bag.duration_ns / 1e9, config=dataclasses.asdict(config))
        store = io.make_typestore()
        workers = {t: _TopicAnonymizer(t, config, store, summary.stage_ms) for t in selected}
        summary.images = {t: w.counts for t, w in workers.items()}
        with io.atomic_output(dst, force) as path, \
                io.BagWriter(path, out_storage, store) as writer:
            for key, value in bag.custom_data.items():
                writer.set_custom_data(key, value)
            writer.set_custom_data("vlm_node.anonymize_bag", json.dumps(
                {"input": src.name, "anonymizer": summary.config}, sort_keys=True))
            conns = {c.id: writer.copy_connection(c) for c in bag.connections
                     if c.topic not in excluded}
            results = (writer.add_topic(results_topic, RESULTS_TYPE, [io.RELIABLE_QOS])
                       if results_topic is not None else None)
            summary.setup_seconds = time.perf_counter() - t_start
            _copy_all(bag, writer, workers, conns, results, summary, progress, on_message)
    summary.seconds = time.perf_counter() - t_start
    return summary


def _copy_all(bag: io.Bag, writer: io.BagWriter, workers: dict[str, _TopicAnonymizer],
              conns: dict[int, Any], results: Any, summary: BagAnonymizeSummary,
              progress: bool | None, on_message: Callable[[io.BagMessage], None] | None
              ) -> None:
    """The message loop: image topics through their worker, other topics copied, excluded
    image topics counted and skipped."""
    from tqdm import tqdm

    stages = summary.stage_ms
    with tqdm(total=bag.message_count, desc="anonymize-bag", unit="msg",
              disable=None if progress is None else not progress) as bar:
        t_read = time.perf_counter()
        for message in bag.messages():
            stages["read"] += (time.perf_counter() - t_read) * 1e3
            if on_message is not None:
                on_message(message)
            bar.update(1)
            topic, conn = message.topic, conns.get(message.connection.id)
            worker = workers.get(topic)
            if conn is None:
                summary.excluded[topic] = summary.excluded.get(topic, 0) + 1
            elif worker is None:
                t0 = time.perf_counter()
                writer.write(conn, message.timestamp, message.raw)
                stages["write"] += (time.perf_counter() - t0) * 1e3
                summary.copied[topic] = summary.copied.get(topic, 0) + 1
            else:
                done = worker.process(bag, message)
                if done is not None:
                    frame, raw = done
                    t0 = time.perf_counter()
                    writer.write(conn, message.timestamp, raw)
                    if results is not None:
                        header = io.header(frame.meta.stamp_ns, frame.meta.frame_id,
                                           writer.store)
                        writer.write_msg(results, message.timestamp,
                                         _results_msg(writer.store, frame, header))
                        summary.results_written += 1
                    stages["write"] += (time.perf_counter() - t0) * 1e3
            t_read = time.perf_counter()
