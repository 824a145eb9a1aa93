"""Real sign photos placed in real street photos: a labelled full-frame set built from data a
user has, for the case the labelled road photos do not cover (`vlm-node sign-scenes`).

Why: the issue's checks put GTSRB crops into street scenes, and the labelled road photos (GTSDB,
Kaggle) show a few hundred physical signs, most of them German speed limits and all of them
seen by the rules' authors. GTSRB's crops are real camera pixels of ~1,300 physical signs, and
the sign classifier holds out whole tracks of them (`training.val_tracks` in its metadata), so
crops of those tracks placed into photos that hold no sign make a full-frame set no rule and no
weight has seen: the finder must find them among a street's clutter, the classifier and OCR
read them at the size a road camera sees them.

What a placed sign is (`place_sign`): the GTSRB crop as shipped (the sign and its ~10 %
margin of real background), scaled so the sign's larger side is the drawn size, pasted with
its margin faded into the photo (opaque on the sign, transparent at the crop's border), so no
rectangle edge frames the sign; the whole frame is then JPEG-encoded as a camera would. What it
is not: lit like the photo (a sign keeps its own exposure), or occluded. Sizes are drawn
log-uniformly, so small signs (the hard ones) are as common as large ones per octave.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np

from vlm_node.analysis.gtsrb import SPEED_LIMIT_IDS
from vlm_node.errors import ConfigError
from vlm_node.evaluation.label_import import gtsrb_roi, gtsrb_track, sign_label
from vlm_node.geometry import Box

# Signs stand above the road: a placed sign's top edge lies in this upper share of the frame.
UPPER_SHARE = 0.7
# Space kept free around a placed sign, as a share of its crop's size: signs touching each
# other or a labelled face would read as one region, which no road shows.
CLEARANCE = 0.5
PLACE_TRIES = 60


@dataclass(frozen=True)
class SignCrop:
    """One GTSRB training crop: its file, class id, track ("class_track") and the sign's box
    inside the crop (the CSV's ROI)."""

    path: Path
    class_id: int
    track: str
    roi: Box


@dataclass(frozen=True)
class PlacedSign:
    """A sign pasted into a frame: which crop, and the sign's box in frame pixels."""

    crop: SignCrop
    box: Box


def load_sign_crops(data_dir: Path, tracks: Iterable[str] | None = None) -> list[SignCrop]:
    """The crops of a GTSRB training split in the Kaggle layout (`Train.csv` with ROI columns;
    `aug_*` files are not GTSRB and are left out), only those of `tracks` when given."""
    table = data_dir / "Train.csv"
    if not table.is_file():
        raise ConfigError(f"{data_dir}: no Train.csv (the GTSRB training split in the Kaggle "
                          "layout: Train/<class>/<file>.png and Train.csv)")
    keep = set(tracks) if tracks is not None else None
    out = []
    with table.open(newline="") as f:
        for row in csv.DictReader(f):
            name = Path(row["Path"]).name
            if name.startswith("aug_"):
                continue
            track = gtsrb_track(name)
            if keep is not None and track not in keep:
                continue
            out.append(SignCrop(data_dir / row["Path"], int(row["ClassId"]), track,
                                gtsrb_roi(row)))
    return out


def held_out_tracks(model_path: Path) -> list[str]:
    """The GTSRB tracks the sign classifier at `model_path` was not trained on (its metadata's
    `val_tracks`): the only crops a fair set may hold."""
    from vlm_node.analysis.sign_classifier import SignClassifier

    tracks = list(SignClassifier(model_path).info.extra.get("val_tracks", []))
    if not tracks:
        raise ConfigError(f"{model_path} records no held-out tracks (training.val_tracks)")
    return tracks


class CropPicker:
    """Draws crops track by track, so that a few long tracks do not fill the set: a speed-limit
    track with probability `speed_share` (when there are both kinds), then one of its frames
    whose sign is at least `min_source` of the size it will be pasted at (GTSRB tracks run from
    far to near; enlarging a 25 px crop to 60 px would paste blur), else its largest."""

    def __init__(self, crops: Sequence[SignCrop], speed_share: float, rng: np.random.Generator,
                 min_source: float = 0.8) -> None:
        if not crops:
            raise ConfigError("no GTSRB crops to place (none of the chosen tracks is in the "
                              "folder?)")
        by_track: dict[str, list[SignCrop]] = {}
        for c in crops:
            by_track.setdefault(c.track, []).append(c)
        self._speed = [t for t, cs in by_track.items() if cs[0].class_id in SPEED_LIMIT_IDS]
        self._other = [t for t, cs in by_track.items() if cs[0].class_id not in SPEED_LIMIT_IDS]
        self._by_track = by_track
        self._share = speed_share
        self._rng = rng
        self._min_source = min_source

    def pick(self, side: float) -> SignCrop:
        """A crop to paste with its sign's larger side `side` px."""
        pool = self._speed if (self._speed and (not self._other
                                                or self._rng.random() < self._share)) \
            else self._other
        frames = self._by_track[pool[int(self._rng.integers(len(pool)))]]
        big = [c for c in frames if max(c.roi.w, c.roi.h) >= self._min_source * side]
        if big:
            return big[int(self._rng.integers(len(big)))]
        return max(frames, key=lambda c: max(c.roi.w, c.roi.h))


def fade_mask(height: int, width: int, roi: Box) -> np.ndarray:
    """HxW float32 alpha for a crop: 1 on the sign's box, falling linearly to 0 at the crop's
    border across the margin around it (its real background blends into the photo)."""
    ys = np.arange(height, dtype=np.float32) + 0.5
    xs = np.arange(width, dtype=np.float32) + 0.5

    def ramp(v: np.ndarray, lo: float, hi: float, end: float) -> np.ndarray:
        before = np.clip(v / max(lo, 1e-3), 0, 1)
        after = np.clip((end - v) / max(end - hi, 1e-3), 0, 1)
        return np.where(v < lo, before, np.where(v > hi, after, 1.0)).astype(np.float32)

    return np.outer(ramp(ys, roi.y, roi.y2, height), ramp(xs, roi.x, roi.x2, width))


def pasted_size(crop_bgr: np.ndarray, roi: Box, side: float) -> tuple[int, int]:
    """(width, height) in pixels of `crop_bgr` (its sign at `roi`) scaled so that the sign's
    larger side is `side` px: the footprint `place_sign` pastes."""
    scale = side / max(roi.w, roi.h)
    ch, cw = crop_bgr.shape[:2]
    return max(1, round(cw * scale)), max(1, round(ch * scale))


def place_sign(frame: np.ndarray, crop_bgr: np.ndarray, roi: Box, side: float, x: int, y: int
               ) -> Box:
    """Paste `crop_bgr` (its sign at `roi`) into `frame` in place, scaled so that the sign's
    larger side is `side` px, its top-left corner at (x, y) (the crop must fit); returns the
    sign's box in the frame."""
    scale = side / max(roi.w, roi.h)
    ch, cw = crop_bgr.shape[:2]
    w, h = pasted_size(crop_bgr, roi, side)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    pixels = cv2.resize(crop_bgr, (w, h), interpolation=interp).astype(np.float32)
    sx, sy = w / cw, h / ch
    box = roi.scaled(sx, sy)
    alpha = fade_mask(h, w, box)[:, :, None]
    region = frame[y:y + h, x:x + w].astype(np.float32)
    frame[y:y + h, x:x + w] = np.clip(alpha * pixels + (1 - alpha) * region + 0.5,
                                      0, 255).astype(np.uint8)
    return box.shifted(x, y)


def _clear(box: Box, taken: Sequence[Box]) -> bool:
    grown = box.expanded(CLEARANCE)
    return all(grown.intersection(t) == 0 for t in taken)


def place_signs(frame: np.ndarray, picker: CropPicker, count: int, sizes: tuple[float, float],
                rng: np.random.Generator, avoid: Sequence[Box] = ()) -> list[PlacedSign]:
    """Paste up to `count` signs into `frame` (in place): sizes log-uniform in `sizes` (the
    sign's larger side in px), each where its crop fits in the upper `UPPER_SHARE` of the frame
    clear of `avoid` (labelled faces and plates) and of the signs placed before it. A sign that
    finds no such place in `PLACE_TRIES` draws is left out."""
    fh, fw = frame.shape[:2]
    taken = list(avoid)
    out: list[PlacedSign] = []
    lo, hi = math.log(sizes[0]), math.log(sizes[1])
    for _ in range(count):
        side = float(math.exp(rng.uniform(lo, hi)))
        crop = picker.pick(side)
        image = cv2.imread(str(crop.path), cv2.IMREAD_COLOR)
        if image is None:
            raise ConfigError(f"{crop.path}: unreadable GTSRB crop")
        w, h = pasted_size(image, crop.roi, side)
        top_max = int(UPPER_SHARE * fh) - h
        if w >= fw or top_max < 0:
            continue
        for _ in range(PLACE_TRIES):
            x, y = int(rng.integers(0, fw - w + 1)), int(rng.integers(0, top_max + 1))
            footprint = Box(x, y, w, h)
            if _clear(footprint, taken):
                box = place_sign(frame, image, crop.roi, side, x, y)
                taken.append(footprint)
                out.append(PlacedSign(crop, box))
                break
    return out


def scene_entry(file: Path, width: int, height: int, placed: Sequence[PlacedSign],
                carried: dict[str, Any] | None = None) -> dict[str, Any]:
    """The labels.json entry of one built frame: every placed sign (class, value and unit from
    the GTSRB table) after the photo's own sign labels, and its face and plate labels, when it
    had any."""
    own = list((carried or {}).get("signs") or [])
    entry: dict[str, Any] = {"file": str(file), "width": width, "height": height,
                             "signs": own + [sign_label(p.crop.class_id, p.box, str(p.crop.path))
                                             for p in placed]}
    for key in ("faces", "faces_ignore", "plates"):
        if carried and carried.get(key) is not None:
            entry[key] = carried[key]
    return entry
