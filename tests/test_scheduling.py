import threading

import numpy as np

from vlm_node.frames import FrameMeta, _release
from vlm_node.scheduling import LatestFrameScheduler


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def frame(camera, received, stamp=0):
    return _release(FrameMeta(camera, stamp, "f", received), np.zeros((2, 2, 3), np.uint8), (),
                    0.0)


def test_latest_frame_wins_and_is_counted():
    clock = FakeClock()
    s = LatestFrameScheduler(max_frame_age=1.0, clock=clock)
    s.add_camera("a")
    for i in range(5):
        s.put(frame("a", clock.t, stamp=i))
    batch = s.take(timeout=0)
    assert [f.meta.stamp_ns for f in batch] == [4]
    assert s.counts["a"].superseded == 4 and s.counts["a"].taken == 1
    assert s.take(timeout=0) == []


def test_stale_frames_are_dropped_not_analysed():
    clock = FakeClock()
    s = LatestFrameScheduler(max_frame_age=0.5, clock=clock)
    s.add_camera("a")
    s.add_camera("b")
    s.put(frame("a", clock.t - 0.6))
    s.put(frame("b", clock.t - 0.1))
    batch = s.take(timeout=0)
    assert [f.meta.camera for f in batch] == ["b"]
    assert s.counts["a"].stale == 1
    f = frame("b", clock.t)
    clock.t += 0.4
    assert s.is_fresh(f)
    clock.t += 0.2
    assert not s.is_fresh(f)


def test_batches_across_cameras_and_rate_limit():
    clock = FakeClock()
    s = LatestFrameScheduler(max_frame_age=10, clock=clock)
    s.add_camera("a", analysis_rate=2.0)  # at most every 0.5 s
    s.add_camera("b")
    s.put(frame("a", clock.t))
    s.put(frame("b", clock.t))
    assert sorted(f.meta.camera for f in s.take(timeout=0)) == ["a", "b"]
    clock.t += 0.1
    s.put(frame("a", clock.t))
    s.put(frame("b", clock.t))
    assert [f.meta.camera for f in s.take(timeout=0)] == ["b"]  # a is rate limited
    clock.t += 0.5
    assert [f.meta.camera for f in s.take(timeout=0)] == ["a"]


def test_max_batch_keeps_the_rest():
    clock = FakeClock()
    s = LatestFrameScheduler(max_frame_age=10, clock=clock)
    for cam in "abc":
        s.add_camera(cam)
        s.put(frame(cam, clock.t))
    assert len(s.take(timeout=0, max_batch=2)) == 2
    assert len(s.take(timeout=0, max_batch=2)) == 1


def test_close_wakes_a_blocked_consumer():
    s = LatestFrameScheduler()
    s.add_camera("a")
    out = []
    t = threading.Thread(target=lambda: out.append(s.take()))
    t.start()
    s.close()
    t.join(timeout=2)
    assert not t.is_alive() and out == [[]]
