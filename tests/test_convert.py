"""Message conversion: the anonymized image message reuses the source buffer only when that
buffer is exactly what the anonymizer released; results round-trip through messages."""
from __future__ import annotations

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image

from vlm_node import image_codec
from vlm_node.anonymize import AnonymizerConfig
from vlm_node.frames import FrameMeta
from vlm_node.geometry import Box
from vlm_node.pipeline import Pipeline, decode
from vlm_node.results import SignReading
from vlm_node.ros import convert

META = FrameMeta("cam", 5_000_000_000, "cam_optical", 0.0)


def _received(pixels: np.ndarray, encoding: str = "bgr8") -> Image:
    """An Image as a subscription hands it over (deserialized: data is an array.array)."""
    raw = image_codec.array_to_image(image_codec.bgr8_to_array(pixels, encoding), encoding)
    msg = Image(height=raw.height, width=raw.width, encoding=encoding, step=raw.step,
                data=convert.byte_array(raw.data))
    msg.header.stamp.sec, msg.header.frame_id = 5, "cam_optical"
    return deserialize_message(serialize_message(msg), Image)


def _anonymize(msg: Image):
    pipeline = Pipeline(AnonymizerConfig(faces=False, plates=False))
    return pipeline.anonymize(META, decode(msg))


def test_tight_bgr8_is_republished_without_a_copy():
    msg = _received(np.full((6, 8, 3), 9, np.uint8))
    frame = _anonymize(msg)
    assert convert.anonymized_image_msg(msg, frame) is msg


def test_other_buffers_and_encodings_get_a_new_message():
    pixels = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    msg = _received(pixels, "rgb8")
    out = convert.anonymized_image_msg(msg, _anonymize(msg))
    assert out is not msg and out.encoding == "rgb8"
    assert np.array_equal(image_codec.image_to_bgr8(out), pixels)
    assert (out.header.stamp.sec, out.header.frame_id) == (5, "cam_optical")
    # same size, but pixels the anonymizer released from another buffer: never the source
    bgr = _received(pixels)
    other = _anonymize(_received(pixels))
    assert convert.anonymized_image_msg(bgr, other) is not bgr


def test_sign_reading_round_trips_through_the_message():
    sign = SignReading("speed_limit", 0.9, "ocr", 60.0, "km/h", "60", Box(10, 20, 30, 40),
                       "confirmed", 3)
    back = convert.sign_reading_of(convert.sign_msg(sign))
    assert back == SignReading("speed_limit", 0.9, "ocr", 60.0, "km/h",
                               "60", Box(10.0, 20.0, 30.0, 40.0), "confirmed", 3)
    none = convert.sign_reading_of(convert.sign_msg(SignReading("stop", 0.5, "vlm")))
    assert none.value is None and none.box is None and none.unit == ""
