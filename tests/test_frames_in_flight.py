"""`FramesInFlight`: the node's frames of one camera detected `depth` at a time, released in
arrival order, with back-pressure on the camera callback."""
import threading
import time

import pytest

from vlm_node.frames_in_flight import FramesInFlight
from vlm_node.in_order import turn


def test_frames_are_released_in_order_however_their_detections_finish():
    released, planned = [], []

    def detect(n):
        with turn():  # what the anonymizer's frame plan does: its turn comes in order
            planned.append(n)
        time.sleep(0.05 if n % 2 == 0 else 0.0)  # even frames finish after the next one
        if n == 3:
            raise RuntimeError("detector exploded")
        return n * 10

    done = threading.Event()

    def release(n, outcome):
        released.append((n, outcome if not isinstance(outcome, BaseException) else "failed"))
        if n == 5:
            done.set()

    frames = FramesInFlight(2, detect, release)
    for n in range(6):
        assert frames.submit(n)
    assert done.wait(5)
    frames.close()
    assert planned == list(range(6))
    assert released == [(0, 0), (1, 10), (2, 20), (3, "failed"), (4, 40), (5, 50)]


def test_submit_waits_while_depth_frames_are_in_flight_and_close_drains_them():
    gate = threading.Event()
    released = []
    frames = FramesInFlight(2, lambda n: gate.wait(5) and n, lambda n, r: released.append(n))
    assert frames.submit(0) and frames.submit(1)
    third = threading.Thread(target=frames.submit, args=(2,))
    third.start()
    time.sleep(0.2)
    assert third.is_alive()  # blocked: two frames in flight
    gate.set()
    third.join(5)
    assert not third.is_alive()
    frames.close()
    assert released == [0, 1, 2]  # nothing taken is lost on close
    assert frames.submit(3) is False  # closed: not detected, the caller drops it
    with pytest.raises(ValueError):
        FramesInFlight(0, lambda n: n, lambda n, r: None)
