"""Fit the sign verifier (`vlm-node fit-verifier LABELS --output sign_verifier.json`).

The verifier (`vlm_node.analysis.sign_verifier`) learns which of the classifier's readings are
real signs from the runtime's own readings: every photo is anonymized and read exactly as
`vlm-node analyze` does (the configured anonymizer and `ocr` backend, the verifier itself off),
and each classifier reading is a positive when it lies on a labelled sign of its class (box
IoU >= 0.3) and a negative otherwise; every reading on a photo of `--negatives` is a negative.
Only training photos belong here: the shipped file was fitted on GTSDB images 00000-00299 (the
classifier's own training photos) and the tune half of the WIDER crowd photos, so the GTSDB
development range, the Kaggle road photos and the WIDER check half stay a fair check.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vlm_node.cli.args import add_config, add_output
from vlm_node.errors import ConfigError
from vlm_node.evaluation.matching import label_box, scaled_signs

IOU = 0.3  # a reading on a labelled sign, as `vlm-node analyze --labels` matches them


@dataclass
class Readings:
    """The classifier readings of the photos, with their probabilities and truth."""

    probs: list[np.ndarray]
    positive: list[bool]
    read: set[Path] = field(default_factory=set)  # photos read at one size at least
    reads: int = 0  # (photo, size) reads

    @property
    def photos(self) -> int:
        return len(self.read)

    def add(self, probs: np.ndarray, positive: Sequence[bool]) -> None:
        self.probs.extend(probs)
        self.positive.extend(positive)


def half(paths: Sequence[Path], which: str) -> list[Path]:
    """`which` of the photos sorted by name: all, tune (even positions) or check (odd), the
    split docs/anonymizer.md uses for the WIDER crowd photos."""
    ordered = sorted(paths)
    return {"all": ordered, "tune": ordered[0::2], "check": ordered[1::2]}[which]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("labels", type=Path,
                   help="labels.json with labelled signs (`class` per box; docs/labels.md)")
    p.add_argument("--include", action="append", default=[], metavar="GLOB",
                   help="only labelled photos whose file name matches (repeatable; default "
                        "all). Keep evaluation photos out.")
    p.add_argument("--negatives", action="append", default=[], type=Path, metavar="DIR",
                   help="photos without signs: every reading on them is false (repeatable)")
    p.add_argument("--negatives-half", choices=("all", "tune", "check"), default="all",
                   help="of each --negatives folder, sorted by name: every photo, the even "
                        "positions or the odd ones")
    add_output(p, "JSON", "verifier file to write", required=True)
    add_config(p, "; its anonymizer.* and analysis.ocr.* settings apply, as for `vlm-node "
                  "analyze`")
    p.add_argument("--sizes", type=_sizes, default=[None], metavar="SIZE[,SIZE...]",
                   help="read each photo at these sizes, its labels scaled alike: 'native' (its "
                        "own size) and/or WxH, resized as `bench signs --size` does (aspect not "
                        "kept); e.g. native,1920x1080 adds the readings of the photos as a "
                        "1080p frame (default: native)")
    p.add_argument("--l2", type=float, default=10.0,
                   help="L2 penalty of the regression (default: %(default)s)")
    p.add_argument("--keep", type=float, default=0.99,
                   help="share of the training photos' real signs the threshold keeps "
                        "(default: %(default)s)")


NATIVE = "native"


def _sizes(text: str) -> list[tuple[int, int] | None]:
    """'native,1920x1080' -> [None, (1920, 1080)] (None: the photo's own size)."""
    from vlm_node.cli.args import frame_size

    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected 'native' and/or WxH sizes")
    sizes = [None if part == NATIVE else frame_size(part) for part in parts]
    if len(set(sizes)) != len(sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: a size is given twice")
    return sizes


def _images(paths: Path) -> list[Path]:
    from vlm_node.cli.inputs import collect_images

    return [p for p, _ in collect_images(str(paths))]


def run(args: argparse.Namespace) -> int:
    import cv2
    from tqdm import tqdm

    from vlm_node.analysis.ocr_backend import OcrBackend
    from vlm_node.analysis.sign_classifier import prepare_crops
    from vlm_node.analysis.sign_verifier import fit_verifier
    from vlm_node.cli.analyze import included_sign_photos
    from vlm_node.config import resolve
    from vlm_node.errors import AnonymizationError
    from vlm_node.frames import FrameMeta
    from vlm_node.pipeline import Pipeline
    from vlm_node.tools.bench_signs import as_frame

    if not 0.5 <= args.keep <= 1.0:
        raise ConfigError("--keep must be between 0.5 and 1")
    if not args.labels.is_file():
        raise ConfigError(f"LABELS {args.labels}: no such file")
    for folder in args.negatives:
        if not folder.is_dir():
            raise ConfigError(f"--negatives {folder}: not a directory")
    photos: list[tuple[Path, tuple[dict[str, Any], ...] | None]] = list(
        included_sign_photos(args.labels, args.include))
    for folder in args.negatives:
        photos += [(p, None) for p in half(_images(folder), args.negatives_half)]
    if not photos:
        raise ConfigError("no photos: check LABELS, --include and --negatives")

    config = resolve(args.config, {"analysis.backend": "ocr", "analysis.ocr.verifier": False})
    pipeline = Pipeline(config.anonymizer)
    reader = OcrBackend(config.analysis.ocr)
    reader.load()
    classifier = reader.classifier
    if classifier is None:
        raise ConfigError("the verifier judges the sign classifier: analysis.ocr.classifier "
                          "must be true")
    found = Readings([], [])
    work = [(path, signs, size) for path, signs in photos for size in args.sizes]
    try:
        progress = tqdm(work, desc="fit-verifier", unit="read")
        for index, (path, signs, size) in enumerate(progress):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                print(f"{path}: cannot read the image, skipped", file=sys.stderr)
                continue
            image, place = as_frame(image, size)
            if signs is not None:
                signs = tuple(scaled_signs(signs, *place))
            pipeline.reset("fit")
            try:
                frame = pipeline.anonymize(FrameMeta("fit", index, str(path)), image)
            except AnonymizationError as exc:
                print(f"{path}: not anonymized, skipped: {exc}", file=sys.stderr)
                continue
            readings = [r for r in reader.read_frame(frame)
                        if r.source == "classifier" and r.box is not None]
            found.reads += 1
            found.read.add(path)
            if not readings:
                continue
            truth = [signs is not None and any(
                s.get("class") == r.sign_class and (box := label_box(s)) is not None
                and box.iou(r.box) >= IOU for s in signs)
                for r in readings]
            rgb = cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB)
            found.add(classifier.probabilities(prepare_crops(rgb, [r.box for r in readings])),
                      truth)
    finally:
        reader.close()
        pipeline.close()
    positive = np.asarray(found.positive, bool)
    training = {
        "labels": args.labels.name, "include": args.include,
        "negatives": [p.name for p in args.negatives], "negatives_half": args.negatives_half,
        "photos": found.photos, "real_sign_readings": int(positive.sum()),
        "false_readings": int((~positive).sum()), "l2": args.l2, "keep": args.keep,
        "classifier": classifier.path.name}
    if args.sizes != [None]:
        # recorded only when asked for, so the default command still rebuilds the shipped file
        # byte for byte
        training["sizes"] = [NATIVE if size is None else f"{size[0]}x{size[1]}"
                             for size in args.sizes]
        training["reads"] = found.reads
    verifier = fit_verifier(np.asarray(found.probs), positive, classifier.source_sha256,
                            l2=args.l2, keep=args.keep, training=training)
    rejected = ~verifier.accepts(np.asarray(found.probs))
    verifier.training["false_readings_rejected"] = int(rejected[~positive].sum())
    verifier.training["real_sign_readings_rejected"] = int(rejected[positive].sum())
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    verifier.save(output)
    sizes = f" ({found.reads} reads at {len(args.sizes)} sizes)" if len(args.sizes) > 1 else ""
    print(f"{found.photos} photos{sizes}: {int(positive.sum())} real sign readings, "
          f"{int((~positive).sum())} false; on them the verifier rejects "
          f"{verifier.training['false_readings_rejected']} false and "
          f"{verifier.training['real_sign_readings_rejected']} real (threshold "
          f"{verifier.threshold:.3f}) -> {output}")
    return 0
