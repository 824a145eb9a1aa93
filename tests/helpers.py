"""Shared test helpers: paths of the shared test data and small image utilities."""
from __future__ import annotations

import csv
import json
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def shared(path: str) -> Path:
    p = SHARED_DATA / path
    if not p.exists():
        pytest.skip(f"shared test data not present: {p}")
    return p


@lru_cache(maxsize=None)
def shared_labels() -> dict:
    return json.loads(shared("labels.json").read_text())


def gtsrb_sample() -> tuple[Path, list[dict]]:
    """(folder the sample's paths are relative to, rows of gtsrb_train_sample/labels.csv)."""
    root = shared("gtsrb_train_sample")
    with (root / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return root.parent, rows


def gtsrb_kaggle_layout(root: Path, keep) -> Path:
    """The sample's crops for which `keep(row)` holds, written in GTSRB's Kaggle layout
    (`Train/<class>/<file>` + `Train.csv`; ROI = the crop less GTSRB's ~10 % margin)."""
    base, rows = gtsrb_sample()
    lines = ["Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path"]
    for r in rows:
        if not keep(r):
            continue
        cid = int(r["class_id"])
        img = read_bgr(base / r["file"])
        h, w = img.shape[:2]
        rel = f"Train/{cid}/{r['file'].split('/')[-1]}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), img)
        mx, my = max(1, w // 10), max(1, h // 10)
        lines.append(f"{w},{h},{mx},{my},{w - mx - 1},{h - my - 1},{cid},{rel}")
    (root / "Train.csv").write_text("\n".join(lines) + "\n")
    return root


def read_bgr(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return img


def paste_rgba(image: np.ndarray, rgba: np.ndarray, x: int, y: int):
    """Alpha-blend an RGBA picture (a rendered sign) onto the BGR `image` with its top-left
    corner at (x, y); returns its Box there."""
    from vlm_node.geometry import Box

    h, w = rgba.shape[:2]
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255
    region = image[y:y + h, x:x + w].astype(np.float32)
    image[y:y + h, x:x + w] = (rgba[:, :, 2::-1] * alpha + region * (1 - alpha)).round()
    return Box(x, y, w, h)


def sign_classes_near(backend, file: str, box, iou: float = 0.3) -> list[str]:
    """The classes `backend` (a loaded OcrBackend) reads on the development road photo `file`
    (shared signs_real_dev) through boxes at IoU >= `iou` with `box`: whether a labelled sign
    is read, and as what."""
    bgr = read_bgr(shared("signs_real_dev") / file)
    return [r.sign_class for r in backend.read_signs(bgr) if r.box is not None
            and r.box.iou(box) >= iou]
