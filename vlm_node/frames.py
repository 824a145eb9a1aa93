"""Frames as they move through the pipeline, with privacy enforced by type.

`AnonymizedFrame` can only be created by the anonymizer (it checks a private token), and every
consumer of pixels downstream of anonymization (analysis backends, image publishers, bag writers)
takes an `AnonymizedFrame`. So code that tries to hand a raw decoded frame to a model or a topic
fails at the point where it is written, not in a privacy review.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vlm_node.results import Detection, ObjectDetection, TextHint

_RELEASE_TOKEN = object()


@dataclass(frozen=True, slots=True)
class FrameMeta:
    """Where and when a frame was taken. `stamp_ns` is the source header stamp in nanoseconds
    (exact: sec * 1e9 + nanosec as an integer); `received` is time.monotonic() at arrival."""

    camera: str
    stamp_ns: int
    frame_id: str
    received: float = 0.0

    @property
    def stamp(self) -> tuple[int, int]:
        """(sec, nanosec) as in builtin_interfaces/Time."""
        return divmod(self.stamp_ns, 1_000_000_000)


@dataclass(frozen=True, slots=True)
class AnonymizedFrame:
    """A frame whose faces and plates have been redacted. Created only by the anonymizer."""

    meta: FrameMeta
    image: np.ndarray  # HxWx3 uint8 BGR, redacted
    detections: tuple[Detection, ...] = ()
    anonymize_ms: float = 0.0
    full_frame_redacted: bool = False  # the fail-closed `full_blur` policy was applied
    text_hints: tuple[TextHint, ...] = ()  # sign text the plate pass found (see TextHint)
    # Every COCO object the anonymizer's person detector found (head backstop on), at scores of
    # at least `objects_threshold`; None when it did not run. Boxes only: scene analysis reuses
    # them instead of running the same detector again.
    objects: tuple[ObjectDetection, ...] | None = None
    objects_threshold: float = 1.0
    _token: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._token is not _RELEASE_TOKEN:
            raise TypeError("AnonymizedFrame is created by vlm_node.anonymize only; "
                            "pass the frame through an Anonymizer")
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise TypeError(f"AnonymizedFrame.image must be HxWx3 uint8, got "
                            f"{self.image.shape} {self.image.dtype}")

    def count(self, kind: str) -> int:
        return sum(1 for d in self.detections if d.kind == kind)

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # Pickled to reach the analysis process (`analysis_process`): only a frame that went
        # through the anonymizer exists to be pickled, so the copy is released again, pixels
        # read-only, through the same checks.
        return _release, (self.meta, self.image, self.detections, self.anonymize_ms,
                          self.full_frame_redacted, self.text_hints, self.objects,
                          self.objects_threshold)


def _release(meta: FrameMeta, image: np.ndarray, detections: tuple[Detection, ...],
             anonymize_ms: float, full_frame_redacted: bool = False,
             text_hints: tuple[TextHint, ...] = (),
             objects: tuple[ObjectDetection, ...] | None = None,
             objects_threshold: float = 1.0) -> AnonymizedFrame:
    """For vlm_node.anonymize only: wrap pixels that have been fully redacted."""
    image.flags.writeable = False  # nobody downstream may scribble raw pixels back in
    return AnonymizedFrame(meta, image, detections, anonymize_ms, full_frame_redacted,
                           text_hints, objects, objects_threshold, _RELEASE_TOKEN)
