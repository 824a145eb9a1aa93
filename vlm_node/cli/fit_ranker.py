"""`vlm-node fit-ranker`: fit the proposal ranker on the search's proposals of labelled photos.

The work is in `vlm_node.tools.fit_ranker`; this module only registers the command.
"""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from vlm_node.tools import fit_ranker

    p = sub.add_parser("fit-ranker",
                       help="fit the proposal ranker (which colour proposals the sign "
                            "classifier sees first)",
                       description=" ".join(fit_ranker.__doc__.split("\n\n")[:2]))
    fit_ranker.add_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from vlm_node.tools import fit_ranker

    return fit_ranker.run(args)
