"""Image-level precision and recall of the scene detector's categories on hand-labelled photos.

    python -m vlm_node.tools.eval_hazards --data-root DATA [--labels FILE] [--json OUT]

Labels (`docs/data/hazard_labels.json` by default) say for each photo, by path relative to
`--data-root`, whether a pedestrian, cyclist, animal or vehicle is in it. Each photo goes through
the node's anonymizer with its default settings (so the detector's objects come the way they
do in the node: shared from the head backstop's pass) and then the scene detector; a category
counts as predicted when at least one object of it is reported. Printed per score threshold.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import cv2

from vlm_node.analysis.scene_detector import (ANIMAL, CYCLIST, PEDESTRIAN, VEHICLE,
                                              SceneDetector, scene_objects)
from vlm_node.config import resolve
from vlm_node.frames import FrameMeta
from vlm_node.pipeline import Pipeline

DEFAULT_LABELS = Path(__file__).resolve().parents[2] / "docs" / "data" / "hazard_labels.json"
CATEGORIES = (PEDESTRIAN, VEHICLE, CYCLIST, ANIMAL)


def score(truth: Sequence[dict[str, bool]], predicted: Sequence[set[str]]
          ) -> dict[str, dict[str, Any]]:
    """Per category: tp, fp, fn, precision, recall over the images."""
    out = {}
    for c in CATEGORIES:
        tp = sum(1 for t, p in zip(truth, predicted) if t[c] and c in p)
        fp = sum(1 for t, p in zip(truth, predicted) if not t[c] and c in p)
        fn = sum(1 for t, p in zip(truth, predicted) if t[c] and c not in p)
        out[c] = {"positives": tp + fn, "tp": tp, "fp": fp, "fn": fn,
                  "precision": round(tp / (tp + fp), 3) if tp + fp else None,
                  "recall": round(tp / (tp + fn), 3) if tp + fn else None}
    return out


def evaluate(data_root: Path, labels: dict[str, Any], thresholds: Sequence[float]
             ) -> dict[str, Any]:
    # the anonymizer exactly as every tool and the node configure it (config/default.yaml
    # included), through the one pipeline; each photo is its own stream state (reset)
    pipeline = Pipeline(resolve().anonymizer)
    detector = SceneDetector(threshold=min(thresholds))
    rows = labels["images"]
    found = []
    for i, row in enumerate(rows):
        image = cv2.imread(str(data_root / row["file"]), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(data_root / row["file"])
        pipeline.reset("eval")
        frame = pipeline.anonymize(FrameMeta("eval", i + 1, "eval"), image)
        found.append(detector.found(frame))
    pipeline.close()
    result: dict[str, Any] = {"images": len(rows), "shared_passes": detector.counts["shared"],
                              "own_passes": detector.counts["own"], "by_threshold": {}}
    result["by_subset"] = {}
    subsets = sorted({r["file"].split("/")[0] for r in rows})
    for t in thresholds:
        predicted = [{o.category for o in scene_objects(f, t)} for f in found]
        result["by_threshold"][f"{t:g}"] = score(rows, predicted)
        for sub in subsets:
            idx = [i for i, r in enumerate(rows) if r["file"].split("/")[0] == sub]
            result["by_subset"].setdefault(sub, {})[f"{t:g}"] = score(
                [rows[i] for i in idx], [predicted[i] for i in idx])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", type=Path, required=True,
                    help="directory the label paths are relative to")
    ap.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    ap.add_argument("--thresholds", default="0.3,0.4,0.5,0.6,0.7")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    labels = json.loads(args.labels.read_text())
    thresholds = [float(t) for t in args.thresholds.split(",")]
    result = evaluate(args.data_root, labels, thresholds)
    print(f"{result['images']} images; detector objects shared from the anonymizer on "
          f"{result['shared_passes']}, own pass on {result['own_passes']}")
    _table("all images", result["by_threshold"])
    for sub, figures in result["by_subset"].items():
        _table(f"{sub}/ only", figures)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def _table(title: str, by_threshold: dict[str, Any]) -> None:
    print(f"\n{title}\n{'threshold':>9}  " + "  ".join(f"{c:>22}" for c in CATEGORIES))
    for t, per in by_threshold.items():
        cells = []
        for c in CATEGORIES:
            m = per[c]
            p = "-" if m["precision"] is None else f"{m['precision']:.2f}"
            r = "-" if m["recall"] is None else f"{m['recall']:.2f}"
            cells.append(f"P {p} R {r} ({m['positives']:>2})")
        print(f"{t:>9}  " + "  ".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    sys.exit(main())
