"""`vlm-node run`: start the node with config/default.yaml (plus any ROS arguments)."""
from __future__ import annotations

import argparse

from vlm_node.cli.args import add_config
from vlm_node.config import config_sources


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="start the ROS 2 node (same as `ros2 run vlm_node vlm_node`)",
        description="Start the vlm_node ROS 2 node. Parameters come from config/default.yaml, "
                    "then --config, then ROS arguments, e.g. "
                    "`vlm-node run --ros-args -p analysis.backend:=ocr -r __ns:=/car1`.")
    add_config(p)
    p.add_argument("--no-default-config", action="store_true",
                   help="do not load config/default.yaml first")
    p.set_defaults(func=_run)


def ros_arguments(args: argparse.Namespace) -> list[str]:
    """Parameter files first (default, then --config), then the user's own ROS arguments, so
    later sources override earlier ones."""
    extra = list(args.ros_args[1:]) if args.ros_args else []
    out = ["--ros-args"]
    for f in config_sources(args.config, default_file=not args.no_default_config):
        out += ["--params-file", str(f)]
    return out + extra


def _run(args: argparse.Namespace) -> int:
    from vlm_node.ros.node_main import main as node_main
    return node_main(["vlm-node", *ros_arguments(args)])
