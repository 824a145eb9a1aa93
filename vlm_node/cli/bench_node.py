"""`vlm-node bench node`: the node's image-path latency and CPU against an rclpy echo node."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlm_node.cli.args import frame_size, split_variant


def add_node_parser(bench_sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = bench_sub.add_parser(
        "node", help="node latency p50/p95/p99 and CPU per frame vs an rclpy echo node",
        description="Play the same frames through a bare rclpy echo node and through vlm_node "
                    "(analysis off; detectors off unless --anonymize), each in its own process "
                    "over Fast DDS, and print publish->receive latency percentiles, frames "
                    "received and CPU per frame. Runs in a ROS domain of its own.")
    p.add_argument("--size", type=frame_size, default=(1920, 1080), metavar="WxH",
                   help="frame size (1920x1080)")
    p.add_argument("--frames", type=int, default=100, help="measured frames per target (100)")
    p.add_argument("--rate", type=float, default=10.0, help="frames per second (10)")
    p.add_argument("--anonymize", action="store_true",
                   help="also measure vlm_node with the default anonymizer (faces, plates)")
    p.add_argument("--frames-dir", metavar="DIR",
                   help="play the photos in DIR (each letterboxed to --size, sent in turn) "
                        "instead of one rendered road scene: busy frames (crowds, signs, text)")
    p.add_argument("--max-photos", type=int, default=0, metavar="N",
                   help="use at most N photos of --frames-dir (0 = all)")
    p.add_argument("--hold", type=int, default=5, metavar="N",
                   help="send each photo of --frames-dir N frames in a row, as a scene stays "
                        "in view on video (default 5; carried regions then matter)")
    p.add_argument("--motion", choices=("still", "drive"), default="still",
                   help="how a photo stays in view for its --hold frames: still (the same "
                        "pixels; each new photo is a scene cut) or drive (zooming in 2 %% a "
                        "frame about the road ahead, as a moving camera sees a scene grow: no "
                        "two frames alike). Default still")
    p.add_argument("--warmup", type=int, default=10, metavar="N",
                   help="frames played before measuring, the start of the measured sequence "
                        "(default 10). OpenVINO prepares each new input shape of a model the "
                        "first time it sees it (20-30 ms more per call), so a short warm-up "
                        "measures a node in its first minutes, when most regions and text "
                        "lines of a new scene are new shapes; N >= --frames plays the measured "
                        "frames once first, as a node that has run for a while has seen them")
    p.add_argument("--analysis", action="store_true",
                   help="the anonymizing targets also run the default analysis (as on a "
                        "vehicle)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:P=V[,P=V...]",
                   help="one more anonymizing target with these node parameters, e.g. "
                        "'full plate pass:anonymizer.plate_scan_tiles=1' (repeatable)")
    p.add_argument("--no-baselines", action="store_true",
                   help="skip the echo and detectors-off targets")
    p.add_argument("--output", metavar="JSON", help="write the figures as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from vlm_node.tools.bench_node import bench_node

    width, height = args.size
    if args.frames < 1 or args.rate <= 0:
        raise SystemExit("vlm-node bench node: error: --frames and --rate must be positive")
    if args.warmup < 1:
        raise SystemExit("vlm-node bench node: error: --warmup must be at least 1 (the first "
                         "frame waits for the node's subscription)")
    variants = []
    for spec in args.variant:
        try:
            name, pairs = split_variant(spec)
        except ValueError as exc:
            raise SystemExit(f"vlm-node bench node: error: {exc}") from exc
        variants.append((name, [f"{key}:={value}" for key, value in pairs]))
    figures = bench_node(width, height, args.frames, args.rate, args.anonymize,
                         frames_dir=args.frames_dir, max_photos=args.max_photos,
                         analysis=args.analysis, variants=variants,
                         baselines=not args.no_baselines, hold=max(1, args.hold),
                         motion=args.motion, warmup=args.warmup)
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    return 0
