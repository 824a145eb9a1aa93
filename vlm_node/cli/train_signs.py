"""`vlm-node train-signs`: train the traffic-sign classifier and export it to ONNX.

The work is in `vlm_node.tools.train_signs` (a tool: torch is imported only when this command
runs, and the runtime never imports it); this module only registers the command.
"""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from vlm_node.tools import train_signs

    p = sub.add_parser("train-signs", help="train the sign classifier (GTSRB) and export ONNX",
                       description=train_signs.__doc__.split("\n\n")[0])
    train_signs.add_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from vlm_node.tools import train_signs

    return train_signs.run(args)
