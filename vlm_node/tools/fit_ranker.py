"""Fit the proposal ranker (`vlm-node fit-ranker LABELS --output proposal_ranker.json`).

The ranker (`vlm_node.analysis.proposal_ranker`) orders the colour search's proposals so that
the classifier sees the most sign-like ones when a frame has more than
`analysis.ocr.ranked_proposals`. It is fitted on the search's own proposals of labelled photos,
read at the frame size the cap is meant for (1080p by default): a proposal is a positive when
it lies on a labelled sign (box IoU >= 0.4), whatever the sign's class. The photos are read
raw: the ranker looks at paint, which redacting faces does not move. Only training photos
belong here: the shipped file was fitted on GTSDB images 00000-00299, so the GTSDB
development range 00300-00599 stays a fair check.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from vlm_node.cli.args import add_config, add_output, frame_size
from vlm_node.errors import ConfigError
from vlm_node.evaluation.matching import label_box, scaled_signs

IOU = 0.4  # a proposal on a labelled sign: it holds most of it, as a crop that reads


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("labels", type=Path,
                   help="labels.json with labelled signs (docs/labels.md); photos it lists "
                        "without signs count too (every proposal on them is negative)")
    p.add_argument("--include", action="append", default=[], metavar="GLOB",
                   help="only labelled photos whose file name matches (repeatable; default "
                        "all). Keep evaluation photos out.")
    p.add_argument("--size", type=frame_size, default=(1920, 1080), metavar="WxH",
                   help="read every photo resized to this frame size, its labels alike, as "
                        "`bench signs` does (default 1920x1080: the cap matters on large "
                        "frames)")
    add_output(p, "JSON", "ranker file to write", required=True)
    add_config(p, "; its analysis.ocr.* settings shape the search")
    p.add_argument("--l2", type=float, default=1.0,
                   help="L2 penalty of the regression (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    import cv2
    from tqdm import tqdm

    from vlm_node.analysis.ocr_backend import OcrBackend

    from vlm_node.analysis.ocr_config import OcrConfig
    from vlm_node.analysis.proposal_ranker import fit_ranker
    from vlm_node.cli.analyze import included_sign_photos
    from vlm_node.config import resolve
    from vlm_node.geometry import box_array, iou_matrix
    from vlm_node.tools.bench_signs import as_frame

    if not args.labels.is_file():
        raise ConfigError(f"LABELS {args.labels}: no such file")
    photos = included_sign_photos(args.labels, args.include)
    if not photos:
        raise ConfigError("no labelled photos: check LABELS and --include")
    # the cap the fitted ranker will serve (reported below; the default cap when the
    # configuration turns ranking off), then every proposal read, none held back by a ranker
    # (the one being replaced, or none yet)
    cap = resolve(args.config).analysis.ocr.ranked_proposals or OcrConfig().ranked_proposals
    config = resolve(args.config, {"analysis.backend": "ocr",
                                   "analysis.ocr.ranked_proposals": 0})
    reader = OcrBackend(config.analysis.ocr)
    reader.load()
    rows: list[np.ndarray] = []
    truth: list[np.ndarray] = []
    read = 0
    try:
        for path, signs in tqdm(photos, desc="fit-ranker", unit="photo"):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                print(f"{path}: cannot read the image, skipped", file=sys.stderr)
                continue
            frame, place = as_frame(image, args.size)
            boxes, feats = reader.proposal_features(frame)
            read += 1
            if not boxes:
                continue
            signs_here = [b for s in scaled_signs(signs, *place)
                          if (b := label_box(s)) is not None]
            on_sign = (iou_matrix(box_array(boxes), box_array(signs_here)).max(axis=1) >= IOU
                       if signs_here else np.zeros(len(boxes), bool))
            rows.append(feats)
            truth.append(on_sign)
    finally:
        reader.close()
    if not rows:
        raise ConfigError("no proposals in the photos: nothing to fit")
    x, positive = np.concatenate(rows), np.concatenate(truth)
    if not positive.any():
        raise ConfigError("no proposal lies on a labelled sign: check the labels' boxes")
    training = {"labels": args.labels.name, "include": args.include,
                "size": f"{args.size[0]}x{args.size[1]}", "photos": read,
                "proposals": int(len(positive)), "on_signs": int(positive.sum()),
                "iou": IOU, "l2": args.l2}
    ranker = fit_ranker(x, positive, l2=args.l2, training=training)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    ranker.save(output)
    scores = ranker.scores_of(x)
    print(f"{read} photos: {len(positive)} proposals, {int(positive.sum())} on labelled signs; "
          f"ranked in the top {cap} of their photo's proposals, on these photos: "
          f"{_kept(scores, positive, rows, cap):.3f} of those on signs; wrote {output}")
    return 0


def _kept(scores: np.ndarray, positive: np.ndarray, rows: list[np.ndarray], keep: int
          ) -> float:
    """Share of the positives that rank within `keep` of their own photo's proposals."""
    kept, start = 0, 0
    for block in rows:
        s, p = scores[start:start + len(block)], positive[start:start + len(block)]
        kept += int(p[np.argsort(-s, kind="stable")[:keep]].sum())
        start += len(block)
    return kept / max(1, int(positive.sum()))
