"""Train the learned sign proposer (`vlm_node.analysis.sign_proposer`) and score it.

    python -m vlm_node.tools.train_sign_proposer --labels GTSDB_LABELS --labels KAGGLE_LABELS \
        --exclude andrewmvd_ --output vlm_node/assets/models/sign_proposer/sign_proposer.onnx
    python -m vlm_node.tools.train_sign_proposer --labels ... --evaluate MODEL.onnx

Why a network: the colour/shape search sends ~110-180 boxes a frame to the classifier and, with
its Hough pass, is most of the 1080p sign stage's time (docs/sign_classifier.md, "Speed of the
sign stage"). A CenterNet-style heatmap of sign centres at stride 4, with each centre's width
and height, ranks a handful of boxes instead. Trained here on CPU from the labelled development
photos (any sign class counts as "sign"); the last `--val-share` of each labels file, in natural
file-name order, is held out and never trained on, and photos of the reserved ranges (GTSDB
00600-00899, Kaggle road438-876) are refused outright.

`--paste GTSRB_DIR` also pastes real GTSRB training crops into the training crops (half of
them, 1-4 signs of 8-64 px each, with `vlm_node.evaluation.sign_scenes.place_sign`, the same
faded paste the placed-sign sets use), and `--backgrounds DIR` adds unlabelled photos (crowds,
streets) that only ever hold pasted signs. Why: the development photos show 947 signs of a few
hundred physical ones, mostly bright German signs on country roads; on GTSRB crops placed into
crowd photos the shipped proposer's ten boxes covered only 65 of the 178 speed limits the
reader missed (IoU >= 0.5). GTSRB's ~1,300 physical signs, in every light, are the data it
lacked. The sign classifier's held-out tracks are never pasted: the placed-sign sets are built
from them.

`--evaluate` prints the held-out recall of the proposer's top-K boxes beside the colour/shape
search's (every box it would classify), by sign size, and the proposer's time per frame.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

from vlm_node.evaluation.labels import load_labels
from vlm_node.geometry import Box

if TYPE_CHECKING:
    from vlm_node.evaluation.sign_scenes import SignCrop

STRIDE = 4
CROP = 320
SEED = 0
# pasted GTSRB signs: the share of training crops that get them, how many, their sizes (the
# sign's larger side in the crop's pixels, log-uniform: far signs as common as near ones)
PASTE_SHARE = 0.5
PASTE_COUNT = (1, 4)
PASTE_SIZES = (8.0, 64.0)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# photos of the ranges kept for independent evaluation: never read for training or tuning
_RESERVED = (re.compile(r"gtsdb[_-]0*(6|7|8)\d\d\b"),
             re.compile(r"road(4[4-9]\d|43[89]|[5-8]\d\d)\b"))


def reserved(name: str) -> bool:
    """Whether a photo belongs to a range reserved for independent evaluation."""
    stem = Path(name).stem.lower()
    return any(p.search(stem) for p in _RESERVED)


def natural_key(name: str) -> list[object]:
    """File names with their numbers compared as numbers (road9 before road10)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


@dataclass
class Photo:
    """One labelled photo: its pixels and the boxes of every sign on it (x, y, w, h)."""

    name: str
    bgr: np.ndarray
    boxes: np.ndarray


def load_photos(labels: Sequence[str], exclude: str, val_share: float
                ) -> tuple[list[Photo], list[Photo]]:
    """(training, held-out) photos of the labels files; the last `val_share` of each file's
    photos in natural name order is held out."""
    train: list[Photo] = []
    val: list[Photo] = []
    for path in labels:
        entries = [e for e in load_labels(path) if e.signs is not None and e.path is not None]
        entries = [e for e in entries if not (exclude and re.search(exclude, str(e.file)))]
        entries.sort(key=lambda e: natural_key(Path(str(e.file)).name))
        bad = [str(e.file) for e in entries if reserved(str(e.file))]
        if bad:
            raise SystemExit(f"{path}: {len(bad)} photos of a reserved range ({bad[0]}, ...): "
                             "they are kept for independent evaluation")
        cut = int(round(len(entries) * (1.0 - val_share)))
        for i, e in enumerate(entries):
            bgr = cv2.imread(str(e.path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise SystemExit(f"cannot read {e.path}")
            boxes = np.array([s["box"] for s in e.signs or () if s.get("box")],
                             np.float32).reshape(-1, 4)
            (val if i >= cut else train).append(Photo(Path(str(e.file)).name, bgr, boxes))
    return train, val


def load_backgrounds(folders: Sequence[Path]) -> list[Photo]:
    """Every image under `folders` as a photo with no labelled sign (only pasted ones), reserved
    ranges refused as in `load_photos`."""
    out: list[Photo] = []
    for folder in folders:
        files = sorted((f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES),
                       key=lambda f: natural_key(f.name))
        if not files:
            raise SystemExit(f"--backgrounds {folder}: no images")
        for f in files:
            if reserved(f.name):
                raise SystemExit(f"--backgrounds {folder}: {f.name} belongs to a reserved range")
            bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if bgr is None:
                raise SystemExit(f"cannot read {f}")
            out.append(Photo(f.name, bgr, np.zeros((0, 4), np.float32)))
    return out


class Paster:
    """Pastes GTSRB training crops into training crops: the crops of every track the sign
    classifier trained on (its held-out tracks are what the placed-sign sets are built from),
    decoded once and kept."""

    def __init__(self, crops: Sequence["SignCrop"]) -> None:
        if not crops:
            raise SystemExit("--paste: no GTSRB crops left to paste")
        self.crops = list(crops)
        self._pixels: dict[int, np.ndarray] = {}

    @classmethod
    def from_folder(cls, data_dir: Path) -> "Paster":
        """The training split's crops minus the classifier's held-out tracks."""
        from vlm_node.analysis.sign_classifier import DEFAULT_MODEL
        from vlm_node.evaluation.sign_scenes import held_out_tracks, load_sign_crops

        held = set(held_out_tracks(DEFAULT_MODEL))
        return cls([c for c in load_sign_crops(data_dir) if c.track not in held])

    def _image(self, i: int) -> np.ndarray:
        if i not in self._pixels:
            image = cv2.imread(str(self.crops[i].path), cv2.IMREAD_COLOR)
            if image is None:
                raise SystemExit(f"{self.crops[i].path}: unreadable GTSRB crop")
            self._pixels[i] = image
        return self._pixels[i]

    def paste(self, canvas: np.ndarray, boxes: np.ndarray, rng: np.random.Generator
              ) -> np.ndarray:
        """Paste 1-4 signs into `canvas` (in place) clear of `boxes` and of each other;
        returns `boxes` with the pasted signs' boxes added."""
        from vlm_node.evaluation.sign_scenes import pasted_size, place_sign

        height, width = canvas.shape[:2]
        taken = [Box(*map(float, b)) for b in boxes]
        added = []
        lo, hi = np.log(PASTE_SIZES[0]), np.log(PASTE_SIZES[1])
        for _ in range(int(rng.integers(PASTE_COUNT[0], PASTE_COUNT[1] + 1))):
            i = int(rng.integers(len(self.crops)))
            crop, image = self.crops[i], self._image(i)
            side = float(np.exp(rng.uniform(lo, hi)))
            w, h = pasted_size(image, crop.roi, side)
            if w >= width or h >= height:
                continue
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            footprint = Box(x, y, w, h)
            if any(footprint.expanded(0.25).intersection(t) > 0 for t in taken):
                continue
            box = place_sign(canvas, image, crop.roi, side, x, y)
            taken.append(footprint)
            added.append(box.to_list())
        if not added:
            return boxes
        return np.concatenate([boxes, np.array(added, np.float32).reshape(-1, 4)])


def _model():  # noqa: ANN202 (torch is imported here only: the node never needs it)
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812

    def cbr(i: int, o: int, s: int = 1) -> nn.Module:
        return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o),
                             nn.ReLU(inplace=True))

    class Proposer(nn.Module):
        """uint8-range BGR in; sign-centre logit and log(w/4), log(h/4) at stride 4 out.
        ~0.4 GMAC at 960x544: four stride-2 stages (16-16-32-64 channels) and a two-level
        top-down merge back to stride 4, where 6 px signs still have a centre cell."""

        def __init__(self) -> None:
            super().__init__()
            self.s1 = cbr(3, 16, 2)
            self.s2 = cbr(16, 16, 2)
            self.s3 = nn.Sequential(cbr(16, 32, 2), cbr(32, 32))
            self.s4 = nn.Sequential(cbr(32, 64, 2), cbr(64, 64))
            self.l4 = nn.Conv2d(64, 32, 1)
            self.l3 = nn.Conv2d(32, 16, 1)
            self.head = nn.Sequential(cbr(16, 16), nn.Conv2d(16, 3, 1))
            with torch.no_grad():
                self.head[-1].bias[0] = -4.0  # start near "no sign" everywhere

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x / 128.0 - 1.0
            c2 = self.s2(self.s1(x))
            c3 = self.s3(c2)
            c4 = self.s4(c3)
            p3 = c3 + F.interpolate(self.l4(c4), size=c3.shape[2:], mode="nearest")
            p2 = c2 + F.interpolate(self.l3(p3), size=c2.shape[2:], mode="nearest")
            return self.head(p2)

    return Proposer()


def sample(photo: Photo, rng: np.random.Generator, paster: Paster | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One training crop (CROP x CROP, BGR) with its centre heatmap, log sizes and size mask at
    stride 4. Scales 0.7-1.6x (the search sees 1080p at half size and small photos as they
    are), 70 % of crops around a sign, pasted GTSRB signs in `PASTE_SHARE` of them when a
    `paster` is given, camera-like blur, JPEG and exposure."""
    s = float(np.exp(rng.uniform(np.log(0.7), np.log(1.6))))
    h, w = photo.bgr.shape[:2]
    img = cv2.resize(photo.bgr, (max(1, round(w * s)), max(1, round(h * s))),
                     interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    b = photo.boxes * s
    height, width = img.shape[:2]
    if len(b) and rng.random() < 0.7:
        x, y, bw, bh = b[rng.integers(len(b))]
        x0 = int(x + bw / 2 - rng.uniform(0.15, 0.85) * CROP)
        y0 = int(y + bh / 2 - rng.uniform(0.15, 0.85) * CROP)
    else:
        x0 = int(rng.integers(min(0, width - CROP), max(1, width - CROP + 1)))
        y0 = int(rng.integers(min(0, height - CROP), max(1, height - CROP + 1)))
    crop = np.zeros((CROP, CROP, 3), np.uint8)
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(width, x0 + CROP), min(height, y0 + CROP)
    if xb > xa and yb > ya:
        crop[ya - y0:yb - y0, xa - x0:xb - x0] = img[ya:yb, xa:xb]
    b = b - np.array([x0, y0, 0, 0], np.float32)
    if paster is not None and rng.random() < PASTE_SHARE:
        b = paster.paste(crop, b, rng)
    if rng.random() < 0.5:
        crop = np.ascontiguousarray(crop[:, ::-1])
        b[:, 0] = CROP - b[:, 0] - b[:, 2]
    crop = cv2.convertScaleAbs(crop, alpha=rng.uniform(0.6, 1.4), beta=rng.uniform(-30, 30))
    if rng.random() < 0.3:
        k = int(rng.choice([3, 5]))
        crop = cv2.GaussianBlur(crop, (k, k), 0)
    if rng.random() < 0.3:
        _, enc = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
        crop = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    g = CROP // STRIDE
    heat = np.zeros((g, g), np.float32)
    size = np.zeros((2, g, g), np.float32)
    mask = np.zeros((g, g), np.float32)
    ys, xs = np.mgrid[0:g, 0:g].astype(np.float32)
    for x, y, bw, bh in b:
        cx, cy = (x + bw / 2) / STRIDE, (y + bh / 2) / STRIDE
        if not (0 <= cx < g and 0 <= cy < g) or max(bw, bh) < 4:
            continue
        sigma = max(0.6, 0.12 * min(bw, bh) / STRIDE)
        heat = np.maximum(heat, np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2)))
        ix, iy = int(cx), int(cy)
        heat[iy, ix] = 1.0
        size[:, iy, ix] = (np.log(bw / STRIDE), np.log(bh / STRIDE))
        mask[iy, ix] = 1.0
    return crop, heat, size, mask


def train(photos: list[Photo], steps: int, batch: int = 16, seed: int = SEED,
          log_every: int = 200, paster: Paster | None = None
          ):  # noqa: ANN201 (a torch module)
    """The proposer trained on `photos` (focal loss on the centres, L1 on log sizes), with
    pasted GTSRB signs when a `paster` is given."""
    import torch
    from torch.nn import functional as F  # noqa: N812

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = _model()
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps, pct_start=0.1)
    start, running = time.monotonic(), 0.0
    for step in range(steps):
        parts = [sample(photos[int(rng.integers(len(photos)))], rng, paster)
                 for _ in range(batch)]
        x = torch.from_numpy(np.stack([p[0] for p in parts])).permute(0, 3, 1, 2).float()
        heat = torch.from_numpy(np.stack([p[1] for p in parts]))[:, None]
        size = torch.from_numpy(np.stack([p[2] for p in parts]))
        mask = torch.from_numpy(np.stack([p[3] for p in parts]))[:, None]
        out = net(x)
        p = torch.sigmoid(out[:, :1]).clamp(1e-4, 1 - 1e-4)
        pos = heat.eq(1).float()
        focal = -(torch.log(p) * (1 - p) ** 2 * pos).sum() \
            - (torch.log(1 - p) * p ** 2 * (1 - heat) ** 4 * (1 - pos)).sum()
        loss = focal / pos.sum().clamp(min=1) + 0.5 * F.l1_loss(
            out[:, 1:] * mask, size * mask, reduction="sum") / mask.sum().clamp(min=1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running = loss.item() if step == 0 else 0.98 * running + 0.02 * loss.item()
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step}/{steps}: loss {running:.3f} ({time.monotonic() - start:.0f} s)",
                  flush=True)
    return net.eval()


def export(net, output: Path, info: dict[str, object]) -> None:  # noqa: ANN001
    """ONNX with dynamic height and width (multiples of 16), training facts in its metadata."""
    import onnx
    import torch

    output.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, 544, 960)
    torch.onnx.export(net, dummy, str(output), input_names=["bgr"], output_names=["maps"],
                      dynamic_axes={"bgr": {2: "h", 3: "w"}, "maps": {2: "h4", 3: "w4"}},
                      opset_version=17, dynamo=False)
    model = onnx.load(str(output))
    for key, value in {"stride": str(STRIDE), "training": json.dumps(info)}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(output))


def evaluate(model: Path, val: list[Photo], ks: Sequence[int] = (10, 25, 50)) -> None:
    """Held-out recall (IoU >= 0.5 and >= 0.3 with a label) of the proposer's top-K boxes and of
    every box the colour/shape search would classify, by the sign's larger side."""
    from vlm_node.analysis.ocr_backend import OcrBackend
    from vlm_node.analysis.ocr_config import OcrConfig
    from vlm_node.analysis.sign_proposer import SignProposer

    proposer = SignProposer(model)
    rows: list[dict[str, object]] = []
    search_boxes: list[int] = []
    times: list[float] = []
    with OcrBackend(OcrConfig(learned_proposals=0)) as reader:  # the search, not the proposer
        for photo in val:
            found = reader._search(photo.bgr)  # noqa: SLF001 (the search's boxes themselves)
            search = [c.box for c in found.candidates] + found.proposals + found.squares + \
                found.circles + found.triangles + found.diamonds
            search_boxes.append(len(search))
            t = time.perf_counter()
            proposed = [b for b, _ in proposer.propose(photo.bgr, max(ks), 0.0)]
            times.append(time.perf_counter() - t)
            for x, y, w, h in photo.boxes:
                label = Box(float(x), float(y), float(w), float(h))
                row: dict[str, object] = {"size": max(w, h)}
                for iou in (0.5, 0.3):
                    row[f"search@{iou}"] = any(label.iou(b) >= iou for b in search)
                    for k in ks:
                        row[f"top{k}@{iou}"] = any(label.iou(b) >= iou for b in proposed[:k])
                rows.append(row)
    print(f"{len(val)} held-out photos, {len(rows)} signs; the search's boxes a photo: median "
          f"{np.median(search_boxes):.0f}, mean {np.mean(search_boxes):.0f}; the proposer: "
          f"{np.median(times) * 1000:.1f} ms median a photo")
    buckets = (("all", 0, 1e9), ("< 16 px", 0, 16), ("16-29", 16, 30), ("30+", 30, 1e9))
    print(f"{'boxes':14s}" + "".join(f"{name:>14s}" for name, _, _ in buckets))
    for key in [k for k in rows[0] if k != "size"] if rows else []:
        cells = []
        for _, lo, hi in buckets:
            sel = [r for r in rows if lo <= float(r["size"]) < hi]  # type: ignore[arg-type]
            cells.append(f"{sum(bool(r[key]) for r in sel)}/{len(sel)}")
        print(f"{key:14s}" + "".join(f"{c:>14s}" for c in cells))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vlm_node.tools.train_sign_proposer",
        description="Train the learned sign proposer on labelled photos (docs/labels.md, any "
                    "sign class), export it to ONNX, or score a model on the held-out photos "
                    "beside the colour/shape search (docs/sign_proposer.md).")
    parser.add_argument("--labels", action="append", required=True,
                        help="labels.json with sign boxes (repeatable)")
    parser.add_argument("--exclude", default="",
                        help="regular expression: photos whose file matches are left out (e.g. "
                             "copies of photos another labels file holds)")
    parser.add_argument("--val-share", type=float, default=0.25,
                        help="last share of each labels file (natural name order) held out")
    parser.add_argument("--steps", type=int, default=6000, help="training steps of 16 crops")
    parser.add_argument("--paste", type=Path, metavar="GTSRB_DIR",
                        help="GTSRB training split (Kaggle layout: Train.csv, Train/) whose "
                             "crops are pasted into half the training crops; the sign "
                             "classifier's held-out tracks are left out")
    parser.add_argument("--backgrounds", type=Path, action="append", default=[],
                        metavar="DIR", help="folder of unlabelled photos trained on with "
                                            "pasted signs only (repeatable; needs --paste)")
    parser.add_argument("--output", type=Path, help="where to write the ONNX model")
    parser.add_argument("--evaluate", type=Path, metavar="MODEL",
                        help="score this ONNX model on the held-out photos instead of training")
    args = parser.parse_args(argv)
    if not 0.0 < args.val_share < 1.0:
        parser.error("--val-share must lie between 0 and 1")
    if args.evaluate is None and args.output is None:
        parser.error("give --output (train) or --evaluate MODEL")
    if args.backgrounds and args.paste is None:
        parser.error("--backgrounds holds no labelled signs: give --paste too")
    cv2.setNumThreads(1)  # crops are cut one at a time; torch has the cores
    train_photos, val = load_photos(args.labels, args.exclude, args.val_share)
    print(f"{len(train_photos)} training photos ({sum(len(p.boxes) for p in train_photos)} "
          f"signs), {len(val)} held out ({sum(len(p.boxes) for p in val)} signs)", flush=True)
    if args.evaluate is not None:
        evaluate(args.evaluate, val)
        return 0
    paster = Paster.from_folder(args.paste) if args.paste is not None else None
    backgrounds = load_backgrounds(args.backgrounds)
    if paster is not None:
        print(f"pasting {len(paster.crops)} GTSRB crops; {len(backgrounds)} background photos",
              flush=True)
    net = train(train_photos + backgrounds, args.steps, paster=paster)
    export(net, args.output, {
        "steps": args.steps, "seed": SEED, "crop": CROP, "val_share": args.val_share,
        "labels": [Path(p).name for p in args.labels], "exclude": args.exclude,
        "training_photos": len(train_photos), "held_out_photos": len(val),
        "pasted_crops": len(paster.crops) if paster is not None else 0,
        "paste_share": PASTE_SHARE if paster is not None else 0.0,
        "backgrounds": [p.name for p in args.backgrounds],
        "background_photos": len(backgrounds)})
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
