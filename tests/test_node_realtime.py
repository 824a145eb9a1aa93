"""Real-time behaviour over real DDS: two cameras at 20 Hz, a backend slowed to 500 ms per batch.

What must hold on a vehicle: the anonymized streams keep camera rate (the model never blocks a
camera callback), no result is older than `max_frame_age`, analysis batches the latest frame of
each camera instead of queueing, and memory does not grow. Plus every kind of malformed input
is counted and dropped without harming the node or leaking a frame.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image

from ros_helpers import Harness, wait_for, wait_for_subscribers
from slow_analysis_node import SlowAnalyzer
from vlm_node import image_codec
from vlm_node.ros import convert
from vlm_node.ros.node import VlmNode
from vlm_node.tools.process import NodeProcess
from vlm_node_interfaces.msg import SceneUnderstanding

pytestmark = [pytest.mark.integration, pytest.mark.realtime]

REPO = Path(__file__).resolve().parent.parent
RATE_HZ = 20.0
SECONDS = 4.0
# The stand-in model is slow on purpose: a camera path blocked by it would put out at most
# SECONDS / MODEL_S (~8) of the 80 frames per camera, far below the bounds below, which leave
# room for CI's loaded 2 cores (one fresh-clone run there anonymized 49 of 80 frames of a camera
# and dropped 20 more as older than a 0.5 s max_frame_age on the way in). MAX_AGE leaves a frame
# two model periods of waiting: with the analysis process at lowered priority on loaded cores
# a batch took ~0.8 s and results older than 1.5 s were (rightly) dropped: 1 result in 5 batches.
MODEL_S = 0.5
MAX_AGE = 3.0


def _image(stamp_ns: int, rng: np.random.Generator) -> Image:
    raw = image_codec.array_to_image(rng.integers(0, 255, (240, 320, 3), np.uint8), "bgr8")
    msg = Image(height=raw.height, width=raw.width, encoding="bgr8", step=raw.step,
                data=convert.byte_array(raw.data))
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return msg


def _node(harness: Harness, analyzer: Any, extra: list[Parameter]) -> VlmNode:
    # the analyzer is a live object of this process (the test reads its calls), so the
    # analysis runs in the node's threads, not in a child process
    node = VlmNode(context=harness.context, analyzer_factory=lambda cfg: analyzer,
                   parameter_overrides=[Parameter("anonymizer.faces", value=False),
                                        Parameter("anonymizer.plates", value=False),
                                        Parameter("analysis_process", value=False), *extra])
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    harness.add_node(node)
    return node


def _close(harness: Harness, node: VlmNode) -> None:
    harness.executor.remove_node(node)
    node.trigger_shutdown()
    node.destroy_node()
    harness.close()


INPUT_DROPS = ("stale_input", "decode_error", "anonymizer_failure")
"""The drop reasons of a received camera frame that was not anonymized (`vlm_node.stats`)."""


def _camera_counts(msg: DiagnosticArray) -> dict[str, dict[str, str]]:
    """Each camera's diagnostics key/values of one DiagnosticArray, by hardware id (the
    statuses that count frames; the node's others do not)."""
    statuses = {s.hardware_id: {kv.key: kv.value for kv in s.values} for s in msg.status}
    return {k: v for k, v in statuses.items() if "frames_received" in v}


def _accounted(counts: dict[str, str]) -> bool:
    """Every frame the camera's counts say was received is anonymized or dropped."""
    return int(counts["frames_received"]) == int(counts["frames_anonymized"]) + sum(
        int(counts[f"dropped_{r}"]) for r in INPUT_DROPS)


def _settled(diags: list[DiagnosticArray]) -> bool:
    """The last two diagnostics of both cameras show the same frames received, all of them
    accounted for: the node has nothing left on its way in."""
    if len(diags) < 2:
        return False
    last, before = _camera_counts(diags[-1]), _camera_counts(diags[-2])
    return set(last) == set(before) == {"a", "b"} and all(
        _accounted(last[c]) and last[c]["frames_received"] == before[c]["frames_received"]
        for c in "ab")


def _batches(output: str) -> list[list[str]]:
    """The cameras of each batch the slow backend logged (`tests/slow_analysis_node.py`)."""
    return [line.split()[1].split(",") for line in output.splitlines()
            if line.startswith("batch ")]


def _rss_of(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.parametrize("analysis_process", [False, True], ids=["threads", "process"])
def test_two_cameras_at_20hz_with_slow_backend_keep_rate_and_freshness(
        analysis_process: bool) -> None:
    """The node in its own process (as on a vehicle), its backend slowed to 500 ms a batch;
    the analysis in the node's threads (default) or in a child process of its own."""
    proc = NodeProcess(["-p", "cameras:=[a,b]", "-p", f"max_frame_age:={MAX_AGE}",
                        "-p", "qos_reliability:=reliable", "-p", "qos_depth:=20",
                        "-p", f"analysis_process:={str(analysis_process).lower()}",
                        "-p", "anonymizer.faces:=false", "-p", "anonymizer.plates:=false"],
                       module="tests.slow_analysis_node", cwd=REPO,
                       env={**os.environ, "SLOW_ANALYSIS_S": str(MODEL_S)})
    harness = Harness("rt_probe", single_threaded=True)
    try:
        proc.wait_ready(60)
        outs = {c: harness.subscribe(Image, f"/{c}/image_anonymized") for c in "ab"}
        results = harness.subscribe(SceneUnderstanding, "/scene_understanding", reliable=True)
        diags = harness.subscribe(DiagnosticArray, "/diagnostics", reliable=True)
        pubs = {c: harness.publisher(Image, f"/{c}/image_raw", reliable=True) for c in "ab"}
        for pub in pubs.values():
            wait_for_subscribers(pub)
            harness.wait_matched()
        rng = np.random.default_rng(0)
        frames = {c: _image(0, rng) for c in "ab"}
        sent: dict[str, list[int]] = {c: [] for c in "ab"}
        rss: list[float] = []
        n = int(RATE_HZ * SECONDS)
        t0 = time.monotonic()
        for i in range(n):
            for c in "ab":
                stamp = time.time_ns()
                msg = frames[c]
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
                pubs[c].publish(msg)
                sent[c].append(stamp)
            if i in (n // 4, n - 1):
                rss.append(_rss_of(proc.proc.pid))
            time.sleep(max(0.0, t0 + (i + 1) / RATE_HZ - time.monotonic()))
        elapsed = time.monotonic() - t0
        streamed = len(diags)
        time.sleep(MODEL_S + 1.2)  # the last result and one more diagnostics period
        # the counts below are those of diagnostics published after the stream: on a loaded
        # CI machine none had reached the probe by then in one run (the node's 1 s timer and
        # discovery run late there), so wait for one instead of reading an empty list
        wait_for(lambda: len(diags) > streamed, 20, "diagnostics published after the stream")
        # nothing lost: every frame the node received is anonymized or dropped and counted. A
        # frame still being anonymized when a diagnostics message went out is neither yet (a
        # fresh-clone CI run on 2026-12-06 read 65 + 0 of 66), and on a loaded machine frames
        # still reach the node after the probe stopped sending (another run: 40 of 80 received,
        # at 6 Hz, and the batches the node ran after its last message unbalanced the slot's
        # counts below), so wait until two messages in a row show the same frames received
        # and the counts balance; a frame the node really lost never balances them
        wait_for(lambda: _settled(diags), 30,
                 "two diagnostics in a row in which every received frame is anonymized or "
                 "dropped and no frame came in between")
        # what the stream left, counted before the probe below
        last = _camera_counts(diags[-1])
        batches = _batches(proc.output())
        # The worker is alive: a frame sent now, after the stream, gets its result. Why this
        # and not a floor on the batches run during the stream: the analysis runs below the
        # camera path (niced, and held while frames are anonymized), so a loaded machine may
        # let it run only 1-2 batches in the 4 s (fresh-clone CI runs on 2026-12-06: 1 and 2,
        # one per variant), which a hung worker would also show; a hung worker never answers.
        probe = time.time_ns()
        msg = frames["a"]
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(probe, 1_000_000_000)
        pubs["a"].publish(msg)
        sent["a"].append(probe)
        wait_for(lambda: any(r.camera == "a" and convert.stamp_ns(r.header.stamp) == probe
                             for r in results), 30, "the result of a frame sent after the stream")
        # every batch has ended now (the worker runs one at a time and the probe's was last):
        # the next diagnostics count each analysed frame whose result came too late
        answered = len(diags)
        wait_for(lambda: len(diags) > answered, 20, "diagnostics published after the probe")
        final = _camera_counts(diags[-1])
        all_batches = _batches(proc.output())
    finally:
        harness.close()
        proc.stop()

    streamed_results = [r for r in results if convert.stamp_ns(r.header.stamp) != probe]
    # a batch about every MODEL_S at most, most with the latest frame of both cameras: a
    # queueing worker would run one batch per frame (~80)
    assert 1 <= len(batches) <= elapsed / MODEL_S + 2, len(batches)
    # The first batch is taken as soon as the first frame is in (one camera's, often), and the
    # last after the stream stopped: only the batches between them must hold both cameras. A
    # fresh-clone run on a loaded CI machine gave [a], [a,b] x3, [a], [b]: 3 of 6 with the
    # ends counted, 3 of 4 without. Another (the process variant, CI, 2026-12-03) ran only 4
    # batches, [a], [b], [a,b], [a,b]: one camera's callbacks starved for a whole batch, which
    # left 1 of the 2 inner batches with both. One such batch is forgiven; a worker that took
    # one camera per batch (0 with both) still fails from 2 inner batches on.
    inner = batches[1:-1]
    assert sum(b == ["a", "b"] for b in inner) >= 0.6 * len(inner) - 1, batches
    for c in "ab":
        # camera rate: frames are anonymized and republished, in order, while the model is
        # busy. Had the model blocked the camera path, one frame would come out per batch; the
        # node anonymized at least twice that many. The bound is relative to the batches the
        # node really ran, not to the probe's 20 Hz: a loaded CI machine delivered only 24 of
        # 80 frames in one run, which says nothing about blocking. Counted by the node, and by
        # the probe. The floor is 4, not 10: a fresh-clone run on 2026-12-06 (ninth session,
        # process variant) anonymized 5 of 25 frames received while the model ran 2 batches,
        # the rest going stale on a starved machine; a blocked camera path gives one frame a
        # batch, under 4 with 1-3 batches and under twice the batches beyond.
        anonymized = int(last[c]["frames_anonymized"])
        assert anonymized >= max(4, 2 * len(batches)), (c, len(batches), last[c])
        assert _accounted(last[c]), last[c]
        # dropped as it came in (waited too long in the queue) or failed closed: rare here
        assert int(last[c]["dropped_anonymizer_failure"]) <= 0.1 * anonymized, last[c]
        got = [convert.stamp_ns(m.header.stamp) for m in outs[c]]
        assert len(got) >= 0.5 * anonymized, (c, len(got), last[c])
        assert got == sorted(got) and set(got) <= set(sent[c])
    # results are fresh (never older than max_frame_age when published) and there is at most
    # one per batch and camera: superseded frames are skipped, not queued. Every frame a batch
    # took is published or counted as too late to publish, nothing else. Not a floor on the
    # results published: a starved CI machine (fresh-clone run, 2026-12-07, process variant)
    # ran 2 batches in the 4 s and published none of one camera's, both rightly too old by the
    # time the lowered-priority worker finished; the probe's result above shows a fresh one is
    # published.
    assert max(r.latency_ms for r in results) <= MAX_AGE * 1e3
    for c in "ab":
        assert sum(r.camera == c for r in streamed_results) <= len(batches)
        published = sum(r.camera == c for r in results)
        late = int(final[c]["dropped_stale_result"]) + int(final[c]["dropped_backend_error"])
        assert published + late == sum(c in b for b in all_batches), (c, all_batches, final[c])
        assert int(final[c]["dropped_backend_error"]) == 0, final[c]
    # diagnostics agree: nothing dropped on the way in, and every anonymized frame is accounted
    # for: taken by a batch (at most one per camera), superseded by a newer one, too old in the
    # slot, or still in the slot at the end
    for c in "ab":
        assert int(last[c]["dropped_decode_error"]) == 0
        taken = sum(c in b for b in batches)
        left = (int(last[c]["frames_anonymized"]) - taken - int(last[c]["dropped_superseded"])
                - int(last[c]["dropped_stale"]))
        assert left in (0, 1), (c, taken, last[c])
        assert int(last[c]["dropped_superseded"]) > 0.5 * int(last[c]["frames_anonymized"])
    # the slot never holds more than the latest frame: memory stays flat while frames flow
    assert rss[-1] - rss[0] < 40.0, rss


MALFORMED = {
    "wrong_step": dict(height=4, width=4, encoding="bgr8", step=5, size=20),
    "truncated": dict(height=4, width=4, encoding="bgr8", step=12, size=30),
    "unknown_encoding": dict(height=4, width=4, encoding="rgb_strange", step=12, size=48),
    "zero_size": dict(height=0, width=0, encoding="bgr8", step=0, size=0),
    "huge": dict(height=200_000, width=200_000, encoding="bgr8", step=600_000, size=48),
}


@pytest.fixture
def guarded():
    harness = Harness("malformed_probe")
    node = _node(harness, SlowAnalyzer(), [
        Parameter("cameras", value=["raw", "jpg"]),
        Parameter("camera.jpg.transport", value="compressed"),
        Parameter("qos_reliability", value="reliable"), Parameter("qos_depth", value=20),
        Parameter("max_frame_age", value=30.0)])
    try:
        yield harness, node
    finally:
        _close(harness, node)


def test_every_kind_of_malformed_message_is_counted_and_nothing_leaks(guarded) -> None:
    harness, node = guarded
    raw_out = harness.subscribe(Image, "/raw/image_anonymized")
    jpg_out = harness.subscribe(Image, "/jpg/image_anonymized")
    raw_pub = harness.publisher(Image, "/raw/image_raw")
    jpg_pub = harness.publisher(CompressedImage, "/jpg/image_raw/compressed")
    wait_for_subscribers(raw_pub)
    wait_for_subscribers(jpg_pub)
    for spec in MALFORMED.values():
        raw_pub.publish(Image(height=spec["height"], width=spec["width"],
                              encoding=spec["encoding"], step=spec["step"],
                              data=convert.byte_array(bytes(spec["size"]))))
    jpeg = image_codec.encode_compressed(np.full((8, 8, 3), 90, np.uint8), "jpeg", 90)[1]
    for fmt, data in [("jpeg", bytes(jpeg)[: len(jpeg) // 2]), ("jpeg", b"\xff\xd8garbage"),
                      ("jpeg", b""), ("tiff", bytes(jpeg))]:
        jpg_pub.publish(CompressedImage(format=fmt, data=convert.byte_array(data)))
    wait_for(lambda: node.stats["raw"].snapshot()["dropped_decode_error"] == len(MALFORMED),
             10, "every malformed Image to be counted")
    wait_for(lambda: node.stats["jpg"].snapshot()["dropped_decode_error"] == 4, 10,
             "every malformed CompressedImage to be counted")
    assert not raw_out and not jpg_out  # nothing was published for a malformed frame

    # the node is unharmed: good frames on both cameras flow through
    good = image_codec.array_to_image(np.full((6, 8, 3), 7, np.uint8), "bgr8")
    raw_pub.publish(Image(height=6, width=8, encoding="bgr8", step=good.step,
                          data=convert.byte_array(good.data)))
    jpg_pub.publish(CompressedImage(format="jpeg", data=convert.byte_array(jpeg)))
    wait_for(lambda: raw_out and jpg_out, 10, "the good frames after the malformed ones")
    assert (raw_out[0].width, raw_out[0].height) == (8, 6)
    assert (jpg_out[0].width, jpg_out[0].height) == (8, 8)
    diag = {s.hardware_id: {kv.key: kv.value for kv in s.values}
            for s in node.diagnostics().status if s.hardware_id in ("raw", "jpg")}
    assert diag["raw"]["dropped_decode_error"] == str(len(MALFORMED))
    assert diag["jpg"]["dropped_decode_error"] == "4"


def test_frames_queued_behind_a_slow_anonymizer_count_their_wait_and_expire(monkeypatch) -> None:
    """Anonymizing (150 ms) slower than the camera (20 Hz): frames wait in the subscription
    queue. That wait is part of latency_ms, and frames that waited past max_frame_age are
    dropped as stale_input instead of being processed and published late."""
    harness = Harness("queue_probe")
    node = _node(harness, SlowAnalyzer(delay=0.0), [
        Parameter("cameras", value=["q"]), Parameter("qos_reliability", value="reliable"),
        Parameter("qos_depth", value=10), Parameter("max_frame_age", value=0.4)])
    anonymizer = node.pipeline._anonymizer("q")
    original = anonymizer.anonymize

    def slow(meta, image):
        time.sleep(0.15)
        return original(meta, image)
    monkeypatch.setattr(anonymizer, "anonymize", slow)
    try:
        results = harness.subscribe(SceneUnderstanding, "/scene_understanding", reliable=True)
        pub = harness.publisher(Image, "/q/image_raw", reliable=True)
        wait_for_subscribers(pub)
        harness.wait_matched()
        rng = np.random.default_rng(1)
        for _ in range(40):
            pub.publish(_image(time.time_ns(), rng))
            time.sleep(0.05)
        time.sleep(1.0)
    finally:
        _close(harness, node)
    snap = node.stats["q"].snapshot()
    assert snap["dropped_stale_input"] > 0
    assert results and max(r.latency_ms for r in results) <= 400.0
    # the queue wait is in latency_ms: a result processed after waiting shows it
    assert max(r.latency_ms for r in results) > 150.0 + 50.0
