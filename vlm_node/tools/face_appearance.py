"""Measure the gender and age cue of `replace` on labelled faces shrunk to fleet sizes.

    git clone https://github.com/debruine/webmorphR.stim STIM
    git -C STIM checkout fa8b78fda2d659bb74ce62fcd99c4407551d2a77
    python -m vlm_node.tools.face_appearance --stim STIM [--sizes 96,64,48,32,24] [--json F]
    python -m vlm_node.tools.face_appearance --faces FACES.json [--json F]

What it prints, per set and face size: how often the age-gender network (appearance.py) gets
the gender right over all faces, how many faces it is sure of (P >= GENDER_CONFIDENCE) and how
often it is right on those (the only ones the pick uses), the mean absolute age error, and the
figure that matters to a user: the share of faces that get an average of the *other* gender,
with the shipped pick (tone, then gender and age) against skin tone alone (each expected over
the averages the pick may give the face).

The labelled faces (packaged in debruine/webmorphR.stim, self-reported gender and age): the
Face Research Lab London Set, neutral (`_03`) and smiling (`_08`) photos of 102 adults, and the
Canada set of 40 young White adults (both CC BY 4.0), and 3DSK, renders of 100 3D face scans
(50 female, 50 male; `inst/3dsk/`, ages from `data-raw/raw_3dsk_info.csv`), which the package
shares from www.3d.sk's licence for educational use only: read here to measure, nothing of it
is kept or shipped (`--sets` without 3dsk leaves it out). The London neutral and
Canada photos are the bank's own sitters and were used to fit the crop (`CROP_IN_TEMPLATE`) and
choose it over the detector's box: they are the development sets; London smiling (same people,
another photo) and 3DSK (other people) were only measured. None is trained on: the network is
Intel's. Each photo is shrunk so that its face box is SIZE px wide and JPEG-compressed
(quality 70), as a fleet camera sees faces; the landmarks are the anonymizer's CenterFace's on
the full photo, scaled with it.

`--faces FACES.json` measures the same figures on faces in photos of your own, at their own
size (street and crowd faces, where the network is less often sure): a JSON object whose
"faces" list holds {"file": photo path (relative to the JSON's folder), "box": [x, y, w, h] of
the face, "gender": "male" or "female" (as the face is seen; leave unclear faces out), and
optionally "age"}. Each box is matched to the anonymizer's CenterFace detection it overlaps
most (IoU >= MATCH_IOU) for the landmarks; faces with no such detection or under MIN_FACE_PX
are counted and left out. Rows by the box's shorter side (FACE_BUCKETS) and for all faces.
"""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vlm_node.anonymize.appearance import (CROP_WIDTH_EYES, GENDER_CONFIDENCE,
                                           AppearanceEstimator, big_enough, crop)
from vlm_node.anonymize.face_replace import FaceReplacer
from vlm_node.geometry import Box
from vlm_node.tools.build_face_bank import (SOURCE_COMMIT, SOURCE_REPO, detect_landmarks,
                                            stim_parser)

SETS = ("london_neutral", "canada", "london_smiling", "3dsk")
MATCH_IOU = 0.4  # a labelled box and the detection that gives its landmarks
DETECT_MAX_SIDE = 1280  # photos are searched for faces at most this many pixels across
FACE_BUCKETS = ((0, 48), (48, 64), (64, 96), (96, 100_000))  # shorter side of the box, px
DEVELOPMENT = ("london_neutral", "canada")
JPEG_QUALITY = 70


@dataclass
class Face:
    set: str
    file: Path
    gender: str
    age: float | None


def read_faces(stim: Path) -> list[Face]:
    """The labelled photos of the four sets in `stim` (a webmorphR.stim checkout)."""
    out: list[Face] = []
    with open(stim / "data-raw" / "london_info.csv", newline="") as f:
        for row in csv.DictReader(f):
            age = None if row["face_age"] in ("", "NA") else float(row["face_age"])
            for name, suffix, sub in (("london_neutral", "03", "neutral_front"),
                                      ("london_smiling", "08", "smiling_front")):
                out.append(Face(name, stim / "inst" / sub / f"{row['face_id']}_{suffix}.jpg",
                                row["face_gender"], age))
    with open(stim / "data-raw" / "canada_info.csv", newline="") as f:
        for row in csv.DictReader(f):
            out.append(Face("canada", stim / "inst" / "canada" / f"{row['face_id']}.jpg",
                            row["face_gender"], float(row["face_age"])))
    seen: dict[str, tuple[str, float]] = {}
    with open(stim / "data-raw" / "raw_3dsk_info.csv", newline="") as f:
        for row in csv.DictReader(f):  # one row per rating: the face's columns repeat
            seen.setdefault(row["face_id"], (row["face_gender"], float(row["face_age"])))
    for face_id, (gender, age) in sorted(seen.items()):
        out.append(Face("3dsk", stim / "inst" / "3dsk" / gender / f"{face_id}.jpg", gender, age))
    missing = [f.file for f in out if not f.file.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} photos missing from {stim}, e.g. {missing[0]} "
                                f"(a checkout of {SOURCE_REPO} at {SOURCE_COMMIT[:10]}?)")
    return out


def wrong_gender_share(replacer: FaceReplacer, candidates: np.ndarray, gender: str) -> float:
    """Expected share of the face's picks that are an average of the other gender only."""
    faces = replacer.bank.faces
    return float(np.mean([bool(faces[i].genders) and gender not in faces[i].genders
                          for i in candidates]))


def measure(faces: list[Face], sizes: list[int | None], estimator: AppearanceEstimator
            ) -> list[dict]:
    """One row per (set, size): the figures of the module docstring."""
    model = _face_model()
    replacer = FaceReplacer(estimator=estimator)
    acc: dict[tuple[str, int | None], list[dict]] = {}
    for face in faces:
        img0 = cv2.imread(str(face.file), cv2.IMREAD_COLOR)
        lm0 = detect_landmarks(img0, model)
        if lm0 is None:
            print(f"  no face found in {face.file.name}; left out", file=sys.stderr)
            continue
        width0 = float(np.linalg.norm(lm0[1] - lm0[0])) * CROP_WIDTH_EYES
        for size in sizes:
            f = 1.0 if size is None else size / width0
            img = img0 if size is None else cv2.imdecode(cv2.imencode(
                ".jpg", cv2.resize(img0, None, fx=f, fy=f, interpolation=cv2.INTER_AREA),
                [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1], cv2.IMREAD_COLOR)
            acc.setdefault((face.set, size), []).append(
                _face_row(img, lm0 * f, face.gender, face.age, estimator, replacer))
    return [_summary(name, size, rs) for (name, size), rs in
            sorted(acc.items(), key=lambda kv: (SETS.index(kv[0][0]), -(kv[0][1] or 10_000)))]


def _face_model():  # noqa: ANN202 - a CenterFace model (vlm_node.anonymize.faces)
    """The anonymizer's CenterFace, whose landmarks both measurements crop by."""
    from vlm_node.anonymize.faces import load_face_model
    from vlm_node.anonymize.runtime import Runtime

    return load_face_model("centerface", "", Runtime(), 0.3)


def _face_row(img: np.ndarray, lm: np.ndarray, gender: str, age: float | None,
              estimator: AppearanceEstimator, replacer: FaceReplacer) -> dict:
    """One face's reading and picks: the network's answer on its crop, and the expected share
    of other-gender averages by tone alone and by the shipped pick (which gets the reading only
    where `estimate` would give it, i.e. for a face of MIN_FACE_PX or more)."""
    look = estimator.read(crop(img, lm))
    usable = look if big_enough(lm) else None  # what `estimate` gives the pick
    # the detector's box width for the face, from the landmarks (appearance.crop's frame)
    side = float(np.linalg.norm(lm[1] - lm[0])) * CROP_WIDTH_EYES
    h, w = img.shape[:2]
    c = lm.mean(0)
    box = Box(c[0] - side / 2, c[1] - side * 0.6, side, side * 1.3).clipped(w, h)
    rows, cols = box.int_slices(w, h)
    tone = replacer.tone(img, rows, cols, lm)
    return {"right": (look.male >= 0.5) == (gender == "male"),
            "sure": look.gender is not None,
            "sure_right": look.gender == gender,
            "age_error": None if age is None else abs(look.age - age),
            "wrong_tone": wrong_gender_share(replacer, replacer.candidates(tone), gender),
            "wrong_pick": wrong_gender_share(replacer, replacer.candidates(tone, usable), gender)}


def _summary(name: str, size: int | str | None, rs: list[dict]) -> dict:
    """The figures of the module docstring over the rows `rs` of one set and size."""
    sure = [r for r in rs if r["sure"]]
    ages = [r["age_error"] for r in rs if r["age_error"] is not None]
    return {"set": name, "size": size, "faces": len(rs),
            "gender_accuracy": float(np.mean([r["right"] for r in rs])),
            "sure_share": len(sure) / len(rs),
            "sure_accuracy": float(np.mean([r["sure_right"] for r in sure])) if sure else None,
            "age_mae": float(np.mean(ages)) if ages else None,
            "other_gender_average_tone_only": float(np.mean([r["wrong_tone"] for r in rs])),
            "other_gender_average_shipped": float(np.mean([r["wrong_pick"] for r in rs]))}


def read_labelled(path: Path) -> list[tuple[Path, Box, str, float | None]]:
    """(photo, face box, gender, age or None) of a `--faces` file; ValueError when it is not
    one."""
    data = json.loads(Path(path).read_text())
    entries = data.get("faces") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a JSON object with a non-empty 'faces' list")
    out = []
    for i, e in enumerate(entries):
        try:
            gender = e["gender"]
            if gender not in ("male", "female"):
                raise ValueError(f"gender must be 'male' or 'female', not {gender!r}")
            x, y, w, h = (float(v) for v in e["box"])
            photo = Path(path).parent / e["file"]
            age = None if e.get("age") is None else float(e["age"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: face {i}: {exc}") from exc
        if not photo.is_file():
            raise ValueError(f"{path}: face {i}: no photo {photo}")
        out.append((photo, Box(x, y, w, h), gender, age))
    return out


def measure_labelled(entries: list[tuple[Path, Box, str, float | None]], name: str,
                     estimator: AppearanceEstimator) -> tuple[list[dict], dict[str, int]]:
    """Rows by FACE_BUCKETS and one for all faces, at the photos' own size; and the counts of
    faces left out (no detection to give landmarks, or under MIN_FACE_PX)."""
    from vlm_node.anonymize.multiscale import View, run_view

    model = _face_model()
    replacer = FaceReplacer(estimator=estimator)
    left_out = {"not_detected": 0, "too_small": 0}
    rows: list[tuple[float, dict]] = []
    by_photo: dict[Path, list[tuple[Box, str, float | None]]] = {}
    for photo, box, gender, age in entries:
        by_photo.setdefault(photo, []).append((box, gender, age))
    for photo, faces in by_photo.items():
        img = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{photo}: not an image OpenCV can read")
        h, w = img.shape[:2]
        dets = run_view(model, img, View(0, 0, w, h, min(1.0, DETECT_MAX_SIDE / max(w, h))), 0.3)
        found = [Box(float(x1), float(y1), float(x2 - x1), float(y2 - y1))
                 for x1, y1, x2, y2 in dets.boxes[:, :4]]
        for box, gender, age in faces:
            ious = [box.iou(d) for d in found]
            if not ious or max(ious) < MATCH_IOU:
                left_out["not_detected"] += 1
                continue
            lm = dets.points[int(np.argmax(ious))].astype(np.float64)
            if not big_enough(lm):
                left_out["too_small"] += 1
                continue
            row = _face_row(img, lm, gender, age, estimator, replacer)
            rows.append((min(box.w, box.h), row))
    out = [_summary(name, f"<{hi}" if lo == 0 else f"{lo}-{hi - 1}" if hi < 100_000 else
                    f">={lo}",
                    [r for side, r in rows if lo <= side < hi])
           for lo, hi in FACE_BUCKETS if any(lo <= side < hi for side, _ in rows)]
    if rows:
        out.append(_summary(name, "all", [r for _, r in rows]))
    return out, left_out


def main(argv: list[str] | None = None) -> int:
    ap = stim_parser("vlm_node.tools.face_appearance", __doc__, required=False)
    ap.add_argument("--faces", type=Path, metavar="FACES.json",
                    help="measure faces in photos of your own instead, at their own size: "
                         "a JSON object {\"faces\": [{\"file\": photo (relative to the "
                         "JSON's folder), \"box\": [x, y, w, h], \"gender\": \"male\" or "
                         "\"female\" (as the face is seen), \"age\": years (optional)}]}")
    ap.add_argument("--sizes", default="native,96,64,48,32,24",
                    help="with --stim: face box widths in px to shrink the photos to "
                         "('native' = as is)")
    ap.add_argument("--sets", default=",".join(SETS), help="with --stim, comma-separated: " +
                    ", ".join(SETS))
    ap.add_argument("--json", type=Path, help="write the rows to this file")
    args = ap.parse_args(argv)
    if (args.stim is None) == (args.faces is None):
        ap.error("give one of --stim (the source sets) and --faces (faces of your own)")
    if args.faces is not None:
        try:
            rows, left_out = measure_labelled(read_labelled(args.faces), args.faces.stem,
                                              AppearanceEstimator())
        except (OSError, ValueError) as exc:
            ap.error(str(exc))
        print(f"left out: {left_out['not_detected']} faces no detection matched (IoU >= "
              f"{MATCH_IOU}), {left_out['too_small']} under the network's size gate")
    else:
        try:
            sizes = [None if s == "native" else int(s) for s in args.sizes.split(",") if s]
        except ValueError:
            ap.error(f"--sizes: integers or 'native', not {args.sizes!r}")
        wanted = [s for s in args.sets.split(",") if s]
        if set(wanted) - set(SETS):
            ap.error(f"--sets: unknown {sorted(set(wanted) - set(SETS))}; choose from {SETS}")
        try:
            faces = [f for f in read_faces(args.stim) if f.set in wanted]
        except FileNotFoundError as exc:
            ap.error(str(exc))
        rows = measure(faces, sizes, AppearanceEstimator())
        print(f"development sets: {', '.join(DEVELOPMENT)}")
    print(f"gender sure = P >= {GENDER_CONFIDENCE}")
    print(f"{'set':15s} {'face px':>7s} {'n':>4s}  gender right  sure (right)   age MAE  "
          f"other-gender average: tone only -> shipped")
    for r in rows:
        sure = "-" if r["sure_accuracy"] is None else f"{r['sure_accuracy']:.2f}"
        mae = "-" if r["age_mae"] is None else f"{r['age_mae']:.1f}"
        print(f"{r['set']:15s} {r['size'] or 'native':>7} {r['faces']:4d}  "
              f"{r['gender_accuracy']:12.2f}  {r['sure_share']:.2f} ({sure})  {mae:>7s}  "
              f"{r['other_gender_average_tone_only']:.2f} -> "
              f"{r['other_gender_average_shipped']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
