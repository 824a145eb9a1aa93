"""Where installed resources live: the package's `config/` and `launch/` directories are in
`share/vlm_node` of a colcon/ament install, or at the repository root in a source checkout."""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ASSETS = PACKAGE_DIR / "assets"


def share_dir() -> Path:
    """The directory holding `config/` and `launch/`."""
    repo = PACKAGE_DIR.parent
    if (repo / "package.xml").is_file() and (repo / "config").is_dir():
        return repo
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for prefix in [*prefixes, sys.prefix]:
        candidate = Path(prefix) / "share" / "vlm_node"
        if (candidate / "config").is_dir():
            return candidate
    raise FileNotFoundError("vlm_node's share directory (config/, launch/) was not found; "
                            "source your ROS workspace or run from the repository")


def cache_dir(name: str) -> Path:
    """`name` under the user's cache directory ($XDG_CACHE_HOME, else ~/.cache) /vlm_node:
    files the package can always make again (compiled models), never data."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vlm_node" / name


def config_file(name: str = "default.yaml") -> Path:
    path = share_dir() / "config" / name
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    return path
