"""The Anonymizer end to end: detector quality on the shared labelled photos (floors set from
the measurements in docs/anonymizer.md), carry-over, fail-closed behaviour and stats."""
import concurrent.futures as cf
import dataclasses
import threading
import time

import numpy as np
import pytest

from bag_helpers import portrait
from helpers import read_bgr, shared
from vlm_node.anonymize import Anonymizer, AnonymizerConfig
from vlm_node.evaluation.labels import load_labels
from vlm_node.evaluation.redaction import KindCounts, score_image
from vlm_node.errors import AnonymizationError, ConfigError
from vlm_node.frames import AnonymizedFrame, FrameMeta
from vlm_node.geometry import Box
from vlm_node.results import Detection

META = FrameMeta("cam", 1_700_000_000_123_456_789, "cam_optical", 0.0)


@pytest.fixture(scope="module")
def anonymizer():
    return Anonymizer()


@pytest.fixture(scope="module")
def labelled(anonymizer):
    """Detections of the default anonymizer on every labelled photo, scored per kind."""
    items = load_labels(shared("labels.json"))
    totals = {"face": KindCounts(), "plate": KindCounts()}
    per_image = {}
    for it in items:
        img = read_bgr(it.path)
        anonymizer.reset()
        dets = anonymizer.detect(img)
        per_image[it.file] = dets
        h, w = img.shape[:2]
        for kind, c in score_image(it, dets, w, h,
                                   margins={"face": anonymizer.config.margin,
                                            "plate": anonymizer.config.plate_margin}).items():
            totals[kind].add(c)
    return {k: c.to_json() for k, c in totals.items()}, per_image


def test_face_recall_and_precision_on_labelled_photos(labelled):
    faces = labelled[0]["face"]
    assert faces["labels"] == 43
    assert faces["recall"] >= 0.95  # measured 1.000 (43/43)
    assert faces["leak_rate"] == 0.0
    # measured 0.483 (0.935 with the YuNet default until 2026-12-02): CenterFace at 0.12 also
    # boxes the unlabelled people in the background and some clutter; that threshold is what
    # covers 0.98 of the WIDER dev-set faces (docs/anonymizer.md)
    assert faces["precision"] >= 0.45


def test_plate_recall_and_precision_on_labelled_photos(labelled):
    plates = labelled[0]["plate"]
    assert plates["labels"] == 30
    assert plates["recall"] >= 0.95  # measured 1.000 (30/30)
    # measured 0.682; the rest is real unlabelled text (stickers, badges, a second plate).
    # Multi-row text on coloured paint is judged by its reading (a two-row Californian plate,
    # blue and red text, is no longer missed) and needs a digit somewhere. 0.714 with
    # plate_max_upscale 2: enlarging 416 px photos 3x adds a caption and a sticker, and finds
    # the small plates of 320x240 camera frames that 2x missed (tests/test_bags_anonymize.py).
    assert plates["precision"] >= 0.68
    assert plates["leak_rate"] <= 0.04


def test_at_most_two_false_redactions_on_dogs(labelled):
    dets = labelled[1]["faces/dlib_pascal_voc/dogs.jpg"]
    assert len(dets) <= 2  # measured 2: faces on two dogs' heads; the club text is not a plate


def test_face_is_blurred_and_the_rest_is_untouched(anonymizer):
    original = read_bgr(shared("faces/face_recognition_examples/obama.jpg"))
    anonymizer.reset()
    frame = anonymizer.anonymize(META, original.copy())
    faces = sorted((d for d in frame.detections if d.kind == "face"), key=lambda d: -d.box.area)
    assert faces[0].score > 0.8 and faces[0].box.w > 150
    h, w = original.shape[:2]
    diff = np.abs(frame.image.astype(int) - original.astype(int)).sum(axis=2)
    rows, cols = faces[0].box.int_slices(w, h)
    assert diff[rows, cols].mean() > 20  # the face changed a lot
    mask = np.ones_like(diff, bool)
    for d in frame.detections:
        margin = anonymizer.config.margin if d.kind == "face" else anonymizer.config.plate_margin
        r2, c2 = d.box.expanded(margin + 0.02).clipped(w, h).int_slices(w, h)
        mask[r2, c2] = False
    assert diff[mask].max() == 0  # pixels outside the redacted regions are bit-identical
    assert not frame.image.flags.writeable


def test_group_photo_faces_are_all_found(anonymizer):
    img = read_bgr(shared("faces/dlib_pascal_voc/2008_002079.jpg"))
    anonymizer.reset()
    frame = anonymizer.anonymize(META, img)
    assert frame.count("face") >= 6
    assert anonymizer.stats.snapshot()["last_ms"]["faces_ms"] > 0


class Scripted:
    """A detector stage that returns prepared detections frame by frame."""

    kind = "face"
    name = "scripted"

    def __init__(self, script):
        self.script = list(script)

    def detect(self, frame, config):
        return self.script.pop(0)


def _scripted(script, **overrides):
    anon = Anonymizer(AnonymizerConfig(plates=False, **overrides))
    anon.detectors = [Scripted(script)]
    return anon


def test_carry_over_keeps_redacting_through_a_missed_frame():
    face = lambda x: [Detection("face", Box(x, 40, 40, 40), 0.9, "scripted")]  # noqa: E731
    anon = _scripted([face(40), face(44), [], [], [], []], carry_frames=2, margin=0.0)
    rng = np.random.default_rng(0)
    frames = []
    for i in range(6):
        img = rng.integers(0, 256, (160, 200, 3), dtype=np.uint8)
        frames.append((img.copy(), anon.anonymize(META, img)))
    # frame 2: the detector missed; the region moved on by the observed 4 px and is redacted
    raw, out = frames[2]
    carried = [d for d in out.detections if d.detector == "carry:scripted"]
    assert len(carried) == 1
    box = carried[0].box
    assert box.x < 48 and box.x2 > 88  # covers the expected position 48..88
    rows, cols = Box(48, 40, 40, 40).int_slices(200, 160)
    assert np.abs(out.image[rows, cols].astype(int) - raw[rows, cols].astype(int)).mean() > 30
    assert frames[3][1].count("face") == 1  # second miss: still carried
    assert frames[4][1].count("face") == 0  # carry_frames=2 spent
    assert np.array_equal(frames[4][1].image, frames[4][0])
    assert anon.stats.carried == 2


def test_frames_detected_at_once_and_released_in_order_match_one_at_a_time():
    """detect_frame keeps no state: frames of a camera can be detected concurrently, and
    releasing them in order gives what `anonymize` frame by frame gives, carry-over included
    (frame 1 hides the face from the detector; the region found in frame 0 is carried)."""
    image, face = portrait((320, 240))
    hidden = image.copy()
    x, y, w, h = (int(v) for v in face)
    hidden[y:y + h, x:x + w] = 128
    sequence = [image, hidden, hidden, image]
    # without the head backstop: it would (rightly) add the head of the person whose face was
    # painted over, and this test is about carry-over
    config = AnonymizerConfig(head_backstop=False)
    one_by_one = Anonymizer(config)
    expected = [one_by_one.anonymize(META, f.copy()) for f in sequence]
    assert [f.count("face") for f in expected] == [1, 1, 1, 1]
    assert expected[1].detections[0].detector == "carry:centerface"
    concurrent = Anonymizer(config)
    with cf.ThreadPoolExecutor(4) as pool:
        pending = list(pool.map(concurrent.detect_frame, [f.copy() for f in sequence]))
    got = [concurrent.release(META, p) for p in pending]
    # the same detections and redaction; the detector run on four threads at once may sum in
    # another order than alone, so its floats agree to a few thousandths, not to the bit (a
    # 2 GHz AVX2-only host in f32: 4e-5 px), and a redaction edge may move by a pixel
    for a, b in zip(expected, got):
        assert [(d.kind, d.detector) for d in a.detections] == \
            [(d.kind, d.detector) for d in b.detections]
        for da, db in zip(a.detections, b.detections):
            assert (da.box.x, da.box.y, da.box.w, da.box.h, da.score) == pytest.approx(
                (db.box.x, db.box.y, db.box.w, db.box.h, db.score), abs=0.01)
            assert np.allclose(np.asarray(da.landmarks or (), float),
                               np.asarray(db.landmarks or (), float), atol=0.01)
        assert np.mean(np.any(a.image != b.image, axis=2)) <= 0.001
    assert concurrent.stats.carried == one_by_one.stats.carried == 2


@pytest.mark.parametrize("stamps_s, max_gap, carried", [
    ((10.0, 10.1, 10.2), 0.5, [0, 1, 1]),  # 10 Hz: the miss is bridged
    ((10.0, 11.0, 11.1), 0.5, [0, 0, 0]),  # 1 s later: the object has moved on, not carried
    ((15.0, 14.9, 15.0), 0.5, [0, 0, 0]),  # stamped before the previous frame: a new sequence
    ((10.0, 11.0, 12.0), 0.0, [0, 1, 1]),  # no time limit: frames alone decide
    ((0.0, 0.0, 0.0), 0.5, [0, 1, 1]),     # unstamped frames (0): frames alone decide
])
def test_carry_over_bridges_short_gaps_only(stamps_s, max_gap, carried):
    face = [Detection("face", Box(40, 40, 40, 40), 0.9, "scripted")]
    anon = _scripted([face, [], []], carry_frames=3, carry_max_gap=max_gap)
    got = []
    for t in stamps_s:
        meta = FrameMeta("cam", int(t * 1e9), "cam_optical", 0.0)
        frame = anon.anonymize(meta, np.zeros((160, 200, 3), np.uint8))
        got.append(sum(d.detector.startswith("carry:") for d in frame.detections))
    assert got == carried


def test_carry_over_off():
    anon = _scripted([[Detection("face", Box(10, 10, 20, 20), 0.9)], []], carry_frames=0)
    anon.anonymize(META, np.zeros((64, 64, 3), np.uint8))
    assert anon.anonymize(META, np.zeros((64, 64, 3), np.uint8)).detections == ()


def test_untracked_synthetic_plates_do_not_all_read_the_same():
    """Carry-over off (as in the demo): each plate of a frame gets its own synthetic text;
    with one seed for all, two plates of one size on the same background came out
    identical."""
    plates = [Detection("plate", Box(x, 60, 80, 20), 0.9, "scripted") for x in (20, 120)]
    anon = _scripted([plates], carry_frames=0, redaction="synthetic", plate_margin=0.0)
    out = anon.anonymize(META, np.full((160, 240, 3), 90, np.uint8)).image
    left, right = out[60:80, 20:100].astype(int), out[60:80, 120:200].astype(int)
    assert np.abs(left - 90).mean() > 10 and np.abs(right - 90).mean() > 10  # both rendered
    assert np.abs(left - right).mean() > 5


@pytest.mark.parametrize("policy", ["drop", "full_blur"])
@pytest.mark.parametrize("failure, reason", [
    ("exception", "exception"), ("nan", "corrupt_output"), ("negative", "corrupt_output"),
    ("outside", "corrupt_output"), ("slow", "over_budget")])
def test_failures_fail_closed(policy, failure, reason):
    def detect(frame, config):
        if failure == "exception":
            raise RuntimeError("onnx session died")
        if failure == "slow":
            time.sleep(0.03)
            return []
        box = {"nan": Box(float("nan"), 0, 5, 5), "negative": Box(5, 5, -3, 4),
               "outside": Box(50, 50, 40, 40)}[failure]
        return [Detection("face", box, 0.9)]

    # only the slow detector meets a tight budget: on a loaded CI machine an instant detector
    # once took 21 ms and was reported over a 10 ms budget instead of as corrupt output
    budget = 10.0 if failure == "slow" else 10_000.0
    anon = Anonymizer(AnonymizerConfig(plates=False, failure_policy=policy,
                                       detector_budget_ms=budget))
    anon.detectors[0].detect = detect
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    original = img.copy()
    if policy == "drop":
        with pytest.raises(AnonymizationError, match=f"\\({reason}\\), frame dropped"):
            anon.anonymize(META, img)
    else:
        frame = anon.anonymize(META, img)
        assert frame.full_frame_redacted and frame.detections == ()
        # nothing of the original's fine detail is left
        assert np.abs(np.diff(frame.image.astype(int), axis=1)).mean() < 3
        assert np.abs(frame.image.astype(int) - original.astype(int)).mean() > 40
    snap = anon.stats.snapshot()
    assert snap["failures"][reason] == 1 and snap["released"] == 0
    assert snap["full_frame_blurred"] == (policy == "full_blur")


def test_over_budget_is_measured_on_real_detectors():
    anon = Anonymizer(AnonymizerConfig(plates=False, detector_budget_ms=0.001))
    with pytest.raises(AnonymizationError, match="over the 0 ms budget"):
        anon.anonymize(META, read_bgr(shared("faces/face_recognition_examples/obama.jpg")))
    assert anon.stats.failures["over_budget"] == 1


def test_raw_frames_cannot_be_released_without_the_anonymizer():
    with pytest.raises(TypeError, match="created by vlm_node.anonymize only"):
        AnonymizedFrame(META, np.zeros((4, 4, 3), np.uint8))


@pytest.mark.parametrize("bad", [np.zeros((0, 0, 3), np.uint8), np.zeros((8, 8), np.uint8),
                                 np.zeros((8, 8, 3), np.float32)])
def test_bad_input_is_rejected_and_counted(bad):
    anon = _scripted([])
    with pytest.raises(AnonymizationError, match="HxWx3 uint8"):
        anon.anonymize(META, bad)
    assert anon.stats.failures["bad_input"] == 1


def test_reconfigure_rebuilds_models_only_when_needed(anonymizer):
    anon = Anonymizer(AnonymizerConfig(plates=False))
    before = anon.detectors
    anon.reconfigure(dataclasses.replace(anon.config, yunet_score_threshold=0.9, margin=0.4))
    assert anon.detectors is before and anon.config.margin == 0.4
    anon.reconfigure(dataclasses.replace(anon.config, face_detectors=("yunet", "ultraface")))
    assert [s.name for s in anon.detectors] == ["yunet", "ultraface", "fastestdet"]


def test_unavailable_provider_is_an_error_not_a_cpu_fallback():
    import onnxruntime as ort
    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has TensorRT")
    with pytest.raises(ConfigError, match="TensorrtExecutionProvider"):
        Anonymizer(AnonymizerConfig(plates=False,
                                    providers=("TensorrtExecutionProvider",
                                               "CPUExecutionProvider")))


class Sleepy:
    """A stage that takes `seconds` and records the thread it ran on."""

    def __init__(self, kind, seconds, result=None, error=None):
        self.kind, self.name, self.seconds = kind, f"sleepy_{kind}", seconds
        self.result, self.error, self.threads, self.spans = result or [], error, [], []

    def detect(self, frame, config):
        self.threads.append(threading.get_ident())
        start = time.perf_counter()
        time.sleep(self.seconds)
        self.spans.append((start, time.perf_counter()))
        if self.error is not None:
            raise self.error
        return list(self.result)


@pytest.mark.parametrize("parallel", [True, False])
def test_stages_run_in_parallel_with_the_same_result_and_fail_closed(parallel):
    face = [Detection("face", Box(5, 5, 20, 20), 0.9, "sleepy")]
    plate = [Detection("plate", Box(40, 40, 30, 10), 0.8, "sleepy")]
    anon = Anonymizer(AnonymizerConfig(plates=False, parallel_stages=parallel, carry_frames=0))
    anon.detectors = [Sleepy("face", 0.1, face), Sleepy("plate", 0.1, plate)]
    frame = anon.anonymize(META, np.zeros((80, 100, 3), np.uint8))
    assert [d.kind for d in frame.detections] == ["face", "plate"]
    threads = {anon.detectors[0].threads[0], anon.detectors[1].threads[0]}
    assert len(threads) == (2 if parallel else 1)
    (s1, e1), (s2, e2) = anon.detectors[0].spans[0], anon.detectors[1].spans[0]
    assert (max(s1, s2) < min(e1, e2)) is parallel  # the two detectors' calls overlapped
    # a failing stage fails the frame, whichever finishes first
    anon.detectors = [Sleepy("face", 0.0, face), Sleepy("plate", 0.05, error=RuntimeError("x"))]
    with pytest.raises(AnonymizationError, match="exception"):
        anon.anonymize(META, np.zeros((80, 100, 3), np.uint8))
    assert anon.detectors[0].threads  # the other stage ran too
    anon.close()
