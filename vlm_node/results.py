"""Plain data produced by the core pipeline: detections, sign readings, scene descriptions.

These dataclasses are what the core passes around and what the CLI prints as JSON; the ROS
adapter (`vlm_node.ros.convert`) is the one place that turns them into messages.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vlm_node.geometry import Box


@dataclass(frozen=True, slots=True)
class Detection:
    """A region that must be redacted: `kind` is "face" or "plate". Faces from a landmark
    detector carry its five landmarks in frame pixels (eyes, nose tip, mouth corners; None
    otherwise): the `replace` redaction warps a face onto them. Never published."""

    kind: str
    box: Box
    score: float
    detector: str = ""
    landmarks: tuple[tuple[float, float], ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "box": self.box.to_list(), "score": round(self.score, 3),
                "detector": self.detector}


@dataclass(frozen=True, slots=True)
class TextHint:
    """Text the anonymizer's plate pass read and kept out of plate redaction because it is
    traffic-sign text (sign words such as SPEED LIMIT, a number stacked with them), with the
    box of those lines. Analysis looks there for a sign that its own candidate search can miss
    (a white US sign against a white wall): the text detector already ran on the whole frame.
    Never plate text, never pixels."""

    box: Box
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"box": self.box.to_list(), "text": self.text}


@dataclass(frozen=True, slots=True)
class ObjectDetection:
    """One object of a COCO detector: class name and index, score in [0, 1], box in frame
    pixels. The anonymizer's person pass produces these and hands them on with the frame (boxes
    only, never pixels), so scene analysis does not run the same detector twice."""

    label: str
    class_id: int
    score: float
    box: Box


@dataclass(frozen=True, slots=True)
class SceneObject:
    """A road user or animal in a scene description: `category` is a DetectedObject.msg
    CATEGORY_* value, `label` the detector's class (a cyclist's label is "person+bicycle")."""

    category: str
    label: str
    score: float
    box: Box

    def to_json(self) -> dict[str, Any]:
        return {"category": self.category, "label": self.label, "score": round(self.score, 3),
                "box": self.box.to_list()}


@dataclass(slots=True)
class SignReading:
    """One validated traffic-sign reading. Only `vlm_node.analysis.schema` validation and the
    backends create these, so every field holds a vocabulary value or a checked number."""

    sign_class: str
    confidence: float
    source: str
    value: float | None = None
    unit: str = ""
    text: str = ""
    box: Box | None = None
    track_state: str = "tentative"
    track_id: int = 0

    def to_json(self) -> dict[str, Any]:
        value = self.value
        if value is not None and float(value).is_integer():
            value = int(value)
        return {"class": self.sign_class, "value": value, "unit": self.unit, "text": self.text,
                "box": self.box.to_list() if self.box else None,
                "confidence": round(self.confidence, 3), "source": self.source,
                "track_state": self.track_state, "track_id": self.track_id}


@dataclass(slots=True)
class SceneInfo:
    """A validated scene description (the SceneDescription message's content)."""

    summary: str
    weather: str = "unknown"
    lighting: str = "unknown"
    road_type: str = "unknown"
    hazards: tuple[str, ...] = ()
    confidence: float = 0.0
    source: str = "vlm"  # SceneDescription.msg SOURCE_*: detector, vlm or fused
    objects: tuple[SceneObject, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary, "weather": self.weather, "lighting": self.lighting,
                "road_type": self.road_type, "hazards": list(self.hazards),
                "confidence": round(self.confidence, 3), "source": self.source,
                "objects": [o.to_json() for o in self.objects]}


@dataclass(slots=True)
class AnalysisResult:
    """What an analysis backend concluded about one anonymized frame."""

    signs: list[SignReading] = field(default_factory=list)
    scene: SceneInfo | None = None
    backend: str = ""
    model_id: str = ""
    analysis_ms: float = 0.0
    degraded: bool = False
    degraded_reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"signs": [s.to_json() for s in self.signs],
                "scene": self.scene.to_json() if self.scene else None,
                "backend": self.backend, "model_id": self.model_id,
                "analysis_ms": round(self.analysis_ms, 2), "degraded": self.degraded,
                "degraded_reason": self.degraded_reason}
