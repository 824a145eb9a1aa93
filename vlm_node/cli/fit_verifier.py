"""`vlm-node fit-verifier`: fit the sign verifier on the runtime's readings of labelled photos.

The work is in `vlm_node.tools.fit_verifier`; this module only registers the command.
"""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from vlm_node.tools import fit_verifier

    p = sub.add_parser("fit-verifier",
                       help="fit the sign verifier (which classifier readings are real signs)",
                       description=fit_verifier.__doc__.split("\n\n")[0] + " " +
                       fit_verifier.__doc__.split("\n\n")[1])
    fit_verifier.add_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from vlm_node.tools import fit_verifier

    return fit_verifier.run(args)
