"""`vlm-node bench analyze`: analysis throughput per backend and the multi-camera batching gain
(see `vlm_node.tools.bench_analyze`). The `bench` parent command calls `add_analyze_parser`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlm_node.tools.bench_analyze import ARCHS, SIZES, bench_analyze
from vlm_node.analysis.config import DEVICES, DTYPES
from vlm_node.cli.args import add_output, frame_size


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("camera counts must be >= 1")
    return values


def _names(choices: tuple[str, ...]):
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [n for n in names if n not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(choices)}")
        return names
    return parse


def add_analyze_parser(bench_sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = bench_sub.add_parser(
        "analyze", help="analysis backends: ms/frame, frames/s, batched vs one-at-a-time",
        description="Random-weight models of real architectures (SmolVLM-256M, Qwen2.5-VL-3B), "
                    "fixed output length, rendered and anonymized road scenes. Prints a table "
                    "and optionally writes the figures as JSON.")
    p.add_argument("--archs", type=_names(ARCHS), default=ARCHS,
                   help=f"comma-separated, from {', '.join(ARCHS)}")
    p.add_argument("--backends", type=_names(("transformers", "ocr", "clip")),
                   default=("transformers", "ocr", "clip"))
    p.add_argument("--cameras", type=_ints, default=(1, 2, 4, 8),
                   help="camera counts per batch (default 1,2,4,8)")
    p.add_argument("--iterations", type=int, default=1, help="timed runs (median is reported)")
    p.add_argument("--max-new-tokens", type=int, default=32,
                   help="generated tokens per frame (min = max: fixed length)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--dtype", choices=DTYPES, default="auto")
    p.add_argument("--size", choices=SIZES, default="reduced",
                   help="full = published layer counts; reduced = fewer layers (CPU)")
    p.add_argument("--frame-size", type=frame_size, default=(640, 480), metavar="WxH")
    p.add_argument("--image-longest-edge", type=int, default=512,
                   help="SmolVLM processor size.longest_edge (0 = model default 2048)")
    add_output(p, "JSON", "also write the figures here", old="--json-out")
    p.set_defaults(func=_run)
    return p


register_bench = add_analyze_parser


def _run(args: argparse.Namespace) -> int:
    figures = bench_analyze(archs=args.archs, cameras=args.cameras, iterations=args.iterations,
                            max_new_tokens=args.max_new_tokens, device=args.device,
                            dtype=args.dtype, size=args.size, frame_size=args.frame_size,
                            image_longest_edge=args.image_longest_edge, backends=args.backends)
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    return 0
