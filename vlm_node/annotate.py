"""Pictures of what the node found, drawn on the ANONYMIZED frame (no rclpy here).

`annotate` takes an `AnonymizedFrame` only (raw pixels cannot reach it: the same type rule as the
image publishers) and the analysis result of that frame, and draws on a copy:

- redaction outlines: the regions the anonymizer redacted (faces magenta, plates yellow);
- signs: box with class, value, unit and track state (confirmed green, tentative orange);
- scene objects: box with category and score (hazards red, vehicles blue);
- a banner across the top when the result is degraded (with the reason) or the frame was
  redacted whole (fail-closed policy).

It returns an `AnnotatedImage` that also lists every region drawn on, so a test can check that
nothing outside them changed. Used by the `<camera>/image_annotated` topic and the HTML reports.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vlm_node.frames import AnonymizedFrame, FrameMeta
from vlm_node.geometry import Box
from vlm_node.results import AnalysisResult

# BGR colours
FACE, PLATE = (255, 0, 255), (0, 220, 255)
SIGN_CONFIRMED, SIGN_TENTATIVE = (0, 200, 0), (0, 140, 255)
HAZARD, VEHICLE = (0, 0, 255), (255, 128, 0)
BANNER = (0, 0, 180)
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True, slots=True)
class AnnotatedImage:
    """An annotated copy of an anonymized frame, with the frame's meta (header) and the regions
    drawn on (boxes in pixels; nothing outside them differs from the anonymized frame)."""

    meta: FrameMeta
    image: np.ndarray
    regions: tuple[Box, ...]


class _Canvas:
    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.h, self.w = image.shape[:2]
        self.scale = max(0.4, min(self.w, self.h) / 900.0)
        self.thick = max(1, int(round(2 * self.scale)))
        self.regions: list[Box] = []

    def _mark(self, x1: float, y1: float, x2: float, y2: float) -> None:
        b = Box.from_xyxy(x1, y1, x2, y2).clipped(self.w, self.h)
        if b.w > 0 and b.h > 0:
            self.regions.append(b)

    def box(self, box: Box, colour: tuple[int, int, int], label: str = "") -> None:
        x1, y1 = int(round(box.x)), int(round(box.y))
        x2, y2 = int(round(box.x2)), int(round(box.y2))
        t = self.thick
        cv2.rectangle(self.image, (x1, y1), (x2, y2), colour, t)
        self._mark(x1 - t, y1 - t, x2 + t + 1, y2 + t + 1)
        if label:
            self.text(label, x1, y1, colour)

    def text(self, label: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
        fs = 0.5 * self.scale
        (tw, th), base = cv2.getTextSize(label, FONT, fs, 1)
        top = y - th - base - 4 if y - th - base - 4 >= 0 else y + self.thick
        x = max(0, min(x, self.w - tw - 4))
        cv2.rectangle(self.image, (x, top), (x + tw + 4, top + th + base + 4), colour, -1)
        cv2.putText(self.image, label, (x + 2, top + th + 2), FONT, fs, (255, 255, 255), 1,
                    cv2.LINE_AA)
        self._mark(x, top, x + tw + 5, top + th + base + 5)

    def banner(self, label: str) -> None:
        fs = 0.55 * self.scale
        (_, th), base = cv2.getTextSize(label, FONT, fs, 1)
        height = th + base + 8
        cv2.rectangle(self.image, (0, 0), (self.w, height), BANNER, -1)
        cv2.putText(self.image, label, (4, th + 4), FONT, fs, (255, 255, 255), 1, cv2.LINE_AA)
        self._mark(0, 0, self.w, height + 1)


def sign_label(sign) -> str:
    """`speed_limit 50 km/h [confirmed #3]`: class, value and unit, track state and id."""
    value = ""
    if sign.value is not None:
        v = sign.value
        value = f" {float(v):g}" + (f" {sign.unit}" if sign.unit else "")
    track = f" [{sign.track_state}" + (f" #{sign.track_id}" if sign.track_id else "") + "]"
    return f"{sign.sign_class}{value}{track}"


def annotate(frame: AnonymizedFrame, analysis: AnalysisResult | None = None) -> AnnotatedImage:
    """The anonymized frame with redactions, signs, scene objects and a degraded banner drawn
    on a copy (the frame itself is left as it is)."""
    if not isinstance(frame, AnonymizedFrame):
        raise TypeError(f"annotate draws on an AnonymizedFrame only, not "
                        f"{type(frame).__name__}: raw pixels are never drawn or published")
    canvas = _Canvas(frame.image.copy())
    for det in frame.detections:
        canvas.box(det.box, FACE if det.kind == "face" else PLATE)
    if analysis is not None:
        if analysis.scene is not None:
            for obj in analysis.scene.objects:
                colour = VEHICLE if obj.category == "vehicle" else HAZARD
                canvas.box(obj.box, colour, f"{obj.category} {obj.score:.2f}")
        for sign in analysis.signs:
            if sign.box is not None:
                colour = SIGN_CONFIRMED if sign.track_state == "confirmed" else SIGN_TENTATIVE
                canvas.box(sign.box, colour, sign_label(sign))
    notes = []
    if frame.full_frame_redacted:
        notes.append("WHOLE FRAME REDACTED (anonymizer failed)")
    if analysis is not None and analysis.degraded:
        notes.append(f"DEGRADED: {analysis.degraded_reason}"[:160])
    if notes:
        canvas.banner(" | ".join(notes))
    canvas.image.flags.writeable = False
    return AnnotatedImage(frame.meta, canvas.image, tuple(canvas.regions))
