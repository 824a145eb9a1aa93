"""The sign renderer, the scene compositor, the shipped photos and the evaluation scoring."""
import json
import math

import cv2
import numpy as np
import pytest

from vlm_node import vocab
from vlm_node.geometry import Box
from vlm_node.evaluation.signs import evaluate_labels
from vlm_node.tools.render import scenes
from vlm_node.tools.render.scenes import (PHOTOS_DIR, Appearance, Photo, compose_scene,
                                          fit_boxes, fit_to_size, load_photos, make_road_scene,
                                          place_sign, render_labelled_set)
from vlm_node.tools.render.signs import RENDERABLE_CLASSES, SignSpec, render_sign
from vlm_node.results import SignReading

CALM = Appearance(max_yaw_deg=0.0, max_roll_deg=0.0, max_keystone=0.0, blur_sigma=(0.0, 0.0),
                  brightness=(1.0, 1.0), contrast=(1.0, 1.0), noise_sigma=(0.0, 0.0),
                  jpeg_quality=(95, 95), pole_probability=0.0)


def alpha_share(rgba):
    return float((rgba[..., 3].astype(float) / 255.0).mean())


# ------------------------------------------------------------------------------------ signs
@pytest.mark.parametrize("spec, share", [
    (SignSpec("speed_limit", 50), math.pi / 4),  # a disc in its square
    (SignSpec("stop"), 2 * math.sqrt(2) * (0.5 / math.cos(math.pi / 8)) ** 2),  # octagon
    (SignSpec("yield"), math.sqrt(3) / 4),  # equilateral triangle of side 1
    (SignSpec("priority_road"), 0.5),  # diamond
])
def test_sign_shapes_cover_their_geometric_area(spec, share):
    rgba = render_sign(spec, 200)
    assert rgba.shape == (200, 200, 4) and rgba.dtype == np.uint8
    assert alpha_share(rgba) == pytest.approx(share, abs=0.01)
    # antialiased: the outline has partly transparent pixels
    assert ((rgba[..., 3] > 0) & (rgba[..., 3] < 255)).sum() > 100


def test_speed_limit_has_red_rim_white_face_and_a_black_number():
    rgba = render_sign(SignSpec("speed_limit", 80), 200)
    rim = rgba[12, 100, :3]  # 6 % down from the top, inside the red rim
    assert rim[0] > 150 and rim[1] < 60 and rim[2] < 60
    face = rgba[40, 100, :3]
    assert face.min() > 220
    centre = rgba[70:130, 40:160, :3]
    dark = (centre.max(axis=2) < 80).mean()
    assert 0.45 < dark < 0.75  # the bold digits fill most of the box around them


def test_us_speed_limit_is_a_portrait_rectangle_in_mph():
    spec = SignSpec("speed_limit", 55, "us")
    rgba = render_sign(spec, 150)
    assert rgba.shape[:2] == (150, 120)
    assert spec.unit == "mph" and SignSpec("speed_limit", 55).unit == "km/h"
    assert SignSpec("weight_limit", 7.5).unit == "t"
    assert SignSpec("height_limit", 3.5).unit == "m"
    assert SignSpec("stop").unit == ""
    assert alpha_share(rgba) > 0.97


def test_every_renderable_class_is_in_the_vocabulary_and_draws():
    assert len(RENDERABLE_CLASSES) >= 35
    values = {k: v[1] + 1 for k, v in vocab.VALUE_RULES.items()}
    for cls in RENDERABLE_CLASSES:
        assert cls in vocab.SIGN_CLASSES
        rgba = render_sign(SignSpec(cls, values.get(cls)), 64)
        assert 0.3 < alpha_share(rgba) <= 1.0, cls
        assert rgba[..., :3][rgba[..., 3] > 200].std() > 20, cls  # a legend, not a blank


def test_invalid_specs_are_rejected_with_a_reason():
    with pytest.raises(ValueError, match="cannot render sign class 'banana'"):
        SignSpec("banana")
    with pytest.raises(ValueError, match="speed_limit needs a value"):
        SignSpec("speed_limit")
    with pytest.raises(ValueError, match="stop carries no number"):
        SignSpec("stop", 5)
    with pytest.raises(ValueError, match="style must be one of"):
        SignSpec("stop", style="uk")


# ----------------------------------------------------------------------------------- photos
def test_shipped_photos_match_their_labels_and_attribution():
    photos = load_photos()
    assert len([p for p in photos if p.use == "background"]) == 8
    assert len([p for p in photos if p.use == "face"]) == 2
    attribution = (PHOTOS_DIR / "ATTRIBUTION.md").read_text()
    for p in photos:
        img = p.load()
        assert img.shape[:2] == (p.height, p.width)
        assert max(p.width, p.height) <= 640
        assert p.file in attribution or p.file.startswith("Cars")
        for box in (p.faces or ()) + (p.plates or ()):
            assert box.x >= 0 and box.y >= 0 and box.x2 <= p.width and box.y2 <= p.height
        if p.use == "face":
            (face,) = p.faces
            assert face.h > 0.15 * p.height  # a portrait
    assert "8c56aa962b50b7e813df9fbc4c9c4de5de826761" in attribution
    assert "2e2dccea9dd0ce730c8d464d0f67c6eebb40c9d1" in attribution
    assert (PHOTOS_DIR / "LICENSE_CC0.txt").is_file()
    assert (PHOTOS_DIR / "LICENSE_face_recognition_MIT.txt").is_file()


def test_fit_to_size_and_boxes_follow_the_same_transform():
    img = np.zeros((400, 400, 3), np.uint8)
    img[100:150, 200:300] = 255
    out = fit_to_size(img, (800, 600))
    assert out.shape == (600, 800, 3)
    (box,) = fit_boxes([Box(200, 100, 100, 50)], (400, 400), (800, 600))
    # 2x scale to 800x800, then 100 px cropped from the top
    assert box.to_list(0) == [400, 100, 200, 100]
    ys, xs = np.nonzero(out[..., 0] > 127)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (400, 100, 600, 200)
    # a box cropped away entirely is dropped, a cut one is clipped
    kept = fit_boxes([Box(0, 0, 50, 40), Box(0, 90, 50, 40)], (400, 400), (800, 600))
    assert [b.to_list(0) for b in kept] == [[0, 80, 100, 80]]


# ----------------------------------------------------------------------------------- scenes
def test_placed_sign_box_is_tight_around_the_changed_pixels():
    rng = np.random.default_rng(3)
    img = np.full((300, 400, 3), 90, np.uint8)
    box = place_sign(img, SignSpec("speed_limit", 60), 80, rng, app=CALM)
    changed = np.abs(img.astype(int) - 90).sum(axis=2) > 30
    ys, xs = np.nonzero(changed)
    assert box is not None
    assert abs(box.x - xs.min()) <= 1 and abs(box.x2 - (xs.max() + 1)) <= 1
    assert abs(box.y - ys.min()) <= 1 and abs(box.y2 - (ys.max() + 1)) <= 1
    assert box.h == pytest.approx(80, abs=2)


def test_signs_avoid_plates_and_each_other():
    photo = next(p for p in load_photos() if p.file == "Cars0.jpg")  # a large plate
    scene = compose_scene(photo, [SignSpec("stop"), SignSpec("speed_limit", 50),
                                  SignSpec("yield")], seed=11)
    boxes = [s.box for s in scene.signs] + list(scene.plates)
    assert len(scene.signs) == 3
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a.intersection(b) == 0


def test_compose_scene_is_deterministic_per_seed():
    photo = load_photos()[2]
    specs = [SignSpec("speed_limit", 70), SignSpec("no_entry")]
    a = compose_scene(photo, specs, seed=5, size=(640, 480))
    b = compose_scene(photo, specs, seed=5, size=(640, 480))
    c = compose_scene(photo, specs, seed=6, size=(640, 480))
    assert np.array_equal(a.image, b.image) and a.label_entry("x") == b.label_entry("x")
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (480, 640, 3)
    for s in a.signs:
        assert 24 <= max(s.box.w, s.box.h) <= 0.25 * 480 * 1.25
        assert s.box.x >= 0 and s.box.y >= 0 and s.box.x2 <= 640 and s.box.y2 <= 480


def test_labelled_set_is_written_in_the_project_label_format(tmp_path):
    labels = render_labelled_set(tmp_path, count=6, seed=4,
                                 sizes=[None, (1280, 720)])
    doc = json.loads(labels.read_text())
    assert len(doc["images"]) == 6
    for entry in doc["images"]:
        img = cv2.imread(str(tmp_path / entry["file"]))
        assert img.shape[:2] == (entry["height"], entry["width"])
        assert (entry["width"], entry["height"]) in ((416, 416), (1280, 720))
        assert set(entry) == {"file", "width", "height", "signs", "faces", "plates"}
        assert 1 <= len(entry["signs"]) <= 2 and len(entry["plates"]) == 1
        for sign in entry["signs"]:
            assert sign["class"] in vocab.SIGN_CLASSES
            x, y, w, h = sign["box"]
            assert all(isinstance(v, int) for v in sign["box"])
            assert 0 <= x and 0 <= y and x + w <= entry["width"] and y + h <= entry["height"]
            if sign["class"] in vocab.VALUE_RULES:
                units, lo, hi = vocab.VALUE_RULES[sign["class"]]
                assert sign["unit"] in units and lo <= sign["value"] <= hi
            else:
                assert "value" not in sign
    # scene i depends only on (seed, i): a longer set starts with the same scenes
    again = json.loads(render_labelled_set(tmp_path / "b", count=7, seed=4,
                                           sizes=[None, (1280, 720)]).read_text())
    assert again["images"][:6] == doc["images"]


def test_road_scenes_are_deterministic_and_fully_labelled():
    first = make_road_scene(0, (640, 480))
    again = make_road_scene(0, (640, 480))
    assert np.array_equal(first.image, again.image)
    speeds = set()
    with_faces = 0
    for i in range(scenes.ROAD_SCENE_COUNT):
        for size in ((640, 480), (1280, 720)):
            scene = make_road_scene(i, size)
            assert scene.image.shape == (size[1], size[0], 3)
            (speed,) = [s for s in scene.signs if s.sign_class == "speed_limit"]
            speeds.add((speed.value, speed.unit))
            assert 0.13 * size[1] <= speed.box.h <= 0.22 * size[1]
            assert scene.plates and scene.faces is not None
            for face in scene.faces:
                with_faces += 1
                assert 0.06 * size[1] <= face.h <= 0.11 * size[1]  # a pedestrian's face
    assert with_faces == 6  # three layouts carry a face, at two sizes
    assert len(speeds) == scenes.ROAD_SCENE_COUNT and (55, "mph") in speeds


def test_pasted_faces_are_real_faces_at_their_labelled_place():
    # The shipped YuNet model, called directly: a face detector must find the pasted faces.
    model = PHOTOS_DIR.parent / "models" / "yunet" / "yunet_s_dynamic.onnx"
    detector = cv2.FaceDetectorYN.create(str(model), "", (1280, 720), 0.6, 0.3, 100)
    for i in (0, 2, 4):
        scene = make_road_scene(i, (1280, 720))
        (face,) = scene.faces
        _, found = detector.detect(scene.image)
        boxes = [Box(*row[:4]) for row in (found if found is not None else [])]
        assert max(b.iou(face) for b in boxes) > 0.5


def test_photo_without_a_face_box_cannot_donate_one(tmp_path):
    bad = Photo("x.jpg", tmp_path / "x.jpg", 10, 10, "face", faces=(), plates=None)
    photos = [p for p in load_photos() if p.file != "obama.jpg"] + [
        Photo("obama.jpg", bad.path, 10, 10, "face", faces=())]
    with pytest.raises(ValueError, match="obama.jpg has no face box"):
        make_road_scene(0, (640, 480), photos=photos)


# ------------------------------------------------------------------------------- evaluation
def test_scoring_matches_by_box_and_checks_class_value_and_unit(tmp_path):
    img = np.zeros((100, 200, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    signs = [{"box": [10, 10, 40, 40], "class": "speed_limit", "value": 50, "unit": "km/h"},
             {"box": [100, 10, 40, 40], "class": "speed_limit", "value": 30, "unit": "mph"},
             {"box": [150, 50, 30, 30], "class": "stop"}]
    (tmp_path / "labels.json").write_text(json.dumps(
        {"images": [{"file": "a.png", "width": 200, "height": 100, "signs": signs}]}))

    def reader(image):
        return [SignReading("speed_limit", 0.9, "ocr", 50.0, "km/h", box=Box(12, 10, 40, 40)),
                SignReading("speed_limit", 0.9, "ocr", 30.0, "km/h", box=Box(100, 12, 40, 40)),
                SignReading("yield", 0.9, "ocr", box=Box(0, 60, 20, 20))]

    result = evaluate_labels(tmp_path / "labels.json", reader)
    assert result.by_class["speed_limit"].to_json() == {
        "labelled": 1, "read": 1, "class_ok": 1, "value_ok": 1, "accuracy": 1.0}
    assert result.by_class["speed_limit (mph)"].value_ok == 0  # unit wrong
    assert result.by_class["speed_limit (mph)"].class_ok == 1
    assert result.by_class["stop"].read == 0
    assert result.false_readings == 1
    assert result.total.labelled == 3 and result.total.value_ok == 1
    assert result.by_size["32-63 px"].labelled == 2 and result.by_size["<32 px"].labelled == 1
    assert "| **all** | 3 | 2 | 2 | 1 (33 %) |" in result.table()
    assert "200x100" in result.timing()
