"""`pipeline.run_in_flight`, the one frames-in-flight runner of the offline tools: results in
input order, at most `depth` detections at once, pass-through items in their place, memory
bounded in bytes, errors where they belong, nothing left running after an early exit."""
import threading
import time

import pytest

from vlm_node.pipeline import run_in_flight


def ordered_prefetch(items, stage, depth):
    for _, result in run_in_flight(items, stage, depth):
        yield result


class Probe:
    """A stage that sleeps longer for earlier items (so they would finish out of order) and
    records how many run at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.started: list[int] = []

    def __call__(self, item: int) -> int:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.started.append(item)
        time.sleep(0.02 * (5 - item % 5))
        with self.lock:
            self.running -= 1
        if item == 7:
            raise ValueError("item 7 is bad")
        return item * 10


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_results_come_in_order_with_at_most_depth_running(depth):
    probe = Probe()
    got = []
    with pytest.raises(ValueError, match="item 7"):
        for result in ordered_prefetch(range(12), probe, depth):
            got.append(result)
    assert got == [0, 10, 20, 30, 40, 50, 60]  # everything before the failing item, in order
    # never more than depth at once, and (with a pool) really overlapping
    assert probe.most <= depth and (probe.most > 1) == (depth > 1)
    # the read-ahead is bounded: nothing far beyond the failing item was started
    assert max(probe.started) <= 7 + depth - 1


def test_leaving_early_waits_for_started_stages_and_cancels_the_rest():
    probe = Probe()
    for result in ordered_prefetch(range(100), probe, 3):
        if result == 20:
            break
    assert probe.running == 0  # nothing still running in the background
    assert len(probe.started) <= 5


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        list(ordered_prefetch([1], lambda x: x, 0))


def test_pass_through_items_keep_their_place_and_bytes_bound_the_wait():
    """Items that need no detection (a bag's non-image messages) come out between the
    detected ones in input order; once more than max_bytes wait behind a detection, the
    runner waits for it instead of reading on."""
    for max_bytes, read_before_first in ((250, 2), (None, 6)):
        read = []

        def items():
            for i in range(8):
                read.append(i)
                yield i

        def detect(i):
            if i == 0:
                time.sleep(0.3)  # the oldest detection is slow
            return i * 10

        out = []
        for item, result in run_in_flight(items(), detect, 4, detects=lambda i: i % 2 == 0,
                                          size=lambda i: 100, max_bytes=max_bytes):
            if item == 0:
                # bounded: 3 items (300 bytes) queued behind item 0 make the runner wait for
                # it; unbounded, it read on while 4 detections were in flight
                assert max(read) == read_before_first
            out.append((item, result))
        assert out == [(0, 0), (1, None), (2, 20), (3, None), (4, 40), (5, None), (6, 60),
                       (7, None)]
