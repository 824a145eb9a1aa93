"""Helpers for the rosbag2 tests: reading whole bags back, and building small special bags."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from vlm_node.bags import io
from vlm_node.tools.render.scenes import fit_boxes, fit_to_size, load_photos

# A labelled face counts as redacted when its pixels changed by at least this much on average
# (0..255 scale). Re-encoding alone changes an untouched region by ~1-3; the smallest redacted
# face measured on the test bags changed by ~13.
REDACTED_MEAN_DIFF = 8.0


def read_all(path: Path) -> list[io.BagMessage]:
    with io.open_bag(path) as bag:
        return list(bag.messages())


def connections(path: Path) -> dict[str, Any]:
    """topic -> (msgtype, msgdef text, digest, serialization format, QoS profiles)."""
    with io.open_bag(path) as bag:
        return {c.topic: (c.msgtype, c.msgdef.data, c.digest, c.ext.serialization_format,
                          list(c.ext.offered_qos_profiles)) for c in bag.connections}


def images(path: Path) -> dict[tuple[str, int], np.ndarray]:
    """(topic, log time) -> BGR pixels (int32, for differences) of every image message."""
    out = {}
    with io.open_bag(path) as bag:
        for m in bag.messages(bag.image_topics()):
            out[(m.topic, m.timestamp)] = io.image_to_bgr(bag.deserialize(m),
                                                          m.msgtype).astype(np.int32)
    return out


def box_change(before: np.ndarray, after: np.ndarray, box: list[float]) -> float:
    """Mean absolute pixel change inside box [x, y, w, h] (rounded outwards)."""
    x, y, w, h = box
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    x1, y1 = int(np.ceil(x + w)), int(np.ceil(y + h))
    return float(np.abs(before[y0:y1, x0:x1] - after[y0:y1, x0:x1]).mean())


def portrait(size: tuple[int, int]) -> tuple[np.ndarray, list[float]]:
    """A shipped portrait fitted to `size` (w, h) and its face box there."""
    photo = next(p for p in load_photos() if p.file == "obama.jpg")
    image = fit_to_size(photo.load(), size)
    face = fit_boxes(photo.faces, (photo.width, photo.height), size)[0]
    return image, [face.x, face.y, face.w, face.h]


def write_bag(path: Path, build: Callable[[io.BagWriter], None], storage: str = "mcap") -> Path:
    with io.BagWriter(path, storage) as writer:
        build(writer)
    return path


def jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def write_two_topics_one_camera(path: Path, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A bag where `/front/image_raw` (a face, 3 frames) and `/front/image_rect` (a smooth
    gradient with nothing to detect, 3 frames) both name camera `front`, interleaved at 10 fps.
    Returns the gradient: the rect topic's frames must come out unchanged."""
    image, _ = portrait(size)
    plain = np.tile(np.linspace(40, 200, size[0], dtype=np.uint8)[None, :, None],
                    (size[1], 1, 3))

    def build(w: io.BagWriter) -> None:
        raw = w.add_topic("/front/image_raw", io.IMAGE)
        rect = w.add_topic("/front/image_rect", io.IMAGE)
        for i in range(3):  # raw, rect, raw, rect, ...
            t = 100_000_000 * (2 * i + 1)
            w.write_msg(raw, t, io.bgr_to_image(image, io.header(t, "front"), "bgr8"))
            t += 50_000_000
            w.write_msg(rect, t, io.bgr_to_image(plain, io.header(t, "front"), "bgr8"))
    write_bag(path, build)
    return plain
