"""`vlm-node sign-scenes`: held-out GTSRB crops placed into photos without signs, labelled."""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import gtsrb_kaggle_layout, read_bgr, shared
from vlm_node.analysis.gtsrb import SPEED_LIMIT_IDS
from vlm_node.analysis.sign_classifier import DEFAULT_MODEL
from vlm_node.cli.main import main
from vlm_node.errors import ConfigError
from vlm_node.evaluation.label_import import gtsrb_track
from vlm_node.evaluation.labels import load_labels
from vlm_node.evaluation.sign_scenes import (UPPER_SHARE, CropPicker, fade_mask,
                                             held_out_tracks, load_sign_crops, place_sign,
                                             place_signs)
from vlm_node.geometry import Box


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """The whole shared sample in the Kaggle layout (held-out and trained-on tracks)."""
    return gtsrb_kaggle_layout(tmp_path_factory.mktemp("gtsrb"), lambda r: True)


def test_track_names_come_from_the_file_name():
    assert gtsrb_track("Train/14/00014_00003_00021.png") == "14_3"
    assert gtsrb_track("00001_00042_00000.png") == "1_42"


def test_only_the_classifiers_held_out_tracks_are_loaded(layout):
    """The default set holds no crop the shipped classifier was trained on: every loaded crop's
    track is in the model's `val_tracks`, and the sample's trained-on crops are left out."""
    held = held_out_tracks(DEFAULT_MODEL)
    every = load_sign_crops(layout)
    crops = load_sign_crops(layout, held)
    assert 0 < len(crops) < len(every)
    assert all(c.track in set(held) for c in crops)
    assert {c.track for c in every} - {c.track for c in crops}  # trained-on tracks exist
    c = crops[0]
    img = read_bgr(c.path)
    assert 0 <= c.roi.x < c.roi.x2 <= img.shape[1] and 0 <= c.roi.y < c.roi.y2 <= img.shape[0]


def test_a_folder_without_the_gtsrb_table_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="Train.csv"):
        load_sign_crops(tmp_path)
    with pytest.raises(ConfigError, match="no GTSRB crops"):
        CropPicker([], 0.5, np.random.default_rng(0))


def test_the_crop_margin_fades_into_the_photo():
    """Opaque on the sign, transparent at the crop's border, rising in between."""
    mask = fade_mask(40, 40, Box(8, 8, 24, 24))
    assert mask[8:32, 8:32].min() == 1.0
    assert mask[0, :].max() < 0.1 and mask[:, 0].max() < 0.1 and mask[-1, :].max() < 0.1
    row = mask[20, :9]
    assert np.all(np.diff(row) > 0)


def test_a_pasted_sign_keeps_its_pixels_and_its_box():
    """The sign's box scales with the drawn size and moves to the paste point; its inside is
    the resized crop; nothing outside the crop's footprint changes."""
    crop = np.full((50, 50, 3), 40, np.uint8)
    crop[5:45, 5:45] = (30, 30, 220)  # the sign: red
    frame = np.full((200, 300, 3), 200, np.uint8)
    before = frame.copy()
    box = place_sign(frame, crop, Box(5, 5, 40, 40), 20.0, 100, 60)
    assert box.x == pytest.approx(102.5) and box.y == pytest.approx(62.5)
    assert box.w == pytest.approx(20) and box.h == pytest.approx(20)
    inside = frame[int(box.y) + 1:int(box.y2) - 1, int(box.x) + 1:int(box.x2) - 1]
    assert np.all(np.abs(inside.astype(int) - (30, 30, 220)) <= 1)
    outside = np.ones(frame.shape[:2], bool)
    outside[60:85, 100:125] = False
    assert np.array_equal(frame[outside], before[outside])


def test_signs_are_placed_in_the_upper_frame_clear_of_faces_and_each_other(layout):
    crops = load_sign_crops(layout)
    face = Box(100, 40, 80, 80)
    sizes = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        frame = np.full((480, 640, 3), 128, np.uint8)
        placed = place_signs(frame, CropPicker(crops, 0.5, rng), 4, (16, 48), rng, [face])
        assert 1 <= len(placed) <= 4
        for i, p in enumerate(placed):
            side = max(p.box.w, p.box.h)
            sizes.append(side)
            assert 15.5 <= side <= 48.5
            assert p.box.y2 <= UPPER_SHARE * 480 + 1
            assert p.box.intersection(face) == 0
            assert all(p.box.intersection(q.box) == 0 for q in placed[i + 1:])
    assert min(sizes) < 24 and max(sizes) > 32  # log-uniform over the range


def test_the_picker_keeps_the_speed_share_and_prefers_crops_not_enlarged(layout):
    crops = load_sign_crops(layout)
    rng = np.random.default_rng(3)
    picker = CropPicker(crops, 0.8, rng)
    picks = [picker.pick(30.0) for _ in range(400)]
    share = sum(p.class_id in SPEED_LIMIT_IDS for p in picks) / len(picks)
    assert 0.72 <= share <= 0.88
    # most sample crops are larger than 30 px: those are the ones drawn
    assert np.mean([max(p.roi.w, p.roi.h) >= 24 for p in picks]) > 0.9


def test_the_command_writes_a_labelled_set_that_analyze_reads(layout, tmp_path, capsys):
    """End to end: held-out crops into the shared face photos (their faces kept clear and
    carried; a labelled photo with signs would be skipped), the labels file loads with every
    placed sign's class, value and unit, the same seed gives the same frames, and the reader
    finds the placed signs: most speed values read right and none wrong."""
    photos = shared("faces")
    labels_file = shared("labels.json")
    out = tmp_path / "scenes"
    args = ["sign-scenes", str(layout), str(photos), "--photo-labels", str(labels_file),
            "--sizes", "28:56", "--speed-share", "1", "--signs-per-photo", "2", "-o", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "speed limits) placed into" in printed
    items = load_labels(out / "labels.json")
    assert items and all(it.path.is_file() for it in items)
    # carried from the photo labels (10 of the 16 face photos are labelled there)
    assert sum(it.faces is not None for it in items) == 10
    signs = [s for it in items for s in it.signs]
    assert all(s["class"] == "speed_limit" and s["unit"] == "km/h" and s["value"] > 0
               for s in signs)
    first = read_bgr(items[0].path)
    assert main(args[:-1] + [str(tmp_path / "again")]) == 0
    assert np.array_equal(first, read_bgr(tmp_path / "again" / items[0].file))
    for it in items:  # placed clear of the photo's labelled faces
        for s in it.signs if it.faces else ():
            assert all(Box(*s["box"]).intersection(f) == 0 for f in it.faces)

    from vlm_node.analysis.ocr_backend import OcrBackend

    right = wrong = 0
    with OcrBackend() as reader:
        for it in items:
            readings = [r for r in reader.read_signs(read_bgr(it.path)) if r.value is not None]
            for s in it.signs:
                box = Box(*s["box"])
                on = [r for r in readings if r.box is not None and r.box.iou(box) > 0.3]
                right += any(r.value == s["value"] for r in on)
                wrong += any(r.value != s["value"] for r in on)
    assert wrong == 0
    assert right >= 0.7 * len(signs)


def test_bad_arguments_fail_before_any_work(tmp_path, layout, capsys):
    with pytest.raises(SystemExit):
        main(["sign-scenes", str(layout), str(tmp_path), "--sizes", "40:20", "-o",
              str(tmp_path / "o")])
    assert "MIN:MAX" in capsys.readouterr().err
    assert main(["sign-scenes", str(layout), str(tmp_path), "--speed-share", "2", "-o",
                 str(tmp_path / "o")]) != 0
    assert "--speed-share must be in [0, 1]" in capsys.readouterr().err
    assert main(["sign-scenes", str(tmp_path), str(tmp_path), "-o", str(tmp_path / "o")]) != 0
    assert "no Train.csv" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written before the arguments were checked


def test_the_labels_name_the_source(layout, tmp_path):
    photos = shared("faces")
    assert main(["sign-scenes", str(layout), str(photos), "--max-photos", "2", "--tracks",
                 "all", "-o", str(tmp_path / "s")]) == 0
    doc = json.loads((tmp_path / "s" / "labels.json").read_text())
    assert "tracks all" in doc["source"] and len(doc["images"]) == 2


@pytest.mark.parametrize("fit", [False, True])
def test_photos_are_resized_to_the_frame_size_first_labels_alike(layout, tmp_path, fit):
    """--size: every frame is the camera's size, the photo's labelled faces follow the photo
    (stretched, or letterboxed with --fit), and the placed signs keep the sizes asked for in
    that frame (not enlarged with the photo)."""
    photos = shared("faces")
    labels_file = shared("labels.json")
    # the output names a photo by its path under PHOTOS, "/" as "__", as a .jpg
    original = {it.path.relative_to(photos).with_suffix(".jpg").as_posix().replace("/", "__"): it
                for it in load_labels(labels_file) if it.path.is_relative_to(photos)}
    sources = {p.relative_to(photos).with_suffix(".jpg").as_posix().replace("/", "__"): p
               for p in photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
    out = tmp_path / "scenes"
    assert main(["sign-scenes", str(layout), str(photos), "--photo-labels", str(labels_file),
                 "--size", "1920x1080", "--sizes", "16:24", "--max-photos", "6", "-o",
                 str(out)] + (["--fit"] if fit else [])) == 0
    doc = json.loads((out / "labels.json").read_text())
    assert ("fitted" if fit else "resized") + " to 1920x1080" in doc["source"]
    items = load_labels(out / "labels.json")
    assert len(items) == 6
    checked = 0
    for it in items:
        assert read_bgr(it.path).shape == (1080, 1920, 3)
        assert (it.width, it.height) == (1920, 1080)
        # (the crop is resized to whole pixels: the sign's side within a pixel of the draw)
        assert all(15 <= max(s["box"][2:]) <= 25 for s in it.signs)
        if fit:  # on the photo, never on the letterbox's black bands
            source = read_bgr(sources[it.path.name])
            scale = min(1920 / source.shape[1], 1080 / source.shape[0])
            photo = Box((1920 - round(source.shape[1] * scale)) // 2,
                        (1080 - round(source.shape[0] * scale)) // 2,
                        source.shape[1] * scale, source.shape[0] * scale)
            assert all(Box(*s["box"]).coverage_by(photo) > 0.999 for s in it.signs)
        src = original.get(it.path.name)
        if src is None or not src.faces:
            continue
        height, width = read_bgr(src.path).shape[:2]
        sx, sy = 1920 / width, 1080 / height
        if fit:
            sx = sy = min(sx, sy)
        dx = (1920 - round(width * sx)) // 2 if fit else 0
        for before, after in zip(src.faces, it.faces):
            assert after.x == pytest.approx(before.x * sx + dx, abs=0.02)
            assert after.w == pytest.approx(before.w * sx, abs=0.02)
            assert after.h == pytest.approx(before.h * sy, abs=0.02)
        checked += 1
    assert checked >= 2


def test_fit_needs_a_size(layout, tmp_path, capsys):
    assert main(["sign-scenes", str(layout), str(tmp_path), "--fit", "-o",
                 str(tmp_path / "o")]) != 0
    assert "--fit letterboxes photos into --size" in capsys.readouterr().err
