"""The gender and age cue of `replace`: the shipped age-gender network read on real faces
(the shipped portraits, the bank's own averages), the confidence and size gates, the crop fixed
by landmarks, the narrowing of the pick, and the anonymizer's switch."""
import json

import cv2
import numpy as np
import pytest

from vlm_node.anonymize import Anonymizer, AnonymizerConfig
from vlm_node.anonymize.appearance import (CROP_WIDTH_EYES, MIN_FACE_PX, TEMPLATE, Appearance,
                                           crop, shared_estimator)
from vlm_node.anonymize.face_replace import FaceReplacer, load_bank
from vlm_node.frames import FrameMeta
from vlm_node.paths import ASSETS

CONFIG = AnonymizerConfig(redaction="replace", plates=False, head_backstop=False)


@pytest.fixture(scope="module")
def estimator():
    return shared_estimator()


@pytest.fixture(scope="module")
def portraits():
    """The two shipped portraits (MIT, face_recognition examples) with the anonymizer's
    landmarks."""
    anon = Anonymizer(CONFIG)
    out = {}
    for name in ("obama", "biden"):
        img = cv2.imread(str(ASSETS / "photos" / f"{name}.jpg"), cv2.IMREAD_COLOR)
        faces = [d for d in anon.detect(img) if d.kind == "face"]
        assert len(faces) == 1
        out[name] = (img, np.asarray(faces[0].landmarks, np.float64))
    anon.close()
    return out


def test_gates_say_a_gender_only_when_sure_and_fit_by_members():
    assert Appearance(0.95, 30).gender == "male"
    assert Appearance(0.05, 30).gender == "female"
    assert Appearance(0.6, 30).gender is None and Appearance(0.2, 30).gender is None
    woman = Appearance(0.02, 24.0)
    assert woman.fits(frozenset({"female"}), (17, 38))
    assert woman.fits(frozenset({"female", "male"}), (20, 40))  # a mixed average suits anyone
    assert not woman.fits(frozenset({"male"}), (18, 26))
    # age: the members' range widened by 5 years each side
    older = Appearance(0.99, 52.0)
    assert older.fits(frozenset({"male"}), (30, 48))
    assert not older.fits(frozenset({"male"}), (18, 26))
    assert Appearance(0.99, 31.0).fits(frozenset({"male"}), (18, 26))
    # an unsure gender narrows nothing by gender, and an average that does not say fits
    assert Appearance(0.5, 30).fits(frozenset({"male"}), None)


def test_network_reads_the_shipped_portraits(estimator, portraits):
    for name, (img, lm) in portraits.items():
        look = estimator.estimate(img, lm)
        assert look is not None
        assert look.gender == "male", (name, look)
        assert 35 <= look.age <= 80, (name, look)


def test_network_reads_the_banks_averages_by_their_members_gender(estimator):
    """Real data the network never saw: each average of the bank is a mean of 10-14 real
    people of one gender (or mixed). Every male-only average reads male and most female-only
    ones read female, each sure."""
    bank = load_bank()
    reads = {}
    for f in bank.faces:
        canvas = cv2.copyMakeBorder(f.image, 40, 40, 40, 40, cv2.BORDER_REPLICATE)
        reads.setdefault(tuple(sorted(f.genders)), []).append(
            estimator.estimate(canvas, np.asarray(bank.template) + 40).gender)
    assert reads[("male",)] == ["male"] * 5
    assert reads[("female",)].count("female") >= 4 and "male" not in reads[("female",)]


def test_too_small_a_face_is_not_estimated(estimator, portraits):
    img, lm = portraits["obama"]
    width = float(np.linalg.norm(lm[1] - lm[0])) * CROP_WIDTH_EYES
    f = (MIN_FACE_PX - 4) / width
    small = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    assert estimator.estimate(small, lm * f) is None
    f = (MIN_FACE_PX + 10) / width
    small = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    assert estimator.estimate(small, lm * f) is not None


def test_the_crop_follows_the_landmarks_upright(portraits):
    """A rolled head gives the same upright crop: the crop is fixed by the five landmarks,
    not by a box."""
    img, lm = portraits["obama"]
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 25, 1.0)
    rolled = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    lm_rolled = lm @ m[:, :2].T + m[:, 2]
    a, b = crop(img, lm).astype(int), crop(rolled, lm_rolled).astype(int)
    assert a.shape == (62, 62, 3)
    assert np.abs(a - b).mean() < 6
    # and it is the face, not the frame: the template's own landmarks crop the template area
    canvas = np.zeros((200, 200, 3), np.uint8)
    canvas[100:] = 255
    top = crop(canvas, TEMPLATE)  # the template's box spans y 17-152: dark above, light below
    assert top[5].mean() < 10 and top[-5].mean() > 245


def test_a_sure_gender_narrows_the_averages_of_a_tone(estimator):
    rep = FaceReplacer(load_bank(), estimator)
    faces = rep.bank.faces
    tone = 57.0  # among the light averages of both genders
    any_gender = {g for i in rep.candidates(tone) for g in faces[i].genders}
    assert any_gender == {"female", "male"}
    for gender, p in (("female", 0.03), ("male", 0.97)):
        picked = rep.candidates(tone, Appearance(p, 25.0))
        assert len(picked) >= 2
        assert all(gender in faces[i].genders for i in picked), gender
    # unsure: tone alone
    assert list(rep.candidates(tone, Appearance(0.5, 25.0))) == list(rep.candidates(tone))
    # a young man is not given the 30-48 average, an older man only it or mixed ones
    young = rep.candidates(tone, Appearance(0.99, 20.0))
    assert all(faces[i].ages[0] < 30 for i in young)
    older = rep.candidates(50.0, Appearance(0.99, 45.0))
    assert older.size and all(faces[i].ages[1] >= 40 for i in older)
    # tone comes first: a face of the darkest tone keeps the dark (mixed) average whatever
    # its reading
    dark = rep.candidates(-35.0, Appearance(0.02, 30.0))
    assert [faces[i].group for i in dark] == ["black"]
    # a tracked face picked with a reading keeps the pick
    first = rep.pick(tone, 11, Appearance(0.03, 25.0))
    assert "female" in faces[first].genders
    assert rep.pick(tone, 11, Appearance(0.97, 25.0)) == first


def test_anonymizer_switches_the_estimate_with_its_setting(portraits):
    img, lm = portraits["obama"]
    anon = Anonymizer(CONFIG)
    assert anon._replacer is not None and anon._replacer.estimator is not None
    anon.anonymize(FrameMeta("c", 100_000_000, "c"), img.copy())
    picks = anon._replacer.picks()
    assert len(picks) == 1
    picked = anon._replacer.bank.faces[next(iter(picks.values()))]
    assert "male" in picked.genders  # a man is not given a female-only average
    anon.reconfigure(AnonymizerConfig(redaction="replace", plates=False, head_backstop=False,
                                      replace_appearance=False))
    assert anon._replacer.estimator is None
    anon.close()
    # blur mode loads neither the bank nor the network
    plain = Anonymizer(AnonymizerConfig(plates=False, head_backstop=False))
    assert plain._replacer is None
    plain.close()


def test_measurement_tool_scores_labelled_faces_per_size(estimator, tmp_path):
    from vlm_node.tools.face_appearance import Face, main, measure

    faces = [Face("london_neutral", ASSETS / "photos" / f"{n}.jpg", "male", None)
             for n in ("obama", "biden")]
    rows = measure(faces, [None, 48, 24], estimator)
    assert [(r["set"], r["size"], r["faces"]) for r in rows] == [
        ("london_neutral", None, 2), ("london_neutral", 48, 2), ("london_neutral", 24, 2)]
    native = rows[0]
    assert native["gender_accuracy"] == 1.0 and native["sure_accuracy"] == 1.0
    assert native["age_mae"] is None  # no age labelled
    # both men get no female-only average once their gender is read; tone alone gives some
    assert native["other_gender_average_shipped"] == 0.0
    assert native["other_gender_average_tone_only"] > 0.0
    # at 24 px the network is not asked (under MIN_FACE_PX): the pick is tone alone again
    assert rows[2]["other_gender_average_shipped"] == rows[2]["other_gender_average_tone_only"]
    # a directory that is not the source checkout is a usage error, not a traceback
    with pytest.raises(SystemExit) as exc:
        main(["--stim", str(tmp_path)])
    assert exc.value.code == 2


def test_measurement_tool_scores_faces_of_your_own_photos(estimator, tmp_path, capsys):
    """--faces: labelled boxes in photos at their own size. The two men's boxes (where the
    anonymizer's detector puts them) are read and scored by size; a box on no face is left out
    and counted; a malformed file is a usage error."""
    from vlm_node.anonymize.faces import load_face_model
    from vlm_node.anonymize.multiscale import View, run_view
    from vlm_node.anonymize.runtime import Runtime
    from vlm_node.tools.face_appearance import main

    model = load_face_model("centerface", "", Runtime(), 0.3)
    entries = []
    for name in ("obama", "biden"):
        photo = ASSETS / "photos" / f"{name}.jpg"
        img = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        dets = run_view(model, img, View(0, 0, w, h, min(1.0, 1280 / max(w, h))), 0.3)
        x1, y1, x2, y2 = (float(v) for v in dets.boxes[int(np.argmax(dets.scores))][:4])
        entries.append({"file": str(photo), "box": [x1, y1, x2 - x1, y2 - y1],
                        "gender": "male"})
    entries.append({"file": str(ASSETS / "photos" / "obama.jpg"), "box": [0, 0, 40, 40],
                    "gender": "female"})
    faces = tmp_path / "mine.json"
    faces.write_text(json.dumps({"faces": entries}))
    out = tmp_path / "rows.json"
    assert main(["--faces", str(faces), "--json", str(out)]) == 0
    assert "left out: 1 faces no detection matched" in capsys.readouterr().out
    rows = json.loads(out.read_text())
    every = rows[-1]
    assert every["set"] == "mine" and every["size"] == "all" and every["faces"] == 2
    assert sum(r["faces"] for r in rows[:-1]) == 2  # the size rows split the same faces
    assert every["gender_accuracy"] == 1.0 and every["sure_accuracy"] == 1.0
    assert every["other_gender_average_shipped"] == 0.0
    assert every["other_gender_average_tone_only"] > 0.0
    for bad in ({"faces": []}, {"faces": [{"file": "obama.jpg", "box": [1, 2, 3, 4],
                                           "gender": "unknown"}]}):
        faces.write_text(json.dumps(bad))
        with pytest.raises(SystemExit) as exc:
            main(["--faces", str(faces)])
        assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:  # neither source given
        main([])
    assert exc.value.code == 2


def test_without_openvino_the_estimate_is_a_clear_configuration_error(monkeypatch):
    import sys

    from vlm_node.anonymize.appearance import AppearanceEstimator
    from vlm_node.errors import ConfigError

    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    with pytest.raises(ConfigError, match="replace_appearance: false"):
        AppearanceEstimator()
