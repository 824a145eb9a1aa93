"""vlm_node.image_codec: every encoding round trip, conversion values checked against
independently computed expectations, zero-copy views, and each malformed input's typed error.

Every message-level test runs three times: on a duck-typed dataclass, on real rclpy
sensor_msgs/Image / CompressedImage objects (data as array.array('B')), and on messages
deserialized by `rosbags` (data a read-only uint8 view into the CDR buffer).
"""
from __future__ import annotations

import array
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
import pytest

from vlm_node import image_codec as ic
from vlm_node.errors import (ConfigError, ImageConversionError, ImageDecodeError,
                             MalformedImageError, UnsupportedEncodingError)


# ----------------------------------------------------------------------------- messages

@dataclass
class DuckImage:
    height: Any
    width: Any
    encoding: str
    is_bigendian: int
    step: Any
    data: Any


@dataclass
class DuckCompressed:
    format: str
    data: Any


MSG_KINDS = ("duck", "rclpy", "rosbags")


@pytest.fixture(params=MSG_KINDS)
def msg_kind(request: pytest.FixtureRequest) -> str:
    return request.param


def _as_bytes(data: Any) -> bytes:
    return data if isinstance(data, bytes) else bytes(memoryview(data).cast("B"))


def _byte_array(data: Any) -> array.array:
    out = array.array("B")
    out.frombytes(_as_bytes(data))
    return out


@lru_cache(maxsize=None)
def _rosbags_store() -> Any:
    typesys = pytest.importorskip("rosbags.typesys")
    return typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)


def _through_rosbags_cdr(typename: str, **fields: Any) -> Any:
    """A message as rosbags reads it from a bag: data is a read-only uint8 view into the
    serialized buffer, at whatever offset the CDR layout puts it."""
    store = _rosbags_store()
    header = store.types["std_msgs/msg/Header"](
        stamp=store.types["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="cam")
    fields["data"] = np.frombuffer(_as_bytes(fields["data"]), np.uint8)
    msg = store.types[typename](header=header, **fields)
    return store.deserialize_cdr(store.serialize_cdr(msg, typename), typename)


def make_image(kind: str, height: int, width: int, encoding: str, step: int, data: Any,
               is_bigendian: int = 0) -> Any:
    if kind == "duck":
        return DuckImage(height, width, encoding, is_bigendian, step, data)
    if kind == "rosbags":
        return _through_rosbags_cdr("sensor_msgs/msg/Image", height=height, width=width,
                                    encoding=encoding, is_bigendian=is_bigendian, step=step,
                                    data=data)
    sensor_msgs = pytest.importorskip("sensor_msgs.msg")
    msg = sensor_msgs.Image()
    msg.height, msg.width, msg.encoding = height, width, encoding
    msg.is_bigendian, msg.step = is_bigendian, step
    msg.data = _byte_array(data)
    return msg


def from_raw(kind: str, raw: ic.RawImage) -> Any:
    return make_image(kind, raw.height, raw.width, raw.encoding, raw.step, raw.data,
                      int(raw.is_bigendian))


def make_compressed(kind: str, fmt: str, data: bytes) -> Any:
    if kind == "duck":
        return DuckCompressed(fmt, data)
    if kind == "rosbags":
        return _through_rosbags_cdr("sensor_msgs/msg/CompressedImage", format=fmt, data=data)
    sensor_msgs = pytest.importorskip("sensor_msgs.msg")
    msg = sensor_msgs.CompressedImage()
    msg.format = fmt
    msg.data = _byte_array(data)
    return msg


def data_view(msg: Any) -> np.ndarray:
    return np.frombuffer(msg.data, dtype=np.uint8)


# ----------------------------------------------------------------------------- samples

# encoding -> (height, width, native array shape, dtype): written out by hand from
# image_encodings.hpp / cv_bridge, not derived from the module under test.
LAYOUTS: dict[str, tuple[int, int, tuple[int, ...], type]] = {
    "rgb8": (5, 7, (5, 7, 3), np.uint8),
    "bgr8": (5, 7, (5, 7, 3), np.uint8),
    "rgba8": (5, 7, (5, 7, 4), np.uint8),
    "bgra8": (5, 7, (5, 7, 4), np.uint8),
    "rgb16": (5, 7, (5, 7, 3), np.uint16),
    "bgr16": (5, 7, (5, 7, 3), np.uint16),
    "rgba16": (5, 7, (5, 7, 4), np.uint16),
    "bgra16": (5, 7, (5, 7, 4), np.uint16),
    "mono8": (5, 7, (5, 7), np.uint8),
    "mono16": (5, 7, (5, 7), np.uint16),
    "bayer_rggb8": (5, 7, (5, 7), np.uint8),
    "bayer_bggr8": (5, 7, (5, 7), np.uint8),
    "bayer_gbrg8": (5, 7, (5, 7), np.uint8),
    "bayer_grbg8": (5, 7, (5, 7), np.uint8),
    "bayer_rggb16": (5, 7, (5, 7), np.uint16),
    "bayer_bggr16": (5, 7, (5, 7), np.uint16),
    "bayer_gbrg16": (5, 7, (5, 7), np.uint16),
    "bayer_grbg16": (5, 7, (5, 7), np.uint16),
    "yuv422": (5, 8, (5, 8, 2), np.uint8),
    "uyvy": (5, 8, (5, 8, 2), np.uint8),
    "yuv422_yuy2": (5, 8, (5, 8, 2), np.uint8),
    "yuyv": (5, 8, (5, 8, 2), np.uint8),
    "nv21": (6, 8, (9, 8), np.uint8),
    "8UC1": (5, 7, (5, 7), np.uint8),
    "8UC2": (5, 7, (5, 7, 2), np.uint8),
    "8UC3": (5, 7, (5, 7, 3), np.uint8),
    "8UC4": (5, 7, (5, 7, 4), np.uint8),
    "8SC1": (5, 7, (5, 7), np.int8),
    "16UC1": (5, 7, (5, 7), np.uint16),
    "16UC3": (5, 7, (5, 7, 3), np.uint16),
    "16SC2": (5, 7, (5, 7, 2), np.int16),
    "32SC1": (5, 7, (5, 7), np.int32),
    "32FC1": (5, 7, (5, 7), np.float32),
    "32FC3": (5, 7, (5, 7, 3), np.float32),
    "64FC1": (5, 7, (5, 7), np.float64),
    "8U": (5, 7, (5, 7), np.uint8),
    "32FC": (5, 7, (5, 7), np.float32),
}


def sample(shape: tuple[int, ...], dtype: type, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return (rng.standard_normal(shape) * 1000).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)


def padded_rows(arr: np.ndarray, rows: int, pad: int) -> tuple[bytes, int]:
    """The message bytes of `arr` with `pad` filler bytes (0xEE) after every row."""
    flat = np.ascontiguousarray(arr).reshape(rows, -1).view(np.uint8)
    filler = np.full((rows, pad), 0xEE, dtype=np.uint8)
    return np.hstack([flat, filler]).tobytes(), flat.shape[1] + pad


def test_every_named_encoding_has_a_layout_case() -> None:
    assert set(ic.SUPPORTED_ENCODINGS) <= set(LAYOUTS)


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("encoding", list(LAYOUTS))
def test_round_trip_every_encoding(encoding: str, msg_kind: str) -> None:
    height, width, shape, dtype = LAYOUTS[encoding]
    arr = sample(shape, dtype)
    raw = ic.array_to_image(arr, encoding)
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * (shape[2] if len(shape) == 3 else 1) * itemsize
    expected = (height, width, encoding, row_bytes)
    assert (raw.height, raw.width, raw.encoding, raw.step) == expected
    assert raw.is_bigendian is False
    assert len(raw.data) == row_bytes * shape[0]
    assert ic.expected_data_size(encoding, height, raw.step) == len(raw.data)
    out = ic.image_to_array(from_raw(msg_kind, raw))
    assert out.shape == shape and out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, arr)


def test_raw_image_itself_is_a_message_and_shares_memory() -> None:
    arr = sample((5, 7, 3), np.uint8)
    raw = ic.array_to_image(arr, "rgb8")
    out = ic.image_to_array(raw)
    np.testing.assert_array_equal(out, arr)
    assert np.shares_memory(out, arr)  # C-contiguous input: no copy at any step


def test_array_to_image_accepts_trailing_single_channel_axis() -> None:
    arr = sample((5, 7, 1), np.uint16)
    raw = ic.array_to_image(arr, "mono16")
    assert (raw.height, raw.width, raw.step) == (5, 7, 14)
    np.testing.assert_array_equal(ic.image_to_array(raw), arr[:, :, 0])


def test_array_to_image_copies_non_contiguous_input() -> None:
    base = sample((5, 14, 3), np.uint8)
    view = base[:, ::2]
    raw = ic.array_to_image(view, "bgr8")
    assert raw.step == 21 and len(raw.data) == 105
    np.testing.assert_array_equal(ic.image_to_array(raw), view)


@pytest.mark.parametrize("encoding, arr, match", [
    ("rgb8", np.zeros((5, 7, 3), np.uint16), "stores uint8"),
    ("rgb8", np.zeros((5, 7, 4), np.uint8), r"shape \(height, width, 3\)"),
    ("mono8", np.zeros((5, 7, 3), np.uint8), r"shape \(rows, width\)"),
    ("32FC1", np.zeros((5, 7), np.float64), "stores float32"),
    ("yuv422", np.zeros((5, 8), np.uint8), r"shape \(height, width, 2\)"),
])
def test_array_to_image_rejects_wrong_shape_or_dtype(encoding: str, arr: np.ndarray,
                                                     match: str) -> None:
    with pytest.raises(ImageConversionError, match=match) as exc:
        ic.array_to_image(arr, encoding)
    assert exc.type is ImageConversionError


@pytest.mark.parametrize("encoding, shape, match", [
    ("yuv422", (4, 7, 2), "even width"),
    ("nv21", (8, 8), "multiple of 3"),
    ("nv21", (9, 7), "even width and height"),   # 6 luma rows, odd width
    ("rgb8", (0, 7, 3), "empty image"),
])
def test_array_to_image_rejects_unrepresentable_sizes(encoding: str, shape: tuple[int, ...],
                                                      match: str) -> None:
    with pytest.raises(MalformedImageError, match=match):
        ic.array_to_image(np.zeros(shape, np.uint8), encoding)


def test_array_to_image_rejects_non_arrays() -> None:
    with pytest.raises(ImageConversionError, match="numpy array"):
        ic.array_to_image([[1, 2], [3, 4]], "mono8")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- layouts / views

PADDED_CASES = ["rgb8", "bgra8", "mono8", "mono16", "rgb16", "bayer_gbrg8", "yuv422",
                "yuv422_yuy2", "nv21", "8UC3", "16UC1", "32FC1", "64FC1"]


@pytest.mark.parametrize("encoding", PADDED_CASES)
@pytest.mark.parametrize("pad", [1, 5, 64])
def test_padded_rows_are_strided_views(encoding: str, pad: int, msg_kind: str) -> None:
    height, width, shape, dtype = LAYOUTS[encoding]
    arr = sample(shape, dtype, seed=pad)
    data, step = padded_rows(arr, shape[0], pad)
    msg = make_image(msg_kind, height, width, encoding, step, data)
    out = ic.image_to_array(msg)
    np.testing.assert_array_equal(out, arr)
    assert out.strides[0] == step
    assert np.shares_memory(out, data_view(msg)), "padded rows must not be copied"


@pytest.mark.parametrize("encoding", ["rgb8", "bgra8", "mono16", "rgb16", "bayer_gbrg8",
                                      "bayer_rggb16", "yuv422", "yuyv", "nv21", "8UC4"])
@pytest.mark.parametrize("pad", [1, 6])
def test_padded_and_unaligned_rows_convert_like_tight_rows(encoding: str, pad: int) -> None:
    # pad 1 leaves 16-bit rows at odd addresses: OpenCV must still get the right pixels.
    height, width, shape, dtype = LAYOUTS[encoding]
    arr = sample(shape, dtype, seed=pad + 40)
    data, step = padded_rows(arr, shape[0], pad)
    padded = ic.image_to_bgr8(DuckImage(height, width, encoding, 0, step, data))
    tight = ic.image_to_bgr8(ic.array_to_image(arr, encoding))
    assert_bgr_image(padded, height, width)
    np.testing.assert_array_equal(padded, tight)


def test_nv21_layout_is_y_plane_then_vu_rows_of_step_bytes() -> None:
    # 2x4 picture, step 6 (2 bytes of padding per row): Y rows 0-1, then one VU row.
    y = [[10, 11, 12, 13], [20, 21, 22, 23]]
    vu = [200, 100, 201, 101]
    data = bytes(y[0] + [0, 0] + y[1] + [0, 0] + vu + [0, 0])
    out = ic.image_to_array(DuckImage(2, 4, "nv21", 0, 6, data))
    assert out.shape == (3, 4)
    np.testing.assert_array_equal(out, [y[0], y[1], vu])


@pytest.mark.parametrize("make", [bytes, bytearray, lambda b: memoryview(b),
                                  lambda b: memoryview(bytearray(b)),
                                  lambda b: array.array("B", b),
                                  lambda b: np.frombuffer(b, np.uint8).copy()],
                         ids=["bytes", "bytearray", "memoryview", "memoryview-rw", "array",
                              "ndarray"])
def test_every_buffer_type_is_viewed_without_copy(make: Any) -> None:
    arr = sample((4, 6, 3), np.uint8)
    data = make(arr.tobytes())
    out = ic.image_to_array(DuckImage(4, 6, "rgb8", 0, 18, data))
    np.testing.assert_array_equal(out, arr)
    assert np.shares_memory(out, np.frombuffer(data, np.uint8))
    # Read-only exactly when the message's buffer is (bytes, or a memoryview of bytes).
    assert out.flags.writeable is (not memoryview(data).readonly)


def test_rosbags_style_ndarray_slice_at_odd_offset() -> None:
    # rosbags hands out views into the raw message buffer, at any byte offset.
    arr = sample((3, 5), np.uint16)
    backing = np.zeros(7 + arr.nbytes + 3, np.uint8)
    backing[7:7 + arr.nbytes] = np.frombuffer(arr.tobytes(), np.uint8)
    data = backing[7:7 + arr.nbytes]
    out = ic.image_to_array(DuckImage(3, 5, "mono16", 0, 10, data))
    np.testing.assert_array_equal(out, arr)
    assert np.shares_memory(out, backing)


def test_multi_byte_and_2d_buffers_are_read_as_bytes() -> None:
    arr = sample((2, 4), np.uint16, seed=4)
    words = array.array("H", arr.tobytes())
    out = ic.image_to_array(DuckImage(2, 4, "mono16", 0, 8, words))
    np.testing.assert_array_equal(out, arr)
    assert np.shares_memory(out, np.frombuffer(words, np.uint8))
    grid = memoryview(bytearray(arr.tobytes())).cast("B", (2, 8))
    np.testing.assert_array_equal(ic.image_to_array(DuckImage(2, 4, "mono16", 0, 8, grid)), arr)
    strided = np.frombuffer(bytes(range(32)), np.uint8)[::2]  # not contiguous: one copy
    np.testing.assert_array_equal(ic.image_to_array(DuckImage(2, 8, "mono8", 0, 8, strided)),
                                  np.arange(0, 32, 2).reshape(2, 8))


def test_plain_list_data_is_accepted_with_a_copy() -> None:
    out = ic.image_to_array(DuckImage(2, 2, "mono8", 0, 2, [1, 2, 3, 250]))
    np.testing.assert_array_equal(out, [[1, 2], [3, 250]])
    with pytest.raises(MalformedImageError, match="0..255"):
        ic.image_to_array(DuckImage(2, 2, "mono8", 0, 2, [1, 2, 3, 256]))


# ----------------------------------------------------------------------------- endianness

def test_big_endian_values_exact(msg_kind: str) -> None:
    data = bytes([0x01, 0x02, 0x03, 0x04])
    big = ic.image_to_array(make_image(msg_kind, 1, 2, "mono16", 4, data, is_bigendian=1))
    little = ic.image_to_array(make_image(msg_kind, 1, 2, "mono16", 4, data, is_bigendian=0))
    assert big.tolist() == [[0x0102, 0x0304]] and big.dtype == np.dtype(np.uint16)
    assert little.tolist() == [[0x0201, 0x0403]]
    assert big.dtype.isnative and little.dtype.isnative


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1", "rgb16", "bayer_rggb16",
                                      "64FC1", "16SC2"])
@pytest.mark.parametrize("pad", [0, 3])
def test_big_endian_data_is_swapped_to_native(encoding: str, pad: int, msg_kind: str) -> None:
    height, width, shape, dtype = LAYOUTS[encoding]
    arr = sample(shape, dtype, seed=3)
    data, step = padded_rows(arr.astype(arr.dtype.newbyteorder(">")), shape[0], pad)
    out = ic.image_to_array(make_image(msg_kind, height, width, encoding, step, data, 1))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, arr)


def test_big_endian_array_sets_is_bigendian_and_keeps_bytes(msg_kind: str) -> None:
    arr = np.array([[1, 2, 3], [256, 65535, 4660]], dtype=">u2")
    raw = ic.array_to_image(arr, "16UC1")
    assert raw.is_bigendian is True
    assert bytes(raw.data) == bytes([0, 1, 0, 2, 0, 3, 1, 0, 255, 255, 0x12, 0x34])
    out = ic.image_to_array(from_raw(msg_kind, raw))
    assert out.dtype.isnative
    assert out.tolist() == [[1, 2, 3], [256, 65535, 4660]]


# ----------------------------------------------------------------------------- to BGR8

def _bt601(y: float, u: float, v: float) -> tuple[int, int, int]:
    """BT.601 limited-range YCbCr -> (B, G, R), the textbook formula."""
    c, d, e = 1.164 * (y - 16), u - 128, v - 128
    rgb = (c + 1.596 * e, c - 0.392 * d - 0.813 * e, c + 2.017 * d)
    r, g, b = (int(np.clip(round(x), 0, 255)) for x in rgb)
    return b, g, r


def assert_bgr_image(out: np.ndarray, height: int, width: int) -> None:
    assert out.shape == (height, width, 3) and out.dtype == np.uint8
    assert out.flags.c_contiguous


@pytest.mark.parametrize("encoding, order", [
    ("rgb8", "rgb"), ("bgr8", "bgr"), ("rgba8", "rgba"), ("bgra8", "bgra"), ("8UC3", "bgr"),
    ("8UC4", "bgra"), ("rgb16", "rgb"), ("bgr16", "bgr"), ("rgba16", "rgba"),
    ("bgra16", "bgra"),
])
def test_bgr8_from_interleaved_colour(encoding: str, order: str, msg_kind: str) -> None:
    height, width, shape, dtype = LAYOUTS[encoding]
    arr = sample(shape, dtype, seed=7)
    out = ic.image_to_bgr8(from_raw(msg_kind, ic.array_to_image(arr, encoding)))
    high = arr >> 8 if arr.dtype == np.uint16 else arr
    expected = np.stack([high[..., order.index(c)] for c in "bgr"], axis=-1)
    assert_bgr_image(out, height, width)
    np.testing.assert_array_equal(out, expected.astype(np.uint8))


@pytest.mark.parametrize("encoding", ["mono8", "8UC1", "mono16"])
def test_bgr8_from_mono(encoding: str, msg_kind: str) -> None:
    height, width, shape, dtype = LAYOUTS[encoding]
    arr = sample(shape, dtype, seed=8)
    out = ic.image_to_bgr8(from_raw(msg_kind, ic.array_to_image(arr, encoding)))
    gray = (arr >> 8 if arr.dtype == np.uint16 else arr).astype(np.uint8)
    assert_bgr_image(out, height, width)
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))


def test_mono16_keeps_high_byte_exactly() -> None:
    data = np.array([[0, 255, 256, 32768, 65535]], "<u2").tobytes()
    out = ic.image_to_bgr8(DuckImage(1, 5, "mono16", 0, 10, data))
    assert out[0, :, 0].tolist() == [0, 0, 1, 128, 255]


def test_bgr8_tight_is_zero_copy_and_padded_is_contiguous_copy(msg_kind: str) -> None:
    arr = sample((4, 5, 3), np.uint8)
    tight = make_image(msg_kind, 4, 5, "bgr8", 15, arr.tobytes())
    out = ic.image_to_bgr8(tight)
    assert np.shares_memory(out, data_view(tight))
    np.testing.assert_array_equal(out, arr)
    data, step = padded_rows(arr, 4, 3)
    padded = make_image(msg_kind, 4, 5, "bgr8", step, data)
    out = ic.image_to_bgr8(padded)
    assert_bgr_image(out, 4, 5)
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("encoding, pair", [("yuv422", "UYVY"), ("uyvy", "UYVY"),
                                            ("yuv422_yuy2", "YUYV"), ("yuyv", "YUYV")])
def test_yuv422_decodes_bt601_with_the_right_byte_order(encoding: str, pair: str,
                                                        msg_kind: str) -> None:
    # Two rows of two macro-pixels; each (y0, y1, u, v) shares u and v.
    macro = [(50, 60, 90, 200), (235, 16, 128, 128), (120, 130, 240, 30), (81, 145, 54, 34)]
    data = bytearray()
    for y0, y1, u, v in macro:
        data += bytes([u, y0, v, y1] if pair == "UYVY" else [y0, u, y1, v])
    out = ic.image_to_bgr8(make_image(msg_kind, 2, 4, encoding, 8, bytes(data)))
    assert_bgr_image(out, 2, 4)
    for i, (y0, y1, u, v) in enumerate(macro):
        row, col = divmod(i * 2, 4)
        for dx, y in enumerate((y0, y1)):
            got = out[row, col + dx].astype(int)
            assert np.abs(got - _bt601(y, u, v)).max() <= 2, (i, dx, got, _bt601(y, u, v))


def test_nv21_decodes_bt601_with_v_before_u(msg_kind: str) -> None:
    # 2x4 picture: two 2x2 chroma blocks with (V, U) = (200, 90) and (40, 230).
    y = [[50, 80, 120, 160], [200, 235, 16, 100]]
    chroma = [(200, 90), (40, 230)]
    data = bytes(y[0] + y[1] + [chroma[0][0], chroma[0][1], chroma[1][0], chroma[1][1]])
    out = ic.image_to_bgr8(make_image(msg_kind, 2, 4, "nv21", 4, data))
    assert_bgr_image(out, 2, 4)
    for row in range(2):
        for col in range(4):
            v, u = chroma[col // 2]
            got = out[row, col].astype(int)
            assert np.abs(got - _bt601(y[row][col], u, v)).max() <= 2, (row, col, got)


def _flat_mosaic(pattern: str, bgr: tuple[int, int, int], height: int, width: int,
                 scale: int = 1) -> np.ndarray:
    value = {"b": bgr[0], "g": bgr[1], "r": bgr[2]}
    out = np.zeros((height, width), np.uint16 if scale > 1 else np.uint8)
    for (dy, dx), colour in zip([(0, 0), (0, 1), (1, 0), (1, 1)], pattern):
        out[dy::2, dx::2] = value[colour] * scale
    return out


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("size", [(6, 8), (5, 7), (2, 2), (2, 3), (3, 2), (7, 2)])
def test_bayer_flat_colour_demosaics_to_that_colour(pattern: str, bits: int,
                                                    size: tuple[int, int],
                                                    msg_kind: str) -> None:
    colour = (10, 100, 200)  # B, G, R: all different, so a wrong pattern shows
    height, width = size
    mosaic = _flat_mosaic(pattern, colour, height, width, 257 if bits == 16 else 1)
    encoding = f"bayer_{pattern}{bits}"
    msg = from_raw(msg_kind, ic.array_to_image(mosaic, encoding))
    out = ic.image_to_bgr8(msg)
    assert_bgr_image(out, height, width)
    assert (out == np.array(colour, np.uint8)).all(), out[0, 0]


@pytest.mark.parametrize("size", [(1, 1), (1, 6), (5, 1)])
def test_bayer_without_a_full_tile_cannot_be_demosaiced(size: tuple[int, int]) -> None:
    raw = ic.array_to_image(np.zeros(size, np.uint8), "bayer_rggb8")
    assert ic.image_to_array(raw).shape == size  # passthrough is fine
    with pytest.raises(MalformedImageError, match="at least 2x2"):
        ic.image_to_bgr8(raw)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_depth_is_not_a_camera_image(encoding: str, msg_kind: str) -> None:
    height, width, shape, dtype = LAYOUTS[encoding]
    msg = from_raw(msg_kind, ic.array_to_image(sample(shape, dtype), encoding))
    with pytest.raises(UnsupportedEncodingError, match="depth image"):
        ic.image_to_bgr8(msg)
    with pytest.raises(UnsupportedEncodingError, match="depth image"):
        ic.bgr8_to_array(np.zeros((2, 2, 3), np.uint8), encoding)
    assert ic.is_depth_encoding(encoding)


@pytest.mark.parametrize("encoding", ["8UC2", "16UC3", "32FC3", "8SC1", "64FC1"])
def test_generic_types_without_colour_meaning_are_refused(encoding: str) -> None:
    height, width, shape, dtype = LAYOUTS[encoding]
    raw = ic.array_to_image(sample(shape, dtype), encoding)
    with pytest.raises(UnsupportedEncodingError, match="no defined colour meaning"):
        ic.image_to_bgr8(raw)


# ----------------------------------------------------------------------------- from BGR8

def test_bgr8_to_array_exact_values() -> None:
    bgr = np.array([[[10, 20, 30], [40, 50, 60]], [[70, 80, 90], [100, 110, 120]]], np.uint8)
    assert ic.bgr8_to_array(bgr, "rgb8")[0, 0].tolist() == [30, 20, 10]
    assert ic.bgr8_to_array(bgr, "rgba8")[1, 1].tolist() == [120, 110, 100, 255]
    assert ic.bgr8_to_array(bgr, "bgra8")[0, 1].tolist() == [40, 50, 60, 255]
    np.testing.assert_array_equal(ic.bgr8_to_array(bgr, "8UC3"), bgr)
    # ROS tiles read from the top-left pixel: rggb = R at (0,0), G, G, B at (1,1).
    assert ic.bgr8_to_array(bgr, "bayer_rggb8").tolist() == [[30, 50], [80, 100]]
    assert ic.bgr8_to_array(bgr, "bayer_bggr8").tolist() == [[10, 50], [80, 120]]
    assert ic.bgr8_to_array(bgr, "bayer_gbrg8").tolist() == [[20, 40], [90, 110]]
    assert ic.bgr8_to_array(bgr, "bayer_grbg8").tolist() == [[20, 60], [70, 110]]
    assert ic.bgr8_to_array(bgr, "bayer_grbg16").tolist() == [[5140, 15420], [17990, 28270]]
    gray = np.full((2, 2, 3), 200, np.uint8)
    assert ic.bgr8_to_array(gray, "mono8").tolist() == [[200, 200], [200, 200]]
    assert ic.bgr8_to_array(gray, "mono16").tolist() == [[51400, 51400], [51400, 51400]]
    assert ic.bgr8_to_array(gray, "rgb16")[0, 0].tolist() == [51400] * 3
    # BT.601 limited range: black is Y=16, white Y=235, both with U = V = 128.
    black_white = np.array([[[0, 0, 0], [0, 0, 0], [255] * 3, [255] * 3]] * 2, np.uint8)
    assert ic.bgr8_to_array(black_white, "yuv422")[0].tolist() == [
        [128, 16], [128, 16], [128, 235], [128, 235]]                 # U Y V Y
    assert ic.bgr8_to_array(black_white, "yuv422_yuy2")[0].tolist() == [
        [16, 128], [16, 128], [235, 128], [235, 128]]                 # Y U Y V
    assert ic.bgr8_to_array(black_white, "nv21").tolist() == [
        [16, 16, 235, 235], [16, 16, 235, 235], [128, 128, 128, 128]]


def test_bgr8_to_nv21_puts_v_first() -> None:
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 2] = 255
    vu = ic.bgr8_to_array(red, "nv21")[2]
    # Pure red: V (Cr) is high, U (Cb) is low.
    assert vu[0] > 200 and vu[1] < 110, vu


def _blocky(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Colours constant on 2x2 blocks, so chroma subsampling loses nothing."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, ((height + 1) // 2, (width + 1) // 2, 3), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)[:height, :width].copy()


EXACT_ROUND_TRIP = ["bgr8", "rgb8", "rgba8", "bgra8", "8UC3", "8UC4", "rgb16", "bgr16",
                    "rgba16", "bgra16"]


@pytest.mark.parametrize("encoding", EXACT_ROUND_TRIP)
def test_colour_round_trip_is_exact(encoding: str, msg_kind: str) -> None:
    bgr = sample((5, 7, 3), np.uint8, seed=11)
    arr = ic.bgr8_to_array(bgr, encoding)
    out = ic.image_to_bgr8(from_raw(msg_kind, ic.array_to_image(arr, encoding)))
    np.testing.assert_array_equal(out, bgr)


@pytest.mark.parametrize("encoding", ["mono8", "mono16", "8UC1"])
def test_mono_round_trip_is_exact_for_gray(encoding: str, msg_kind: str) -> None:
    gray = np.repeat(sample((5, 7, 1), np.uint8, seed=12), 3, axis=2)
    arr = ic.bgr8_to_array(gray, encoding)
    out = ic.image_to_bgr8(from_raw(msg_kind, ic.array_to_image(arr, encoding)))
    np.testing.assert_array_equal(out, gray)


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuv422_yuy2", "yuyv", "nv21"])
def test_yuv_round_trip_within_quantisation(encoding: str, msg_kind: str) -> None:
    bgr = _blocky(6, 8, seed=13)
    arr = ic.bgr8_to_array(bgr, encoding)
    assert arr.shape == ((9, 8) if encoding == "nv21" else (6, 8, 2))
    out = ic.image_to_bgr8(from_raw(msg_kind, ic.array_to_image(arr, encoding)))
    assert np.abs(out.astype(int) - bgr).max() <= 2


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_round_trip(pattern: str, bits: int, msg_kind: str) -> None:
    encoding = f"bayer_{pattern}{bits}"
    bgr = sample((8, 10, 3), np.uint8, seed=14)
    out = ic.image_to_bgr8(from_raw(msg_kind, ic.array_to_image(
        ic.bgr8_to_array(bgr, encoding), encoding)))
    # Bilinear demosaicing keeps the sampled colour at every interior site exactly.
    index = {"b": 0, "g": 1, "r": 2}
    for (dy, dx), colour in zip([(0, 0), (0, 1), (1, 0), (1, 1)], pattern):
        sites = (slice(dy + 2, -2, 2), slice(dx + 2, -2, 2), index[colour])
        np.testing.assert_array_equal(out[sites], bgr[sites])
    flat = np.broadcast_to(np.array([30, 140, 220], np.uint8), (5, 7, 3)).copy()
    out = ic.image_to_bgr8(ic.array_to_image(ic.bgr8_to_array(flat, encoding), encoding))
    np.testing.assert_array_equal(out, flat)


@pytest.mark.parametrize("encoding, shape, match", [
    ("yuv422", (4, 7, 3), "even width"),
    ("nv21", (5, 8, 3), "even width and height"),
    ("nv21", (4, 7, 3), "even width and height"),
    ("8UC2", (4, 4, 3), "no defined colour meaning"),
])
def test_bgr8_to_array_refuses_unrepresentable(encoding: str, shape: tuple[int, ...],
                                               match: str) -> None:
    with pytest.raises(ImageConversionError, match=match):
        ic.bgr8_to_array(np.zeros(shape, np.uint8), encoding)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                                 np.zeros((4, 4, 4), np.uint8), "image"])
def test_bgr8_to_array_checks_its_input(bad: Any) -> None:
    with pytest.raises(ImageConversionError, match="HxWx3 uint8|numpy array"):
        ic.bgr8_to_array(bad, "rgb8")


# ----------------------------------------------------------------------------- compressed

@pytest.mark.parametrize("fmt, kind", [
    ("jpeg", "jpeg"), ("jpg", "jpeg"), ("JPEG", "jpeg"), ("png", "png"), ("PNG", "png"),
    ("image/jpeg", "jpeg"), ("bgr8; jpeg compressed bgr8", "jpeg"),
    ("rgb8; jpeg compressed bgr8", "jpeg"), ("mono8; jpeg compressed mono8", "jpeg"),
    ("mono8; png compressed ", "png"), ("bgr16; png compressed bgr16", "png"),
    ("bayer_rggb8; png compressed ", "png"), (" png ", "png"),
])
def test_compressed_format_kind(fmt: str, kind: str) -> None:
    assert ic.compressed_format_kind(fmt) == kind


@pytest.mark.parametrize("fmt, match", [
    ("16UC1; compressedDepth png", "compressedDepth"),
    ("32FC1; compressedDepth", "compressedDepth"),
    ("webp", "unsupported compressed format"),
    ("bgr8; tiff compressed bgr8", "unsupported compressed format"),
    ("", "unsupported compressed format"),
    ("h264", "unsupported compressed format"),
])
def test_compressed_format_kind_refuses(fmt: str, match: str) -> None:
    with pytest.raises(UnsupportedEncodingError, match=match):
        ic.compressed_format_kind(fmt)


def _smooth(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([(xx * 255 // max(width - 1, 1)), (yy * 255 // max(height - 1, 1)),
                     ((xx + yy) * 255 // max(width + height - 2, 1))], axis=-1).astype(np.uint8)


def test_encode_compressed_format_strings() -> None:
    bgr = _smooth(12, 16)
    gray = bgr[:, :, 1].copy()
    fmt, data = ic.encode_compressed(bgr, "jpeg", 90)
    assert fmt == "bgr8; jpeg compressed bgr8" and data[:3] == b"\xff\xd8\xff"
    fmt, data = ic.encode_compressed(bgr, "png")
    assert fmt == "bgr8; png compressed bgr8" and data[:8] == b"\x89PNG\r\n\x1a\n"
    assert ic.encode_compressed(gray, "jpeg")[0] == "mono8; jpeg compressed mono8"
    assert ic.encode_compressed(gray, "png")[0] == "mono8; png compressed "
    assert ic.encode_compressed(bgr, "jpg")[0] == "bgr8; jpeg compressed bgr8"
    assert isinstance(data, bytes)


@pytest.mark.parametrize("fmt", ["png", "bgr8; png compressed bgr8",
                                 "rgb8; png compressed bgr8", "bgra8; png compressed bgr8", ""])
def test_png_round_trip_is_exact(fmt: str, msg_kind: str) -> None:
    bgr = sample((9, 13, 3), np.uint8, seed=21)
    _, data = ic.encode_compressed(bgr, "png", png_level=1)
    out = ic.compressed_to_bgr8(make_compressed(msg_kind, fmt, data))
    assert_bgr_image(out, 9, 13)
    np.testing.assert_array_equal(out, bgr)


@pytest.mark.parametrize("fmt", ["jpeg", "jpg", "image/jpeg", "bgr8; jpeg compressed bgr8",
                                 "rgb8; jpeg compressed bgr8", "yuv422; jpeg compressed bgr8",
                                 ""])
def test_jpeg_round_trip_within_tolerance(fmt: str, msg_kind: str) -> None:
    bgr = _smooth(24, 32)
    _, data = ic.encode_compressed(bgr, "jpeg", quality=95)
    out = ic.compressed_to_bgr8(make_compressed(msg_kind, fmt, data))
    assert_bgr_image(out, 24, 32)
    diff = np.abs(out.astype(int) - bgr)
    assert diff.mean() < 2.0 and diff.max() <= 16, (diff.mean(), diff.max())


def test_legacy_rgb_compressed_format_is_swapped_back(msg_kind: str) -> None:
    # Old publishers compressed colour images in RGB order and said so ("... compressed rgb8");
    # image_transport's subscriber swaps them back, and so must we.
    bgr = sample((6, 5, 3), np.uint8, seed=22)
    ok, png = cv2.imencode(".png", np.ascontiguousarray(bgr[..., ::-1]))
    assert ok
    out = ic.compressed_to_bgr8(make_compressed(msg_kind, "rgb8; png compressed rgb8",
                                                png.tobytes()))
    np.testing.assert_array_equal(out, bgr)


@pytest.mark.parametrize("fmt, kind", [("mono8; png compressed ", "png"),
                                       ("mono8; jpeg compressed mono8", "jpeg"),
                                       ("png", "png")])
def test_compressed_mono_becomes_gray_bgr(fmt: str, kind: str, msg_kind: str) -> None:
    gray = _smooth(10, 12)[:, :, 0].copy()
    _, data = ic.encode_compressed(gray, kind)
    out = ic.compressed_to_bgr8(make_compressed(msg_kind, fmt, data))
    assert_bgr_image(out, 10, 12)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    tolerance = 0 if kind == "png" else 3
    assert np.abs(out[..., 0].astype(int) - gray).max() <= tolerance


def test_compressed_mono16_png_keeps_high_byte(msg_kind: str) -> None:
    values = np.array([[0, 255, 256, 32768, 65535, 4660]], np.uint16)
    ok, png = cv2.imencode(".png", values)
    assert ok
    out = ic.compressed_to_bgr8(make_compressed(msg_kind, "mono16; png compressed ",
                                                png.tobytes()))
    assert out[0, :, 0].tolist() == [0, 0, 1, 128, 255, 18]


@pytest.mark.parametrize("bits", [8, 16])
def test_compressed_bayer_png_is_demosaiced(bits: int, msg_kind: str) -> None:
    # compressed_image_transport PNG-compresses Bayer images as the raw mosaic
    # (format "bayer_grbg8; png compressed ").
    colour = (200, 30, 90)
    mosaic = _flat_mosaic("grbg", colour, 6, 8, 257 if bits == 16 else 1)
    ok, png = cv2.imencode(".png", mosaic)
    assert ok
    out = ic.compressed_to_bgr8(make_compressed(msg_kind, f"bayer_grbg{bits}; png compressed ",
                                                png.tobytes()))
    assert_bgr_image(out, 6, 8)
    assert (out == np.array(colour, np.uint8)).all()


def test_compressed_bayer_jpeg_is_already_gray(msg_kind: str) -> None:
    # JPEG holds the mono8 rendering of a Bayer source: it must not be demosaiced again.
    gray = _smooth(6, 8)[:, :, 2].copy()
    _, data = ic.encode_compressed(gray, "png")  # PNG, so the expectation is exact
    out = ic.compressed_to_bgr8(make_compressed(msg_kind, "bayer_rggb8; jpeg compressed mono8",
                                                data))
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))


def test_data_magic_decides_the_decoder() -> None:
    bgr = sample((5, 6, 3), np.uint8, seed=23)
    _, png = ic.encode_compressed(bgr, "png")
    np.testing.assert_array_equal(ic.compressed_to_bgr8(DuckCompressed("jpeg", png)), bgr)


def test_jpeg_exif_orientation_is_ignored() -> None:
    # Pixels come out as stored, like the raw topic, even with an EXIF rotation tag.
    bgr = _smooth(8, 16)
    _, data = ic.encode_compressed(bgr, "jpeg", 95)
    exif = (b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08" + b"\x00\x01"
            + b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00" + b"\x00\x00\x00\x00")
    app1 = b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif
    rotated = data[:2] + app1 + data[2:]
    assert cv2.imdecode(np.frombuffer(rotated, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (16, 8)
    out = ic.compressed_to_bgr8(DuckCompressed("jpeg", rotated))
    assert out.shape == (8, 16, 3)


@pytest.mark.parametrize("fmt, match", [
    ("16UC1; compressedDepth png", "compressedDepth"),
    ("16UC1; png compressed ", "depth image"),
    ("webp", "unsupported compressed format"),
])
def test_compressed_unsupported_formats(fmt: str, match: str, msg_kind: str) -> None:
    _, data = ic.encode_compressed(np.zeros((4, 4, 3), np.uint8), "png")
    with pytest.raises(UnsupportedEncodingError, match=match):
        ic.compressed_to_bgr8(make_compressed(msg_kind, fmt, data))


def _jpeg() -> bytes:
    return ic.encode_compressed(_smooth(16, 16), "jpeg", 90)[1]


def _png() -> bytes:
    return ic.encode_compressed(_smooth(16, 16), "png")[1]


def _jpeg_with_size(width: int, height: int) -> bytes:
    data = bytearray(_jpeg())
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    data[sof + 5:sof + 7] = height.to_bytes(2, "big")
    data[sof + 7:sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


def _png_with_size(width: int, height: int) -> bytes:
    data = bytearray(_png())
    data[16:20] = width.to_bytes(4, "big")
    data[20:24] = height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # a valid IHDR CRC
    return bytes(data)


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        chunks.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return chunks


def _png_from_chunks(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray(b"\x89PNG\r\n\x1a\n")
    for kind, payload in chunks:
        out += len(payload).to_bytes(4, "big") + kind + payload
        out += zlib.crc32(kind + payload).to_bytes(4, "big")
    return bytes(out)


def _png_with_idat(payload: bytes) -> bytes:
    return _png_from_chunks([(k, payload if k == b"IDAT" else p) for k, p in _png_chunks(_png())])


def _png_with_chunk_length(length: int) -> bytes:
    # A 60-byte file whose IDAT claims gigabytes: OpenCV would allocate them before reading.
    data = bytearray(_png()[:62])
    data[33:37] = length.to_bytes(4, "big")
    return bytes(data)


@pytest.mark.parametrize("fmt, make, error, match", [
    ("jpeg", lambda: b"", ImageDecodeError, "empty"),
    ("jpeg", lambda: bytes(range(200)), ImageDecodeError, "neither JPEG nor PNG"),
    ("jpeg", lambda: b"\xff\xd8\xff" + b"garbage!" * 20, ImageDecodeError, "no frame header"),
    ("jpeg", lambda: b"\xff\xd8\xff\xe0\x00\x04ab" + b"junk", ImageDecodeError, "corrupt JPEG"),
    ("jpeg", lambda: b"\xff\xd8\xff\xe0\x00\x01", ImageDecodeError, "segment length 1"),
    ("jpeg", lambda: _jpeg()[:len(_jpeg()) // 2], ImageDecodeError, "could not be decoded"),
    ("jpeg", lambda: _jpeg()[:120], ImageDecodeError, "truncated or corrupt|decoded"),
    ("jpeg", lambda: _jpeg()[:3], ImageDecodeError, "no frame header"),
    ("png", lambda: _png()[:len(_png()) - 20], ImageDecodeError, "truncated"),
    ("png", lambda: _png()[:len(_png()) - 12], ImageDecodeError, "no IEND"),
    ("png", lambda: _png_with_chunk_length(0xF6000034), ImageDecodeError, "declares 4127195188"),
    ("png", lambda: _png()[:20], ImageDecodeError, "no IHDR"),
    ("png", lambda: _png()[:40] + bytes(60), ImageDecodeError, "truncated PNG"),
    ("png", lambda: _png_with_idat(b"not zlib data"), ImageDecodeError, "could not be decoded"),
    ("jpeg", lambda: _jpeg_with_size(60000, 60000), MalformedImageError, "MAX_IMAGE_SIDE"),
    ("jpeg", lambda: _jpeg_with_size(16000, 16000), MalformedImageError, "MAX_IMAGE_PIXELS"),
    ("jpeg", lambda: _jpeg_with_size(0, 16), ImageDecodeError, "empty 0x16"),
    ("png", lambda: _png_with_size(1 << 20, 4), MalformedImageError, "MAX_IMAGE_SIDE"),
    ("png", lambda: _png_with_size(17, 16), ImageDecodeError, "could not be decoded|header"),
])
def test_corrupt_compressed_data(fmt: str, make: Any, error: type, match: str,
                                 msg_kind: str) -> None:
    with pytest.raises(error, match=match) as exc:
        ic.compressed_to_bgr8(make_compressed(msg_kind, fmt, make()))
    assert exc.type is error


@pytest.mark.parametrize("kwargs, error, match", [
    ({"kind": "webp"}, UnsupportedEncodingError, "'jpeg' or 'png'"),
    ({"quality": 0}, ConfigError, "1..100"),
    ({"quality": 101}, ConfigError, "1..100"),
    ({"quality": True}, ConfigError, "1..100"),
    ({"quality": 90.0}, ConfigError, "1..100"),
    ({"png_level": 10}, ConfigError, "0..9"),
])
def test_encode_compressed_validates(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ic.encode_compressed(np.zeros((4, 4, 3), np.uint8), **kwargs)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 2), np.uint8),
                                 np.zeros((0, 4, 3), np.uint8)])
def test_encode_compressed_checks_image(bad: np.ndarray) -> None:
    with pytest.raises(ImageConversionError):
        ic.encode_compressed(bad, "png")


# ----------------------------------------------------------------------------- malformed

def test_unknown_encoding(msg_kind: str) -> None:
    with pytest.raises(UnsupportedEncodingError, match="unsupported image encoding 'rgb9'"):
        ic.image_to_array(make_image(msg_kind, 2, 2, "rgb9", 6, bytes(12)))
    with pytest.raises(UnsupportedEncodingError, match="did you mean 'rgb8'"):
        ic.image_to_bgr8(make_image(msg_kind, 2, 2, "RGB8", 6, bytes(12)))
    with pytest.raises(UnsupportedEncodingError, match="unsupported image encoding"):
        ic.image_to_array(make_image(msg_kind, 2, 2, "8UC0", 0, b""))
    with pytest.raises(UnsupportedEncodingError):
        ic.array_to_image(np.zeros((2, 2), np.uint8), "")


@pytest.mark.parametrize("height, width", [(0, 0), (0, 4), (4, 0)])
def test_empty_image(height: int, width: int, msg_kind: str) -> None:
    with pytest.raises(MalformedImageError, match="empty image"):
        ic.image_to_array(make_image(msg_kind, height, width, "rgb8", width * 3, b""))


@pytest.mark.parametrize("height, width", [(1, 100_000), (100_000, 1), (16384, 16384),
                                           (2**31, 2**31)])
def test_absurd_size_is_refused_before_reading_data(height: int, width: int,
                                                    msg_kind: str) -> None:
    # The data is empty: the size guard must fire first, without allocating anything.
    with pytest.raises(MalformedImageError, match="MAX_IMAGE_SIDE / MAX_IMAGE_PIXELS"):
        ic.image_to_bgr8(make_image(msg_kind, height, width, "bgr8", 0, b""))


def test_size_limits_are_module_constants() -> None:
    assert ic.MAX_IMAGE_SIDE == 16384 and ic.MAX_IMAGE_PIXELS == 2**27
    ok = ic.image_to_array(DuckImage(1, ic.MAX_IMAGE_SIDE, "mono8", 0, ic.MAX_IMAGE_SIDE,
                                     bytes(ic.MAX_IMAGE_SIDE)))
    assert ok.shape == (1, 16384)


@pytest.mark.parametrize("encoding, height, width, step, size, match", [
    ("rgb8", 2, 4, 11, 22, "step 11 is smaller than one row of 4 rgb8 pixels"),
    ("mono16", 2, 4, 7, 14, "step 7 is smaller"),
    ("rgb8", 2, 4, 12, 23, "data has 23 bytes but step \\* height = 24"),
    ("rgb8", 2, 4, 12, 25, "data has 25 bytes but step \\* height = 24"),
    ("rgb8", 3, 4, 12, 24, "truncated data or a wrong step"),
    ("rgb16", 2, 2, 12, 23, "truncated data or a wrong step"),
    ("nv21", 2, 4, 4, 8, "step \\* height \\* 3/2 = 12"),
    ("yuv422", 2, 3, 6, 12, "even width"),
    ("nv21", 3, 4, 4, 18, "even width and height"),
    ("nv21", 2, 3, 3, 9, "even width and height"),
])
def test_malformed_header_or_data(encoding: str, height: int, width: int, step: int,
                                  size: int, match: str, msg_kind: str) -> None:
    msg = make_image(msg_kind, height, width, encoding, step, bytes(size))
    with pytest.raises(MalformedImageError, match=match):
        ic.image_to_array(msg)
    with pytest.raises(MalformedImageError, match=match):
        ic.image_to_bgr8(msg)


@pytest.mark.parametrize("field, value, error, match", [
    ("height", -1, MalformedImageError, "height must be >= 0"),
    ("width", "4", MalformedImageError, "width must be an integer"),
    ("step", 12.0, MalformedImageError, "step must be an integer"),
    ("data", None, MalformedImageError, "bytes-like"),
    ("data", "abc", MalformedImageError, "bytes-like"),
    ("data", np.zeros(24, np.float32), MalformedImageError, "1-byte integer dtype"),
    ("encoding", 5, UnsupportedEncodingError, "must be a string"),
])
def test_bad_field_types_duck(field: str, value: Any, error: type, match: str) -> None:
    msg = DuckImage(2, 4, "rgb8", 0, 12, bytes(24))
    setattr(msg, field, value)
    with pytest.raises(error, match=match):
        ic.image_to_array(msg)


def test_numpy_integer_fields_are_accepted() -> None:
    msg = DuckImage(np.uint32(2), np.int64(4), "mono8", np.uint8(0), np.uint32(4), bytes(8))
    assert ic.image_to_array(msg).shape == (2, 4)


def test_not_an_image_message() -> None:
    with pytest.raises(ImageConversionError, match="has no 'encoding'"):
        ic.image_to_array(DuckCompressed("jpeg", b""))
    with pytest.raises(ImageConversionError, match="has no 'format'"):
        ic.compressed_to_bgr8(DuckImage(1, 1, "mono8", 0, 1, b"\x00"))


def test_helpers() -> None:
    assert ic.channels_of("rgba16") == 4 and ic.dtype_of("rgba16") == np.dtype(np.uint16)
    assert ic.bytes_per_pixel("rgba16") == 8 and ic.bytes_per_pixel("nv21") == 1
    assert ic.bytes_per_pixel("yuv422") == 2 and ic.bytes_per_pixel("32FC3") == 12
    assert ic.min_step("bgr8", 7) == 21 and ic.min_step("nv21", 8) == 8
    assert ic.expected_data_size("nv21", 6, 10) == 90
    assert ic.expected_data_size("rgb8", 6, 10) == 60
    assert ic.encoding_info("bayer_gbrg16").order == "gbrg"
    assert ic.encoding_info("yuv422").order == "uyvy"
    assert ic.encoding_info("yuv422_yuy2").order == "yuyv"
    assert ic.encoding_info("16UC3").bit_depth == 16
    assert not ic.is_depth_encoding("mono16")


# ----------------------------------------------------------------------------- robustness

FUZZ_ENCODINGS = list(LAYOUTS)


def test_random_headers_only_raise_typed_errors() -> None:
    """Arbitrary header/data combinations: a result of the right shape or an
    ImageConversionError, never anything else (and never a crash inside OpenCV)."""
    rng = np.random.default_rng(99)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(600):
        encoding = FUZZ_ENCODINGS[rng.integers(len(FUZZ_ENCODINGS))]
        height, width = int(rng.integers(0, 7)), int(rng.integers(0, 7))
        step = int(rng.integers(0, 40))
        size = step * (height + height // 2 if encoding == "nv21" else height)
        size = max(0, size + int(rng.choice([0, 0, 0, -1, 1, -step])))
        msg = DuckImage(height, width, encoding, int(rng.integers(0, 2)), step,
                        rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        for fn in (ic.image_to_array, ic.image_to_bgr8):
            try:
                out = fn(msg)
            except ImageConversionError:
                outcomes["error"] += 1
                continue
            outcomes["ok"] += 1
            if fn is ic.image_to_bgr8:
                assert out.shape == (height, width, 3) and out.dtype == np.uint8
    assert outcomes["ok"] > 50 and outcomes["error"] > 50, outcomes


def test_mutated_compressed_data_only_raises_typed_errors() -> None:
    rng = np.random.default_rng(7)
    sources = {"jpeg": _jpeg(), "png": _png()}
    for _ in range(150):
        kind = "jpeg" if rng.integers(2) else "png"
        data = bytearray(sources[kind])
        cut = int(rng.integers(len(data) // 2, len(data) + 1))
        data = data[:cut]
        for _ in range(int(rng.integers(1, 6))):
            pos = int(rng.integers(len(data) // 2, len(data)))
            data[pos] = int(rng.integers(0, 256))
        try:
            out = ic.compressed_to_bgr8(DuckCompressed(kind, bytes(data)))
        except ImageConversionError:
            continue
        assert out.shape == (16, 16, 3) and out.dtype == np.uint8
