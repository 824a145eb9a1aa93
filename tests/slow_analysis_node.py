"""The real node executable with its analysis backend replaced by one that takes a fixed time
per batch (like a batched GPU model) and logs each batch's cameras. Run as its own process by
test_node_realtime.py, so the node does not share a GIL with the test's publishers:

    python -m tests.slow_analysis_node --ros-args -p cameras:=[a,b]   (env SLOW_ANALYSIS_S)
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Sequence

from vlm_node.frames import AnonymizedFrame
from vlm_node.results import AnalysisResult


class SlowAnalyzer:
    """Takes `delay` seconds per call whatever the batch size; records and prints the cameras
    of each batch."""

    def __init__(self, delay: float = 0.2) -> None:
        self.delay = delay
        self.batches: list[list[str]] = []

    def analyze(self, frames: Sequence[AnonymizedFrame]) -> list[AnalysisResult]:
        cameras = sorted(f.meta.camera for f in frames)
        self.batches.append(cameras)
        print("batch " + ",".join(cameras), flush=True)
        time.sleep(self.delay)
        return [AnalysisResult(backend="slow", model_id="sleep", analysis_ms=self.delay * 1e3)
                for _ in frames]

    def status(self) -> dict[str, Any]:
        return {"backend": "slow", "state": "ok"}

    def close(self) -> None:
        pass


class SlowAnalyzerFactory:
    """Picklable (module level), so the node can also build the analyzer in its analysis
    process (`analysis_process`)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def __call__(self, config: Any) -> SlowAnalyzer:
        return SlowAnalyzer(self.delay)


def main() -> int:
    from vlm_node.ros.node import VlmNode
    from vlm_node.ros.node_main import main as node_main

    delay = float(os.environ.get("SLOW_ANALYSIS_S", "0.2"))
    return node_main(sys.argv, node_factory=lambda: VlmNode(
        analyzer_factory=SlowAnalyzerFactory(delay)))


if __name__ == "__main__":
    sys.exit(main())
