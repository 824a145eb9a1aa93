"""`vlm-node face-identity`: re-identification and detectability of redacted faces per mode.

The work is in `vlm_node.tools.face_identity` (a measurement tool: it needs dlib, which the
runtime never imports); this module only registers the command.
"""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from vlm_node.tools import face_identity

    p = sub.add_parser("face-identity",
                       help="measure re-identification of blurred / replaced faces (needs dlib)",
                       description=face_identity.__doc__.split("\n\n")[0])
    face_identity.add_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from vlm_node.tools import face_identity

    return face_identity.run(args)
