"""Message <-> core conversion, in one module: headers and stamps, images, results.

Pixel conversion itself is `vlm_node.image_codec` (cv_bridge's job, ROS-free so bag tools share
it); this module only fills and reads rclpy message objects.
"""
from __future__ import annotations

import array
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest
from std_msgs.msg import Header

from vlm_node import image_codec
from vlm_node.annotate import AnnotatedImage
from vlm_node.frames import AnonymizedFrame, FrameMeta
from vlm_node.geometry import Box
from vlm_node.pipeline import SceneResult
from vlm_node.results import SceneObject, SignReading
from vlm_node_interfaces.msg import (DetectedObject, SceneDescription, SceneUnderstanding,
                                     TrafficSign)


def stamp_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def header_of(meta: FrameMeta) -> Header:
    """The source frame's header, reproduced exactly (stamp and frame_id)."""
    sec, nanosec = meta.stamp
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=meta.frame_id)


def meta_of(msg: Image | CompressedImage, camera: str, received: float) -> FrameMeta:
    return FrameMeta(camera, stamp_ns(msg.header.stamp), msg.header.frame_id, received)


def byte_array(buf: Any) -> array.array:
    """uint8[] field value from any buffer with one copy (assigning bytes would make rclpy
    check every element in Python, which takes seconds for a 1080p frame)."""
    out = array.array("B")
    out.frombytes(memoryview(buf).cast("B") if not isinstance(buf, bytes) else buf)
    return out


def image_msg(frame: AnonymizedFrame, encoding: str = "bgr8") -> Image:
    """The anonymized frame as sensor_msgs/Image in `encoding` (the source's, so consumers see
    the same format they subscribed to), with the source header."""
    arr = frame.image if encoding == "bgr8" else image_codec.bgr8_to_array(frame.image, encoding)
    raw = image_codec.array_to_image(np.ascontiguousarray(arr), encoding)
    return Image(header=header_of(frame.meta), height=raw.height, width=raw.width,
                 encoding=raw.encoding, is_bigendian=bool(raw.is_bigendian), step=raw.step,
                 data=byte_array(raw.data))


def anonymized_image_msg(source: Image, frame: AnonymizedFrame) -> Image:
    """The anonymized frame as an Image in the source's encoding, reusing `source` itself when
    the anonymizer redacted the source's own pixel buffer in place (tight bgr8 rows decode to a
    view of `msg.data`, which the anonymizer writes through).

    Reuse is decided by memory identity, not by content: `source` is only returned when
    `frame.image` covers exactly the bytes of `source.data`, i.e. what goes out is the buffer
    the anonymizer released. It saves building and copying a new 6 MB message per 1080p frame
    (figures in README, Node overhead)."""
    img = frame.image
    if (source.encoding in ("bgr8", "8UC3") and img.flags.c_contiguous
            and source.step == img.shape[1] * 3 and (source.height, source.width) == img.shape[:2]
            and _same_buffer(img, source.data)):
        return source  # header untouched: stamp and frame_id of the source
    encoding = source.encoding if source.encoding else "bgr8"
    try:
        return image_msg(frame, encoding)
    except image_codec.ImageConversionError:
        return image_msg(frame, "bgr8")  # an encoding that cannot be written back (e.g. Bayer)


def _same_buffer(img: np.ndarray, data: Any) -> bool:
    try:
        view = memoryview(data)
    except TypeError:
        return False
    if view.nbytes != img.nbytes:
        return False
    start = np.frombuffer(view, np.uint8).ctypes.data
    return start == img.ctypes.data


def annotated_msg(annotated: AnnotatedImage) -> Image:
    """An annotated anonymized frame (`vlm_node.annotate`) as a bgr8 Image with the source
    header; only an AnnotatedImage, which only an AnonymizedFrame can give, is accepted."""
    if not isinstance(annotated, AnnotatedImage):
        raise TypeError(f"annotated_msg takes an AnnotatedImage, not {type(annotated).__name__}")
    raw = image_codec.array_to_image(np.ascontiguousarray(annotated.image), "bgr8")
    return Image(header=header_of(annotated.meta), height=raw.height, width=raw.width,
                 encoding=raw.encoding, is_bigendian=bool(raw.is_bigendian), step=raw.step,
                 data=byte_array(raw.data))


def compressed_msg(frame: AnonymizedFrame, kind: str = "jpeg", quality: int = 90
                   ) -> CompressedImage:
    fmt, data = image_codec.encode_compressed(frame.image, kind, quality)
    return CompressedImage(header=header_of(frame.meta), format=fmt, data=byte_array(data))


def _roi(sign: SignReading) -> RegionOfInterest:
    return roi_of(sign.box)


def roi_of(b: Box | None) -> RegionOfInterest:
    """A box as RegionOfInterest (all zero for no box)."""
    if b is None:
        return RegionOfInterest()
    return RegionOfInterest(x_offset=max(0, int(round(b.x))), y_offset=max(0, int(round(b.y))),
                            width=max(0, int(round(b.w))), height=max(0, int(round(b.h))))


def sign_msg(sign: SignReading) -> TrafficSign:
    return TrafficSign(sign_class=sign.sign_class, text=sign.text,
                       has_value=sign.value is not None,
                       value=float(sign.value) if sign.value is not None else 0.0,
                       unit=sign.unit if sign.value is not None else "",
                       confidence=float(sign.confidence), roi=_roi(sign), source=sign.source,
                       track_state=sign.track_state, track_id=int(sign.track_id))


def sign_reading_of(msg: TrafficSign) -> SignReading:
    """The core reading of a received TrafficSign (inverse of `sign_msg`; an all-zero ROI
    means no box)."""
    roi = msg.roi
    box = (Box(float(roi.x_offset), float(roi.y_offset), float(roi.width), float(roi.height))
           if roi.width and roi.height else None)
    return SignReading(sign_class=msg.sign_class, confidence=float(msg.confidence),
                       source=msg.source, value=float(msg.value) if msg.has_value else None,
                       unit=msg.unit, text=msg.text, box=box, track_state=msg.track_state,
                       track_id=int(msg.track_id))


def scene_understanding_msg(result: SceneResult, latency_ms: float) -> SceneUnderstanding:
    a = result.analysis
    msg = SceneUnderstanding(header=header_of(result.meta), camera=result.meta.camera,
                             signs=[sign_msg(s) for s in a.signs], has_scene=a.scene is not None,
                             faces_redacted=result.faces, plates_redacted=result.plates,
                             backend=a.backend, model_id=a.model_id,
                             latency_ms=float(latency_ms), analysis_ms=float(a.analysis_ms),
                             degraded=a.degraded, degraded_reason=a.degraded_reason)
    if a.scene is not None:
        s = a.scene
        msg.scene = SceneDescription(summary=s.summary, weather=s.weather, lighting=s.lighting,
                                     road_type=s.road_type, hazards=list(s.hazards),
                                     confidence=float(s.confidence), source=s.source,
                                     objects=[object_msg(o) for o in s.objects])
    return msg


def object_msg(obj: SceneObject) -> DetectedObject:
    return DetectedObject(category=obj.category, label=obj.label, score=float(obj.score),
                          roi=roi_of(obj.box))


def scene_understanding_to_json(msg: SceneUnderstanding) -> dict[str, Any]:
    """A received SceneUnderstanding as JSON-ready dict (demo output, eval --live)."""
    return {
        "camera": msg.camera, "stamp_ns": stamp_ns(msg.header.stamp),
        "frame_id": msg.header.frame_id,
        "signs": [{"class": s.sign_class, "value": s.value if s.has_value else None,
                   "unit": s.unit, "text": s.text,
                   "box": [s.roi.x_offset, s.roi.y_offset, s.roi.width, s.roi.height],
                   "confidence": round(float(s.confidence), 3), "source": s.source,
                   "track_state": s.track_state, "track_id": s.track_id} for s in msg.signs],
        "scene": ({"summary": msg.scene.summary, "weather": msg.scene.weather,
                   "lighting": msg.scene.lighting, "road_type": msg.scene.road_type,
                   "hazards": list(msg.scene.hazards),
                   "confidence": round(float(msg.scene.confidence), 3),
                   "source": msg.scene.source,
                   "objects": [{"category": o.category, "label": o.label,
                                "score": round(float(o.score), 3),
                                "box": [o.roi.x_offset, o.roi.y_offset, o.roi.width,
                                        o.roi.height]} for o in msg.scene.objects]}
                  if msg.has_scene else None),
        "faces_redacted": msg.faces_redacted, "plates_redacted": msg.plates_redacted,
        "backend": msg.backend, "model_id": msg.model_id,
        "latency_ms": round(float(msg.latency_ms), 2),
        "analysis_ms": round(float(msg.analysis_ms), 2),
        "degraded": msg.degraded, "degraded_reason": msg.degraded_reason,
    }
