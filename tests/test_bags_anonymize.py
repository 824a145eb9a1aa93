"""`anonymize_bag`: every labelled face redacted, non-image messages byte-identical with the same
timestamps and connection metadata, image layouts kept, dropped frames never copied, atomic
output that never exists after a corrupt or truncated input."""
import json
import shutil

import numpy as np
import pytest
from mcap.reader import make_reader
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability
from rosbags.interfaces import QosTime

from bag_helpers import (REDACTED_MEAN_DIFF, box_change, connections, images, jpeg_bytes,
                         portrait, read_all, write_bag, write_two_topics_one_camera)
from helpers import shared
from vlm_node.anonymize import AnonymizerConfig
from vlm_node.anonymize.config import frames_in_flight_for
from vlm_node.bags import anonymize as bags_anonymize
from vlm_node.bags import io
from vlm_node.bags.anonymize import anonymize_bag
from vlm_node.config import camera_name_of
from vlm_node.bags.compressed import inspect_compressed
from vlm_node.tools.sample_bag import write_sample_bag
from vlm_node.errors import BagError, ConfigError
from vlm_node.evaluation.labels import load_bag_labels
from vlm_node.evaluation.redaction import BagRedactionScorer

SIZE = (320, 240)
PAD = 32  # bytes of padding per row of the padded Image topic
CHATTER_QOS = Qos(QosHistory.KEEP_LAST, 7, QosReliability.RELIABLE, QosDurability.VOLATILE,
                  QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A 3-camera sample bag (Image + 2 CompressedImage + /tf) and its anonymized copy."""
    root = tmp_path_factory.mktemp("anon")
    labels = write_sample_bag(root / "in", 2, 3, 0.2, "mcap", SIZE, seed=5)
    summary = anonymize_bag(root / "in", root / "out", AnonymizerConfig(),
                            results_topic="/anonymization", progress=False)
    return labels.parent, root / "out", summary, json.loads(labels.read_text())["images"]


def test_labels_score_the_redactions(sample, tmp_path):
    """--labels: every labelled frame scored, as `vlm-node anonymize --labels` scores images.
    At 320x240 every face and every plate (13-42 px high) is covered; with plates enlarged
    only 2x for the plate pass, 2 of the 6 were found, and these figures showed it."""
    src, _, _, entries = sample
    labels = load_bag_labels(src / "labels.json")
    summary = anonymize_bag(src, tmp_path / "out", progress=False,
                            labels=BagRedactionScorer(labels))
    v = summary.validation
    assert v.frames == len(entries) == v.labelled == 6 and v.dropped == 0 and v.not_found == 0
    faces, plates = v.kinds["face"], v.kinds["plate"]
    assert faces.labels == sum(len(e["faces"]) for e in entries) >= 3
    assert plates.labels == sum(len(e["plates"]) for e in entries) == 6
    assert faces.leaked == 0 and faces.matched == faces.labels
    # every written frame is labelled here: the scored boxes are the redactions counted
    assert (faces.detections, plates.detections) == (summary.faces, summary.plates)
    assert plates.matched == plates.labels and plates.leaked == 0
    data = summary.to_json()["validation"]
    assert data["face"]["recall"] == 1.0 and data["face"]["leak_rate"] == 0.0
    assert f"validation on 6 labelled frames: faces recall 1.000 ({faces.labels}/" \
        f"{faces.labels})" in summary.report()
    # without labels nothing is scored or reported
    assert sample[2].validation is None and "validation" not in sample[2].to_json()
    # labels keyed by log time instead of header stamp name no frame: said, not hidden
    shifted = {(topic, stamp + 1): label for (topic, stamp), label in labels.items()}
    wrong = anonymize_bag(src, tmp_path / "wrong", progress=False,
                          labels=BagRedactionScorer(shifted)).validation
    assert (wrong.frames, wrong.not_found) == (0, 6)
    assert "6 labels matched no frame (check their topics and header stamps)" in wrong.report()
    # labels of another recording (an hour later) in a file shared by many bags are not this
    # bag's: not expected here, so not reported missing
    later = {(topic, stamp + 3_600_000_000_000): label for (topic, stamp), label in labels.items()}
    other = anonymize_bag(src, tmp_path / "other", progress=False,
                          labels=BagRedactionScorer(later)).validation
    assert (other.labelled, other.frames, other.not_found) == (0, 0, 0)


@pytest.mark.parametrize("in_flight", [1, 3])
def test_frames_in_flight_give_the_same_bag(sample, tmp_path, in_flight):
    """Frames detected concurrently are released in order: carry-over and the written bytes
    are those of a run that does one frame at a time (the fixture ran with the default)."""
    src, out, summary, _ = sample
    again = anonymize_bag(src, tmp_path / "out", AnonymizerConfig(),
                          results_topic="/anonymization", progress=False,
                          frames_in_flight=in_flight)

    def content(bag):  # results messages carry the measured latency, which varies
        return [(m.topic, m.timestamp, m.raw if m.topic != "/anonymization" else None)
                for m in read_all(bag)]
    assert content(tmp_path / "out") == content(out)
    assert again.to_json()["images"] == summary.to_json()["images"]
    # with several frames in flight, a frame's stages run in sequence (the summary says so);
    # the fixture ran with the default, one frame per core
    default = frames_in_flight_for(AnonymizerConfig())
    assert summary.frames_in_flight == default
    assert (summary.config["parallel_stages"], again.config["parallel_stages"]) == \
        (default == 1, in_flight == 1)
    assert again.to_json()["frames_in_flight"] == in_flight
    assert ("frames in flight: stage times overlap" in again.report()) == (in_flight > 1)


def test_recordings_get_the_whole_pass_unless_the_video_plan_is_asked_for(sample, tmp_path):
    """A recording is anonymized with the whole pass on every frame by default (what is
    released keeps every frame; time chunks must equal one process); `video_plan` keeps the
    node's cadence, and its frames in flight are still planned in order (1 and 3 frames in
    flight write the same bag)."""
    src, _, summary, _ = sample
    default = AnonymizerConfig()
    assert (default.plate_scan_bands, default.face_thorough_every) == (3, 2)
    assert (summary.config["plate_scan_bands"], summary.config["face_thorough_every"]) == (1, 1)
    runs = [anonymize_bag(src, tmp_path / f"video{n}", default, progress=False,
                          frames_in_flight=n, video_plan=True) for n in (1, 3)]
    assert [(r.config["plate_scan_bands"], r.config["face_thorough_every"]) for r in runs] == \
        [(3, 2), (3, 2)]
    assert [(m.topic, m.timestamp, m.raw) for m in read_all(tmp_path / "video1")] == \
        [(m.topic, m.timestamp, m.raw) for m in read_all(tmp_path / "video3")]
    assert runs[0].to_json()["images"] == runs[1].to_json()["images"]


def test_messages_behind_a_frame_in_detection_are_bounded(tmp_path, monkeypatch):
    """A camera that stops while another topic goes on: the messages read behind a frame still
    in detection wait in memory only up to MAX_QUEUED_BYTES, then the loop waits for the
    frame; the output is the same either way."""
    image, _ = portrait(SIZE)
    store = io.typestore()

    def build(w):
        cam = w.add_topic("/cam/image_raw", io.IMAGE)
        chat = w.add_topic("/chatter", "std_msgs/msg/String")
        for i in range(3):
            w.write_msg(cam, 1_000 + i, io.bgr_to_image(image, io.header(1_000 + i, "cam")))
        for i in range(200):
            w.write_msg(chat, 2_000 + i, store.types["std_msgs/msg/String"](data=f"m{i}"))
    write_bag(tmp_path / "in", build)
    anonymize_bag(tmp_path / "in", tmp_path / "one", progress=False, frames_in_flight=1)
    seen = []
    monkeypatch.setattr(bags_anonymize, "MAX_QUEUED_BYTES", 64)
    monkeypatch.setattr(bags_anonymize, "_write_frame", _spy(bags_anonymize._write_frame, seen))
    read = []
    anonymize_bag(tmp_path / "in", tmp_path / "two", progress=False, frames_in_flight=2,
                  on_message=lambda m: read.append((m.topic, len(seen))))
    # the last frame was written long before the reader reached the end of the chatter
    assert len(seen) == 3 and [n for t, n in read].index(3) < 20
    assert [(m.topic, m.timestamp, m.raw) for m in read_all(tmp_path / "two")] == \
        [(m.topic, m.timestamp, m.raw) for m in read_all(tmp_path / "one")]


def _spy(fn, calls):
    def wrapper(*args, **kwargs):
        calls.append(args[1].timestamp)
        return fn(*args, **kwargs)
    return wrapper


def _special_bag(path, storage="mcap"):
    """Padded rgb8 Image, plain-"jpeg" CompressedImage at quality 75 (plus one corrupt JPEG),
    a depth image (no BGR meaning) and a String topic with its own QoS."""
    image, face = portrait(SIZE)
    store = io.typestore()

    def build(w):
        raw = w.add_topic("/cam/image_raw", io.IMAGE, [io.SENSOR_DATA_QOS])
        comp = w.add_topic("/cam/image_raw/compressed", io.COMPRESSED_IMAGE)
        depth = w.add_topic("/depth/image_raw", io.IMAGE)
        chat = w.add_topic("/chatter", "std_msgs/msg/String", [CHATTER_QOS])
        CompressedImage = store.types[io.COMPRESSED_IMAGE]
        for i in range(2):
            t = 1_000_000_000 * (i + 1)
            hdr = io.header(t + 5, "cam_optical")  # header stamp differs from log time
            w.write_msg(raw, t, io.bgr_to_image(image, hdr, "rgb8", SIZE[0] * 3 + PAD))
            w.write_msg(comp, t + 1, CompressedImage(header=hdr, format="jpeg", data=np.frombuffer(
                jpeg_bytes(image, 75), np.uint8)))
            w.write_msg(chat, t + 2, store.types["std_msgs/msg/String"](data=f"hello {i}"))
        w.write_msg(comp, 3_000_000_001, CompressedImage(
            header=io.header(3, "cam_optical"), format="jpeg",
            data=np.frombuffer(b"\xff\xd8\xff\xe0 not really a jpeg", np.uint8)))
        w.write_msg(depth, 3_000_000_002, store.types[io.IMAGE](
            header=io.header(3, "depth"), height=4, width=4, encoding="16UC1", is_bigendian=0,
            step=8, data=np.zeros(32, np.uint8)))
    write_bag(path, build, storage)
    return image, face


@pytest.fixture(scope="module")
def special(tmp_path_factory):
    root = tmp_path_factory.mktemp("special")
    image, face = _special_bag(root / "in")
    summary = anonymize_bag(root / "in", root / "out", progress=False)
    return root / "in", root / "out", summary, image, face


def test_every_labelled_face_is_redacted(sample):
    src, out, summary, labels = sample
    before, after = images(src), images(out)
    faces = [(e, box) for e in labels for box in e["faces"]]
    assert len(faces) >= 3
    for entry, box in faces:
        key = (entry["topic"], entry["stamp_ns"])
        assert box_change(before[key], after[key], box) >= REDACTED_MEAN_DIFF, (key, box)
    assert summary.faces >= len(faces) and summary.dropped == 0
    assert set(after) == set(before)  # every frame written, at its own log time


def test_non_image_messages_are_byte_identical(sample):
    src, out, _, _ = sample
    a = [(m.topic, m.timestamp, m.raw) for m in read_all(src) if not io.is_image_type(m.msgtype)]
    b = [(m.topic, m.timestamp, m.raw) for m in read_all(out)
         if not io.is_image_type(m.msgtype) and m.topic != "/anonymization"]
    assert a == b and {t for t, _, _ in a} == {"/tf", "/tf_static"}


def test_connections_and_custom_data_are_kept(sample):
    src, out, summary, _ = sample
    before, after = connections(src), connections(out)
    assert {t: v for t, v in after.items() if t != "/anonymization"} == before
    with io.open_bag(src) as bag:
        original = bag.custom_data
    with io.open_bag(out) as bag:
        custom = bag.custom_data
        assert bag.storage == "mcap"
    assert custom["vlm_node.sample"] == original["vlm_node.sample"]
    used = json.loads(custom["vlm_node.anonymize_bag"])
    assert used["input"] == "in" and used["anonymizer"]["redaction"] == "blur"
    assert summary.config["redaction"] == "blur"


def test_image_headers_and_layouts_are_kept(sample):
    src, out, _, _ = sample

    def headers(path):
        with io.open_bag(path) as bag:
            out = {}
            for m in bag.messages(bag.image_topics()):
                msg = bag.deserialize(m)
                layout = (msg.encoding, msg.step) if m.msgtype == io.IMAGE else (
                    msg.format, inspect_compressed(msg.data))
                out[(m.topic, m.timestamp)] = (m.msgtype, io.stamp_ns(msg.header),
                                               msg.header.frame_id, layout)
            return out
    assert headers(out) == headers(src)


def test_results_topic(sample):
    src, out, summary, _ = sample
    with io.open_bag(out) as bag:
        assert bag.topics["/anonymization"].msgtype == \
            "vlm_node_interfaces/msg/SceneUnderstanding"
        results = [bag.deserialize(m) for m in bag.messages(["/anonymization"])]
    assert len(results) == summary.results_written == summary.frames == 6
    assert sum(r.faces_redacted for r in results) == summary.faces
    assert sum(r.plates_redacted for r in results) == summary.plates
    assert {r.camera for r in results} == {"front", "rear", "left"}
    assert all(r.degraded and not r.signs and not r.has_scene for r in results)


def test_summary_figures(sample):
    _, _, summary, _ = sample
    data = summary.to_json()
    assert data["frames"] == 6 and data["dropped"] == 0
    assert data["copied"] == {"/tf_static": 1, "/tf": 2}
    assert data["bag_seconds"] == pytest.approx(0.1 + 0.1 * 2 / 6, abs=1e-3)
    assert data["frames_per_second"] > 0 and data["realtime_factor"] > 0
    assert data["stage_ms_per_frame"]["faces"] > 0
    assert "real-time factor" in summary.report()


def test_padded_rgb8_image_keeps_layout_and_is_redacted(special):
    src, out, summary, image, face = special
    with io.open_bag(out) as bag:
        msgs = [bag.deserialize(m) for m in bag.messages(["/cam/image_raw"])]
    assert len(msgs) == 2
    for msg in msgs:
        assert (msg.encoding, msg.step, msg.width, msg.height, msg.is_bigendian) == \
            ("rgb8", SIZE[0] * 3 + PAD, SIZE[0], SIZE[1], 0)
        rows = np.asarray(msg.data).reshape(SIZE[1], msg.step)
        assert not rows[:, SIZE[0] * 3:].any()  # padding stays padding
        assert msg.header.frame_id == "cam_optical"
        after = io.image_to_bgr(msg, io.IMAGE).astype(int)
        assert box_change(image.astype(int), after, face) >= REDACTED_MEAN_DIFF
    assert summary.images["/cam/image_raw"].faces >= 2


def test_compressed_stays_compressed_in_the_same_format(special):
    src, out, summary, image, face = special
    with io.open_bag(out) as bag:
        assert bag.topics["/cam/image_raw/compressed"].msgtype == io.COMPRESSED_IMAGE
        msgs = [bag.deserialize(m) for m in bag.messages(["/cam/image_raw/compressed"])]
    assert len(msgs) == 2  # the corrupt JPEG was dropped, not copied
    for msg in msgs:
        assert msg.format == "jpeg"
        layout = inspect_compressed(msg.data)
        assert (layout.kind, layout.quality, layout.sampling) == ("jpeg", 75, (2, 2))
        after = io.image_to_bgr(msg, io.COMPRESSED_IMAGE).astype(int)
        assert box_change(image.astype(int), after, face) >= REDACTED_MEAN_DIFF


def test_undecodable_frames_are_dropped_and_counted(special):
    src, out, summary, _, _ = special
    counts = summary.to_json()["images"]
    assert counts["/cam/image_raw/compressed"]["dropped"] == {"decode_error": 1}
    assert counts["/depth/image_raw"] == {"messages": 1, "written": 0, "faces": 0, "plates": 0,
                                          "full_frame_redacted": 0,
                                          "dropped": {"unsupported_encoding": 1}}
    assert summary.dropped == 2
    with io.open_bag(out) as bag:
        assert bag.topics["/depth/image_raw"].count == 0  # the topic is there, empty
    chat_in = [(m.timestamp, m.raw) for m in read_all(src) if m.topic == "/chatter"]
    chat_out = [(m.timestamp, m.raw) for m in read_all(out) if m.topic == "/chatter"]
    assert chat_in == chat_out and len(chat_in) == 2
    assert connections(out)["/chatter"][4] == [CHATTER_QOS]


def test_topic_selection_leaves_other_image_topics_out(special, tmp_path):
    src = special[0]
    summary = anonymize_bag(src, tmp_path / "out", topics=("/cam/image_raw",), progress=False)
    with io.open_bag(tmp_path / "out") as bag:
        assert set(bag.topics) == {"/cam/image_raw", "/chatter"}
    assert summary.excluded == {"/cam/image_raw/compressed": 3, "/depth/image_raw": 1}
    assert "NOT written" in summary.report()
    with pytest.raises(ConfigError, match="not image topics"):
        anonymize_bag(src, tmp_path / "x", topics=("/chatter",))
    with pytest.raises(ConfigError, match="not in"):
        anonymize_bag(src, tmp_path / "x", topics=("/nope",))
    assert not (tmp_path / "x").exists()


def test_shared_camera_sample_to_sqlite3(tmp_path):
    src = shared("rosbag/camera_sample.mcap")
    files = shared("rosbag/frames.txt").read_text().split()
    labels = {e["file"]: e for e in json.loads(shared("labels.json").read_text())["images"]}
    summary = anonymize_bag(src, tmp_path / "out", storage="sqlite3", progress=False)
    assert summary.storage_out == "sqlite3" and summary.dropped == 0 and summary.frames == 20
    before, after = images(src), images(tmp_path / "out")
    assert set(before) == set(after)
    checked, start = {"faces": 0, "plates": 0}, min(stamp for _, stamp in before)
    for (topic, stamp), pixels in before.items():
        entry = labels[files[(stamp - start) // 1_000_000_000]]  # one photo per second
        sx, sy = pixels.shape[1] / entry["width"], pixels.shape[0] / entry["height"]
        for kind in checked:
            for x, y, w, h in entry.get(kind, []):
                box = [x * sx, y * sy, w * sx, h * sy]
                change = box_change(pixels, after[(topic, stamp)], box)
                assert change >= REDACTED_MEAN_DIFF, (topic, entry["file"], kind, change)
                checked[kind] += 1
    # the faces of 5 photos and the plates of 5 others, on both topics; the 41x20 px plate of
    # Cars13 in the 320x240 Image topic was cut at 2x plate enlargement (mean change 5.7)
    assert checked["faces"] >= 40 and checked["plates"] == 10
    with io.open_bag(tmp_path / "out") as bag:
        for c in bag.connections:
            assert c.digest.startswith("RIHS01_")  # computed: the input had none
        fmt = {bag.deserialize(m).format for m in bag.messages(["/camera/image_raw/compressed"])}
    assert fmt == {"jpeg"}


@pytest.fixture
def small_bag(tmp_path):
    write_sample_bag(tmp_path / "in", 3, 1, 0.3, "mcap", SIZE, seed=2)
    return tmp_path / "in"


def _assert_nothing_left(tmp_path, expected):
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)


def test_truncated_mcap_bag_gives_error_and_no_output(small_bag, tmp_path):
    data_file = small_bag / "in.mcap"
    data = data_file.read_bytes()
    data_file.write_bytes(data[:len(data) * 2 // 3])
    with pytest.raises(BagError, match="magic"):
        anonymize_bag(small_bag, tmp_path / "out", progress=False)
    _assert_nothing_left(tmp_path, ["in"])


def test_corrupt_chunk_gives_error_and_no_output(small_bag, tmp_path):
    data_file = small_bag / "in.mcap"
    with data_file.open("rb") as f:
        chunk = make_reader(f).get_summary().chunk_indexes[0].chunk_start_offset
    data = bytearray(data_file.read_bytes())
    assert data[chunk] == 0x06  # a chunk record: opcode, length, 3 x uint64, then the CRC
    data[chunk + 33:chunk + 37] = b"\x01\x02\x03\x04"  # a wrong checksum
    data_file.write_bytes(bytes(data))
    with pytest.raises(BagError, match="damaged bag.*[Cc]hecksum"):
        anonymize_bag(small_bag, tmp_path / "out", progress=False)
    _assert_nothing_left(tmp_path, ["in"])


def test_truncated_sqlite3_bag_gives_error_and_no_output(tmp_path):
    write_sample_bag(tmp_path / "in", 3, 1, 0.3, "sqlite3", SIZE, seed=2)
    db = tmp_path / "in" / "in.db3"
    db.write_bytes(db.read_bytes()[:db.stat().st_size // 2])
    with pytest.raises(BagError, match="in"):
        anonymize_bag(tmp_path / "in", tmp_path / "out", progress=False)
    _assert_nothing_left(tmp_path, ["in"])


def test_failure_part_way_keeps_the_old_output(small_bag, tmp_path):
    old = tmp_path / "out"
    old.mkdir()
    (old / "previous.txt").write_text("old result")
    seen = []

    def fail_after_three(message):
        seen.append(message.topic)
        if len(seen) == 3:
            raise BagError("simulated read failure")
    with pytest.raises(BagError, match="simulated"):
        anonymize_bag(small_bag, old, force=True, progress=False, on_message=fail_after_three)
    assert (old / "previous.txt").read_text() == "old result"
    _assert_nothing_left(tmp_path, ["in", "out"])
    with pytest.raises(BagError, match="--force"):
        anonymize_bag(small_bag, old, progress=False)


def test_output_inside_input_is_refused(small_bag):
    with pytest.raises(ConfigError, match="overwrite"):
        anonymize_bag(small_bag, small_bag / "out")
    with pytest.raises(ConfigError, match="overwrite"):
        anonymize_bag(small_bag, small_bag, force=True)


def test_results_topic_must_be_new(small_bag, tmp_path):
    with pytest.raises(ConfigError, match="results-topic"):
        anonymize_bag(small_bag, tmp_path / "o", results_topic="/tf")
    with pytest.raises(ConfigError, match="results-topic"):
        anonymize_bag(small_bag, tmp_path / "o", results_topic="relative")


def test_cameras_are_named_as_eval_names_them(sample):
    """Results messages name the camera as `vlm-node eval` does (one function, config.py):
    two cameras of one vehicle stay apart."""
    _, out, _, _ = sample
    with io.open_bag(out) as bag:
        cameras = {bag.deserialize(m).camera for m in bag.messages(["/anonymization"])}
    topics = ("/front/image_raw", "/rear/image_raw/compressed", "/left/image_raw/compressed")
    assert cameras == {camera_name_of(t) for t in topics} == {"front", "rear", "left"}


def test_directory_without_metadata_is_refused(tmp_path):
    """A bare .mcap copied into a directory without metadata.yaml is not a bag directory."""
    d = tmp_path / "bag"
    d.mkdir()
    shutil.copy(shared("rosbag/camera_sample.mcap"), d / "x.mcap")
    with pytest.raises(BagError, match="no metadata.yaml"):
        anonymize_bag(d, tmp_path / "out")


def test_topics_of_one_camera_are_separate_sequences(tmp_path):
    """`/front/image_raw` and `/front/image_rect` both name camera `front`, but each topic is
    its own sequence in the pipeline (its stream key is the topic): a face carried over on one
    topic never redacts a region of the other's frames, which show no face."""
    plain = write_two_topics_one_camera(tmp_path / "in", SIZE)
    assert camera_name_of("/front/image_raw") == camera_name_of("/front/image_rect") == "front"
    summary = anonymize_bag(tmp_path / "in", tmp_path / "out", progress=False,
                            frames_in_flight=1)
    assert summary.images["/front/image_raw"].faces == 3
    assert summary.images["/front/image_rect"].faces == 0
    assert summary.images["/front/image_rect"].written == 3
    with io.open_bag(tmp_path / "out") as bag:
        for m in bag.messages(["/front/image_rect"]):
            msg = bag.deserialize(m)
            assert np.array_equal(io.image_to_bgr(msg, m.msgtype), plain)


def test_a_slow_detector_drops_no_frame_of_a_recording(small_bag, tmp_path):
    # The node's detector budget fails a frame whose detector call overruns it (a wedged
    # detector must not hold a camera). Offline nothing waits for the frame: a budget a busy
    # machine overruns would drop frames from the released copy, so recordings get at least
    # RECORDING_DETECTOR_BUDGET_MS. Here a 0.001 ms budget, which every real call overruns.
    from vlm_node.anonymize.config import RECORDING_DETECTOR_BUDGET_MS, for_recordings

    tight = AnonymizerConfig(detector_budget_ms=0.001)
    assert for_recordings(tight).detector_budget_ms == RECORDING_DETECTOR_BUDGET_MS
    assert for_recordings(AnonymizerConfig(detector_budget_ms=0.0)).detector_budget_ms == 0.0
    summary = anonymize_bag(small_bag, tmp_path / "out", tight, progress=False)
    for counts in summary.images.values():
        assert counts.written == counts.messages and not counts.dropped, counts.to_json()
    assert sum(c.messages for c in summary.images.values()) == 3
