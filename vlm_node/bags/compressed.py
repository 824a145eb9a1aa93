"""Re-encode a CompressedImage the way it came: same codec, channels, bit depth, colour order,
JPEG quality, chroma subsampling and progressive mode.

Why: an anonymized bag should differ from its input only where faces and plates were redacted;
re-encoding every camera at one fixed quality would silently change file sizes and image
quality for everything downstream. The JPEG quality is estimated by matching the input's
luminance (and chrominance) quantization tables against the tables this machine's encoder
(libjpeg via OpenCV) writes for qualities 1..100; an encoder with non-IJG tables gets the
closest IJG quality. What the decoder reads from a format string (e.g. that "rgb8; jpeg
compressed rgb8" holds RGB-ordered data) is learned by asking `image_codec` itself, so the two
directions cannot disagree.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from vlm_node import image_codec
from vlm_node.errors import ImageConversionError, ImageDecodeError, UnsupportedEncodingError

__all__ = ["CompressedLayout", "inspect_compressed", "jpeg_quality", "encode_like"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_LEVEL = 3  # compressed_image_transport's default png_level
# (H, V) of the first component -> OpenCV's sampling constant (libjpeg's names).
_SAMPLING = {(2, 2): cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
             (2, 1): cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
             (1, 1): cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
             (1, 2): cv2.IMWRITE_JPEG_SAMPLING_FACTOR_440,
             (4, 1): cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411}
# Start-of-frame markers (C4 DHT, C8 JPG and CC DAC share the range but are not SOFs).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}


@dataclass(frozen=True, slots=True)
class CompressedLayout:
    """What the compressed bytes hold. `quality` is the estimated JPEG quality (None for PNG);
    `sampling` is the first component's (H, V) factors; `channels` counts colour channels
    (alpha is not kept: it decodes to BGR)."""

    kind: str  # "jpeg" or "png"
    channels: int  # 1 or 3
    bit_depth: int  # 8, or 16 (PNG only)
    quality: int | None = None
    sampling: tuple[int, int] = (1, 1)
    progressive: bool = False


def _jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of every header segment up to start-of-scan."""
    if data[:2] != b"\xff\xd8":
        raise ImageDecodeError("not a JPEG (no SOI marker)")
    out, pos = [], 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ImageDecodeError(f"JPEG header damaged at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if length < 2 or pos + 2 + length > len(data):
            raise ImageDecodeError(f"JPEG segment 0x{marker:02X} runs past the data")
        out.append((marker, data[pos + 4:pos + 2 + length]))
        if marker == 0xDA:
            return out
        pos += 2 + length
    raise ImageDecodeError("JPEG header ends before start-of-scan")


def _quant_tables(segments: list[tuple[int, bytes]]) -> dict[int, np.ndarray]:
    """Table id -> 64 quantizers in stored (zigzag) order."""
    tables: dict[int, np.ndarray] = {}
    for marker, payload in segments:
        if marker != 0xDB:
            continue
        pos = 0
        while pos < len(payload):
            precision, table_id = payload[pos] >> 4, payload[pos] & 0x0F
            size = 128 if precision else 64
            raw = payload[pos + 1:pos + 1 + size]
            if len(raw) != size:
                raise ImageDecodeError("JPEG quantization table is truncated")
            dtype = ">u2" if precision else "u1"
            tables[table_id] = np.frombuffer(raw, dtype=dtype).astype(np.int32)
            pos += 1 + size
    return tables


@lru_cache(maxsize=1)
def _reference_tables() -> np.ndarray:
    """(100, 2, 64): the luminance and chrominance tables OpenCV writes at qualities 1..100."""
    probe = np.zeros((16, 16, 3), np.uint8)
    refs = np.zeros((100, 2, 64), np.int32)
    for q in range(1, 101):
        ok, buf = cv2.imencode(".jpg", probe, [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:
            raise RuntimeError("OpenCV cannot encode JPEG")
        tables = _quant_tables(_jpeg_segments(buf.tobytes()))
        refs[q - 1, 0], refs[q - 1, 1] = tables[0], tables[1]
    return refs


def jpeg_quality(tables: dict[int, np.ndarray]) -> int:
    """The IJG quality whose tables are closest (sum of absolute differences) to `tables`."""
    if 0 not in tables:
        raise ImageDecodeError("JPEG has no luminance quantization table")
    refs = _reference_tables()
    cost = np.abs(refs[:, 0] - tables[0]).sum(axis=1)
    if 1 in tables:
        cost = cost + np.abs(refs[:, 1] - tables[1]).sum(axis=1)
    return int(np.argmin(cost)) + 1


def _inspect_jpeg(data: bytes) -> CompressedLayout:
    segments = _jpeg_segments(data)
    sof = next(((m, p) for m, p in segments if m in _SOF), None)
    if sof is None:
        raise ImageDecodeError("JPEG has no start-of-frame segment")
    marker, payload = sof
    if len(payload) < 9:
        raise ImageDecodeError("JPEG start-of-frame segment is truncated")
    precision, components = payload[0], payload[5]
    if precision != 8:
        raise UnsupportedEncodingError(f"{precision}-bit JPEG is not supported")
    if components not in (1, 3):
        raise UnsupportedEncodingError(f"JPEG with {components} components (CMYK?) is not "
                                       "supported")
    hv = payload[7]
    sampling = (hv >> 4, hv & 0x0F) if components == 3 else (1, 1)
    return CompressedLayout("jpeg", components, 8, jpeg_quality(_quant_tables(segments)),
                            sampling, marker in _PROGRESSIVE)


def _inspect_png(data: bytes) -> CompressedLayout:
    if len(data) < 26 or data[12:16] != b"IHDR":
        raise ImageDecodeError("PNG has no IHDR chunk")
    bit_depth, colour_type = data[24], data[25]
    channels = 1 if colour_type in (0, 4) else 3
    return CompressedLayout("png", channels, 16 if bit_depth == 16 else 8)


def inspect_compressed(data: bytes | memoryview) -> CompressedLayout:
    """Codec and layout of JPEG or PNG bytes, read from their headers (no decoding)."""
    head = bytes(data[:8])
    if head == PNG_SIGNATURE:
        return _inspect_png(bytes(data[:32]))
    if head[:2] == b"\xff\xd8":
        return _inspect_jpeg(bytes(data))
    raise ImageDecodeError(f"compressed data is neither JPEG nor PNG (starts with {head!r})")


class _Probe:
    """A CompressedImage-like object for asking image_codec how it reads a format."""

    def __init__(self, fmt: str, data: bytes) -> None:
        self.format = fmt
        self.data = data


@lru_cache(maxsize=64)
def _stored_rgb(fmt: str) -> bool:
    """Whether image_codec swaps R and B when decoding `fmt` (then the data must be RGB)."""
    blue = np.zeros((1, 1, 3), np.uint8)
    blue[..., 0] = 255
    ok, buf = cv2.imencode(".png", blue)
    if not ok:
        raise RuntimeError("OpenCV cannot encode PNG")
    decoded = image_codec.compressed_to_bgr8(_Probe(fmt, buf.tobytes()))
    return bool(decoded[0, 0, 2] == 255)


def _bayer_source(fmt: str) -> str | None:
    """The Bayer encoding of a "bayer_xxxx8; png compressed " format (raw mosaic PNG)."""
    source = fmt.partition(";")[0].strip()
    if source.startswith("bayer_"):
        image_codec.encoding_info(source)  # raises for an unknown pattern
        return source
    return None


def _widen(img: np.ndarray, bit_depth: int) -> np.ndarray:
    """8-bit values to 16 bits as v * 257, which image_codec's v >> 8 maps back to v."""
    return img.astype(np.uint16) * 257 if bit_depth == 16 else img


def encode_like(bgr: np.ndarray, fmt: str, layout: CompressedLayout) -> bytes:
    """Encode `bgr` so that a CompressedImage with format `fmt` and these bytes has `layout`
    and decodes (image_codec.compressed_to_bgr8) to `bgr`, up to JPEG loss. A chroma
    sampling other than 4:2:0, 4:2:2, 4:4:4, 4:4:0 or 4:1:1 is written as libjpeg's 4:2:0."""
    if layout.channels == 1:
        bayer = _bayer_source(fmt) if layout.kind == "png" else None
        if bayer is not None:
            img = image_codec.bgr8_to_array(bgr, bayer)
        else:
            img = _widen(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), layout.bit_depth)
    else:
        img = _widen(bgr[..., ::-1] if _stored_rgb(fmt) else bgr, layout.bit_depth)
    img = np.ascontiguousarray(img)
    if layout.kind == "jpeg":
        if layout.quality is None:
            raise ImageConversionError("JPEG layout without a quality")
        params = [cv2.IMWRITE_JPEG_QUALITY, layout.quality,
                  cv2.IMWRITE_JPEG_PROGRESSIVE, int(layout.progressive)]
        if layout.channels == 3 and layout.sampling in _SAMPLING:
            params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, _SAMPLING[layout.sampling]]
        ok, buf = cv2.imencode(".jpg", img, params)
    else:
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
    if not ok:
        raise ImageConversionError(f"{layout.kind.upper()} encoding failed for {img.shape} "
                                   f"{img.dtype}")
    return buf.tobytes()
