"""`vlm-node`: the command-line entry point. Each subcommand lives in its own module under
`vlm_node.cli` and exposes `register(subparsers)`, which adds its parser and sets `func`."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from vlm_node import __version__, malloc_tuning
from vlm_node.errors import VlmNodeError

# Subcommand modules, in the order `--help` lists them.
SUBCOMMANDS = ("demo", "run", "anonymize", "analyze", "sample_bag", "anonymize_bag", "eval",
               "import_labels", "sign_scenes", "bench", "params", "train_signs",
               "train_speed_values", "fit_verifier", "fit_ranker", "face_identity")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlm-node",
        description="Anonymize camera frames (faces, licence plates), read traffic signs and "
                    "describe scenes; run the ROS 2 node, its demo and benchmarks.",
        epilog="Run `vlm-node COMMAND --help` for a command's options.")
    parser.add_argument("--version", action="version", version=f"vlm-node {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"vlm_node.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # ROS arguments (`--ros-args ... [--]`) belong to rclpy; subcommands that start a node pass
    # them on, so split them off before argparse sees them.
    ros_args: list[str] = []
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        end = argv.index("--", i) if "--" in argv[i:] else len(argv)
        ros_args, argv = argv[i:end], argv[:i] + argv[end + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    # every command handles frame-sized buffers (see vlm_node.malloc_tuning)
    malloc_tuning.keep_large_buffers()
    args.ros_args = ros_args
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (VlmNodeError, FileNotFoundError) as exc:
        print(f"vlm-node {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
