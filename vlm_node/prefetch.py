"""Ordered prefetch: run a stateless first stage on the next few items of a sequence on a
thread pool while the caller consumes results strictly in order.

The offline tools anonymize recordings frame by frame, and a frame's anonymization splits into
detection (no state: `Anonymizer.detect_frame`) and release (carry-over, in frame order). One
frame's face stage finishes long before its plate stage and leaves a core idle; detecting the
next frames meanwhile keeps the cores busy (onnxruntime and OpenCV release the GIL) without
changing any result, because the caller still sees one result after the other, in order.
"""
from __future__ import annotations

import concurrent.futures as cf
from collections import deque
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_prefetch(items: Iterable[T], stage: Callable[[T], R], depth: int,
                     name: str = "prefetch") -> Iterator[R]:
    """`stage(item)` for each item, yielded in the items' order, with up to `depth` of them
    running at once (depth 1: one after the other in the calling thread, no pool). An
    exception of `stage` is raised here when its result is due. Leaving the loop early
    cancels what has not started and waits for what has."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    if depth == 1:
        for item in items:
            yield stage(item)
        return
    pool = cf.ThreadPoolExecutor(depth, thread_name_prefix=name)
    queue: deque[cf.Future[R]] = deque()
    try:
        for item in items:
            queue.append(pool.submit(stage, item))
            if len(queue) >= depth:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
