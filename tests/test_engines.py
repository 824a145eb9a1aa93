"""The two inference engines (`vlm_node.anonymize.runtime`): OpenVINO runs the same ONNX files
as onnxruntime, behind the same session interface, with the same answers on real inputs."""
import threading

import cv2
import numpy as np
import pytest

from helpers import read_bgr, shared
from vlm_node.analysis.sign_classifier import DEFAULT_MODEL, SignClassifier, prepare_crops
from vlm_node.anonymize import Anonymizer, AnonymizerConfig
from vlm_node.anonymize.openvino_session import OpenVinoSession, batch_bucket, cpu_precision
from vlm_node.anonymize.plates import TextDetector, TextRecognizer
from vlm_node.anonymize.runtime import Runtime, stream_frame
from vlm_node.errors import ConfigError
from vlm_node.geometry import Box

pytest.importorskip("openvino")

GTSRB = shared("gtsrb_train_sample")
ONNXRUNTIME = Runtime(engine="onnxruntime")
OPENVINO = Runtime(engine="openvino")
OPENVINO_F32 = Runtime(engine="openvino", precision="f32")


@pytest.fixture(scope="module")
def crops():
    """The GTSRB sample crops (real signs of every class) as one classifier batch."""
    images = [read_bgr(p) for p in sorted(GTSRB.glob("*.png"))[:300]]
    assert len(images) == 300
    batch = [prepare_crops(cv2.cvtColor(im, cv2.COLOR_BGR2RGB),
                           [Box(0, 0, im.shape[1], im.shape[0])]) for im in images]
    return np.concatenate(batch)


def test_sign_classifier_answers_alike_on_both_engines(crops):
    ort = SignClassifier(DEFAULT_MODEL, ONNXRUNTIME)
    f32 = SignClassifier(DEFAULT_MODEL, OPENVINO_F32)
    auto = SignClassifier(DEFAULT_MODEL, OPENVINO)
    # the metadata (labels, calibration) comes through OpenVINO's copy of the ONNX metadata
    assert f32.info == ort.info and f32.source_sha256 == ort.source_sha256
    p_ort, p_f32, p_auto = (c.probabilities(crops) for c in (ort, f32, auto))
    assert p_f32.shape == p_ort.shape == (300, 44)
    assert np.abs(p_f32 - p_ort).max() < 1e-4  # float32 either way
    # bfloat16 where the CPU has it: the same class for (nearly) every crop
    agree = (p_auto.argmax(1) == p_ort.argmax(1)).mean()
    assert agree >= 0.99, agree
    # measured 0.0094 in bf16 (AMX), the same class for all 300 crops
    assert np.abs(p_auto - p_ort).max() < (1e-4 if cpu_precision() == "f32" else 0.05)


def test_odd_batches_are_padded_to_few_shapes_and_cut_back(crops):
    """OpenVINO prepares each new input shape once, so a batch runs at one of a few sizes;
    the padding never reaches the caller."""
    assert [batch_bucket(n) for n in (1, 4, 5, 9, 64, 65, 366)] == [1, 4, 8, 16, 64, 96, 384]
    clf = SignClassifier(DEFAULT_MODEL, OPENVINO_F32)
    whole = clf.probabilities(crops[:37])
    for n in (1, 5, 37):
        part = clf.probabilities(crops[:n])
        assert part.shape == (n, 44)
        assert np.abs(part - whole[:n]).max() < 1e-5


def test_one_session_serves_many_threads(crops):
    """An OpenVINO infer request is not thread-safe: each thread gets its own, so concurrent
    callers (two frames' detectors at once in the offline tools) get their own answers."""
    clf = SignClassifier(DEFAULT_MODEL, OPENVINO_F32)
    want = {n: clf.probabilities(crops[n:n + 20 + n]) for n in range(6)}
    got: dict[int, list] = {n: [] for n in want}

    def work(n):
        for _ in range(10):
            got[n].append(clf.probabilities(crops[n:n + 20 + n]))

    threads = [threading.Thread(target=work, args=(n,)) for n in want]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n, outs in got.items():
        # its own answers: the same shape and values (to float rounding: requests running at
        # once may split their work across cores differently; another caller's answers would
        # differ in shape or by far more)
        assert len(outs) == 10 and all(o.shape == want[n].shape for o in outs)
        assert max(np.abs(o - want[n]).max() for o in outs) < 1e-5


def test_text_detector_and_recogniser_read_a_real_plate_alike():
    """The plate models through OpenVINO: the detector's map (padded to a multiple of 64 for
    fewer shapes, cut back to the image) and the recogniser's reading of the plate lines."""
    img = read_bgr(shared("plates/images/Cars0.jpg"))
    maps = [TextDetector(rt).probability(img) for rt in (ONNXRUNTIME, OPENVINO)]
    assert maps[0].shape == maps[1].shape == img.shape[:2]
    on = [m > 0.3 for m in maps]
    overlap = (on[0] & on[1]).sum() / max(1, (on[0] | on[1]).sum())
    assert on[0].sum() > 100 and overlap > 0.9, overlap
    det = TextDetector(ONNXRUNTIME).predict(img, 0.5)
    assert len(det.boxes) >= 1
    texts = [TextRecognizer(rt).read_many(img, list(det.points)) for rt in (ONNXRUNTIME, OPENVINO)]
    assert texts[0] == texts[1] and any(len(t) >= 4 for t in texts[0]), texts


def test_anonymizer_on_openvino_finds_the_labelled_faces_and_plates():
    from vlm_node.evaluation.labels import load_labels
    from vlm_node.evaluation.redaction import KindCounts, score_image

    anon = Anonymizer(AnonymizerConfig(engine="openvino"))
    totals = {"face": KindCounts(), "plate": KindCounts()}
    for it in load_labels(shared("labels.json")):
        img = read_bgr(it.path)
        anon.reset()
        h, w = img.shape[:2]
        for kind, c in score_image(it, anon.detect(img), w, h,
                                   margins={"face": anon.config.margin,
                                            "plate": anon.config.plate_margin}).items():
            totals[kind].add(c)
    faces, plates = totals["face"].to_json(), totals["plate"].to_json()
    # measured 43/43 faces and 30/30 plates, precision 0.483 / 0.698: as onnxruntime
    assert faces["labels"] == 43 and faces["recall"] == 1.0 and faces["leak_rate"] == 0.0
    assert plates["labels"] == 30 and plates["recall"] >= 0.95 and plates["leak_rate"] <= 0.04


def test_engine_mistakes_are_config_errors():
    path = DEFAULT_MODEL
    with pytest.raises(ConfigError, match="unknown inference engine"):
        Runtime(engine="tensorflow").session(path)
    with pytest.raises(ConfigError, match="CPU only"):
        Runtime(providers=("CUDAExecutionProvider",), engine="openvino").session(path)
    with pytest.raises(ConfigError, match="precision"):
        OpenVinoSession(path, 1, "int4")
    with pytest.raises(ConfigError, match="anonymizer.engine"):
        from vlm_node.params import validate
        validate(AnonymizerConfig(engine="openvino2"), "anonymizer.")


def test_a_missing_openvino_package_says_how_to_get_it(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ConfigError, match="needs the openvino package"):
        OPENVINO.session(DEFAULT_MODEL)


def test_bench_anonymize_compares_the_engines_side_by_side(tmp_path):
    """`bench anonymize --engines onnxruntime,openvino` runs every setting on each engine; the
    rows name the engine and the precision OpenVINO computed in."""
    import json

    from vlm_node.cli import bench_anonymize

    out = tmp_path / "bench.json"
    rc = bench_anonymize.main(["anonymize", "--frames-dir",
                               str(shared("faces/face_recognition_examples")), "--sizes",
                               "480x270", "--frames", "3", "--warmup", "1", "--clip", "3",
                               "--settings", "default", "--engines", "onnxruntime,openvino",
                               "--no-labelled", "--output", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["engine"] for r in rows] == ["onnxruntime", "openvino"]
    assert [r["setting"] for r in rows] == ["default (onnxruntime)",
                                            f"default (openvino {cpu_precision()})"]
    assert all(r["sizes"]["480x270"]["ms_mean"]["faces"] > 0 for r in rows)
    with pytest.raises(Exception, match="--engines"):
        bench_anonymize.main(["anonymize", "--frames-dir", str(tmp_path), "--engines", "tvm"])


def test_changing_the_engine_reloads_the_models():
    import dataclasses

    anon = Anonymizer(AnonymizerConfig(plates=False, engine="onnxruntime"))
    face = anon.detectors[0].model.session
    assert not isinstance(face, OpenVinoSession)
    anon.reconfigure(dataclasses.replace(anon.config, engine="openvino"))
    face_stage, person_stage = anon.detectors
    assert isinstance(face_stage.model.session, OpenVinoSession)
    assert isinstance(person_stage.detector.model.session, OpenVinoSession)


def _compile_in_a_new_process(env_value):
    import os
    import subprocess
    import sys

    code = ("from vlm_node.anonymize.runtime import Runtime\n"
            "from vlm_node.analysis.sign_classifier import DEFAULT_MODEL\n"
            "s = Runtime(engine='openvino').session(DEFAULT_MODEL)\n"
            "print(s.get_inputs()[0].name)\n")
    env = {**os.environ, "VLM_NODE_OPENVINO_CACHE": str(env_value)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)


def test_compiled_models_are_cached_on_disk_and_an_unwritable_cache_is_only_slower(tmp_path):
    """A process starts its models from OpenVINO's cache of compiled models (~0.4 s instead of
    ~1.1 s for the anonymizer's); where the cache cannot be written the models still load."""
    cache = tmp_path / "ov"
    done = _compile_in_a_new_process(cache)
    assert done.returncode == 0 and done.stdout.strip() == "crops", done.stderr
    assert list(cache.glob("*.blob"))  # the compiled classifier
    blocked = tmp_path / "a_file"
    blocked.write_text("not a directory")
    done = _compile_in_a_new_process(blocked)
    assert done.returncode == 0 and done.stdout.strip() == "crops", done.stderr
    assert "model cache off" in done.stderr


def test_release_all_drops_every_openvino_object_before_exit():
    """At exit (atexit) every session's compiled model and requests, the cache of compiled
    models and the Core are dropped, so no model's threads outlive the interpreter; a session
    used afterwards says so, and a new one works. In a process of its own: it drops the
    sessions of everything else in the process too."""
    import subprocess
    import sys

    code = """
import numpy as np
from vlm_node.analysis.sign_classifier import DEFAULT_MODEL
from vlm_node.anonymize import openvino_session as ovs
from vlm_node.anonymize.runtime import Runtime
session = Runtime(engine="openvino").session(DEFAULT_MODEL)
x = np.zeros((2, 3, 32, 32), np.float32)
session.run(None, {"crops": x})
ovs.release_all()
assert ovs._compiled.cache_info().currsize == 0 and ovs._make_core.cache_info().currsize == 0
try:
    session.run(None, {"crops": x})
    raise SystemExit("a released session still ran")
except RuntimeError as exc:
    assert "after release_all" in str(exc)
print(Runtime(engine="openvino").session(DEFAULT_MODEL).run(None, {"crops": x})[0].shape)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(2, 44)"


def test_first_inferences_on_many_threads_at_once_never_hang():
    """Fresh processes whose 16 threads make their first OpenVINO inference at the same moment
    (as the anonymizer's stage threads do on a stream's first frame). Before the bindings were
    warmed up when the Core is made, 5 of 20 such processes hung for good inside
    `InferRequest.infer`; the chance that 12 runs all pass with that bug is about 3 %."""
    import subprocess
    import sys

    code = """
import threading
import numpy as np
from vlm_node.anonymize.runtime import Runtime, shipped_model
session = Runtime(engine="openvino").session(shipped_model("fastestdet/FastestDet.onnx"))
name = session.get_inputs()[0].name
barrier = threading.Barrier(16)
outs = []
def first_call():
    x = np.zeros((1, 3, 352, 352), np.float32)
    barrier.wait()
    outs.append(session.run(None, {name: x})[0].shape)
threads = [threading.Thread(target=first_call) for _ in range(16)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(len(outs))
"""
    for _ in range(12):
        try:
            done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                  text=True, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("a process hung in its first inferences")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "16"


def test_recurring_inputs_run_on_a_model_compiled_for_their_exact_shape():
    """CenterFace's frame-sized input on OpenVINO: each shape gets its own compiled copy (the
    last `frame_shapes` kept, least recently used dropped) with the same detections as the model
    compiled for any shape; a second session of the same file shares the copies."""
    from vlm_node.anonymize.faces import CenterFace
    from vlm_node.anonymize.runtime import shipped_model

    path = shipped_model("centerface/centerface_dynamic.onnx")
    img = read_bgr(shared("faces/dlib_pascal_voc/2008_002506.jpg"))
    exact = CenterFace(path, Runtime(engine="openvino", frame_shapes=2))
    general = CenterFace(path, Runtime(engine="openvino", frame_shapes=0))
    assert general.session._exact is None
    shapes = exact.session._exact
    assert shapes.capacity == 2 and shapes.shapes() == []
    frames = [cv2.resize(img, size) for size in ((320, 256), (640, 480), (320, 256), (480, 352))]
    exact.predict(frames[0], 0.3)
    assert shapes.shapes() == []  # outside a stream's frame: the model for any shape
    for frame in frames:
        with stream_frame():
            a = exact.predict(frame, 0.3)
        b = general.predict(frame, 0.3)
        assert len(a) == len(b) and np.allclose(a.boxes, b.boxes, atol=0.5), (a.boxes, b.boxes)
    assert len(general.predict(frames[1], 0.3)) >= 1  # a real face, not two empty answers
    # 256x320 seen twice, compiled once; 480x640 dropped when 352x480 came (capacity 2)
    assert shapes.compiles == 3
    assert [dict(k)[exact._input][2:] for k in shapes.shapes()] == [(256, 320), (352, 480)]
    again = CenterFace(path, Runtime(engine="openvino", frame_shapes=2))
    assert again.session._exact is shapes


def test_plate_bands_run_exact_and_vehicle_regions_on_the_general_model():
    """The text detector compiles exactly only for rectangles that recur frame after frame
    (the whole frame, a band), never for vehicle regions, whose sizes vary; on onnxruntime, or
    with frame_shapes 0, one session serves both."""
    from vlm_node.anonymize.plate_scan import ScanRect
    from vlm_node.anonymize.plates import PlateGeometry, TextPlateDetector

    def detector(runtime):
        return TextPlateDetector(runtime, score_threshold=0.5, bin_threshold=0.3, max_side=960,
                                 max_upscale=3.0, geometry=PlateGeometry(), verify="none")

    img = read_bgr(shared("plates/images/Cars0.jpg"))
    h, w = img.shape[:2]
    ov = detector(Runtime(engine="openvino", frame_shapes=4))
    assert ov.frame_text is not ov.text and ov.text.session._exact is None
    shapes = ov.frame_text.session._exact
    before = set(shapes.shapes())
    with stream_frame():
        region = ov.lines_of_rect(img, ScanRect(w // 4, h // 3, w - 7, h - 3, 1.0))
        assert set(shapes.shapes()) == before  # a region: the general model
        band = ov.lines_of_rect(img, ScanRect(0, 0, w, h, 1.0, recurring=True))
    assert len(set(shapes.shapes()) - before) <= 1 and len(shapes.shapes()) >= 1
    assert len(band) >= 1 and len(region) >= 1  # the plate, found both ways
    for runtime in (ONNXRUNTIME, Runtime(engine="openvino", frame_shapes=0)):
        plain = detector(runtime)
        assert plain.frame_text is plain.text and not runtime.compiles_per_shape


def test_a_stream_runs_on_exact_shapes_from_its_second_frame_and_photos_never():
    """The anonymizer says per frame whether its size is the one of the frame planned before
    (`runtime.stream_frame`): the first frame of a stream, a new size and `detect` on a photo
    run on the model for any shape; the photo tools turn exact shapes off altogether."""
    from vlm_node.anonymize.config import for_photos
    from vlm_node.anonymize.faces import CenterFace

    img = read_bgr(shared("faces/dlib_pascal_voc/2008_002506.jpg"))
    frame = cv2.resize(img, (640, 360))
    anon = Anonymizer(AnonymizerConfig(frame_shapes=3, plates=False, head_backstop=False))
    face = next(s.model for s in anon.detectors
                if isinstance(getattr(s, "model", None), CenterFace))
    shapes = face.session._exact
    shapes._models.clear()
    first = anon.detect_frame(frame.copy(), 1)
    assert shapes.shapes() == []
    second = anon.detect_frame(frame.copy(), 2)
    assert len(shapes.shapes()) == 1  # 640x360 padded to 640x384
    # the same faces; a model compiled for one shape may pick other kernels, so the boxes
    # agree to a few thousandths of a pixel, not always to the bit (AVX2 in f32: 5e-5 px)
    assert len(first.detections) == len(second.detections) >= 1
    for a, b in zip(first.detections, second.detections):
        assert (a.box.x, a.box.y, a.box.w, a.box.h) == pytest.approx(
            (b.box.x, b.box.y, b.box.w, b.box.h), abs=0.01)
    anon.detect_frame(cv2.resize(img, (480, 270)), 3)  # a new size: not yet
    assert len(shapes.shapes()) == 1
    anon.detect(cv2.resize(img, (640, 360)))
    anon.detect(cv2.resize(img, (320, 240)))  # photos: never
    assert len(shapes.shapes()) == 1
    assert for_photos(AnonymizerConfig()).frame_shapes == 0
    assert AnonymizerConfig().frame_shapes == 4


def test_a_varying_input_runs_padded_to_a_shape_already_run():
    """`shape_reuse`: a vehicle region whose padded shape the text detector has not run yet is
    padded to a larger shape it has run, when that has at most 1.5x its elements; its map is
    the same size as the image and finds the plate's text as on its own shape. Without the
    setting (and for frame-recurring inputs) nothing changes."""
    img = read_bgr(shared("plates/images/Cars0.jpg"))
    reuse = TextDetector(Runtime(engine="openvino", shape_reuse=1.5))
    plain = TextDetector(Runtime(engine="openvino"))
    session = reuse.session
    assert session._reuse == 1.5 and plain.session._reuse == 1.0
    big = img[:192, :256]  # padded: 192x256
    small = img[:150, :200]  # padded: 192x256 too: the same shape, nothing to reuse
    assert reuse.probability(big).shape == big.shape[:2]
    assert reuse.probability(small).shape == small.shape[:2] and session.reused == 0
    smaller = img[:130, :190]  # padded 192x192: 192x256 has 1.33x its elements
    m = reuse.probability(smaller)
    assert session.reused == 1 and m.shape == smaller.shape[:2]
    assert np.abs(m - plain.probability(smaller)).max() < 0.35  # the same text, padding aside
    tiny = img[:40, :60]  # padded 64x64: 192x256 is 12x its elements, far beyond 1.5
    reuse.probability(tiny)
    assert session.reused == 1 and (1, 3, 64, 64) in session._shapes_run
    assert plain.session.reused == 0 and not plain.session._shapes_run
    # the recogniser's varying width reuses too, and reads the same text
    rec = TextRecognizer(Runtime(engine="openvino", shape_reuse=1.5))
    det = TextDetector(ONNXRUNTIME).predict(img, 0.5)
    first = rec.read_many(img, list(det.points))
    assert first == TextRecognizer(OPENVINO).read_many(img, list(det.points))


def test_offline_settings_and_frames_in_flight_keep_shape_reuse_off():
    from vlm_node.anonymize.config import (for_frames_in_flight, for_photos, for_recordings,
                                           for_stills)

    config = AnonymizerConfig()
    assert config.shape_reuse == 1.5 and config.runtime().shape_reuse == 1.5
    for offline in (for_stills(config), for_photos(config), for_recordings(config),
                    for_recordings(config, video_plan=True), for_frames_in_flight(config, 2)):
        assert offline.shape_reuse == 1.0 and offline.runtime().shape_reuse == 1.0
    assert for_frames_in_flight(config, 1).shape_reuse == 1.5
    with pytest.raises(ConfigError):
        from vlm_node.anonymize.anonymizer import validate
        validate(AnonymizerConfig(shape_reuse=0.5))


def test_a_shape_cover_covers_every_input_shape_as_shape_reuse_pads():
    """`shape_cover`: every wanted shape has a cover shape at least as large in every dimension
    with at most `reuse` times its elements (the rule `shape_reuse` pads by), far fewer shapes
    than wanted, the same answer every time; at reuse 1 only each shape covers itself."""
    from vlm_node.anonymize.openvino_session import shape_cover

    wants = [(1, 3, h, w) for h in range(64, 385, 64) for w in range(64, 961, 64)]
    cover = shape_cover(wants, 1.5)
    assert len(cover) <= len(wants) // 3
    for want in wants:
        assert any(all(c >= v for c, v in zip(shape, want))
                   and np.prod(shape) <= 1.5 * np.prod(want) for shape in cover), want
    assert shape_cover(list(reversed(wants)), 1.5) == cover
    assert sorted(shape_cover(wants, 1.0)) == sorted(wants)
    assert shape_cover([], 1.5) == []


def test_a_camera_set_up_prepares_the_plate_text_models_for_its_vehicle_regions():
    """`Anonymizer.prepare` (the node's configure step, `prepare_shapes`): the plate text
    detector and recogniser have run a cover of the shapes vehicle regions and text lines
    bring, so a region's padded shape is padded further to one of them (`reused`) instead of
    being prepared on a camera frame; a second camera of the process runs nothing again but
    knows the shapes; offline settings and `prepare_shapes: false` prepare nothing; stages
    rebuilt by a new setting are prepared again."""
    from vlm_node.anonymize.anonymizer import PlateStage
    from vlm_node.anonymize.config import for_recordings

    def text_sessions(anon: Anonymizer) -> tuple[OpenVinoSession, OpenVinoSession]:
        plates = next(s.detector for s in anon.detectors if isinstance(s, PlateStage))
        return plates.text.session, plates.recognizer.session

    anon = Anonymizer(AnonymizerConfig())
    det, rec = text_sessions(anon)
    assert not det._shapes_run and not rec._shapes_run
    ran = anon.prepare()
    assert 20 <= len(det._shapes_run) <= 30 and 10 <= len(rec._shapes_run) <= 20
    assert ran in (0, len(det._shapes_run) + len(rec._shapes_run))  # 0: prepared by a test before
    assert all(s[2] <= 384 and s[3] <= 960 for s in det._shapes_run)
    assert all(s[0] <= 4 and s[2] == 48 and s[3] <= 320 for s in rec._shapes_run)
    img = read_bgr(shared("plates/images/Cars0.jpg"))
    plates = next(s.detector for s in anon.detectors if isinstance(s, PlateStage))
    held = set(det._shapes_run)

    def padded(region: np.ndarray) -> tuple[int, ...]:
        return (1, 3) + tuple(-(-v // 64) * 64 for v in region.shape[:2])

    regions = [img[:h, :w] for h in (60, 130, 250) for w in (100, 190, 300, 420)]
    new_shapes = [r for r in regions if padded(r) not in held]
    assert len(new_shapes) >= 4
    for region in regions:
        assert plates.text.probability(region).shape == region.shape[:2]
    assert det.reused == len(new_shapes) and det._shapes_run == held
    second = Anonymizer(AnonymizerConfig())
    assert second.prepare() == 0
    assert text_sessions(second)[0]._shapes_run == held
    for config in (for_recordings(AnonymizerConfig()), AnonymizerConfig(prepare_shapes=False)):
        other = Anonymizer(config)
        assert other.prepare() == 0 and not text_sessions(other)[0]._shapes_run
    assert Anonymizer(AnonymizerConfig(engine="onnxruntime")).prepare() == 0  # no such step
    anon.reconfigure(AnonymizerConfig(plate_text_threshold=0.31))  # rebuilds the stages
    assert text_sessions(anon)[0] is not det and text_sessions(anon)[0]._shapes_run == held
