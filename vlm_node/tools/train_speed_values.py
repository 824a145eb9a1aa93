"""Train the speed-value reader (`vlm_node.analysis.speed_values`) on real sign crops and export
it to ONNX with its calibrated threshold.

Data: the GTSRB training split's speed limits (20-120 km/h; German signs, tracks of one physical
sign each) and the speed limits of the Tsinghua-Tencent 100K crops (5-120 km/h, Chinese signs of
the same design), plus `other`: round signs with a number that is no speed limit (weight,
height, width, axle limits, the end of a limit, minimum speeds), pictograms and background. The
held-out GTSRB tracks are the sign classifier's own (read from its model file), so neither
network has seen them; TT100K crops are held out by blocks of panorama ids (neighbouring
panoramas show the same sign). Augmentation is the classifier's (`train_signs.augment`: blur,
low light, glare, perspective, JPEG, 12-48 px).

Layout expected: GTSRB as for `train-signs` (Kaggle layout: Train.csv, Train/<id>/*.png); TT100K
crops as `DIR/train/<code>/<image id>_<n>.png` and optionally `DIR/test/...` (the layout of the
public TT100K_Cropped copy; codes `pl40`, `pm20`, ...).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import re
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from vlm_node.analysis.gtsrb import SPEED_LIMIT_IDS, gtsrb_class
from vlm_node.analysis.sign_classifier import DEFAULT_MODEL
from vlm_node.analysis.speed_values import (DEFAULT_VALUE_MODEL, OTHER, VALUE_LABELS,
                                            value_class)
from vlm_node.evaluation.label_import import gtsrb_roi, gtsrb_track
from vlm_node.evaluation.sign_scenes import held_out_tracks
from vlm_node.geometry import Box
from vlm_node.tools.train_signs import (Sample, TrainConfig, _check_onnx, _logits, _read_rgb,
                                        _seed_everything, _val_arrays, build_model,
                                        choose_threshold, confusion, expected_calibration_error,
                                        export_onnx, fit, fit_temperature, softmax)

log = logging.getLogger(__name__)

OTHER_ID = VALUE_LABELS.index(OTHER)

# TT100K codes whose sign is round with a number that is not a speed limit: the confusions that
# matter (a "20t" weight limit read as a 20), all kept as `other`
NUMBERED_OTHER = re.compile(r"^(pm|pr|pa|ph|pw|il)[0-9.]+$")
TT_SPEED = re.compile(r"^pl([0-9]+)$")


def tt_label(code: str) -> int | None:
    """The reader's class of a TT100K class code: a speed value, `other`, or None (skip: a
    speed limit whose value the reader does not learn, too few crops of it)."""
    m = TT_SPEED.match(code)
    if m:
        return value_class(float(m.group(1)))
    return OTHER_ID


def tt_group(path: Path) -> int:
    """The panorama id of a TT100K crop (`<image id>_<n>.png`)."""
    return int(path.stem.split("_")[0])


def load_tt100k(root: Path, held_block: int, blocks: int, block_size: int, other_per_code: int,
                negatives: int, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(train, val) samples from the TT100K crops under `root/<part>/<code>/` (the copy's
    `train` and `test` parts alike: TT100K split its panoramas at random, so neighbours of one
    part's signs are in the other): a crop is held out when its panorama id's block (`id //
    block_size`) is `held_block` modulo `blocks`."""
    parts = [p for p in (root / "train", root / "test") if p.is_dir()]
    if not parts:
        raise FileNotFoundError(f"{root}/train not found (expected DIR/train/<code>/*.png)")
    rng = np.random.default_rng(seed)
    train: list[Sample] = []
    val: list[Sample] = []
    codes = sorted({f.name for part in parts for f in part.iterdir() if f.is_dir()})
    for code in codes:
        label = tt_label(code)
        if label is None:
            continue
        files = sorted(f for part in parts for f in (part / code).glob("*.png"))
        if label == OTHER_ID and not NUMBERED_OTHER.match(code):
            cap = negatives if code == "negative" else other_per_code
            if len(files) > cap:
                files = [files[i] for i in sorted(rng.choice(len(files), cap, replace=False))]
        for f in files:
            img = _read_rgb(f)
            h, w = img.shape[:2]
            group = tt_group(f)
            s = Sample(img, Box(0, 0, w, h), label, f"tt_{group}")
            (val if (group // block_size) % blocks == held_block else train).append(s)
    return train, val


def load_gtsrb_values(data_dir: Path, held: set[str], speed_every: int, other_every: int
                      ) -> tuple[list[Sample], list[Sample]]:
    """(train, val) GTSRB crops: every `speed_every`-th crop of each speed-limit track with its
    value, every `other_every`-th crop of the other classes as `other`; tracks in `held` go to
    validation."""
    import csv

    csv_path = data_dir / "Train.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path} not found (expected the Kaggle GTSRB layout)")
    train: list[Sample] = []
    val: list[Sample] = []
    seen: Counter[str] = Counter()
    with csv_path.open(newline="") as f:
        for r in csv.DictReader(f):
            if Path(r["Path"]).name.startswith("aug_"):
                continue
            cls = int(r["ClassId"])
            track = gtsrb_track(r["Path"])
            k = seen[track]
            seen[track] += 1
            if cls in SPEED_LIMIT_IDS:
                if k % speed_every:
                    continue
                label = value_class(gtsrb_class(cls).value or 0.0)
            else:
                if k % other_every:
                    continue
                label = OTHER_ID
            if label is None:
                continue
            s = Sample(_read_rgb(data_dir / r["Path"]), gtsrb_roi(r), label, track)
            (val if track in held else train).append(s)
    return train, val


def balanced(samples: list[Sample], min_per_class: int) -> list[Sample]:
    """`samples` with each value class repeated up to `min_per_class` entries (each repeat is
    augmented differently: the augmentation is seeded by position)."""
    by: dict[int, list[Sample]] = {}
    for s in samples:
        by.setdefault(s.label, []).append(s)
    out = list(samples)
    for label, group in sorted(by.items()):
        if label != OTHER_ID and len(group) < min_per_class:
            reps = math.ceil(min_per_class / len(group)) - 1
            out += group * reps
    return out


def value_summary(probs: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    """Accuracy per class, and at the threshold: share of value crops filled, wrong fills."""
    pred, conf = probs.argmax(1), probs.max(1)
    valued = y != OTHER_ID
    filled = (pred != OTHER_ID) & (conf >= threshold)
    per_class = {name: {"n": int((y == c).sum()),
                        "accuracy": round(float((pred[y == c] == c).mean()), 4),
                        "filled_right": int((filled & (pred == c) & (y == c)).sum())}
                 for c, name in enumerate(VALUE_LABELS) if (y == c).any()}
    return {"n": int(len(y)), "accuracy": round(float((pred == y).mean()), 4) if len(y) else 0.0,
            "values": int(valued.sum()),
            "filled_right": int((filled & (pred == y) & valued).sum()),
            "filled_wrong_value": int((filled & (pred != y) & valued).sum()),
            "filled_on_other": int((filled & ~valued).sum()),
            "ece": round(expected_calibration_error(probs, y), 4) if len(y) else 0.0,
            "per_class": per_class}


def train(gtsrb_dir: Path, tt_dir: Path, output: Path, *, epochs: int = 40, seed: int = 13,
          batch_size: int = 128, lr: float = 3e-3, threads: int = 2, min_per_class: int = 500,
          target_precision: float = 0.995, report_dir: Path | None = None,
          speed_every: int = 2, other_every: int = 8) -> dict:
    """Train, calibrate, export and check; returns the summary written into the model."""
    import torch

    t0 = time.time()
    torch.set_num_threads(threads)
    cv2.setNumThreads(1)
    _seed_everything(seed)
    held = set(held_out_tracks(DEFAULT_MODEL))
    g_train, g_val = load_gtsrb_values(gtsrb_dir, held, speed_every, other_every)
    t_train, t_val = load_tt100k(tt_dir, held_block=0, blocks=6, block_size=500,
                                 other_per_code=40, negatives=800, seed=seed)
    log.info("GTSRB %d train / %d val; TT100K %d train / %d val", len(g_train), len(g_val),
             len(t_train), len(t_val))
    samples = balanced(g_train + t_train, min_per_class)
    log.info("train crops per class (balanced): %s",
             dict(sorted(Counter(VALUE_LABELS[s.label] for s in samples).items())))
    net = build_model(len(VALUE_LABELS))
    val = g_val + t_val
    val_aug, val_clean, val_y = _val_arrays(val, seed)
    fit(net, samples, val_aug, val_y,
        TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed), t0)
    logits_aug, logits_clean = _logits(net, val_aug), _logits(net, val_clean)
    temperature = fit_temperature(logits_aug, val_y)
    probs_aug, probs_clean = softmax(logits_aug, temperature), softmax(logits_clean, temperature)
    threshold = choose_threshold(probs_aug, val_y, target_precision, reject_id=OTHER_ID)
    n_g = len(g_val)
    summary = {
        "temperature": round(temperature, 4), "min_probability": threshold, "seed": seed,
        "epochs": epochs, "train_crops": len(samples), "val_crops": len(val),
        "val_aug": value_summary(probs_aug, val_y, threshold),
        "val_clean": value_summary(probs_clean, val_y, threshold),
        "val_gtsrb_aug": value_summary(probs_aug[:n_g], val_y[:n_g], threshold),
        "val_tt100k_aug": value_summary(probs_aug[n_g:], val_y[n_g:], threshold),
        "tt100k_held": "panorama id // 500 % 6 == 0", "gtsrb_held": "the classifier's tracks",
        "train_seconds": round(time.time() - t0)}
    meta_summary = {k: ({kk: vv for kk, vv in v.items() if kk != "per_class"}
                        if isinstance(v, dict) else v) for k, v in summary.items()}
    export_onnx(net, temperature, threshold, meta_summary, output, labels=VALUE_LABELS)
    _check_onnx(net, temperature, output, val_aug[:256])
    if report_dir is not None:
        write_reports(report_dir, probs_aug, val_y, summary)
    log.info("wrote %s: val(aug) acc %.4f, T=%.3f, threshold %.2f", output,
             summary["val_aug"]["accuracy"], temperature, threshold)
    return summary


def write_reports(report_dir: Path, probs: np.ndarray, y: np.ndarray, summary: dict) -> None:
    """The summary (JSON), the confusion matrix and the reliability diagram (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "speed_values_validation.json").write_text(json.dumps(summary, indent=1))
    k = len(VALUE_LABELS)
    cm = confusion(y, probs.argmax(1), k)
    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    ax = axes[0]
    ax.imshow(cm / np.maximum(cm.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), VALUE_LABELS, rotation=90)
    ax.set_yticks(range(k), VALUE_LABELS)
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6)
    ax.set_xlabel("read")
    ax.set_ylabel("true")
    ax.set_title("speed-value reader: held-out crops (one camera-like view each)")
    conf, right = probs.max(1), probs.argmax(1) == y
    edges = np.linspace(0, 1, 11)
    mids, accs = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            mids.append(float(conf[m].mean()))
            accs.append(float(right[m].mean()))
    axes[1].plot([0, 1], [0, 1], "k--", lw=1)
    axes[1].plot(mids, accs, "o-")
    axes[1].set_xlabel("calibrated probability")
    axes[1].set_ylabel("share right")
    axes[1].set_title(f"reliability (ECE {summary['val_aug']['ece']:.3f})")
    fig.tight_layout()
    fig.savefig(report_dir / "speed_values_validation.png", dpi=110)
    plt.close(fig)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("gtsrb_dir", type=Path, help="GTSRB training split (Kaggle layout)")
    p.add_argument("tt100k_dir", type=Path,
                   help="Tsinghua-Tencent 100K crops: DIR/train/<code>/<image id>_<n>.png")
    p.add_argument("--output", type=Path, default=DEFAULT_VALUE_MODEL, help="ONNX file to write")
    p.add_argument("--report-dir", type=Path, default=None,
                   help="write the validation summary and plots here")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--min-per-class", type=int, default=500,
                   help="rare values are repeated (augmented anew) up to this many crops")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train(args.gtsrb_dir, args.tt100k_dir, args.output, epochs=args.epochs, seed=args.seed,
          threads=args.threads, min_per_class=args.min_per_class, report_dir=args.report_dir)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
