"""OS scheduling priority of threads (Linux): the camera path first, analysis with what is left.

The node republishes every camera frame anonymized at camera rate; analysis works on the
latest frame whenever it is free, so on a small computer it is always busy and takes a core.
Under the kernel's fair scheduler that core is taken from the camera path as often as not: on a
2-core machine a 1080p camera at 10 Hz then misses most of its frames. Lowering the analysis
threads' priority (a nice increment; Linux keeps one per thread) gives the camera threads the
CPU whenever they want it and the analysis the rest, which is what "analysis never delays the
anonymized stream" means on a loaded machine.
"""
from __future__ import annotations

import os
import threading
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")


def lower_priority(tids: Iterable[int], nice: int) -> int:
    """Add `nice` to the nice value of each thread in `tids` (Linux: per thread); returns how
    many were changed. Threads that have gone, and systems without per-thread priorities, are
    skipped: priority is an optimisation, never a reason to fail."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return 0
    done = 0
    for tid in tids:
        try:
            current = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, current + nice))
            done += 1
        except (OSError, PermissionError):
            continue
    return done


def lower_this_thread(nice: int) -> bool:
    """Lower the calling thread's priority by `nice` (threads it starts later inherit it)."""
    return lower_priority([threading.get_native_id()], nice) == 1


def run_lowered(fn: Callable[[], T], nice: int) -> T:
    """`fn()` run in a new thread of priority lowered by `nice`, waited for; its result or
    exception is passed on. Every thread `fn` starts (onnxruntime's intra-op pools, executors)
    inherits the lowered priority, without touching threads started elsewhere meanwhile."""
    if nice <= 0:
        return fn()
    box: dict[str, object] = {}

    def target() -> None:
        lower_this_thread(nice)
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    worker = threading.Thread(target=target, name="lowered_priority", daemon=True)
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]
