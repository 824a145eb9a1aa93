"""The speed-value reader: a second small CNN that reads the number on a round speed-limit sign,
including values GTSRB has no class for (5, 10, 15, 40, 90, 110 km/h). Its rules (what it may
fill and publish), the shipped model on real crops, its wiring into the OCR backend on real
Kaggle photos, and the training tool end to end."""
import json

import cv2
import numpy as np
import pytest

from helpers import gtsrb_kaggle_layout, read_bgr, shared
from vlm_node.analysis.ocr_backend import OcrBackend, ring_value, value_fill
from vlm_node.analysis.ocr_config import OcrConfig
from vlm_node.analysis.speed_values import (DEFAULT_VALUE_MODEL, OTHER, SPEED_VALUES,
                                            VALUE_LABELS, SpeedValueReader, ValueRead, reads,
                                            value_class)
from vlm_node.geometry import Box
from vlm_node.results import SignReading


def _valueless(box=Box(10, 10, 40, 40), confidence=0.97):
    return SignReading("speed_limit", confidence, "classifier", box=box)


# ------------------------------------------------------------------------------- the rules
def test_a_sure_foreign_value_fills_a_speed_limit_left_without_one():
    got = value_fill(_valueless(), ValueRead(40.0, 0.99), None, None, 0.94)
    assert got is not None and (got.value, got.unit) == (40.0, "km/h")
    assert got.confidence == pytest.approx(0.97)  # the less sure of the two
    assert value_fill(_valueless(confidence=0.9), ValueRead(90.0, 0.95), None, None,
                      0.94).confidence == pytest.approx(0.9)


@pytest.mark.parametrize("read, classifier_value, ocr_value, why", [
    (ValueRead(40.0, 0.93), None, None, "not sure"),
    (ValueRead(None, 0.99), None, None, "other: no speed-limit number"),
    (ValueRead(80.0, 0.99), None, None, "a GTSRB value: the classifier already weighed it"),
    (ValueRead(40.0, 0.99), None, 50.0, "OCR read another number"),
    (ValueRead(110.0, 0.99), 100.0, None, "the classifier's own value, OCR silent"),
    (ValueRead(110.0, 0.99), 100.0, 120.0, "the classifier's own value, OCR another"),
])
def test_the_reader_does_not_fill(read, classifier_value, ocr_value, why):
    assert value_fill(_valueless(), read, classifier_value, ocr_value, 0.94) is None, why


def test_two_readers_against_the_classifier():
    """Kaggle road111's case: the classifier calls a 110 a 100, OCR reads 110 (its value was
    dropped as a disagreement), the reader reads 110 too."""
    got = value_fill(_valueless(), ValueRead(110.0, 0.98), 100.0, 110.0, 0.94)
    assert got is not None and got.value == 110.0
    # OCR agreeing with a reader that is not a speed limit's class is still nothing
    assert value_fill(SignReading("no_entry", 0.99, "classifier"), ValueRead(110.0, 0.98),
                      None, 110.0, 0.94) is None
    # a reading that has a value keeps it
    assert value_fill(SignReading("speed_limit", 0.99, "classifier", value=50.0, unit="km/h"),
                      ValueRead(40.0, 0.99), None, None, 0.94) is None


def test_a_value_the_classifier_leans_to_fills_when_ocr_reads_nothing():
    """`value_reader_lean`: two networks naming the same GTSRB value, OCR silent."""
    got = value_fill(_valueless(), ValueRead(80.0, 0.99), None, None, 0.94, lean=80.0)
    assert got is not None and got.value == 80.0
    # another lean, OCR reading another number, or no lean given: nothing
    assert value_fill(_valueless(), ValueRead(80.0, 0.99), None, None, 0.94, lean=60.0) is None
    assert value_fill(_valueless(), ValueRead(80.0, 0.99), None, 50.0, 0.94, lean=80.0) is None
    assert value_fill(_valueless(), ValueRead(80.0, 0.99), None, None, 0.94) is None
    # the classifier's own value, dropped because it did not hold as the crop moved (OCR
    # silent), comes back when the reader reads it too
    got = value_fill(_valueless(), ValueRead(60.0, 0.97), 60.0, None, 0.94, lean=60.0)
    assert got is not None and got.value == 60.0
    assert value_fill(_valueless(), ValueRead(60.0, 0.97), 60.0, 80.0, 0.94, lean=60.0) is None


def test_the_classifiers_lean():
    from vlm_node.analysis.gtsrb import gtsrb_class
    from vlm_node.analysis.ocr_backend import speed_lean
    from vlm_node.analysis.sign_classifier import SPEED_FAMILY, SignClass

    assert speed_lean(SignClass("speed_limit_80", 0.97, gtsrb_class(5))) == 80.0
    assert speed_lean(SignClass(SPEED_FAMILY, 0.95, None, "speed_limit_120")) == 120.0
    assert speed_lean(SignClass(SPEED_FAMILY, 0.95, None, "end_speed_limit_80")) is None
    assert speed_lean(SignClass("background", 0.9, None, "stop")) is None
    assert speed_lean(SignClass("stop", 0.99, gtsrb_class(14))) is None


def test_a_ring_value_is_capped_at_the_classifiers_speed_mass():
    box = Box(5, 5, 30, 30)
    got = ring_value(ValueRead(5.0, 0.99), 0.51, box, None, 0.97)
    assert got is not None
    assert (got.sign_class, got.value, got.unit) == ("speed_limit", 5.0, "km/h")
    assert got.source == "classifier"
    assert got.confidence == pytest.approx(0.51) and got.box == box and got.text == "5"
    assert ring_value(ValueRead(5.0, 0.96), 0.51, box, None, 0.97) is None  # not sure enough
    assert ring_value(ValueRead(50.0, 0.99), 0.51, box, None, 0.97) is None  # GTSRB's value
    assert ring_value(ValueRead(5.0, 0.99), 0.51, box, 50.0, 0.97) is None   # OCR read 50
    assert ring_value(ValueRead(5.0, 0.99), 0.51, box, 5.0, 0.97) is not None


def test_labels_and_answers():
    assert VALUE_LABELS[-1] == OTHER and len(VALUE_LABELS) == len(SPEED_VALUES) + 1
    assert value_class(40) == SPEED_VALUES.index(40.0) and value_class(130) is None
    probs = np.zeros((2, len(VALUE_LABELS)), np.float32)
    probs[0, value_class(90)] = 0.8
    probs[1, -1] = 0.7
    got = reads(probs)
    assert got[0] == ValueRead(90.0, pytest.approx(0.8)) and got[1].value is None
    assert got[0].sure(0.8) and not got[0].sure(0.81) and not got[1].sure(0.1)


# ------------------------------------------------------------------------- the shipped model
@pytest.fixture(scope="module")
def reader():
    return SpeedValueReader()


def test_the_shipped_model_carries_its_calibration_and_held_out_figures(reader):
    assert DEFAULT_VALUE_MODEL.is_file() and DEFAULT_VALUE_MODEL.stat().st_size < 4_000_000
    assert 0.9 <= reader.min_probability < 1.0
    t = reader.training
    assert t["gtsrb_held"] == "the classifier's tracks"
    # held-out TT100K panoramas and GTSRB tracks, one camera-like view each: at the
    # threshold, nearly every fill is right
    for part in ("val_gtsrb_aug", "val_tt100k_aug"):
        assert t[part]["filled_right"] > 20 * (t[part]["filled_wrong_value"]
                                               + t[part]["filled_on_other"])


def test_a_model_of_other_labels_is_refused(tmp_path, monkeypatch):
    import vlm_node.analysis.speed_values as sv

    monkeypatch.setattr(sv, "VALUE_LABELS", VALUE_LABELS[:-1])
    with pytest.raises(ValueError, match="VALUE_LABELS"):
        SpeedValueReader()
    with pytest.raises(FileNotFoundError):
        SpeedValueReader(tmp_path / "missing.onnx")


# Real foreign-value signs of the shared Kaggle development photos, read through their
# labelled boxes (the classifier has no class for any of them)
FOREIGN = [("andrewmvd_road113.jpg", 40), ("andrewmvd_road196.jpg", 40),
           ("andrewmvd_road192.jpg", 40), ("andrewmvd_road256.jpg", 40),
           ("andrewmvd_road208.jpg", 5), ("andrewmvd_road403.jpg", 90)]


def _label(file, value):
    labels = json.loads(shared("signs_real_dev/labels.json").read_text())
    entry = next(i for i in labels["images"] if i["file"].endswith(file))
    return next(Box.from_list(s["box"]) for s in entry["signs"] if s.get("value") == value)


@pytest.mark.parametrize("file, value", FOREIGN)
def test_the_reader_reads_values_gtsrb_lacks(reader, file, value):
    rgb = cv2.cvtColor(read_bgr(shared("signs_real_dev") / file), cv2.COLOR_BGR2RGB)
    got = reader.read(rgb, [_label(file, value)])[0]
    assert got.value == value and got.sure(reader.min_probability), got


def test_the_reader_says_other_off_the_sign(reader):
    """A stop sign and a no-entry sign (GTSRB sample crops) and the sky corner of a road photo
    carry no speed value the reader is sure of."""
    crops = [read_bgr(shared("gtsrb_train_sample") / "00014_00000_00029.png"),
             read_bgr(shared("gtsrb_train_sample") / "00017_00000_00029.png")]
    for crop in crops:
        rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
        got = reader.read(rgb, [Box(0, 0, rgb.shape[1], rgb.shape[0])])[0]
        assert not got.sure(reader.min_probability), got
    sky = cv2.cvtColor(read_bgr(shared("signs_real_dev") / "andrewmvd_road208.jpg"),
                       cv2.COLOR_BGR2RGB)
    assert not reader.read(sky, [Box(0, 0, 40, 40)])[0].sure(reader.min_probability)


# ------------------------------------------------------------------------------ the wiring
def _blind(backend):
    """OCR that reads nothing, as on a legend under a branch's shadow: the real recogniser's
    answers replaced by empty reads, so only the networks can give the number."""
    from vlm_node.analysis.sign_text import TextRead

    backend._recognize = lambda crops: [TextRead("", 0.0) for _ in crops]


@pytest.mark.parametrize("on", [True, False])
def test_the_backend_fills_a_40_the_classifier_reads_without_its_number(on):
    """Kaggle road113: the classifier calls the 148 px 40 a speed limit without a value (GTSRB
    has no 40) and OCR reads nothing: the reader's sure 40 fills it, as sure as the less sure
    of the two; without the reader the sign is published without its number."""
    bgr = read_bgr(shared("signs_real_dev") / "andrewmvd_road113.jpg")
    sign = _label("andrewmvd_road113.jpg", 40)
    with OcrBackend(OcrConfig(value_reader=on)) as b:
        _blind(b)
        got = [r for r in b.read_signs(bgr) if r.sign_class == "speed_limit"
               and r.box is not None and r.box.iou(sign) > 0.5]
    assert len(got) == 1 and got[0].source == "classifier" and got[0].confidence > 0.9
    assert (got[0].value, got[0].unit) == ((40.0, "km/h") if on else (None, ""))


@pytest.mark.parametrize("on", [True, False])
def test_the_backend_reads_a_40_on_a_ring_the_classifier_half_believes(on):
    """Kaggle road196: a 72 px 40 the classifier does not call a sign (its speed classes
    together well under its threshold) and OCR reads nothing: the reader's sure 40 on the
    finder's ring is published, its confidence capped at the classifier's speed mass."""
    bgr = read_bgr(shared("signs_real_dev") / "andrewmvd_road196.jpg")
    sign = _label("andrewmvd_road196.jpg", 40)
    with OcrBackend(OcrConfig(value_reader=on)) as b:
        _blind(b)
        got = [r for r in b.read_signs(bgr) if r.sign_class == "speed_limit"
               and r.box is not None and r.box.iou(sign) > 0.5]
    if on:
        assert [(r.value, r.unit) for r in got] == [(40.0, "km/h")]
        assert 0.35 <= got[0].confidence < 0.93
    else:
        assert got == []


@pytest.mark.parametrize("file, value", [("gtsdb_00239.jpg", 30), ("gtsdb_00560.jpg", 60)])
@pytest.mark.parametrize("lean", [True, False])
def test_the_backend_fills_the_value_both_networks_name(file, value, lean):
    """GTSDB development photos (real OCR): a 14 px 30 and a 37 px 60 the classifier leans to
    without a value it keeps, OCR reads no number and no letters on them; the reader names the
    same value, so it is published (`value_reader_lean`); without that the sign has no
    number."""
    bgr = read_bgr(shared("signs_real_dev") / file)
    sign = next(Box.from_list(s["box"]) for i in json.loads(
        shared("signs_real_dev/labels.json").read_text())["images"]
        if i["file"].endswith(file) for s in i["signs"] if s.get("value") == value)
    with OcrBackend(OcrConfig(value_reader_lean=lean)) as b:
        got = [r.value for r in b.read_signs(bgr) if r.sign_class == "speed_limit"
               and r.box is not None and r.box.iou(sign) > 0.5]
    assert got == ([float(value)] if lean else [None])


# ------------------------------------------------------------------------ the training tool
def test_training_tool_runs_end_to_end(tmp_path):
    """A tiny GTSRB layout (30, 50 and a stop class) and a tiny TT100K layout (crops cut from
    shared photos' 40s and 5s, and a 'pm20' folder of GTSRB crops standing for a weight
    limit): one short epoch, exported, checked against torch by the tool itself, loaded by
    the runtime."""
    pytest.importorskip("torch")
    from vlm_node.tools import train_speed_values

    gtsrb = gtsrb_kaggle_layout(tmp_path / "gtsrb", lambda r: int(r["class_id"]) in (1, 2, 14))
    tt = tmp_path / "tt"
    for n, (file, value) in enumerate(FOREIGN):
        box = _label(file, value)
        crop = read_bgr(shared("signs_real_dev") / file)[
            int(box.y):int(box.y2), int(box.x):int(box.x2)]
        for k in range(3):  # panorama ids in two blocks: some held out
            out = tt / "train" / f"pl{value}" / f"{n * 1000 + k * 700}_{k}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), crop)
    (tt / "train" / "pm20").mkdir()
    for k, p in enumerate(sorted(shared("gtsrb_train_sample").glob("00017_*.png"))[:4]):
        cv2.imwrite(str(tt / "train" / "pm20" / f"{k}_0.png"), read_bgr(p))
    (tt / "train" / "pl25").mkdir()  # a value the reader does not learn: skipped
    cv2.imwrite(str(tt / "train" / "pl25" / "1_0.png"), read_bgr(p))
    out = tmp_path / "v.onnx"
    code = train_speed_values.main([str(gtsrb), str(tt), "--output", str(out), "--epochs", "1",
                                    "--min-per-class", "8", "--report-dir",
                                    str(tmp_path / "rep")])
    assert code == 0
    model = SpeedValueReader(out)
    assert model.training["epochs"] == 1 and 0.3 <= model.min_probability <= 0.99
    assert (tmp_path / "rep" / "speed_values_validation.png").is_file()
    summary = json.loads((tmp_path / "rep" / "speed_values_validation.json").read_text())
    assert summary["val_crops"] == summary["val_aug"]["n"] > 0


def test_tt100k_codes_map_to_the_readers_classes():
    from vlm_node.tools.train_speed_values import OTHER_ID, tt_label

    assert tt_label("pl40") == value_class(40) and tt_label("pl110") == value_class(110)
    assert tt_label("pl25") is None and tt_label("pl0") is None
    assert tt_label("pm20") == tt_label("pr40") == tt_label("p11") == OTHER_ID
    assert tt_label("negative") == OTHER_ID
