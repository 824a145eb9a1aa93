"""Analyzers for tests/test_process_analyzer.py. Module level, so a spawned analysis process can
import and build them (the factory is pickled by reference)."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

from vlm_node.frames import AnonymizedFrame
from vlm_node.results import AnalysisResult


class MeanAnalyzer:
    """Answers each frame with its mean pixel value (as analysis_ms) and this process's pid
    (as model_id): what was analysed, and where."""

    def __init__(self, mode: str = "ok", marker: str = "") -> None:
        self.mode, self.marker, self.calls = mode, marker, 0

    def analyze(self, frames: Sequence[AnonymizedFrame]) -> list[AnalysisResult]:
        self.calls += 1
        first_time = bool(self.marker) and not Path(self.marker).exists()
        if first_time:
            Path(self.marker).touch()  # misbehave once per marker file, across restarts
        if first_time and self.mode == "crash":
            os._exit(3)  # a native crash in a model: no exception, no goodbye
        if first_time and self.mode == "hang":
            time.sleep(60)
        if self.mode == "raise":
            raise ValueError("model says no")
        return [AnalysisResult(backend="mean", model_id=str(os.getpid()),
                               analysis_ms=float(f.image.mean())) for f in frames]

    def status(self) -> dict[str, Any]:
        out = {"backend": "mean", "state": "ok", "calls": self.calls}
        if self.mode == "gpu":  # as the engine reports a transformers model on CUDA
            out["transformers.device"] = "cuda:0"
        return out

    def close(self) -> None:
        pass


class MeanFactory:
    def __init__(self, mode: str = "ok", marker: str = "") -> None:
        self.mode, self.marker = mode, marker

    def __call__(self, config: Any) -> MeanAnalyzer:
        if self.mode == "load_error":
            raise RuntimeError("weights file missing: /nowhere/model.onnx")
        return MeanAnalyzer(self.mode, self.marker)
