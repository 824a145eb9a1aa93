"""The core pipeline shared by the node, the bag tools and the CLI: decode -> anonymize ->
analyze -> track. No rclpy here; the node calls the stages from its callbacks and worker thread.

Offline tools go through `run_in_flight`: a frame's anonymization splits into detection (no
state: `Pipeline.detect`) and release (carry-over and redaction, in frame order:
`Pipeline.release`). One frame's face stage finishes long before its plate stage and leaves a
core idle; detecting the next frames meanwhile keeps the cores busy (onnxruntime and OpenCV
release the GIL) without changing any result, because every frame is still released after the
one before it. `vlm-node anonymize`, `anonymize-bag` and `eval` share this one runner, so they
cannot order, bound or fail differently. The benches time the per-frame methods (`anonymize`,
`detect`, `analyze`, `stage_ms`) one frame at a time instead, so a stage added here is timed by
them too.
"""
from __future__ import annotations

import concurrent.futures as cf
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence, TypeVar

import numpy as np

from vlm_node import image_codec
from vlm_node.anonymize import Anonymizer, AnonymizerConfig
from vlm_node.anonymize.anonymizer import AnonymizerStats, PendingFrame
from vlm_node.in_order import Turnstile
from vlm_node.frames import AnonymizedFrame, FrameMeta
from vlm_node.results import AnalysisResult, SignReading


class Analyzer(Protocol):
    """What the pipeline needs from the analysis side (the engine, or a single backend)."""

    def analyze(self, frames: Sequence[AnonymizedFrame]) -> list[AnalysisResult]: ...

    def status(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class Tracker(Protocol):
    def update(self, signs: list[SignReading]) -> list[SignReading]: ...


@dataclass
class SceneResult:
    """Everything known about one analysed frame (the SceneUnderstanding message's content)."""

    meta: FrameMeta
    analysis: AnalysisResult
    faces: int
    plates: int
    anonymize_ms: float

    def to_json(self) -> dict[str, Any]:
        return {"camera": self.meta.camera, "stamp_ns": self.meta.stamp_ns,
                "frame_id": self.meta.frame_id, "faces_redacted": self.faces,
                "plates_redacted": self.plates, "anonymize_ms": round(self.anonymize_ms, 2),
                **self.analysis.to_json()}


def decode(msg: Any) -> np.ndarray:
    """HxWx3 uint8 BGR pixels of a sensor_msgs Image or CompressedImage (rclpy or rosbags
    object). Raises ImageConversionError subclasses for malformed input."""
    if hasattr(msg, "format"):
        return image_codec.compressed_to_bgr8(msg)
    return image_codec.image_to_bgr8(msg)


@dataclass
class Pipeline:
    """One anonymizer per stream (they run in parallel camera callbacks and carry per-stream
    state), one analyzer shared by all cameras (it batches), one sign tracker per camera.

    A *stream* is one sequence of related frames, the unit of carried regions. By default it
    is the frame's camera name (`FrameMeta.camera`), which is what the node and the image CLIs
    have. A tool whose inputs can share a camera name passes its own stream key: a bag's
    `/front/image_raw` and `/front/image_raw/compressed` both name camera `front` but are two
    sequences, so `anonymize-bag` keys its streams by topic while its frames still carry the
    camera name."""

    anonymizer_config: AnonymizerConfig
    analyzer: Analyzer | None = None
    tracker_factory: Callable[[], Tracker] | None = None
    _anonymizers: dict[str, Anonymizer] = field(default_factory=dict)
    _trackers: dict[str, Tracker] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def _anonymizer(self, stream: str) -> Anonymizer:
        with self._lock:
            anon = self._anonymizers.get(stream)
            if anon is None:
                anon = self._anonymizers[stream] = Anonymizer(self.anonymizer_config)
            return anon

    def anonymizer_stats(self, stream: str) -> AnonymizerStats | None:
        """The counters of the stream's anonymizer (None before its first frame or
        add_camera), for diagnostics; never creates one."""
        with self._lock:
            anon = self._anonymizers.get(stream)
        return anon.stats if anon is not None else None

    def add_camera(self, stream: str) -> int:
        """Load the stream's anonymizer now (at configure time) rather than on its first
        frame, and prepare its models for the shapes the stream will bring
        (`Anonymizer.prepare`); `stream`: a camera name, or the key a tool passes for its
        streams. How many shapes were prepared."""
        return self._anonymizer(stream).prepare()

    def reset(self, stream: str) -> None:
        """Forget the stream's carried regions: its next frame is unrelated to the last."""
        self._anonymizer(stream).reset()

    def reconfigure_anonymizer(self, config: AnonymizerConfig) -> None:
        with self._lock:
            self.anonymizer_config = config
            anonymizers = list(self._anonymizers.values())
        for anon in anonymizers:
            anon.reconfigure(config)

    def anonymize(self, meta: FrameMeta, bgr: np.ndarray, stream: str | None = None
                  ) -> AnonymizedFrame:
        """Redact faces/plates in `bgr` itself (no copy of the raw frame is kept: the caller
        must not use `bgr` afterwards); raises AnonymizationError (frame must be dropped).
        `stream` defaults to the frame's camera."""
        return self._anonymizer(meta.camera if stream is None else stream).anonymize(meta, bgr)

    def detect(self, stream: str, bgr: np.ndarray, stamp_ns: int | None = None
               ) -> PendingFrame:
        """The first half of `anonymize` (`Anonymizer.detect_frame`): offline tools detect
        several frames of a stream at once; detect and `release` them in order. `stamp_ns`:
        the frame's header stamp, so the anonymizer's frame plan sees gaps in time as
        `release` will (frames in flight then give the same output as one at a time)."""
        return self._anonymizer(stream).detect_frame(bgr, stamp_ns)

    def release(self, meta: FrameMeta, pending: PendingFrame, stream: str | None = None
                ) -> AnonymizedFrame:
        """The second half of `anonymize`, in frame order; raises AnonymizationError.
        `stream` defaults to the frame's camera, and must be the one `detect` was given."""
        return self._anonymizer(meta.camera if stream is None else stream).release(meta, pending)

    def stage_ms(self, stream: str) -> dict[str, float]:
        """Per-stage milliseconds of the stream's last released frame (`faces_ms`,
        `plates_ms`, `redact_ms`, ... for every stage the anonymizer runs), for the tools that
        time stages: a stage added to the anonymizer shows up here without them changing."""
        return self._anonymizer(stream).stats.last_ms

    def analyze(self, frames: Sequence[AnonymizedFrame]) -> list[SceneResult]:
        """Analyse a batch (one frame per camera) and update each camera's sign tracks."""
        if self.analyzer is None:
            raise RuntimeError("pipeline has no analyzer (analysis disabled)")
        analyses = self.analyzer.analyze(frames)
        out = []
        for frame, analysis in zip(frames, analyses):
            if self.tracker_factory is not None:
                tracker = self._trackers.get(frame.meta.camera)
                if tracker is None:
                    tracker = self._trackers[frame.meta.camera] = self.tracker_factory()
                analysis.signs = tracker.update(analysis.signs)
            out.append(SceneResult(frame.meta, analysis, frame.count("face"),
                                   frame.count("plate"), frame.anonymize_ms))
        return out

    def status(self) -> dict[str, Any]:
        return self.analyzer.status() if self.analyzer is not None else {"state": "disabled"}

    def close(self) -> None:
        with self._lock:
            anonymizers = list(self._anonymizers.values())
        for anon in anonymizers:
            anon.close()
        if self.analyzer is not None:
            self.analyzer.close()


T = TypeVar("T")
R = TypeVar("R")


def run_in_flight(items: Iterable[T], detect: Callable[[T], R], depth: int, *,
                  detects: Callable[[T], bool] | None = None,
                  size: Callable[[T], int] | None = None, max_bytes: int | None = None,
                  name: str = "detect") -> Iterator[tuple[T, R | None]]:
    """(item, detect(item)) for each item, strictly in the items' order, with up to `depth`
    detections running at once on a thread pool (depth 1: in the calling thread, no pool).

    `detects(item)` false: the item passes through undetected (result None) in its place, e.g.
    the non-image messages of a bag, which must be written between its frames. Memory stays
    bounded: at most `depth` detections wait, and with `size`/`max_bytes`, once more than
    `max_bytes` of items wait behind the oldest detection, that one is waited for (a sparse
    camera beside a dense lidar topic must not hold the bag in memory). An item is released as
    soon as everything before it is, so a slow frame does not delay the ones already done.
    An exception of `detect` is raised here when its item is due. Leaving the loop early
    cancels the detections that have not started and waits for those that have."""
    if depth < 1:
        raise ValueError(f"frames in flight must be at least 1, got {depth}")
    pool = cf.ThreadPoolExecutor(depth, thread_name_prefix=name) if depth > 1 else None
    # detections reach the anonymizer's frame plan in the items' order (vlm_node/in_order.py)
    turnstile = Turnstile() if pool is not None else None
    queue: deque[tuple[T, cf.Future[R] | R | None, bool]] = deque()
    detecting = 0  # detected items in `queue`
    queued = 0  # their `size`, when given

    def ready() -> bool:
        item, pending, detected = queue[0]
        return (not detected or pool is None or detecting >= depth
                or (max_bytes is not None and queued > max_bytes)
                or pending.done())  # type: ignore[union-attr]

    def release() -> tuple[T, R | None]:
        nonlocal detecting, queued
        item, pending, detected = queue.popleft()
        queued -= size(item) if size is not None else 0
        if not detected:
            return item, None
        detecting -= 1
        return item, (pending.result() if pool is not None else pending)  # type: ignore

    try:
        for item in items:
            detected = detects is None or detects(item)
            if not detected:
                pending: Any = None
            elif pool is not None:
                assert turnstile is not None
                pending = pool.submit(turnstile.run, detect, item, turnstile.take())
            else:
                pending = detect(item)
            queue.append((item, pending, detected))
            detecting += detected
            queued += size(item) if size is not None else 0
            while queue and ready():
                yield release()
        while queue:
            yield release()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
