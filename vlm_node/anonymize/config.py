"""Anonymizer settings (the `anonymizer.*` parameters of the node)."""
from __future__ import annotations

from dataclasses import dataclass

from vlm_node.params import setting

FAILURE_POLICIES = ("drop", "full_blur")
REDACTION_MODES = ("blur",)


@dataclass
class AnonymizerConfig:
    faces: bool = setting(True, "Detect and redact faces.")
    face_model: str = setting(
        "", "Path of the YuNet face detector ONNX file; empty = the model shipped with vlm_node.")
    face_score_threshold: float = setting(
        0.6, "Minimum detector score for a face to be redacted.", min=0.05, max=0.99,
        dynamic=True)
    face_nms_threshold: float = setting(
        0.3, "IoU above which overlapping face boxes are merged.", min=0.05, max=0.95,
        dynamic=True)
    margin: float = setting(
        0.25, "Each redacted box grows by this fraction of its size on every side.",
        min=0.0, max=1.0, dynamic=True)
    redaction: str = setting("blur", "How regions are redacted.", choices=REDACTION_MODES,
                             dynamic=True)
    failure_policy: str = setting(
        "drop", "When detection fails: `drop` the frame, or release it `full_blur`red.",
        choices=FAILURE_POLICIES, dynamic=True)
