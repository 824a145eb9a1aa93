"""The shipped sign classifier (GTSRB CNN, ONNX) on real GTSRB crops, real non-sign crops and a
real road photo; the GTSRB -> vocabulary table; OCR's second opinion; the training tool."""
import json

import cv2
import numpy as np
import pytest

from helpers import gtsrb_kaggle_layout, gtsrb_sample, read_bgr, shared
from vlm_node import vocab
from vlm_node.analysis.gtsrb import (BACKGROUND, CLASSIFIER_LABELS, NUM_GTSRB, SPEED_LIMIT_IDS,
                                     gtsrb_class)
from vlm_node.analysis.ocr_backend import OcrBackend, ocr_only, second_opinion
from vlm_node.analysis.sign_classifier import DEFAULT_MODEL, SignClassifier, crop_box
from vlm_node.geometry import Box
from vlm_node.results import SignReading

# Crops of gtsrb_train_sample whose tracks the shipped model held out for validation (the list
# is in the model's metadata: `training.val_tracks`); the other sample crops may come from
# tracks the model was trained on.
HELD_OUT_SAMPLE = [
    "00000_00002_00029.png", "00000_00002_00015.png", "00000_00002_00001.png",
    "00001_00008_00013.png", "00001_00023_00021.png", "00001_00035_00017.png",
    "00001_00042_00021.png", "00002_00023_00021.png", "00002_00039_00029.png",
    "00003_00029_00013.png", "00003_00041_00013.png", "00004_00055_00021.png",
    "00005_00006_00013.png", "00005_00016_00029.png", "00005_00048_00029.png",
    "00005_00051_00021.png", "00006_00004_00029.png", "00007_00002_00021.png",
    "00007_00025_00029.png", "00008_00024_00029.png", "00008_00031_00025.png",
    "00008_00041_00013.png", "00009_00003_00021.png", "00010_00000_00029.png",
    "00011_00018_00025.png", "00012_00036_00029.png", "00013_00030_00025.png",
    "00014_00004_00025.png", "00015_00006_00021.png", "00016_00000_00029.png",
    "00017_00000_00029.png", "00018_00012_00021.png", "00019_00003_00029.png",
    "00020_00003_00029.png", "00021_00000_00029.png", "00022_00002_00029.png",
    "00023_00008_00029.png", "00025_00010_00017.png", "00026_00006_00021.png",
    "00027_00004_00029.png", "00028_00005_00029.png", "00029_00006_00029.png",
    "00030_00004_00029.png", "00031_00008_00021.png", "00032_00004_00029.png",
    "00033_00007_00021.png", "00034_00002_00029.png", "00035_00010_00029.png",
    "00036_00000_00029.png", "00037_00004_00029.png", "00038_00000_00029.png",
    "00039_00002_00029.png", "00040_00000_00029.png", "00041_00001_00029.png",
    "00042_00005_00029.png",
]


@pytest.fixture(scope="module")
def clf():
    return SignClassifier()


def _rgb(path):
    return cv2.cvtColor(read_bgr(path), cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- the table
def test_every_gtsrb_class_maps_into_the_message_vocabulary():
    assert NUM_GTSRB == 43 and len(CLASSIFIER_LABELS) == 44
    assert CLASSIFIER_LABELS[-1] == BACKGROUND
    for cid in range(43):
        c = gtsrb_class(cid)
        assert c.class_id == cid and c.sign_class in vocab.SIGN_CLASSES
        if c.value is not None:
            rule = vocab.VALUE_RULES[c.sign_class]
            assert c.unit in rule[0] and rule[1] <= c.value <= rule[2]
    assert {gtsrb_class(i).value for i in SPEED_LIMIT_IDS} == {20, 30, 50, 60, 70, 80, 100, 120}
    assert gtsrb_class(6).sign_class == "end_speed_limit" and gtsrb_class(6).value == 80
    assert [gtsrb_class(i).sign_class for i in (13, 14, 17, 12)] == \
        ["yield", "stop", "no_entry", "priority_road"]
    with pytest.raises(ValueError):
        gtsrb_class(43)


def test_the_labels_of_the_real_photo_set_use_the_same_class_names():
    labels = json.loads(shared("signs_real_dev/labels.json").read_text())
    for image in labels["images"]:
        for sign in image["signs"]:
            if sign.get("gtsrb_class_id") is not None:
                c = gtsrb_class(sign["gtsrb_class_id"])
                assert c.sign_class == sign["class"]
                if sign.get("value") is not None:
                    assert c.value == sign["value"]


# --------------------------------------------------------------------------- the model
def test_shipped_model_loads_with_its_calibration(clf):
    assert DEFAULT_MODEL.is_file() and DEFAULT_MODEL.stat().st_size < 4_000_000
    assert clf.info.labels == CLASSIFIER_LABELS
    assert 0.3 <= clf.info.min_probability < 1.0 and 0.2 < clf.info.temperature < 10
    assert len(clf.info.extra["val_tracks"]) >= 43  # at least one held-out track per class
    probs = clf.probabilities(np.zeros((2, 3, 32, 32), np.float32))
    assert probs.shape == (2, 44) and np.allclose(probs.sum(1), 1, atol=1e-4)


def test_real_gtsrb_sample_crops_are_classified(clf):
    """All 860 sample crops. 733 of them come from tracks the model trained on (only 127 from
    its held-out tracks), so this is a floor, not a score. Measured: 778 right, 82 rejected
    (below the calibrated threshold: mostly the small, dark far frames), 0 wrong classes."""
    base, rows = gtsrb_sample()
    results = clf.classify_patches([_rgb(base / r["file"]) for r in rows])
    truth = [int(r["class_id"]) for r in rows]
    correct = [r.gtsrb is not None and r.gtsrb.class_id == t for r, t in zip(results, truth)]
    wrong_class = [r.gtsrb is not None and r.gtsrb.class_id != t
                   for r, t in zip(results, truth)]
    assert np.mean(correct) >= 0.88 and sum(wrong_class) <= 2
    speed = [(r, t) for r, t in zip(results, truth) if t in SPEED_LIMIT_IDS]
    wrong = [r for r, t in speed if r.value is not None and r.value != gtsrb_class(t).value]
    assert wrong == []


def test_held_out_list_is_held_out(clf):
    held = set(clf.info.extra["val_tracks"])
    for name in HELD_OUT_SAMPLE:
        cls, track = name.split("_")[:2]
        assert f"{int(cls)}_{int(track)}" in held, name


def test_held_out_track_crops_are_classified(clf):
    """Sample crops from tracks the model never trained on. Measured: 50 of 55 right, 5
    rejected (4 background, one speed limit without a value), none wrong."""
    assert HELD_OUT_SAMPLE
    base = shared("gtsrb_train_sample")
    results = clf.classify_patches([_rgb(base / n) for n in HELD_OUT_SAMPLE])
    correct = [r.gtsrb is not None and r.gtsrb.class_id == int(n[:5])
               for r, n in zip(results, HELD_OUT_SAMPLE)]
    assert np.mean(correct) >= 0.9
    for r, n in zip(results, HELD_OUT_SAMPLE):
        if int(n[:5]) in SPEED_LIMIT_IDS and r.value is not None:
            assert r.value == gtsrb_class(int(n[:5])).value, n


def test_non_sign_crops_are_background(clf):
    """Patches of real photos without signs (the face photos, which training never saw)."""
    rng = np.random.default_rng(0)
    patches = []
    for path in sorted(shared("faces").rglob("*.jpg"))[:12]:
        rgb = _rgb(path)
        h, w = rgb.shape[:2]
        for _ in range(20):
            s = int(rng.integers(14, min(120, h, w) - 1))
            x, y = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
            patches.append(rgb[y:y + s, x:x + s])
    results = clf.classify_patches(patches)
    signs = [r for r in results if r.is_sign]
    assert len(patches) >= 200
    assert len(signs) <= 0.02 * len(patches)
    assert not [r for r in signs if r.value is not None]


def test_crop_adds_the_training_margin():
    assert crop_box(Box(10, 10, 20, 20)).to_list() == [8.0, 8.0, 24.0, 24.0]


# --------------------------------------------------------------------------- OCR second opinion
def _reading(value, cls="speed_limit", conf=0.9, source="classifier"):
    return SignReading(cls, conf, source, value=value, unit="km/h" if value else "",
                       box=Box(0, 0, 30, 30))


def test_ocr_disagreeing_on_the_digits_leaves_no_value():
    out = second_opinion(_reading(50), _reading(30, source="ocr"), 0.35)
    assert out.sign_class == "speed_limit" and out.value is None and out.unit == ""
    # another numbered class read on the legend ("7.5 t") also vetoes the speed
    weight = SignReading("weight_limit", 0.8, "ocr", value=7.5, unit="t")
    assert second_opinion(_reading(70), weight, 0.35).value is None


def test_ocr_agreeing_or_silent_keeps_the_classifiers_value():
    assert second_opinion(_reading(50), _reading(50, source="ocr"), 0.35).value == 50
    assert second_opinion(_reading(50), None, 0.35).value == 50
    # an OCR read below its own confidence floor is no opinion
    assert second_opinion(_reading(50), _reading(30, conf=0.2, source="ocr"), 0.35).value == 50


def test_ocr_publishes_alone_only_what_the_classifier_cannot_know():
    assert ocr_only(SignReading("speed_limit", 0.8, "ocr", value=55, unit="mph"))
    assert not ocr_only(SignReading("speed_limit", 0.8, "ocr", value=50, unit="km/h"))
    assert ocr_only(SignReading("weight_limit", 0.8, "ocr", value=7.5, unit="t"))
    assert not ocr_only(SignReading("stop", 0.8, "ocr"))


# --------------------------------------------------------------------------- full frame
def _near(readings, box):
    """The readings whose box overlaps `box` at IoU >= 0.3: the readings of one labelled sign."""
    return [r for r in readings if r.box is not None and r.box.iou(box) >= 0.3]


@pytest.fixture(scope="module")
def backend():
    with OcrBackend() as b:
        yield b


@pytest.fixture(scope="module")
def full_search():
    """The reader with the full colour/shape search on every frame (a 1080p one included:
    `learned_min_side`), for the rules tuned on that search's boxes."""
    from vlm_node.analysis.ocr_config import OcrConfig

    with OcrBackend(OcrConfig(learned_proposals=0)) as b:
        yield b


# Real photos the classifier never trained on (GTSDB >= 00300, andrewmvd): a dark 23 px 80 that
# the colour/shape finder alone missed, a 26 px 120, and a 40 (no GTSRB class: the classifier
# says "a speed limit", OCR gives the number).
FULL_FRAME = [("gtsdb_00314.jpg", 80), ("gtsdb_00382.jpg", 120), ("andrewmvd_road113.jpg", 40)]
# and a 90 the classifier was not sure of (speed-limit classes together >= 0.5, none sure), on
# a red ring the shape finder found: OCR's reading publishes it (source "ocr")
OCR_READ = [("andrewmvd_road404.jpg", 90)]


@pytest.mark.parametrize("file, value", FULL_FRAME)
def test_real_road_photo_speed_limit_is_read(backend, file, value):
    labels = json.loads(shared("signs_real_dev/labels.json").read_text())
    entry = next(i for i in labels["images"] if i["file"].endswith(file))
    box = next(Box.from_list(s["box"]) for s in entry["signs"] if s.get("value") == value)
    readings = backend.read_signs(read_bgr(shared("signs_real_dev") / file))
    hits = _near(readings, box)
    assert hits and hits[0].sign_class == "speed_limit" and hits[0].value == value
    assert hits[0].source == "classifier" and 0 < hits[0].confidence <= 1
    assert all(r.value in (None, value) or r.sign_class != "speed_limit" for r in hits)


@pytest.mark.parametrize("file, value", OCR_READ)
def test_ocr_reads_a_ring_the_classifier_calls_a_speed_limit_of_unknown_value(backend, file,
                                                                              value):
    labels = json.loads(shared("signs_real_dev/labels.json").read_text())
    entry = next(i for i in labels["images"] if i["file"].endswith(file))
    box = next(Box.from_list(s["box"]) for s in entry["signs"] if s.get("value") == value)
    readings = backend.read_signs(read_bgr(shared("signs_real_dev") / file))
    hits = _near(readings, box)
    assert [(r.sign_class, r.value, r.source) for r in hits] == [("speed_limit", value, "ocr")]


# Kaggle tune-half photos of non-German speed signs: a 50 in a dark navy font on a ring the
# shape finder found (OCR read "50", but its glyph count took the 0's broken outline for two
# digits), and 40s and a 100 the shape finder did not find as rings: colour proposals the
# classifier called background while its speed classes together held >= 0.5; OCR reads them.
PROPOSAL_READ = [("andrewmvd_road114.jpg", 50, False), ("andrewmvd_road188.jpg", 40, True),
                 ("andrewmvd_road117.jpg", 100, True)]


@pytest.mark.parametrize("file, value, proposal", PROPOSAL_READ)
def test_ocr_reads_foreign_speed_signs_the_classifier_only_leans_to(
        backend, file, value, proposal):
    from vlm_node.analysis.ocr_config import OcrConfig

    labels = json.loads(shared("signs_real_dev/labels.json").read_text())
    entry = next(i for i in labels["images"] if i["file"].endswith(file))
    box = next(Box.from_list(s["box"]) for s in entry["signs"] if s.get("value") == value)
    bgr = read_bgr(shared("signs_real_dev") / file)
    hits = _near(backend.read_signs(bgr), box)
    assert [(r.sign_class, r.value, r.source) for r in hits] == [("speed_limit", value, "ocr")]
    assert hits[0].confidence <= 1
    if proposal:
        # with the speed-mass gate shut, or no proposal reads allowed, nothing reads them
        # (the rings inside red proposals, read whatever the classifier said, switched off
        # too, and with no proposal reads the rings fitted in the most speed-like ones: they
        # read road117's 100 as well)
        for off in (OcrConfig(ocr_speed_mass=1.0, proposal_ring_reads=0),
                    OcrConfig(speed_proposals=0, proposal_ring_reads=0, ranked_ring_reads=0)):
            with OcrBackend(off) as plain:
                assert not [r for r in plain.read_signs(bgr) if r.box is not None
                            and r.box.iou(box) >= 0.3 and r.value is not None]


# Speed signs whose proposal box is off the sign: the crop through it gives "a speed limit"
# without a sure value; a second look through shifted and scaled boxes reads the value, which
# its new box holds (`value_looks`) though OCR reads nothing (GTSDB development photos, tune
# half). gtsdb_00371's 80 was read this way too while three of the six copies had to agree;
# with five (REFINE_AGREEMENT) it is not; gtsdb_00348's 80 is read, then not held (below).
REFINED = [("gtsdb_00311.jpg", Box(371, 253, 23, 25), 120),
           ("gtsdb_00309.jpg", Box(107, 232, 26, 28), 100)]


@pytest.mark.parametrize("file, box, value", REFINED)
def test_a_second_look_reads_the_value_through_a_misfit_box(backend, file, box, value):
    from vlm_node.analysis.ocr_config import OcrConfig

    bgr = read_bgr(shared("signs_real_dev") / file)
    # (since 2026-12-06 OCR reads the value through the ring fitted inside the classifier's
    # box as well, `fit_rings`: off here, to show what the second look alone does)
    with OcrBackend(OcrConfig(refine_max=0, fit_rings=False)) as plain, \
            OcrBackend(OcrConfig(fit_rings=False)) as looks:
        hits = _near(plain.read_signs(bgr), box)
        assert [(r.sign_class, r.value) for r in hits] == [("speed_limit", None)]
        hits = _near(looks.read_signs(bgr), box)
        found = [(r.sign_class, r.value, r.source) for r in hits]
        assert found == [("speed_limit", value, "classifier")]
        assert hits[0].confidence >= looks._classifier.info.min_probability
    hits = _near(backend.read_signs(bgr), box)
    found = [(r.sign_class, r.value, r.source) for r in hits]
    assert found == [("speed_limit", value, "classifier")]
    assert hits[0].confidence >= backend._classifier.info.min_probability


# The first learned proposer's ten boxes (search image, 960x540) on gtsdb_00397 at 1080p: the
# second lies half on the dusk 70 and half on the sign below. The retrained proposer's boxes
# read the 70 outright, so the case is pinned to the boxes that made it (to 0.01 px: rounded
# to 0.1 px, the crops move enough for the classifier to read the 70 there too).
_FIRST_PROPOSER_397 = ((668.54, 356.44, 26.91, 27.12, 0.535),
                       (669.65, 373.65, 24.70, 24.70, 0.486),
                       (150.75, 370.51, 30.49, 30.97, 0.296),
                       (624.68, 260.23, 18.64, 19.54, 0.235),
                       (72.75, 48.61, 18.50, 18.79, 0.227),
                       (48.23, 264.33, 27.55, 27.34, 0.207),
                       (643.84, 279.60, 20.31, 20.80, 0.199),
                       (384.53, 340.23, 18.93, 19.54, 0.191),
                       (827.10, 343.10, 21.79, 21.79, 0.187),
                       (267.79, 323.79, 12.42, 12.42, 0.163))


def test_ocr_does_not_contradict_the_classifier_value_on_a_speed_proposal(backend, monkeypatch):
    """gtsdb_00397 at 1080p (the learned search, its boxes pinned to the first proposer's): a
    box half on a dusk 70 and half on the sign below fails the paint check, but the classifier
    reads 70 on it at 0.97; OCR's speed-proposal read of the cut legend says 20. The two
    disagree: no value (without the classifier's value on the job, the 20 was published)."""
    import vlm_node.analysis.ocr_backend as ocr_backend
    from vlm_node.analysis.sign_proposer import SignProposer

    monkeypatch.setattr(SignProposer, "propose", lambda self, image, k=10, min_score=0.05: [
        (Box(x, y, w, h), score) for x, y, w, h, score in _FIRST_PROPOSER_397][:k])
    bgr = cv2.resize(read_bgr(shared("signs_real_dev") / "gtsdb_00397.jpg"), (1920, 1080))
    seventy = Box(1336, 706, 52, 50)
    assert not [r for r in _near(backend.read_signs(bgr), seventy) if r.value == 20]
    original = ocr_backend.OcrBackend._speed_proposals

    def unchecked(self, *args, **kwargs):
        jobs = original(self, *args, **kwargs)
        for _, job in jobs:
            job.classifier_value = None
        return jobs

    monkeypatch.setattr(ocr_backend.OcrBackend, "_speed_proposals", unchecked)
    assert [(r.sign_class, r.value) for r in _near(backend.read_signs(bgr), seventy)
            if r.value is not None] == [("speed_limit", 20.0)]


# A value only the second look found, that OCR does not read and its new box does not hold (at
# most two of seven looks at >= 0.9, `value_looks` asks 4): published without it. gtsdb_00348 is
# a real 80 (a loss of the rule at the photos' own size); gtsdb_00423 at 1920x1080 is dusk
# branches against the sky that the second look of the full search read as a 70 at 0.97.
UNHELD = [("gtsdb_00348.jpg", None, Box(571, 314, 24, 24), 80),
          ("gtsdb_00423.jpg", (1920, 1080), Box(207, 632, 25, 30), 70)]


@pytest.mark.parametrize("file, size, box, value", UNHELD)
def test_a_second_look_value_its_box_does_not_hold_is_dropped(full_search, file, size, box,
                                                              value):
    from vlm_node.analysis.ocr_config import OcrConfig

    bgr = read_bgr(shared("signs_real_dev") / file)
    if size is not None:
        bgr = cv2.resize(bgr, size)
    assert not [r for r in _near(full_search.read_signs(bgr), box) if r.value is not None]
    # the rule off: the value is back
    with OcrBackend(OcrConfig(learned_proposals=0, value_looks=0,
                              value_reader_agrees=0.0)) as off:
        assert [(r.sign_class, r.value) for r in _near(off.read_signs(bgr), box)
                if r.value is not None] == [("speed_limit", value)]


def test_a_classifier_value_its_box_does_not_hold_is_dropped(backend):
    """A WIDER crowd photo without signs (development data, 1_Handshaking_..._335): the
    classifier reads two round blurs as "100" at 0.97-0.98, OCR reads no number there, and
    the crops moved about them do not keep it (`value_looks`). With the rule off both values
    are back; a real sign of a GTSDB development photo keeps its value either way."""
    from vlm_node.analysis.ocr_config import OcrConfig

    crowd = read_bgr(shared("faces_wider_train") / "1_Handshaking_Handshaking_1_335.jpg")
    assert not [r for r in backend.read_signs(crowd) if r.value is not None]
    with OcrBackend(OcrConfig(value_looks=0, value_reader_agrees=0.0)) as off:
        values = [(r.sign_class, r.value) for r in off.read_signs(crowd)
                  if r.value is not None]
        assert values == [("speed_limit", 100.0)] * 2
        road = read_bgr(shared("signs_real_dev") / "gtsdb_00311.jpg")
        sign = Box(371, 253, 23, 25)
        for reader in (backend, off):
            assert [r.value for r in _near(reader.read_signs(road), sign)] == [120.0]


def test_a_value_holds_when_most_looks_at_its_box_give_it(backend):
    """`OcrBackend._holds`, the rule behind `value_looks` wherever the classifier's value stands
    without OCR (a check that read nothing or another number, or no check job at all): a blur
    of a crowd photo read as 100 holds in under 4 of 7 looks; gtsdb_00311's 120 in 4 or more; a
    value GTSRB has no class for (OCR's own) and any value with the rule off pass."""
    from vlm_node.analysis.ocr_config import OcrConfig

    def reading(value, box):  # noqa: ANN001, ANN202
        return SignReading("speed_limit", 0.97, "classifier", value=value, unit="km/h", box=box)

    crowd = _rgb(shared("faces_wider_train") / "1_Handshaking_Handshaking_1_335.jpg")
    blur = Box(865, 528, 34, 34)
    road = _rgb(shared("signs_real_dev") / "gtsdb_00311.jpg")
    (read,) = _near(backend.read_signs(road[..., ::-1].copy()), Box(371, 253, 23, 25))
    assert read.value == 120
    sign = read.box  # the box the reader published its 120 on
    clf = backend._classifier  # noqa: SLF001
    assert clf.sure_looks(crowd, blur, 7) < 4 <= clf.sure_looks(road, sign, 8)
    assert not backend._holds(crowd, reading(100.0, blur))  # noqa: SLF001
    assert backend._holds(road, reading(120.0, sign))  # noqa: SLF001
    assert backend._holds(crowd, reading(40.0, blur))  # noqa: SLF001
    with OcrBackend(OcrConfig(value_looks=0, value_reader_agrees=0.0)) as off:
        assert off._holds(crowd, reading(100.0, blur))  # noqa: SLF001


def test_a_classifier_value_the_value_reader_does_not_read_is_dropped(backend):
    """gtsdb_00363 enlarged to 1920x1080 (development photo): the red side of a truck's cab
    beside its window, a 28 x 24 px paint region by a learned box, is read as 30 at 0.93 by the
    classifier and holds in 4 of 7 looks; OCR reads nothing there. The speed-value reader, a
    network trained apart, reads no speed value on any of its three looks (`other` at 0.4-0.6),
    so with `value_reader_agrees` the sign is published without a number; with the rule off
    the 30 is back. The photo's real 120 (OCR reads it too) and gtsdb_00311's second 120, which
    the classifier gives alone and the reader reads at >= 0.99, keep their values."""
    from vlm_node.analysis.ocr_config import OcrConfig

    from vlm_node.analysis.ocr_backend import reader_looks

    assert backend.config.value_reader_agrees == 0.9
    bgr = cv2.resize(read_bgr(shared("signs_real_dev") / "gtsdb_00363.jpg"), (1920, 1080))
    panel, sign = Box(1382, 634, 28, 24), Box(569, 649, 70, 70)
    readings = backend.read_signs(bgr)
    assert [(r.sign_class, r.value) for r in _near(readings, panel)] == [("speed_limit", None)]
    assert [r.value for r in _near(readings, sign)] == [120.0]
    with OcrBackend(OcrConfig(value_reader_agrees=0.0)) as off:
        assert [r.value for r in _near(off.read_signs(bgr), panel)] == [30.0]
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    reads = backend._values.read(rgb, reader_looks(panel))  # noqa: SLF001
    assert all(r.value is None for r in reads)
    road = read_bgr(shared("signs_real_dev") / "gtsdb_00311.jpg")
    (read,) = _near(backend.read_signs(road), Box(778, 232, 21, 24))
    assert read.value == 120.0 and not read.text  # the classifier's alone, OCR read nothing
    assert backend._holds(road[..., ::-1].copy(), read)  # noqa: SLF001


# (photo of the shared Kaggle copies, its labelled sign's box, the value read there as if OCR had
# lost a trailing 0 or read the sign right, whether the guard keeps it)
LOST_ZERO = [("andrewmvd_road114.jpg", Box(254, 32, 65, 70), 5.0, False),    # a real 50
             ("andrewmvd_road117.jpg", Box(224, 32, 65, 71), 10.0, False),   # a real 100
             ("andrewmvd_road173.jpg", Box(55, 93, 81, 83), 5.0, True),      # a real 5
             ("andrewmvd_road102.jpg", Box(37, 38, 206, 207), 10.0, True)]   # a real 10


@pytest.mark.parametrize("file, box, value, kept", LOST_ZERO)
def test_a_5_or_10_the_value_reader_reads_as_50_or_100_loses_its_number(backend, file, box,
                                                                        value, kept):
    """`lost_zero_guard`: a published 5 or 10 km/h on a sign the speed-value reader reads as
    50 or 100 (>= 0.9 on one of its three looks) is left without its number: OCR had lost the
    0 (a placed 26 px 50 read "(5." in the crowd set); real 5s and 10s keep theirs (the reader
    reads 5 and 10 there). The photos' own readings are right either way; with the guard off
    nothing changes."""
    from vlm_node.analysis.ocr_config import OcrConfig

    bgr = read_bgr(shared("signs_real_dev") / file)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    reading = SignReading("speed_limit", 0.9, "ocr", value=value, unit="km/h", box=box)
    (checked,) = backend._lost_zeros(rgb, [reading])  # noqa: SLF001
    assert checked.value == (value if kept else None)
    with OcrBackend(OcrConfig(lost_zero_guard=False)) as off:
        assert [r.value for r in _near(off.read_signs(bgr), box)] == \
            [r.value for r in _near(backend.read_signs(bgr), box)] == \
            [value if kept else 10 * value]


def test_a_dark_sign_without_paint_keeps_a_value_that_holds(backend):
    """gtsdb_00519 at 1920x1080 (development photo): a 100 at night, its rim too dull for the
    paint check, read at 0.999 by the classifier. It is published because the value holds in
    at least `unpainted_value_looks` of seven looks; with the rule off it is dropped."""
    from vlm_node.analysis.ocr_config import OcrConfig

    bgr = cv2.resize(read_bgr(shared("signs_real_dev") / "gtsdb_00519.jpg"), (1920, 1080))
    sign = Box(272, 319, 33, 32).scaled(1920 / 816, 1080 / 480)
    read = _near(backend.read_signs(bgr), sign)
    assert [(r.sign_class, r.value) for r in read] == [("speed_limit", 100.0)]
    assert read[0].confidence >= 0.97
    with OcrBackend(OcrConfig(unpainted_value_looks=0)) as off:
        assert not [r for r in _near(off.read_signs(bgr), sign) if r.value is not None]


# Speed signs whose box is under min_value_px (a proposal on the inner disc of a 15-18 px
# sign): their value is kept only through the grown look (GTSDB development photos, tune and
# check half). Both boxes are 11-14 px: the floor of 14 px they were found under is pinned
# (since the sixteenth session the default of 12 lets gtsdb_00380's 12 x 11 px box read its
# 120 by itself).
GROWN = [("gtsdb_00380.jpg", Box(331, 321, 15, 15), 120),
         ("gtsdb_00444.jpg", Box(583, 343, 18, 18), 100)]


@pytest.mark.parametrize("file, box, value", GROWN)
def test_a_grown_look_keeps_the_value_of_a_small_box(file, box, value):
    from vlm_node.analysis.ocr_config import OcrConfig

    bgr = read_bgr(shared("signs_real_dev") / file)
    # (the proposer's added boxes off: on gtsdb_00444 one boxes the whole 100, which reads by
    # itself)
    with OcrBackend(OcrConfig(min_value_px=14, grown_look=False, learned_adds=False)) as plain:
        hits = _near(plain.read_signs(bgr), box)
    assert [(r.sign_class, r.value) for r in hits] == [("speed_limit", None)]
    assert max(hits[0].box.w, hits[0].box.h) < plain.config.min_value_px
    with OcrBackend(OcrConfig(min_value_px=14)) as grown:
        hits = _near(grown.read_signs(bgr), box)
    assert [(r.sign_class, r.value) for r in hits] == [("speed_limit", value)]
    assert max(hits[0].box.w, hits[0].box.h) >= grown.config.min_value_px


def test_a_12_px_sign_carries_its_value(backend):
    """gtsdb_00420 (development photo): two 60s 14-15 px across, boxed 12 x 11 px by the
    search, which the classifier reads at >= 0.99 and whose value holds in the looks and is
    read by the speed-value reader too. Under the floor of 14 px they were published without
    their number (`min_value_px`, set before `value_looks` and `value_reader_agrees` judged
    the classifier's lone values); at the default 12 px they carry it."""
    from vlm_node.analysis.ocr_config import OcrConfig

    assert backend.config.min_value_px == 12
    bgr = read_bgr(shared("signs_real_dev") / "gtsdb_00420.jpg")
    signs = [Box(497, 327, 12, 11), Box(218, 330, 12, 11)]
    readings = backend.read_signs(bgr)
    assert [[(r.sign_class, r.value) for r in _near(readings, s)] for s in signs] == \
        [[("speed_limit", 60.0)]] * 2
    with OcrBackend(OcrConfig(min_value_px=14)) as floor14:
        readings = floor14.read_signs(bgr)
    assert [[(r.sign_class, r.value) for r in _near(readings, s)] for s in signs] == \
        [[("speed_limit", None)]] * 2


def test_ocr_and_a_grown_look_settle_a_contradicted_value(monkeypatch):
    """gtsdb_00330 (tune half): a 40 px 50 found only as its 31 px inner disc, which the
    classifier reads as a 30 at 0.96; OCR reads 50, so the value was dropped. Through the box
    grown to the whole sign six of seven crops read 50 at >= 0.99 (one shrunk copy says 30):
    the two readers agree and 50 is published. A number OCR reads that the grown look does not
    confirm (here: 80) leaves the sign without a value, as does `grown_look: false` (with the
    proposer's boxes off: `learned_adds` boxes the whole sign, which reads 50 by itself)."""
    from vlm_node.analysis.ocr_config import OcrConfig

    bgr = read_bgr(shared("signs_real_dev") / "gtsdb_00330.jpg")
    sign = Box(630, 188, 40, 41)
    backend = OcrBackend(OcrConfig(learned_adds=False))
    backend.load()
    hits = _near(backend.read_signs(bgr), sign)
    assert [(r.sign_class, r.value, r.unit) for r in hits] == [("speed_limit", 50, "km/h")]
    assert hits[0].text == "50" and hits[0].box.w < 35  # the reading keeps its own box
    with OcrBackend(OcrConfig(grown_look=False, learned_adds=False)) as plain:
        assert [(r.sign_class, r.value) for r in _near(plain.read_signs(bgr), sign)] == \
            [("speed_limit", None)]
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    disc = hits[0].box
    clf = backend._classifier
    assert clf.grown_agrees(rgb, disc, 2, 0.85) is not None  # 50: six of seven
    assert clf.grown_agrees(rgb, disc, 2) is None  # not all seven
    assert clf.grown_agrees(rgb, disc, 5, 0.85) is None  # 80
    import dataclasses

    real = OcrBackend._reading

    def ocr_says_80(self, frame, job):
        out = real(self, frame, job)
        return out if out is None or out.value != 50 else \
            dataclasses.replace(out, value=80.0, text="80")

    monkeypatch.setattr(OcrBackend, "_reading", ocr_says_80)
    try:
        assert [(r.sign_class, r.value) for r in _near(backend.read_signs(bgr), sign)] == \
            [("speed_limit", None)]
    finally:
        backend.close()


def test_speed_limit_ids_are_looked_up_by_value_and_unit():
    from vlm_node.analysis.gtsrb import speed_limit_id

    assert speed_limit_id(50.0, "km/h") == 2 and speed_limit_id(120, "km/h") == 8
    assert speed_limit_id(40.0, "km/h") is None and speed_limit_id(50.0, "mph") is None
    assert speed_limit_id(None, "") is None


# Development photos whose speed limit is proposed only through a box run on past the sign:
# 00322's white face into the sky beside it (wide), 00373's and road410's into what hangs below
# (tall); each is read through an end square of that box, and through nothing else but the
# ring fitted inside that box (`fit_rings`, a second route since 2026-12-06) where it reads.
SQUARED = [("gtsdb_00322.jpg", Box(700, 196, 26, 27), 80),
           ("gtsdb_00373.jpg", Box(98, 310, 20, 19), 70),
           ("andrewmvd_road410.jpg", Box(145, 112, 32, 31), 100)]


@pytest.mark.parametrize("file, box, value", SQUARED)
def test_an_end_square_reads_a_sign_its_region_ran_past(backend, file, box, value):
    from vlm_node.analysis.ocr_config import OcrConfig

    bgr = read_bgr(shared("signs_real_dev") / file)
    with OcrBackend(OcrConfig(square_ends=0, fit_rings=False)) as plain:
        assert not [r for r in plain.read_signs(bgr) if r.box is not None and r.box.iou(box) > 0.1]
    with OcrBackend(OcrConfig(square_ends=0)) as fitted:
        assert all(r.value in (None, value) for r in fitted.read_signs(bgr)
                   if r.box is not None and r.box.iou(box) > 0.1)
    hits = _near(backend.read_signs(bgr), box)
    assert [(r.sign_class, r.value) for r in hits] == [("speed_limit", value)]
    assert hits[0].box.w == pytest.approx(hits[0].box.h)  # the square, not the region
    assert hits[0].box.iou(box) >= 0.6


def test_end_squares_are_the_ends_of_long_boxes_each_once():
    from vlm_node.analysis.sign_candidates import end_squares

    tall, wide, square = Box(10, 20, 20, 30), Box(0, 0, 40, 20), Box(5, 5, 20, 24)
    assert end_squares([tall, wide, square], 1.3) == [
        Box(10, 20, 20, 20), Box(0, 0, 20, 20), Box(20, 0, 20, 20)]
    assert end_squares([tall], 1.6) == [] and end_squares([tall], 0) == []
    # a square already proposed (a stacked pair's split) is not proposed again
    assert end_squares([wide, Box(0, 0, 20, 20)], 1.3) == [Box(20, 0, 20, 20)]
    assert end_squares([tall, Box(10, 20, 20, 20)], 1.3) == []
    # squares smaller than a proposal may be (min_size_px) are not made: a 10 px wide region
    # gave half of a 1080p frame's squares and, on the development photos, one false reading
    thin = Box(0, 0, 10, 30)
    assert end_squares([thin, tall], 1.3, 12) == [Box(10, 20, 20, 20)]
    assert end_squares([thin], 1.3) == [Box(0, 0, 10, 10)]


def test_the_search_makes_no_square_below_the_proposal_size(backend):
    bgr = read_bgr(shared("signs_real_dev") / "gtsdb_00379.jpg")
    found = backend._search(bgr)
    assert found.squares and min(min(b.w, b.h) for b in found.squares) >= \
        backend.config.proposals.min_size_px


def test_end_squares_only_ever_give_speed_limits(backend, monkeypatch):
    """An end square that the classifier calls anything but a speed limit is dropped: on crowd
    photos those were false signs (lettering, faces). Forced here by making every crop a
    confident `stop`: the proposals' own boxes still give stop signs, their squares none."""
    from vlm_node.analysis import sign_classifier as sc

    bgr = read_bgr(shared("signs_real_dev") / "gtsdb_00373.jpg")
    found = backend._search(bgr)
    assert found.squares
    stop = sc.CLASSIFIER_LABELS.index("stop")

    def all_stop(batch):
        p = np.full((len(batch), len(sc.CLASSIFIER_LABELS)), 1e-4, np.float32)
        p[:, stop] = 1.0
        return p

    monkeypatch.setattr(backend._classifier, "probabilities", all_stop)
    stops = [r.box for r in backend.read_signs(bgr) if r.sign_class == "stop"]
    assert stops
    assert not [b for b in stops if any(b.iou(q) > 0.9 for q in found.squares)
                and not any(b.iou(p) > 0.9 for p in found.proposals)]


# Dusk speed limits whose rims keep too little red for a colour region: found only as round
# outlines, and their legends too dark for OCR to read the number the classifier is sure of.
OUTLINED = [("gtsdb_00351.jpg", Box(307, 320, 16, 17), 80),
            ("gtsdb_00360.jpg", Box(619, 290, 27, 27), 120),
            ("gtsdb_00367.jpg", Box(617, 301, 24, 24), 120),
            ("gtsdb_00444.jpg", Box(233, 341, 19, 20), 100)]


@pytest.mark.parametrize("file, box, value", OUTLINED)
def test_a_dusk_outline_keeps_the_classifiers_value(backend, file, box, value):
    from vlm_node.analysis.ocr_config import OcrConfig

    bgr = read_bgr(shared("signs_real_dev") / file)
    hits = _near(backend.read_signs(bgr), box)
    assert [(r.sign_class, r.value, r.source) for r in hits] == \
        [("speed_limit", value, "classifier")]
    with OcrBackend(OcrConfig(outline_needs_ocr=True)) as strict:
        hits = _near(strict.read_signs(bgr), box)
    assert [(r.sign_class, r.value) for r in hits] == [("speed_limit", None)]


def test_people_of_a_frame_are_persons_and_heads():
    from vlm_node.analysis.ocr_backend import on_people, people_of
    from vlm_node.frames import FrameMeta, _release
    from vlm_node.results import Detection, ObjectDetection

    face = Detection("face", Box(100, 80, 20, 24), 0.9)
    plate = Detection("plate", Box(300, 200, 40, 12), 0.9)
    objects = (ObjectDetection("person", 0, 0.8, Box(10, 10, 50, 120)),
               ObjectDetection("car", 2, 0.9, Box(200, 150, 150, 90)))
    frame = _release(FrameMeta("f", 0, "f"), np.zeros((240, 400, 3), np.uint8),
                     (face, plate), 0.0, objects=objects)
    people = people_of(frame)
    assert people == (Box(100, 56, 20, 48), Box(10, 10, 50, 120))
    assert on_people(Box(102, 60, 16, 16), people)  # a hat on the face's head
    assert on_people(Box(40, 100, 30, 30), people)  # half on the person
    assert not on_people(Box(100, 30, 20, 20), people)  # above the head, a sign on a post
    assert not on_people(Box(250, 160, 20, 20), people)  # the car is nobody
    no_pass = _release(FrameMeta("f", 0, "f"), frame.image, (face,), 0.0)
    assert people_of(no_pass) == (Box(100, 56, 20, 48),)


def test_vehicles_of_a_frame_are_sure_cars_trucks_and_buses():
    from vlm_node.analysis.ocr_backend import on_vehicle, vehicles_of
    from vlm_node.frames import FrameMeta, _release
    from vlm_node.results import ObjectDetection

    objects = (ObjectDetection("person", 0, 0.9, Box(10, 10, 50, 120)),
               ObjectDetection("car", 2, 0.8, Box(200, 150, 150, 90)),
               ObjectDetection("truck", 7, 0.7, Box(20, 140, 100, 90)),
               ObjectDetection("bus", 5, 0.4, Box(380, 100, 20, 20)))  # unsure: not one
    frame = _release(FrameMeta("f", 0, "f"), np.zeros((240, 400, 3), np.uint8), (), 0.0,
                     objects=objects)
    vehicles = vehicles_of(frame)
    assert vehicles == (Box(200, 150, 150, 90), Box(20, 140, 100, 90))
    assert on_vehicle(Box(220, 200, 15, 15), vehicles)  # a tail light
    assert not on_vehicle(Box(220, 152, 15, 15), vehicles)  # the top third: a sign behind it
    assert not on_vehicle(Box(190, 200, 20, 20), vehicles)  # half outside
    assert not on_vehicle(Box(230, 180, 40, 40), vehicles)  # 0.27 of the car wide: no part
    no_pass = _release(FrameMeta("f", 0, "f"), frame.image, (), 0.0)
    assert vehicles_of(no_pass) == ()


def test_tail_lights_of_a_car_are_no_speed_limit(backend):
    """gtsdb_00285: the round red tail lights of the car ahead, with their white lamps, are
    read as "speed limit 100" at 0.95-0.98; on the car the anonymizer's object pass finds
    (0.79), the node drops them. `read_frame` passes the frame's vehicles. (Since the
    sixteenth session they lose their number without the car too: the speed-value reader does
    not read 100 there, `value_reader_agrees`; that rule is off for the control.)"""
    from vlm_node.anonymize import Anonymizer, AnonymizerConfig
    from vlm_node.analysis.ocr_backend import vehicles_of
    from vlm_node.analysis.ocr_config import OcrConfig
    from vlm_node.frames import FrameMeta

    bgr = read_bgr(shared("signs_real_dev") / "gtsdb_00285.jpg")
    lights = [Box(410, 316, 14, 16), Box(493, 313, 17, 16)]

    def on_lights(readings):
        return [r.value for r in readings
                if r.box is not None and max(r.box.iou(b) for b in lights) > 0.5]

    assert on_lights(backend.read_signs(bgr)) == [None, None]
    with OcrBackend(OcrConfig(value_reader_agrees=0.0)) as unchecked:
        assert on_lights(unchecked.read_signs(bgr)) == [100, 100]
    car = Box(383, 274, 176, 125)
    assert on_lights(backend.read_signs(bgr, vehicles=(car,))) == []
    frame = Anonymizer(AnonymizerConfig(plates=False)).anonymize(FrameMeta("f", 0, "f"), bgr)
    assert any(v.iou(car) > 0.8 for v in vehicles_of(frame))
    assert on_lights(backend.read_frame(frame)) == []
    (result,) = backend.analyze([frame])
    assert on_lights(result.signs) == []


def test_a_round_outline_on_a_head_is_no_speed_limit(backend):
    """A red hat in a parade (WIDER training photo) is a round outline with a light centre that
    the classifier reads as a 30; the node passes the anonymizer's faces and persons, and an
    outline on them is not classified. (Since the eleventh session the 30 does not hold as the
    crop moves either, `value_looks`: that rule is off for the control.)"""
    from vlm_node.anonymize import Anonymizer, AnonymizerConfig
    from vlm_node.analysis.ocr_backend import OcrConfig, people_of
    from vlm_node.frames import FrameMeta

    bgr = read_bgr(shared("faces_wider_train") / "0_Parade_Parade_0_600.jpg")
    frame = Anonymizer(AnonymizerConfig(plates=False)).anonymize(FrameMeta("f", 0, "f"), bgr)
    hat = Box(935, 67, 35, 35)

    def on_hat(readings, iou):  # noqa: ANN001, ANN202
        return [r.value for r in readings if r.box is not None and r.box.iou(hat) > iou]

    with OcrBackend(OcrConfig(value_looks=0, value_reader_agrees=0.0)) as held_or_not:
        assert on_hat(held_or_not.read_signs(frame.image, frame.text_hints), 0.5) == [30]
        assert not on_hat(held_or_not.read_signs(frame.image, frame.text_hints,
                                                 people_of(frame)), 0.1)
    assert on_hat(backend.read_signs(frame.image, frame.text_hints), 0.5) == [None]
    assert not on_hat(backend.read_signs(frame.image, frame.text_hints, people_of(frame)), 0.1)
    (result,) = backend.analyze([frame])
    assert not [r for r in result.signs if r.box is not None and r.box.iou(hat) > 0.1]


def test_letters_read_on_a_legend_contradict_the_classifiers_number(backend, monkeypatch):
    """2_Demonstration_..._990: protesters hold cards with one letter each; the classifier
    takes the "C" in its ring-like card for a 100 at ~0.95 and OCR reads "C" at 0.88. Two
    readers disagree, so no value is published (the sign-like class may stay, without a
    number); with the rule switched off, the 100 comes back."""
    import vlm_node.analysis.ocr_backend as ob
    from vlm_node.anonymize import Anonymizer, AnonymizerConfig
    from vlm_node.analysis.ocr_backend import people_of
    from vlm_node.frames import FrameMeta

    bgr = read_bgr(shared("faces_wider_train")
                   / "2_Demonstration_Demonstration_Or_Protest_2_990.jpg")
    frame = Anonymizer(AnonymizerConfig(plates=False)).anonymize(FrameMeta("f", 0, "f"), bgr)
    card = Box(697, 460, 41, 48)

    def values():
        return [r.value for r in backend.read_signs(frame.image, frame.text_hints,
                                                    people_of(frame))
                if r.box is not None and r.box.iou(card) > 0.5]

    assert all(v is None for v in values())
    monkeypatch.setattr(ob, "reads_letters", lambda reads: False)
    assert values() == [100]


def test_reads_letters_spares_digit_lookalikes():
    from vlm_node.analysis.sign_text import TextRead, reads_letters

    assert reads_letters([TextRead("C", 0.88)])
    assert reads_letters([TextRead("", 0.0), TextRead("STOP", 0.9)])
    assert not reads_letters([TextRead("C", 0.5)])  # too unsure to contradict anything
    assert not reads_letters([TextRead("SO", 0.9)])  # "50" as PP-OCR misreads it
    assert not reads_letters([TextRead("1O0", 0.9), TextRead("x", 0.2)])
    assert not reads_letters([TextRead("a0", 0.9)])  # a digit: a number, misread
    assert not reads_letters([])


def test_a_grown_look_rejects_a_small_value_on_no_sign(clf):
    """gtsdb_00390: a 12 px box on no sign that the network reads as a 70 at ~0.98; grown, at
    most one of its seven crops says 70."""
    rgb = _rgb(shared("signs_real_dev") / "gtsdb_00390.jpg")
    box = Box(491, 322, 12, 12)
    res = clf.classify(rgb, [box])[0]
    assert (res.sign_class, res.value) == ("speed_limit", 70) and res.probability > 0.9
    assert clf.grown_look(rgb, box, res) is None
    sign = Box(332, 323, 12, 11)  # gtsdb_00380's 120, inner disc
    rgb = _rgb(shared("signs_real_dev") / "gtsdb_00380.jpg")
    res = clf.classify(rgb, [sign])[0]
    assert res.value == 120
    grown = clf.grown_look(rgb, sign, res)
    assert grown is not None and grown.w == pytest.approx(12 * 1.3)
    assert grown.center == pytest.approx(sign.center)


def test_sure_looks_of_many_boxes_in_one_batch_count_as_one_by_one(clf):
    """`sure_looks_many` (one batch for all boxes, as the unpainted-value rule asks) counts
    what `sure_looks` counts box by box: gtsdb_00380's 120 holds in most looks, the same box
    asked for a stop sign in none, a patch of road in none."""
    rgb = _rgb(shared("signs_real_dev") / "gtsdb_00380.jpg")
    sign = Box(332, 323, 12, 11).expanded(0.15)
    road = Box(400, 440, 20, 20)
    boxes, ids = [sign, road, sign], [8, 4, 14]
    many = clf.sure_looks_many(rgb, boxes, ids)
    assert many == [clf.sure_looks(rgb, b, c) for b, c in zip(boxes, ids)]
    assert many[0] >= 5 and many[1] == 0 and many[2] == 0
    assert clf.sure_looks_many(rgb, [], []) == []


def test_a_second_look_on_probabilities_computed_in_parts_answers_the_same(backend):
    """The reader classifies a frame's boxes in two batches (all but the round outlines while
    the outline thread runs, then the outlines) and hands the joined probabilities to
    `classify_refined`: the same boxes and answers as one batch, second looks included."""
    from vlm_node.analysis.sign_classifier import prepare_crops

    clf = backend._classifier
    bgr = read_bgr(shared("signs_real_dev") / "gtsdb_00363.jpg")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    found = backend._search(bgr)
    boxes = found.proposals + found.circles
    assert found.circles and len(boxes) > 20
    k = len(found.proposals)
    parts = np.concatenate([clf.probabilities(prepare_crops(rgb, boxes[:k])),
                            clf.probabilities(prepare_crops(rgb, boxes[k:]))])
    whole_boxes, whole = clf.classify_refined(rgb, boxes, 12)
    part_boxes, part = clf.classify_refined(rgb, boxes, 12, probs=parts)
    assert part_boxes == whole_boxes and part == whole
    assert any(b is not a for a, b in zip(boxes, whole_boxes)), "a second look moved a box"


def test_refine_boxes_shift_and_scale_about_the_centre():
    from vlm_node.analysis.sign_classifier import refine_boxes

    boxes = refine_boxes(Box(100, 100, 20, 20))
    assert len(boxes) == 6
    assert [round(b.w, 1) for b in boxes] == [16.4, 23.6, 20, 20, 20, 20]
    assert [b.center for b in boxes[:2]] == [(110.0, 110.0), (110.0, 110.0)]
    shifted = sorted(b.center for b in boxes[2:])
    assert shifted == [(108.0, 110.0), (110.0, 108.0), (110.0, 112.0), (112.0, 110.0)]


def test_the_search_runs_shrunk_and_answers_in_full_frame_pixels(backend):
    """A 1632x960 frame (gtsdb_00314 doubled) is searched at 960x565; the dark 80's proposal
    comes back in the frame's own pixels, on the sign."""
    bgr = read_bgr(shared("signs_real_dev") / "gtsdb_00314.jpg")
    big = cv2.resize(bgr, (1632, 960), interpolation=cv2.INTER_LINEAR)
    found = backend._search(big)
    proposals, masks, scale = found.proposals, found.masks, found.scale
    assert scale == pytest.approx(960 / 1632)
    assert masks["red"].shape == (565, 960)
    sign = Box(728 * 2, 239 * 2, 21 * 2, 22 * 2)
    assert max(p.iou(sign) for p in proposals) >= 0.5
    assert all(p.x2 <= 1632 + 30 and p.y2 <= 960 + 30 for p in proposals)


def test_a_shrunk_search_proposes_no_region_under_its_floor():
    """`search_min_px`: a 1080p frame is searched at 960x540, where 6-8 px regions are mostly
    texture (hundreds a frame, filling `proposals.max_proposals` smallest first); with the
    default floor of 9 search pixels nothing under 18 px at full size is proposed, while a
    floor of 6 lets 12-17 px regions through. A frame no larger than the search
    (`search_max_side`) is searched whole and keeps the proposals' own 12 px floor."""
    from vlm_node.analysis.ocr_config import OcrConfig

    bgr = read_bgr(shared("signs_real_dev") / "gtsdb_00314.jpg")  # 816x480
    big = cv2.resize(bgr, (1920, 1080), interpolation=cv2.INTER_LINEAR)
    # every proposal (the ranker off): this is about what the search proposes at all
    with OcrBackend(OcrConfig(ranked_proposals=0)) as default, \
            OcrBackend(OcrConfig(search_min_px=6, ranked_proposals=0)) as loose:
        floored, unfloored = default._search(big), loose._search(big)
        native, native_loose = default._search(bgr), loose._search(bgr)
    side = [max(b.w, b.h) for b in floored.proposals]
    loose_side = [max(b.w, b.h) for b in unfloored.proposals]
    assert floored.proposals and min(side) >= 9 / floored.scale - 0.5
    assert sum(1 for s in loose_side if s < 17.5) > 10 and min(loose_side) >= 12
    assert len(floored.proposals) < len(unfloored.proposals)
    # the dark 80 (about 50 px at 1080p) is still proposed
    sign = Box(728 * 1920 / 816, 239 * 1080 / 480, 21 * 1920 / 816, 22 * 1080 / 480)
    assert max(p.iou(sign) for p in floored.proposals) >= 0.5
    assert native.proposals == native_loose.proposals
    assert min(max(b.w, b.h) for b in native.proposals) >= 12


# Sign crops (as GTSRB ships them) the search alone does not read: the sign fills the frame, so
# the finder takes it for too big a region, and the dark ones show no paint.
SIGN_CROPS = [("00002_00023_00021.png", "speed_limit", 50.0),  # 42x43
              ("00004_00024_00013.png", "speed_limit", 70.0),  # 42x41, mean grey 11
              ("00006_00000_00000.png", "end_speed_limit", 80.0),  # 30x29
              ("00010_00052_00029.png", "no_overtaking_trucks", None),  # 82x83, mean grey 10
              ("00014_00013_00029.png", "stop", None),  # 211x216
              ("00033_00012_00029.png", "turn_right", None)]  # 42x44


@pytest.fixture(scope="module")
def crops_off():
    from vlm_node.analysis.ocr_config import OcrConfig

    # round outlines read as round classes would find some crops' grey end-of signs by their
    # outline; off, so that this reader shows what the colour search alone makes of a crop
    # (and no OCR read of proposals: since they are read from 20 px, a crop's 23 px legend is)
    # (and the full search alone: the learned boxes added beside it read some crops)
    with OcrBackend(OcrConfig(whole_frame_px=0, circle_round_classes=False, learned_adds=False,
                              speed_proposals=0)) as b:
        yield b


@pytest.mark.parametrize("file, sign_class, value", SIGN_CROPS)
def test_a_sign_crop_is_read_whole(backend, crops_off, file, sign_class, value):
    bgr = read_bgr(shared("gtsrb_train_sample") / file)
    assert [(r.sign_class, r.value) for r in backend.read_signs(bgr)] == [(sign_class, value)]
    assert not [r for r in crops_off.read_signs(bgr) if r.sign_class == sign_class]


def test_a_sign_crops_value_needs_no_ocr_check(backend, monkeypatch):
    """A value read through a crop's whole frame is the classifier's alone (OCR misreads small,
    colour-fringed legends); in a scene an OCR read of another number drops the value."""
    asked = []

    def ocr_reads_60(bgr, job):
        asked.append(job.cand.box)
        return SignReading("speed_limit", 0.99, "ocr", value=60.0, unit="km/h", box=job.cand.box)

    monkeypatch.setattr(backend, "_reading", ocr_reads_60)
    crop = read_bgr(shared("gtsrb_train_sample") / "00002_00023_00021.png")
    assert [(r.sign_class, r.value) for r in backend.read_signs(crop)] == [("speed_limit", 50.0)]
    assert asked == []
    # the same crop inside a larger frame is no crop (read as 50 with OCR's own reading): OCR's
    # 60 contradicts, the value goes
    scene = cv2.copyMakeBorder(crop, 150, 150, 150, 150, cv2.BORDER_REPLICATE)
    monkeypatch.undo()
    assert [(r.sign_class, r.value) for r in backend.read_signs(scene)] == [("speed_limit", 50.0)]
    monkeypatch.setattr(backend, "_reading", ocr_reads_60)
    assert [(r.sign_class, r.value) for r in backend.read_signs(scene)] == [("speed_limit", None)]
    assert asked


def test_a_speed_family_answer_yields_to_a_value_read_on_the_same_sign(backend):
    from vlm_node.analysis.ocr_backend import values_over_family
    from vlm_node.analysis.sign_classifier import SPEED_FAMILY, SignClass

    family = SignClass(SPEED_FAMILY, 0.99, None)
    eighty = SignClass("speed_limit", 0.95, gtsrb_class(5))
    thirty = SignClass("speed_limit", 0.97, gtsrb_class(1))
    signs = [(Box(100, 100, 30, 30), family), (Box(98, 98, 34, 34), eighty),
             (Box(108, 108, 14, 14), thirty), (Box(300, 100, 30, 30), thirty)]
    scores = [r.probability for _, r in signs]
    # NMS kept the family box (its probability is the speed classes' sum) and the far sign;
    # the 80 on a box as large takes its place, the 30 on the inner disc (0.22 of its area) not
    assert values_over_family(signs, scores, [0, 3], 0.3) == [1, 3]
    assert values_over_family(signs[:1] + signs[2:], scores[:1] + scores[2:], [0, 2], 0.3) \
        == [0, 2]
    # outvoted: two boxes of the sign answer the family, one reads 80 (a small foreign sign's
    # guess): the family stays; a second box reading 80 ties the vote and the value stands
    second_family = (Box(101, 101, 29, 29), family)
    outvoted = signs[:2] + [second_family] + signs[3:]
    assert values_over_family(outvoted, [r.probability for _, r in outvoted], [0, 3], 0.3) \
        == [0, 3]
    tied = outvoted + [(Box(99, 99, 32, 32), eighty)]
    assert values_over_family(tied, [r.probability for _, r in tied], [0, 3], 0.3) == [1, 3]
    # on the development photo the 80 (38 px) is read through the whole sign, not left at
    # "a speed limit" on its inner disc
    bgr = read_bgr(shared("signs_real_dev") / "gtsdb_00371.jpg")
    hits = _near(backend.read_signs(bgr), Box(190, 313, 34, 34))
    assert [(r.sign_class, r.value) for r in hits] == [("speed_limit", 80.0)]


def test_only_a_frame_small_enough_to_be_a_crop_is_classified_whole():
    from vlm_node.analysis.ocr_backend import whole_frame
    from vlm_node.analysis.ocr_config import OcrConfig

    config = OcrConfig()
    assert config.whole_frame_px == 256
    assert whole_frame(50, 40, config) == [Box(5.0, 4.0, 40.0, 32.0)]  # a 10 % margin
    assert whole_frame(256, 100, config)
    assert whole_frame(257, 100, config) == [] and whole_frame(640, 480, config) == []
    assert whole_frame(50, 40, OcrConfig(whole_frame_px=0)) == []


def test_small_patches_without_signs_are_not_read_whole(backend, crops_off):
    """Patches (24-120 px, the sizes of sign crops) of street photos without signs (cars,
    plates, walls, people): the whole-frame box adds no reading to what the search reads."""
    rng = np.random.default_rng(3)
    for i in range(60):
        bgr = read_bgr(shared("plates") / "images" / f"Cars{(2, 21, 36, 41)[i % 4]}.jpg")
        h, w = bgr.shape[:2]
        side = int(rng.integers(24, min(121, h, w)))
        x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
        patch = np.ascontiguousarray(bgr[y:y + side, x:x + side])
        with_box = [(r.sign_class, r.value) for r in backend.read_signs(patch)]
        assert with_box == [(r.sign_class, r.value) for r in crops_off.read_signs(patch)]


def test_the_outline_search_can_run_smaller_and_answers_in_full_frame_pixels(monkeypatch):
    """`circle_max_side`: the Hough pass gets a copy of the search image shrunk to that longer
    side (a cheaper pass for a CPU that cannot afford it), and its outlines come back in the
    frame's own pixels: the dusk 100 of gtsdb_00518 (29 px) is still proposed at 560 px (at
    480 it is lost)."""
    from vlm_node.analysis import ocr_backend
    from vlm_node.analysis.ocr_config import OcrConfig

    seen = []
    real = ocr_backend.find_circles

    def spy(grey, *radii):
        seen.append((grey.shape[:2], radii))
        return real(grey, *radii)

    monkeypatch.setattr(ocr_backend, "find_circles", spy)
    bgr = read_bgr(shared("signs_real_dev") / "gtsdb_00518.jpg")  # 816x480
    sign = Box(271, 316, 29, 29)
    with OcrBackend(OcrConfig(circle_max_side=560)) as small:
        found = small._search(bgr)
    # radii scaled with the copy: 12 px proposals -> 4, 0.085 and 0.35 of its 329 px height
    assert seen == [((329, 560), (4, 28, 115))]
    assert max(c.iou(sign) for c in found.circles) >= 0.5
    seen.clear()
    with OcrBackend(OcrConfig()) as default:  # 0: the search image itself (the frame here)
        default._search(bgr)
    assert seen == [((480, 816), (5, 41, 168))]


def test_the_shape_finder_looks_at_a_large_frame_at_a_smaller_scale(monkeypatch):
    """`finder_scale`: on a frame larger than the search image the shape finder gets a copy
    of it at 0.75 (720x405 for 1080p), and its candidates come back in the frame's own
    pixels: both no-entry signs of gtsdb_00307 (45-47 px at 1080p) are still found with their
    shape-fitted boxes. A frame no larger than the search (the 816x480 photo) is searched by
    the finder at its own size, and `finder_scale: 1` restores the search image."""
    from vlm_node.analysis import ocr_backend
    from vlm_node.analysis.ocr_config import OcrConfig

    seen = []
    real = ocr_backend.find_candidates

    def spy(image, cfg):
        seen.append((image.shape[:2], cfg.min_size_px))
        return real(image, cfg)

    monkeypatch.setattr(ocr_backend, "find_candidates", spy)
    bgr = read_bgr(shared("signs_real_dev") / "gtsdb_00307.jpg")  # 816x480
    big = cv2.resize(bgr, (1920, 1080), interpolation=cv2.INTER_LINEAR)
    signs = [Box(645, 639, 45, 45), Box(1122, 612, 47, 47)]
    with OcrBackend(OcrConfig()) as default, OcrBackend(OcrConfig(finder_scale=1.0)) as whole:
        half = default._search(big)
        assert seen == [((405, 720), 9)]  # the floor: search_min_px of its own pixels
        seen.clear()
        whole._search(big)
        assert seen == [((540, 960), 9)]
        seen.clear()
        default._search(bgr)
        assert seen == [((480, 816), 14)]
    for sign in signs:
        match = max(half.candidates, key=lambda c: c.box.iou(sign))
        assert match.box.iou(sign) >= 0.6 and match.found_by != ""
        assert match.legend.coverage_by(match.box) > 0.9  # the legend moved with its box


def test_a_thin_rimmed_ring_of_a_large_frame_keeps_its_ocr_value():
    """Why `finder_scale` is 0.75 and not 0.5: the Kaggle photo road197 letterboxed to 1080p
    holds a clear speed limit 5 (88 px), a value GTSRB has no class for, read only through the
    finder's red ring and OCR; at 0.5 its thin rim is gone in the finder's 480x270 image.
    (Since 2026-12-06 a proposal's OCR read, its ring refitted, and the ring read inside a red
    proposal, read it as well: the finder's part is shown with those reads off.)"""
    import dataclasses

    from vlm_node.analysis.ocr_config import OcrConfig
    from vlm_node.tools.bench_signs import as_frame

    frame, _ = as_frame(read_bgr(shared("signs_real_dev") / "andrewmvd_road197.jpg"),
                        (1920, 1080), fit=True)
    sign = Box(1122, 358, 88, 88)
    with OcrBackend(OcrConfig()) as default, \
            OcrBackend(dataclasses.replace(OcrConfig(), finder_scale=0.5, speed_proposals=0,
                                           proposal_ring_reads=0)) as half:
        read = [(r.sign_class, r.value) for r in default.read_signs(frame)
                if r.box.iou(sign) >= 0.5]
        assert read == [("speed_limit", 5.0)]
        assert not any(r.value == 5.0 for r in half.read_signs(frame))


# --------------------------------------------------------------------------- training tool
def test_training_tool_runs_end_to_end(tmp_path):
    """A tiny Kaggle-layout set from the sample, one short epoch, exported and checked
    against torch by the tool itself."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from vlm_node.tools import train_signs

    data = gtsrb_kaggle_layout(tmp_path / "gtsrb", lambda r: int(r["class_id"]) in (1, 14, 17))
    negatives = tmp_path / "neg"
    negatives.mkdir()
    for p in sorted(shared("faces_wider_train").glob("*.jpg"))[:2]:
        cv2.imwrite(str(negatives / p.name), read_bgr(p))
    out = tmp_path / "m.onnx"
    code = train_signs.main([str(data), "--output", str(out), "--epochs", "1",
                             "--negatives", str(negatives), "--neg-per-photo", "5",
                             "--report-dir", str(tmp_path / "rep")])
    assert code == 0 and out.is_file()
    model = SignClassifier(out)
    assert model.info.extra["epochs"] == 1 and model.info.extra["val_tracks"]
    assert (tmp_path / "rep" / "sign_classifier_confusion.png").is_file()
    assert (tmp_path / "rep" / "sign_classifier_reliability.png").is_file()


def test_holdout_evaluation_scores_the_node_path_and_the_single_look(tmp_path):
    """`train-signs --evaluate`: only crops of the model's held-out tracks are scored (one
    trained-on crop is in the layout too), through the node's path (second look included)
    and the first answer alone. Measured on the 55 held-out sample crops: 21 speed limits,
    19 values right either way (one "a speed limit" without a value), none wrong."""
    from vlm_node.tools.train_signs import evaluate_holdout

    held = set(HELD_OUT_SAMPLE)
    data = gtsrb_kaggle_layout(tmp_path, lambda r: r["file"].split("/")[-1] in held
                               or r["file"].endswith("00000_00000_00029.png"))
    out = evaluate_holdout(DEFAULT_MODEL, data, 1, 1000)
    single = out["single_look"]
    assert out["crops"] == single["crops"] == len(HELD_OUT_SAMPLE)
    assert out["speed"] == single["speed"] == sum(int(n[:5]) in SPEED_LIMIT_IDS
                                                  for n in HELD_OUT_SAMPLE)
    assert out["speed_wrong_value"] == single["speed_wrong_value"] == 0
    assert out["speed_value_correct"] >= single["speed_value_correct"] >= out["speed"] - 3
    assert out["speed_value_accuracy"] == round(out["speed_value_correct"] / out["speed"], 4)
    assert out["tracks"] == len(SignClassifier().info.extra["val_tracks"])


# --------------------------------------------------------------------------- proposals
def test_proposals_find_a_dark_sign_the_shape_finder_misses():
    """gtsdb_00314: a 23 px 80 km/h sign at dusk (rim RGB ~ 30,14,15), below the finder's
    saturation and brightness floors; the white-balanced relative-red proposals find it."""
    from vlm_node.analysis.sign_candidates import (ProposalConfig, find_candidates,
                                                   find_proposals, paint_share,
                                                   proposal_masks)

    bgr = read_bgr(shared("signs_real_dev") / "gtsdb_00314.jpg")
    sign = Box(728, 239, 21, 22)
    assert not any(c.box.iou(sign) >= 0.3 for c in find_candidates(bgr))
    proposals = find_proposals(bgr)
    assert max(p.iou(sign) for p in proposals) >= 0.5
    masks = proposal_masks(bgr, ProposalConfig())
    assert paint_share(masks, sign, "red") >= 0.1  # its rim, seen as red paint
    assert paint_share(masks, Box(0, 0, 30, 30), "red") < 0.03  # the dark sky corner


def test_extra_positives_can_be_cut_the_way_the_runtime_cuts_them():
    """`--runtime-crops N`: each labelled sign of a real photo also gives the proposal boxes
    the runtime hands the classifier on it (10 GTSDB photos, 16 signs: 10 more crops)."""
    from vlm_node.tools.train_signs import load_photos, positive_samples

    photos = load_photos(str(shared("signs_real_dev/labels.json")), ["gtsdb_0000*.jpg"])
    plain = positive_samples(photos)
    more = positive_samples(photos, runtime_crops=2)
    assert (len(photos), len(plain), len(more)) == (10, 16, 26)
    assert {s.label for s in more} == {s.label for s in plain}
    by_photo = {}
    for s in plain:
        by_photo.setdefault(s.group, []).append(s)
    for s in more:
        # every extra crop overlaps a labelled sign of its photo with the same class
        assert any(p.label == s.label for p in by_photo[s.group])


# 5 km/h signs (no GTSRB class): a lone digit in a row as wide as the disc read as "3", "#"
# or nothing; cut to the ink's width and the text row it reads as 5 (Kaggle tune half).
SINGLE_DIGIT = ["andrewmvd_road159.jpg", "andrewmvd_road197.jpg", "andrewmvd_road208.jpg"]


@pytest.mark.parametrize("file", SINGLE_DIGIT)
def test_a_lone_digit_on_a_ring_is_read(backend, file):
    labels = json.loads(shared("signs_real_dev/labels.json").read_text())
    entry = next(i for i in labels["images"] if i["file"].endswith(file))
    box = next(Box.from_list(s["box"]) for s in entry["signs"] if s.get("value") == 5)
    hits = _near(backend.read_signs(read_bgr(shared("signs_real_dev") / file)), box)
    # the value is OCR's whether the classifier rejected the ring or called it "a speed limit"
    assert [(r.sign_class, r.value) for r in hits] == [("speed_limit", 5)]


# Dusk speed limits whose rims keep too little red for a colour region (GTSDB tune half and
# check half): proposed only by their round outline, and published with a value only where
# OCR reads the same number.
DUSK = [("gtsdb_00396.jpg", Box(115, 290, 28, 29), 100),
        ("gtsdb_00518.jpg", Box(271, 316, 29, 29), 100),
        ("gtsdb_00405.jpg", Box(753, 282, 33, 34), 70)]


@pytest.fixture(scope="module")
def colour_backend():
    """The search without round outlines (`circle_proposals: false`) or the learned proposer
    (`learned_proposals: 0`): colour regions only, and no second thread."""
    from vlm_node.analysis.ocr_config import OcrConfig

    with OcrBackend(OcrConfig(circle_proposals=False, learned_proposals=0)) as b:
        yield b


@pytest.mark.parametrize("file, box, value", DUSK)
def test_circle_proposals_find_dusk_speed_limits(backend, colour_backend, file, box, value):
    bgr = read_bgr(shared("signs_real_dev") / file)
    assert not _near(colour_backend.read_signs(bgr), box)
    hits = _near(backend.read_signs(bgr), box)
    assert [(r.sign_class, r.value) for r in hits] == [("speed_limit", value)]


def test_a_circle_proposals_value_needs_ocr_only_when_asked(backend, monkeypatch):
    """With OCR reading nothing, the dusk 100 found by its outline keeps the classifier's value
    by default; with `outline_needs_ocr` (the rule before outlines on people were dropped) it
    is a speed limit without a value."""
    from vlm_node.analysis.ocr_config import OcrConfig

    bgr = read_bgr(shared("signs_real_dev") / "gtsdb_00396.jpg")
    box = Box(115, 290, 28, 29)
    for config, value in ((OcrConfig(), 100), (OcrConfig(outline_needs_ocr=True), None)):
        with OcrBackend(config) as circles:
            monkeypatch.setattr(circles, "_reading", lambda bgr, job: None)
            hits = _near(circles.read_signs(bgr), box)
        assert [(r.sign_class, r.value) for r in hits] == [("speed_limit", value)]


# Foreign speed limits seen from near (Kaggle road-sign development photos): thin maroon rims
# against the light, which no colour mask finds, and values GTSRB has no class for (40, 90),
# which the classifier gets wrong outright (the 40 as a roundabout at 0.97).
NEAR = [("andrewmvd_road378.jpg", Box(75, 168, 125, 126), 40),
        ("andrewmvd_road391.jpg", Box(232, 29, 65, 64), 90),
        ("andrewmvd_road384.jpg", Box(107, 160, 38, 37), 70)]


@pytest.mark.parametrize("file, box, value", NEAR)
def test_big_round_outlines_are_read_by_ocr_alone(backend, colour_backend, file, box, value):
    from vlm_node.analysis.ocr_config import OcrConfig

    bgr = read_bgr(shared("signs_real_dev") / file)
    near = _near(backend.read_signs(bgr), box)
    assert [(r.sign_class, r.value) for r in near] == [("speed_limit", value)]
    # OCR's own read of the outline (the learned proposer's added boxes give road384's 70 to
    # the classifier first: off here)
    with OcrBackend(OcrConfig(learned_adds=False)) as outlines:
        assert [(r.sign_class, r.value, r.source) for r in _near(outlines.read_signs(bgr), box)
                ] == [("speed_limit", value, "ocr")]
    # neither the colour search nor circles without OCR's own read find it (nor, since round
    # outlines join the speed proposals, those reads: off here)
    with OcrBackend(OcrConfig(circle_read_px=0, speed_proposals=0,
                              learned_adds=False)) as without:
        for other in (colour_backend, without):
            assert not [r for r in other.read_signs(bgr) if r.sign_class == "speed_limit"
                        and r.value is not None and r.box is not None
                        and r.box.iou(box) >= 0.3]


def test_a_circle_read_needs_every_glyph_read_at_a_high_score():
    from vlm_node.analysis.ocr_backend import circle_read_ok
    from vlm_node.results import SignReading

    def read(text: str, value: float | None, score: float, cls: str = "speed_limit"):
        return SignReading(cls, score, "ocr", value=value, unit="km/h", text=text)

    assert circle_read_ok(read("40", 40, 1.0), glyphs=2)
    assert circle_read_ok(read("1OO", 100, 0.95), glyphs=3)  # O read for 0 still counts
    # numbers on drums and shirts in crowd photos: the disc holds one blob, or the score is low
    assert not circle_read_ok(read("10", 10, 0.94), glyphs=1)
    assert not circle_read_ok(read("40", 40, 0.58), glyphs=2)
    assert not circle_read_ok(read("40", None, 1.0), glyphs=2)
    assert not circle_read_ok(read("7.5", 7.5, 1.0, "weight_limit"), glyphs=2)


def test_the_outline_search_runs_beside_the_colour_search(backend, colour_backend):
    """The Hough pass runs in the backend's own thread while the colour search runs; the
    readings are those of the same search run inline (gtsdb_00396: two dusk 100s, one found
    only by its outline)."""
    bgr = read_bgr(shared("signs_real_dev") / "gtsdb_00396.jpg")
    pool = backend._outline_pool
    assert pool is not None and colour_backend._outline_pool is None
    beside = backend.read_signs(bgr)
    backend._outline_pool = None
    try:
        inline = backend.read_signs(bgr)
    finally:
        backend._outline_pool = pool
    assert [(r.sign_class, r.value, r.box) for r in beside] == \
        [(r.sign_class, r.value, r.box) for r in inline]
    assert [r.value for r in beside if r.sign_class == "speed_limit"] == [100, 100]
    with OcrBackend() as b:
        thread_pool = b._outline_pool
        assert thread_pool is not None and not thread_pool._shutdown
    assert b._outline_pool is None and thread_pool._shutdown


# --------------------------------------------------------------------------- int8 copy
def test_shipped_int8_copy_is_the_shipped_model_quantized(clf):
    """The int8 file records the hash of the float file it was made from (so a retrain without
    a new quantization fails here), carries its calibration, and answers as it does on the
    860 real sample crops. Measured: 855 of 860 answers equal (probability change: 99 % under
    0.035, the largest 0.33), the same 50 of 55 held-out crops right, no wrong speed value."""
    import hashlib

    from vlm_node.analysis.sign_classifier import SHIPPED_MODELS

    q = SignClassifier(SHIPPED_MODELS["int8"])
    assert SHIPPED_MODELS["fp32"] == DEFAULT_MODEL
    assert q.path.stat().st_size < DEFAULT_MODEL.stat().st_size / 2
    assert (q.info.labels, q.info.min_probability, q.info.temperature) == \
        (clf.info.labels, clf.info.min_probability, clf.info.temperature)
    assert q.info.extra["val_tracks"] == clf.info.extra["val_tracks"]
    entry = json.loads(q._session.get_modelmeta().custom_metadata_map["quantized"])
    assert entry["source_sha256"] == hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest()
    assert entry["calibration_sign_crops"] > 1000

    base, rows = gtsrb_sample()
    patches = [_rgb(base / r["file"]) for r in rows]
    a, b = clf.classify_patches(patches), q.classify_patches(patches)
    assert np.mean([x.label == y.label for x, y in zip(a, b)]) >= 0.99
    change = [abs(x.probability - y.probability) for x, y in zip(a, b) if x.label == y.label]
    assert np.percentile(change, 99) < 0.05 and max(change) < 0.4
    for r, row in zip(b, rows):
        t = int(row["class_id"])
        if t in SPEED_LIMIT_IDS and r.value is not None:
            assert r.value == gtsrb_class(t).value, row["file"]
    held = q.classify_patches([_rgb(shared("gtsrb_train_sample") / n) for n in HELD_OUT_SAMPLE])
    assert np.mean([r.gtsrb is not None and r.gtsrb.class_id == int(n[:5])
                    for r, n in zip(held, HELD_OUT_SAMPLE)]) >= 0.9


def test_classifier_precision_picks_the_shipped_file():
    from vlm_node.analysis.ocr_config import OcrConfig

    with OcrBackend(OcrConfig(classifier_precision="int8")) as b:
        assert b._classifier.path.name == "sign_classifier_int8.onnx"
    with OcrBackend(OcrConfig()) as b:
        assert b._classifier.path == DEFAULT_MODEL


def test_quantize_tool_calibrates_on_training_tracks_only(tmp_path):
    """`train-signs --quantize` on a Kaggle-layout copy of the sample: an int8 graph (QDQ
    around int8 weights) with the source's metadata, calibrated on training-track crops and
    background crops; the held-out tracks' crops are used only to compare the two models."""
    onnx = pytest.importorskip("onnx")
    from vlm_node.tools import train_signs
    from vlm_node.tools.quantize_signs import calibration_set

    data = gtsrb_kaggle_layout(tmp_path / "gtsrb", lambda r: True)
    negatives = tmp_path / "neg"
    negatives.mkdir()
    for p in sorted(shared("faces/dlib_pascal_voc").glob("*.jpg"))[:2]:
        cv2.imwrite(str(negatives / p.name), read_bgr(p))
    calib = calibration_set(data, SignClassifier(), 2, [str(negatives)], [], 4, 13)
    held = set(SignClassifier().info.extra["val_tracks"])
    _, rows = gtsrb_sample()
    names = [r["file"].split("/")[-1] for r in rows]
    n_held = sum("{}_{}".format(*(int(v) for v in n.split("_")[:2])) in held for n in names)
    assert len(calib.check) == n_held == 127  # every held-out crop, and none calibrates
    assert calib.signs == 2 * 2 * 43 and calib.background >= 8
    assert len(calib.crops) == calib.signs + calib.background

    out = tmp_path / "q.onnx"
    code = train_signs.main([str(data), "--quantize", str(DEFAULT_MODEL), "--output", str(out),
                             "--calib-per-class", "2", "--negatives", str(negatives),
                             "--neg-per-photo", "4"])
    assert code == 0
    graph = onnx.load(str(out)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Softmax"} <= ops
    int8 = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8) >= 6  # four convolutions and two dense layers
    q = SignClassifier(out)
    entry = json.loads(q._session.get_modelmeta().custom_metadata_map["quantized"])
    assert q.info.labels == CLASSIFIER_LABELS and entry["source"] == DEFAULT_MODEL.name
    x = np.stack([cv2.resize(_rgb(shared("gtsrb_train_sample") / n), (32, 32))
                  for n in HELD_OUT_SAMPLE]).transpose(0, 3, 1, 2).astype(np.float32)
    same = (SignClassifier().probabilities(x).argmax(1) == q.probabilities(x).argmax(1)).mean()
    assert same >= 0.9


def test_one_reading_per_sign_and_value():
    """Two routes reading the same value on one sign publish it once (the surer), in the
    readings' order; another value on the same place, the same value elsewhere and a reading
    without a box all stay."""
    from vlm_node.analysis.ocr_backend import one_per_sign
    from vlm_node.results import SignReading

    def r(value, conf, box, cls="speed_limit"):
        return SignReading(cls, conf, "ocr", value=value, unit="km/h" if value else "",
                           box=box)

    ring = r(40.0, 1.0, Box(901, 322, 31, 31))
    refitted = r(40.0, 0.65, Box(897, 316, 38, 38))  # IoU 0.67 with the ring
    inside = r(40.0, 0.9, Box(905, 326, 20, 20))  # all of it inside the ring
    other_value = r(60.0, 0.7, Box(897, 316, 38, 38))
    elsewhere = r(40.0, 0.8, Box(100, 100, 31, 31))
    family = r(None, 0.99, Box(899, 318, 34, 34))
    boxless = r(40.0, 0.5, None)
    readings = [refitted, ring, inside, other_value, elsewhere, family, boxless]
    assert one_per_sign(readings) == [ring, other_value, elsewhere, family, boxless]
    assert one_per_sign([]) == []
