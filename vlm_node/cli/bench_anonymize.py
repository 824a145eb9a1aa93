"""`vlm-node bench anonymize`: speed and recall of the anonymizer per setting, one table.

Frames are built from the labelled photos (`evaluation.compose_frame`: a grid of photos scaled
down into a 720p or 1080p frame, like the small distant faces and plates of a road camera), and
shown as short clips panning a few pixels per frame so the carry-over works as on video. Each
setting is timed per stage (decode, face detection, plate detection, redaction, encode) and
scored twice: on the labelled photos themselves and on the composite frames it was timed on.
The `baseline` setting runs the same detectors in one plain full-frame pass, in the same run,
so speed-ups are measured against the same machine state.

Frames go through the core pipeline (`vlm_node.pipeline.Pipeline`) one at a time: the bench
times per frame, not throughput (no frames in flight), and every stage the pipeline's anonymizer
reports (`Pipeline.stage_ms`) is timed, so a stage added there shows up in `ms_mean`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vlm_node.anonymize.config import AnonymizerConfig
from vlm_node.anonymize.runtime import ENGINES
from vlm_node.cli.args import frame_sizes
from vlm_node.errors import VlmNodeError

# Settings compared; `default` is AnonymizerConfig() itself.
SETTINGS: dict[str, dict[str, Any]] = {
    "baseline": {"face_max_side": 640, "face_max_upscale": 1.0, "face_global_pass": False,
                 "plate_max_side": 960, "plate_max_upscale": 1.0, "plate_verify": "none",
                 "carry_frames": 0, "parallel_stages": False},
    # every detector over the whole frame every frame: the defaults before the video cadence
    # (rotating plate bands + vehicle regions, cheap face pass between thorough ones)
    "every_frame": {"plate_scan_bands": 1, "plate_vehicle_pass": False,
                    "face_thorough_every": 1},
    "fast": {"face_max_side": 960, "plate_max_side": 640},
    "default": {},
    "accurate": {"face_max_side": 1920, "plate_max_side": 1920},
    "thorough": {},  # config/anonymizer_thorough.yaml, read when used (`setting_overrides`)
}
THOROUGH_FILE = "anonymizer_thorough.yaml"
STREAM = "bench"  # the pipeline stream (camera) every frame of a setting goes through
DETECTOR_STAGES = ("faces", "persons", "plates", "redact")  # the table's stage columns


def setting_overrides(name: str) -> dict[str, Any]:
    """AnonymizerConfig overrides of a setting; `thorough` is the shipped option file's
    anonymizer.* entries, so the bench measures exactly what users layer with --config."""
    if name != "thorough":
        return SETTINGS[name]
    from vlm_node.config import flatten_params, load_params_yaml
    from vlm_node.paths import config_file

    params = flatten_params(load_params_yaml(config_file(THOROUGH_FILE)))
    return {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("anonymizer.")}


def add_anonymize_parser(bench_sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = bench_sub.add_parser(
        "anonymize", help="anonymizer frames/s and recall per setting",
        description="Time the anonymizer per stage at several frame sizes and settings on "
                    "frames composed from labelled photos, and score each setting's recall, "
                    "precision and leak rate on the labelled photos and the timed frames.")
    p.add_argument("--labels", metavar="JSON",
                   help="labels.json with face and plate boxes (docs/labels.md), e.g. the "
                        "labelled photos of the project's shared test data (required unless "
                        "--frames-dir is given)")
    p.add_argument("--frames-dir", metavar="DIR",
                   help="time on these photos instead of composites of the labelled ones: "
                        "each letterboxed to the frame size and shown as a clip of --clip "
                        "frames panning 3 px a frame (busy frames: crowds, signs, text). "
                        "Frame recall columns then stay empty (no labels)")
    p.add_argument("--clip", type=int, default=5, metavar="N",
                   help="frames per photo of --frames-dir (default 5)")
    p.add_argument("--sizes", type=frame_sizes, default=[(1280, 720), (1920, 1080)],
                   help="frame sizes WxH, comma-separated (default 1280x720,1920x1080)")
    p.add_argument("--frames", type=int, default=20, help="timed frames per size and setting")
    p.add_argument("--warmup", type=int, default=3, help="untimed frames first (default 3)")
    p.add_argument("--settings", default=",".join(SETTINGS),
                   help=f"settings to compare, comma-separated, from {', '.join(SETTINGS)}")
    p.add_argument("--providers", default="CPUExecutionProvider",
                   help="onnxruntime execution providers in order, comma-separated, e.g. "
                        "TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider")
    p.add_argument("--engines", default=AnonymizerConfig().engine,
                   help="inference engines, comma-separated, from "
                        f"{', '.join(ENGINES)}: every setting is run on each (default "
                        "%(default)s, the anonymizer's default); the rows name the engine and "
                        "the precision it computed in")
    p.add_argument("--threads", type=int, default=AnonymizerConfig().threads,
                   help="intra-op threads per model, either engine (0 = one per core; default "
                        "%(default)s, the anonymizer's default)")
    p.add_argument("--faces-dev", metavar="JSON",
                   help="labels.json of a hard face set (e.g. the shared WIDER FACE training "
                        "photos, faces_wider_train/labels.json): adds each setting's face "
                        "coverage by size and collateral there (docs/anonymizer.md)")
    p.add_argument("--no-labelled", action="store_true",
                   help="skip scoring on the labelled photos (timing and frame recall only)")
    p.add_argument("--output", metavar="JSON", help="write all numbers as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write the table as Markdown")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)
    return p


def engine_label(engine: str, precision: str) -> str:
    """`engine`, with the precision OpenVINO computes in on this CPU (bf16 or f32)."""
    if engine != "openvino":
        return engine
    from vlm_node.anonymize.openvino_session import cpu_precision
    return f"openvino {cpu_precision() if precision == 'auto' else precision}"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
           "onnxruntime": ort.__version__, "opencv": cv2.__version__,
           "available_providers": ort.get_available_providers()}
    try:
        import openvino

        from vlm_node.anonymize.openvino_session import cpu_precision
        out["openvino"] = openvino.__version__
        out["openvino_precision"] = cpu_precision()
    except ImportError:
        out["openvino"] = None
    return out


def clip(frame: np.ndarray, boxes: dict[str, list], length: int, step: float
         ) -> list[tuple[np.ndarray, dict[str, list]]]:
    """`length` frames panning `frame` by `step` px per frame (border replicated), labels
    moved along (boxes leaving the frame are dropped)."""
    h, w = frame.shape[:2]
    out = []
    for k in range(length):
        dx = step * k
        m = np.float32([[1, 0, dx], [0, 1, 0]])
        img = cv2.warpAffine(frame, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
        moved = {kind: [b.shifted(dx, 0) for b in bs if b.x2 + dx <= w] for kind, bs in
                 boxes.items()}
        out.append((img, moved))
    return out


def run(args: argparse.Namespace) -> int:
    from vlm_node.anonymize import AnonymizerConfig
    from vlm_node.evaluation.composite import compose_frame
    from vlm_node.evaluation.face_coverage import FaceCoverage, score_faces
    from vlm_node.evaluation.labels import load_labels
    from vlm_node.evaluation.redaction import KINDS, KindCounts, score_image
    from vlm_node.frames import FrameMeta
    from vlm_node.params import apply_overrides
    from vlm_node.pipeline import Pipeline

    if not args.labels and not args.frames_dir:
        raise VlmNodeError("pass --labels (composites of labelled photos) or --frames-dir")
    labels_path = Path(args.labels) if args.labels else None
    if labels_path is not None and not labels_path.is_file():
        raise VlmNodeError(f"labels file not found: {labels_path} (pass --labels)")
    items = load_labels(labels_path) if labels_path is not None else []
    photos = []
    for it in items:
        img = cv2.imread(str(it.path), cv2.IMREAD_COLOR)
        if img is None:
            raise VlmNodeError(f"unreadable labelled image {it.path}")
        photos.append((it, img))
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise VlmNodeError(f"unknown setting(s) {', '.join(unknown)}; choose from "
                           f"{', '.join(SETTINGS)}")
    providers = tuple(p.strip() for p in args.providers.split(",") if p.strip())
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not engines or set(engines) - set(ENGINES):
        raise VlmNodeError(f"--engines {args.engines!r}: choose from {', '.join(ENGINES)}")
    dev = load_labels(args.faces_dev) if args.faces_dev else []
    rng = np.random.default_rng(args.seed)
    sizes = args.sizes
    # one set of clips per size, shared by all settings: faces and plates photos mixed per
    # frame (each photo keeps only its own labelled kind)
    mixed = [(img, {k: it.boxes(k) for k in KINDS}) for it, img in photos]
    clips: dict[tuple[int, int], list] = {}
    for size in sizes:
        frames: list = []
        if args.frames_dir:
            from vlm_node.tools.bench_node import photo_frames

            shots = photo_frames(args.frames_dir, *size)
            while len(frames) < args.frames + args.warmup:
                for shot in shots:
                    frames += clip(shot, {}, max(1, args.clip), 3.0)
        while len(frames) < args.frames + args.warmup:
            comp = compose_frame(mixed, size, rng)
            frames += clip(comp.image, comp.boxes, 5, 3.0)
        clips[size] = frames[:args.frames + args.warmup]
    results = []
    for name, engine in [(n, e) for n in names for e in engines]:
        # no time budget: a benchmark measures slow frames instead of dropping them
        overrides = setting_overrides(name)
        config = apply_overrides(AnonymizerConfig(), {**overrides, "providers": providers,
                                                      "threads": args.threads,
                                                      "engine": engine,
                                                      "detector_budget_ms": 0.0})
        pipeline = Pipeline(config)  # anonymization only; one stream, STREAM
        margins = {"face": config.margin, "plate": config.plate_margin}
        label = name if len(engines) == 1 else \
            f"{name} ({engine_label(engine, config.precision)})"
        row: dict[str, Any] = {"setting": label, "engine": engine, "overrides": overrides}
        if dev:
            coverage = FaceCoverage()
            for it in dev:
                if it.faces is None:
                    continue
                img = cv2.imread(str(it.path), cv2.IMREAD_COLOR)
                if img is None:
                    raise VlmNodeError(f"unreadable labelled image {it.path}")
                pipeline.reset(STREAM)
                pending = pipeline.detect(STREAM, img)  # detections only: no carry-over
                if pending.failure is not None:
                    raise pending.failure[2]
                found = pending.detections
                coverage.add(score_faces(it.faces, it.faces_ignore, found, img.shape[1],
                                         img.shape[0], config.margin, it.file or ""))
            row["faces_dev"] = coverage.to_json()
        if not args.no_labelled and photos:
            totals = {k: KindCounts() for k in KINDS}
            dogs = 0
            for it, img in photos:
                pipeline.reset(STREAM)
                frame = pipeline.anonymize(FrameMeta(STREAM, 0, "labelled"), img.copy())
                h, w = img.shape[:2]
                if "dogs" in (it.file or ""):
                    dogs = len(frame.detections)
                for k, c in score_image(it, frame.detections, w, h,
                                        margins=margins).items():
                    totals[k].add(c)
            row["labelled"] = {k: c.to_json() for k, c in totals.items()}
            row["labelled"]["dogs_redactions"] = dogs
        row["sizes"] = {}
        for size, frames in clips.items():
            pipeline.reset(STREAM)
            stages: dict[str, list[float]] = {k: [] for k in
                                              ("decode", "faces", "persons", "plates", "redact",
                                               "encode", "anonymize", "cpu")}
            totals = {k: KindCounts() for k in KINDS}
            for i, (img, boxes) in enumerate(frames):
                ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
                t0 = time.perf_counter()
                decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
                t1 = time.perf_counter()
                c1 = time.process_time()
                # stamped 10 Hz apart, as a camera: carried regions and the cadence apply
                frame = pipeline.anonymize(FrameMeta(STREAM, (i + 1) * 100_000_000, "frame"),
                                           decoded)
                c2 = time.process_time()
                t2 = time.perf_counter()
                cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
                t3 = time.perf_counter()
                if i < args.warmup:
                    continue
                last = pipeline.stage_ms(STREAM)
                stages["decode"].append((t1 - t0) * 1e3)
                stages["cpu"].append((c2 - c1) * 1e3)  # all threads of this process
                stages["anonymize"].append((t2 - t1) * 1e3)
                stages["encode"].append((t3 - t2) * 1e3)
                for stage in DETECTOR_STAGES:  # 0 when a stage is off, so the columns line up
                    stages[stage].append(last.get(f"{stage}_ms", 0.0))
                for key, ms in last.items():  # any other stage the pipeline runs
                    stage = key.removesuffix("_ms")
                    if stage not in DETECTOR_STAGES:
                        stages.setdefault(stage, []).append(ms)
                if boxes:
                    for k, c in score_image(boxes, frame.detections, *size, margins=margins,
                                            ignore_below=10).items():
                        totals[k].add(c)
            ms = {k: round(float(np.mean(v)), 1) for k, v in stages.items()}
            p50 = float(np.median(stages["anonymize"]))
            p95 = float(np.percentile(stages["anonymize"], 95))
            e2e = ms["decode"] + ms["anonymize"] + ms["encode"]
            row["sizes"][f"{size[0]}x{size[1]}"] = {
                "ms_mean": ms, "anonymize_ms_p50": round(p50, 1),
                "anonymize_ms_p95": round(p95, 1),
                "cpu_ms_per_frame": round(float(np.mean(stages["cpu"])), 1),
                "fps": round(1000.0 / ms["anonymize"], 2), "fps_end_to_end": round(1000 / e2e, 2),
                "frames": {k: c.to_json() for k, c in totals.items()}}
        pipeline.close()
        results.append(row)
        print(_row_text(row), flush=True)
    report = {"machine": machine(), "providers": list(providers), "threads": args.threads,
              "frames_per_size": args.frames, "results": results}
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    table = markdown(report)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n", encoding="utf-8")
    return 0


def _fmt(v: Any) -> str:
    return "–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _row_text(row: dict[str, Any]) -> str:
    parts = [row["setting"]]
    for size, r in row["sizes"].items():
        parts.append(f"{size}: {r['fps']} fps ({r['ms_mean']['anonymize']} ms)")
    return "  ".join(parts)


def markdown(report: dict[str, Any]) -> str:
    """The comparison as a Markdown table (one row per setting and size)."""
    m = report["machine"]
    ov = (f"; OpenVINO {m['openvino'].split('-')[0]} ({m.get('openvino_precision')})"
          if m.get("openvino") else "")
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores; onnxruntime {m['onnxruntime']} "
             f"({', '.join(report['providers'])}){ov}; OpenCV {m['opencv']}; "
             f"{report['frames_per_size']} frames per size.", "",
             "| setting | frame | decode | faces | persons | plates | redact | encode | anonymize "
             "ms (p50 / p95) | CPU ms | fps | fps incl. codec | face R / P (photos) | "
             "plate R / P (photos) | "
             "dogs.jpg redactions | face R (frames) | plate R (frames) | dev faces covered "
             "< 20 / 20-31 / 32-63 / >= 64 | dev >= 20 / >= 32 px | dev collateral |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["results"]:
        lab = row.get("labelled", {})
        dev = row.get("faces_dev")
        if dev:
            buckets = " / ".join(_fmt(b["recall"]) for b in dev["buckets"].values())
            ge = f"{_fmt(dev['recall_ge20'])} / {_fmt(dev['recall_ge32'])}"
            coll = "–" if dev["collateral"] is None else f"{100 * dev['collateral']:.2f} %"
        else:
            buckets = ge = coll = "–"
        for size, r in row["sizes"].items():
            ms = r["ms_mean"]
            fr = r["frames"]
            lines.append(
                f"| {row['setting']} | {size} | {ms['decode']} | {ms['faces']} | "
                f"{ms['persons']} | {ms['plates']} | {ms['redact']} | {ms['encode']} | "
                f"{ms['anonymize']} "
                f"({r['anonymize_ms_p50']} / {r.get('anonymize_ms_p95', '–')}) | "
                f"{r.get('cpu_ms_per_frame', '–')} | {r['fps']} | {r['fps_end_to_end']} | "
                f"{_fmt(lab.get('face', {}).get('recall'))} / "
                f"{_fmt(lab.get('face', {}).get('precision'))} | "
                f"{_fmt(lab.get('plate', {}).get('recall'))} / "
                f"{_fmt(lab.get('plate', {}).get('precision'))} | "
                f"{lab.get('dogs_redactions', '–')} | "
                f"{_fmt(fr.get('face', {}).get('recall'))} | "
                f"{_fmt(fr.get('plate', {}).get('recall'))} | {buckets} | {ge} | {coll} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark without the `vlm-node bench` parent (python -m ...)."""
    parser = argparse.ArgumentParser(prog="vlm-node bench")
    sub = parser.add_subparsers(dest="bench", required=True)
    add_anonymize_parser(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
