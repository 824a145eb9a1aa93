"""Where the `vlm_node_interfaces` .msg definitions are, and their text.

The .msg files are the single source of the message layout and of the controlled vocabularies:
`vlm_node.vocab` reads its constants from them and the bag tools register the custom types from
them, so nothing is written down twice. This module needs no ROS environment: it finds the files
in an installed prefix (venv or colcon install) or, in a source checkout, in `ros2_ws/src`.
"""
from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = "vlm_node_interfaces"
MESSAGES = ("TrafficSign", "DetectedObject", "SceneDescription", "SceneUnderstanding")


def _candidate_dirs() -> list[Path]:
    prefixes = [Path(sys.prefix)]
    prefixes += [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    dirs = [p / "share" / PACKAGE / "msg" for p in prefixes]
    dirs.append(Path(__file__).resolve().parent.parent / "ros2_ws" / "src" / PACKAGE / "msg")
    return dirs


@lru_cache(maxsize=1)
def msg_dir() -> Path:
    """The first directory that holds all of the package's .msg files."""
    for d in _candidate_dirs():
        if all((d / f"{name}.msg").is_file() for name in MESSAGES):
            return d
    searched = "\n  ".join(str(d) for d in _candidate_dirs())
    raise FileNotFoundError(
        f"{PACKAGE} .msg files not found; searched:\n  {searched}\n"
        "Run `make setup`, or source the colcon workspace that built vlm_node_interfaces.")


@lru_cache(maxsize=None)
def msg_text(name: str) -> str:
    """Text of `vlm_node_interfaces/msg/<name>.msg`."""
    if name not in MESSAGES:
        raise KeyError(f"{PACKAGE} has no message {name!r}; it has {', '.join(MESSAGES)}")
    return (msg_dir() / f"{name}.msg").read_text(encoding="utf-8")


def msg_constants(name: str) -> dict[str, str]:
    """`NAME -> value` for every `string NAME=value` constant of a message, in file order."""
    constants: dict[str, str] = {}
    for raw in msg_text(name).splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("string ") or "=" not in line:
            continue
        decl, value = line[len("string "):].split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        constants[decl.strip()] = value
    return constants
