"""Gender and age of a face, estimated only to pick a `replace` average that matches them.

The bank of `replace` (face_replace.py) holds female, male and mixed averages, young and older
ones. Skin tone alone put a woman's face on a male average and the other way round. This
module gives the pick two more cues from Intel's age-gender-recognition-retail-0013 (Open Model
Zoo, Apache-2.0, shipped in vlm_node/assets/models/age_gender/ as the FP16-INT8 OpenVINO IR;
provenance in ATTRIBUTION.md there): a 62x62 face crop in, P(male) and age / 100 out, about
0.5 ms on one core.

What the estimate is used for, and what not: it narrows the averages a face can get and
nothing else. It is never published, logged or stored; a face it is unsure of (P under
`GENDER_CONFIDENCE` either way) or too small for it (`MIN_FACE_PX`) keeps the tone-only pick.
Measured on studio photos and 3D renders of 344 labelled faces shrunk to fleet sizes
(`python -m vlm_node.tools.face_appearance`, docs/face_replace.md): at P >= 0.9 the gender was
right for 0.98-1.00 of faces of 32 px and more; on 157 hand-labelled crowd faces of 48 px and
more (WIDER FACE training photos, `face_appearance --faces`) for 0.94 of the 0.68 it was sure
of.

The crop is fixed by the five landmarks, not by a detector's box: the landmarks' similarity
frame (`TEMPLATE`, the shipped bank's) maps to the box CenterFace draws around such a face,
measured on the bank's 142 sitters (`CROP_IN_TEMPLATE`). So the same face gives the same crop
whichever detector found it or whether its box was carried, and a rolled head is cropped
upright.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from vlm_node.errors import ConfigError
from vlm_node.paths import ASSETS

MODEL_XML = ASSETS / "models" / "age_gender" / "age-gender-recognition-retail-0013.xml"
INPUT_SIDE = 62  # the network's input: 62x62 BGR, 0-255
# Faces narrower than this (eye distance x CROP_WIDTH_EYES) are not estimated: at 24 px the
# gender of sure faces was right for only 0.93 of one development set (1.00 at 32 px; the
# network's own card asks 62 px). 30, not 32: landmark jitter must not drop 32 px faces.
MIN_FACE_PX = 30.0
# A gender is used when the network gives it at least this probability (0.98-1.00 right there
# on the development sets at 32 px and more; over all faces 0.85-1.00).
GENDER_CONFIDENCE = 0.9
# An average fits an age when the age lies within its members' age range widened by this many
# years on each side (the measured mean absolute error at 32-96 px was 3.3-6.3 years).
AGE_MARGIN = 5.0
# Five landmarks of a frontal face (CenterFace order; the shipped bank's template) and the box
# CenterFace draws around such a face in that frame (x1, y1, x2, y2: the mean over the bank's
# 142 sitters, standard deviation 2.8-4.4 px at this eye distance of 48 px).
TEMPLATE = np.array([[48.0, 72.0], [96.0, 72.0], [71.256, 98.681], [49.693, 117.276],
                     [90.415, 117.051]])
CROP_IN_TEMPLATE = (22.7, 17.4, 120.9, 151.8)
CROP_WIDTH_EYES = (CROP_IN_TEMPLATE[2] - CROP_IN_TEMPLATE[0]) / float(
    np.linalg.norm(TEMPLATE[1] - TEMPLATE[0]))


@dataclass(frozen=True)
class Appearance:
    """What the pick may use of a face: P(male) and the age in years (estimates)."""

    male: float
    age: float

    @property
    def gender(self) -> str | None:
        """'male' or 'female' when the estimate is at least GENDER_CONFIDENCE sure, else None."""
        if self.male >= GENDER_CONFIDENCE:
            return "male"
        if self.male <= 1.0 - GENDER_CONFIDENCE:
            return "female"
        return None

    def fits(self, genders: frozenset[str], ages: tuple[float, float] | None) -> bool:
        """Whether an average of members with `genders` and age range `ages` suits this face:
        its members include the face's gender (when sure) and their ages, widened by
        AGE_MARGIN, include the face's age."""
        g = self.gender
        if g is not None and genders and g not in genders:
            return False
        if ages is not None and not (ages[0] - AGE_MARGIN <= self.age <= ages[1] + AGE_MARGIN):
            return False
        return True


class AppearanceEstimator:
    """The age-gender network on OpenVINO's CPU plugin, one thread (it runs once per new
    tracked face, not per frame). OpenVINO reads the IR directly, whatever inference engine
    the detectors use; the openvino package is a pinned runtime dependency."""

    def __init__(self, model_xml: Path | str = MODEL_XML) -> None:
        from vlm_node.anonymize.openvino_session import OpenVinoSession

        try:
            # a session for this one path: the only ConfigError it raises is a missing package
            self._session = OpenVinoSession(Path(model_xml), threads=1)
        except ConfigError as exc:
            raise ConfigError(
                "anonymizer.replace_appearance needs the openvino package (the age-gender "
                "network is an OpenVINO IR, whatever `anonymizer.engine` says; "
                "requirements/runtime.txt): install it, or set anonymizer.replace_appearance: "
                "false to pick by skin tone alone") from exc

    def estimate(self, image: np.ndarray, landmarks: np.ndarray) -> Appearance | None:
        """P(male) and age of the face at `landmarks` (frame pixels, CenterFace order) in
        `image` (BGR); None when the face is narrower than MIN_FACE_PX (`big_enough`)."""
        p = np.asarray(landmarks, np.float64)
        return self.read(crop(image, p)) if big_enough(p) else None

    def read(self, face: np.ndarray) -> Appearance:
        """The network's reading of a 62x62 BGR `crop` (no size gate: for measurements). The
        session is thread-safe (an infer request per thread), so no lock here."""
        x = face.transpose(2, 0, 1)[None].astype(np.float32)
        age, prob = self._session.run(["age_conv3", "prob"], {"data": x})
        return Appearance(male=float(prob.ravel()[1]), age=float(age.ravel()[0]) * 100.0)


def big_enough(landmarks: np.ndarray) -> bool:
    """Whether the face at `landmarks` is at least MIN_FACE_PX wide (its crop's width, from
    the eye distance), the size below which `estimate` gives no reading."""
    p = np.asarray(landmarks, np.float64)
    return float(np.linalg.norm(p[1] - p[0])) * CROP_WIDTH_EYES >= MIN_FACE_PX


def crop(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 62x62 BGR crop the network sees: the face's CenterFace-style box, fixed by its five
    landmarks through TEMPLATE's similarity frame (upright, whichever detector found it)."""
    from vlm_node.anonymize.face_replace import similarity

    x1, y1, x2, y2 = CROP_IN_TEMPLATE
    sx, sy = INPUT_SIDE / (x2 - x1), INPUT_SIDE / (y2 - y1)
    box = np.array([[sx, 0.0, -x1 * sx], [0.0, sy, -y1 * sy], [0.0, 0.0, 1.0]])
    m = (box @ np.vstack([similarity(np.asarray(landmarks, np.float64), TEMPLATE),
                          [0.0, 0.0, 1.0]]))[:2]
    return cv2.warpAffine(image, m, (INPUT_SIDE, INPUT_SIDE), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REPLICATE)


@lru_cache(maxsize=1)
def shared_estimator() -> AppearanceEstimator:
    """One estimator per process (the compiled network is shared by every camera's replacer;
    each call ~0.5 ms)."""
    return AppearanceEstimator()
