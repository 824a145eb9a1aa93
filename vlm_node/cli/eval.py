"""`vlm-node eval BAG --labels L`: how well the system reads signs and anonymizes, and how fast,
on a recorded bag; `vlm-node eval --compare a.json b.json`: two such runs side by side.

Offline (default) the bag is replayed deterministically through the core pipeline, every frame
analysed; `--live` plays it into the real node process over DDS at the recorded rate, where the
node skips frames it cannot keep up with (reported as not analysed). Metrics and their
definitions: `vlm_node.evaluation.metrics` and docs/evaluation.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from vlm_node.analysis.config import BACKENDS
from vlm_node.cli.args import add_config, add_frames_in_flight, add_output, frames_in_flight
from vlm_node.errors import ConfigError

DEFAULT_OUT = "eval_output"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate sign reading, anonymization and latency on a labelled bag",
        description="Replay BAG's image messages through anonymization, sign reading and "
                    "tracking (offline and deterministic, or --live through the real node over "
                    "DDS), match the results to --labels by topic and header stamp, and write "
                    "report.md, report.json and PNG plots to --output. With --compare, print the "
                    "key figures of two report.json files side by side with their deltas.")
    p.add_argument("bag", nargs="?", metavar="BAG",
                   help="rosbag2 directory (MCAP or sqlite3) or a bare .mcap/.db3 file")
    p.add_argument("--labels", type=Path, metavar="labels.json",
                   help="labels with `topic` and `stamp_ns` per image entry (docs/labels.md; "
                        "default: the labels.json inside the BAG directory, where vlm-node "
                        "sample-bag writes it)")
    p.add_argument("--backend", choices=BACKENDS, help="analysis backend (default: the config's)")
    p.add_argument("--live", action="store_true",
                   help="play the bag into the real node process over DDS (default: offline "
                        "replay through the core pipeline)")
    add_output(p, "DIR", f"output directory (default {DEFAULT_OUT})", default=DEFAULT_OUT,
               old="--out")
    add_config(p)
    p.add_argument("--rate", type=float, metavar="X",
                   help="--live: play at X times the recorded rate (default 1)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="--live: seconds to wait for the node to start and for late results "
                        "(default 120)")
    p.add_argument("--domain-id", type=int, metavar="N",
                   help="--live: ROS_DOMAIN_ID (default: yours if exported, else random)")
    add_frames_in_flight(p, "released, analysed and tracked", "; offline only")
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                   help="compare two report.json files instead of evaluating")
    p.set_defaults(func=run)


def bag_labels(bag: Path) -> Path:
    """The labels.json a bag directory holds (`vlm-node sample-bag` writes it beside
    metadata.yaml): the default of --labels."""
    found = bag / "labels.json"
    if bag.is_dir() and found.is_file():
        return found
    raise ConfigError(f"--labels is required: results are scored against the labels of the "
                      f"bag's frames, and {bag} holds no labels.json")


def _check_args(args: argparse.Namespace) -> None:
    if args.compare:
        if args.bag or args.labels or args.live:
            raise ConfigError("--compare takes two report.json files and no BAG, --labels or "
                              "--live")
        return
    if not args.bag:
        raise ConfigError("BAG is required (or --compare A.json B.json)")
    if args.labels is None:
        args.labels = bag_labels(Path(args.bag))
    if not args.live:
        for opt, value in (("--rate", args.rate), ("--domain-id", args.domain_id)):
            if value is not None:
                raise ConfigError(f"{opt} applies to --live only (the offline replay analyses "
                                  "every frame as fast as it can)")
    elif args.frames_in_flight is not None:
        raise ConfigError("--frames-in-flight applies to the offline replay only (the live "
                          "node takes one frame per camera at a time)")
    frames_in_flight(args)
    if args.rate is not None and not args.rate > 0:
        raise ConfigError(f"--rate must be positive, got {args.rate}")
    if not args.timeout > 0:
        raise ConfigError(f"--timeout must be positive, got {args.timeout}")


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    if args.compare:
        return _compare(*args.compare)
    from vlm_node.bags import io
    from vlm_node.config import resolve_params
    from vlm_node.evaluation.configure import camera_names, image_topics, node_config_for_bag
    from vlm_node.evaluation.labels import load_bag_labels

    labels = load_bag_labels(args.labels)
    with io.open_bag(args.bag) as bag:
        topics = image_topics(bag)
    labelled_topics = {topic for topic, _ in labels}
    if not labelled_topics & set(topics):
        raise ConfigError(f"--labels {args.labels} labels none of the bag's image topics "
                          f"({', '.join(topics)}); labelled: {', '.join(sorted(labelled_topics))}")
    params = resolve_params(args.config,
                            {"analysis.backend": args.backend} if args.backend else None)
    cameras = camera_names(list(topics), params)
    compressed = {t for t, m in topics.items() if m == io.COMPRESSED_IMAGE}
    config = node_config_for_bag(params, cameras, compressed)
    if args.live:
        from vlm_node.evaluation.live import run_live
        output = run_live(args.bag, cameras, topics, args.config, args.backend,
                          config.results_topic, args.rate or 1.0, args.timeout,
                          domain_id=args.domain_id)
        Path(args.output).mkdir(parents=True, exist_ok=True)
        (Path(args.output) / "node.log").write_text(output.node_log, encoding="utf-8")
    else:
        from vlm_node.anonymize.config import for_frames_in_flight, frames_in_flight_for
        from vlm_node.evaluation.replay import replay

        in_flight = frames_in_flight_for(config.anonymizer, args.frames_in_flight)
        # the report records the settings the replay ran with
        config = dataclasses.replace(
            config, anonymizer=for_frames_in_flight(config.anonymizer, in_flight))
        drawn = FrameDrawer(Path(args.output))
        output = replay(args.bag, config, cameras, frames_in_flight=in_flight,
                        on_frame=drawn)
        return _finish(args, output, labels, config, cameras, drawn)
    return _finish(args, output, labels, config, cameras)


class FrameDrawer:
    """Writes every analysed frame, annotated (`vlm_node.annotate`, on the anonymized frame),
    to `<output>/frames/` for index.html, and keeps what the page's frame table shows."""

    def __init__(self, out: Path) -> None:
        self.dir = out / "frames"
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in self.dir.glob("*.jpg"):
            old.unlink()
        self.frames: dict[int, tuple[str, str]] = {}  # record index -> (image, scene summary)

    def __call__(self, rec: Any, frame: Any, analysis: Any) -> None:
        import cv2

        from vlm_node.annotate import annotate

        name = f"frames/{rec.index:05d}_{rec.camera}.jpg"
        if not cv2.imwrite(str(self.dir.parent / name), annotate(frame, analysis).image,
                           [cv2.IMWRITE_JPEG_QUALITY, 88]):
            raise OSError(f"could not write {self.dir.parent / name}")
        scene = analysis.scene
        self.frames[rec.index] = (name, f"[{scene.source}] {scene.summary}" if scene else "-")


def _finish(args: argparse.Namespace, output: Any, labels: dict[Any, Any], config: Any,
            cameras: dict[str, str], drawn: FrameDrawer | None = None) -> int:
    """Metrics, report files, plots and the summary on stdout."""
    from vlm_node.evaluation.metrics import evaluate, recorded_seconds
    from vlm_node.evaluation.plots import write_plots
    from vlm_node.evaluation.records import RunInfo
    from vlm_node.evaluation.report import (KEY_FIGURES, build_report, machine_description,
                                            write_report)

    records = output.records
    done = [r for r in records if r.analysed]
    backends = Counter(r.backend for r in done)
    info = RunInfo(mode="live" if args.live else "offline", bag=str(args.bag),
                   labels=str(args.labels),
                   backend=backends.most_common(1)[0][0] if backends else "",
                   configured_backend=config.analysis.backend,
                   degraded_reason=next((r.degraded_reason for r in done if r.degraded), ""),
                   wall_s=output.wall_s, load_s=output.load_s,
                   recorded_s=recorded_seconds(output.log_times_ns),
                   playback_s=output.playback_s,
                   rate=args.rate or 1.0, cameras={c: t for t, c in cameras.items()},
                   machine=machine_description(), config=dataclasses.asdict(config))
    margins = {"face": config.anonymizer.margin, "plate": config.anonymizer.plate_margin}
    evaluation = evaluate(records, labels, info, margins)
    report = build_report(evaluation)
    out = Path(args.output)
    report["plots"] = write_plots(report, out)
    json_path, md_path = write_report(out, report)
    page = _write_page(out, report, records, drawn, info.mode)
    start = "model loading" if info.mode == "offline" else "node start-up"
    print(f"vlm-node eval: {info.mode}, {len(records)} image messages, {len(done)} analysed "
          f"(backend {info.backend or 'none'}); {start} {info.load_s:.1f} s")
    for key, value in report["key_figures"].items():
        label, unit, _ = KEY_FIGURES[key]
        shown = "n/a" if value is None else f"{value:g}" if isinstance(value, float) else value
        print(f"  {label:<28} {shown}{' ' + unit if unit and value is not None else ''}")
    print(f"wrote {md_path}, {json_path}, {page.name} and {len(report['plots'])} plots to "
          f"{out}/"
          + (" (and the node's log, node.log)" if args.live else ""))
    if not done:
        print("vlm-node eval: no frame was analysed", file=sys.stderr)
        return 1
    return 0


def _write_page(out: Path, report: dict[str, Any], records: list[Any],
                drawn: FrameDrawer | None, mode: str) -> Path:
    """index.html beside report.json: key figures, the per-frame table, the plots and (offline)
    every analysed frame annotated."""
    from vlm_node.evaluation.report import KEY_FIGURES
    from vlm_node.html_report import Page, Picture, Table, write_page

    figures = []
    for key, value in report["key_figures"].items():
        label, unit, _ = KEY_FIGURES[key]
        shown = "n/a" if value is None else f"{value:g}" if isinstance(value, float) else value
        figures.append((label, f"{shown}{' ' + unit if unit and value is not None else ''}"))
    frames = drawn.frames if drawn is not None else {}
    rows = []
    for r in records:
        signs = ", ".join(s.sign_class + (f" {s.value:g} {s.unit}".rstrip()
                                          if s.value is not None else "") for s in r.readings)
        rows.append((r.index, r.camera, r.stamp_ns, r.status, signs or "-", r.faces, r.plates,
                     "-" if r.latency_ms is None else f"{r.latency_ms:.0f} ms",
                     frames.get(r.index, ("", "-"))[1]))
    table = Table("Frames", ("#", "camera", "stamp", "status", "signs read", "faces", "plates",
                             "latency", "scene"), rows)
    pictures = [Picture(name, f"#{i} {caption}") for i, (name, caption) in frames.items()]
    notes = ["Key figures, plots and tables as in report.md; definitions in docs/evaluation.md."]
    if mode == "live":
        notes.append("Live run: frames are not drawn here (the node's annotated topic is not "
                     "recorded); run offline for pictures.")
    plots = [Picture(p) for p in report.get("plots", [])]
    return write_page(out, Page(f"vlm-node eval ({mode})", notes,
                                [Table("Key figures", ("figure", "value"), figures), table],
                                pictures, plots))


def _compare(path_a: str, path_b: str) -> int:
    from vlm_node.evaluation.report import compare, load_report

    a, b = load_report(path_a), load_report(path_b)
    print(f"a = {path_a}\nb = {path_b}\n")
    print(compare(a, b), end="")
    return 0
