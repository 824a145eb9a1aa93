"""`vlm_node.evaluation` on hand-made inputs: matching, every metric with exact expected numbers,
labels and configuration handling, report files, the compare table and the plots."""
import json

import cv2
import numpy as np
import pytest

from vlm_node.config import camera_name_of, flatten_params, resolve_params
from vlm_node.errors import ConfigError
from vlm_node.evaluation import configure, metrics, plots, report
from vlm_node.evaluation.labels import ImageLabel, load_bag_labels
from vlm_node.evaluation.matching import NONE, match_records, match_signs
from vlm_node.evaluation.records import ANALYSED, DROPPED, NOT_ANALYSED, FrameRecord, RunInfo
from vlm_node.geometry import Box
from vlm_node.results import Detection, SignReading

T0 = 1_750_000_000_000_000_000
TOPIC = "/front/image_raw"


def reading(cls, box=None, value=None, unit="", state="tentative", track=0):
    return SignReading(cls, 0.9, "ocr", value, unit if value is not None else "", "",
                       Box.from_list(box) if box else None, state, track)


def sign(cls, box, value=None, unit=None):
    out = {"class": cls, "box": box}
    if value is not None:
        out["value"] = value
    if unit is not None:
        out["unit"] = unit
    return out


def label(i, signs=None, faces=None, plates=None, topic=TOPIC):
    return ImageLabel(topic=topic, stamp_ns=T0 + i * 100_000_000, width=640, height=480,
                      signs=None if signs is None else tuple(signs),
                      faces=None if faces is None else tuple(Box.from_list(b) for b in faces),
                      plates=None if plates is None else tuple(Box.from_list(b) for b in plates))


def record(i, readings=(), status=ANALYSED, latency=None, camera="front", topic=TOPIC, **kw):
    return FrameRecord(i, topic, camera, T0 + i * 100_000_000, T0 + i * 100_000_000,
                       status=status, readings=list(readings), latency_ms=latency, **kw)


# ------------------------------------------------------------------------------ matching
def test_match_signs_by_box_then_by_class_where_a_box_is_missing():
    signs = [sign("speed_limit", [100, 100, 50, 50], 60, "km/h"),
             sign("stop", None),  # image-level label: any stop reading in the frame
             sign("yield", [400, 100, 40, 40])]
    readings = [reading("stop", [300, 300, 40, 40]),
                reading("speed_limit", [105, 102, 50, 50], 60, "km/h"),
                reading("yield", [10, 10, 40, 40]),  # no overlap with the yield label
                reading("no_entry")]  # no box, no label of its class: false reading
    matches = match_signs(readings, signs)
    assert [(m.label_class, m.read_class) for m in matches] == [
        ("speed_limit", "speed_limit"), ("stop", "stop"), ("yield", NONE),
        (NONE, "yield"), (NONE, "no_entry")]
    assert [m.value_ok for m in matches] == [True, True, False, False, False]


def test_value_needs_value_and_unit_where_labelled():
    box = [0, 0, 50, 50]
    cases = [(reading("speed_limit", box, 60, "km/h"), True),
             (reading("speed_limit", box, 60, "mph"), False),
             (reading("speed_limit", box, 50, "km/h"), False),
             (reading("end_speed_limit", box, 60, "km/h"), False)]
    for r, ok in cases:
        [m] = match_signs([r], [sign("speed_limit", box, 60, "km/h")])
        assert m.value_ok is ok, r
    [m] = match_signs([reading("speed_limit", box, 60, "mph")], [sign("speed_limit", box, 60)])
    assert m.value_ok  # no unit labelled: the value decides


def test_records_join_labels_by_topic_and_stamp():
    labels = {lb.key: lb for lb in (label(0, []), label(1, []), label(2, None),
                                    label(9, []))}
    records = [record(0), record(1, status=NOT_ANALYSED), record(2), record(3)]
    run = match_records(records, labels)
    assert [f.record.index for f in run.frames] == [0]  # analysed and signs labelled
    assert sorted(run.labelled) == [0, 1, 2]
    assert run.unlabelled_records == 1
    assert run.orphan_labels == [(TOPIC, T0 + 900_000_000)]


# ------------------------------------------------------------------------------ signs
def sign_frames():
    """Frame 0: two speed limits read right, one read as end_speed_limit; frame 1: the stop
    sign missed, a false yield reading."""
    labels = [label(0, [sign("speed_limit", [0, 0, 50, 50], 60, "km/h"),
                        sign("speed_limit", [100, 0, 50, 50], 80, "km/h"),
                        sign("speed_limit", [200, 0, 50, 50], 30, "km/h")]),
              label(1, [sign("stop", [0, 0, 50, 50])])]
    records = [record(0, [reading("speed_limit", [0, 0, 50, 50], 60, "km/h"),
                          reading("speed_limit", [100, 0, 50, 50], 80, "km/h"),
                          reading("end_speed_limit", [200, 0, 50, 50], 30, "km/h")]),
               record(1, [reading("yield", [300, 300, 40, 40])])]
    return match_records(records, {lb.key: lb for lb in labels}).frames


def test_sign_precision_recall_f1_per_class_and_overall():
    m = metrics.sign_metrics(sign_frames())
    out = m.to_json()
    assert out["per_class"]["speed_limit"] == {
        "tp": 2, "fp": 0, "fn": 1, "labelled": 3, "precision": 1.0, "recall": 0.6667,
        "f1": 0.8}
    assert out["per_class"]["end_speed_limit"] == {
        "tp": 0, "fp": 1, "fn": 0, "labelled": 0, "precision": 0.0, "recall": None,
        "f1": 0.0}
    assert out["per_class"]["stop"]["fn"] == 1 and out["per_class"]["stop"]["precision"] is None
    assert out["per_class"]["yield"]["fp"] == 1
    assert out["all"] == {"tp": 2, "fp": 2, "fn": 2, "labelled": 4, "precision": 0.5,
                          "recall": 0.5, "f1": 0.5}
    assert out["confusion"] == {"speed_limit": {"end_speed_limit": 1, "speed_limit": 2},
                                "stop": {NONE: 1}, NONE: {"yield": 1}}


def test_speed_value_accuracy_separates_missed_from_misread():
    labels = [label(0, [sign("speed_limit", [0, 0, 50, 50], 60, "km/h"),
                        sign("speed_limit", [100, 0, 50, 50], 80, "km/h"),
                        sign("speed_limit", [200, 0, 50, 50], 30, "km/h"),
                        sign("stop", [300, 0, 50, 50])])]
    records = [record(0, [reading("speed_limit", [0, 0, 50, 50], 60, "km/h"),
                          reading("speed_limit", [100, 0, 50, 50], 30, "km/h")])]
    frames = match_records(records, {lb.key: lb for lb in labels}).frames
    out = metrics.speed_metrics(frames).to_json()
    assert (out["labelled"], out["read"], out["value_ok"]) == (3, 2, 1)
    assert out["value_accuracy"] == 0.3333 and out["accuracy_of_read"] == 0.5
    assert out["misread"] == [{"camera": "front", "stamp_ns": T0,
                               "label": {"value": 80, "unit": "km/h"},
                               "read": {"value": 30.0, "unit": "km/h"}}]


# ------------------------------------------------------------------------------ tracks
def test_track_confirmation_delay_and_false_confirmations():
    box = [0, 0, 50, 50]
    sl = sign("speed_limit", box, 60, "km/h")
    # track 1: the 60 sign, confirmed in its 3rd frame; a frame the node skipped in between
    # does not count. Track 2: a misread 80 confirmed in the last frame (false confirmation).
    records = [
        record(0, [reading("speed_limit", box, 60, "km/h", "tentative", 1)]),
        record(1, [reading("speed_limit", box, 60, "km/h", "tentative", 1)]),
        record(2, status=NOT_ANALYSED),
        record(3, [reading("speed_limit", box, 60, "km/h", "confirmed", 1),
                   reading("speed_limit", [300, 0, 50, 50], 80, "km/h", "tentative", 2)]),
        record(4, [reading("speed_limit", [300, 0, 50, 50], 80, "km/h", "confirmed", 2)]),
        record(5, [reading("stop", [100, 100, 50, 50], state="tentative", track=3)])]
    labels = [label(i, [sl]) for i in range(6)]
    frames = match_records(records, {lb.key: lb for lb in labels}).frames
    out = metrics.track_metrics(records, frames).to_json()
    assert (out["readings"], out["confirmed"], out["confirmed_correct"],
            out["false_confirmations"]) == (6, 2, 1, 1)
    assert out["false_confirmation_rate"] == 0.5
    assert (out["tentative"], out["tentative_wrong"]) == (4, 2)
    assert (out["tracks"], out["tracks_confirmed"]) == (3, 2)
    assert out["frames_to_confirm"]["p50"] == 2.5  # track 1: 3 analysed frames, track 2: 2
    assert out["frames_to_confirm"]["max"] == 3
    assert out["ms_to_confirm"]["max"] == 300.0  # header stamps 0 -> 300 ms


# ------------------------------------------------------------------------------ anonymization
def test_anonymization_recall_and_leak_rate_reuse_the_anonymizer_scoring():
    faces = [[10, 10, 40, 40], [200, 200, 40, 40]]
    dets = (Detection("face", Box(10, 10, 40, 40), 0.9),
            Detection("plate", Box(400, 400, 60, 20), 0.8))
    records = [record(0, detections=dets, faces=1, plates=1),
               record(1, status=DROPPED, reason="anonymizer_failure: x")]
    lb = [label(0, [], faces=faces, plates=[]), label(1, [], faces=faces, plates=[])]
    run = match_records(records, {x.key: x for x in lb})
    out = metrics.anonymization_metrics(records, run.labelled,
                                        {"face": 0.1, "plate": 0.1}).to_json()
    assert out["scored"] and out["frames_scored"] == 1  # the dropped frame is never released
    assert out["per_kind"]["face"] == {"labels": 2, "matched": 1, "detections": 1,
                                       "false_positives": 0, "leaked": 1, "recall": 0.5,
                                       "precision": 1.0, "leak_rate": 0.5}
    assert out["per_kind"]["plate"]["false_positives"] == 1
    assert out["per_kind"]["plate"]["recall"] is None
    assert out["labelled"] == {"face": 2, "plate": 0}
    assert out["redacted"] == {"face": 1, "plate": 1}


def test_live_records_without_boxes_give_counts_only():
    records = [record(0, faces=2, plates=0)]
    lb = label(0, [], faces=[[10, 10, 40, 40], [200, 200, 40, 40]], plates=[])
    run = match_records(records, {lb.key: lb})
    out = metrics.anonymization_metrics(records, run.labelled, {"face": 0.1, "plate": 0.1})
    assert not out.scored and out.per_kind == {}
    assert out.to_json()["redacted"] == {"face": 2, "plate": 0}


# ------------------------------------------------------------------------------ time, coverage
def test_percentiles_throughput_and_real_time_factor():
    d = metrics.Distribution.of(range(1, 101))
    assert (d.count, d.mean, d.p50, d.p95, d.p99, d.max) == pytest.approx(
        (100, 50.5, 50.5, 95.05, 99.01, 100.0))
    assert metrics.Distribution.of([]) is None
    records = [record(i, latency=float(10 * (i + 1))) for i in range(4)]
    records.append(record(4, status=NOT_ANALYSED))
    t = metrics.timing_metrics(records, wall_s=2.0, recorded_s=0.5)
    assert t.latency.p50 == 25.0 and t.latency.max == 40.0
    assert t.frames_per_s == 2.0 and t.real_time_factor == 0.25
    assert metrics.recorded_seconds([T0, T0 + 100_000_000, T0 + 200_000_000]) == \
        pytest.approx(0.3)
    assert metrics.recorded_seconds([T0]) == 0.0


def test_coverage_counts_statuses_per_camera_and_reasons():
    records = [record(0), record(1, status=NOT_ANALYSED, reason="no_result"),
               record(2, camera="rear", topic="/rear/image_raw", status=DROPPED,
                      reason="decode_error: bad step"),
               record(3, degraded=True)]
    run = match_records(records, {label(0, []).key: label(0, [])})
    out = metrics.coverage(records, run).to_json()
    assert (out["messages"], out["analysed"], out["not_analysed"], out["dropped"]) == \
        (4, 2, 1, 1)
    assert out["per_camera"] == {"front": {"analysed": 2, "not_analysed": 1, "dropped": 0},
                                 "rear": {"analysed": 0, "not_analysed": 0, "dropped": 1}}
    assert out["reasons"] == {"decode_error": 1, "no_result": 1}
    assert (out["degraded"], out["unlabelled_messages"]) == (1, 3)
    with pytest.raises(ValueError, match="status"):
        record(0, status="lost")


# ------------------------------------------------------------------------------ labels, config
def test_bag_labels_need_topic_and_stamp(tmp_path):
    path = tmp_path / "labels.json"
    entry = {"file": "x", "width": 640, "height": 480, "topic": TOPIC, "stamp_ns": T0,
             "signs": [{"class": "stop", "box": None}], "faces": [[1, 2, 3, 4]]}
    path.write_text(json.dumps({"images": [entry]}))
    [lb] = load_bag_labels(path).values()
    assert lb.key == (TOPIC, T0) and lb.plates is None and lb.faces == (Box(1, 2, 3, 4),)
    path.write_text(json.dumps({"images": [entry, entry]}))
    with pytest.raises(ConfigError, match="a second time"):
        load_bag_labels(path)
    path.write_text(json.dumps({"images": [{"file": "a.jpg", "width": 1, "height": 1}]}))
    with pytest.raises(ConfigError, match="not a bag label"):
        load_bag_labels(path)
    path.write_text("[]")
    with pytest.raises(ConfigError, match="not a labels file"):
        load_bag_labels(path)
    with pytest.raises(FileNotFoundError):
        load_bag_labels(tmp_path / "missing.json")


def test_cameras_from_bag_topics_and_configuration():
    assert camera_name_of("/front/image_raw") == "front"
    assert camera_name_of("/car1/left/image_raw/compressed") == "car1_left"
    assert camera_name_of("/image_raw") == "camera"
    assert camera_name_of("/3d/image") == "camera_3d"
    params = flatten_params({"cameras": ["fwd"], "camera": {"fwd": {
        "topic": "/sensors/cam0/image"}}, "analysis": {"backend": "ocr"}})
    assert params == {"cameras": ["fwd"], "camera.fwd.topic": "/sensors/cam0/image",
                      "analysis.backend": "ocr"}
    names = configure.camera_names(["/sensors/cam0/image", "/a/image_raw",
                                    "/a/image_raw/compressed"], params)
    assert names == {"/sensors/cam0/image": "fwd", "/a/image_raw": "a",
                     "/a/image_raw/compressed": "a_2"}
    config = configure.node_config_for_bag(params, names, {"/a/image_raw/compressed"})
    assert config.cameras == ("fwd", "a", "a_2")
    assert config.camera["a_2"].transport == "compressed"
    assert config.camera["a_2"].resolved_topic("a_2") == "/a/image_raw/compressed"
    assert config.analysis.backend == "ocr"


def test_later_config_files_override_leaf_by_leaf(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("/**/vlm_node:\n  ros__parameters:\n    analysis:\n      backend: ocr\n"
                 "      tracking: {k: 2}\n")
    b.write_text("/**/vlm_node:\n  ros__parameters:\n    analysis:\n      tracking: {n: 4}\n")
    params = resolve_params([a, b], {"anonymizer.carry_frames": 0})
    assert (params["analysis.backend"], params["analysis.tracking.k"],
            params["analysis.tracking.n"], params["anonymizer.carry_frames"]) == ("ocr", 2, 4, 0)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        resolve_params([tmp_path / "nope.yaml"])


# ------------------------------------------------------------------------------ reports, plots
def evaluation():
    labels = [label(0, [sign("speed_limit", [0, 0, 50, 50], 60, "km/h")],
                    faces=[[300, 300, 40, 40]], plates=[]),
              label(1, [sign("stop", [0, 0, 50, 50])], faces=[], plates=[])]
    records = [
        record(0, [reading("speed_limit", [0, 0, 50, 50], 60, "km/h", "confirmed", 1)],
               latency=100.0, detections=(Detection("face", Box(300, 300, 40, 40), 0.9),),
               faces=1, anonymize_ms=60.0, analysis_ms=30.0, backend="ocr"),
        record(1, [], latency=300.0, detections=(), anonymize_ms=70.0, analysis_ms=20.0,
               backend="ocr"),
        record(2, status=NOT_ANALYSED, reason="no_result")]
    info = RunInfo("offline", "bag", "labels.json", "ocr", "ocr", wall_s=2.0, recorded_s=0.3,
                   cameras={"front": TOPIC}, machine="test")
    return metrics.evaluate(records, {x.key: x for x in labels}, info,
                            {"face": 0.1, "plate": 0.1})


def test_report_json_and_markdown(tmp_path):
    rep = report.build_report(evaluation(), ["confusion.png"])
    assert set(rep) == {"version", "created", "run", "key_figures", "coverage", "signs",
                        "speed", "tracks", "anonymization", "timing", "plots", "frames"}
    assert list(rep["key_figures"]) == list(report.KEY_FIGURES)
    k = rep["key_figures"]
    assert (k["messages"], k["analysed"], k["not_analysed"], k["dropped"]) == (3, 2, 1, 0)
    assert (k["sign_precision"], k["sign_recall"], k["sign_f1"]) == (1.0, 0.5, 0.6667)
    assert (k["speed_value_accuracy"], k["false_confirmations"]) == (1.0, 0)
    assert (k["face_recall"], k["face_leak_rate"], k["plate_recall"]) == (1.0, 0.0, None)
    assert (k["latency_p50_ms"], k["latency_p95_ms"], k["latency_p99_ms"]) == \
        (200.0, 290.0, 298.0)
    assert (k["frames_per_s"], k["real_time_factor"]) == (1.0, 0.15)
    assert [f["status"] for f in rep["frames"]] == ["analysed", "analysed", "not_analysed"]
    assert rep["frames"][0]["signs_correct"] == 1 and "signs_correct" not in rep["frames"][2]
    assert rep["frames"][0]["anonymization"] == {
        "face": {"labels": 1, "matched": 1, "false_positives": 0, "leaked": 0},
        "plate": {"labels": 0, "matched": 0, "false_positives": 0, "leaked": 0}}
    json_path, md_path = report.write_report(tmp_path, rep)
    assert json.loads(json_path.read_text())["key_figures"] == k
    md = md_path.read_text()
    for text in ("## Key figures", "| sign recall | 0.500 |", "| speed_limit | 1 | 1 | 0 | 0 |",
                 "| face | 1 | 1 | 1.000 |", "| latency p95 | 290.0 ms |",
                 "1 of 1 tracks confirmed", "![confusion](confusion.png)"):
        assert text in md, text


def test_compare_table_shows_deltas_and_marks_regressions(tmp_path):
    a = report.build_report(evaluation())
    b = json.loads(json.dumps(a))
    b["key_figures"].update(sign_recall=0.75, latency_p50_ms=250.0, face_leak_rate=None)
    text = report.compare(a, b)
    lines = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()}
    assert lines["sign recall"] == "| sign recall | 0.500 | 0.750 | +0.250 |"
    assert lines["latency p50 (ms)"] == "| latency p50 (ms) | 200.0 | 250.0 | +50.0 (worse) |"
    assert lines["face leak rate"] == "| face leak rate | 0.000 | n/a | n/a |"
    assert lines["image messages"] == "| image messages | 3 | 3 | +0 |"
    path = tmp_path / "x.json"
    path.write_text('{"run": {}}')
    with pytest.raises(ConfigError, match="no key_figures"):
        report.load_report(path)


def test_plots_are_valid_pngs(tmp_path):
    rep = report.build_report(evaluation())
    names = plots.write_plots(rep, tmp_path)
    assert names == ["confusion.png", "latency.png", "timeline.png"]
    for name in names:
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[0] > 200 and image.shape[1] > 300
        assert image.std() > 10  # something was drawn


def test_live_node_arguments_point_cameras_at_the_bag_topics():
    from vlm_node.evaluation.live import node_arguments

    args = node_arguments({"/front/image_raw": "front", "/rear/image_raw/compressed": "rear"},
                          {"/rear/image_raw/compressed"}, "ocr")
    assert args == ["-p", 'cameras:=["front", "rear"]',
                    "-p", "camera.front.topic:=/front/image_raw",
                    "-p", "camera.front.transport:=raw",
                    "-p", "camera.rear.topic:=/rear/image_raw/compressed",
                    "-p", "camera.rear.transport:=compressed",
                    "-p", "qos_reliability:=reliable", "-p", "analysis.backend:=ocr"]
