"""sensor_msgs/Image and CompressedImage <-> numpy, without ROS: cv_bridge's job, done here.

cv_bridge cannot be installed in this environment, and bag tools read messages from `rosbags`
rather than rclpy, so this module works on anything with the message's attribute names
(duck typing): `height, width, encoding, is_bigendian, step, data` for Image and
`format, data` for CompressedImage. `data` may be bytes, bytearray, memoryview,
`array.array('B')` (rclpy) or a uint8 `np.ndarray` (rosbags).

Conventions follow sensor_msgs/image_encodings.hpp and cv_bridge (ros-perception/vision_opencv,
`cv_bridge/src/cv_bridge.cpp`):

* Pixel arrays are views of `msg.data` whenever the layout allows (padded rows become a strided
  view); a copy is made only to swap bytes or convert colours. Views of immutable buffers
  (bytes) are read-only; views of mutable ones (array.array, bytearray) write through to the
  message.
* A message's data length must equal `step * height` exactly, and `step` must hold a full row.
* Multi-byte data with `is_bigendian` different from the host is byte-swapped into native order.
* ROS Bayer names give the colour of the 2x2 tile starting at the top-left pixel; OpenCV names
  its codes after the tile starting at pixel (1, 1), so `bayer_rggb` is `COLOR_BayerBG2BGR`
  (the same table as cv_bridge's getConversionCodes).
* `yuv422` is UYVY and `yuv422_yuy2` is YUYV (image_encodings.hpp also names them `uyvy` and
  `yuyv`); both are BT.601 limited range, as OpenCV decodes them.
* `nv21`: cv_bridge has no conversion for it. Drivers that publish it (v4l2 YUV420 capture) set
  `height`/`width` to the picture size and `step` to the bytes of one luma row, and send a Y
  plane of `height` rows followed by an interleaved V/U plane of `height / 2` rows, so
  `len(data) == step * height * 3 / 2` (the one exception to the rule above). The native array
  is OpenCV's (height * 3 / 2, width) uint8 layout; height and width must be even.
* Depth encodings (`16UC1`, `32FC1`, REP 118) are not camera images: converting them to BGR
  raises UnsupportedEncodingError.
"""
from __future__ import annotations

import enum
import operator
import re
import sys
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from vlm_node.errors import (ConfigError, ImageConversionError, ImageDecodeError,
                             MalformedImageError, UnsupportedEncodingError)

__all__ = [
    "MAX_IMAGE_SIDE", "MAX_IMAGE_PIXELS", "SUPPORTED_ENCODINGS", "DEPTH_ENCODINGS", "Kind",
    "EncodingInfo", "RawImage", "encoding_info", "channels_of", "dtype_of", "bytes_per_pixel",
    "min_step", "expected_data_size", "is_depth_encoding", "image_to_array", "array_to_image",
    "image_to_bgr8", "bgr8_to_array", "compressed_format_kind", "compressed_to_bgr8",
    "encode_compressed",
]

# Guards against absurd header values, checked before anything is allocated: a corrupt or
# hostile header must not make the node allocate gigabytes. 16384 covers every camera sensor
# in use; 2**27 pixels is 384 MiB as BGR8.
MAX_IMAGE_SIDE = 16384
MAX_IMAGE_PIXELS = 1 << 27

# OpenCV's CV_CN_MAX: the most channels a generic "8UC<n>" encoding can have.
_MAX_GENERIC_CHANNELS = 512


class Kind(enum.Enum):
    """How the bytes of an encoding are laid out and what they mean."""

    COLOR = "color"      # interleaved R/G/B(/A) in the order the name spells
    MONO = "mono"        # one luminance channel
    BAYER = "bayer"      # one raw sensor channel, 2x2 colour filter mosaic
    YUV422 = "yuv422"    # packed 4:2:2, two bytes per pixel
    NV21 = "nv21"        # planar Y + interleaved VU at half resolution (4:2:0)
    GENERIC = "generic"  # OpenCV type names: no colour meaning


@dataclass(frozen=True, slots=True)
class EncodingInfo:
    """What one `encoding` string means for the pixel array.

    `channels` and `dtype` describe the native array `image_to_array` returns: (rows, width)
    when channels is 1, else (rows, width, channels). `order` is the channel order for COLOR
    ("rgb", "bgra", ...), the 2x2 tile for BAYER ("rggb", ...) and the byte order for YUV422
    ("uyvy" or "yuyv").
    """

    name: str
    kind: Kind
    dtype: np.dtype
    channels: int
    order: str = ""

    @property
    def bit_depth(self) -> int:
        return self.dtype.itemsize * 8

    @property
    def is_depth(self) -> bool:
        return self.name in DEPTH_ENCODINGS


def _named_encodings() -> dict[str, EncodingInfo]:
    u8, u16 = np.dtype(np.uint8), np.dtype(np.uint16)
    table: dict[str, EncodingInfo] = {}
    for order in ("rgb", "bgr", "rgba", "bgra"):
        for dtype in (u8, u16):
            name = f"{order}{dtype.itemsize * 8}"
            table[name] = EncodingInfo(name, Kind.COLOR, dtype, len(order), order)
    table["mono8"] = EncodingInfo("mono8", Kind.MONO, u8, 1)
    table["mono16"] = EncodingInfo("mono16", Kind.MONO, u16, 1)
    for pattern in ("rggb", "bggr", "gbrg", "grbg"):
        for dtype in (u8, u16):
            name = f"bayer_{pattern}{dtype.itemsize * 8}"
            table[name] = EncodingInfo(name, Kind.BAYER, dtype, 1, pattern)
    # image_encodings.hpp: "yuv422" (deprecated name) == "uyvy", "yuv422_yuy2" == "yuyv".
    for name, order in (("yuv422", "uyvy"), ("uyvy", "uyvy"), ("yuv422_yuy2", "yuyv"),
                        ("yuyv", "yuyv")):
        table[name] = EncodingInfo(name, Kind.YUV422, u8, 2, order)
    table["nv21"] = EncodingInfo("nv21", Kind.NV21, u8, 1)
    return table


_NAMED = _named_encodings()
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_NAMED)
DEPTH_ENCODINGS: frozenset[str] = frozenset({"16UC1", "32FC1"})

# cv_bridge's getCvType accepts "8UC3" and the bare depth "8U"; image_encodings.hpp also reads
# "8UC" (no digits) as one channel.
_GENERIC_RE = re.compile(r"(8U|8S|16U|16S|32S|32F|64F)(?:C([0-9]*))?")
_GENERIC_DTYPES = {"8U": np.uint8, "8S": np.int8, "16U": np.uint16, "16S": np.int16,
                   "32S": np.int32, "32F": np.float32, "64F": np.float64}

# ROS Bayer name -> OpenCV demosaicing code (OpenCV names the tile at (1, 1); see module doc).
_BAYER_TO_BGR = {"rggb": cv2.COLOR_BayerBG2BGR, "bggr": cv2.COLOR_BayerRG2BGR,
                 "gbrg": cv2.COLOR_BayerGR2BGR, "grbg": cv2.COLOR_BayerGB2BGR}
_YUV422_TO_BGR = {"uyvy": cv2.COLOR_YUV2BGR_UYVY, "yuyv": cv2.COLOR_YUV2BGR_YUY2}
_BGR_TO_YUV422 = {"uyvy": cv2.COLOR_BGR2YUV_UYVY, "yuyv": cv2.COLOR_BGR2YUV_YUY2}
_COLOR_TO_BGR = {"rgb": cv2.COLOR_RGB2BGR, "rgba": cv2.COLOR_RGBA2BGR,
                 "bgra": cv2.COLOR_BGRA2BGR}
_BGR_TO_COLOR = {"rgb": cv2.COLOR_BGR2RGB, "rgba": cv2.COLOR_BGR2RGBA,
                 "bgra": cv2.COLOR_BGR2BGRA}
_BGR_INDEX = {"b": 0, "g": 1, "r": 2}
_TILE = ((0, 0), (0, 1), (1, 0), (1, 1))


def encoding_info(encoding: str) -> EncodingInfo:
    """The meaning of `encoding`; UnsupportedEncodingError names the accepted ones."""
    if not isinstance(encoding, str):
        raise UnsupportedEncodingError(f"encoding must be a string, got {type(encoding).__name__}")
    info = _NAMED.get(encoding)
    if info is not None:
        return info
    m = _GENERIC_RE.fullmatch(encoding)
    if m is not None:
        channels = int(m.group(2)) if m.group(2) else 1
        if 1 <= channels <= _MAX_GENERIC_CHANNELS:
            return EncodingInfo(encoding, Kind.GENERIC, np.dtype(_GENERIC_DTYPES[m.group(1)]),
                                channels)
    hint = ""
    for candidate in (encoding.strip().lower(), encoding.strip().upper()):
        if candidate in _NAMED or _GENERIC_RE.fullmatch(candidate):
            hint = f" (encodings are case-sensitive: did you mean {candidate!r}?)"
            break
    raise UnsupportedEncodingError(
        f"unsupported image encoding {encoding!r}{hint}; expected one of "
        f"{', '.join(SUPPORTED_ENCODINGS)} or an OpenCV type such as 8UC3, 16UC1, 32FC1")


def channels_of(encoding: str) -> int:
    """Channels of the native array (its last axis; 1 means a 2-D array). nv21 is 1: it is
    stored as a single-channel (height * 3 / 2, width) plane pair."""
    return encoding_info(encoding).channels


def dtype_of(encoding: str) -> np.dtype:
    """Element dtype of the native array, in native byte order."""
    return encoding_info(encoding).dtype


def bytes_per_pixel(encoding: str) -> int:
    """Bytes per pixel within one stored row (nv21: 1, its rows hold one byte per column)."""
    info = encoding_info(encoding)
    return info.channels * info.dtype.itemsize


def min_step(encoding: str, width: int) -> int:
    """The tight row size in bytes: the smallest valid `step` for `width` pixels."""
    return bytes_per_pixel(encoding) * width


def _stored_rows(info: EncodingInfo, height: int) -> int:
    """Rows of `step` bytes in the message: nv21 adds the half-height VU plane."""
    return height + height // 2 if info.kind is Kind.NV21 else height


def expected_data_size(encoding: str, height: int, step: int) -> int:
    """The exact `len(data)` a message with these fields must have."""
    return _stored_rows(encoding_info(encoding), height) * step


def is_depth_encoding(encoding: str) -> bool:
    """True for the REP 118 depth encodings, which have no camera-image (BGR) meaning."""
    return encoding in DEPTH_ENCODINGS


@dataclass(frozen=True, slots=True)
class RawImage:
    """The sensor_msgs/Image fields other than header, ready to copy into any message type.

    `data` is a flat byte view (memoryview, format "B") of a C-contiguous array; it may share
    memory with the array it came from.
    """

    height: int
    width: int
    encoding: str
    is_bigendian: bool
    step: int
    data: memoryview | bytes


# ----------------------------------------------------------------------------- validation

def _field(msg: Any, name: str) -> Any:
    try:
        return getattr(msg, name)
    except AttributeError:
        raise ImageConversionError(
            f"not a sensor_msgs/Image-like object: {type(msg).__name__} has no {name!r}"
        ) from None


def _uint_field(msg: Any, name: str) -> int:
    value = _field(msg, name)
    try:
        number = operator.index(value)
    except TypeError:
        raise MalformedImageError(
            f"image {name} must be an integer, got {type(value).__name__} {value!r}") from None
    if number < 0:
        raise MalformedImageError(f"image {name} must be >= 0, got {number}")
    return number


def _check_dims(info: EncodingInfo, height: int, width: int) -> None:
    """Zero, absurd and layout-incompatible sizes, before anything is allocated."""
    if height == 0 or width == 0:
        raise MalformedImageError(
            f"empty image: {width}x{height} ({info.name}); width and height must be >= 1")
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise MalformedImageError(
            f"image size {width}x{height} exceeds the limit of {MAX_IMAGE_SIDE} pixels per side "
            f"and {MAX_IMAGE_PIXELS} pixels in total (MAX_IMAGE_SIDE / MAX_IMAGE_PIXELS); "
            "the header is probably corrupt")
    if info.kind is Kind.YUV422 and width % 2:
        raise MalformedImageError(
            f"{info.name} needs an even width (pixels come in U/Y/V/Y pairs), got {width}")
    if info.kind is Kind.NV21 and (width % 2 or height % 2):
        raise MalformedImageError(
            f"nv21 needs even width and height (chroma is sampled per 2x2 block), "
            f"got {width}x{height}")


def _byte_buffer(data: Any) -> np.ndarray:
    """`data` as a flat uint8 array, sharing memory with it whenever it is contiguous."""
    if isinstance(data, np.ndarray):
        if data.dtype.itemsize != 1 or data.dtype.kind not in "uib":
            raise MalformedImageError(
                f"image data array must have a 1-byte integer dtype, got {data.dtype}")
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (list, tuple)):
        # Plain sequences (some JSON/dict-based bridges) cannot be viewed; one copy.
        try:
            arr = np.asarray(data)
        except (ValueError, TypeError) as exc:
            raise MalformedImageError(f"image data is not a sequence of bytes: {exc}") from None
        if arr.size and (arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() > 255):
            raise MalformedImageError("image data values must be integers in 0..255")
        return arr.astype(np.uint8).reshape(-1)
    try:
        view = memoryview(data)
    except TypeError:
        raise MalformedImageError(
            f"image data must be bytes-like (bytes, bytearray, memoryview, array.array or "
            f"numpy uint8 array), got {type(data).__name__}") from None
    if not view.c_contiguous:
        return np.frombuffer(view.tobytes(), dtype=np.uint8)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")  # e.g. array.array('H') or a 2-D memoryview: same bytes
    return np.frombuffer(view, dtype=np.uint8)


def _native(arr: np.ndarray) -> np.ndarray:
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def _cv_view(arr: np.ndarray) -> np.ndarray:
    """`arr` as OpenCV accepts it: a cv::Mat needs each row step to be a multiple of the
    element size, which padded 16-bit rows (odd `step`) or odd buffer offsets break; those
    are copied, everything else is passed as the strided view it is."""
    itemsize = arr.dtype.itemsize
    if itemsize > 1 and (not arr.flags.aligned or any(s % itemsize for s in arr.strides)):
        return np.ascontiguousarray(arr)
    return arr


def _cv(fn: Any, src: np.ndarray, *args: Any) -> np.ndarray:
    """Call OpenCV on `src`, turning its errors into ours (inputs are validated first, so this
    is a last line of defence, not a code path)."""
    try:
        return fn(_cv_view(src), *args)
    except cv2.error as exc:
        raise ImageConversionError(f"OpenCV conversion failed: {exc}") from None


# ----------------------------------------------------------------------------- raw images

def image_to_array(msg: Any) -> np.ndarray:
    """The pixels of an Image-like message in their native layout (cv_bridge's passthrough).

    Shape (H, W) for one channel, (H, W, C) otherwise; bayer is (H, W); yuv422/yuyv are
    (H, W, 2) uint8; nv21 is (H * 3 / 2, W) uint8 (OpenCV's layout). The result is a view of
    `msg.data` (strided when rows are padded) unless bytes had to be swapped.
    """
    info = encoding_info(_field(msg, "encoding"))
    height, width = _uint_field(msg, "height"), _uint_field(msg, "width")
    step = _uint_field(msg, "step")
    _check_dims(info, height, width)
    itemsize = info.dtype.itemsize
    row_bytes = width * info.channels * itemsize
    if step < row_bytes:
        raise MalformedImageError(
            f"step {step} is smaller than one row of {width} {info.name} pixels "
            f"({row_bytes} bytes = width * {info.channels * itemsize})")
    rows = _stored_rows(info, height)
    buf = _byte_buffer(_field(msg, "data"))
    if buf.size != rows * step:
        what = "step * height * 3/2" if info.kind is Kind.NV21 else "step * height"
        raise MalformedImageError(
            f"data has {buf.size} bytes but {what} = {rows * step} for {width}x{height} "
            f"{info.name} with step {step} (truncated data or a wrong step)")
    big = bool(_field(msg, "is_bigendian")) if itemsize > 1 else False
    dtype = info.dtype.newbyteorder(">" if big else "<") if itemsize > 1 else info.dtype
    if info.channels == 1:
        shape: tuple[int, ...] = (rows, width)
        strides: tuple[int, ...] = (step, itemsize)
    else:
        shape = (rows, width, info.channels)
        strides = (step, info.channels * itemsize, itemsize)
    arr = np.ndarray(shape, dtype=dtype, buffer=buf, strides=strides)
    return _native(arr)


def array_to_image(arr: np.ndarray, encoding: str) -> RawImage:
    """The Image fields for `arr` in `encoding` (tight rows), after checking that the array's
    shape and dtype are what the encoding stores. Big-endian arrays keep their bytes and set
    `is_bigendian`, as cv_bridge's cv2_to_imgmsg does."""
    info = encoding_info(encoding)
    if not isinstance(arr, np.ndarray):
        raise ImageConversionError(f"expected a numpy array, got {type(arr).__name__}")
    if arr.dtype.newbyteorder("=") != info.dtype:
        raise ImageConversionError(
            f"{encoding} stores {info.dtype} pixels, got an array of dtype {arr.dtype}")
    if arr.ndim == 3 and info.channels == 1 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    want = "(rows, width)" if info.channels == 1 else f"(height, width, {info.channels})"
    if arr.ndim != (2 if info.channels == 1 else 3) or (
            info.channels > 1 and arr.shape[2] != info.channels):
        raise ImageConversionError(
            f"{encoding} needs an array of shape {want}, got {arr.shape}")
    rows, width = int(arr.shape[0]), int(arr.shape[1])
    height = rows
    if info.kind is Kind.NV21:
        if rows % 3:
            raise MalformedImageError(
                f"nv21 arrays have height * 3 / 2 rows (Y plane then VU plane); {rows} rows "
                "is not a multiple of 3")
        height = rows * 2 // 3
    _check_dims(info, height, width)
    order = arr.dtype.byteorder  # "|" for 1-byte types, which have no byte order
    big = order == ">" or (order == "=" and sys.byteorder == "big")
    tight = np.ascontiguousarray(arr)
    return RawImage(height=height, width=width, encoding=encoding, is_bigendian=big,
                    step=width * info.channels * info.dtype.itemsize,
                    data=tight.reshape(-1).view(np.uint8).data)


# ----------------------------------------------------------------------------- to / from BGR

def _no_bgr_meaning(info: EncodingInfo) -> UnsupportedEncodingError:
    if info.is_depth:
        return UnsupportedEncodingError(
            f"{info.name} is a depth image (REP 118), not a camera image; it has no BGR "
            "rendering here: subscribe the vision pipeline to a colour or mono camera topic")
    return UnsupportedEncodingError(
        f"{info.name} is a generic OpenCV type with no defined colour meaning; only 8UC1 "
        "(as mono), 8UC3 (as BGR) and 8UC4 (as BGRA) convert to BGR")


# cv_bridge treats the nUC types as non-colour; OpenCV's own convention (mono, BGR, BGRA) is
# the only sensible reading of 8UC1/8UC3/8UC4 for a camera pipeline.
_GENERIC_READING = {1: (Kind.MONO, ""), 3: (Kind.COLOR, "bgr"), 4: (Kind.COLOR, "bgra")}


def _colour_reading(info: EncodingInfo) -> tuple[Kind, str]:
    """(kind, order) to convert `info` to or from BGR as; raises for depth and generic types
    that have no colour meaning."""
    if info.kind is not Kind.GENERIC:
        return info.kind, info.order
    reading = _GENERIC_READING.get(info.channels) if info.dtype == np.uint8 else None
    if reading is None:
        raise _no_bgr_meaning(info)
    return reading


def _to_8bit(arr: np.ndarray) -> np.ndarray:
    """16-bit intensities to 8 bits by keeping the high byte (v >> 8), which the inverse
    (v * 257) undoes exactly."""
    if arr.dtype == np.uint8:
        return arr
    return np.right_shift(arr, 8).astype(np.uint8)


def _demosaic(mosaic: np.ndarray, pattern: str) -> np.ndarray:
    """Bilinear demosaicing (cv_bridge's), at full depth, then to 8 bits.

    OpenCV returns all zeros when a side is shorter than 3 pixels, so such images are first
    extended by two pixels on every side with same-colour neighbours (period-2 padding keeps
    the tile phase), then cropped back. One pixel high or wide holds no full colour tile.
    """
    height, width = mosaic.shape
    if height < 2 or width < 2:
        raise MalformedImageError(
            f"a Bayer image needs at least 2x2 pixels (one full colour tile) to demosaic, "
            f"got {width}x{height}")
    if height >= 3 and width >= 3:
        return _to_8bit(_cv(cv2.cvtColor, mosaic, _BAYER_TO_BGR[pattern]))

    def same_colour_index(n: int) -> np.ndarray:
        idx = np.arange(-2, n + 2)
        idx = np.where(idx < 0, idx + 2, idx)
        return np.where(idx >= n, idx - 2 * ((idx - n) // 2 + 1), idx)

    padded = mosaic[np.ix_(same_colour_index(height), same_colour_index(width))]
    bgr = _cv(cv2.cvtColor, np.ascontiguousarray(padded), _BAYER_TO_BGR[pattern])
    return _to_8bit(np.ascontiguousarray(bgr[2:-2, 2:-2]))


def _array_to_bgr8(arr: np.ndarray, info: EncodingInfo) -> np.ndarray:
    """Native array of `info` -> HxWx3 uint8 BGR, C-contiguous."""
    kind, order = _colour_reading(info)
    if kind is Kind.COLOR:
        arr8 = _to_8bit(arr)
        if order == "bgr":
            return np.ascontiguousarray(arr8)
        return _cv(cv2.cvtColor, arr8, _COLOR_TO_BGR[order])
    if kind is Kind.MONO:
        return _cv(cv2.cvtColor, _to_8bit(arr), cv2.COLOR_GRAY2BGR)
    if kind is Kind.BAYER:
        return _demosaic(arr, order)
    if kind is Kind.YUV422:
        return _cv(cv2.cvtColor, arr, _YUV422_TO_BGR[order])
    return _cv(cv2.cvtColor, arr, cv2.COLOR_YUV2BGR_NV21)


def image_to_bgr8(msg: Any) -> np.ndarray:
    """HxWx3 uint8 C-contiguous BGR pixels of an Image-like message, for the vision pipeline.

    bgr8 (and 8UC3) with tight rows is returned without a copy: it may be read-only (bytes
    data) or write through to `msg.data` (array.array); copy first if the message must stay
    intact. 16-bit data keeps the high byte; Bayer is demosaiced bilinearly like cv_bridge;
    YUV is BT.601 limited range. Depth encodings raise UnsupportedEncodingError.
    """
    info = encoding_info(_field(msg, "encoding"))
    _colour_reading(info)  # refuse depth before touching the data
    return _array_to_bgr8(image_to_array(msg), info)


def _check_bgr(bgr: Any, what: str = "bgr") -> np.ndarray:
    if not isinstance(bgr, np.ndarray):
        raise ImageConversionError(f"{what} must be a numpy array, got {type(bgr).__name__}")
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ImageConversionError(
            f"{what} must be an HxWx3 uint8 BGR array, got shape {bgr.shape} dtype {bgr.dtype}")
    return bgr


def _mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    """Sample one colour per pixel following the ROS 2x2 tile `pattern` (top-left first)."""
    out = np.empty(bgr.shape[:2], dtype=np.uint8)
    for (dy, dx), colour in zip(_TILE, pattern):
        out[dy::2, dx::2] = bgr[dy::2, dx::2, _BGR_INDEX[colour]]
    return out


def _bgr_to_nv21(bgr: np.ndarray) -> np.ndarray:
    """OpenCV writes 4:2:0 as planar YV12 (Y, V plane, U plane); NV21 interleaves V and U."""
    height, width = bgr.shape[:2]
    yv12 = _cv(cv2.cvtColor, bgr, cv2.COLOR_BGR2YUV_YV12).reshape(-1)
    luma, quarter = height * width, height * width // 4
    out = np.empty(luma + 2 * quarter, dtype=np.uint8)
    out[:luma] = yv12[:luma]
    out[luma::2] = yv12[luma:luma + quarter]          # V
    out[luma + 1::2] = yv12[luma + quarter:]          # U
    return out.reshape(height * 3 // 2, width)


def bgr8_to_array(bgr: np.ndarray, encoding: str) -> np.ndarray:
    """HxWx3 uint8 BGR -> the native array of `encoding`: the inverse of image_to_bgr8, for
    re-publishing an anonymized frame in its source encoding. 16-bit outputs are v * 257,
    alpha is 255, Bayer is re-mosaiced, YUV is BT.601 limited range. For bgr8/8UC3 the
    result is `bgr` itself when it is C-contiguous."""
    bgr = _check_bgr(bgr)
    info = encoding_info(encoding)
    kind, order = _colour_reading(info)
    height, width = int(bgr.shape[0]), int(bgr.shape[1])
    _check_dims(info, height, width)
    wide = info.dtype == np.uint16

    def widen(arr8: np.ndarray) -> np.ndarray:
        return arr8.astype(np.uint16) * np.uint16(257) if wide else arr8

    if kind is Kind.COLOR:
        arr8 = bgr if order == "bgr" else _cv(cv2.cvtColor, bgr, _BGR_TO_COLOR[order])
        return widen(np.ascontiguousarray(arr8))
    if kind is Kind.MONO:
        return widen(_cv(cv2.cvtColor, bgr, cv2.COLOR_BGR2GRAY))
    if kind is Kind.BAYER:
        return widen(_mosaic(bgr, order))
    if kind is Kind.YUV422:
        return _cv(cv2.cvtColor, bgr, _BGR_TO_YUV422[order]).reshape(height, width, 2)
    return _bgr_to_nv21(bgr)


# ----------------------------------------------------------------------------- compressed

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the picture size (all but DHT C4, JPG C8 and DAC CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def compressed_format_kind(fmt: str) -> str:
    """"jpeg" or "png" for a CompressedImage `format`, in any style in use: plain ("jpeg",
    "jpg", "png"), image_transport's "<encoding>; jpeg compressed bgr8" / "<encoding>; png
    compressed ", or a MIME type. compressedDepth and other codecs raise
    UnsupportedEncodingError."""
    if not isinstance(fmt, str):
        raise UnsupportedEncodingError(f"format must be a string, got {type(fmt).__name__}")
    lowered = fmt.strip().lower()
    if "compresseddepth" in lowered:
        raise UnsupportedEncodingError(
            f"compressed format {fmt!r} is compressedDepth (a depth image from "
            "compressed_depth_image_transport), not a camera image")
    head, sep, tail = lowered.partition(";")
    tokens = set(re.findall(r"[a-z0-9]+", tail if sep else head))
    if tokens & {"jpeg", "jpg"}:
        return "jpeg"
    if "png" in tokens:
        return "png"
    raise UnsupportedEncodingError(
        f"unsupported compressed format {fmt!r}; expected JPEG or PNG, e.g. 'jpeg', 'png' "
        "or 'bgr8; jpeg compressed bgr8'")


def _sniff(buf: np.ndarray) -> str | None:
    head = buf[:8].tobytes()
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if head == _PNG_MAGIC:
        return "png"
    return None


def _png_size(data: memoryview) -> tuple[int, int]:
    """Width and height from IHDR, after walking every chunk up to IEND.

    The walk is a guard, not a formality: OpenCV's PNG reader allocates each chunk's declared
    length before reading it, so a 60-byte file claiming a 4 GiB chunk costs gigabytes and
    seconds. Every length must fit in the data actually received.
    """
    # Signature (8), then chunks: length (4, big-endian), type (4), payload, CRC (4).
    end = len(data)
    if end < 24 or data[12:16] != b"IHDR":
        raise ImageDecodeError("PNG data has no IHDR header (truncated or corrupt)")
    pos = 8
    while True:
        if pos + 12 > end:
            raise ImageDecodeError(f"truncated PNG: no IEND chunk in {end} bytes")
        length = int.from_bytes(data[pos:pos + 4], "big")
        if length > end - pos - 12:
            raise ImageDecodeError(
                f"truncated or corrupt PNG: chunk at byte {pos} declares {length} bytes, "
                f"{end - pos - 12} remain")
        if data[pos + 4:pos + 8] == b"IEND":
            break
        pos += 12 + length
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _jpeg_size(data: memoryview) -> tuple[int, int]:
    """Width and height from the JPEG start-of-frame segment, read without decoding."""
    pos, end = 2, len(data)
    while pos < end:
        if data[pos] != 0xFF:
            raise ImageDecodeError(f"corrupt JPEG: expected a marker at byte {pos}")
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= end:
            break
        marker = data[pos]
        pos += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # stand-alone markers, no length
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        if pos + 2 > end:
            break
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2:
            raise ImageDecodeError(f"corrupt JPEG: segment length {length} at byte {pos}")
        if marker in _JPEG_SOF:
            if length < 7 or pos + 7 > end:
                break
            height = int.from_bytes(data[pos + 3:pos + 5], "big")
            width = int.from_bytes(data[pos + 5:pos + 7], "big")
            return width, height
        pos += length
    raise ImageDecodeError("JPEG data has no frame header (truncated or corrupt)")


def _check_compressed_size(kind: str, width: int, height: int) -> None:
    if width == 0 or height == 0:
        raise ImageDecodeError(f"{kind.upper()} header declares an empty {width}x{height} image")
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise MalformedImageError(
            f"{kind.upper()} header declares {width}x{height}, beyond the limit of "
            f"{MAX_IMAGE_SIDE} pixels per side and {MAX_IMAGE_PIXELS} in total "
            "(MAX_IMAGE_SIDE / MAX_IMAGE_PIXELS)")


def _decoded_to_bgr8(img: np.ndarray, bayer: EncodingInfo | None) -> np.ndarray:
    """An IMREAD_UNCHANGED result (mono/BGR/BGRA, 8 or 16 bit) -> BGR8."""
    if img.dtype not in (np.uint8, np.uint16) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise ImageDecodeError(f"decoded image has unsupported layout {img.shape} {img.dtype}")
    bits = img.dtype.itemsize * 8
    if img.ndim == 2:
        name = f"bayer_{bayer.order}{bits}" if bayer is not None else f"mono{bits}"
    else:
        name = f"{'bgr' if img.shape[2] == 3 else 'bgra'}{bits}"
    return _array_to_bgr8(img, _NAMED[name])


def _format_parts(fmt: str) -> tuple[EncodingInfo | None, str | None]:
    """(source encoding, target) of an image_transport format "<source>; <codec> compressed
    <target>". The source is None when absent or unknown (no colour semantics then, as in
    image_transport); the target is None without a "compressed" clause and "" when empty."""
    head, sep, tail = fmt.partition(";")
    source_info = None
    if sep and head.strip():
        try:
            source_info = encoding_info(head.strip())
        except UnsupportedEncodingError:
            source_info = None
    m = re.search(r"compressed\s*(\S*)", tail)
    return source_info, (m.group(1) if m else None)


def compressed_to_bgr8(msg: Any) -> np.ndarray:
    """HxWx3 uint8 BGR pixels of a CompressedImage-like message (JPEG or PNG).

    Colour order follows image_transport's compressed subscriber: a colour source encoding
    whose format lacks "compressed bgr" was stored RGB (older publishers) and is swapped back.
    A Bayer source sent as PNG holds the raw mosaic and is demosaiced. The data's own magic
    bytes decide the decoder (a PNG labelled "jpeg" still decodes), and the declared size and
    structure are checked before OpenCV sees the data.
    """
    fmt = _field(msg, "format")
    if not isinstance(fmt, str):
        raise UnsupportedEncodingError(f"format must be a string, got {type(fmt).__name__}")
    if fmt.strip():
        compressed_format_kind(fmt)  # rejects compressedDepth and other codecs
    source_info, target = _format_parts(fmt)
    if source_info is not None:
        _colour_reading(source_info)  # a depth source ("16UC1; png compressed ") is refused
    # compressed_image_transport JPEG-encodes Bayer as demosaiced mono8, but PNG-encodes it
    # as the raw mosaic with an empty target ("bayer_rggb8; png compressed ").
    bayer = (source_info if source_info is not None and source_info.kind is Kind.BAYER
             and not target else None)
    swap_rgb = (source_info is not None
                and source_info.kind in (Kind.COLOR, Kind.YUV422, Kind.NV21)
                and not (target or "").startswith("bgr"))

    buf = _byte_buffer(_field(msg, "data"))
    if buf.size == 0:
        raise ImageDecodeError(f"empty compressed image data (format {fmt!r})")
    kind = _sniff(buf)
    if kind is None:
        raise ImageDecodeError(
            f"compressed data is neither JPEG nor PNG (starts with {buf[:8].tobytes()!r}, "
            f"format {fmt!r})")
    view = memoryview(buf)
    width, height = _jpeg_size(view) if kind == "jpeg" else _png_size(view)
    _check_compressed_size(kind, width, height)

    flags = cv2.IMREAD_IGNORE_ORIENTATION  # pixel geometry as sent, like the raw topic
    try:
        if bayer is not None:
            img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED | flags)
        else:
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR | flags)
    except cv2.error as exc:
        raise ImageDecodeError(f"{kind.upper()} decoding failed: {exc}") from None
    if img is None or img.size == 0:
        raise ImageDecodeError(f"{kind.upper()} data could not be decoded (corrupt or "
                               f"truncated, {buf.size} bytes, format {fmt!r})")
    if img.shape[:2] != (height, width):
        raise ImageDecodeError(
            f"decoded {kind.upper()} is {img.shape[1]}x{img.shape[0]}, header said "
            f"{width}x{height}")
    bgr = _decoded_to_bgr8(img, bayer) if bayer is not None else img
    if swap_rgb:
        bgr = _cv(cv2.cvtColor, bgr, cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(bgr)


def encode_compressed(bgr: np.ndarray, kind: str = "jpeg", quality: int = 95,
                      png_level: int = 3) -> tuple[str, bytes]:
    """(format, data) for a CompressedImage, with the format string compressed_image_transport
    writes, so image_transport subscribers restore the colour order: "bgr8; jpeg compressed
    bgr8", "bgr8; png compressed bgr8"; an HxW mono8 array gives "mono8; jpeg compressed mono8"
    or "mono8; png compressed "."""
    if not isinstance(kind, str) or kind.lower() not in ("jpeg", "jpg", "png"):
        raise UnsupportedEncodingError(
            f"compression kind must be 'jpeg' or 'png', got {kind!r}")
    kind = "png" if kind.lower() == "png" else "jpeg"
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ConfigError(f"JPEG quality must be an integer in 1..100, got {quality!r}")
    if isinstance(png_level, bool) or not isinstance(png_level, int) or not 0 <= png_level <= 9:
        raise ConfigError(f"PNG compression level must be an integer in 0..9, got {png_level!r}")
    if isinstance(bgr, np.ndarray) and bgr.ndim == 2 and bgr.dtype == np.uint8:
        source, target = "mono8", ("mono8" if kind == "jpeg" else "")
    else:
        _check_bgr(bgr)
        source = target = "bgr8"
    _check_dims(_NAMED[source], int(bgr.shape[0]), int(bgr.shape[1]))
    if kind == "jpeg":
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, png_level]
    try:
        ok, encoded = cv2.imencode(".jpg" if kind == "jpeg" else ".png", bgr, params)
    except cv2.error as exc:
        raise ImageConversionError(f"{kind.upper()} encoding failed: {exc}") from None
    if not ok:
        raise ImageConversionError(f"{kind.upper()} encoding failed for shape {bgr.shape}")
    return f"{source}; {kind} compressed {target}", encoded.tobytes()
