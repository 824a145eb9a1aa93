"""`vlm-node bench signs`: every photo read by every setting in turn, labels scaled with the
frame and scored by the rule of `analyze --labels`; variants parse and fail like parameters."""
import json
from pathlib import Path

import numpy as np
import pytest

from helpers import shared
from vlm_node.analysis.ocr_config import OcrConfig
from vlm_node.cli.bench_signs import parse_variant, spread
from vlm_node.cli.main import main
from vlm_node.errors import ConfigError
from vlm_node.evaluation.labels import load_labels
from vlm_node.evaluation.matching import scaled_signs
from vlm_node.tools.bench_node import letterboxed
from vlm_node.tools.bench_signs import bench_signs


def _labels():
    return {e.path.resolve(): e for e in load_labels(shared("signs_real_dev") / "labels.json")}


def test_each_setting_reads_the_same_frames_and_is_scored_at_the_frame_size():
    """Two GTSDB photos (two 80s; two 70s and a priority-road sign) enlarged to 1080p: both
    settings (the learned proposer's search, the default at 1080p, and the full colour/shape
    search) read all 5 signs with their class and all 4 values, none wrong; times and CPU are
    per frame, the ratio is against the first setting."""
    photos = [shared("signs_real_dev") / f"gtsdb_{n}.jpg" for n in ("00314", "00405")]
    lines = []
    figures = bench_signs(photos, [("default", OcrConfig()),
                                   ("full search", OcrConfig(learned_proposals=0))],
                          labels=_labels(), warmup=1, print_fn=lines.append)
    assert figures["size"] == [1920, 1080] and figures["images"] == 2
    for name in ("default", "full search"):
        f = figures["settings"][name]
        assert f["frames"] == 2 and f["median_ms"] > 0 and f["cpu_ms_per_frame"] > 0
        assert f["p95_ms"] >= f["median_ms"]
        assert f["signs"]["classes"] == [5, 5] and f["signs"]["values"] == [4, 4]
        assert f["signs"]["wrong_values"] == 0
        assert f["signs"]["wrong_values_on_signs"] == f["signs"]["values_on_no_sign"] == 0
    assert figures["settings"]["default"]["median_vs_first"] == 1.0
    # where a frame's time went: the search and the classifier ran on both frames, OCR read
    # the values; the parts and the rest add up to the mean frame time
    parts = figures["settings"]["default"]["parts_ms_per_frame"]
    top = {k: v for k, v in parts.items() if "." not in k}
    assert set(top) == {"search", "classify", "recognise", "other"}
    assert top["search"] > 0 and top["classify"] > 0 and top["recognise"] > 0
    assert top["other"] >= -0.2  # rounding of four figures to 0.1 ms
    assert sum(top.values()) == pytest.approx(figures["settings"]["default"]["mean_ms"],
                                              abs=0.3)
    # the search's own parts lie inside it; with the learned proposer (a 1080p frame) there
    # is no shape pass and no outline thread to wait for
    inner = {k: v for k, v in parts.items() if k.startswith("search.")}
    assert set(inner) == {"search.finder", "search.proposals", "search.shapes"}
    assert inner["search.finder"] > 0 and inner["search.proposals"] > 0
    assert inner["search.shapes"] == 0 and "classify.wait" not in parts
    assert sum(inner.values()) <= top["search"] + 0.3
    full = figures["settings"]["full search"]["parts_ms_per_frame"]
    assert all(full[k] > 0 for k in inner)
    # the classifier's wait for the outline thread (after the other boxes' batch) lies inside
    # its part; it may round to 0 when the thread finished first
    assert 0 <= full["classify.wait"] <= full["classify"] + 0.1
    # the first classifier batch's boxes: one a proposal at least, on both frames
    assert figures["settings"]["default"]["parts_items_per_frame"]["classify"] >= 1
    assert lines[0].startswith("2 photos resized to 1920x1080")
    assert any(line.startswith("full search") and "5/5" in line and "4/4" in line
               and " 0+0 " in line for line in lines)  # wrong values: on a sign + on none
    assert any(line.startswith("default: ms a frame by part (mean): search ")
               and "(finder " in line and ", classify " in line and " crops)" in line
               and ", )" not in line for line in lines)


def test_native_size_keeps_the_photo_and_its_labels():
    photo = shared("signs_real_dev") / "gtsdb_00330.jpg"  # 816x480, one 50 (40 px)
    figures = bench_signs([photo], [("default", OcrConfig())], size=None, labels=_labels(),
                          warmup=0, print_fn=lambda _: None)
    assert figures["size"] == "native"
    assert figures["settings"]["default"]["signs"]["values"] == [1, 1]


def test_fit_letterboxes_a_photo_and_moves_its_labels_with_it():
    """A 4:3 frame fits in 1920x1080 at its own aspect (1440x1080, 240 px of black each side);
    a GTSDB photo read so is scored with its labels scaled and shifted alike."""
    img = np.zeros((300, 400, 3), np.uint8)
    img[50, 100] = 255
    frame, scale, dx, dy = letterboxed(img, (1920, 1080))
    assert frame.shape == (1080, 1920, 3) and scale == pytest.approx(3.6)
    assert (dx, dy) == (240.0, 0.0)
    assert not frame[:, :240].any() and not frame[:, 1680:].any()
    ys, xs = np.nonzero(frame[..., 0] > 64)
    assert abs(xs.mean() - (100 * scale + dx)) < 3 and abs(ys.mean() - 50 * scale) < 3
    photo = shared("signs_real_dev") / "gtsdb_00330.jpg"  # 816x480, one 50 (40 px)
    lines = []
    figures = bench_signs([photo], [("default", OcrConfig())], labels=_labels(), warmup=0,
                          fit=True, print_fn=lines.append)
    assert figures["fit"] is True and lines[0].startswith("1 photos letterboxed in 1920x1080")
    assert figures["settings"]["default"]["signs"]["values"] == [1, 1]


def test_labels_scale_with_the_frame():
    signs = [{"class": "stop", "box": [10, 20, 30, 40]}, {"class": "yield", "box": None}]
    assert scaled_signs(signs, 2.0, 0.5) == [{"class": "stop", "box": [20.0, 10.0, 60.0, 20.0]},
                                             {"class": "yield", "box": None}]
    assert signs[0]["box"] == [10, 20, 30, 40]  # the labels themselves are left alone
    moved = scaled_signs(signs[:1], 2.0, 2.0, 5.0, 7.0)  # and placed in a letterbox
    assert moved == [{"class": "stop", "box": [25.0, 47.0, 60.0, 80.0]}]


def test_variants_are_analysis_ocr_parameters_with_yaml_values():
    assert parse_variant("floor 6:search_min_px=6") == (
        "floor 6", {"analysis.ocr.search_min_px": 6})
    assert parse_variant("x: proposals.max_proposals=1000, verifier=false") == (
        "x", {"analysis.ocr.proposals.max_proposals": 1000, "analysis.ocr.verifier": False})
    assert parse_variant("again:") == ("again", {})  # the configured setting, a second time
    for bad in ("no colon", ":a=1", "name:a", "name:a=1,b"):
        with pytest.raises(ConfigError):
            parse_variant(bad)


@pytest.mark.parametrize("variant, says", [("bad:no_such_setting=1", "no_such_setting"),
                                           ("bad:search_min_px=0", "search_min_px"),
                                           ("bad", "NAME:PARAM=VALUE")])
def test_a_bad_variant_stops_before_any_photo_is_read(variant, says, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "signs", str(tmp_path), "--variant", variant])
    assert says in str(exc.value)


def test_labels_that_name_none_of_the_photos_are_an_error(tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"images": [{"file": "elsewhere.jpg", "signs": []}]}))
    photo = shared("signs_real_dev") / "gtsdb_00330.jpg"
    with pytest.raises(SystemExit) as exc:
        main(["bench", "signs", str(photo), "--labels", str(labels)])
    assert "labels none of the 1 photos" in str(exc.value)


@pytest.mark.parametrize("raw", [False, True])
def test_the_command_writes_its_figures(tmp_path, raw):
    """By default each photo is anonymized first and read as the node reads it; --raw reads
    the photo alone."""
    photo = shared("signs_real_dev") / "gtsdb_00330.jpg"
    out = tmp_path / "signs.json"
    assert main(["bench", "signs", str(photo), "--size", "960x540", "--warmup", "0",
                 "--variant", "floor 6:search_min_px=6", "-o", str(out)]
                + (["--raw"] if raw else [])) == 0
    figures = json.loads(out.read_text())
    assert figures["size"] == [960, 540] and figures["anonymized"] is not raw
    assert list(figures["settings"]) == ["configured", "floor 6"]
    assert figures["settings"]["configured"]["speed_values"] == 1  # the 50


def test_anonymized_photos_are_read_with_what_the_anonymizer_found(monkeypatch):
    """The reader gets the anonymizer's frame (hints, people, vehicles: `read_frame`); a photo
    the anonymizer fails on is skipped and counted, never read raw."""
    from vlm_node.anonymize.config import AnonymizerConfig
    from vlm_node.errors import AnonymizationError
    from vlm_node.pipeline import Pipeline

    photos = [shared("signs_real_dev") / f"gtsdb_{n}.jpg" for n in ("00314", "00330")]
    real = Pipeline.anonymize
    seen = []

    def anonymize(self, meta, bgr, stream=None):
        if meta.frame_id.endswith("00330.jpg"):
            raise AnonymizationError("detector failed")
        frame = real(self, meta, bgr, stream)
        seen.append(frame)
        return frame

    monkeypatch.setattr(Pipeline, "anonymize", anonymize)
    figures = bench_signs(photos, [("default", OcrConfig())], labels=_labels(), warmup=0,
                          print_fn=lambda _: None, anonymizer=AnonymizerConfig())
    assert figures["anonymized"] and figures["not_anonymized"] == 1 and figures["images"] == 1
    assert len(seen) == 1 and seen[0].image.shape == (1080, 1920, 3)
    f = figures["settings"]["default"]
    assert f["frames"] == 1 and f["signs"]["classes"] == [2, 2] and f["signs"]["values"] == [2, 2]


def test_spread_takes_evenly_spaced_photos():
    items = [Path(str(i)) for i in range(10)]
    assert spread(items, 0) == items and spread(items, 20) == items
    assert spread(items, 3) == [items[0], items[3], items[6]]
