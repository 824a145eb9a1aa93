import math

import pytest

from vlm_node.stats import CameraStats, PartTimes, RateMeter, percentiles


def test_percentiles():
    p = percentiles(range(1, 101))
    assert p["p50"] == pytest.approx(50.5) and p["p99"] == pytest.approx(99.01)
    assert math.isnan(percentiles([])["p95"])


def test_rate_meter_window():
    t = [0.0]
    m = RateMeter(window=1.0, clock=lambda: t[0])
    for _ in range(11):
        m.mark()
        t[0] += 0.1
    assert m.rate() == pytest.approx(10.0, rel=0.15)
    t[0] += 5
    assert m.rate() == 0.0


def test_camera_stats_snapshot_counts_drops():
    s = CameraStats()
    s.on_received()
    s.on_anonymized(3.0, faces=2, plates=1)
    s.on_drop("decode_error")
    s.on_result(40.0)
    snap = s.snapshot()
    assert snap["frames_received"] == 1 and snap["faces_redacted"] == 2
    assert snap["dropped_decode_error"] == 1 and snap["latency_ms_p50"] == 40.0
    with pytest.raises(AssertionError):
        s.on_drop("cosmic_rays")


def test_part_times_sum_each_part_over_calls_and_count_a_part_that_raises():
    """Parts add up across calls in milliseconds; a body that raises still counts its time;
    reset forgets everything."""
    now = iter([0.0, 0.010, 1.0, 1.005, 2.0, 2.002])
    times = PartTimes(clock=lambda: next(now))
    with times.part("search"):
        pass
    with times.part("search"):
        pass
    with pytest.raises(ValueError):
        with times.part("classify"):
            raise ValueError("model failed")
    assert times.ms == pytest.approx({"search": 15.0, "classify": 2.0})
    times.count("classify", 300)
    times.count("classify", 12)
    assert times.counts == {"classify": 312}
    times.reset()
    assert times.ms == {} and times.counts == {}
