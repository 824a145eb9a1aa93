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


def landmark_box(landmarks: np.ndarray) -> Box:
    """The box dlib's HOG detector would draw around a face with these five landmarks
    (CenterFace order; eye centres and mouth corners): measured on frontal portraits, it spans
    1.26 eye distances either side of the point between the eyes, from 0.83 above the eyes to
    1.69 below. Lets an aligned picture (the face bank, a swap donor) be embedded where no
    detector box exists."""
    p = np.asarray(landmarks, np.float64)
    eyes = (p[0] + p[1]) / 2
    ed = float(np.linalg.norm(p[1] - p[0]))
    return Box(eyes[0] - 1.26 * ed, eyes[1] - 0.83 * ed, 2.52 * ed, 2.52 * ed)


def embedding_at(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The embedding of the face at `landmarks` in BGR `image`, without a detector."""
    out = embedding(image, landmark_box(landmarks), find=False)
    assert out is not None
    return out


def detects(image: np.ndarray, box: Box) -> bool:
    """Whether dlib's HOG detector (independent of the anonymizer's CenterFace) finds a face
    overlapping `box` (IoU > 0.3): the usefulness check of `replace`."""
    detector = _models()[0]
    rgb = np.ascontiguousarray(image[:, :, ::-1])
    return any(Box(r.left(), r.top(), r.width(), r.height()).iou(box) > 0.3
               for r in detector(rgb, 1))


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
