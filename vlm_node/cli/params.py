"""`vlm-node params`: every node parameter with its type, default, range and description.

Generated from the configuration dataclasses (the one place parameters are defined), so this
listing, the node's ParameterDescriptors and the README table cannot disagree.
"""
from __future__ import annotations

import argparse
import typing
from typing import Any, Iterator

from vlm_node.config import CameraConfig, NodeConfig
from vlm_node.params import info_of, walk


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="list the node's parameters with defaults and meaning",
                       description="List every parameter of the vlm_node node: name, type, "
                                   "default, allowed range/values, whether it can change while "
                                   "the node runs, and what it does.")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--filter", metavar="TEXT", default="",
                   help="only parameters whose name contains TEXT (e.g. anonymizer.)")
    p.set_defaults(func=run)


def _type_name(owner: Any, name: str) -> str:
    hint = typing.get_type_hints(type(owner))[name]
    args = typing.get_args(hint)
    return f"{args[0].__name__}[]" if args and typing.get_origin(hint) in (tuple, list) \
        else getattr(hint, "__name__", str(hint))


def parameters() -> Iterator[dict[str, Any]]:
    """One dict per declared parameter, in declaration order (camera ones as camera.<name>.*)."""
    trees: list[tuple[Any, str]] = [(NodeConfig(), ""), (CameraConfig(), "camera.<name>.")]
    for obj, prefix in trees:
        for name, f, value, owner in walk(obj, prefix):
            info = info_of(f)
            if info is None:
                continue
            limits = ""
            if info.choices is not None:
                limits = " | ".join(str(c) for c in info.choices)
            elif info.min is not None or info.max is not None:
                low = "" if info.min is None else info.min
                high = "" if info.max is None else info.max
                limits = f"{low}..{high}"
            yield {"name": name, "type": _type_name(owner, f.name),
                   "default": list(value) if isinstance(value, tuple) else value,
                   "limits": limits, "dynamic": info.dynamic, "description": info.description}


def run(args: argparse.Namespace) -> int:
    rows = [p for p in parameters() if args.filter in p["name"]]
    if args.markdown:
        print("| parameter | type | default | range / values | run time | description |")
        print("|---|---|---|---|---|---|")
        for p in rows:
            desc = p["description"].replace("|", "\\|")
            print(f"| `{p['name']}` | {p['type']} | `{p['default']!r}` | {p['limits']} | "
                  f"{'yes' if p['dynamic'] else ''} | {desc} |")
        return 0
    for p in rows:
        extra = f"  [{p['limits']}]" if p["limits"] else ""
        dyn = "  (changeable at run time)" if p["dynamic"] else ""
        print(f"{p['name']} ({p['type']}) = {p['default']!r}{extra}{dyn}\n    {p['description']}")
    return 0
