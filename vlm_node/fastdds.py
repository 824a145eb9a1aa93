"""The shipped Fast DDS profile for large images, applied unless the user chose their own.

With Fast DDS defaults, best-effort images between two processes were not delivered at all on
this project's machines (README, Node overhead): UDP fragments of multi-megabyte samples are
lost and best-effort never repairs them. A shared-memory transport whose segment holds a whole
1080p frame delivers them, with UDPv4 kept for other hosts. Fast DDS reads the profile when
the first participant is created, so `apply()` must run before `rclpy.init()`.
"""
from __future__ import annotations

import os
from pathlib import Path

PROFILE = Path(__file__).resolve().parent / "assets" / "fastdds_large_images.xml"
ENV = "FASTDDS_DEFAULT_PROFILES_FILE"


def apply(environ: dict[str, str] | None = None) -> str | None:
    """Point Fast DDS at the shipped profile unless a profile or builtin-transport choice is set.

    Returns the profile path applied, or None when the user's own setting was kept.
    """
    env = os.environ if environ is None else environ
    if env.get(ENV) or env.get("FASTRTPS_DEFAULT_PROFILES_FILE") or \
            env.get("FASTDDS_BUILTIN_TRANSPORTS") or env.get("VLM_NODE_NO_FASTDDS_PROFILE"):
        return None
    env[ENV] = str(PROFILE)
    return str(PROFILE)
