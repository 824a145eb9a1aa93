"""Build the face bank of the `replace` redaction mode from licensed, consented face photos.

    git clone https://github.com/debruine/webmorphR.stim STIM
    git -C STIM checkout fa8b78fda2d659bb74ce62fcd99c4407551d2a77
    python -m vlm_node.tools.build_face_bank --stim STIM [--output vlm_node/assets/face_bank]

Sources (both CC BY 4.0, every sitter consented to research use and publication of altered
images): the Face Research Lab London Set (DeBruine & Jones 2017; 102 adults, self-reported
age, gender and ethnicity; `inst/neutral_front/`, `data-raw/london_info.csv`) and the Canada
set of young adult White faces (DeBruine & Jones 2017; 40 students; `inst/canada/`,
`data-raw/canada_info.csv`), as packaged in debruine/webmorphR.stim.

Each photo's five landmarks come from the anonymizer's own CenterFace, so the bank's template is
in the landmark convention the `replace` mode warps from at run time. Faces are aligned to the
template by a similarity transform and sorted into appearance groups by the sources' metadata:
self-reported ethnicity x gender x age band, a split only made when every part keeps at least
k people, and groups of 2k or more give several disjoint averages (variety in a crowd). The
skin tone measured on the photos (the cheeks' ITA angle) was tried as the grouping first and
mixed groups badly (the two source sets' lighting differs); each average keeps its members'
mean tone, read against each photo's white point as at run time, for the run-time pick. Each
average is the pixel mean of its k or more aligned members (k-Same). With dlib installed, each
average's embedding distance to every member is recorded (an average must match none of them:
> 0.6).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from vlm_node.anonymize.face_replace import (BANK_DIR, align, ita_degrees, skin_tone,
                                             white_level)

SOURCE_REPO = "debruine/webmorphR.stim"
SOURCE_COMMIT = "fa8b78fda2d659bb74ce62fcd99c4407551d2a77"
SIZE = (144, 176)  # bank picture (w, h): the redaction ellipse of a CenterFace box fits in it
EYE_DISTANCE = 48.0
EYES = ((48.0, 72.0), (96.0, 72.0))
AGE_BANDS = (("under30", 0, 30), ("30plus", 30, 200))


@dataclass
class Sitter:
    source: str  # "london" or "canada"
    face_id: str
    file: Path
    age: int | None  # None: not reported
    gender: str
    ethnicity: str
    landmarks: np.ndarray | None = None
    aligned: np.ndarray | None = None
    ita: float = 0.0


def read_sitters(stim: Path) -> list[Sitter]:
    out = []
    with open(stim / "data-raw" / "london_info.csv", newline="") as f:
        for row in csv.DictReader(f):
            out.append(Sitter("london", row["face_id"],
                              stim / "inst" / "neutral_front" / f"{row['face_id']}_03.jpg",
                              _age(row["face_age"]), row["face_gender"], row["face_eth"]))
    with open(stim / "data-raw" / "canada_info.csv", newline="") as f:
        for row in csv.DictReader(f):
            out.append(Sitter("canada", row["face_id"], stim / "inst" / "canada" /
                              f"{row['face_id']}.jpg", int(row["face_age"]),
                              row["face_gender"], "white"))
    missing = [s.file for s in out if not s.file.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} photos missing, e.g. {missing[0]}")
    return out


def _age(text: str) -> int | None:
    return None if text in ("", "NA") else int(text)


def detect_landmarks(image: np.ndarray, model) -> np.ndarray | None:  # noqa: ANN001
    """Five landmarks of the most confident face (CenterFace, the frame at 640 px)."""
    from vlm_node.anonymize.multiscale import View, run_view

    h, w = image.shape[:2]
    dets = run_view(model, image, View(0, 0, w, h, 640 / max(w, h)), 0.3)
    if not len(dets):
        return None
    return dets.points[int(np.argmax(dets.scores))].astype(np.float64)


def build_template(sitters: list[Sitter]) -> np.ndarray:
    """Eyes fixed at EYES; nose and mouth corners where they fall on average once every face
    is aligned by its eyes."""
    from vlm_node.anonymize.face_replace import apply, similarity

    eyes = np.asarray(EYES)
    pts = [apply(similarity(s.landmarks[:2], eyes), s.landmarks) for s in sitters]
    t = np.mean(pts, axis=0)
    t[:2] = eyes
    return t


def appearance_of(s: Sitter) -> str:
    """The sitter's appearance group: the self-reported ethnicity of the source metadata
    (a mixed `east_asian/white` sitter joins the smaller group, east_asian)."""
    return "east_asian" if s.ethnicity.startswith("east_asian") else s.ethnicity


def age_of(age: int | None) -> str | None:
    if age is None:
        return None
    return next(name for name, lo, hi in AGE_BANDS if lo <= age < hi)


def split(members: list[Sitter], k: int, key: Callable[[Sitter], str | None], names: Sequence[str]
          ) -> list[tuple[str, list[Sitter]]] | None:
    """Split by `key` when every part keeps k people, else None. People whose key is none of
    `names` (age not reported) join the largest part."""
    parts = [(n, [s for s in members if key(s) == n]) for n in names]
    parts = [(n, p) for n, p in parts if p]
    if parts:
        rest = [s for s in members if key(s) not in names]
        max(parts, key=lambda np_: len(np_[1]))[1].extend(rest)
    if len(parts) < 2 or any(len(p) < k for _, p in parts):
        return None
    return parts


def groups(sitters: list[Sitter], k: int) -> list[tuple[str, str, list[Sitter]]]:
    """(appearance group, class name, members) per average: appearance group, then gender,
    then age band, each split made only where every part keeps k people; a part of n >= 2k
    people gives n // k disjoint averages (variety in a crowd)."""
    out: list[tuple[str, str, list[Sitter]]] = []
    for group in sorted({appearance_of(s) for s in sitters}):
        members = [s for s in sitters if appearance_of(s) == group]
        if len(members) < k:
            raise ValueError(f"appearance group {group} has {len(members)} people, fewer "
                             f"than k={k}")
        by_gender = split(members, k, lambda s: s.gender, ("female", "male")) or \
            [("mixed", members)]
        for gender, gm in by_gender:
            by_age = split(gm, k, lambda s: age_of(s.age), [a for a, _, _ in AGE_BANDS]) or \
                [("allages", gm)]
            for age, am in by_age:
                am = sorted(am, key=lambda s: (s.source, s.face_id))
                n = max(1, len(am) // k)
                rng = np.random.default_rng(len(out) + 1)
                order = [am[i] for i in rng.permutation(len(am))]
                for j in range(n):
                    name = f"{group}-{gender}-{age}" + (f"-{j + 1}" if n > 1 else "")
                    out.append((group, name, order[j::n]))
    return out


def stim_parser(module: str, doc: str, required: bool = True) -> argparse.ArgumentParser:
    """The parser of a tool that reads the source photos: `--stim`, the checkout of
    SOURCE_REPO (this tool and `vlm_node.tools.face_appearance`, for which it is one of two
    sources: `required` False)."""
    ap = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n\n")[0])
    ap.add_argument("--stim", type=Path, required=required,
                    help=f"checkout of {SOURCE_REPO} at {SOURCE_COMMIT[:10]}")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = stim_parser("vlm_node.tools.build_face_bank", __doc__)
    ap.add_argument("--output", type=Path, default=BANK_DIR)
    ap.add_argument("--k", type=int, default=10, help="minimum people per average")
    ap.add_argument("--figure", type=Path,
                    help="also write the before / blur / replace picture of the README here "
                         f"(London-set sitters {', '.join(FIGURE_SITTERS)}, each replaced by "
                         f"averages they are not part of)")
    args = ap.parse_args(argv)

    from vlm_node.anonymize.faces import load_face_model
    from vlm_node.anonymize.runtime import Runtime

    # onnxruntime, not the default OpenVINO: its float32 landmarks are the same on every CPU,
    # while OpenVINO computes in bfloat16 where the CPU can, and the averages moved by a few
    # grey levels with it (the shipped bank was built with onnxruntime; rebuilt byte-identical)
    model = load_face_model("centerface", "", Runtime(engine="onnxruntime"), 0.3)
    sitters = read_sitters(args.stim)
    for s in sitters:
        img = cv2.imread(str(s.file), cv2.IMREAD_COLOR)
        s.landmarks = detect_landmarks(img, model)
        if s.landmarks is None:
            print(f"  no face found in {s.file.name}; left out", file=sys.stderr)
    sitters = [s for s in sitters if s.landmarks is not None]
    template = build_template(sitters)
    for s in sitters:
        img = cv2.imread(str(s.file), cv2.IMREAD_COLOR)
        s.aligned = align(img, s.landmarks, template, SIZE)
        s.ita = ita_degrees(skin_tone(cv2.cvtColor(s.aligned, cv2.COLOR_BGR2LAB), template),
                            white_level(img))

    averages = groups(sitters, args.k)
    args.output.mkdir(parents=True, exist_ok=True)
    check = _identity_check()
    entries = []
    for group, name, members in averages:
        assert len(members) >= args.k, name
        avg = np.mean([m.aligned.astype(np.float64) for m in members], axis=0)
        avg8 = np.clip(np.rint(avg), 0, 255).astype(np.uint8)
        file = f"{name}.png"
        cv2.imwrite(str(args.output / file), avg8, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        # the average's tone as run time measures faces: its members' tones, each read
        # against its own photo's white point
        ita = float(np.mean([m.ita for m in members]))
        entry = {"file": file, "group": group, "class": name, "k": len(members),
                 "ita": round(ita, 1),
                 "members": sorted(f"{m.source}/{m.face_id}" for m in members),
                 "genders": {g: sum(m.gender == g for m in members)
                             for g in sorted({m.gender for m in members})},
                 "ages": [min(m.age for m in members if m.age is not None),
                          max(m.age for m in members if m.age is not None)],
                 "ethnicities": {e: sum(m.ethnicity == e for m in members)
                                 for e in sorted({m.ethnicity for m in members})}}
        if check is not None:
            inside = {id(m) for m in members}
            entry["min_distance_to_member"] = round(check(avg8, [m.aligned for m in members],
                                                          template), 3)
            entry["min_distance_to_other_sitter"] = round(check(
                avg8, [s.aligned for s in sitters if id(s) not in inside], template), 3)
        entries.append(entry)
        print(f"{name:28s} k={len(members):3d} ita={ita:6.1f} nearest member "
              f"{entry.get('min_distance_to_member', '-')} other "
              f"{entry.get('min_distance_to_other_sitter', '-')}")
    meta = {"template": np.round(template, 3).tolist(), "size": list(SIZE),
            "landmarks": "image-left eye, image-right eye, nose tip, image-left mouth corner, "
                         "image-right mouth corner (CenterFace order)",
            "source": {"repo": SOURCE_REPO, "commit": SOURCE_COMMIT,
                       "paths": ["inst/neutral_front/*_03.jpg", "inst/canada/*.jpg",
                                 "data-raw/london_info.csv", "data-raw/canada_info.csv"],
                       "licence": "CC BY 4.0"},
            "groups": "self-reported ethnicity, gender and age band of the source metadata; "
                      "`ita` is the members' mean cheek tone (ITA degrees, read against each "
                      "photo's white point), by which the run time picks an average",
            "k_min": args.k, "people": len(sitters), "faces": entries}
    (args.output / "bank.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{len(entries)} averages of {len(sitters)} people -> {args.output}")
    if args.figure:
        figure(args.stim, args.output, args.figure)
    return 0


# London-set sitters of the README picture (CC BY 4.0; consented to illustrate research):
# four appearance groups, women and men
FIGURE_SITTERS = ("030", "042", "064", "090")


def figure(stim: Path, bank_dir: Path, out: Path, side: int = 360) -> None:
    """Original / blur / replace of FIGURE_SITTERS through the anonymizer's own detection and
    `redact()` (the pick by tone, gender and age as at run time), each replaced from a bank
    without the averages the sitter is a member of (the picture must not show a sitter's face
    coming back through an average of them)."""
    from vlm_node.anonymize.anonymizer import Anonymizer
    from vlm_node.anonymize.appearance import shared_estimator
    from vlm_node.anonymize.config import AnonymizerConfig
    from vlm_node.anonymize.face_replace import FaceBank, FaceReplacer, load_bank
    from vlm_node.anonymize.redact import redact, redaction_region

    bank = load_bank(bank_dir)
    meta = json.loads((bank_dir / "bank.json").read_text())
    config = AnonymizerConfig(redaction="replace", plates=False, head_backstop=False)
    anon = Anonymizer(config)
    cols = []
    for sid in FIGURE_SITTERS:
        img = cv2.imread(str(stim / "inst" / "neutral_front" / f"{sid}_03.jpg"))
        # the head and shoulders, as a camera a few metres away would frame them
        h, w = img.shape[:2]
        img = cv2.resize(img[h // 8: h - h // 8, w // 8: w - w // 8], (side, side),
                         interpolation=cv2.INTER_AREA)
        keep = tuple(f for f, e in zip(bank.faces, meta["faces"])
                     if f"london/{sid}" not in e["members"])
        rep = FaceReplacer(FaceBank(bank.template, bank.size, keep),
                           shared_estimator() if config.replace_appearance else None)
        dets = [d for d in anon.detect(img) if d.kind == "face"]
        rows = [img]
        for mode in ("blur", "replace"):
            x = img.copy()
            for k, d in enumerate(dets):
                box, ellipse = redaction_region(d, config.margin, side, side)
                redact(x, box, ellipse, mode, landmarks=d.landmarks, replacer=rep, seed=k + 1)
            rows.append(x)
        cols.append(np.vstack(rows))
    anon.close()
    pic = np.hstack(cols)
    for r, label in enumerate(("original", "blur", "replace")):
        cv2.putText(pic, label, (8, r * side + 26), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                    (255, 255, 255), 3, cv2.LINE_AA)
        cv2.putText(pic, label, (8, r * side + 26), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                    (30, 30, 30), 1, cv2.LINE_AA)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), pic, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"figure -> {out}")


def _identity_check():  # noqa: ANN202
    """With dlib: a function giving an average's smallest embedding distance to its members
    (measured on the aligned pictures, landmarks from the template)."""
    from vlm_node.anonymize import identity

    if identity.available():
        return None

    cache: dict[int, np.ndarray] = {}

    def emb(img: np.ndarray, template: np.ndarray) -> np.ndarray:
        if id(img) not in cache:
            cache[id(img)] = identity.embedding_at(img, template)
        return cache[id(img)]

    def check(avg: np.ndarray, members: list[np.ndarray], template: np.ndarray) -> float:
        ea = identity.embedding_at(avg, template)
        return min(float(np.linalg.norm(ea - emb(m, template))) for m in members)

    return check


if __name__ == "__main__":
    sys.exit(main())
