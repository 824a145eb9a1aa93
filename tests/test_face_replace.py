"""`replace` redaction: the shipped k-Same face bank, the warp onto landmarks, the per-track pick,
the blur fallback and its count, and (with dlib) that a replaced face is nobody it was while a
real face pasted by the same code is still its owner (the measure can fail)."""
import json

import cv2
import numpy as np
import pytest

from helpers import read_bgr, shared
from vlm_node.anonymize import Anonymizer, AnonymizerConfig, identity
from vlm_node.anonymize.face_replace import (BANK_DIR, BankFace, FaceBank, FaceReplacer, align,
                                             apply, load_bank, similarity, usable)
from vlm_node.anonymize.redact import redact
from vlm_node.frames import FrameMeta
from vlm_node.geometry import Box

CONFIG = AnonymizerConfig(redaction="replace", plates=False, head_backstop=False)


@pytest.fixture(scope="module")
def bank():
    return load_bank()


@pytest.fixture(scope="module")
def obama():
    """The shared portrait and the anonymizer's face detection on it (with landmarks)."""
    img = read_bgr(shared("faces/face_recognition_examples/obama.jpg"))
    anon = Anonymizer(CONFIG)
    faces = [d for d in anon.detect(img) if d.kind == "face"]
    assert len(faces) == 1
    return img, faces[0]


def test_bank_ships_k_same_averages_with_sources(bank):
    meta = json.loads((BANK_DIR / "bank.json").read_text())
    assert meta["source"]["licence"] == "CC BY 4.0"
    assert meta["source"]["commit"] == "fa8b78fda2d659bb74ce62fcd99c4407551d2a77"
    assert (BANK_DIR / "LICENSE_CC-BY-4.0.txt").is_file()
    assert (BANK_DIR / "README.md").is_file()
    assert len(bank.faces) == len(meta["faces"]) == 13
    assert min(f.k for f in bank.faces) >= 10
    for entry in meta["faces"]:
        assert len(entry["members"]) == len(set(entry["members"])) == entry["k"]
    # disjoint: nobody is in two averages
    members = [m for e in meta["faces"] for m in e["members"]]
    assert len(members) == len(set(members)) == meta["people"] == 142
    # several appearance groups, both genders
    assert {e["group"] for e in meta["faces"]} >= {"black", "east_asian", "west_asian", "white"}
    assert {g for e in meta["faces"] for g in e["genders"]} == {"female", "male"}
    assert bank.template.shape == (5, 2)
    assert all(f.image.shape == (bank.size[1], bank.size[0], 3) for f in bank.faces)
    # tones span dark to light skin
    tones = sorted(f.ita for f in bank.faces)
    assert tones[0] < -20 and tones[-1] > 55


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (5, 2))
    ang, s = np.deg2rad(17.0), 1.7
    m = np.array([[s * np.cos(ang), -s * np.sin(ang), 12.0],
                  [s * np.sin(ang), s * np.cos(ang), -7.0]])
    assert np.allclose(similarity(src, apply(m, src)), m, atol=1e-9)


def _corr(a, b, mask):
    a = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).astype(np.float64)[mask]
    b = cv2.cvtColor(b, cv2.COLOR_BGR2GRAY).astype(np.float64)[mask]
    return float(np.corrcoef(a, b)[0, 1])


def test_warp_puts_the_average_on_the_landmarks(bank):
    # a face 2.5x the template's size, turned 10 degrees, somewhere in a grey frame
    ang, s = np.deg2rad(10.0), 2.5
    m = np.array([[s * np.cos(ang), -s * np.sin(ang), 150.0],
                  [s * np.sin(ang), s * np.cos(ang), 60.0]])
    target = apply(m, bank.template)
    frame = np.full((700, 700, 3), 120, np.uint8)
    rep = FaceReplacer(bank)
    rows, cols = slice(40, 640), slice(60, 660)
    out = frame.copy()
    out[rows, cols] = rep.replace(frame, rows, cols, target, track_id=0, index=5)
    # brought back to the template frame, the result is the bank face (up to contrast)
    back = align(out, target, bank.template, bank.size)
    core = bank.core > 0.5
    assert _corr(back, bank.faces[5].image, core) > 0.9
    # the same check with the landmarks 6 px off fails: the test can tell where the face is
    off = align(out, target + 6.0 * s, bank.template, bank.size)
    assert _corr(off, bank.faces[5].image, core) < 0.8


def test_same_track_keeps_its_pick_across_lighting(bank):
    rep = FaceReplacer(bank)
    first = rep.pick(55.0, track_id=7)
    assert all(rep.pick(ita, track_id=7) == first for ita in (-40.0, 0.0, 30.0, 70.0))
    # an untracked face is picked by tone alone: a dark face gets the darkest average
    dark = rep.pick(-35.0, track_id=0)
    assert bank.faces[dark].ita == min(f.ita for f in bank.faces)
    # tracks of similar faces spread over the averages near their tone
    assert len({rep.pick(60.0, track_id=t) for t in range(10, 40)}) >= 3
    rep.forget_except({7})
    assert set(rep.picks()) == {7}


def test_faces_without_usable_landmarks_fall_back_to_blur(obama, bank):
    img, det = obama
    box = det.box.expanded(0.1).clipped(img.shape[1], img.shape[0])
    rep = FaceReplacer(bank)
    a, b = img.copy(), img.copy()
    assert redact(a, box, True, "replace", landmarks=None, replacer=rep) == "blur:no_landmarks"
    redact(b, box, True, "blur")
    assert np.array_equal(a, b)
    lm = np.asarray(det.landmarks)
    turned = lm.copy()
    turned[2, 0] = lm[1, 0] + 5  # nose tip beside the far eye: a head turned sideways
    assert usable(turned) == "turned"
    assert redact(img.copy(), box, True, "replace", landmarks=turned, replacer=rep) \
        == "blur:turned"
    assert usable(lm / 40.0) == "too_small"
    assert usable(lm) is None
    # plates in replace mode get a synthetic plate, not a face
    plate = Box(10, 10, 120, 30)
    c = img.copy()
    assert redact(c, plate, False, "replace", seed=3) == "replace"
    assert not np.array_equal(c[10:40, 10:130], img[10:40, 10:130])


def test_redact_writes_exactly_the_ellipse_of_a_region_inside_a_frame(obama, bank):
    """The result is copied into the region's ellipse in place (a view of the frame): inside
    it every pixel is the replacement, outside it and outside the box the frame is untouched.
    A face larger than WORK_SIDE goes through the reduced working size and comes back at the
    box's size."""
    from vlm_node.anonymize.face_replace import WORK_SIDE
    from vlm_node.anonymize.redact import _ellipse

    img, det = obama
    s = 2.5 * WORK_SIDE / det.box.w
    big = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
    lm = np.asarray(det.landmarks) * s
    box = Box(det.box.x * s, det.box.y * s, det.box.w * s, det.box.h * s
              ).expanded(0.1).clipped(big.shape[1], big.shape[0])
    rows, cols = box.int_slices(big.shape[1], big.shape[0])
    rep = FaceReplacer(bank)
    expected = rep.replace(big, rows, cols, lm, track_id=1)
    assert expected.shape == big[rows, cols].shape
    out = big.copy()
    assert redact(out, box, True, "replace", landmarks=lm, replacer=rep, seed=1) == "replace"
    inside = _ellipse(cols.stop - cols.start, rows.stop - rows.start).astype(bool)
    region = out[rows, cols]
    assert np.array_equal(region[inside], expected[inside])
    assert np.array_equal(region[~inside], big[rows, cols][~inside])
    outside = np.ones(big.shape[:2], bool)
    outside[rows, cols] = False
    assert np.array_equal(out[outside], big[outside])
    assert not np.array_equal(region[inside], big[rows, cols][inside])


def test_anonymizer_replaces_counts_fallbacks_and_does_not_flicker(obama):
    img, det = obama
    assert det.landmarks is not None and len(det.landmarks) == 5
    anon = Anonymizer(CONFIG)
    frames = [anon.anonymize(FrameMeta("c", t, "c"), img.copy())
              for t in (100_000_000, 200_000_000)]
    out1, out2 = (f.image for f in frames)
    assert anon.stats.replace_fallbacks == {}
    box = det.box.expanded(0.1).clipped(img.shape[1], img.shape[0])
    rows, cols = box.int_slices(img.shape[1], img.shape[0])
    # the face was replaced: neither the original nor the blur
    blur = img.copy()
    redact(blur, box, True, "blur")
    diff_orig = np.abs(out1[rows, cols].astype(int) - img[rows, cols]).mean()
    diff_blur = np.abs(out1[rows, cols].astype(int) - blur[rows, cols]).mean()
    assert diff_orig > 8 and diff_blur > 3
    # the same tracked face keeps its average in the next frame: no flicker. The second frame
    # is a cheap one (face_thorough_every 2: a smaller face pass), so its box and landmarks
    # move by a few pixels; each frame is therefore compared with every average rendered
    # through that frame's own detection, in the inner face
    rep = FaceReplacer(load_bank())

    def nearest_average(frame):
        face = next(d for d in frame.detections if d.kind == "face")
        r, c = face.box.expanded(0.1).clipped(img.shape[1], img.shape[0]).int_slices(
            img.shape[1], img.shape[0])
        cy, cx, q = (r.start + r.stop) // 2, (c.start + c.stop) // 2, (r.stop - r.start) // 4
        centre = (slice(cy - q, cy + q), slice(cx - q, cx + q))
        diffs = []
        for k in range(len(rep.bank.faces)):
            x = img.copy()
            x[r, c] = rep.replace(img, r, c, np.asarray(face.landmarks), 0, index=k)
            diffs.append(np.abs(x[centre].astype(int) - frame.image[centre]).mean())
        order = np.argsort(diffs)
        return int(order[0]), diffs[order[0]], diffs[order[1]]

    first, second = nearest_average(frames[0]), nearest_average(frames[1])
    assert first[0] == second[0]  # the same average in both frames
    for k, best, runner_up in (first, second):
        assert best < 1.5 and runner_up > 3 * best  # and each frame is clearly that average
    # outside the redaction ellipse nothing changed
    assert np.array_equal(out1[: max(0, rows.start - 2)], img[: max(0, rows.start - 2)])

    # a face region with no landmarks (what the head backstop and carried boxes give) is
    # blurred and counted
    class NoLandmarks:
        kind, name = "face", "stub"

        def detect(self, frame, config):
            from vlm_node.results import Detection
            return [Detection("face", det.box, 0.9, "stub")]

    anon.detectors = [NoLandmarks()]
    anon.reset()
    out3 = anon.anonymize(FrameMeta("c", 300_000_000, "c"), img.copy()).image
    assert anon.stats.replace_fallbacks == {"no_landmarks": 1}
    assert np.array_equal(out3[rows, cols], blur[rows, cols])
    anon.close()


def test_cost_of_replace_is_close_to_blur(obama, bank):
    """Not a benchmark (the machine is shared): replace costs a bounded multiple of blur on the
    same face, in the same process."""
    import time

    img, det = obama
    box = det.box.expanded(0.1).clipped(img.shape[1], img.shape[0])
    rep = FaceReplacer(bank)
    times = {}
    for mode in ("blur", "replace", "blur", "replace"):
        t = []
        for _ in range(15):
            x = img.copy()
            t0 = time.perf_counter()
            redact(x, box, True, mode, landmarks=np.asarray(det.landmarks), replacer=rep, seed=1)
            t.append(time.perf_counter() - t0)
        times[mode] = float(np.median(t))
    assert times["replace"] < 6 * times["blur"] + 0.003


@pytest.fixture(scope="module")
def dlib_ready():
    reason = identity.available()
    if reason:
        pytest.skip(f"identity test needs dlib: {reason}")


def test_replaced_face_is_nobody_it_was_and_still_a_face(dlib_ready, obama, bank):
    img, det = obama
    biden = read_bgr(shared("faces/face_recognition_examples/biden.jpg"))
    anon = Anonymizer(CONFIG)
    bdet = [d for d in anon.detect(biden) if d.kind == "face"][0]
    anon.close()
    e_obama = identity.embedding(img, det.box, find=True)
    e_biden = identity.embedding(biden, bdet.box, find=True)
    assert e_obama is not None and e_biden is not None
    box = det.box.expanded(0.1).clipped(img.shape[1], img.shape[0])
    lm = np.asarray(det.landmarks)

    replaced = img.copy()
    assert redact(replaced, box, True, "replace", landmarks=lm, replacer=FaceReplacer(bank),
                  seed=1) == "replace"
    e = identity.embedding(replaced, det.box, find=False)
    assert np.linalg.norm(e - e_obama) > identity.SAME_PERSON
    assert identity.detects(replaced, det.box)  # still a face to an independent detector

    # positive control: Biden's own face pasted by the same code stays Biden
    donor = align(biden, np.asarray(bdet.landmarks), bank.template, bank.size)
    swap = FaceReplacer(FaceBank(bank.template, bank.size, (BankFace(donor, "donor", 1, 0.0),)))
    swapped = img.copy()
    redact(swapped, box, True, "replace", landmarks=lm, replacer=swap, seed=1)
    e_swap = identity.embedding(swapped, det.box, find=False)
    assert np.linalg.norm(e_swap - e_biden) < np.linalg.norm(e_swap - e_obama)
    assert np.linalg.norm(e_swap - e_biden) < identity.SAME_PERSON


def test_a_carried_face_keeps_its_average(obama):
    """A face the detector misses for a frame is carried with its landmarks: it keeps the same
    average face instead of flickering to blur."""
    img, det = obama

    class Flaky:
        kind, name = "face", "stub"
        calls = 0

        def detect(self, frame, config):
            Flaky.calls += 1
            return [det] if Flaky.calls == 1 else []

    anon = Anonymizer(CONFIG)
    anon.detectors = [Flaky()]
    out1 = anon.anonymize(FrameMeta("c", 100_000_000, "c"), img.copy()).image
    out2 = anon.anonymize(FrameMeta("c", 200_000_000, "c"), img.copy())
    assert [d.detector for d in out2.detections] == ["carry:centerface"]
    assert anon.stats.replace_fallbacks == {}
    box = det.box.expanded(0.1).clipped(img.shape[1], img.shape[0])
    rows, cols = box.int_slices(img.shape[1], img.shape[0])
    # the carried box grows (carry_growth), so compare the face's centre
    cy, cx = (rows.start + rows.stop) // 2, (cols.start + cols.stop) // 2
    q = (rows.stop - rows.start) // 4
    centre = (slice(cy - q, cy + q), slice(cx - q, cx + q))
    assert np.abs(out1[centre].astype(int) - out2.image[centre]).mean() < 4
    anon.close()


def test_face_identity_command_on_the_portraits(dlib_ready, tmp_path):
    """The measuring command end to end on the shared portraits (5 faces of two people: too few
    for rank-1 rates to mean anything): blur leaves no face for dlib, replace leaves a face far
    from its own, the swap control is found as its donor, a track keeps one average."""
    from vlm_node.tools import face_identity

    out = tmp_path / "fi.json"
    data = shared("faces").parent
    assert face_identity.main(["--data-root", str(data), "--sets", "portraits", "--frames", "2",
                               "--sequence-min-size", "150", "--all-averages",
                               "--json", str(out)]) == 0
    res = json.loads(out.read_text())["portraits"]
    assert res["gallery"] >= 4
    assert res["blur"]["dlib_found"] == 0.0
    assert res["replace"]["dlib_found"] >= 0.75
    assert res["replace"]["own_distance_median"] > identity.SAME_PERSON
    assert res["swap"]["rank1_donor"] == 1.0
    seq = res["sequence_replace"]
    assert seq["tracks"] >= 2 and seq["averages_per_track_max"] == 1
    # every face by every average: 13 rank-1 outcomes per face, the pick rule's expectation
    # among them, and the leak shares are shares
    al = res["all_averages"]
    assert 4 <= al["faces"] <= res["gallery"]
    assert len(al["hits_per_average"]) == 13
    assert al["hits_all_pairs"] == sum(al["hits_per_average"])
    assert 0 <= al["expected_hits_shipped_pick"] <= al["faces"]
    assert sum(al["expected_hits_shipped_pick_per_average"]) == pytest.approx(
        al["expected_hits_shipped_pick"], abs=0.01)
    assert 0 <= al["faces_with_one_candidate"] <= al["faces"]
    assert 0 <= al["expected_hits_uniform_pick"] <= al["faces"]
    assert 1 <= al["candidates_per_face_mean"] <= 13
    assert 0 <= al["leak_share_given_average"] <= 1 and 0 <= al["leak_share_blur"] <= 1
