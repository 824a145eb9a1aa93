"""Annotated images: drawn on the anonymized frame only, changing nothing outside what is
drawn; the `<camera>/image_annotated` topic of the real node only when enabled."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from helpers import read_bgr, shared
from vlm_node.annotate import annotate, sign_label
from vlm_node.anonymize.anonymizer import Anonymizer
from vlm_node.anonymize.config import AnonymizerConfig
from vlm_node.frames import FrameMeta
from vlm_node.geometry import Box
from vlm_node.results import AnalysisResult, SceneInfo, SceneObject, SignReading

PHOTO = "faces/dlib_pascal_voc/2008_002079.jpg"


def _frame(image=None):
    image = read_bgr(shared(PHOTO)) if image is None else image
    return Anonymizer(AnonymizerConfig(plates=False)).anonymize(FrameMeta("cam", 7, "cam"), image)


def test_only_drawn_regions_change():
    frame = _frame()
    assert frame.detections  # faces were redacted: their outlines are drawn
    result = AnalysisResult(
        signs=[SignReading("speed_limit", 0.9, "ocr", 50.0, "km/h", "50", Box(20, 30, 40, 40),
                           "confirmed", 3)],
        scene=SceneInfo("s", objects=(SceneObject("pedestrian", "person", 0.8,
                                                  Box(100, 60, 80, 200)),),
                        source="detector"),
        degraded=True, degraded_reason="VLM not loaded")
    out = annotate(frame, result)
    assert out.meta == frame.meta and out.image.shape == frame.image.shape
    changed = np.any(out.image != frame.image, axis=2)
    allowed = np.zeros_like(changed)
    for r in out.regions:
        rows, cols = r.int_slices(frame.image.shape[1], frame.image.shape[0])
        allowed[rows, cols] = True
    assert changed.any()
    assert not (changed & ~allowed).any()  # nothing outside the drawn regions differs
    # each thing drawn is there: banner on top, sign and object outlines
    assert changed[:5, :].mean() > 0.9  # degraded banner across the top
    assert changed[30, 20:60].any() and changed[60, 100:180].any()
    assert not frame.image.flags.writeable  # the frame itself is untouched (read-only)


def test_nothing_to_draw_is_a_plain_copy():
    frame = _frame(np.full((60, 80, 3), 90, np.uint8))
    out = annotate(frame, AnalysisResult())
    assert out.regions == () and np.array_equal(out.image, frame.image)


def test_raw_pixels_are_refused():
    with pytest.raises(TypeError, match="AnonymizedFrame"):
        annotate(read_bgr(shared(PHOTO)))


def test_sign_label():
    s = SignReading("speed_limit", 0.9, "ocr", 55.0, "mph", track_state="tentative")
    assert sign_label(s) == "speed_limit 55 mph [tentative]"
    s = SignReading("stop", 0.9, "ocr", None, "", track_state="confirmed", track_id=4)
    assert sign_label(s) == "stop [confirmed #4]"


@pytest.mark.integration
@pytest.mark.parametrize("enabled", [True, False])
def test_node_publishes_annotated_only_when_enabled(enabled):
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from ros_helpers import Harness, wait_for, wait_for_subscribers
    from vlm_node import image_codec
    from vlm_node.ros.node import VlmNode
    from vlm_node_interfaces.msg import SceneUnderstanding

    cam = "front"
    harness = Harness(f"annotated_probe_{int(enabled)}")
    node = VlmNode(context=harness.context, parameter_overrides=[
        Parameter("cameras", value=[cam]), Parameter("analysis.backend", value="ocr"),
        Parameter(f"camera.{cam}.publish_annotated", value=enabled),
        Parameter("qos_reliability", value="reliable"), Parameter("max_frame_age", value=30.0)])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        harness.add_node(node)
        annotated = harness.subscribe(Image, f"/{cam}/image_annotated")
        anonymized = harness.subscribe(Image, f"/{cam}/image_anonymized")
        results = harness.subscribe(SceneUnderstanding, "/scene_understanding", reliable=True)
        pub = harness.publisher(Image, f"/{cam}/image_raw")
        wait_for_subscribers(pub)
        harness.wait_matched(*(() if enabled else (f"/{cam}/image_anonymized",
                                                   "/scene_understanding")))
        photo = cv2.resize(read_bgr(shared(PHOTO)), (640, 480))
        msg = image_codec.array_to_image(photo, "bgr8")
        out = Image(height=msg.height, width=msg.width, encoding="bgr8", step=msg.step,
                    data=bytes(msg.data))
        out.header.stamp.sec = 11
        out.header.frame_id = cam
        pub.publish(out)
        wait_for(lambda: results and anonymized and (annotated or not enabled), 60,
                 "the result, the anonymized and (enabled) the annotated image")
        assert results[0].has_scene and results[0].scene.source == "detector"
        if not enabled:
            time.sleep(1.0)  # the harness executor spins in its own thread
            assert not annotated
            assert node.count_publishers(f"/{cam}/image_annotated") == 0
            return
        a, b = annotated[0], anonymized[0]
        assert a.header.stamp.sec == 11 and a.header.frame_id == cam
        img_a = image_codec.image_to_bgr8(a)
        img_b = image_codec.image_to_bgr8(b)
        assert img_a.shape == img_b.shape == (480, 640, 3)
        changed = np.any(img_a != img_b, axis=2)
        # drawn: the degraded banner (OCR only) and outlines; the rest is the anonymized frame
        assert changed[:5].mean() > 0.9 and 0.01 < changed.mean() < 0.5
    finally:
        harness.executor.remove_node(node)
        node.trigger_shutdown()
        node.destroy_node()
        harness.close()
