"""`replace` redaction for faces: a k-Same average face put where the detected face was.

A blurred face is an artefact in training data (a model learns blobs where faces are, and a
face detector run on the output no longer finds a face). `replace` keeps a face there instead,
one that belongs to nobody: each picture in the shipped bank (vlm_node/assets/face_bank/) is
the pixel average of at least k = 10 different people aligned on five landmarks (the k-Same
method: an average of k people matches none of them; built by `vlm_node.tools.build_face_bank`,
sources and licences in the bank's README). At run time the average is

1. picked by the appearance of the original (the cheeks' skin tone, nearest among the
   averages' own tones, and, where appearance.py's estimate is sure of them, gender and age
   among the averages of that tone), and kept per tracked face, so a face does not flicker
   between averages from frame to frame;
2. warped onto the detected face by the similarity transform that maps the bank's template
   landmarks onto the detector's five landmarks;
3. given the original region's colour and lighting (mean and spread per Lab channel, measured
   inside the face), which carries six numbers of the original and no features;
4. faded into a *blurred* copy of the original towards the edge of the face: every pixel of the
   redaction ellipse is either the average face or the blur of the `blur` mode, so nothing of
   the original survives that blur would have kept.

Faces without landmarks (the head backstop's regions, carried boxes), smaller than
`MIN_FACE_PX` or turned too far for five frontal landmarks fall back to blur; the caller
counts them. The landmark order is CenterFace's (and YuNet's): image-left eye, image-right
eye, nose tip, image-left mouth corner, image-right mouth corner.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from vlm_node.anonymize.appearance import Appearance, AppearanceEstimator
from vlm_node.paths import ASSETS

BANK_DIR = ASSETS / "face_bank"

FALLBACK_REASONS = ("no_landmarks", "too_small", "turned", "no_bank")
"""Why `replace` blurred a face instead (counted in `AnonymizerStats.replace_fallbacks` and
published per camera in /diagnostics as `replace_fallback_<reason>`)."""

# Below this eye distance (pixels) a face is too small for a replacement to be seen as a face;
# blur costs less and looks the same there.
MIN_EYE_DISTANCE = 6.0
MIN_FACE_PX = 12.0
# "Too turned": the nose tip this far (in eye distances) beside the point between the eyes
# means a head turned ~45 degrees or more, where a frontal average warped by a similarity
# transform no longer lines up with the face; and landmarks that a similarity transform fits
# this badly (RMS residual in eye distances) are a profile, a tilt or a bad detection.
MAX_NOSE_OFFSET = 0.45
MAX_FIT_RESIDUAL = 0.2
# White point that skin lightness is normalised to (see ita_degrees).
REF_WHITE = 230.0
# Averages whose cheek tone (ITA degrees) is this close to the face's are candidates for it; the
# same person measures 10-20 degrees apart under different light.
TONE_TOLERANCE = 12.0
# The blended face reaches this much beyond the skin ellipse (hairline, jaw, ears).
BLEND_GROW = 1.1
# The replacement is composed with the face box at most this many pixels across (the averages
# are 144x176 px: a face box at the bank's own scale is about 125x160) and enlarged to the box.
WORK_SIDE = 160
# Width of the fade from average face to blurred original, as a fraction of the face ellipse.
FEATHER = 0.18


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 least-squares similarity transform (rotation, uniform scale, shift) taking the
    points `src` (N, 2) onto `dst` (N, 2): the closed-form Procrustes solution, so that the
    same landmarks always give the same warp (no random sampling as in RANSAC fits)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    denom = float((s ** 2).sum())
    if denom <= 1e-12:
        raise ValueError("degenerate landmarks")
    a = float((s * d).sum()) / denom                                 # scale * cos
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / denom  # scale * sin
    m = np.array([[a, -b, 0.0], [b, a, 0.0]])
    m[:, 2] = md - m[:, :2] @ ms
    return m


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def align(image: np.ndarray, landmarks: np.ndarray, template: np.ndarray,
          size: tuple[int, int]) -> np.ndarray:
    """`image` warped so that its face's `landmarks` land on `template` in a `size` (w, h)
    picture: how the bank's faces are brought into one frame before averaging, and how the
    real-face swap of the identity measurement cuts its donors."""
    m = similarity(landmarks, template)
    return cv2.warpAffine(image, m, size, flags=cv2.INTER_AREA if _scale(m) < 1
                          else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _scale(m: np.ndarray) -> float:
    return math.hypot(m[0, 0], m[1, 0])


def skin_tone(image_lab: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Mean Lab (OpenCV 8-bit scale) of the two cheeks: squares a third of an eye distance
    wide, below each eye halfway to the mouth corner, where neither eyes, brows, lips nor
    (mostly) a beard are. Sorts nothing by itself: it picks the bank average for a face."""
    p = np.asarray(landmarks, np.float64)
    ed = float(np.linalg.norm(p[1] - p[0]))
    half = max(1.0, ed / 6.0)
    h, w = image_lab.shape[:2]
    patches = []
    for eye, mouth in ((p[0], p[3]), (p[1], p[4])):
        cx, cy = eye + 0.5 * (mouth - eye)
        x0, x1 = int(max(0, cx - half)), int(min(w, cx + half + 1))
        y0, y1 = int(max(0, cy - half)), int(min(h, cy + half + 1))
        if x1 > x0 and y1 > y0:
            patches.append(image_lab[y0:y1, x0:x1].reshape(-1, 3))
    if not patches:
        return image_lab.reshape(-1, 3).mean(0)
    return np.concatenate(patches).mean(0)


def white_level(image: np.ndarray) -> float:
    """The frame's white point: the 90th percentile of L (OpenCV 8-bit Lab) on a thumbnail
    (every 16th pixel; about 0.1 ms at 1080p). Skin lightness is read relative to it, so that
    a face in a dim room or in shade is not taken for darker skin than it is."""
    step = max(1, max(image.shape[:2]) // 128)
    thumb = np.ascontiguousarray(image[::step, ::step])
    L = cv2.cvtColor(thumb, cv2.COLOR_BGR2LAB)[:, :, 0]
    return max(float(np.percentile(L, 90)), 1.0)


def ita_degrees(lab: np.ndarray, white: float | None = None) -> float:
    """Individual typology angle of an OpenCV 8-bit Lab colour: atan((L* - 50) / b*), the
    dermatology scale of skin tone (> 55 very light ... < -30 dark). With `white` (the
    frame's white_level), L is first rescaled as if that white point were REF_WHITE: on the
    shared and PASCAL photos the raw angle put faces in a dim room 60-80 degrees below the
    same skin in daylight. The bank's tones are measured the same way on the source photos."""
    L8 = float(lab[0]) if white is None else min(255.0, float(lab[0]) * REF_WHITE / white)
    L = L8 * 100.0 / 255.0
    b = float(lab[2]) - 128.0
    return math.degrees(math.atan2(L - 50.0, max(b, 1e-3)))


@dataclass(frozen=True)
class BankFace:
    """One average face of the bank: the picture (template frame), its tone group, how many
    people it averages, its cheek tone (ITA degrees), and its members' genders and age range
    (empty / None: any; the pick's gender and age cues skip what an average does not say)."""

    image: np.ndarray
    group: str
    k: int
    ita: float
    genders: frozenset[str] = frozenset()
    ages: tuple[float, float] | None = None


@dataclass(frozen=True)
class FaceBank:
    """Aligned faces sharing one five-point template and picture size. `faces` are the
    averages of the shipped bank; the identity measurement also builds banks of real faces
    (the swap control), which is why a bank is plain data."""

    template: np.ndarray  # (5, 2) landmark positions in the pictures
    size: tuple[int, int]  # (w, h)
    faces: tuple[BankFace, ...]
    # where the average is blended in (forehead, cheeks and jaw: a wider ellipse than the
    # skin, so less of the redaction ellipse is left to blur), and the skin whose colour
    # statistics are matched
    alpha: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]
    core: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.alpha is None:
            object.__setattr__(self, "alpha", face_alpha(self.template, self.size, BLEND_GROW))
        if self.core is None:
            object.__setattr__(self, "core", face_alpha(self.template, self.size))

    def groups(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for i, f in enumerate(self.faces):
            out.setdefault(f.group, []).append(i)
        return out


def face_alpha(template: np.ndarray, size: tuple[int, int], grow: float = 1.0) -> np.ndarray:
    """Soft mask (float32, 0..1) of the face in template pictures: an ellipse from brow to chin
    around the landmarks (`grow` times as large), fading out over FEATHER of its size, so that
    the edge of the average (averaged hair, background) never shows."""
    w, h = size
    t = np.asarray(template, np.float64)
    ed = float(np.linalg.norm(t[1] - t[0]))
    eyes = (t[0] + t[1]) / 2
    mouth = (t[3] + t[4]) / 2
    cx = float(eyes[0] + mouth[0]) / 2
    top, bottom = eyes[1] - 0.95 * ed, mouth[1] + 0.85 * ed
    cy, ry, rx = (top + bottom) / 2, grow * (bottom - top) / 2, grow * 1.05 * ed
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    return np.clip((1.0 - r) / FEATHER, 0.0, 1.0).astype(np.float32)


def load_bank(directory: Path | str | None = None) -> FaceBank:
    """The bank in `directory` (default: the shipped one): bank.json and its PNG pictures."""
    return _load_bank(str(Path(directory) if directory else BANK_DIR))


@lru_cache(maxsize=4)
def _load_bank(directory: str) -> FaceBank:
    root = Path(directory)
    meta_file = root / "bank.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"face bank not found: {meta_file} (build it with "
                                f"python -m vlm_node.tools.build_face_bank)")
    meta = json.loads(meta_file.read_text())
    size = (int(meta["size"][0]), int(meta["size"][1]))
    faces = []
    for e in meta["faces"]:
        img = cv2.imread(str(root / e["file"]), cv2.IMREAD_COLOR)
        if img is None or img.shape[:2] != (size[1], size[0]):
            raise ValueError(f"face bank picture {e['file']} is missing or not {size}")
        ages = e.get("ages")
        faces.append(BankFace(img, e["group"], int(e["k"]), float(e["ita"]),
                              frozenset(e.get("genders", {})),
                              (float(ages[0]), float(ages[1])) if ages else None))
    if not faces:
        raise ValueError(f"face bank {root} is empty")
    return FaceBank(np.asarray(meta["template"], np.float64), size, tuple(faces))


def usable(landmarks: np.ndarray | None) -> str | None:
    """None when five landmarks describe a face `replace` can cover, else why not (the
    fallback reason that is counted)."""
    if landmarks is None or len(landmarks) != 5 or not np.isfinite(landmarks).all():
        return "no_landmarks"
    p = np.asarray(landmarks, np.float64)
    ed = float(np.linalg.norm(p[1] - p[0]))
    if ed < MIN_EYE_DISTANCE:
        return "too_small"
    eyes = (p[0] + p[1]) / 2
    axis = (p[1] - p[0]) / ed
    if abs(float(np.dot(p[2] - eyes, axis))) / ed > MAX_NOSE_OFFSET:
        return "turned"
    # upright in the face's own frame: mouth below the eyes
    normal = np.array([-axis[1], axis[0]])
    if float(np.dot((p[3] + p[4]) / 2 - eyes, normal)) <= 0.3 * ed:
        return "turned"
    return None


class FaceReplacer:
    """Puts bank faces onto detected faces; remembers which average each track got.

    One per Anonymizer (one camera); used under its lock. `track_id` 0 means "not tracked"
    (carry-over off): the pick is then made afresh from the face's tone each time. With an
    `estimator`, a face's estimated gender and age narrow the averages of its tone (only to
    pick: the estimate is kept nowhere)."""

    def __init__(self, bank: FaceBank | None = None,
                 estimator: AppearanceEstimator | None = None) -> None:
        self.bank = bank if bank is not None else load_bank()
        self.estimator = estimator
        self._picks: dict[int, int] = {}
        self._ita = np.array([f.ita for f in self.bank.faces])

    def picks(self) -> dict[int, int]:
        """Track id -> bank index of the tracks seen (a copy)."""
        return dict(self._picks)

    def forget_except(self, alive: set[int]) -> None:
        """Drop the picks of tracks that ended (ids are never reused, so this only bounds
        memory)."""
        for tid in [t for t in self._picks if t not in alive]:
            del self._picks[tid]

    def pick(self, ita: float, track_id: int, look: Appearance | None = None) -> int:
        """Index of the bank face for a face of cheek tone `ita` (degrees) and estimated
        appearance `look`: one of `candidates`, chosen by the track id, so a crowd of similar
        faces does not all get the same one. Kept per track: the measured tone moves with the
        light from frame to frame, the pick must not."""
        if track_id and track_id in self._picks:
            return self._picks[track_id]
        near = self.candidates(ita, look)
        choice = int(near[(track_id * 2654435761) % near.size]) if track_id else \
            int(near[np.argmin(np.abs(self._ita[near] - ita))])
        if track_id:
            self._picks[track_id] = choice
        return choice

    def candidates(self, ita: float, look: Appearance | None = None) -> np.ndarray:
        """Indices of the averages a face of cheek tone `ita` can get: those within
        TONE_TOLERANCE of it, or the nearest one when none is; of these, with `look`, the ones
        whose members' genders and ages fit it (`Appearance.fits`), unless none does (tone
        comes first: a woman whose tone lies near male averages only still gets one of them
        rather than a face of another skin tone). A tracked face gets one of them by its track
        id (uniform over tracks), an untracked one the nearest in tone; the identity
        measurement averages over them (face-identity --all-averages)."""
        gaps = np.abs(self._ita - ita)
        near = np.nonzero(gaps <= TONE_TOLERANCE)[0]
        if not near.size:
            near = np.array([int(np.argmin(gaps))])
        if look is not None:
            fit = [int(i) for i in near
                   if look.fits(self.bank.faces[i].genders, self.bank.faces[i].ages)]
            if fit:
                near = np.array(fit)
        return near

    def look(self, image: np.ndarray, landmarks: np.ndarray) -> Appearance | None:
        """The estimator's reading of the face at `landmarks` (frame pixels) of `image`; None
        without an estimator or for a face too small for it."""
        return None if self.estimator is None else self.estimator.estimate(image, landmarks)

    def tone(self, image: np.ndarray, rows: slice, cols: slice, landmarks: np.ndarray
             ) -> float:
        """The cheek tone (ITA degrees, against the frame's white point) that `replace` picks
        by, for the face at `landmarks` in the redaction box `image[rows, cols]`."""
        small, lm = _working(image, rows, cols, landmarks)
        return _cheek_ita(cv2.cvtColor(small, cv2.COLOR_BGR2LAB), lm, image)

    def replace(self, image: np.ndarray, rows: slice, cols: slice, landmarks: np.ndarray,
                track_id: int, index: int | None = None) -> np.ndarray:
        """The replacement for `image[rows, cols]` (the redaction box): the bank face warped
        onto `landmarks` (frame pixels), colour-matched, fading into a blur of the original
        around it. The caller copies it into the elliptical mask. `index` forces a bank face
        (measurement).

        The work is done with the box at most WORK_SIDE pixels across and the result enlarged:
        the averages hold no finer detail than that, and the cost stays under a millisecond
        or two whatever the size of the face (a 440 px face took 170 ms at full size)."""
        rh, rw = image[rows, cols].shape[:2]
        small, lm = _working(image, rows, cols, landmarks)
        sh, sw = small.shape[:2]
        small_lab = cv2.cvtColor(small, cv2.COLOR_BGR2LAB)
        if index is None and not (track_id and track_id in self._picks):
            index = self.pick(_cheek_ita(small_lab, lm, image), track_id,
                              self.look(image, landmarks))
        elif index is None:
            index = self._picks[track_id]
        m = similarity(self.bank.template, lm)
        flags = cv2.INTER_AREA if _scale(m) < 1 else cv2.INTER_LINEAR
        face = cv2.warpAffine(self.bank.faces[index].image, m, (sw, sh), flags=flags,
                              borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(self.bank.alpha, m, (sw, sh), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        core = cv2.warpAffine(self.bank.core, m, (sw, sh), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        face = _match_colour(face, small_lab, core)
        out = cv2.blendLinear(face, _surround_blur(small, alpha), alpha, 1.0 - alpha)
        return out if (sw, sh) == (rw, rh) else cv2.resize(out, (rw, rh),
                                                           interpolation=cv2.INTER_LINEAR)


def _cheek_ita(small_lab: np.ndarray, lm: np.ndarray, image: np.ndarray) -> float:
    """The tone a face is picked by: its cheeks (in the working-size box) against the whole
    frame's white point."""
    return ita_degrees(skin_tone(small_lab, lm), white_level(image))


def _working(image: np.ndarray, rows: slice, cols: slice, landmarks: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """The redaction box `image[rows, cols]` at the working size (at most WORK_SIDE px
    across) and the landmarks in its pixels. The reduction is linear, not area averaging:
    the small picture only feeds means (the cheek tone, the colour statistics, the 6-cell
    surround blur), where aliasing does not matter, and area averaging took 1.9 ms of a
    462x636 face's 2.4 ms over blur (thread CPU, under load)."""
    roi = image[rows, cols]
    rh, rw = roi.shape[:2]
    f = min(1.0, WORK_SIDE / max(rh, rw))
    sw, sh = max(1, round(rw * f)), max(1, round(rh * f))
    small = roi if f == 1.0 else cv2.resize(roi, (sw, sh), interpolation=cv2.INTER_LINEAR)
    lm = (np.asarray(landmarks, np.float64) - (cols.start, rows.start)) * (sw / rw, sh / rh)
    return small, lm


def _surround_blur(roi: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The `blur` mode's result for `roi` computed from the pixels *around* the face only:
    each cell of blur's grid gets the mean colour of its pixels weighted by 1 - alpha (the
    weighted colours and the weight are area-averaged together as one 4-channel image, then
    divided), so the fade from the new face runs into blurred hair and background, not into a
    blurred ghost of the old face's skin. No finer detail than `blur` keeps. A cell the face
    covers entirely takes the surround's mean colour (it is under the face anyway)."""
    from vlm_node.anonymize.redact import cell_grid, smooth_enlarged

    rh, rw = roi.shape[:2]
    w = 1.0 - alpha
    stack = cv2.merge([*cv2.split(roi.astype(np.float32) * w[:, :, None]), w])
    cells = cv2.resize(stack, cell_grid(rw, rh), interpolation=cv2.INTER_AREA)
    den = cells[:, :, 3:]
    total = float(den.sum())
    mean = cells[:, :, :3].reshape(-1, 3).sum(0) / total if total > 1e-6 else \
        roi.reshape(-1, 3).mean(0)
    colour = np.where(den > 0.02, cells[:, :, :3] / np.maximum(den, 1e-6),
                      mean.astype(np.float32)).astype(np.float32)
    return np.clip(smooth_enlarged(colour, rw, rh) + 0.5, 0, 255).astype(np.uint8)


def _match_colour(face: np.ndarray, roi_lab: np.ndarray, core: np.ndarray) -> np.ndarray:
    """`face` (uint8 BGR) given the mean and spread per Lab channel that `roi_lab` has inside
    the face (`core` > 0.5): the original's lighting and skin tone, none of its features."""
    inside = (core > 0.5).astype(np.uint8)
    if int(inside.sum()) < 4:
        return face
    fl = cv2.cvtColor(face, cv2.COLOR_BGR2LAB)
    fm, fs = (v.ravel() for v in cv2.meanStdDev(fl, mask=inside))
    rm, rs = (v.ravel() for v in cv2.meanStdDev(roi_lab, mask=inside))
    # the spread follows the original only so far: a face in flat light stays a face, and a
    # harsh shadow across the original is not stamped into the average's contrast
    gain = np.clip(rs / np.maximum(fs, 1.0), 0.6, 1.6)
    m = np.zeros((3, 4))
    m[:, :3] = np.diag(gain)
    m[:, 3] = rm - gain * fm
    return cv2.cvtColor(cv2.transform(fl, m), cv2.COLOR_LAB2BGR)  # saturating uint8
