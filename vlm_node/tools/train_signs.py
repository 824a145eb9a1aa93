"""Train the sign classifier (`vlm-node train-signs DATA_DIR --output model.onnx`).

Data: the GTSRB training split in the Kaggle layout (`Train.csv` with ROI boxes, `Train/<c>/
<class>_<track>_<frame>.png`). GTSRB crops come in tracks, ~30 frames of one physical sign, so
the validation split holds out whole tracks (a share of each class's tracks, chosen with the
seed): a frame-level split would put near-copies of validation crops in training.

Background (the 44th class, "not a sign") comes from photos given with `--negatives`: the
colour/shape finder's candidates that are not a labelled sign (the false positives the classifier
must reject at runtime) and random boxes, both away from every labelled sign. Negative photos are
split by image into training and validation the same way. `--extra-positives` adds labelled signs
from real photos (GTSDB-style `labels.json` with `gtsrb_class_id`) to training only.

Augmentation imitates cameras: perspective and small shifts/crops around the ROI, downscaling to
as little as 12 px and back, blur (focus and motion), low light and gamma, colour casts, glare,
sensor noise and JPEG at the small size. Validation crops get the same augmentation once with a
fixed seed (plus a clean copy), so the calibrated probabilities describe camera-like crops.

After training, a temperature is fitted on the validation logits (calibration), the acceptance
threshold is chosen on validation, and the model is exported to ONNX with normalisation and the
temperature-scaled softmax inside the graph; the tool checks that onnxruntime's output matches
torch's. Reports (per-class accuracy, confusion matrix, reliability diagram) go to
`--report-dir`.

This module is a tool: the runtime never imports it (torch is not a runtime dependency).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import fnmatch
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from vlm_node.analysis.gtsrb import (BACKGROUND_ID, CLASSIFIER_LABELS, NUM_GTSRB, SPEED_LIMIT_IDS,
                                     gtsrb_class)
from vlm_node.analysis.ocr_config import OcrConfig
from vlm_node.analysis.sign_candidates import find_candidates, find_proposals
from vlm_node.analysis.sign_classifier import (CROP_MARGIN, INPUT_SIZE, SignClass,
                                               SignClassifier, resize_to_input)
from vlm_node.geometry import Box
from vlm_node.evaluation.label_import import gtsrb_roi, gtsrb_track

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


# --- data ----------------------------------------------------------------------------------------

@dataclass
class Sample:
    """A source patch (RGB uint8) with the sign's box (or a background box) inside it."""

    image: np.ndarray
    roi: Box
    label: int
    group: str  # track ("<class>_<track>") or photo name: what the split keeps together


@dataclass
class Dataset:
    train: list[Sample] = field(default_factory=list)
    val: list[Sample] = field(default_factory=list)
    val_tracks: list[str] = field(default_factory=list)


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def split_tracks(tracks_by_class: dict[int, list[str]], val_share: float, seed: int
                 ) -> set[str]:
    """Validation tracks: `val_share` of each class's tracks (at least one), chosen by seed."""
    rng = random.Random(seed)
    held: set[str] = set()
    for cls in sorted(tracks_by_class):
        tracks = sorted(tracks_by_class[cls])
        n = max(1, int(round(val_share * len(tracks))))
        held.update(rng.sample(tracks, n))
    return held


def load_gtsrb(data_dir: Path, val_share: float, seed: int, limit_per_class: int = 0
               ) -> Dataset:
    """GTSRB training crops, split by track."""
    csv_path = data_dir / "Train.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path} not found (expected the Kaggle GTSRB layout)")
    rows = []
    with csv_path.open(newline="") as f:
        for r in csv.DictReader(f):
            name = Path(r["Path"]).name
            if name.startswith("aug_"):
                continue  # augmented extras some copies carry; not GTSRB
            rows.append(r)
    tracks: dict[int, set[str]] = {}
    for r in rows:
        cls = int(r["ClassId"])
        tracks.setdefault(cls, set()).add(gtsrb_track(r["Path"]))
    if limit_per_class:
        # tiny runs (tests): a few tracks per class, in order
        keep = {c: sorted(t)[:max(2, limit_per_class // 10 + 1)] for c, t in tracks.items()}
        tracks = {c: set(t) for c, t in keep.items()}
        rows = [r for r in rows if gtsrb_track(r["Path"]) in tracks[int(r["ClassId"])]]
        rows = _first_per_class(rows, limit_per_class)
    held = split_tracks({c: sorted(t) for c, t in tracks.items()}, val_share, seed)
    ds = Dataset(val_tracks=sorted(held))
    for r in rows:
        img = _read_rgb(data_dir / r["Path"])
        roi = gtsrb_roi(r)
        track = gtsrb_track(r["Path"])
        s = Sample(img, roi, int(r["ClassId"]), track)
        (ds.val if track in held else ds.train).append(s)
    return ds


def _first_per_class(rows: list[dict], n: int) -> list[dict]:
    seen: dict[str, int] = {}
    out = []
    for r in rows:
        c = r["ClassId"]
        if seen.get(c, 0) < n:
            out.append(r)
            seen[c] = seen.get(c, 0) + 1
    return out


@dataclass
class Photo:
    path: Path
    signs: list[tuple[Box, int | None]]  # labelled boxes and their GTSRB id (None: unknown)


def load_photos(spec: str, include: Sequence[str]) -> list[Photo]:
    """Photos from a directory (no labels: nothing to avoid) or a `labels.json` (its boxes are
    avoided by negatives and usable as positives). `include` filters by file name (fnmatch)."""
    path = Path(spec)
    photos: list[Photo] = []
    if path.is_dir():
        for p in sorted(path.iterdir()):
            if p.suffix.lower() in IMAGE_EXTS:
                photos.append(Photo(p, []))
    elif path.is_file():
        data = json.loads(path.read_text())
        for item in data["images"]:
            file = Path(item["file"])
            img_path = next((b / file for b in (path.parent, path.parent.parent)
                             if (b / file).is_file()), path.parent / file.name)
            signs = [(Box.from_list(s["box"]), s.get("gtsrb_class_id"))
                     for s in item.get("signs", [])]
            photos.append(Photo(img_path, signs))
    else:
        raise FileNotFoundError(f"{spec}: neither a directory of photos nor a labels.json")
    if include:
        photos = [p for p in photos if any(fnmatch.fnmatch(p.path.name, g) for g in include)]
    return photos


def _context_patch(rgb: np.ndarray, box: Box, context: float = 0.5) -> tuple[np.ndarray, Box]:
    """A patch around `box` with `context` of its side on every side (so augmentation can shift
    and widen the crop), and the box in the patch's coordinates."""
    h, w = rgb.shape[:2]
    x1 = max(0, int(box.x - context * box.w))
    y1 = max(0, int(box.y - context * box.h))
    x2 = min(w, int(math.ceil(box.x2 + context * box.w)))
    y2 = min(h, int(math.ceil(box.y2 + context * box.h)))
    return rgb[y1:y2, x1:x2].copy(), box.shifted(-x1, -y1)


def _far_from_signs(box: Box, signs: Sequence[Box]) -> bool:
    grown = [s.expanded(0.3 * max(s.w, s.h)) for s in signs]
    return all(box.intersection(g) == 0 for g in grown)


def negative_samples(photos: Sequence[Photo], per_photo: int, rng: np.random.Generator
                     ) -> list[Sample]:
    """Background patches: the finder's candidates and the classifier proposals that are no
    labelled sign (away from every sign, or a piece of one), and random boxes (12..120 px, mostly
    small as candidates are) away from the labelled signs."""
    out: list[Sample] = []
    for photo in photos:
        rgb = _read_rgb(photo.path)
        h, w = rgb.shape[:2]
        signs = [b for b, _ in photo.signs]
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        found = [c.box for c in find_candidates(bgr)] + find_proposals(bgr)
        # what the runtime hands the classifier away from signs, and pieces of signs (a
        # digit's hole, a sign with its neighbour) that must not read as a sign of their own
        boxes = [b for b in found if _far_from_signs(b, signs)
                 or (signs and max(b.iou(s) for s in signs) < 0.2 and any(
                     b.intersection(s) > 0 for s in signs))]
        tries, n_random = 0, 0
        while n_random < per_photo and tries < per_photo * 20:
            tries += 1
            side = float(np.exp(rng.uniform(np.log(12), np.log(min(120, h, w) - 1))))
            aspect = float(np.exp(rng.uniform(-0.25, 0.25)))
            bw, bh = side * aspect, side / aspect
            if bw >= w or bh >= h:
                continue
            b = Box(float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh)), bw, bh)
            if _far_from_signs(b, signs):
                boxes.append(b)
                n_random += 1
        for b in boxes:
            patch, roi = _context_patch(rgb, b)
            if patch.shape[0] >= 4 and patch.shape[1] >= 4:
                out.append(Sample(patch, roi, BACKGROUND_ID, photo.path.name))
    return out


def runtime_boxes(bgr: np.ndarray) -> list[Box]:
    """The boxes the runtime hands the classifier for a frame (shape finder's candidates and
    the looser proposals, default settings)."""
    return [c.box for c in find_candidates(bgr)] + find_proposals(bgr)


def positive_samples(photos: Sequence[Photo], runtime_crops: int = 0) -> list[Sample]:
    """Labelled GTSRB-class signs from real photos (training only). With `runtime_crops`, each
    sign also gives up to that many of the boxes the runtime proposes on it (IoU >= 0.45 with
    the sign, holding at least 80 % of it, on no other labelled sign): a proposal is a colour
    region's box, often off-centre or a little wide, and the classifier must read the sign
    through that box too, not only through the labelled one."""
    out: list[Sample] = []
    for photo in photos:
        if not any(cid is not None for _, cid in photo.signs):
            continue
        rgb = _read_rgb(photo.path)
        found = runtime_boxes(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)) if runtime_crops else []
        for box, cid in photo.signs:
            if cid is None or not 0 <= int(cid) < NUM_GTSRB:
                continue
            patch, roi = _context_patch(rgb, box)
            out.append(Sample(patch, roi, int(cid), photo.path.name))
            others = [b for b, _ in photo.signs if b is not box]
            near = sorted((b for b in found if b.iou(box) >= 0.45
                           and box.coverage_by(b) >= 0.8
                           and all(b.iou(o) < 0.2 for o in others)),
                          key=lambda b: -b.iou(box))
            kept: list[Box] = []
            for b in near:  # distinct boxes only (a candidate and a proposal often coincide)
                if len(kept) >= runtime_crops:
                    break
                if all(b.iou(k) < 0.9 for k in kept) and b.iou(box) < 0.95:
                    kept.append(b)
            for b in kept:
                patch, roi = _context_patch(rgb, b)
                out.append(Sample(patch, roi, int(cid), photo.path.name))
    return out


# --- augmentation --------------------------------------------------------------------------------

def nominal_crop(sample: Sample) -> np.ndarray:
    """The crop the runtime would cut for this sample's box (no augmentation)."""
    b = sample.roi
    m = CROP_MARGIN
    src = np.float32([[b.x - m * b.w, b.y - m * b.h], [b.x2 + m * b.w, b.y - m * b.h],
                      [b.x2 + m * b.w, b.y2 + m * b.h]])
    side = max(INPUT_SIZE, int(round(max(b.w, b.h) * (1 + 2 * m))))
    dst = np.float32([[0, 0], [side, 0], [side, side]])
    patch = cv2.warpAffine(sample.image, cv2.getAffineTransform(src, dst), (side, side),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return resize_to_input(patch)


def augment(sample: Sample, rng: np.random.Generator) -> np.ndarray:
    """One camera-like 32x32 RGB view of a sample."""
    b = sample.roi
    # the crop the finder might hand over: margin, shift and aspect jitter around the box
    small = int(round(float(np.exp(rng.uniform(np.log(12), np.log(48))))))
    small = min(small, INPUT_SIZE + 16)
    margin = CROP_MARGIN + rng.uniform(-0.08, 0.12)
    cx = b.x + b.w / 2 + rng.uniform(-0.08, 0.08) * b.w
    cy = b.y + b.h / 2 + rng.uniform(-0.08, 0.08) * b.h
    hw = b.w * (0.5 + margin) * float(np.exp(rng.uniform(-0.07, 0.07)))
    hh = b.h * (0.5 + margin) * float(np.exp(rng.uniform(-0.07, 0.07)))
    corners = np.float32([[cx - hw, cy - hh], [cx + hw, cy - hh], [cx + hw, cy + hh],
                          [cx - hw, cy + hh]])
    # perspective and rotation: move each corner a little
    persp = rng.uniform(0, 0.08) if rng.random() < 0.6 else 0.0
    corners += rng.uniform(-persp, persp, corners.shape).astype(np.float32) * np.float32(
        [2 * hw, 2 * hh])
    angle = math.radians(rng.uniform(-8, 8))
    rot = np.float32([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    corners = (corners - [cx, cy]) @ rot.T + [cx, cy]
    dst = np.float32([[0, 0], [small, 0], [small, small], [0, small]])
    src_img = sample.image
    scale = max(hw, hh) * 2 / small
    if scale > 1.6:  # shrinking a lot: pre-blur so the small view is not aliased beyond a camera's
        src_img = cv2.GaussianBlur(src_img, (0, 0), 0.4 * scale)
    m = cv2.getPerspectiveTransform(corners.astype(np.float32), dst)
    img = cv2.warpPerspective(src_img, m, (small, small), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    # light: exposure, contrast, gamma (night and dusk), colour cast
    if rng.random() < 0.8:
        img = img * rng.uniform(0.35, 1.35) + rng.uniform(-25, 25)
        img = np.clip(img, 0, 255)
        img = 255.0 * (img / 255.0) ** rng.uniform(0.7, 1.8)
        img = img * rng.uniform(0.88, 1.12, 3).astype(np.float32)
    if rng.random() < 0.12:  # glare: a bright blob washing out part of the sign
        yy, xx = np.mgrid[0:small, 0:small].astype(np.float32)
        gx, gy = rng.uniform(0, small, 2)
        r = rng.uniform(0.2, 0.7) * small
        blob = np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * r * r))
        img = img + (rng.uniform(80, 220) * blob)[..., None]
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.1))
    elif rng.random() < 0.12:  # motion blur
        k = int(rng.integers(2, 4))
        kernel = np.zeros((2 * k + 1, 2 * k + 1), np.float32)
        kernel[k, :] = 1.0 / (2 * k + 1)
        rot_m = cv2.getRotationMatrix2D((k, k), rng.uniform(0, 180), 1.0)
        kernel = cv2.warpAffine(kernel, rot_m, kernel.shape[::-1])
        img = cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6))
    if rng.random() < 0.35:
        img = img + rng.normal(0, rng.uniform(2, 9), img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        ok, enc = cv2.imencode(".jpg", img[..., ::-1],
                               [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 90))])
        if ok:
            img = cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1]
    return resize_to_input(np.ascontiguousarray(img))


# --- model ---------------------------------------------------------------------------------------

def build_model(num_classes: int = len(CLASSIFIER_LABELS)):
    """A small CNN for 32x32 RGB (about 0.35 M parameters, ~10 M multiply-adds per crop)."""
    import torch.nn as nn

    def block(cin: int, cout: int) -> list:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(3, 24), nn.MaxPool2d(2),                       # 16
        *block(24, 48), nn.MaxPool2d(2),                      # 8
        *block(48, 96), *block(96, 96), nn.MaxPool2d(2),      # 4
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(96 * 16, 128), nn.ReLU(inplace=True),
        nn.Dropout(0.2), nn.Linear(128, num_classes))


MEAN, STD = 127.5, 64.0


class _Exported:
    """Wraps the trained network for export: 0..255 RGB in, calibrated probabilities out."""

    @staticmethod
    def wrap(net, temperature: float):
        import torch
        import torch.nn as nn

        class Calibrated(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net
                self.register_buffer("inv_t", torch.tensor(1.0 / temperature))

            def forward(self, x):
                logits = self.net((x - MEAN) / STD)
                return torch.softmax(logits * self.inv_t, dim=1)

        return Calibrated().eval()


# --- training ------------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    epochs: int = 15
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    seed: int = 13
    val_share: float = 0.15
    threads: int = 1
    workers: int = 0  # DataLoader workers forked after cv2 has started threads can hang
    neg_per_photo: int = 30
    limit_per_class: int = 0  # >0: tiny runs (tests)
    target_precision: float = 0.995


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _AugSet:
    """torch Dataset: index `epoch * n + i` -> augmented view of sample i, seeded by both, so a
    run is reproducible whatever the worker count."""

    def __init__(self, samples: list[Sample], seed: int) -> None:
        self.samples, self.seed = samples, seed

    def __len__(self) -> int:
        return 1 << 40

    def __getitem__(self, idx: int):
        n = len(self.samples)
        epoch, i = divmod(idx, n)
        rng = np.random.default_rng((self.seed, epoch, i))
        s = self.samples[i]
        x = augment(s, rng).transpose(2, 0, 1).astype(np.float32)
        return x, s.label


class _EpochSampler:
    def __init__(self, n: int, epochs: int, seed: int) -> None:
        self.n, self.epochs, self.seed = n, epochs, seed

    def __iter__(self):
        for e in range(self.epochs):
            order = np.random.default_rng((self.seed, 99, e)).permutation(self.n)
            yield from (e * self.n + int(i) for i in order)

    def __len__(self) -> int:
        return self.n * self.epochs


def _worker_init(_: int) -> None:
    cv2.setNumThreads(1)


def _val_arrays(samples: list[Sample], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validation inputs: one fixed camera-like view of each sample and its clean crop."""
    aug = np.stack([augment(s, np.random.default_rng((seed, 7, i)))
                    for i, s in enumerate(samples)])
    clean = np.stack([nominal_crop(s) for s in samples])
    labels = np.array([s.label for s in samples], np.int64)
    return aug, clean, labels


def _logits(net, images: np.ndarray, batch: int = 512) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i:i + batch].transpose(0, 3, 1, 2).astype(np.float32))
            out.append(net((x - MEAN) / STD).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(CLASSIFIER_LABELS)), np.float32)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises validation NLL (a 1-D search on log T)."""
    def nll(t: float) -> float:
        z = logits / t
        z = z - z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        return float(-logp[np.arange(len(labels)), labels].mean())

    grid = np.exp(np.linspace(np.log(0.3), np.log(5.0), 120))
    best = min(grid, key=nll)
    lo, hi = best / 1.05, best * 1.05
    for _ in range(40):  # golden-section refinement
        a, b = lo + 0.382 * (hi - lo), lo + 0.618 * (hi - lo)
        lo, hi = (lo, b) if nll(a) < nll(b) else (a, hi)
    return float((lo + hi) / 2)


def softmax(logits: np.ndarray, t: float) -> np.ndarray:
    z = logits / t
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def choose_threshold(probs: np.ndarray, labels: np.ndarray, target: float,
                     reject_id: int = BACKGROUND_ID) -> float:
    """Lowest probability threshold at which accepted answers on validation (any but
    `reject_id`, the class that means "nothing to report") are at least `target` precise (a
    crop below it is reported as nothing)."""
    pred = probs.argmax(1)
    conf = probs.max(1)
    sign = pred != reject_id
    for t in np.round(np.arange(0.30, 0.99, 0.01), 2):
        acc = sign & (conf >= t)
        if acc.sum() == 0:
            return float(t)
        if (pred[acc] == labels[acc]).mean() >= target:
            return float(t)
    return 0.99


def train(data_dir: Path, output: Path, cfg: TrainConfig, negatives: Sequence[str] = (),
          negatives_include: Sequence[str] = (), extra_positives: Sequence[str] = (),
          extra_include: Sequence[str] = (), report_dir: Path | None = None,
          runtime_crops: int = 0) -> dict:
    """Train, calibrate, export and check; returns the summary written into the model."""
    import torch

    t_start = time.time()
    torch.set_num_threads(cfg.threads)
    cv2.setNumThreads(1)
    _seed_everything(cfg.seed)
    ds = load_gtsrb(data_dir, cfg.val_share, cfg.seed, cfg.limit_per_class)
    log.info("GTSRB: %d train / %d val crops (%d val tracks)", len(ds.train), len(ds.val),
             len(ds.val_tracks))
    rng = np.random.default_rng(cfg.seed)
    neg_photos: list[Photo] = []
    for spec in negatives:
        neg_photos += load_photos(spec, negatives_include)
    neg_val_names: set[str] = set()
    if neg_photos:
        names = sorted({p.path.name for p in neg_photos})
        neg_val_names = set(random.Random(cfg.seed).sample(
            names, max(1, int(round(cfg.val_share * len(names))))))
        negs = negative_samples(neg_photos, cfg.neg_per_photo, rng)
        ds.train += [s for s in negs if s.group not in neg_val_names]
        ds.val += [s for s in negs if s.group in neg_val_names]
        log.info("background: %d crops from %d photos", len(negs), len(neg_photos))
    for spec in extra_positives:
        extra = positive_samples(load_photos(spec, extra_include), runtime_crops)
        ds.train += extra
        log.info("extra positives: %d labelled signs from %s", len(extra), spec)
    if not any(s.label == BACKGROUND_ID for s in ds.train):
        log.warning("no background crops: the model will not learn to reject non-signs")

    net = build_model()
    val_aug, val_clean, val_y = _val_arrays(ds.val, cfg.seed)
    fit(net, ds.train, val_aug, val_y, cfg, t_start)

    logits_aug, logits_clean = _logits(net, val_aug), _logits(net, val_clean)
    temperature = fit_temperature(logits_aug, val_y) if len(val_y) else 1.0
    probs_aug = softmax(logits_aug, temperature)
    threshold = choose_threshold(probs_aug, val_y, cfg.target_precision)
    summary = _summary(probs_aug, softmax(logits_clean, temperature), val_y, temperature,
                       threshold)
    summary.update(seed=cfg.seed, epochs=cfg.epochs, val_share=cfg.val_share,
                   train_crops=len(ds.train), val_crops=len(ds.val),
                   val_tracks=ds.val_tracks, val_negative_photos=sorted(neg_val_names),
                   train_seconds=round(time.time() - t_start))
    export_onnx(net, temperature, threshold, summary, output)
    _check_onnx(net, temperature, output, val_aug[:256])
    if report_dir is not None:
        write_reports(report_dir, probs_aug, val_y, summary)
    log.info("wrote %s: val(aug) acc %.4f, val(clean) acc %.4f, T=%.3f, threshold %.2f",
             output, summary["val_aug_accuracy"], summary["val_clean_accuracy"], temperature,
             threshold)
    return summary


def fit(net, samples: list[Sample], val_aug: np.ndarray, val_y: np.ndarray, cfg: TrainConfig,
        t_start: float) -> None:
    """Train `net` on augmented views of `samples` (AdamW, one-cycle learning rate, label
    smoothing), logging the loss and the accuracy on the validation views each epoch; leaves
    it in eval mode. Both training tools (the classifier, the speed-value reader) use it."""
    import torch
    import torch.nn as nn

    loader = torch.utils.data.DataLoader(
        _AugSet(samples, cfg.seed), batch_size=cfg.batch_size,
        sampler=_EpochSampler(len(samples), cfg.epochs, cfg.seed), num_workers=cfg.workers,
        worker_init_fn=_worker_init)
    steps = cfg.epochs * math.ceil(len(samples) / cfg.batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps,
                                                pct_start=0.15)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    per_epoch = math.ceil(len(samples) / cfg.batch_size)
    net.train()
    step, run_loss = 0, 0.0
    for x, y in loader:
        x = (x - MEAN) / STD
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        run_loss += float(loss.detach())
        if step % per_epoch == 0 or step == steps:
            net.eval()
            acc = float((_logits(net, val_aug).argmax(1) == val_y).mean()) if len(val_y) else 0
            net.train()
            log.info("epoch %d/%d loss %.4f val(aug) acc %.4f  [%.0f s]", step // per_epoch,
                     cfg.epochs, run_loss / per_epoch, acc, time.time() - t_start)
            run_loss = 0.0
        if step >= steps:
            break
    net.eval()


def _summary(probs_aug: np.ndarray, probs_clean: np.ndarray, y: np.ndarray, temperature: float,
             threshold: float) -> dict:
    pred = probs_aug.argmax(1)
    per_class = {}
    for c, name in enumerate(CLASSIFIER_LABELS):
        m = y == c
        if m.any():
            per_class[name] = {"n": int(m.sum()),
                               "accuracy": round(float((pred[m] == c).mean()), 4)}
    speed = np.isin(y, list(SPEED_LIMIT_IDS))
    accepted = (probs_aug.max(1) >= threshold) & (pred != BACKGROUND_ID)
    wrong_speed = speed & accepted & (pred != y)
    return {
        "temperature": round(temperature, 4), "min_probability": threshold,
        "val_aug_accuracy": round(float((pred == y).mean()), 4) if len(y) else 0.0,
        "val_clean_accuracy": round(float((probs_clean.argmax(1) == y).mean()), 4)
        if len(y) else 0.0,
        "val_speed_value_accuracy": round(float((accepted & speed & (pred == y)).sum()
                                                / max(1, speed.sum())), 4),
        "val_speed_wrong": int(wrong_speed.sum()),
        "val_ece": round(expected_calibration_error(probs_aug, y), 4) if len(y) else 0.0,
        "per_class": per_class,
    }


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(float((pred[m] == y[m]).mean()) - float(conf[m].mean()))
    return float(ece)


def export_onnx(net, temperature: float, threshold: float, summary: dict, output: Path,
                labels: Sequence[str] = CLASSIFIER_LABELS) -> None:
    """The network with its temperature baked in, as ONNX, with `labels`, the threshold and the
    training summary in the file's metadata (what the runtime loads and checks)."""
    import torch

    model = _Exported.wrap(net, temperature)
    output.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    torch.onnx.export(model, (dummy,), str(output), input_names=["crops"],
                      output_names=["probabilities"], opset_version=17,
                      dynamic_axes={"crops": {0: "n"}, "probabilities": {0: "n"}},
                      dynamo=False)
    meta = {"labels": json.dumps(list(labels)), "min_probability": str(threshold),
            "temperature": str(temperature), "input": "float32 N x 3 x 32 x 32 RGB 0..255",
            "training": json.dumps({k: v for k, v in summary.items() if k != "per_class"})}
    with output.open("ab") as f:
        f.write(onnx_metadata_bytes(meta))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def onnx_metadata_bytes(meta: dict[str, str]) -> bytes:
    """`ModelProto.metadata_props` entries (field 14, StringStringEntryProto key=1 value=2) as
    protobuf bytes. Appending them to a serialized model adds the entries (protobuf merges
    concatenated messages), so the `onnx` package is not needed for this."""
    out = bytearray()
    for k, v in meta.items():
        kb, vb = k.encode(), v.encode()
        entry = b"\x0a" + _varint(len(kb)) + kb + b"\x12" + _varint(len(vb)) + vb
        out += b"\x72" + _varint(len(entry)) + entry
    return bytes(out)


def _check_onnx(net, temperature: float, output: Path, images: np.ndarray) -> None:
    """onnxruntime must reproduce torch's probabilities (export and opset are right)."""
    import onnxruntime as ort
    import torch

    if len(images) == 0:
        return
    x = images.transpose(0, 3, 1, 2).astype(np.float32)
    with torch.no_grad():
        ref = _Exported.wrap(net, temperature)(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"crops": x})[0]
    diff = float(np.abs(got - ref).max())
    if diff > 1e-4:
        raise RuntimeError(f"ONNX output differs from torch by {diff:.2e}")
    log.info("ONNX check: onnxruntime == torch (max |diff| %.1e on %d crops)", diff, len(x))


def confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """k x k counts: row the true class, column the answer."""
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (y, pred), 1)
    return cm


def write_reports(report_dir: Path, probs: np.ndarray, y: np.ndarray, summary: dict) -> None:
    """Per-class accuracy (JSON), confusion matrix and reliability diagram (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "sign_classifier_validation.json").write_text(json.dumps(summary, indent=1))
    k = len(CLASSIFIER_LABELS)
    cm = confusion(y, probs.argmax(1), k)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(11, 10))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), [str(i) if i < NUM_GTSRB else "bg" for i in range(k)], fontsize=6)
    ax.set_yticks(range(k), [f"{i} {n}" if i < NUM_GTSRB else "background"
                             for i, n in enumerate(CLASSIFIER_LABELS)], fontsize=6)
    for i, j in zip(*np.nonzero(cm)):
        if i != j:
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=5, color="red")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Sign classifier, validation tracks (camera-like augmentation): row-normalised;"
                 " red = off-diagonal counts", fontsize=9)
    fig.tight_layout()
    fig.savefig(report_dir / "sign_classifier_confusion.png", dpi=110)
    plt.close(fig)

    conf, correct = probs.max(1), probs.argmax(1) == y
    edges = np.linspace(0, 1, 11)
    mids, accs, counts = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            mids.append((lo + hi) / 2)
            accs.append(float(correct[m].mean()))
            counts.append(int(m.sum()))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.bar(mids, accs, width=0.09, alpha=0.7, label="accuracy in bin")
    for mx, a, n in zip(mids, accs, counts):
        ax.text(mx, a + 0.01, str(n), ha="center", fontsize=6)
    ax.set_xlabel("calibrated probability of the predicted class")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability (validation, T={summary['temperature']}, "
                 f"ECE={summary['val_ece']})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(report_dir / "sign_classifier_reliability.png", dpi=110)
    plt.close(fig)


# --- evaluation on held-out tracks ---------------------------------------------------------------

def evaluate_holdout(model_path: Path, data_dir: Path, min_px: int, max_px: int) -> dict:
    """The shipped runtime (`SignClassifier`, its crop and threshold) on the real GTSRB crops of
    the model's validation tracks whose sign is `min_px`..`max_px` wide: speed-limit value
    accuracy (published value right), wrong values (published value wrong) and class accuracy.
    The top-level figures are the node's own path, the second look included
    (`classify_refined` with the default `analysis.ocr.refine_max`: a box leaning to a speed
    limit without a value is classified again through shifted and scaled copies);
    `single_look` is the network's first answer alone. The tracks come from the model's own
    metadata, so no training crop is scored."""
    clf = SignClassifier(model_path)
    held = set(clf.info.extra.get("val_tracks", []))
    if not held:
        raise ValueError(f"{model_path} records no validation tracks")
    refine_max = OcrConfig().refine_max
    runtime, single = _HoldoutCounts(), _HoldoutCounts()
    with (data_dir / "Train.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if gtsrb_track(r["Path"]) in held
                and not Path(r["Path"]).name.startswith("aug_")]
    for r in rows:
        roi = gtsrb_roi(r)
        if not min_px <= max(roi.w, roi.h) <= max_px:
            continue
        rgb = _read_rgb(data_dir / r["Path"])
        cid = int(r["ClassId"])
        single.add(clf.classify(rgb, [roi])[0], cid)
        runtime.add(clf.classify_refined(rgb, [roi], refine_max)[1][0], cid)
    out = runtime.summary()
    out.update(single_look=single.summary(), sizes_px=[min_px, max_px], tracks=len(held))
    return out


@dataclass
class _HoldoutCounts:
    """Tallies of `evaluate_holdout` for one way of classifying."""

    crops: int = 0
    class_correct: int = 0
    speed: int = 0
    speed_value_correct: int = 0
    speed_wrong_value: int = 0
    speed_no_value: int = 0
    speed_no_reading: int = 0
    rejected: int = 0

    def add(self, res: SignClass, cid: int) -> None:
        """Count one crop's answer against its GTSRB class id."""
        self.crops += 1
        self.rejected += int(not res.is_sign)
        self.class_correct += int(res.gtsrb is not None and res.gtsrb.class_id == cid)
        if cid not in SPEED_LIMIT_IDS:
            return
        self.speed += 1
        if res.value is None:  # rejected, another class, or "a speed limit" with no value
            self.speed_no_reading += int(not res.is_sign)
            self.speed_no_value += int(res.sign_class == "speed_limit")
        elif res.sign_class == "speed_limit" and res.value == gtsrb_class(cid).value:
            self.speed_value_correct += 1
        else:  # a number the sign does not carry (another limit, or end of 80)
            self.speed_wrong_value += 1

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = dict(dataclasses.asdict(self))
        out.update(class_accuracy=round(self.class_correct / max(1, self.crops), 4),
                   speed_value_accuracy=round(self.speed_value_correct / max(1, self.speed), 4))
        return out


# --- command line --------------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("data_dir", type=Path, help="GTSRB training split (Train.csv + Train/)")
    p.add_argument("--output", type=Path, help="ONNX file to write")
    p.add_argument("--evaluate", type=Path, metavar="MODEL.onnx",
                   help="do not train: score this model on its validation tracks' real crops "
                        "(sizes --eval-px) through the runtime classifier, its second look "
                        "included; `single_look` in the output is the first answer alone")
    p.add_argument("--eval-px", default="30-60", help="sign widths to score, MIN-MAX pixels")
    p.add_argument("--quantize", type=Path, metavar="MODEL.onnx",
                   help="do not train: write an int8 copy of this model to --output, its "
                        "activation ranges measured on crops of DATA_DIR's training tracks "
                        "(not the model's validation tracks) and on background crops of "
                        "--negatives (vlm_node.tools.quantize_signs)")
    p.add_argument("--calib-per-class", type=int, default=40, metavar="N",
                   help="with --quantize: training-track samples per class for calibration")
    p.add_argument("--report-dir", type=Path, help="write accuracy JSON and plots here")
    p.add_argument("--negatives", action="append", default=[],
                   help="photos for the background class: a directory, or a labels.json whose "
                        "boxes are avoided (repeatable). Keep evaluation photos out.")
    p.add_argument("--negatives-include", action="append", default=[],
                   help="only negative photos whose file name matches this glob (repeatable)")
    p.add_argument("--extra-positives", action="append", default=[],
                   help="labels.json with gtsrb_class_id boxes to add to training (repeatable)")
    p.add_argument("--extra-include", action="append", default=[],
                   help="only extra-positive photos whose file name matches this glob")
    p.add_argument("--runtime-crops", type=int, default=0, metavar="N",
                   help="each extra positive also gives up to N of the boxes the runtime "
                        "proposes on it (0 = the labelled box only)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--val-share", type=float, default=d.val_share,
                   help="share of each class's tracks held out for validation")
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--neg-per-photo", type=int, default=d.neg_per_photo)
    p.add_argument("--limit-per-class", type=int, default=0,
                   help="use only this many crops per class (quick runs and tests)")


def run(args: argparse.Namespace) -> int:
    if args.evaluate is not None:
        lo, hi = (int(v) for v in args.eval_px.split("-"))
        print(json.dumps(evaluate_holdout(args.evaluate, args.data_dir, lo, hi), indent=1))
        return 0
    if args.output is None:
        raise SystemExit("train-signs: --output is required (or --evaluate MODEL)")
    if args.quantize is not None:
        from vlm_node.tools.quantize_signs import run_quantize

        entry = run_quantize(args.data_dir, args.quantize, args.output, args.calib_per_class,
                             args.negatives, args.negatives_include, args.neg_per_photo,
                             args.seed)
        print(json.dumps(entry, indent=1))
        return 0
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      seed=args.seed, val_share=args.val_share, threads=args.threads,
                      workers=args.workers, neg_per_photo=args.neg_per_photo,
                      limit_per_class=args.limit_per_class)
    summary = train(args.data_dir, args.output, cfg, args.negatives, args.negatives_include,
                    args.extra_positives, args.extra_include, args.report_dir,
                    args.runtime_crops)
    print(json.dumps({k: v for k, v in summary.items()
                      if k not in ("per_class", "val_tracks", "val_negative_photos")}, indent=1))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="train_signs", description=__doc__.splitlines()[0])
    add_arguments(p)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
