"""Quantize the sign classifier to int8 (`vlm-node train-signs DATA --quantize MODEL.onnx
--output MODEL_int8.onnx`).

Why: the classifier is the largest single cost of the sign stage (~360 crops a 1080p frame);
onnxruntime's int8 convolutions (VNNI on x86, dot-product instructions on ARM) run the same
network about twice as fast on CPU. Static quantization needs activation ranges, measured on
calibration crops, so the result depends on which crops are shown: they come from the same
places as the model's training data and never from what it is scored on, i.e. GTSRB crops of
the *training* tracks (the source model's validation tracks, listed in its metadata, are left
out) plus background crops from the `--negatives` photos that were not its validation photos.

Weights are per output channel int8 in a 7-bit range (`REDUCE_RANGE`), activations uint8 (QDQ
format, min/max calibration). The temperature scaling and the softmax stay in float so the
output is still a calibrated probability; the source model's metadata (labels, threshold,
temperature, training summary) is copied, with a `quantized` entry (source file hash,
calibration counts) added. Afterwards the
tool compares the two models on the validation tracks' crops and prints how often they agree;
`--evaluate` scores the result the way it scores any model.

This module is a tool: it needs the `onnx` package (requirements/dev.txt); the runtime only
loads the file it writes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from vlm_node.analysis.sign_classifier import SignClassifier
from vlm_node.tools.train_signs import (Sample, augment, load_gtsrb, load_photos,
                                        negative_samples, nominal_crop)

log = logging.getLogger(__name__)

# nodes of the exported graph that stay in float: the temperature and the softmax (the
# calibrated probability is what thresholds and the tracker read)
FLOAT_NODES = ("/Mul", "/Softmax")
BATCH = 256
# 7-bit weights: onnxruntime's uint8 x int8 kernels on x86 CPUs without VNNI add pairs of
# products in 16 bits, which saturate with full 8-bit weights, so the same file would answer
# differently on another vehicle's CPU; 7 bits cannot overflow there. Measured on the
# 1080p-size batch (370 crops, two cores, a VNNI Xeon): 42 ms against 36 ms with 8 bits and 67
# ms for the float model; held-out crops equal to the float model either way.
REDUCE_RANGE = True


@dataclass
class CalibrationSet:
    """Calibration crops (N x 32 x 32 x 3 RGB uint8) and where they came from."""

    crops: np.ndarray
    signs: int
    background: int
    check: np.ndarray  # the validation tracks' nominal crops: for the agreement check only


def calibration_set(data_dir: Path, source: SignClassifier, per_class: int,
                    negatives: Sequence[str], negatives_include: Sequence[str],
                    neg_per_photo: int, seed: int) -> CalibrationSet:
    """Crops to measure activation ranges on: up to `per_class` training-track samples of
    every class (each as the runtime would cut it and as one augmented camera-like view) and
    background crops of the negative photos the source model trained on."""
    rng = np.random.default_rng(seed)
    held = set(source.info.extra.get("val_tracks", []))
    held_photos = set(source.info.extra.get("val_negative_photos", []))
    data = load_gtsrb(data_dir, 0.15, seed)  # the split is the source model's, not this one
    by_class: dict[int, list[Sample]] = {}
    check: list[np.ndarray] = []
    for s in data.train + data.val:
        if s.group in held:
            check.append(nominal_crop(s))
        else:
            by_class.setdefault(s.label, []).append(s)
    crops: list[np.ndarray] = []
    for cls in sorted(by_class):
        pool = by_class[cls]
        for i in rng.permutation(len(pool))[:per_class]:
            crops += [nominal_crop(pool[i]), augment(pool[i], rng)]
    signs = len(crops)
    photos = [p for spec in negatives for p in load_photos(spec, negatives_include)
              if p.path.name not in held_photos]
    crops += [nominal_crop(s) for s in negative_samples(photos, neg_per_photo, rng)]
    order = rng.permutation(len(crops))
    stacked = np.stack(crops)[order] if crops else np.zeros((0, 32, 32, 3), np.uint8)
    return CalibrationSet(stacked, signs, len(crops) - signs,
                          np.stack(check) if check else np.zeros((0, 32, 32, 3), np.uint8))


def quantize(model: Path, output: Path, calib: CalibrationSet) -> dict[str, object]:
    """Write the int8 copy of `model` to `output`; returns the `quantized` metadata entry."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod,
                                          QuantFormat, QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calib.crops) == 0:
        raise ValueError("no calibration crops: check DATA_DIR and --negatives")
    batches = [calib.crops[i:i + BATCH].transpose(0, 3, 1, 2).astype(np.float32)
               for i in range(0, len(calib.crops), BATCH)]

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._it, None)
            return None if batch is None else {"crops": batch}

    entry: dict[str, object] = {
        "source": model.name, "source_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "calibration_sign_crops": calib.signs, "calibration_background_crops": calib.background,
        "weights": "int8 per channel, 7-bit range", "activations": "uint8",
        "method": "minmax, QDQ"}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model), str(prepared))
        quantize_static(str(prepared), str(output), _Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        reduce_range=REDUCE_RANGE,
                        nodes_to_exclude=list(FLOAT_NODES))
    # the source's metadata (labels, threshold, temperature, training summary) travels along
    source_meta = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    out = onnx.load(str(output))
    del out.metadata_props[:]
    for key, value in {**source_meta, "quantized": json.dumps(entry)}.items():
        out.metadata_props.add(key=key, value=value)
    onnx.save(out, str(output))
    return entry


def agreement(source: SignClassifier, quantized: SignClassifier, crops: np.ndarray
              ) -> dict[str, float]:
    """How closely the int8 model follows the float one on `crops`: share of equal answers
    (argmax, thresholds aside), and the largest and 99th-percentile change of any class's
    probability."""
    if len(crops) == 0:
        return {"crops": 0}
    x = crops.transpose(0, 3, 1, 2).astype(np.float32)
    a, b = source.probabilities(x), quantized.probabilities(x)
    diff = np.abs(a - b).max(axis=1)
    same = float((a.argmax(1) == b.argmax(1)).mean())
    return {"crops": int(len(x)), "same_answer": round(same, 4),
            "max_abs_diff": round(float(diff.max()), 4),
            "p99_abs_diff": round(float(np.percentile(diff, 99)), 4)}


def run_quantize(data_dir: Path, model: Path, output: Path, per_class: int,
                 negatives: Sequence[str], negatives_include: Sequence[str],
                 neg_per_photo: int, seed: int) -> dict[str, object]:
    """The `--quantize` command: calibration set, int8 file, agreement on validation tracks."""
    source = SignClassifier(model)
    calib = calibration_set(data_dir, source, per_class, negatives, negatives_include,
                            neg_per_photo, seed)
    log.info("calibrating on %d sign and %d background crops", calib.signs, calib.background)
    output.parent.mkdir(parents=True, exist_ok=True)
    entry = quantize(model, output, calib)
    entry["agreement_on_validation_tracks"] = agreement(source, SignClassifier(output),
                                                        calib.check)
    return entry
