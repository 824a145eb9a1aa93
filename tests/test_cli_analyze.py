"""`vlm-node analyze` and `vlm-node bench analyze`: inputs, JSON lines, label scoring; end to end
against the local chat-completions test server."""
import argparse
import json

import cv2
import numpy as np
import pytest

from helpers import paste_rgba, read_bgr, shared
from test_openai_backend import MODEL, ChatServer
from vlm_node.tools.bench_analyze import bench_analyze
from vlm_node.cli import analyze as cli
from vlm_node.cli.bench_analyze import add_analyze_parser
from vlm_node.errors import ConfigError
from vlm_node.evaluation.matching import match_signs
from vlm_node.evaluation.signs import SignScore, score_signs
from vlm_node.geometry import Box
from vlm_node.tools.render.signs import SignSpec, render_sign
from vlm_node.results import AnalysisResult, SignReading


def parse(argv, register=cli.register):
    parser = argparse.ArgumentParser(prog="vlm-node")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_find_images_file_directory_and_glob(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.jpg", "a/b/y.PNG", "a/notes.txt", "z.jpg"):
        (tmp_path / name).write_bytes(b"")
    root = str(tmp_path)
    assert cli.find_images(f"{root}/z.jpg") == [f"{root}/z.jpg"]
    assert cli.find_images(f"{root}/a") == [f"{root}/a/b/y.PNG", f"{root}/a/x.jpg"]
    assert cli.find_images(f"{root}/a/") == [f"{root}/a/b/y.PNG", f"{root}/a/x.jpg"]
    assert cli.find_images(f"{root}/**/*.jpg") == [f"{root}/a/x.jpg", f"{root}/z.jpg"]
    with pytest.raises(FileNotFoundError, match="no images"):
        cli.find_images(f"{root}/*.gif")


def reading(cls, value=None, box=None):
    return SignReading(cls, 0.9, "vlm", value, "km/h" if value else "", "", box)


def sign(cls, value=None, box=None):
    return {"class": cls, "value": value, "box": box.to_list() if box else None}


def test_matching_by_iou_then_by_class_in_the_image():
    """analyze scores with the one rule of evaluation.matching (tested in test_eval_metrics)."""
    labels = [sign("speed_limit", 50, Box(10, 10, 40, 40)), sign("stop"),
              sign("yield", None, Box(300, 10, 40, 40))]
    readings = [reading("stop", box=Box(200, 200, 30, 30)),  # boxless label: class match
                reading("speed_limit", 50, Box(12, 11, 40, 40)),
                reading("yield")]  # boxless reading: class match
    matches = match_signs(readings, labels)
    assert [m.reading for m in matches] == [readings[1], readings[0], readings[2]]
    # an overlapping reading of the wrong class is matched (and scored wrong)
    [m] = match_signs([reading("no_entry", box=Box(10, 10, 40, 40))], labels[:1])
    assert m.reading is not None and not m.class_ok
    # no overlap and both boxed: no match, even with the same class
    assert [m.reading for m in match_signs(
        [reading("speed_limit", 50, Box(400, 300, 20, 20))], labels[:1])][0] is None


def test_scores():
    score = SignScore()
    labels = [sign("speed_limit", 50, Box(10, 10, 40, 40)),
              sign("speed_limit", 80, Box(100, 10, 40, 40)),
              sign("stop", None, Box(200, 10, 40, 40))]
    result = AnalysisResult([reading("speed_limit", 50, Box(10, 10, 40, 40)),
                             reading("speed_limit", 60, Box(100, 10, 40, 40)),
                             reading("yield", None, Box(200, 10, 40, 40)),
                             reading("no_entry", None, Box(500, 300, 40, 40))], degraded=True)
    score_signs(score, labels, result)
    s = score.summary()
    assert s["class_accuracy"] == 0.6667
    assert s["speed_limit_value_accuracy"] == 0.5 and s["speed_limit_signs"] == 2
    assert s["unmatched_readings"] == 1 and s["degraded_images"] == 1
    assert s["per_class"]["stop"] == {"correct": 0, "labelled": 1}
    # both speed limits are 40 px: one right, one wrong (60 on an 80)
    assert s["speed_values_by_size"] == {"30-60 px": {"correct": 1, "labelled": 2, "wrong": 1,
                                                      "accuracy": 0.5}}
    small = [sign("speed_limit", 30, Box(5, 5, 12, 14)),
             sign("speed_limit", 120, Box(50, 5, 29, 20)),
             sign("speed_limit", 70, Box(90, 5, 61, 61))]
    score_signs(score, small, AnalysisResult([reading("speed_limit", None, Box(5, 5, 12, 14)),
                                              reading("speed_limit", 120, Box(50, 5, 29, 20))]))
    sizes = score.summary()["speed_values_by_size"]
    assert list(sizes) == ["<16 px", "16-29 px", "30-60 px", ">60 px"]  # in size order
    assert sizes["<16 px"] == {"correct": 0, "labelled": 1, "wrong": 0, "accuracy": 0.0}
    assert sizes["16-29 px"]["correct"] == 1 and sizes[">60 px"]["labelled"] == 1


@pytest.fixture
def server():
    s = ChatServer()
    yield s
    s.close()


def test_end_to_end_json_lines_and_label_scores(tmp_path, server, capsys):
    images = tmp_path / "imgs"
    images.mkdir()
    for name in ("a.jpg", "b.png"):
        cv2.imwrite(str(images / name), np.full((480, 640, 3), 120, np.uint8))
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"images": [
        {"file": "imgs/a.jpg", "width": 640, "height": 480,
         "signs": [{"box": [410, 95, 40, 40], "class": "speed_limit", "value": 50}]},
        {"file": "imgs/b.png", "width": 640, "height": 480,
         "signs": [{"box": [20, 20, 40, 40], "class": "stop"}]}]}))
    params = tmp_path / "params.yaml"
    params.write_text("vlm_node:\n  ros__parameters:\n"
                      f"    analysis.openai.base_url: {server.url}\n"
                      f"    analysis.openai.model: {MODEL}\n"
                      "    analysis.fusion.enabled: false\n"
                      "    analysis:\n      fallback: false\n")
    args = parse(["analyze", str(images), "--backend", "openai", "--config", str(params),
                  "--labels", str(labels), "--json", "--batch", "2"])
    assert args.func(args) == 1  # the unreadable image is reported
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["file"] for line in lines] == [f"{images}/a.jpg", f"{images}/b.png"]
    first = lines[0]
    assert first["degraded"] is False and first["scene"]["road_type"] == "urban"
    assert first["signs"] == [{"class": "speed_limit", "value": 50, "unit": "km/h",
                               "text": "50", "box": [412.0, 96.0, 38.0, 40.0],
                               "confidence": 0.9, "source": "vlm"}]
    assert "broken.jpg: cannot read" in err
    assert "sign class accuracy: 50.0 % of 2 labelled signs in 2 images" in err
    assert "speed-limit value accuracy: 100.0 % of 1" in err
    assert "1 readings matched no label" in err


def test_text_output(tmp_path, server, capsys):
    img = tmp_path / "one.jpg"
    cv2.imwrite(str(img), np.full((480, 640, 3), 90, np.uint8))
    params = tmp_path / "p.yaml"
    params.write_text(f"vlm_node:\n  ros__parameters:\n    analysis.openai.base_url: "
                      f"{server.url}\n    analysis.openai.model: {MODEL}\n"
                      "    analysis.fusion.enabled: false\n")
    args = parse(["analyze", str(img), "--backend", "openai", "--config", str(params)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{img}: 1 sign(s), openai")
    assert '  speed_limit 50 km/h "50" at [412.0, 96.0, 38.0, 40.0] (vlm, 0.90)' in out
    assert "road=urban hazards=['cyclist']" in out


@pytest.mark.parametrize("sequence", [False, True])
def test_regions_of_one_image_do_not_cover_signs_of_the_next(tmp_path, capsys, sequence):
    """Images are unrelated by default: the plate redacted in a.jpg is not carried into
    b.jpg, where a 60 sign stands at the same place (it was, and the sign was lost: speed-value
    accuracy on the rendered set 75.7 -> 83.8 %). --sequence keeps carry-over for frames of
    one camera, and then the carried box covers the sign."""
    images = tmp_path / "imgs"
    images.mkdir()
    car = read_bgr(shared("plates/images/Cars0.jpg"))  # plate at [188, 194, 160, 74]
    cv2.imwrite(str(images / "a.png"), car)
    street = cv2.GaussianBlur(car, (0, 0), 25)
    paste_rgba(street, render_sign(SignSpec("speed_limit", 60), 80), 228, 188)
    cv2.imwrite(str(images / "b.png"), street)
    argv = ["analyze", str(images), "--backend", "ocr", "--json"]
    args = parse(argv + (["--sequence"] if sequence else []))
    assert args.func(args) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # The class, not the value: on this rendered 60 the sign classifier (trained on real
    # German signs) and OCR disagree on the digits, so the value is withheld by design.
    second = [r["class"] for r in lines[1]["signs"]]
    assert ("speed_limit" in second) != sequence


def test_unknown_analysis_setting_in_config_is_an_error(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("vlm_node:\n  ros__parameters:\n    analysis.no_such: 1\n")
    args = parse(["analyze", str(tmp_path), "--config", str(params)])
    with pytest.raises(ConfigError, match="unknown setting 'analysis.no_such'"):
        cli.analysis_config(args)


def test_bench_parser_and_a_tiny_benchmark():
    args = parse(["analyze", "--cameras", "1,2", "--size", "tiny", "--frame-size", "320x240"],
                 register=add_analyze_parser)
    assert args.cameras == (1, 2) and args.frame_size == (320, 240) and args.size == "tiny"
    lines = []
    figures = bench_analyze(archs=("smolvlm-256m",), cameras=(1, 2), max_new_tokens=3,
                            size="tiny", frame_size=(320, 240), backends=("transformers",),
                            print_fn=lines.append)
    smol = figures["transformers"]["smolvlm-256m"]
    assert set(smol["batched"]) == set(smol["naive"]) == {1, 2}
    assert smol["batched"][2]["frames_per_s"] > 0 and smol["speedup"][2] > 0
    assert figures["answer_tokens"]["example_answer"] > figures["answer_tokens"][
        "answer_without_signs"]
    assert any("speed-up" in line for line in lines)


def test_misses_dir_shows_the_labelled_signs_not_read(tmp_path, capsys):
    """A real GTSDB photo whose 50 is read, labelled with one more sign where there is none:
    the montage has one tile (cut from the anonymized frame), the list says what the label
    said and that nothing was read; a later run without misses removes the old montage."""
    photo = tmp_path / "gtsdb_00330.jpg"
    photo.write_bytes((shared("signs_real_dev") / "gtsdb_00330.jpg").read_bytes())
    fifty = {"box": [630, 188, 40, 41], "class": "speed_limit", "value": 50, "unit": "km/h"}
    ghost = {"box": [100, 60, 30, 30], "class": "stop"}
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"images": [{"file": photo.name, "signs": [fifty, ghost]}]}))
    out = tmp_path / "misses"
    args = parse(["analyze", str(photo), "--backend", "ocr", "--labels", str(labels),
                  "--misses-dir", str(out)])
    assert args.func(args) == 0
    assert "1 missed signs:" in capsys.readouterr().out
    listing = json.loads((out / "signs_missed.json").read_text())
    assert [(e["index"], e["label"]["class"], e["read"]) for e in listing] == [(0, "stop", None)]
    montage = cv2.imread(str(out / "signs_missed.png"))
    assert montage.shape == (160, 160 * 8, 3)  # one tile, padded to a row of eight
    labels.write_text(json.dumps({"images": [{"file": photo.name, "signs": [fifty]}]}))
    assert args.func(args) == 0
    assert "no labelled sign missed" in capsys.readouterr().out
    assert not (out / "signs_missed.png").exists()
    assert json.loads((out / "signs_missed.json").read_text()) == []
    with pytest.raises(ConfigError, match="--misses-dir needs --labels"):
        bad = parse(["analyze", str(photo), "--misses-dir", str(out)])
        bad.func(bad)
