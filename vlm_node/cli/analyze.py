"""`vlm-node analyze INPUT`: anonymize images, read their signs and describe them, optionally
score the readings against a labels file.

INPUT is an image, a directory (searched recursively) or a glob. Every image goes through the
core pipeline (`vlm_node.pipeline.Pipeline`, as in the node): anonymized first (fail closed: an
image that cannot be anonymized is skipped, never analysed), then analysed, both configured as
the node would be (`vlm_node.config.resolve`: config/default.yaml, then each `--config`;
`--backend`, `--model`, `--device` override).
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from vlm_node.analysis.config import BACKENDS, DEVICES, AnalysisConfig
from vlm_node.cli.args import add_config
from vlm_node.cli.inputs import collect_images
from vlm_node.errors import AnonymizationError, ConfigError, VlmNodeError
from vlm_node.evaluation.labels import load_labels
from vlm_node.evaluation.matching import MATCH_IOU
from vlm_node.evaluation.montage import grid, tile
from vlm_node.evaluation.signs import SignMiss, SignScore, score_signs
from vlm_node.results import AnalysisResult, SignReading

if TYPE_CHECKING:
    import numpy as np

    from vlm_node.config import NodeConfig

CAMERA = "cli"  # the pipeline's camera name for the input images


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze", help="anonymize images, read traffic signs and describe the scene",
        description="Anonymize each image, analyse it with the configured backend and print the "
                    "sign readings and scene. With --labels, print sign class accuracy and "
                    "speed-limit value accuracy (a reading matches a labelled sign at box IoU "
                    f">= {MATCH_IOU} when both have boxes, else by class within the image; "
                    "docs/labels.md).")
    p.add_argument("input", metavar="INPUT", help="image file, directory (recursive) or glob")
    p.add_argument("--backend", choices=BACKENDS, help="analysis backend (default: auto)")
    p.add_argument("--model", help="VLM hub id (already downloaded) or local directory")
    p.add_argument("--device", choices=DEVICES, help="torch device for model backends")
    add_config(p, "; its analysis.* settings apply")
    p.add_argument("--batch", type=int, default=1, metavar="N",
                   help="images analysed per batch (as N cameras would be)")
    p.add_argument("--labels", type=Path, metavar="labels.json",
                   help="score sign readings against this labels file")
    p.add_argument("--misses-dir", metavar="DIR",
                   help="with --labels: write signs_missed.png (a tile of every labelled sign "
                        "not read right, cut from the anonymized frame the reader saw, with "
                        "what the label says and what was read) and signs_missed.json to DIR")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per image per line (scores go to stderr)")
    p.add_argument("--sequence", action="store_true",
                   help="inputs are consecutive frames of one camera: keep regions redacted "
                        "across detector misses (carry-over); by default images are unrelated "
                        "and a region found in one is never carried into the next, where it "
                        "could cover a sign")
    p.set_defaults(func=run)


# --------------------------------------------------------------------------------- inputs
def find_images(spec: str) -> list[str]:
    """Image paths for INPUT (`cli.inputs.collect_images`), as strings, sorted."""
    return sorted(str(p) for p, _ in collect_images(spec))


def node_config(args: argparse.Namespace) -> "NodeConfig":
    """The node's settings (`vlm_node.config.resolve`: defaults, config/default.yaml, each
    --config), then --backend, --model, --device; anonymizer and analysis both apply."""
    from vlm_node.config import resolve

    overrides = {f"analysis.{k}": v for k, v in (("backend", args.backend), ("model", args.model),
                                                 ("device", args.device)) if v is not None}
    return resolve(args.config, overrides)


def analysis_config(args: argparse.Namespace) -> AnalysisConfig:
    """The analysis part of `node_config`."""
    return node_config(args).analysis


# --------------------------------------------------------------------------------- output
def sign_json(s: SignReading) -> dict[str, Any]:
    value = s.value
    if value is not None and float(value).is_integer():
        value = int(value)
    return {"class": s.sign_class, "value": value, "unit": s.unit, "text": s.text,
            "box": s.box.to_list() if s.box else None, "confidence": round(s.confidence, 3),
            "source": s.source}


def image_json(file: str, result: AnalysisResult) -> dict[str, Any]:
    return {"file": file, "signs": [sign_json(s) for s in result.signs],
            "scene": result.scene.to_json() if result.scene else None,
            "degraded": result.degraded}


def image_text(file: str, result: AnalysisResult) -> str:
    head = f"{file}: {len(result.signs)} sign(s), {result.backend}, {result.analysis_ms:.0f} ms"
    if result.degraded:
        head += f", DEGRADED ({result.degraded_reason})"
    lines = [head]
    for s in result.signs:
        value = f" {s.value:g} {s.unit}".rstrip() if s.value is not None else ""
        text = f' "{s.text}"' if s.text else ""
        box = f" at {s.box.to_list(0)}" if s.box else ""
        lines.append(f"  {s.sign_class}{value}{text}{box} ({s.source}, {s.confidence:.2f})")
    if result.scene:
        sc = result.scene
        lines.append(f"  scene: {sc.summary!r} weather={sc.weather} lighting={sc.lighting} "
                     f"road={sc.road_type} hazards={list(sc.hazards)}")
    return "\n".join(lines)


def load_sign_labels(path: Path) -> dict[str, tuple[dict[str, Any], ...]]:
    """Resolved image path -> labelled signs, for entries that label signs."""
    try:
        labels = load_labels(path)
    except OSError as exc:
        raise ConfigError(f"--labels {path}: cannot read: {exc}") from exc
    return {str(lb.path.resolve()): lb.signs for lb in labels
            if lb.path is not None and lb.signs is not None}


def included_sign_photos(path: Path, include: Sequence[str]
                         ) -> list[tuple[Path, tuple[dict[str, Any], ...]]]:
    """(photo, labelled signs) of `load_sign_labels`, sorted by path, only the photos whose
    file name matches one of the `include` globs (every photo when there are none): the
    training photos the fit commands read."""
    return [(Path(photo), signs) for photo, signs in sorted(load_sign_labels(path).items())
            if not include or any(fnmatch.fnmatch(Path(photo).name, g) for g in include)]


# --------------------------------------------------------------------------------- command
def _batches(items: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def run(args: argparse.Namespace) -> int:
    import cv2

    from vlm_node.analysis.engine import AnalysisEngine
    from vlm_node.anonymize.config import for_photos
    from vlm_node.frames import FrameMeta
    from vlm_node.pipeline import Pipeline

    if args.batch < 1:
        raise ConfigError("--batch must be at least 1")
    if args.misses_dir and not args.labels:
        raise ConfigError("--misses-dir needs --labels (a miss is a labelled sign not read)")
    files = find_images(args.input)
    labels = load_sign_labels(args.labels) if args.labels else None
    score = SignScore()
    missed: list[tuple[str, SignMiss, np.ndarray]] = []  # file, miss, montage tile
    config = node_config(args)
    # photos (unless --sequence) vary in size: one model for every shape (`for_photos`)
    anonymizer = config.anonymizer if args.sequence else for_photos(config.anonymizer)
    pipeline = Pipeline(anonymizer, AnalysisEngine(config.analysis).start())
    status = pipeline.status()
    if status["degraded"]:
        print(f"analysis degraded: {status['reason']}", file=sys.stderr)
    failures = 0
    try:
        for batch in _batches(list(enumerate(files)), args.batch):
            frames, names = [], []
            for index, file in batch:
                image = cv2.imread(file, cv2.IMREAD_COLOR)
                if image is None:
                    print(f"{file}: cannot read the image", file=sys.stderr)
                    failures += 1
                    continue
                if not args.sequence:
                    pipeline.reset(CAMERA)
                try:
                    frames.append(pipeline.anonymize(FrameMeta(CAMERA, index, file), image))
                    names.append(file)
                except AnonymizationError as exc:
                    print(f"{file}: skipped, not anonymized: {exc}", file=sys.stderr)
                    failures += 1
            if not frames:
                continue
            try:
                results = [r.analysis for r in pipeline.analyze(frames)]
            except VlmNodeError as exc:
                print(f"{', '.join(names)}: analysis failed: {exc}", file=sys.stderr)
                failures += len(frames)
                continue
            for file, frame, result in zip(names, frames, results):
                print(json.dumps(image_json(file, result)) if args.json
                      else image_text(file, result), flush=True)
                if labels is not None:
                    key = str(Path(file).resolve())
                    if key in labels:
                        misses = score_signs(score, labels[key], result)
                        if args.misses_dir:
                            missed += [(file, m, tile(frame.image, m.box,
                                                      m.captions(len(missed) + i)))
                                       for i, m in enumerate(misses)]
    finally:
        pipeline.close()
    if labels is not None:
        stream = sys.stderr if args.json else sys.stdout
        _print_score(score, stream)
        if args.misses_dir:
            print(write_misses(Path(args.misses_dir), missed), file=stream)
    return 1 if failures else 0


MISSES_PNG, MISSES_JSON = "signs_missed.png", "signs_missed.json"


def write_misses(folder: Path, missed: Sequence[tuple[str, SignMiss, np.ndarray]]) -> str:
    """Write the montage and list of missed signs to `folder` (a montage of an earlier run is
    removed when this one has no miss); return a line saying where."""
    folder.mkdir(parents=True, exist_ok=True)
    png, listing = folder / MISSES_PNG, folder / MISSES_JSON
    entries = [{"index": i, "file": file, "box": m.label["box"], "label": m.label,
                "read": None if m.reading is None else
                {"class": m.reading.sign_class, "value": m.reading.value,
                 "confidence": round(m.reading.confidence, 3)}}
               for i, (file, m, _) in enumerate(missed)]
    listing.write_text(json.dumps(entries, indent=1) + "\n", encoding="utf-8")
    image = grid([t for _, _, t in missed])
    if image is None:
        png.unlink(missing_ok=True)
        return f"no labelled sign missed; list in {listing}"
    import cv2

    if not cv2.imwrite(str(png), image):
        raise VlmNodeError(f"could not write {png}")
    return f"{len(missed)} missed signs: {png} (numbered as in {listing})"


def _print_score(score: SignScore, stream: Any) -> None:
    s = score.summary()
    if not s["images"]:
        print("no analysed image is in the labels file", file=stream)
        return

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f} %"

    print(f"\nsign class accuracy: {pct(s['class_accuracy'])} of {s['labelled_signs']} labelled "
          f"signs in {s['images']} images; speed-limit value accuracy: "
          f"{pct(s['speed_limit_value_accuracy'])} of {s['speed_limit_signs']}; "
          f"wrong speed values: {s['wrong_speed_values']} on labelled signs, "
          f"{s['speed_values_on_no_labelled_sign']} on no labelled sign; "
          f"{s['unmatched_readings']} readings matched no label; "
          f"{s['degraded_images']} images degraded", file=stream)
    sizes = s["speed_values_by_size"]
    if sizes:
        print("speed-limit values by the labelled sign's larger side: " + "; ".join(
            f"{name} {pct(c['accuracy'])} ({c['correct']}/{c['labelled']}, {c['wrong']} wrong)"
            for name, c in sizes.items()), file=stream)
    for cls, c in s["per_class"].items():
        print(f"  {cls:<22} {c['correct']:>4} / {c['labelled']:<4}", file=stream)
