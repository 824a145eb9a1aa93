"""Measure the gender and age cue of `replace` on labelled faces shrunk to fleet sizes.

    git clone https://github.com/debruine/webmorphR.stim STIM
    git -C STIM checkout fa8b78fda2d659bb74ce62fcd99c4407551d2a77
    python -m vlm_node.tools.face_appearance --stim STIM [--sizes 96,64,48,32,24] [--json F]

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
    from vlm_node.anonymize.faces import load_face_model
    from vlm_node.anonymize.runtime import Runtime

    model = load_face_model("centerface", "", Runtime(), 0.3)
    replacer = FaceReplacer(estimator=estimator)
    acc: dict[tuple[str, int | None], list[dict]] = {}
    for face in faces:
        img0 = cv2.imread(str(face.file), cv2.IMREAD_COLOR)
        lm0 = detect_landmarks(img0, model)
        if lm0 is None:
            print(f"  no face found in {face.file.name}; left out", file=sys.stderr)
            continue
        # the detector's box width for the face, from the landmarks (appearance.crop's frame)
        width0 = float(np.linalg.norm(lm0[1] - lm0[0])) * CROP_WIDTH_EYES
        for size in sizes:
            f = 1.0 if size is None else size / width0
            img = img0 if size is None else cv2.imdecode(cv2.imencode(
                ".jpg", cv2.resize(img0, None, fx=f, fy=f, interpolation=cv2.INTER_AREA),
                [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1], cv2.IMREAD_COLOR)
            lm = lm0 * f
            look = estimator.read(crop(img, lm))
            usable = look if big_enough(lm) else None  # what `estimate` gives the pick
            side = width0 * f
            h, w = img.shape[:2]
            c = lm.mean(0)
            box = Box(c[0] - side / 2, c[1] - side * 0.6, side, side * 1.3).clipped(w, h)
            rows, cols = box.int_slices(w, h)
            tone = replacer.tone(img, rows, cols, lm)
            acc.setdefault((face.set, size), []).append({
                "right": (look.male >= 0.5) == (face.gender == "male"),
                "sure": look.gender is not None,
                "sure_right": look.gender == face.gender,
                "age_error": None if face.age is None else abs(look.age - face.age),
                "wrong_tone": wrong_gender_share(replacer, replacer.candidates(tone),
                                                 face.gender),
                "wrong_pick": wrong_gender_share(replacer, replacer.candidates(tone, usable),
                                                 face.gender)})
    out = []
    for (name, size), rs in sorted(acc.items(), key=lambda kv: (SETS.index(kv[0][0]),
                                                                -(kv[0][1] or 10_000))):
        sure = [r for r in rs if r["sure"]]
        ages = [r["age_error"] for r in rs if r["age_error"] is not None]
        out.append({"set": name, "size": size, "faces": len(rs),
                    "gender_accuracy": float(np.mean([r["right"] for r in rs])),
                    "sure_share": len(sure) / len(rs),
                    "sure_accuracy": float(np.mean([r["sure_right"] for r in sure]))
                    if sure else None,
                    "age_mae": float(np.mean(ages)) if ages else None,
                    "other_gender_average_tone_only": float(np.mean([r["wrong_tone"]
                                                                     for r in rs])),
                    "other_gender_average_shipped": float(np.mean([r["wrong_pick"]
                                                                   for r in rs]))})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = stim_parser("vlm_node.tools.face_appearance", __doc__)
    ap.add_argument("--sizes", default="native,96,64,48,32,24",
                    help="face box widths in px to shrink the photos to ('native' = as is)")
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated: " + ", ".join(SETS))
    ap.add_argument("--json", type=Path, help="write the rows to this file")
    args = ap.parse_args(argv)
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
    print(f"gender sure = P >= {GENDER_CONFIDENCE}; development sets: {', '.join(DEVELOPMENT)}")
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
