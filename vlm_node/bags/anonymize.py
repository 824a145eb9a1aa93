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

Frames go through the core pipeline (`vlm_node.pipeline.Pipeline`, one per run), like the
node's. Consecutive frames of one topic are a sequence: the pipeline's stream key is the topic
(two topics may name the same camera, e.g. `/front/image_raw` and its `/compressed`), so
carry-over bridges single-frame detector misses per topic; a change of frame size on a topic
starts a new sequence.
Several frames are in detection at once (`frames_in_flight`) and released strictly in message
order, so the output does not depend on how many. With `labels`, the redactions of labelled
frames are scored as they are written (`summary.validation`).

The path is built from pieces that the chunked runner (`vlm_node.bags.chunks`, run on Ray by
`vlm_node.bags.ray_runner`) reuses for one time chunk of a bag: `select` (which image topics),
`open_output` (connections and custom data of an output bag), `topic_anonymizers` and
`write_messages` (the message loop), so the two runners cannot treat a message differently.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol

import numpy as np
from rosbags.interfaces import Connection

from vlm_node.anonymize import AnonymizerConfig
from vlm_node.anonymize.anonymizer import PendingFrame
from vlm_node.anonymize.config import for_frames_in_flight, for_recordings, frames_in_flight_for
from vlm_node.bags import io
from vlm_node.bags.compressed import encode_like, inspect_compressed
from vlm_node.bags.summary import STAGES, BagAnonymizeSummary, TopicCounts, Validation
from vlm_node.config import camera_name_of
from vlm_node.errors import (AnonymizationError, BagError, ConfigError, ImageConversionError,
                             UnsupportedEncodingError)
from vlm_node.frames import AnonymizedFrame, FrameMeta
from vlm_node.pipeline import Pipeline, run_in_flight

__all__ = ["STAGES", "TopicCounts", "BagAnonymizeSummary", "RESULTS_TYPE",
           "LabelKey", "LabelScorer", "InFlight", "Selection",
           "Output", "TopicAnonymizer",
           "check_paths", "select", "new_summary", "open_output", "custom_data",
           "topic_anonymizers", "labels_for", "close_all", "write_messages", "anonymize_bag"]

log = logging.getLogger(__name__)

RESULTS_TYPE = "vlm_node_interfaces/msg/SceneUnderstanding"
MAX_QUEUED_BYTES = 256 << 20
"""Messages read behind a frame still in detection wait in memory, up to this many bytes; then
the loop waits for that frame (a bag whose camera is sparse beside a dense lidar topic must not
be held in memory whole)."""

LabelKey = tuple[str, int]  # (topic, header stamp in ns)


class LabelScorer(Protocol):
    """What `--labels` hands the bag runners: which frames are labelled, and the scoring of a
    written frame's redactions. Built above this package (`vlm_node.evaluation.redaction.
    BagRedactionScorer`), so that bags/ reads no label format and scores by no rule of its
    own; it must pickle (the chunked runner ships it to its workers)."""

    def keys(self) -> Iterable[LabelKey]: ...

    def labelled(self, key: LabelKey) -> bool: ...

    def new_counts(self) -> dict[str, Any]: ...

    def score(self, key: LabelKey, detections: Iterable[Any], width: int, height: int,
              margins: Mapping[str, float]) -> Mapping[str, Any]: ...


@dataclass(slots=True)
class InFlight:
    """An image message between detection and release: the deserialized message, its
    detections (raw pixels inside, never written), or the decoding error that stopped it."""

    msg: Any
    pending: PendingFrame | None
    error: Exception | None
    decode_ms: float


class TopicAnonymizer:
    """One image topic: its stream of the run's pipeline (keyed by the topic: carry-over
    state), counters, and the decode -> anonymize -> re-encode path of its messages."""

    def __init__(self, topic: str, pipeline: Pipeline, store: Any,
                 stages: dict[str, float], labels: LabelScorer | None = None,
                 validation: Validation | None = None) -> None:
        self.topic = topic
        self.camera = camera_name_of(topic)
        self.pipeline = pipeline
        pipeline.add_camera(topic)  # models load at set-up, not on the first frame
        self.counts = TopicCounts()
        self._store = store
        self._stages = stages
        self._size: tuple[int, int] | None = None
        self._labels = labels
        self._validation = validation

    def detect(self, bag: io.Bag, message: io.BagMessage) -> InFlight:
        """Decode the message and run the detectors on it: the half that keeps no state, so
        that the runner can have several frames of this topic in detection at once. Nothing is
        counted here; `finish` must be called for every result, in message order."""
        t0 = time.perf_counter()
        try:
            msg, bgr = self._decode(bag, message)
        except (BagError, ImageConversionError) as exc:
            return InFlight(None, None, exc, 0.0)
        decode_ms = (time.perf_counter() - t0) * 1e3
        return InFlight(msg, self.pipeline.detect(self.topic, bgr, io.stamp_ns(msg.header)),
                        None, decode_ms)

    def finish(self, message: io.BagMessage, flight: InFlight
               ) -> tuple[AnonymizedFrame, bytes] | None:
        """Release (carry-over, redaction) and re-encode a detected frame: the anonymized frame
        and the serialized message to write, or None when the frame is dropped (counted by
        reason; the first drop of a reason is logged with its cause)."""
        self.counts.messages += 1
        if flight.error is not None or flight.pending is None:
            exc = flight.error or BagError("frame was not decoded")
            return self._drop(message, _reason(exc), exc)
        stages = self._stages
        stages["decode"] += flight.decode_ms
        key = (self.topic, io.stamp_ns(flight.msg.header))
        label = self._labels is not None and self._labels.labelled(key)
        try:
            frame = self._release(flight.msg, flight.pending)
        except AnonymizationError as exc:
            return self._drop(message, "anonymizer_failure", exc, label)
        t2 = time.perf_counter()
        try:
            raw = self._store.serialize_cdr(
                _reencode(frame, flight.msg, message.msgtype, self._store), message.msgtype)
        except (ImageConversionError, ValueError) as exc:
            return self._drop(message, "encode_error", exc, label)
        stages["encode"] += (time.perf_counter() - t2) * 1e3
        if label and self._validation is not None:
            self._score(frame, key)
        self.counts.written += 1
        self.counts.faces += frame.count("face")
        self.counts.plates += frame.count("plate")
        self.counts.full_frame_redacted += int(frame.full_frame_redacted)
        return frame, raw

    def warm_up(self, bag: io.Bag, message: io.BagMessage) -> None:
        """Run a frame that another chunk writes through the anonymizer for its carry-over
        state only: nothing is written, counted, timed or logged here. A frame that fails is
        counted and logged by the chunk that owns it; its effect on the state (a failure resets
        the carried regions, an undecodable frame leaves them) is the same as in a whole run."""
        try:
            msg, bgr = self._decode(bag, message)
            self._release(msg, self.pipeline.detect(self.topic, bgr, io.stamp_ns(msg.header)),
                          timed=False)
        except (BagError, ImageConversionError, AnonymizationError):
            return

    def _decode(self, bag: io.Bag, message: io.BagMessage) -> tuple[Any, np.ndarray]:
        msg = bag.deserialize(message, self._store)
        return msg, io.image_to_bgr(msg, message.msgtype)

    def _release(self, msg: Any, pending: PendingFrame, timed: bool = True) -> AnonymizedFrame:
        size = (pending.image.shape[1], pending.image.shape[0])
        if size != self._size:
            self.pipeline.reset(self.topic)  # carried boxes belong to the old geometry
            self._size = size
        meta = FrameMeta(self.camera, io.stamp_ns(msg.header), msg.header.frame_id)
        frame = self.pipeline.release(meta, pending, self.topic)
        if timed:
            last = self.pipeline.stage_ms(self.topic)
            for stage in ("faces", "plates", "redact"):
                self._stages[stage] += last.get(f"{stage}_ms", 0.0)
        return frame

    def _score(self, frame: AnonymizedFrame, key: LabelKey) -> None:
        """Score the frame's redactions against its label (`--labels`)."""
        assert self._validation is not None and self._labels is not None
        config = self.pipeline.anonymizer_config
        h, w = frame.image.shape[:2]
        counts = self._labels.score(key, frame.detections, w, h,
                                    {"face": config.margin, "plate": config.plate_margin})
        self._validation.frames += 1
        for kind, c in counts.items():
            self._validation.kinds[kind].add(c)

    def _drop(self, message: io.BagMessage, reason: str, exc: Exception,
              label: bool = False) -> None:
        if label and self._validation is not None:
            self._validation.dropped += 1
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
            hazards=[], confidence=0.0, source="", objects=[]),
        faces_redacted=frame.count("face"), plates_redacted=frame.count("plate"),
        backend="", model_id="", latency_ms=float(frame.anonymize_ms), analysis_ms=0.0,
        degraded=True, degraded_reason="anonymize-bag: no analysis ran; only the redaction "
                                       "counts are valid")


@dataclass(frozen=True, slots=True)
class Selection:
    """What a run does with a bag's image topics, and the storage it writes."""

    anonymized: tuple[str, ...]  # image topics to anonymize
    excluded: tuple[str, ...]  # image topics left out of the output (not selected)
    storage: str  # of the output bag
    results_topic: str | None = None


def check_paths(src: Path, dst: Path) -> None:
    """Refuse an output that would overwrite the input or be written inside it."""
    if src.resolve() == dst.resolve() or src.resolve() in dst.resolve().parents:
        raise ConfigError(f"output {dst} would overwrite or sit inside the input {src}")


def select(bag: io.Bag, topics: tuple[str, ...] | None, storage: str | None,
           results_topic: str | None) -> Selection:
    """The image topics to anonymize and to leave out, and the checked output options."""
    images = bag.image_topics()
    if topics is None:
        anonymized, excluded = images, []
    else:
        unknown = [t for t in topics if t not in bag.topics]
        if unknown:
            raise ConfigError(f"--topics: {', '.join(unknown)} not in {bag.path} (topics: "
                              f"{', '.join(bag.topics)})")
        not_images = [t for t in topics if t not in images]
        if not_images:
            raise ConfigError(f"--topics: {', '.join(not_images)} are not image topics (image "
                              f"topics: {', '.join(images) or 'none'})")
        anonymized = [t for t in images if t in topics]
        excluded = [t for t in images if t not in topics]
    out_storage = storage or bag.storage
    if out_storage not in io.STORAGES:
        raise ConfigError(f"storage must be one of {', '.join(io.STORAGES)}, got "
                          f"{out_storage!r}")
    if results_topic is not None and (not results_topic.startswith("/")
                                      or results_topic in bag.topics):
        raise ConfigError(f"--results-topic must be an absolute topic name not already in "
                          f"the bag, got {results_topic!r}")
    return Selection(tuple(anonymized), tuple(excluded), out_storage, results_topic)


def new_summary(src: Path, dst: Path, bag: io.Bag, selection: Selection,
                config: AnonymizerConfig) -> BagAnonymizeSummary:
    return BagAnonymizeSummary(str(src), str(dst), bag.storage, selection.storage,
                               bag.duration_ns / 1e9, config=dataclasses.asdict(config))


@dataclass(frozen=True, slots=True)
class Output:
    """An output bag being written: input connection id -> its copy (absent: excluded topic),
    and the results connection if `--results-topic` asked for one."""

    writer: io.BagWriter
    conns: Mapping[int, Connection]
    results: Connection | None


def open_output(bag: io.Bag, writer: io.BagWriter, selection: Selection,
                custom: Mapping[str, str] | None = None) -> Output:
    """Copy the input's connections (all but the excluded image topics, in the input's order)
    and add the results topic. `custom` (the output's custom_data besides the input's, which
    is kept) is None for a temporary chunk bag, whose metadata nobody reads."""
    if custom is not None:
        for key, value in bag.custom_data.items():
            writer.set_custom_data(key, value)
        for key, value in custom.items():
            writer.set_custom_data(key, value)
    conns = {c.id: writer.copy_connection(c) for c in bag.connections
             if c.topic not in selection.excluded}
    results = (writer.add_topic(selection.results_topic, RESULTS_TYPE, [io.RELIABLE_QOS])
               if selection.results_topic is not None else None)
    return Output(writer, conns, results)


def custom_data(src: Path, config: dict[str, Any], **extra: Any) -> dict[str, str]:
    """The `vlm_node.anonymize_bag` custom_data entry: input name and anonymizer settings."""
    return {"vlm_node.anonymize_bag": json.dumps({"input": src.name, "anonymizer": config,
                                                  **extra}, sort_keys=True)}


def topic_anonymizers(selection: Selection, config: AnonymizerConfig, store: Any,
                      summary: BagAnonymizeSummary,
                      labels: LabelScorer | None = None,
                      labelled: int = 0) -> dict[str, TopicAnonymizer]:
    """One TopicAnonymizer per anonymized topic, all streams of one new anonymize-only
    `Pipeline` (release it with `close_all`), counting into `summary` (and, with `labels`,
    scoring the labelled frames into `summary.validation`; `labelled`: how many labels belong
    to the bag, `labels_for`)."""
    if labels is not None:
        summary.validation = Validation(labelled=labelled, kinds=labels.new_counts())
    pipeline = Pipeline(config)
    workers = {t: TopicAnonymizer(t, pipeline, store, summary.stage_ms, labels,
                                  summary.validation)
               for t in selection.anonymized}
    summary.images = {t: w.counts for t, w in workers.items()}
    return workers


LABEL_SPAN_MARGIN_NS = 10_000_000_000


def labels_for(labels: LabelScorer, selection: Selection, bag: io.Bag) -> int:
    """How many of `labels` should name frames of `bag`: those of the image topics this run
    anonymizes whose stamp lies within the recording's span (+-10 s: header stamps trail log
    times a little). One labels file can serve many bags this way without every bag reporting
    the others' labels as not found, while labels keyed by log time instead of header stamp
    still count (and show up as not found)."""
    topics = set(selection.anonymized)
    lo, hi = bag.start_ns - LABEL_SPAN_MARGIN_NS, bag.end_ns + LABEL_SPAN_MARGIN_NS
    return sum(1 for topic, stamp in labels.keys() if topic in topics and lo <= stamp <= hi)


def close_all(workers: Mapping[str, TopicAnonymizer]) -> None:
    """Close the workers' pipeline(s), stopping their detector threads: a process that
    anonymizes many bags or chunks (a batch, a Ray worker) must not keep one thread pool per
    topic it has seen."""
    for pipeline in {id(w.pipeline): w.pipeline for w in workers.values()}.values():
        pipeline.close()


def anonymize_bag(src: str | Path, dst: str | Path, config: AnonymizerConfig | None = None, *,
                  topics: tuple[str, ...] | None = None, storage: str | None = None,
                  results_topic: str | None = None, force: bool = False,
                  progress: bool | None = None,
                  on_message: Callable[[io.BagMessage], None] | None = None,
                  frames_in_flight: int | None = None,
                  labels: LabelScorer | None = None,
                  video_plan: bool = False) -> BagAnonymizeSummary:
    """Write an anonymized copy of bag `src` to the new bag directory `dst`; see the module
    docstring for what is guaranteed. `storage` defaults to the input's; `progress` None shows
    a tqdm bar only on a terminal; `on_message` is called after each message is read (tests
    use it to interrupt a run); `frames_in_flight`: see `write_messages` (None: one per
    core, `anonymize.config.frames_in_flight_for`); `labels` (a
    LabelScorer, e.g. `evaluation.redaction.BagRedactionScorer`) score the redactions into
    `summary.validation`. `video_plan`: the node's cheaper frame plan instead of the whole
    pass on every frame (`anonymize.config.for_recordings` says why that is the default)."""
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    config = for_recordings(config or AnonymizerConfig(), video_plan)
    frames_in_flight = frames_in_flight_for(config, frames_in_flight)
    config = for_frames_in_flight(config, frames_in_flight)
    check_paths(src, dst)
    t_start = time.perf_counter()
    with io.open_bag(src) as bag:
        selection = select(bag, topics, storage, results_topic)
        summary = new_summary(src, dst, bag, selection, config)
        summary.frames_in_flight = frames_in_flight
        store = io.make_typestore()
        workers = topic_anonymizers(selection, config, store, summary, labels,
                                    labels_for(labels, selection, bag) if labels else 0)
        try:
            with io.atomic_output(dst, force) as path, \
                    io.BagWriter(path, selection.storage, store) as writer:
                out = open_output(bag, writer, selection, custom_data(src, summary.config))
                summary.setup_seconds = time.perf_counter() - t_start
                with tqdm(total=bag.message_count, desc="anonymize-bag", unit="msg",
                          disable=None if progress is None else not progress) as bar:
                    write_messages(bag, bag.messages(), out, workers, summary, on_message,
                                   lambda: bar.update(1), frames_in_flight)
        finally:
            close_all(workers)
    summary.seconds = time.perf_counter() - t_start
    return summary


def write_messages(bag: io.Bag, messages: Iterable[io.BagMessage], out: Output,
                   workers: Mapping[str, TopicAnonymizer], summary: BagAnonymizeSummary,
                   on_message: Callable[[io.BagMessage], None] | None = None,
                   tick: Callable[[], Any] | None = None, frames_in_flight: int = 1) -> None:
    """The message loop: image topics through their worker, other topics copied, excluded
    image topics counted and skipped, everything written in input order. `tick` is called
    once per message (progress).

    With `frames_in_flight` > 1 that many image frames are decoded and run through the
    detectors at once (`vlm_node.pipeline.run_in_flight`) while this thread releases,
    re-encodes and writes the oldest one; the non-image messages between frames wait in their
    place, at most MAX_QUEUED_BYTES of them behind a frame in detection. Releasing stays in
    message order, so the output is the same as with 1.
    """
    if frames_in_flight < 1:
        raise ConfigError(f"frames in flight must be at least 1, got {frames_in_flight}")
    stages = summary.stage_ms
    Item = tuple[io.BagMessage, Connection, "TopicAnonymizer | None"]

    def read() -> Iterable[Item]:
        """The messages to write, with their output connection and worker; excluded image
        topics are counted here and go no further."""
        it = iter(messages)
        while True:
            t_read = time.perf_counter()
            message = next(it, None)
            stages["read"] += (time.perf_counter() - t_read) * 1e3
            if message is None:
                return
            if on_message is not None:
                on_message(message)
            if tick is not None:
                tick()
            conn = out.conns.get(message.connection.id)
            if conn is None:
                summary.excluded[message.topic] = summary.excluded.get(message.topic, 0) + 1
                continue
            yield message, conn, workers.get(message.topic)

    def detect(item: Item) -> InFlight:
        message, _, worker = item
        assert worker is not None
        return worker.detect(bag, message)

    for (message, conn, worker), flight in run_in_flight(
            read(), detect, frames_in_flight, detects=lambda item: item[2] is not None,
            size=lambda item: len(item[0].raw), max_bytes=MAX_QUEUED_BYTES, name="bag_detect"):
        if worker is None:
            t0 = time.perf_counter()
            out.writer.write(conn, message.timestamp, message.raw)
            stages["write"] += (time.perf_counter() - t0) * 1e3
            summary.copied[message.topic] = summary.copied.get(message.topic, 0) + 1
            continue
        assert flight is not None
        done = worker.finish(message, flight)
        if done is not None:
            _write_frame(out, message, conn, *done, summary)


def _write_frame(out: Output, message: io.BagMessage, conn: Connection, frame: AnonymizedFrame,
                 raw: bytes, summary: BagAnonymizeSummary) -> None:
    """Write an anonymized image message, and its results message when asked for."""
    t0 = time.perf_counter()
    writer = out.writer
    writer.write(conn, message.timestamp, raw)
    if out.results is not None:
        header = io.header(frame.meta.stamp_ns, frame.meta.frame_id, writer.store)
        writer.write_msg(out.results, message.timestamp,
                         _results_msg(writer.store, frame, header))
        summary.results_written += 1
    summary.stage_ms["write"] += (time.perf_counter() - t0) * 1e3
