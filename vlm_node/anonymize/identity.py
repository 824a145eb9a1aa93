"""Identity removal, measured with a face-recognition model rather than by pixel change.

dlib's ResNet face embedding (from the `face-recognition-models` package, public domain / CC0;
run by `dlib-bin`) maps a face to 128 numbers; two photos of one person land about 0.06 apart,
two people about 0.85, and 0.6 is dlib's same-identity threshold. A redacted face counts as
de-identified when its embedding is more than 0.6 from the original's, or when the face
detector no longer finds a face there at all (reported separately). Optional: measurement and
tests only; `pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from vlm_node.geometry import Box

SAME_PERSON = 0.6


def available() -> str | None:
    """None when dlib and its models can be loaded, else why not (for skip messages)."""
    try:
        import dlib  # noqa: F401
        import face_recognition_models  # noqa: F401
    except ImportError as exc:
        return (f"{exc.name} is not installed (pip install dlib-bin==20.0.1.post1 "
                f"face-recognition-models==0.3.0)")
    return None


@lru_cache(maxsize=1)
def _models() -> tuple[Any, Any, Any]:
    import dlib
    import face_recognition_models as frm

    return (dlib.get_frontal_face_detector(),
            dlib.shape_predictor(frm.pose_predictor_five_point_model_location()),
            dlib.face_recognition_model_v1(frm.face_recognition_model_location()))


def embedding(image: np.ndarray, box: Box, find: bool = True) -> np.ndarray | None:
    """The 128-d embedding of the face in `box` of BGR `image`. With `find`, dlib's own HOG
    detector must find a face overlapping the box (None when it does not: the face is gone
    for a recogniser); without, the box itself is aligned (to measure what is left even when
    no detector would pick the face up)."""
    import dlib

    detector, shape_predictor, encoder = _models()
    rgb = np.ascontiguousarray(image[:, :, ::-1])
    target = dlib.rectangle(int(box.x), int(box.y), int(box.x2), int(box.y2))
    if find:
        found = [r for r in detector(rgb, 1)
                 if Box(r.left(), r.top(), r.width(), r.height()).iou(box) > 0.3]
        if not found:
            return None
        target = max(found, key=lambda r: Box(r.left(), r.top(), r.width(),
                                              r.height()).iou(box))
    shape = shape_predictor(rgb, target)
    return np.asarray(encoder.compute_face_descriptor(rgb, shape, 1), np.float64)


@dataclass
class IdentityResult:
    """One redacted face: distance from the original (None when no face was found after
    redaction) and the distance measured on the box even though no face was found."""

    distance: float | None
    forced_distance: float

    @property
    def removed(self) -> bool:
        return self.distance is None or self.distance > SAME_PERSON


def identity_distance(original: np.ndarray, redacted: np.ndarray, box: Box
                      ) -> IdentityResult | None:
    """How far the redacted face in `box` is from the original one; None when dlib does not
    find the original face (then there is nothing to compare)."""
    ref = embedding(original, box, find=True)
    if ref is None:
        return None
    after = embedding(redacted, box, find=True)
    forced = embedding(redacted, box, find=False)
    assert forced is not None
    return IdentityResult(None if after is None else float(np.linalg.norm(ref - after)),
                          float(np.linalg.norm(ref - forced)))
