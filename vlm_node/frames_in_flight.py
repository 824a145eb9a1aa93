"""Frames of one camera in detection at once, released in arrival order: the push-based
counterpart of `pipeline.run_in_flight` for the node, whose frames arrive by callback.

Why: on 2 cores one 1080p frame does not keep both busy from start to end (its face stage
ends before its plate stage), so one frame at a time capped the anonymizer at ~9-11 busy
frames a second where the CPU allowed ~12 (docs/anonymizer.md, "Two frames in flight"). With
`depth` frames in flight the next frame's detection starts while the last one finishes; the
anonymizer's frame plan still sees them in order (`in_order.Turnstile`), and a release thread
publishes them in order, so a frame is never overtaken by a later one.

Back-pressure: `submit` blocks while `depth` frames are in flight, so the camera callback
returns no faster than frames are anonymized and the subscription's depth-1 queue drops the
older frames, exactly as with one frame at a time.
"""
from __future__ import annotations

import concurrent.futures as cf
import queue
import threading
from typing import Callable, Generic, TypeVar

from vlm_node.in_order import Turnstile

T = TypeVar("T")
R = TypeVar("R")


class FramesInFlight(Generic[T, R]):
    """`detect(item)` on a pool of `depth` threads, in submission order as the anonymizer's
    plan sees it; `release(item, result_or_exception)` on one thread, in submission order.
    `release` must not raise (the node counts and logs its own failures)."""

    def __init__(self, depth: int, detect: Callable[[T], R],
                 release: Callable[[T, R | BaseException], None], name: str = "frames") -> None:
        if depth < 1:
            raise ValueError(f"frames in flight must be at least 1, got {depth}")
        self.depth = depth
        self._detect = detect
        self._release = release
        self._slots = threading.Semaphore(depth)
        self._turnstile = Turnstile()
        self._pool = cf.ThreadPoolExecutor(depth, thread_name_prefix=f"{name}-detect")
        self._queue: queue.Queue[tuple[T, cf.Future[R]] | None] = queue.Queue()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._release_loop, name=f"{name}-release",
                                        daemon=True)
        self._thread.start()

    def submit(self, item: T) -> bool:
        """Start detecting `item` once fewer than `depth` frames are in flight; False when
        closed (the item is not detected)."""
        self._slots.acquire()
        if self._closed.is_set():
            self._slots.release()
            return False
        future = self._pool.submit(self._turnstile.run, self._detect, item,
                                   self._turnstile.take())
        self._queue.put((item, future))
        return True

    def _release_loop(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is None:
                return
            item, future = entry
            try:
                outcome: R | BaseException = future.result()
            except BaseException as exc:  # noqa: BLE001 - handed to release, which counts it
                outcome = exc
            try:
                self._release(item, outcome)
            finally:
                self._slots.release()

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking frames; the frames in flight are still detected and released."""
        self._closed.set()
        self._queue.put(None)
        self._thread.join(timeout)
        self._pool.shutdown(wait=True)
        # a submit blocked on a slot when closing: let it see the closed flag
        for _ in range(self.depth):
            self._slots.release()
