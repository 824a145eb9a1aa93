"""The OCR benchmark on a rendered sign set: render it, score the OCR backend with the scoring
home's sign tables (`vlm_node.evaluation.signs`), and count readings on sign-free photos."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

from vlm_node.evaluation.signs import evaluate_labels, false_readings


def ocr_benchmark(out_dir: str | Path, count: int = 100, seed: int = 2024,
                  sign_free: Sequence[str | Path] = (), config: Any = None) -> dict[str, Any]:
    """Render a labelled set (unless `out_dir/labels.json` exists), score the OCR backend on
    it and count its readings on sign-free photos (the shipped car photos plus `sign_free`).
    Writes `out_dir/ocr_report.json` (with the configuration used) and returns it."""
    from dataclasses import asdict

    from vlm_node.analysis.ocr_backend import OcrBackend

    from vlm_node.analysis.ocr_config import OcrConfig
    from vlm_node.tools.render.scenes import load_photos, render_labelled_set

    out = Path(out_dir)
    labels = out / "labels.json"
    if not labels.is_file():
        render_labelled_set(out, count=count, seed=seed)
    cfg = config or OcrConfig()
    backend = OcrBackend(cfg)
    t0 = time.perf_counter()
    backend.load()
    load_s = time.perf_counter() - t0
    try:
        evaluation = evaluate_labels(labels, backend.read_signs)
        photos = [p.path for p in load_photos() if p.use == "background"]
        free = false_readings([*photos, *sign_free], backend.read_signs)
    finally:
        backend.close()
    report = {"model_id": backend.model_id, "config": asdict(cfg), "load_s": round(load_s, 2),
              "labels": str(labels), **evaluation.to_json(),
              "sign_free_images": len(free),
              "sign_free_false_readings": {k: [r.to_json() for r in v]
                                           for k, v in free.items() if v}}
    (out / "ocr_report.json").write_text(json.dumps(report, indent=1) + "\n",
                                         encoding="utf-8")
    report["table"] = evaluation.table()
    return report
