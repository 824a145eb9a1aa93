"""The analysis backend interface: every backend (transformers, openai, ocr, clip) has this shape.

Stages follow transformers' pipelines (preprocess -> forward -> postprocess) behind one call,
`analyze(frames)`, that takes a batch (one frame per camera) so batching and timing live in one
place. Backends only ever receive `AnonymizedFrame`s.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence, TypeVar

from vlm_node.frames import AnonymizedFrame
from vlm_node.results import AnalysisResult

_Backend = TypeVar("_Backend", bound="AnalysisBackend")


class AnalysisBackend(ABC):
    """Loads a model once (`load`, which also warms it up) and analyzes batches of frames."""

    #: short name used in parameters and messages: "transformers", "openai", "ocr", "clip"
    name: str = ""
    #: True when `analyze` processes several frames faster than one at a time
    supports_batching: bool = False
    #: True when results include a scene description
    describes_scene: bool = False

    @property
    @abstractmethod
    def model_id(self) -> str:
        """Model name or path as loaded (goes into SceneUnderstanding.model_id)."""

    @abstractmethod
    def load(self) -> None:
        """Load weights / connect and run one warm-up inference.

        Raises BackendUnavailableError with a message naming the parameter to change.
        """

    @abstractmethod
    def analyze(self, frames: Sequence[AnonymizedFrame]) -> list[AnalysisResult]:
        """One result per frame, same order. Raises AnalysisError when the batch fails."""

    def close(self) -> None:
        """Release models, sessions and connections (default: nothing to release)."""

    def __enter__(self: _Backend) -> _Backend:
        """`with backend:` loads it and closes it on the way out, error or not: a backend can
        own threads and sessions (the ocr backend's outline search thread) that a forgotten
        `close` would leave behind."""
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
