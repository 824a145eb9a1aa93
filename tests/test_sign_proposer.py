"""The learned sign proposer: decoding, the reserved-range guard, training and export, and the
shipped model on held-out real photos."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from helpers import gtsrb_kaggle_layout, read_bgr, shared
from vlm_node.analysis.sign_proposer import DEFAULT_MODEL, SignProposer, peaks
from vlm_node.geometry import Box
from vlm_node.tools import train_sign_proposer as tool


def test_peaks_are_local_maxima_best_first_with_sizes_in_pixels() -> None:
    heat = np.zeros((20, 30), np.float32)
    sizes = np.zeros((2, 20, 30), np.float32)
    heat[5, 7], heat[5, 8] = 0.9, 0.5  # a plateau's shoulder is no second peak
    heat[15, 20] = 0.6
    heat[2, 2] = 0.02  # under min_score
    sizes[:, 5, 7] = np.log(3.0), np.log(2.0)
    sizes[:, 15, 20] = np.log(5.0), np.log(5.0)
    got = peaks(heat, sizes, stride=4, k=10, min_score=0.05)
    assert [round(s, 2) for _, s in got] == [0.9, 0.6]
    first, second = got[0][0], got[1][0]
    # centre of cell (7, 5) at stride 4 is (30, 22); 3 x 2 cells are 12 x 8 px
    assert (first.x, first.y, first.w, first.h) == pytest.approx((24.0, 18.0, 12.0, 8.0))
    assert (second.x + second.w / 2, second.y + second.h / 2) == pytest.approx((82.0, 62.0))
    assert peaks(heat, sizes, 4, 1, 0.05)[0][1] == pytest.approx(0.9)
    assert peaks(heat, sizes, 4, 10, 0.95) == []


@pytest.mark.parametrize("name, kept", [
    ("signs_real_dev/gtsdb_00599.jpg", False), ("gtsdb_00600.jpg", True),
    ("gtsdb-00899.jpg", True), ("gtsdb_00060.jpg", False), ("images/road437.png", False),
    ("images/road438.png", True), ("road500.png", True), ("road876.png", True),
    ("road43.png", False), ("road4.png", False)])
def test_reserved_ranges_are_recognised(name: str, kept: bool) -> None:
    assert tool.reserved(name) is kept


def test_natural_order_compares_numbers_as_numbers() -> None:
    names = ["road10.png", "road9.png", "road100.png", "road1.png"]
    assert sorted(names, key=tool.natural_key) == ["road1.png", "road9.png", "road10.png",
                                                   "road100.png"]


def test_reserved_photos_are_refused(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "labels.json").write_text(
        '{"images": [{"file": "road500.png", "signs": [{"box": [1, 1, 20, 20], '
        '"class": "stop"}]}]}')
    with pytest.raises(SystemExit, match="reserved"):
        tool.load_photos([str(tmp_path / "labels.json")], "", 0.25)


def _disc_photo(rng: np.random.Generator) -> tool.Photo:
    import cv2

    bgr = rng.integers(60, 120, (200, 260, 3), dtype=np.uint8)
    boxes = []
    for _ in range(3):
        r = int(rng.integers(8, 20))
        cx, cy = int(rng.integers(r, 260 - r)), int(rng.integers(r, 200 - r))
        cv2.circle(bgr, (cx, cy), r, (30, 30, 220), -1)
        cv2.circle(bgr, (cx, cy), int(r * 0.7), (240, 240, 240), -1)
        boxes.append((cx - r, cy - r, 2 * r, 2 * r))
    return tool.Photo("disc.png", bgr, np.array(boxes, np.float32))


def test_training_exports_a_model_the_runtime_reads(tmp_path) -> None:  # noqa: ANN001
    pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    photos = [_disc_photo(rng) for _ in range(4)]
    crop, heat, size, mask = tool.sample(photos[0], rng)
    assert crop.shape == (tool.CROP, tool.CROP, 3) and heat.shape == size.shape[1:]
    assert heat.max() <= 1.0 and mask.sum() == (heat == 1.0).sum()
    net = tool.train(photos, steps=3, batch=2, log_every=0)
    out = tmp_path / "proposer.onnx"
    tool.export(net, out, {"steps": 3})
    proposer = SignProposer(out)
    assert proposer.stride == tool.STRIDE
    got = proposer.propose(photos[0].bgr, k=5, min_score=0.0)  # 200 x 260: padded to 208 x 272
    assert len(got) == 5
    assert all(0 <= b.x + b.w / 2 <= 272 and 0 <= b.y + b.h / 2 <= 208 for b, _ in got)
    with pytest.raises(ValueError, match="uint8"):
        proposer.propose(photos[0].bgr[..., 0], k=5)


@pytest.fixture(scope="module")
def paster(tmp_path_factory):  # noqa: ANN001, ANN201
    """A Paster over the shared GTSRB sample in the Kaggle layout (held-out tracks and all)."""
    return tool.Paster.from_folder(gtsrb_kaggle_layout(tmp_path_factory.mktemp("gtsrb"),
                                                       lambda r: True))


def test_the_classifiers_held_out_tracks_are_never_pasted(paster) -> None:  # noqa: ANN001
    """The placed-sign sets are built from the classifier's held-out tracks: a proposer trained
    on them would be scored on signs it saw."""
    from vlm_node.analysis.sign_classifier import DEFAULT_MODEL as CLASSIFIER
    from vlm_node.evaluation.sign_scenes import held_out_tracks, load_sign_crops

    held = set(held_out_tracks(CLASSIFIER))
    every = load_sign_crops(paster.crops[0].path.parents[2])
    assert paster.crops and not {c.track for c in paster.crops} & held
    assert len(paster.crops) == sum(c.track not in held for c in every) < len(every)


def test_pasted_signs_are_labelled_where_their_pixels_are(paster) -> None:  # noqa: ANN001
    """Each pasted sign's box holds the crop's pixels (the grey canvas changed there and only
    around it), none overlaps a labelled sign or another pasted one, and the sample's heatmap
    gets a centre for each."""
    rng = np.random.default_rng(3)
    seen = 0
    for _ in range(20):
        canvas = np.full((320, 320, 3), 128, np.uint8)
        own = np.array([[10, 10, 40, 40]], np.float32)
        boxes = paster.paste(canvas, own, rng)
        assert np.array_equal(boxes[:1], own) and 1 <= len(boxes) <= 1 + tool.PASTE_COUNT[1]
        changed = np.any(canvas != 128, axis=2)
        for x, y, w, h in boxes[1:]:
            b = Box(float(x), float(y), float(w), float(h))
            assert tool.PASTE_SIZES[0] - 1 <= max(w, h) <= tool.PASTE_SIZES[1] + 1
            assert b.intersection(Box(10, 10, 40, 40)) == 0
            inside = changed[int(y):int(y + h), int(x):int(x + w)]
            assert inside.mean() > 0.9  # the sign itself is opaque
            seen += 1
        pasted = [Box(*map(float, b)) for b in boxes[1:]]
        assert all(a.intersection(b) == 0 for i, a in enumerate(pasted) for b in pasted[i + 1:])
        ys, xs = np.nonzero(changed)
        grown = [b.expanded(0.35) for b in pasted]  # the crop's faded margin lies around it
        assert all(any(g.x <= x + 0.5 <= g.x2 and g.y <= y + 0.5 <= g.y2 for g in grown)
                   for x, y in zip(xs[::7], ys[::7]))
    assert seen >= 20
    photo = tool.Photo("grey.png", np.full((400, 400, 3), 128, np.uint8),
                       np.zeros((0, 4), np.float32))
    centres = [int(tool.sample(photo, rng, paster)[3].sum()) for _ in range(40)]
    assert 0 < sum(c > 0 for c in centres) < 40  # about PASTE_SHARE of the crops get signs
    assert all(c == 0 for c in (int(tool.sample(photo, rng)[3].sum()) for _ in range(5)))


def test_backgrounds_are_unlabelled_photos_and_need_paste(
        tmp_path, capsys) -> None:  # noqa: ANN001
    cv2.imwrite(str(tmp_path / "street.jpg"), np.full((64, 96, 3), 90, np.uint8))
    (bg,) = tool.load_backgrounds([tmp_path])
    assert bg.bgr.shape == (64, 96, 3) and bg.boxes.shape == (0, 4)
    with pytest.raises(SystemExit, match="no images"):
        tool.load_backgrounds([tmp_path / "empty"])
    cv2.imwrite(str(tmp_path / "road500.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(SystemExit, match="reserved"):
        tool.load_backgrounds([tmp_path])
    with pytest.raises(SystemExit):
        tool.main(["--labels", str(tmp_path / "l.json"), "--backgrounds", str(tmp_path),
                   "--output", str(tmp_path / "p.onnx")])
    assert "give --paste too" in capsys.readouterr().err


def test_missing_model_is_a_clear_error(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(FileNotFoundError, match="sign proposer model"):
        SignProposer(tmp_path / "none.onnx")


def test_shipped_model_covers_held_out_gtsdb_signs_with_ten_boxes() -> None:
    """The held-out quarter of the GTSDB development photos (never trained on): the shipped
    model's ten best boxes a photo cover most signs of 16 px and more. The model card's
    figure is the same measurement at IoU 0.5 and 0.3 with the Kaggle photos too."""
    labels = shared("signs_real_dev/labels.json")
    trained, held_out = tool.load_photos([str(labels)], "andrewmvd_", 0.25)
    assert len(held_out) > 100
    assert min(p.name for p in held_out) > max(p.name for p in trained)
    proposer = SignProposer(DEFAULT_MODEL)
    hits = total = 0
    for photo in held_out:
        boxes = [b for b, _ in proposer.propose(photo.bgr, k=10)]
        for x, y, w, h in photo.boxes:
            if max(w, h) < 16:
                continue
            total += 1
            hits += any(Box(float(x), float(y), float(w), float(h)).iou(b) >= 0.3 for b in boxes)
    assert total > 80
    assert hits / total >= 0.9, (hits, total)


def test_shipped_model_finds_held_out_gtsrb_signs_placed_into_held_out_road_photos(
        tmp_path) -> None:  # noqa: ANN001
    """Why the proposer was retrained with pasted signs: GTSRB crops of the classifier's
    held-out tracks (never pasted in training), placed at 20-48 px into GTSDB development
    photos of the proposer's held-out quarter (never trained on), are covered by its ten best
    boxes at IoU >= 0.5 (the first proposer, trained without pasted signs: 101 of 116 = 0.87;
    the shipped one 115 of 116)."""
    from vlm_node.analysis.sign_classifier import DEFAULT_MODEL as CLASSIFIER
    from vlm_node.evaluation.sign_scenes import (CropPicker, held_out_tracks, load_sign_crops,
                                                 place_signs)

    crops = load_sign_crops(gtsrb_kaggle_layout(tmp_path, lambda r: True),
                            held_out_tracks(CLASSIFIER))
    photos = [p for p in sorted(shared("signs_real_dev").glob("gtsdb_00[45]*.jpg"))
              if p.stem > "gtsdb_00410"][::4]
    assert len(photos) == 29
    proposer = SignProposer(DEFAULT_MODEL)
    rng = np.random.default_rng(0)
    picker = CropPicker(crops, 0.5, rng)
    hits = total = 0
    for path in photos:
        frame = read_bgr(path)
        placed = place_signs(frame, picker, 4, (20.0, 48.0), rng)
        boxes = [b for b, _ in proposer.propose(frame, k=10)]
        total += len(placed)
        hits += sum(any(p.box.iou(b) >= 0.5 for b in boxes) for p in placed)
    assert total >= 100
    assert hits / total >= 0.95, (hits, total)


def _reader(**settings: object):  # noqa: ANN202
    from vlm_node.analysis.ocr_backend import OcrBackend
    from vlm_node.analysis.ocr_config import OcrConfig

    reader = OcrBackend(OcrConfig(**settings))
    reader.load()
    return reader


def test_reader_with_learned_outlines_runs_no_hough_pass(monkeypatch) -> None:  # noqa: ANN001
    """`learned_replaces: outlines`: the proposer's boxes stand for the Hough outlines
    (find_circles never called), the colour search stays, and a held-out GTSDB 80 reads as
    it does with the full search."""
    from vlm_node.analysis import ocr_backend

    bgr = read_bgr(shared("signs_real_dev/gtsdb_00500.jpg"))
    full = _reader(learned_proposals=0)
    expected = [(r.sign_class, r.value) for r in full.read_signs(bgr)]
    full.close()
    assert ("speed_limit", 80.0) in expected

    def no_hough(*_args: object, **_kw: object) -> None:
        raise AssertionError("the Hough pass ran")

    monkeypatch.setattr(ocr_backend, "find_circles", no_hough)
    reader = _reader(learned_replaces="outlines", learned_min_side=0)
    try:
        assert "proposer sign_proposer.onnx" in reader.model_id
        got = [(r.sign_class, r.value) for r in reader.read_signs(bgr)]
    finally:
        reader.close()
    assert ("speed_limit", 80.0) in got


def test_reader_with_learned_search_keeps_only_the_finder(monkeypatch) -> None:  # noqa: ANN001
    """`learned_replaces: search`: no frame-wide colour proposals, shapes or Hough outlines;
    the proposer's boxes are classified at each of LEARNED_SCALES and read as outlines through
    the ring fitted in each, the paint regions in the windows around them are classified
    beside them (`learned_paint_regions`), and the sign is read."""
    from vlm_node.analysis import ocr_backend
    from vlm_node.analysis.circle_proposals import fit_ring

    def not_searched(*_args: object, **_kw: object) -> None:
        raise AssertionError("the colour/shape search ran")

    for name in ("find_circles", "find_proposals", "find_triangles", "find_diamonds"):
        monkeypatch.setattr(ocr_backend, name, not_searched)
    bgr = read_bgr(shared("signs_real_dev/gtsdb_00500.jpg"))
    bare = _reader(learned_min_side=0, learned_paint_regions=0)
    reader = _reader(learned_min_side=0)
    try:
        assert reader.config.learned_replaces == "search"
        found = reader._search(bgr)  # noqa: SLF001
        n = len(found.circles)
        assert 0 < n <= 10 and found.triangles == found.diamonds == []
        learned = found.proposals[:n]
        for a, b in zip(learned, found.proposals[n:2 * n]):
            assert (b.w / a.w, b.x + b.w / 2) == pytest.approx((1.15, a.x + a.w / 2))
        assert found.circles == [fit_ring(bgr, b, ocr_backend.LEARNED_FIT_SIDE)
                                 for b in learned]
        # the windows' paint regions come after the scaled boxes, each inside a window
        regions = found.proposals[n * len(ocr_backend.LEARNED_SCALES):]
        assert regions
        # (a window is the square twice the box's longer side about its centre; a region's box
        # is its paint's, grown by the search's margin, so only its centre is sure to lie in
        # the window that found it)
        windows = [Box(b.center[0] - max(b.w, b.h), b.center[1] - max(b.w, b.h),
                       2 * max(b.w, b.h), 2 * max(b.w, b.h)) for b in learned]
        assert all(any(w.x <= r.center[0] <= w.x2 and w.y <= r.center[1] <= w.y2
                       for w in windows) for r in regions)
        bare_boxes = bare._search(bgr).proposals  # noqa: SLF001
        assert len(bare_boxes) == n * len(ocr_backend.LEARNED_SCALES)
        got = [(r.sign_class, r.value) for r in reader.read_signs(bgr)]
    finally:
        reader.close()
        bare.close()
    assert ("speed_limit", 80.0) in got


def test_the_frame_size_picks_the_search(monkeypatch) -> None:  # noqa: ANN001
    """By default a frame with a side of `learned_min_side` (1280) or more goes through the
    learned proposer (no frame-wide triangle search), a smaller one through the full search,
    in the same reader; both read the GTSDB 80."""
    from vlm_node.analysis import ocr_backend

    calls: list[tuple[int, int]] = []
    real = ocr_backend.find_triangles

    def counted(image, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(image.shape[:2])
        return real(image, *args, **kwargs)

    monkeypatch.setattr(ocr_backend, "find_triangles", counted)
    bgr = read_bgr(shared("signs_real_dev/gtsdb_00500.jpg"))  # 816 x 480
    reader = _reader()
    try:
        assert reader.config.learned_min_side == 1280
        native = [(r.sign_class, r.value) for r in reader.read_signs(bgr)]
        assert calls == [(480, 816)]
        big = [(r.sign_class, r.value) for r in reader.read_signs(cv2.resize(bgr, (1920, 1080)))]
        assert calls == [(480, 816)]  # the 1080p frame: the learned search
    finally:
        reader.close()
    assert ("speed_limit", 80.0) in native and ("speed_limit", 80.0) in big


def _dark_120_scene() -> tuple[np.ndarray, Box]:
    """A held-out GTSRB 120 (track 8_24, a dark crop: its brightest tenth under grey 35) placed
    at 24 px into a GTSDB road photo (`sign_scenes.place_sign`)."""
    from vlm_node.evaluation.sign_scenes import place_sign

    crop = read_bgr(shared("gtsrb_train_sample/00008_00024_00029.png"))
    h, w = crop.shape[:2]
    mx, my = max(1, w // 10), max(1, h // 10)
    frame = read_bgr(shared("signs_real_dev/gtsdb_00304.jpg"))
    box = place_sign(frame, crop, Box(mx, my, w - 2 * mx, h - 2 * my), 24.0, 600, 150)
    return frame, box


def test_learned_boxes_added_to_the_full_search_read_a_dark_sign() -> None:
    """`learned_adds` (the default): on a frame under `learned_min_side` the full search keeps
    every box and the proposer's boxes where it has none of their size are added as proposals
    (at LEARNED_SCALES, not as outlines); a dark 120 that the paint-based search does not find
    is then read through one of them, at the classifier's probability of at least 0.97 (only
    since `learned_known_area`: a small paint region on the sign kept that box out before)."""
    from vlm_node.analysis import ocr_backend

    frame, box = _dark_120_scene()
    full = _reader(learned_adds=False)
    adds = _reader()
    try:
        def values(reader) -> list[float | None]:  # noqa: ANN001
            return [r.value for r in reader.read_signs(frame)
                    if r.box is not None and r.box.iou(box) > 0.3]

        assert values(full) == []
        assert values(adds) == [120.0]
        read = [r for r in adds.read_signs(frame) if r.box is not None and r.box.iou(box) > 0.3]
        assert read[0].source == "classifier"
        assert read[0].confidence >= ocr_backend.ADDED_MIN_PROBABILITY
        plain, more = full._search(frame), adds._search(frame)  # noqa: SLF001
        assert plain.added == 0 and 0 < more.added <= 10 * len(ocr_backend.LEARNED_SCALES)
        assert more.proposals[:len(plain.proposals)] == plain.proposals
        assert len(more.proposals) == len(plain.proposals) + more.added
        assert more.circles == plain.circles  # the Hough outlines are not replaced
        added = more.proposals[len(plain.proposals):]
        assert any(b.iou(box) > 0.3 for b in added)
        known = [c.box for c in more.candidates] + plain.proposals
        share = adds.config.learned_known_area
        assert all(b.iou(k) <= ocr_backend.ADDED_KNOWN_IOU or k.area < share * b.area
                   for b in added for k in known)
        # the box that reads the 120 overlaps a small paint region of the sign: with every
        # overlapping box counting as known (the earlier rule), it is not added
        assert any(b.iou(box) > 0.3 and b.iou(k) > ocr_backend.ADDED_KNOWN_IOU
                   for b in added for k in known)
    finally:
        full.close()
        adds.close()
    every = _reader(learned_known_area=0.0)
    try:
        assert [r.value for r in every.read_signs(frame)
                if r.box is not None and r.box.iou(box) > 0.3] == []
    finally:
        every.close()


def test_only_search_boxes_of_the_learned_boxs_size_make_it_known() -> None:
    """`_not_known` with `learned_known_area`: a small region inside a learned box (IoU 0.25)
    does not stand for it at 0.5, a box of its size does; at 0 both do (the earlier rule)."""
    from vlm_node.analysis.ocr_backend import ADDED_KNOWN_IOU, _not_known
    from vlm_node.geometry import box_array

    learned = [Box(0, 0, 20, 20)]
    small, big = box_array([Box(5, 5, 10, 10)]), box_array([Box(2, 2, 20, 20)])
    assert Box(0, 0, 20, 20).iou(Box(5, 5, 10, 10)) > ADDED_KNOWN_IOU
    assert _not_known(learned, small, ADDED_KNOWN_IOU) == []
    assert _not_known(learned, small, ADDED_KNOWN_IOU, 0.5) == learned
    assert _not_known(learned, big, ADDED_KNOWN_IOU, 0.5) == []
    assert _not_known(learned, box_array([]), ADDED_KNOWN_IOU, 0.5) == learned


def test_what_an_added_learned_box_may_publish() -> None:
    """An added learned box's answer stands only when sure (>= ADDED_MIN_PROBABILITY) and not a
    speed limit without its number, on a box with some colour; a box counts as on an outline
    above ADDED_KNOWN_IOU."""
    from vlm_node.analysis import ocr_backend
    from vlm_node.analysis.gtsrb import GTSRB_CLASSES
    from vlm_node.analysis.sign_classifier import SPEED_FAMILY, SignClass

    sure = ocr_backend.ADDED_MIN_PROBABILITY
    limit_50 = GTSRB_CLASSES[2]
    assert limit_50.value == 50
    assert ocr_backend._added_reading(SignClass("2", sure, limit_50))  # noqa: SLF001
    assert not ocr_backend._added_reading(SignClass("2", sure - 0.01, limit_50))  # noqa: SLF001
    assert not ocr_backend._added_reading(SignClass(SPEED_FAMILY, 0.99, None))  # noqa: SLF001
    grey = np.full((40, 40, 3), 120, np.uint8)
    cv2.circle(grey, (20, 20), 12, (255, 255, 255), 2)  # a white mark on grey: no colour
    assert not ocr_backend._coloured(grey, Box(5, 5, 30, 30))  # noqa: SLF001
    dark = np.full((40, 40, 3), 20, np.uint8)
    cv2.circle(dark, (20, 20), 12, (10, 10, 60), 4)  # a dark sign's rim keeps its hue
    assert ocr_backend._coloured(dark, Box(5, 5, 30, 30))  # noqa: SLF001
    assert not ocr_backend._coloured(dark, Box(50, 50, 10, 10))  # noqa: SLF001 (outside)
    from vlm_node.geometry import box_array

    near = ocr_backend._near  # noqa: SLF001
    box = Box(10, 10, 20, 20)
    assert near([box, Box(100, 100, 20, 20)], box_array([Box(12, 12, 20, 20)]), 0.2) == \
        [True, False]
    assert near([box], box_array([]), 0.2) == [False] and near([], box_array([box]), 0.2) == []


def test_settings_resolve_and_bad_values_are_refused() -> None:
    from vlm_node.config import resolve
    from vlm_node.errors import ConfigError

    cfg = resolve().analysis.ocr
    assert (cfg.learned_proposals, cfg.learned_min_side, cfg.learned_replaces,
            cfg.learned_paint_regions, cfg.learned_adds) == (10, 1280, "search", 2.0, True)
    cfg = resolve(overrides={"analysis.ocr.learned_proposals": 0,
                             "analysis.ocr.learned_replaces": "outlines"}).analysis.ocr
    assert (cfg.learned_proposals, cfg.learned_replaces) == (0, "outlines")
    with pytest.raises(ConfigError, match="learned_min_side"):
        resolve(overrides={"analysis.ocr.learned_min_side": -1})
    with pytest.raises(ConfigError, match="learned_paint_regions"):
        resolve(overrides={"analysis.ocr.learned_paint_regions": 5.0})
    with pytest.raises(ConfigError, match="learned_replaces"):
        resolve(overrides={"analysis.ocr.learned_replaces": "everything"})
    with pytest.raises(ConfigError, match="maximum 200"):
        resolve(overrides={"analysis.ocr.learned_proposals": 500})
