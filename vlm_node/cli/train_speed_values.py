"""`vlm-node train-speed-values`: train the speed-value reader and export it to ONNX.

The work is in `vlm_node.tools.train_speed_values` (torch is imported only when this command
runs); this module only registers the command.
"""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from vlm_node.tools import train_speed_values

    p = sub.add_parser("train-speed-values",
                       help="train the speed-value reader (GTSRB + TT100K crops), export ONNX",
                       description=train_speed_values.__doc__.split("\n\n")[0])
    train_speed_values.add_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from vlm_node.tools import train_speed_values

    return train_speed_values.run(args)
