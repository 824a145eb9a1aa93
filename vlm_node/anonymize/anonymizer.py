"""The anonymizer: detect faces (and, later, plates), redact them, and release the frame only when
every step succeeded. Any exception inside detection or redaction means the frame is not released:
policy `drop` raises AnonymizationError (the caller counts and drops), policy `full_blur` releases
a frame blurred as a whole. There is no path that returns the input pixels unredacted."""
from __future__ import annotations

import threading
import time

import numpy as np

from vlm_node.anonymize.config import AnonymizerConfig
from vlm_node.anonymize.faces import YuNetFaceDetector
from vlm_node.anonymize.redact import blur_full_frame, blur_region
from vlm_node.errors import AnonymizationError
from vlm_node.frames import AnonymizedFrame, FrameMeta, _release
from vlm_node.params import validate
from vlm_node.results import Detection


class Anonymizer:
    """Thread-safe (one lock: OpenCV detectors are not re-entrant); create one per camera to
    anonymize cameras in parallel."""

    def __init__(self, config: AnonymizerConfig | None = None) -> None:
        self.config = config or AnonymizerConfig()
        validate(self.config)
        self._lock = threading.Lock()
        self._faces = (YuNetFaceDetector(self.config.face_model, self.config.face_score_threshold,
                                         self.config.face_nms_threshold)
                       if self.config.faces else None)

    def reconfigure(self, config: AnonymizerConfig) -> None:
        """Apply run-time changes (thresholds, margin, policy); the model path is fixed."""
        validate(config)
        with self._lock:
            self.config = config
            if self._faces is not None:
                self._faces.set_thresholds(config.face_score_threshold, config.face_nms_threshold)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Regions to redact in `image` (HxWx3 uint8 BGR), margins not yet applied."""
        detections: list[Detection] = []
        if self._faces is not None:
            detections += self._faces.detect(image)
        return detections

    def anonymize(self, meta: FrameMeta, image: np.ndarray) -> AnonymizedFrame:
        """Redact `image` in place and release it as an AnonymizedFrame.

        Raises AnonymizationError (policy `drop`) when anything fails; the caller must then drop
        the frame. `image` must not be used by the caller afterwards in either case.
        """
        t0 = time.perf_counter()
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
            raise AnonymizationError(f"expected a non-empty HxWx3 uint8 image, got "
                                     f"{image.shape} {image.dtype}")
        with self._lock:
            config = self.config
            try:
                if not image.flags.writeable:
                    image = image.copy()
                detections = self.detect(image)
                h, w = image.shape[:2]
                for det in detections:
                    blur_region(image, det.box.expanded(config.margin).clipped(w, h),
                                ellipse=det.kind == "face")
            except Exception as exc:  # noqa: BLE001 - any failure must fail closed
                if config.failure_policy == "full_blur":
                    try:
                        blur_full_frame(image)
                    except Exception as blur_exc:  # noqa: BLE001
                        raise AnonymizationError(f"full-frame blur failed: {blur_exc}") from exc
                    return _release(meta, image, (), (time.perf_counter() - t0) * 1e3, True)
                raise AnonymizationError(f"anonymization failed, frame dropped: {exc}") from exc
        return _release(meta, image, tuple(detections), (time.perf_counter() - t0) * 1e3)
