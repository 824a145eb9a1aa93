"""`vlm-node bench signs`: the sign stage's time per frame and its accuracy, per setting, on real
photos (see `vlm_node.tools.bench_signs`). The `bench` parent command calls `add_signs_parser`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from vlm_node.analysis.ocr_config import OcrConfig
from vlm_node.cli.args import add_config, add_output, frame_size, split_variant
from vlm_node.cli.inputs import collect_images
from vlm_node.errors import ConfigError

if TYPE_CHECKING:
    from vlm_node.config import NodeConfig

NATIVE = "native"


def _size(text: str) -> tuple[int, int] | None:
    return None if text == NATIVE else frame_size(text)


def add_signs_parser(bench_sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = bench_sub.add_parser(
        "signs", help="sign stage: ms and CPU-ms per frame, and accuracy, per setting",
        description="Read real photos with the sign reader (the OCR backend: colour/shape "
                    "search, classifier, OCR) as configured for the node, and with each "
                    "--variant, every photo by every setting in turn in one process; print "
                    "median / mean / p95 ms and CPU-ms a frame, the mean ms a frame of the "
                    "reader's parts (search, classify: the first classifier batch, recognise: "
                    "PP-OCR, other) and, with --labels, signs read "
                    "with their class, speed values, wrong values (on a labelled sign + on "
                    "none) and readings on no labelled sign (the rule of `vlm-node analyze "
                    "--labels`). Each photo is anonymized "
                    "first (untimed) and read as the node reads it, with the anonymizer's sign "
                    "text, people and vehicles.")
    p.add_argument("input", metavar="INPUT", help="image file, directory (recursive) or glob")
    p.add_argument("--size", type=_size, default=(1920, 1080), metavar="WxH",
                   help="resize every photo to this size first, its labels alike (default "
                        f"1920x1080, the stage's target); '{NATIVE}' keeps each photo's size")
    p.add_argument("--fit", action="store_true",
                   help="keep each photo's aspect: scale it to fit in --size and centre it on a "
                        "black frame of that size (labels alike) instead of stretching it; for "
                        "photos that are not 16:9 (a stretched 4:3 photo's round signs are "
                        "ellipses)")
    p.add_argument("--labels", type=Path, metavar="labels.json",
                   help="score the readings of the photos this file labels (docs/labels.md)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:P=V[,P=V...]",
                   help="one more setting to measure beside the configured one, with these "
                        "analysis.ocr parameters (YAML values), e.g. "
                        "'floor 6:search_min_px=6' or 'cap 1000:proposals.max_proposals=1000'; "
                        "'again:' measures the configured setting once more, to show the noise "
                        "(repeatable)")
    p.add_argument("--raw", action="store_true",
                   help="read the raw photos with the reader alone: no anonymizer, so none of "
                        "its sign text, people or vehicle boxes (the sign stage's older "
                        "figures); raw pixels stay in this process either way")
    p.add_argument("--no-default", action="store_true",
                   help="measure only the variants, not the configured setting")
    p.add_argument("--max-photos", type=int, default=0, metavar="N",
                   help="at most N photos, evenly spread over INPUT (0 = all)")
    p.add_argument("--warmup", type=int, default=3, metavar="N",
                   help="read the first N photos with every setting before timing (default "
                        "3): OpenVINO prepares each new input shape on its first call")
    add_config(p, "; its anonymizer.* and analysis.ocr.* settings apply")
    add_output(p, "JSON", "also write the figures here")
    p.set_defaults(func=run)
    return p


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
    """'NAME:P=V,P=V' -> (NAME, {"analysis.ocr.P": V}); V is read as YAML (9, 0.5, true)."""
    try:
        name, pairs = split_variant(spec)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return name, {f"analysis.ocr.{key}": yaml.safe_load(value) for key, value in pairs}


def settings(args: argparse.Namespace, node: "NodeConfig") -> list[tuple[str, OcrConfig]]:
    """(name, OcrConfig) to measure: the configured one (`node`, from `vlm_node.config.resolve`
    of --config) unless --no-default, then each --variant on top of the same files."""
    from vlm_node.config import resolve

    out = [] if args.no_default else [("configured", node.analysis.ocr)]
    for spec in args.variant:
        name, overrides = parse_variant(spec)
        out.append((name, resolve(args.config, overrides).analysis.ocr))
    if not out:
        raise ConfigError("--no-default leaves nothing to measure: add a --variant")
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"setting names must differ: {names}")
    return out


def spread(items: list[Any], n: int) -> list[Any]:
    """At most n of `items`, evenly spaced (all when n <= 0)."""
    if n <= 0 or n >= len(items):
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from vlm_node.evaluation.labels import labels_by_image
    from vlm_node.tools.bench_signs import bench_signs

    if args.warmup < 0:
        raise SystemExit("vlm-node bench signs: error: --warmup must be >= 0")
    from vlm_node.config import resolve

    try:
        node = resolve(args.config)
        chosen = settings(args, node)
        images = spread([p for p, _ in collect_images(args.input)], args.max_photos)
        labels = {}
        if args.labels is not None:
            labels = {path: e for path, e in labels_by_image(args.labels, "--labels").items()
                      if e.signs is not None}
            if not any(p.resolve() in labels for p in images):
                raise ConfigError(f"{args.labels} labels none of the {len(images)} photos of "
                                  f"{args.input}")
    except (ConfigError, FileNotFoundError) as exc:
        raise SystemExit(f"vlm-node bench signs: error: {exc}") from exc
    with tqdm(total=len(images), unit="photo", desc="reading", leave=False) as bar:
        try:
            if args.fit and args.size is None:
                raise ValueError(f"--fit needs a --size, not '{NATIVE}'")
            figures = bench_signs(images, chosen, size=args.size, labels=labels, fit=args.fit,
                                  warmup=args.warmup,
                                  progress=lambda done, total: bar.update(1),
                                  anonymizer=None if args.raw else node.anonymizer)
        except (ValueError, FileNotFoundError) as exc:
            raise SystemExit(f"vlm-node bench signs: error: {exc}") from exc
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    return 0
