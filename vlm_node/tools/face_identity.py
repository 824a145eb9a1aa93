"""Is a redacted face still someone? Re-identification and detectability, per redaction mode.

    python -m vlm_node.tools.face_identity --data-root DATA [--sets shared,wider]
    vlm-node face-identity --data-root DATA

A fixed distance threshold says little: on crowd photos a blurred face can sit 0.41-0.59 from
its own original (under dlib's 0.6) and just as far from everyone else's. So the measure is
re-identification among all faces of a set, as an attacker with the originals would do it:

* **gallery**: every labelled face of at least `--min-size` px that dlib's HOG detector finds
  in the original photo, with its dlib ResNet embedding;
* each face is redacted the way the anonymizer does it (its CenterFace detections and
  landmarks, the configured margin and ellipse, `redact()`), and the redacted face's embedding
  (dlib aligned on the original's box, whether or not a detector would find a face there) is
  compared with every original: **rank-1** = the nearest original is its own. Chance is 1/N.
  Distances to its own original and to the others are printed beside it;
* **detection**: whether dlib's HOG detector (independent of the anonymizer's CenterFace) finds
  a face there, for the originals and after redaction (usefulness: a replaced face should still
  be a face to a detector; a blurred one is not);
* modes: `blur`, `replace`, and `swap`, the positive control: the face of *another real
  person of the set* (a donor) pasted by exactly the `replace` code. Its rank-1 on the donor
  shows the measure would catch an identity that survives the pipeline.
* **sequence**: each large face is shown as `--frames` jittered frames (shift, scale,
  rotation, brightness) to one Anonymizer with carry-over, as a camera would see a person
  walking: rank-1 per frame, and of the frames' mean embedding (the stronger attack of pooling
  a track), and how many different averages the track was given (1 = no flicker).
* **every average** (`--all-averages`): each face replaced by each bank average in turn, so
  that the pick rule is scored by its expected rank-1 hits instead of the luck of one draw,
  with the hits the bare averages explain and the leak given the average (`all_averages`).

Needs dlib (`identity.available()`); measurement only, never at run time. Paths to the data
are arguments, never defaults.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from vlm_node.anonymize import identity
from vlm_node.anonymize.appearance import shared_estimator
from vlm_node.anonymize.face_replace import (MIN_FACE_PX, BankFace, FaceBank, FaceReplacer,
                                             align, load_bank, usable)
from vlm_node.evaluation.labels import load_labels
from vlm_node.geometry import Box

if TYPE_CHECKING:
    from vlm_node.anonymize import Anonymizer, AnonymizerConfig

MODES = ("blur", "replace", "swap")


@dataclass
class Face:
    """One gallery face: where it is, its original embedding, and the anonymizer's detection
    (box and landmarks) that covers it, if any."""

    image: int  # index into the set's images
    box: Box  # dlib's box in the original
    embedding: np.ndarray
    det: object | None = None  # vlm_node.results.Detection


@dataclass
class SetResult:
    name: str
    labelled: int = 0  # labelled faces >= min size
    found_original: int = 0  # of those, found by dlib HOG in the original
    gallery: list[Face] = field(default_factory=list)
    found_crop: int = 0  # gallery faces dlib finds again in the crop the redactions are searched
    rows: dict[str, dict] = field(default_factory=dict)


def load_set(data_root: Path, name: str) -> list[tuple[Path, list[Box] | None]]:
    """(image path, labelled face boxes or None for 'every face dlib finds') of a named set:
    `shared` = the labelled shared face photos and the portraits; `portraits` = the portraits
    alone (a quick check); `wider` = the WIDER FACE training-split dev photos."""
    if name == "portraits":
        portraits = sorted((data_root / "faces" / "face_recognition_examples").glob("*.jpg"))
        return [(p, None) for p in portraits if p.stem != "obama-480p"]
    if name == "shared":
        out: list[tuple[Path, list[Box] | None]] = [
            (label.path, list(label.faces))
            for label in load_labels(data_root / "labels.json", root=data_root) if label.faces]
        portraits = sorted((data_root / "faces" / "face_recognition_examples").glob("*.jpg"))
        # obama-480p is obama.jpg smaller: one person may appear once
        out += [(p, None) for p in portraits if p.stem != "obama-480p"]
        return out
    if name == "wider":
        return [(label.path, list(label.faces or ()))
                for label in load_labels(data_root / "faces_wider_train" / "labels.json",
                                         root=data_root)]
    raise ValueError(f"unknown set {name!r} (shared, portraits, wider)")


def _dlib_boxes(image: np.ndarray) -> list[Box]:
    detector = identity._models()[0]
    rgb = np.ascontiguousarray(image[:, :, ::-1])
    return [Box(r.left(), r.top(), r.width(), r.height()) for r in detector(rgb, 1)]


def _found_near(image: np.ndarray, box: Box) -> bool:
    """dlib HOG finds a face overlapping `box` (IoU > 0.3), searched in a crop around it (the
    same crop for originals and redactions, so the rates compare)."""
    h, w = image.shape[:2]
    crop = box.expanded(0.6).clipped(w, h)
    rows, cols = crop.int_slices(w, h)
    sub = image[rows, cols]
    shifted = box.shifted(-cols.start, -rows.start)
    return any(b.iou(shifted) > 0.3 for b in _dlib_boxes(sub))


def _nearest(dets: list, box: Box):  # noqa: ANN001, ANN202
    best = max(dets, key=lambda d: d.box.iou(box), default=None)
    return best if best is not None and best.box.iou(box) > 0.3 else None


def build_gallery(images: list[np.ndarray], labels: list[list[Box] | None],
                  anonymizer: "Anonymizer", min_size: float, result: SetResult) -> list[list]:
    """Fill result.gallery; returns the anonymizer's detections per image."""
    all_dets = []
    for i, (img, boxes) in enumerate(zip(images, labels)):
        anonymizer.reset()
        dets = [d for d in anonymizer.detect(img) if d.kind == "face"]
        all_dets.append(dets)
        found = _dlib_boxes(img)
        if boxes is None:  # portraits: the faces dlib finds are the labels
            boxes = found
        for lb in boxes:
            if min(lb.w, lb.h) < min_size:
                continue
            result.labelled += 1
            match = max(found, key=lambda b: b.iou(lb), default=None)
            if match is None or match.iou(lb) <= 0.3:
                continue
            result.found_original += 1
            emb = identity.embedding(img, match, find=False)
            result.gallery.append(Face(i, match, emb, _nearest(dets, match)))
    return all_dets


def redact_image(image: np.ndarray, dets: list, mode: str, margin: float,  # noqa: ANN001
                 replacer: FaceReplacer | None, donors: dict[int, FaceReplacer] | None = None,
                 ) -> tuple[np.ndarray, dict[str, int], dict[int, int]]:
    """`image` with every face detection redacted as the anonymizer does (region, ellipse,
    `redact()`, detection k as track k + 1); for `swap`, detection k gets the donor replacer
    donors[k]. Returns the image, the count of what was done per face and the bank average
    each replaced detection got."""
    from vlm_node.anonymize.redact import redact, redaction_region

    if replacer is not None:
        replacer.forget_except(set())  # a new photo: its faces are new tracks
    out = image.copy()
    h, w = out.shape[:2]
    done: dict[str, int] = {}
    for k, det in enumerate(dets):
        box, ellipse = redaction_region(det, margin, w, h)
        if mode == "swap":
            rep = donors.get(k) if donors else None
            what = redact(out, box, ellipse, "replace", landmarks=det.landmarks,
                          replacer=rep) if rep is not None else \
                redact(out, box, ellipse, "blur")
        else:
            what = redact(out, box, ellipse, mode, landmarks=det.landmarks, replacer=replacer,
                          seed=k + 1)
        done[what] = done.get(what, 0) + 1
    picks = replacer.picks() if replacer is not None and mode == "replace" else {}
    return out, done, {k - 1: v for k, v in picks.items()}


def score(result: SetResult, mode: str, redacted: list[np.ndarray], donor_of: dict[int, int],
          done: dict[str, int], used: dict[int, int] | None = None,
          hub: dict[int, np.ndarray] | None = None) -> dict:
    """Rank-1 and distances of the redacted gallery faces. With `used` (gallery face -> bank
    average) and `hub` (bank average -> gallery faces by distance from the bare average), a hit
    whose face the bare average already ranks first or second of all is counted as explained
    by the average alone: that person is among the nearest to the average whoever it is
    pasted on (resemblance, not leakage)."""
    g = result.gallery
    originals = np.stack([f.embedding for f in g])
    own, others, rank1, rank1_donor, found, covered, by_hub = [], [], 0, 0, 0, 0, 0
    hits: list[dict] = []
    ranks: list[float] = []  # share of the other originals nearer than its own (chance 0.5)
    for i, f in enumerate(g):
        if f.det is None:  # not detected by the anonymizer: nothing was redacted there
            continue
        covered += 1
        img = redacted[f.image]
        e = identity.embedding(img, f.box, find=False)
        d = np.linalg.norm(originals - e, axis=1)
        own.append(float(d[i]))
        others.extend(np.delete(d, i).tolist())
        nearest = int(np.argmin(d))
        rank1 += nearest == i
        ranks.append(float((np.delete(d, i) < d[i]).mean()))
        rank_bare = bare_rank(hub, used.get(i) if used else None, i)
        if nearest == i:
            second = float(np.sort(d)[1])
            hits.append({"face": i, "photo": f.image, "px": round(min(f.box.w, f.box.h)),
                         "own": round(float(d[i]), 3), "next": round(second, 3),
                         "average": None if not used else used.get(i),
                         "bare_average_rank": rank_bare})
        if nearest == i and rank_bare is not None and rank_bare <= 1:
            by_hub += 1
        if i in donor_of:
            rank1_donor += nearest == donor_of[i]
        found += _found_near(img, f.box)
    n = max(covered, 1)
    row = {"faces": covered, "rank1_own": rank1 / n,
           "own_rank_mean": float(np.mean(ranks)) if ranks else None,
           "own_distance_median": float(np.median(own)) if own else None,
           "other_distance_median": float(np.median(others)) if others else None,
           "own_below_0.6": float(np.mean(np.array(own) < identity.SAME_PERSON)) if own else None,
           "dlib_found": found / n, "redactions": done, "hits": hits}
    if used is not None:
        row["rank1_hits_explained_by_the_average_alone"] = by_hub
        row["rank1_hits"] = rank1
    if donor_of:
        row["rank1_donor"] = rank1_donor / max(len([i for i in donor_of if g[i].det]), 1)
    return row


def donors_for(result: SetResult, images: list[np.ndarray], all_dets: list[list],
               bank: FaceBank) -> tuple[dict[int, dict[int, FaceReplacer]], dict[int, int]]:
    """For the swap control: each gallery face with landmarks gets the aligned picture of the
    next gallery face from another photo (a derangement over photos), pasted by a one-face
    FaceReplacer. Returns {image: {detection index: replacer}} and {face: donor face}."""
    g = [i for i, f in enumerate(result.gallery)
         if f.det is not None and usable(f.det.landmarks) is None]
    per_image: dict[int, dict[int, FaceReplacer]] = {}
    donor_of: dict[int, int] = {}
    for pos, i in enumerate(g):
        f = result.gallery[i]
        for step in range(1, len(g)):
            j = g[(pos + step) % len(g)]
            if result.gallery[j].image != f.image:
                break
        else:
            continue
        donor = result.gallery[j]
        pic = align(images[donor.image], np.asarray(donor.det.landmarks), bank.template,
                    bank.size)
        rep = FaceReplacer(FaceBank(bank.template, bank.size, (BankFace(pic, "donor", 1, 0.0),)))
        dets = all_dets[f.image]
        k = next(k for k, d in enumerate(dets) if d is f.det)
        per_image.setdefault(f.image, {})[k] = rep
        donor_of[i] = j
    return per_image, donor_of


def average_hubs(result: SetResult, bank: FaceBank) -> dict[int, np.ndarray]:
    """For each bank average, the gallery faces in order of distance from the bare average
    (its aligned picture, no original pixels at all): whom the average resembles before it is
    pasted on anyone."""
    originals = np.stack([f.embedding for f in result.gallery])
    return {k: np.argsort(np.linalg.norm(
        originals - identity.embedding_at(f.image, bank.template), axis=1), kind="stable")
        for k, f in enumerate(bank.faces)}


def bare_rank(hub: dict[int, np.ndarray] | None, average: int | None, face: int) -> int | None:
    """Where `face` stands among the gallery faces nearest to the bare `average` (0 = the
    nearest of all)."""
    if not hub or average is None:
        return None
    return int(np.nonzero(hub[average] == face)[0][0])


def all_averages(result: SetResult, images: list[np.ndarray], margin: float, bank: FaceBank,
                 hub: dict[int, np.ndarray], appearance: bool = True) -> dict:
    """Rank-1 without the luck of the pick: every gallery face `replace` can cover is replaced
    by *every* average of the bank in turn (that face alone, in its photo), so a pick rule is
    scored by its expected hits: the mean over the averages it may give the face (the shipped
    rule: those within TONE_TOLERANCE of the face's tone, one by track id, so uniform over
    tracks). Printed beside it: `uniform` (any average, whatever the face looks like: no
    appearance at all), the hits the bare averages explain (the face is the 1st or 2nd nearest
    of the set to the picture of the average alone), and the leak *given the average*: for
    each average, how many other faces' replacements by it are nearer a face's original than
    its own replacement (0.5 when nothing of the face survives; blur's is the same share over
    blurred faces)."""
    from vlm_node.anonymize.redact import redact, redaction_region

    g = result.gallery
    originals = np.stack([f.embedding for f in g])
    one = [FaceReplacer(FaceBank(bank.template, bank.size, (face,))) for face in bank.faces]
    runtime = FaceReplacer(bank, shared_estimator() if appearance else None)
    rows_, emb, blur_emb, cands, tone_cands = [], [], [], [], []
    for i, f in enumerate(g):
        img = images[f.image]
        h, w = img.shape[:2]
        if f.det is None or usable(f.det.landmarks) is not None:
            continue
        box, ellipse = redaction_region(f.det, margin, w, h)
        if min(box.w, box.h) < MIN_FACE_PX:
            continue
        r, c = box.int_slices(w, h)
        tone = runtime.tone(img, r, c, np.asarray(f.det.landmarks))
        cands.append(runtime.candidates(tone, runtime.look(img, np.asarray(f.det.landmarks))))
        tone_cands.append(runtime.candidates(tone))
        per = []
        for rep in one:
            out = img.copy()
            redact(out, box, ellipse, "replace", landmarks=f.det.landmarks, replacer=rep, seed=1)
            per.append(identity.embedding(out, f.box, find=False))
        out = img.copy()
        redact(out, box, ellipse, "blur")
        blur_emb.append(identity.embedding(out, f.box, find=False))
        rows_.append(i)
        emb.append(per)
    if not rows_:
        return {"faces": 0}
    idx = np.array(rows_)
    E = np.array(emb)  # faces x averages x 128
    dist = np.linalg.norm(E[:, :, None, :] - originals[None, None], axis=3)
    hit = dist.argmin(2) == idx[:, None]  # faces x averages
    bare = np.array([[bare_rank(hub, a, int(i)) for a in range(len(bank.faces))] for i in idx])

    def as_probabilities(candidates: list[np.ndarray]) -> np.ndarray:
        """A pick rule as probabilities: uniform over each face's candidates."""
        p = np.zeros(hit.shape)
        for k, c in enumerate(candidates):
            p[k, c] = 1.0 / len(c)
        return p

    pick = as_probabilities(cands)
    shipped = float((hit * pick).sum())
    own = originals[idx]

    def leak(reps: np.ndarray) -> float:
        d = np.linalg.norm(own[:, None] - reps[None], axis=2)  # original k vs replacement j
        return float(((d < np.diag(d)[:, None]).sum(1) / max(len(idx) - 1, 1)).mean())

    return {"faces": len(idx), "gallery": len(g), "chance_hits": len(idx) / len(g),
            "expected_hits_shipped_pick": shipped,
            "expected_hits_uniform_pick": float(hit.mean(1).sum()),
            "expected_hits_tone_pick": float((hit * as_probabilities(tone_cands)).sum()),
            "appearance": appearance,
            "expected_hits_shipped_pick_per_average": (hit * pick).sum(0).round(3).tolist(),
            "faces_with_one_candidate": int((pick.max(1) == 1.0).sum()),
            "hits_per_average": hit.sum(0).tolist(),
            "hits_the_bare_average_explains": int((hit & (bare <= 1)).sum()),
            "hits_all_pairs": int(hit.sum()),
            "candidates_per_face_mean": float(np.mean([len(c) for c in cands])),
            "leak_share_given_average": float(np.mean([leak(E[:, a]) for a in
                                                       range(E.shape[1])])),
            "leak_share_blur": leak(np.array(blur_emb))}


def jitter_frames(image: np.ndarray, box: Box, frames: int, rng: np.random.Generator
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """`frames` views of the region around `box` (3x its size, 320 px across), each moved,
    scaled (0.9-1.1), turned (+-6 degrees) and lit (0.8-1.2) a little more than the last, as a
    walking person's face changes; returns (frame, the 2x3 map from the original)."""
    cx, cy = box.center
    side = 3.0 * max(box.w, box.h)
    out = []
    for t in range(frames):
        s = 320.0 / side * (1.0 + 0.1 * np.sin(t / 2.0))
        ang = 6.0 * np.sin(t / 3.0)
        m = cv2.getRotationMatrix2D((cx, cy), ang, s)
        m[:, 2] += (160.0 - cx + 12 * np.sin(t / 2.5), 160.0 - cy + 8 * np.cos(t / 3.5))
        frame = cv2.warpAffine(image, m, (320, 320), borderMode=cv2.BORDER_REFLECT)
        gain = 1.0 + 0.2 * np.sin(t / 1.7) + rng.uniform(-0.02, 0.02)
        frame = np.clip(frame.astype(np.float32) * gain, 0, 255).astype(np.uint8)
        out.append((frame, m))
    return out


def sequence_check(result: SetResult, images: list[np.ndarray], config: "AnonymizerConfig",
                   frames: int,
                   min_size: float, mode: str, hub: dict[int, np.ndarray],
                   args_verbose: bool = False) -> dict:
    """Each gallery face of at least `min_size` px as a jittered sequence through one
    Anonymizer (carry-over on): rank-1 of each frame's and of the track's mean embedding among
    all originals of the set, and the number of averages used per track."""
    from vlm_node.anonymize.anonymizer import Anonymizer
    from vlm_node.frames import FrameMeta

    g = result.gallery
    originals = np.stack([f.embedding for f in g])
    rng = np.random.default_rng(0)
    anon = Anonymizer(dataclasses.replace(config, redaction=mode))
    frame_rank1 = frame_n = pooled_rank1 = pooled_by_hub = tracks = target_missed = 0
    target_blurred: dict[str, int] = {}
    own, others, picks_per_track, fallbacks = [], [], [], 0
    for i, f in enumerate(g):
        if min(f.box.w, f.box.h) < min_size:
            continue
        anon.reset()
        replacer = anon._replacer  # the tool looks inside: which averages a track got
        if replacer is not None:
            replacer.forget_except(set())
        before = sum(anon.stats.replace_fallbacks.values())
        embs, used, hits = [], set(), 0
        blurred_before = sum(target_blurred.values())
        for t, (frame, m) in enumerate(jitter_frames(images[f.image], f.box, frames, rng)):
            released = anon.anonymize(FrameMeta("seq", (t + 1) * 100_000_000, "seq"), frame)
            out = released.image
            corners = np.array([[f.box.x, f.box.y], [f.box.x2, f.box.y], [f.box.x, f.box.y2],
                                [f.box.x2, f.box.y2]]) @ m[:, :2].T + m[:, 2]
            (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
            target = Box(x0, y0, x1 - x0, y1 - y0)
            # what the anonymizer did to this face in this frame (other faces in the view do
            # not count)
            cover = _nearest([d for d in released.detections if d.kind == "face"], target)
            if cover is None:
                target_missed += 1
            elif mode == "replace":
                reason = usable(cover.landmarks)
                if reason is None and min(cover.box.w, cover.box.h) < MIN_FACE_PX:
                    reason = "too_small"
                if reason is not None:
                    target_blurred[reason] = target_blurred.get(reason, 0) + 1
            e = identity.embedding(out, target, find=False)
            embs.append(e)
            d = np.linalg.norm(originals - e, axis=1)
            hits += int(np.argmin(d)) == i
            frame_n += 1
            own.append(float(d[i]))
            others.extend(np.delete(d, i).tolist())
            if replacer is not None:
                # the average the track over this face holds (the tool looks inside the
                # tracker: a frame's detections do not carry track ids)
                track = max(anon._carry.tracks, key=lambda tr: tr.box.iou(target), default=None)
                if track is not None and track.box.iou(target) > 0.3 \
                        and track.id in replacer.picks():
                    used.add(replacer.picks()[track.id])
        frame_rank1 += hits
        pooled = np.linalg.norm(originals - np.mean(embs, axis=0), axis=1)
        pooled_rank1 += int(np.argmin(pooled)) == i
        if int(np.argmin(pooled)) == i and len(used) == 1 \
                and (bare_rank(hub, next(iter(used)), i) or 0) <= 1:
            pooled_by_hub += 1
        tracks += 1
        new_fallbacks = sum(anon.stats.replace_fallbacks.values()) - before
        fallbacks += new_fallbacks
        if replacer is not None:
            picks_per_track.append(len(used))
        if args_verbose:
            print(f"    face {i} ({f.box.w:.0f} px): rank-1 own in {hits}/{frames} frames, "
                  f"track mean {'own' if int(np.argmin(pooled)) == i else 'other'}, own "
                  f"distance min {min(own[-frames:]):.3f}, averages {sorted(used)}, its "
                  f"frames blurred {sum(target_blurred.values()) - blurred_before} (faces in "
                  f"view: {new_fallbacks})")
    anon.close()
    return {"tracks": tracks, "frames": frame_n,
            "rank1_own_per_frame": frame_rank1 / max(frame_n, 1),
            "rank1_own_track_mean": pooled_rank1 / max(tracks, 1),
            "track_mean_hits": pooled_rank1,
            "track_mean_hits_explained_by_the_average_alone": pooled_by_hub,
            "own_distance_median": float(np.median(own)) if own else None,
            "other_distance_median": float(np.median(others)) if others else None,
            "averages_per_track_max": max(picks_per_track) if picks_per_track else None,
            "fallback_frames_all_faces": fallbacks,
            "target_frames_blurred": target_blurred, "target_frames_not_covered": target_missed}


def run_set(data_root: Path, name: str, config, args) -> SetResult:  # noqa: ANN001
    from vlm_node.anonymize.anonymizer import Anonymizer

    entries = load_set(data_root, name)
    images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p, _ in entries]
    result = SetResult(name)
    anon = Anonymizer(dataclasses.replace(config, redaction="blur"))
    all_dets = build_gallery(images, [b for _, b in entries], anon, args.min_size, result)
    anon.close()
    bank = load_bank()
    replacer = FaceReplacer(bank)
    donors, donor_of = donors_for(result, images, all_dets, bank)
    hub = average_hubs(result, bank)
    result.found_crop = sum(_found_near(images[f.image], f.box) for f in result.gallery)
    n = len(result.gallery)
    print(f"\n[{name}] {len(images)} photos; labelled faces >= {args.min_size:.0f} px: "
          f"{result.labelled}, found by dlib HOG in the original: {result.found_original} "
          f"({result.found_original / max(result.labelled, 1):.2f}); gallery N = {n}, "
          f"chance rank-1 = {1 / max(n, 1):.3f}; covered by a CenterFace detection: "
          f"{sum(f.det is not None for f in result.gallery)}")
    for mode in args.modes:
        t0 = time.perf_counter()
        redacted, done, per_det = [], {}, []
        for i, img in enumerate(images):
            out, what, picks = redact_image(img, all_dets[i], mode, config.margin, replacer,
                                            donors.get(i) if mode == "swap" else None)
            redacted.append(out)
            per_det.append(picks)
            for k, v in what.items():
                done[k] = done.get(k, 0) + v
        used = None
        if mode == "replace":
            used = {}
            for gi, f in enumerate(result.gallery):
                dets = all_dets[f.image]
                k = next((k for k, d in enumerate(dets) if d is f.det), None)
                if k is not None and k in per_det[f.image]:
                    used[gi] = per_det[f.image][k]
        row = score(result, mode, redacted, donor_of if mode == "swap" else {}, done, used,
                    hub)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        result.rows[mode] = row
        if args.verbose:
            for h in row["hits"]:
                print(f"    hit: {h}")
        extra = f" rank-1 = donor {row['rank1_donor']:.3f}" if "rank1_donor" in row else ""
        if "rank1_hits" in row:
            explained = row["rank1_hits_explained_by_the_average_alone"]
            extra += (f" ({row['rank1_hits']} hits, {explained}"
                      f" of them faces the bare average ranks 1st or 2nd)")
        print(f"  {mode:8s} faces {row['faces']:4d}  rank-1 own {row['rank1_own']:.3f}{extra}  "
              f"distance own {row['own_distance_median']:.3f} / others "
              f"{row['other_distance_median']:.3f} (median), share of others nearer than own "
              f"{row['own_rank_mean']:.2f} (chance 0.5)  own < 0.6: "
              f"{row['own_below_0.6']:.2f}  dlib finds {row['dlib_found']:.2f} "
              f"(originals {result.found_crop / max(n, 1):.2f})  {row['redactions']}")
    if args.all_averages and "replace" in args.modes:
        al = all_averages(result, images, config.margin, bank, hub, config.replace_appearance)
        result.rows["all_averages"] = al
        if al["faces"]:
            print(f"  every face x every average ({al['faces']} faces x {len(bank.faces)}): "
                  f"expected rank-1 hits, shipped pick {al['expected_hits_shipped_pick']:.2f} "
                  f"(mean {al['candidates_per_face_mean']:.1f} candidates), by tone alone "
                  f"{al['expected_hits_tone_pick']:.2f}, any average "
                  f"{al['expected_hits_uniform_pick']:.2f}, chance {al['chance_hits']:.2f}; "
                  f"of {al['hits_all_pairs']} hitting (face, average) pairs "
                  f"{al['hits_the_bare_average_explains']} are faces the bare average ranks "
                  f"1st or 2nd; leak given the average: share of others' replacements nearer "
                  f"than own {al['leak_share_given_average']:.3f} (0.5 = none; blur "
                  f"{al['leak_share_blur']:.3f})")
    if args.frames:
        for mode in ("blur", "replace"):
            if mode not in args.modes:
                continue
            seq = sequence_check(result, images, config, args.frames, args.sequence_min_size,
                                 mode, hub, args.verbose)
            result.rows[f"sequence_{mode}"] = seq
            print(f"  sequence {mode:8s} {seq['tracks']} tracks x {args.frames} frames: "
                  f"rank-1 own per frame {seq['rank1_own_per_frame']:.3f}, of the track's mean "
                  f"embedding {seq['rank1_own_track_mean']:.3f} ({seq['track_mean_hits']} "
                  f"tracks, {seq['track_mean_hits_explained_by_the_average_alone']} of them "
                  f"faces the bare average ranks 1st or 2nd); distance own "
                  f"{seq['own_distance_median']:.3f} / others {seq['other_distance_median']:.3f}"
                  f"; averages per track (max) {seq['averages_per_track_max']}; the tracked "
                  f"face's frames blurred instead {seq['target_frames_blurred']}, not covered "
                  f"{seq['target_frames_not_covered']} (all faces in view blurred instead: "
                  f"{seq['fallback_frames_all_faces']})")
    return result


def cost_table(repeats: int = 40) -> list[dict]:
    """Thread CPU time of `blur` and `replace` on one face scaled to five sizes in a 1080p
    frame (the shipped demo portrait; the landmarks are the anonymizer's), interleaved in one
    process so that a loaded machine slows both alike. Thread time, not wall time: on a shared
    machine wall time measures the neighbours. Beside them, what `replace` adds once per new
    tracked face: the age-gender estimate (process CPU time: OpenVINO may run it on a thread
    of its own; None below its MIN_FACE_PX)."""
    from vlm_node.anonymize.anonymizer import Anonymizer
    from vlm_node.anonymize.config import AnonymizerConfig
    from vlm_node.anonymize.redact import redact
    from vlm_node.paths import ASSETS

    cv2.setNumThreads(1)
    img0 = cv2.imread(str(ASSETS / "photos" / "obama.jpg"), cv2.IMREAD_COLOR)
    anon = Anonymizer(AnonymizerConfig(plates=False, head_backstop=False))
    det = [d for d in anon.detect(img0) if d.kind == "face"][0]
    anon.close()
    rep = FaceReplacer(estimator=shared_estimator())
    rows = []
    for side in (24, 48, 96, 192, 384):
        s = side / det.box.w
        im = cv2.resize(img0, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        frame = np.zeros((1080, 1920, 3), np.uint8)
        h, w = min(im.shape[0], 1080), min(im.shape[1], 1920)
        frame[:h, :w] = im[:h, :w]
        lm = np.asarray(det.landmarks) * s
        box = Box(det.box.x * s, det.box.y * s, det.box.w * s, det.box.h * s
                  ).expanded(0.1).clipped(1920, 1080)
        t: dict[str, list[float]] = {"blur": [], "replace": []}
        for _ in range(repeats):
            for mode in t:
                x = frame.copy()
                t0 = time.thread_time()
                redact(x, box, True, mode, landmarks=lm, replacer=rep, seed=1)
                t[mode].append(time.thread_time() - t0)
        looks = []
        for _ in range(repeats if rep.look(frame, lm) is not None else 0):
            t0 = time.process_time()
            rep.look(frame, lm)
            looks.append(time.process_time() - t0)
        rows.append({"box": [round(box.w), round(box.h)],
                     "blur_ms": round(float(np.median(t["blur"])) * 1e3, 2),
                     "replace_ms": round(float(np.median(t["replace"])) * 1e3, 2),
                     "estimate_ms": round(float(np.median(looks)) * 1e3, 2) if looks
                     else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vlm_node.tools.face_identity",
                                 description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--data-root", type=Path,
                    help="folder holding labels.json, faces/ and faces_wider_train/")
    ap.add_argument("--cost", action="store_true",
                    help="only print the CPU cost of blur and replace per face size (needs "
                         "neither dlib nor data)")
    ap.add_argument("--sets", default="shared,wider",
                    help="comma-separated: shared, wider, portraits (the shared portraits only)")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated: " +
                    ", ".join(MODES))
    ap.add_argument("--min-size", type=float, default=40.0,
                    help="labelled faces smaller than this (short side, px) are left out (dlib "
                         "HOG finds few under 40 px)")
    ap.add_argument("--frames", type=int, default=8,
                    help="frames per face of the sequence check (0 = skip it)")
    ap.add_argument("--sequence-min-size", type=float, default=64.0,
                    help="faces of at least this size are shown as sequences")
    ap.add_argument("--config", action="append", default=[],
                    help="anonymizer configuration file(s) (vlm-node's YAML), as elsewhere")
    ap.add_argument("--json", type=Path, help="write all figures to this file")
    ap.add_argument("--verbose", action="store_true", help="one line per sequence")
    ap.add_argument("--all-averages", action="store_true",
                    help="also replace every face by every bank average: expected rank-1 of "
                         "the pick rule without the luck of the draw, and the leak given the "
                         "average (13x the replace embeddings: WIDER ~10 min more)")


def run(args: argparse.Namespace) -> int:
    if args.cost:
        print("thread CPU time per face in a 1080p frame (median; same process, interleaved)")
        for r in cost_table():
            est = "-" if r["estimate_ms"] is None else f"{r['estimate_ms']:.2f} ms"
            print(f"  face box {r['box'][0]}x{r['box'][1]} px: blur {r['blur_ms']:.2f} ms, "
                  f"replace {r['replace_ms']:.2f} ms; + gender/age estimate once per new "
                  f"track: {est}")
        return 0
    if args.data_root is None:
        print("--data-root is required (or --cost)", file=sys.stderr)
        return 2
    reason = identity.available()
    if reason:
        print(f"face-identity needs dlib: {reason}", file=sys.stderr)
        return 2
    from vlm_node.config import resolve

    args.modes = [m for m in args.modes.split(",") if m]
    unknown = set(args.modes) - set(MODES)
    if unknown:
        print(f"unknown modes {sorted(unknown)}", file=sys.stderr)
        return 2
    # plates play no part in faces; the head backstop's regions have no landmarks (blurred
    # in `replace`, counted), so it stays as configured
    config = dataclasses.replace(resolve(args.config, None).anonymizer, plates=False)
    out = {}
    for name in [s for s in args.sets.split(",") if s]:
        r = run_set(args.data_root, name, config, args)
        out[name] = {"labelled_faces": r.labelled, "found_original": r.found_original,
                     "gallery": len(r.gallery), "found_original_crop": r.found_crop, **r.rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
