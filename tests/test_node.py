"""The node object in the test process (own rclpy Context, real Fast DDS): parameters, fail-closed
anonymization, diagnostics. The cross-process path is in test_node_process.py."""
from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image

from ros_helpers import Harness, wait_for, wait_for_subscribers
from vlm_node import image_codec
from vlm_node.ros import convert
from vlm_node.ros.node import VlmNode
from vlm_node_interfaces.msg import SceneUnderstanding

pytestmark = pytest.mark.integration

CAM = "cam"


def _frame(value: int = 128, stamp_sec: int = 1) -> Image:
    raw = image_codec.array_to_image(np.full((60, 80, 3), value, np.uint8), "bgr8")
    msg = Image(height=raw.height, width=raw.width, encoding="bgr8", step=raw.step,
                data=convert.byte_array(raw.data))
    msg.header.stamp.sec = stamp_sec
    msg.header.frame_id = "cam_optical"
    return msg


@pytest.fixture
def running():
    harness = Harness("node_probe")
    node = VlmNode(context=harness.context, parameter_overrides=[
        Parameter("cameras", value=[CAM]), Parameter("analysis.backend", value="ocr"),
        Parameter("qos_reliability", value="reliable"),
        Parameter("diagnostics_period", value=0.2), Parameter("max_frame_age", value=30.0)])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        harness.add_node(node)
        yield harness, node
    finally:
        harness.executor.remove_node(node)
        node.trigger_shutdown()
        node.destroy_node()
        harness.close()


def test_parameters_validated_with_reasons_and_applied_at_run_time(running) -> None:
    _, node = running
    bad = node.set_parameters([Parameter("max_frame_age", value=-1.0)])[0]
    assert not bad.successful and "max_frame_age out of range" in bad.reason
    fixed = node.set_parameters([Parameter("cameras", value=["a", "b"])])[0]
    assert not fixed.successful and "read-only" in fixed.reason
    mode = node.set_parameters([Parameter("anonymizer.redaction", value="sparkle")])[0]
    assert not mode.successful and "sparkle" in mode.reason
    ok = node.set_parameters([Parameter("anonymizer.margin", value=0.4)])[0]
    assert ok.successful, ok.reason
    assert node.config.anonymizer.margin == 0.4
    assert node.pipeline._anonymizer(CAM).config.margin == 0.4  # reached the running core
    assert node.config.max_frame_age == 30.0  # rejected values left nothing behind


def test_failing_detector_drops_frame_counts_it_publishes_nothing(running, monkeypatch) -> None:
    harness, node = running
    images = harness.subscribe(Image, f"/{CAM}/image_anonymized")
    results = harness.subscribe(SceneUnderstanding, "/scene_understanding", reliable=True)
    pub = harness.publisher(Image, f"/{CAM}/image_raw")
    wait_for_subscribers(pub)
    harness.wait_matched()
    stage = node.pipeline._anonymizer(CAM).detectors[0]

    def broken(*args, **kwargs):
        raise RuntimeError("detector exploded")
    monkeypatch.setattr(stage, "detect", broken)
    pub.publish(_frame(stamp_sec=1))
    wait_for(lambda: node.stats[CAM].snapshot()["dropped_anonymizer_failure"] == 1, 10,
             "the failure to be counted")
    diag = node.diagnostics()
    cam_status = next(s for s in diag.status if s.hardware_id == CAM)
    values = {kv.key: kv.value for kv in cam_status.values}
    assert values["dropped_anonymizer_failure"] == "1"
    assert cam_status.level != 0  # not OK while frames are being dropped

    monkeypatch.undo()  # the detector works again: frames flow
    pub.publish(_frame(stamp_sec=2))
    wait_for(lambda: results, 30, "a result for the good frame")
    assert [m.header.stamp.sec for m in images] == [2]
    assert [m.header.stamp.sec for m in results] == [2]


def test_diagnostics_published_with_rates_and_backend_state(running) -> None:
    harness, _ = running
    diags = harness.subscribe(DiagnosticArray, "/diagnostics", reliable=True)
    wait_for(lambda: diags, 10, "a /diagnostics message")
    statuses = {s.name.split(": ", 1)[1]: s for s in diags[-1].status}
    assert set(statuses) == {"analysis", f"camera {CAM}"}
    analysis = {kv.key: kv.value for kv in statuses["analysis"].values}
    assert analysis["backend"] == "ocr"
    assert statuses["analysis"].message.startswith("degraded")
    keys = {kv.key for kv in statuses[f"camera {CAM}"].values}
    assert {"input_rate_hz", "frames_received", "dropped_decode_error", "degraded"} <= keys


def _first_frame_through(harness, what: str):
    """Subscribe to the anonymized output, publish one frame and wait for it: (received
    images, the camera publisher)."""
    images = harness.subscribe(Image, f"/{CAM}/image_anonymized")
    pub = harness.publisher(Image, f"/{CAM}/image_raw")
    wait_for_subscribers(pub)
    harness.wait_matched()
    pub.publish(_frame(stamp_sec=1))
    wait_for(lambda: images, 10, what)
    return images, pub


def test_replace_fallbacks_are_in_the_camera_diagnostics(running) -> None:
    """In `replace` mode, faces that had to be blurred instead are counted per camera by
    reason; in other modes the keys are absent (nothing to fall back from)."""
    harness, node = running
    _first_frame_through(harness, "an anonymized frame")

    def camera_values() -> dict[str, str]:
        status = next(s for s in node.diagnostics().status if s.hardware_id == CAM)
        return {kv.key: kv.value for kv in status.values}
    assert not any(k.startswith("replace_fallback_") for k in camera_values())
    ok = node.set_parameters([Parameter("anonymizer.redaction", value="replace")])[0]
    assert ok.successful, ok.reason
    node.pipeline.anonymizer_stats(CAM).replace_fallbacks.update({"turned": 2})
    values = camera_values()
    assert values["replace_fallback_turned"] == "2"
    assert values["replace_fallback_too_small"] == "0"
    reasons = ("no_landmarks", "too_small", "turned", "no_bank")
    assert {f"replace_fallback_{r}" for r in reasons} <= set(values)


def test_lifecycle_deactivate_stops_io_and_activate_resumes_it(running) -> None:
    harness, node = running
    images, pub = _first_frame_through(harness, "output while active")
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    wait_for(lambda: pub.get_subscription_count() == 0, 10, "the subscription to go")
    pub.publish(_frame(stamp_sec=2))
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS  # models released
    assert node.pipeline is None
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    wait_for_subscribers(pub)
    harness.wait_matched()
    pub.publish(_frame(stamp_sec=3))
    wait_for(lambda: len(images) >= 2, 10, "output after re-activation")
    assert [m.header.stamp.sec for m in images] == [1, 3]  # nothing while inactive


def test_a_frame_arriving_without_a_pipeline_is_dropped_and_counted(running) -> None:
    """Every received frame is accounted for: one that arrives while the node has no
    pipeline (in the middle of a cleanup) is neither published nor lost from the counts."""
    _, node = running
    before = node.stats[CAM].snapshot()
    pipeline, node.pipeline = node.pipeline, None
    try:
        node.image_callback(_frame(stamp_sec=9), CAM)
    finally:
        node.pipeline = pipeline
    after = node.stats[CAM].snapshot()
    assert after["frames_received"] == before["frames_received"] + 1
    assert after["dropped_anonymizer_failure"] == before["dropped_anonymizer_failure"] + 1
    assert after["frames_anonymized"] == before["frames_anonymized"]


def test_compressed_output_and_latency_percentiles_in_diagnostics() -> None:
    harness = Harness("compressed_probe")
    node = VlmNode(context=harness.context, parameter_overrides=[
        Parameter("cameras", value=[CAM]), Parameter("analysis.backend", value="ocr"),
        Parameter(f"camera.{CAM}.publish_compressed", value=True),
        Parameter("qos_reliability", value="reliable"), Parameter("max_frame_age", value=30.0)])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        harness.add_node(node)
        jpegs = harness.subscribe(CompressedImage, f"/{CAM}/image_anonymized/compressed")
        results = harness.subscribe(SceneUnderstanding, "/scene_understanding", reliable=True)
        pub = harness.publisher(Image, f"/{CAM}/image_raw")
        wait_for_subscribers(pub)
        harness.wait_matched()
        pub.publish(_frame(value=200, stamp_sec=4))
        wait_for(lambda: jpegs and results, 30, "the compressed image and the result")
        assert jpegs[0].format.startswith("bgr8; jpeg compressed")
        assert jpegs[0].header.stamp.sec == 4
        pixels = image_codec.compressed_to_bgr8(jpegs[0])
        assert pixels.shape == (60, 80, 3) and abs(float(pixels.mean()) - 200) < 3
        cam_status = next(s for s in node.diagnostics().status if s.hardware_id == CAM)
        values = {kv.key: float(kv.value) for kv in cam_status.values
                  if kv.key.startswith("latency_ms_")}
        assert set(values) == {"latency_ms_p50", "latency_ms_p95"}
        assert 0 < values["latency_ms_p50"] <= values["latency_ms_p95"] < 30_000
    finally:
        harness.executor.remove_node(node)
        node.trigger_shutdown()
        node.destroy_node()
        harness.close()


def test_destroyed_node_leaves_no_lifecycle_services_in_the_graph() -> None:
    """A destroyed node is gone from the graph at once, even while the object is still
    referenced. rclpy's LifecycleNode.destroy_node left the lifecycle state machine (the
    change_state/get_state/... services) to the garbage collector; until a GC pass the node
    stayed visible as a lifecycle node that takes requests and never answers, and a
    `ros2 lifecycle set /vlm_node ...` in the same domain could send its request there and
    wait forever (seen late in full test runs, after the in-process tests above)."""
    observer = Harness("graph_observer", single_threaded=True)
    owner = Harness("leak_owner", single_threaded=True)
    name = "/lifecycle_leak_probe/change_state"

    def services() -> set[str]:
        return {n for n, _ in observer.node.get_service_names_and_types()}
    node = VlmNode("lifecycle_leak_probe", context=owner.context, parameter_overrides=[
        Parameter("cameras", value=[CAM]), Parameter("analysis_enabled", value=False)])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        wait_for(lambda: name in services(), 20, f"{name} in the graph")
        node.trigger_shutdown()
        node.destroy_node()
        # `node` is still referenced here, as a fixture or a test's frame holds it
        wait_for(lambda: name not in services(), 20, f"{name} to leave the graph")
    finally:
        owner.close()
        observer.close()


def _photo_frame(bgr: np.ndarray, stamp_sec: int) -> Image:
    raw = image_codec.array_to_image(bgr, "bgr8")
    msg = Image(height=raw.height, width=raw.width, encoding="bgr8", step=raw.step,
                data=convert.byte_array(raw.data))
    msg.header.stamp.sec = stamp_sec
    msg.header.frame_id = "cam_optical"
    return msg


def test_frames_in_flight_publish_in_order_what_one_at_a_time_would() -> None:
    """With `frames_in_flight: 2` the next frame is detected while the last one finishes; the
    frames still come out in order, each exactly as the anonymizer run one frame at a time
    (same settings) makes it, and a detector failure drops only its own frame."""
    import cv2

    from helpers import read_bgr, shared
    from vlm_node.anonymize import AnonymizerConfig
    from vlm_node.anonymize.config import for_frames_in_flight
    from vlm_node.frames import FrameMeta
    from vlm_node.pipeline import Pipeline

    photo = cv2.resize(read_bgr(shared("faces/dlib_pascal_voc/2008_002079.jpg")), (320, 240))
    shots = [np.roll(photo, 4 * k, axis=1) for k in range(8)]  # a panning camera
    harness = Harness("in_flight_probe")
    node = VlmNode(context=harness.context, parameter_overrides=[
        Parameter("cameras", value=[CAM]), Parameter("analysis_enabled", value=False),
        Parameter("frames_in_flight", value=2), Parameter("qos_reliability", value="reliable"),
        Parameter("qos_depth", value=20), Parameter("max_frame_age", value=60.0)])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert node.pipeline._anonymizer(CAM).config.parallel_stages is False
        harness.add_node(node)
        images = harness.subscribe(Image, f"/{CAM}/image_anonymized")
        pub = harness.publisher(Image, f"/{CAM}/image_raw")
        wait_for_subscribers(pub)
        harness.wait_matched()
        for k, shot in enumerate(shots):
            pub.publish(_photo_frame(shot, k + 1))
        wait_for(lambda: len(images) == len(shots), 60, "every frame anonymized")
        assert [m.header.stamp.sec for m in images] == list(range(1, len(shots) + 1))
        # one at a time, the same settings, the same stamps: the same pixels
        alone = Pipeline(for_frames_in_flight(AnonymizerConfig(), 2))
        for k, (shot, msg) in enumerate(zip(shots, images)):
            want = alone.anonymize(FrameMeta(CAM, (k + 1) * 1_000_000_000, "cam_optical"),
                                   shot.copy()).image
            got = image_codec.image_to_bgr8(msg)
            assert np.array_equal(got, want), k
            assert not np.array_equal(got, shot)  # the faces were redacted
        alone.close()

        stage = node.pipeline._anonymizer(CAM).detectors[0]
        real = stage.detect

        def broken_once(frame, config, **kwargs):
            stage.detect = real
            raise RuntimeError("detector exploded")
        stage.detect = broken_once
        for k in (20, 21):
            pub.publish(_photo_frame(shots[0], k))
        wait_for(lambda: node.stats[CAM].snapshot()["dropped_anonymizer_failure"] == 1
                 and images[-1].header.stamp.sec == 21, 30, "one frame dropped, the next out")
        assert [m.header.stamp.sec for m in images[len(shots):]] == [21]
    finally:
        harness.executor.remove_node(node)
        node.trigger_shutdown()
        node.destroy_node()
        harness.close()
