"""The core pipeline shared by the node, the bag tools and the CLI: decode -> anonymize ->
analyze -> track. No rclpy here; the node calls the stages from its callbacks and worker thread,
offline tools call `process()` frame by frame."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from vlm_node import image_codec
from vlm_node.anonymize import Anonymizer, AnonymizerConfig
from vlm_node.anonymize.anonymizer import PendingFrame
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
    """One anonymizer per camera (they run in parallel camera callbacks and carry per-camera
    state), one analyzer shared by all cameras (it batches), one sign tracker per camera."""

    anonymizer_config: AnonymizerConfig
    analyzer: Analyzer | None = None
    tracker_factory: Callable[[], Tracker] | None = None
    _anonymizers: dict[str, Anonymizer] = field(default_factory=dict)
    _trackers: dict[str, Tracker] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def _anonymizer(self, camera: str) -> Anonymizer:
        with self._lock:
            anon = self._anonymizers.get(camera)
            if anon is None:
                anon = self._anonymizers[camera] = Anonymizer(self.anonymizer_config)
            return anon

    def add_camera(self, camera: str) -> None:
        """Load the camera's anonymizer now (at configure time) rather than on its first frame."""
        self._anonymizer(camera)

    def reconfigure_anonymizer(self, config: AnonymizerConfig) -> None:
        with self._lock:
            self.anonymizer_config = config
            anonymizers = list(self._anonymizers.values())
        for anon in anonymizers:
            anon.reconfigure(config)

    def anonymize(self, meta: FrameMeta, bgr: np.ndarray) -> AnonymizedFrame:
        """Redact faces/plates; raises AnonymizationError (frame must be dropped)."""
        return self._anonymizer(meta.camera).anonymize(meta, bgr)

    def detect(self, camera: str, bgr: np.ndarray) -> PendingFrame:
        """The first half of `anonymize` (`Anonymizer.detect_frame`): keeps no state, so
        offline tools detect several frames of a camera at once; `release` them in order."""
        return self._anonymizer(camera).detect_frame(bgr)

    def release(self, meta: FrameMeta, pending: PendingFrame) -> AnonymizedFrame:
        """The second half of `anonymize`, in frame order; raises AnonymizationError."""
        return self._anonymizer(meta.camera).release(meta, pending)

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

    def process(self, meta: FrameMeta, msg_or_bgr: Any) -> tuple[AnonymizedFrame, SceneResult]:
        """Offline: decode (if a message), anonymize and analyse one frame."""
        bgr = msg_or_bgr if isinstance(msg_or_bgr, np.ndarray) else decode(msg_or_bgr)
        frame = self.anonymize(meta, bgr)
        return frame, self.analyze([frame])[0]

    def status(self) -> dict[str, Any]:
        return self.analyzer.status() if self.analyzer is not None else {"state": "disabled"}

    def close(self) -> None:
        with self._lock:
            anonymizers = list(self._anonymizers.values())
        for anon in anonymizers:
            anon.close()
        if self.analyzer is not None:
            self.analyzer.close()
