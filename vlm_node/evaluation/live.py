"""`vlm-node eval --live`: the bag through the real node process over DDS.

The node runs as `vlm-node run` (NodeProcess) in a ROS domain of its own limited to this host,
with its cameras pointed at the bag's topics. The bag's image messages are published as
recorded (the stored CDR bytes, unchanged) on their recorded topics at the recorded rate (or a
multiple), and SceneUnderstanding messages are collected by camera and header stamp.

Unlike the demo's player, nothing waits for a result before the next frame: the node keeps only
the latest frame per camera, so frames that arrive while it is busy are superseded. Those come
back without a result and are reported as not analysed, apart from the model's misses. Input
QoS is set to reliable so that a missing result means the node's scheduling, not a lost sample.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from vlm_node.bags import io
from vlm_node.errors import BagError, ConfigError
from vlm_node.evaluation.configure import camera_params
from vlm_node.evaluation.records import (ANALYSED, DROPPED, NOT_ANALYSED, FrameRecord,
                                         RunOutput)

NO_RESULT = "no_result"  # superseded by a newer frame, stale, or dropped inside the node


@dataclass
class _Sent:
    record: FrameRecord
    published_at: float


def node_arguments(cameras: dict[str, str], compressed: set[str], backend: str | None
                   ) -> list[str]:
    """ROS arguments (after --ros-args) pointing the node's cameras at the bag's topics."""
    args: list[str] = []
    params = camera_params(cameras, compressed)
    params["qos_reliability"] = "reliable"
    if backend:
        params["analysis.backend"] = backend
    for key, value in params.items():
        args += ["-p", f"{key}:={json.dumps(value) if isinstance(value, list) else value}"]
    return args


def _player_class() -> Any:
    """BagPlayer, defined once rclpy may be imported (after the DDS environment is set)."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    from vlm_node.ros import convert
    from vlm_node.tools.player import FramePlayer

    classes = {io.IMAGE: Image, io.COMPRESSED_IMAGE: CompressedImage}

    class BagPlayer(FramePlayer):
        """FramePlayer's node, executor and result collection, publishing recorded messages
        (serialized bytes as stored) on their recorded topics instead of rendered frames."""

        def __init__(self, topics: dict[str, str], cameras: dict[str, str],
                     results_topic: str) -> None:
            self.last_result_at = 0.0
            self.arrivals: dict[tuple[str, int], float] = {}
            super().__init__([], results_topic, node_name="vlm_eval_player")
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            for topic, msgtype in topics.items():
                self.publishers[cameras[topic]] = self.node.create_publisher(
                    classes[msgtype], topic, qos)

        def _on_result(self, msg: Any) -> None:
            now = time.monotonic()
            super()._on_result(msg)
            with self._lock:
                self.arrivals[(msg.camera, convert.stamp_ns(msg.header.stamp))] = now
            self.last_result_at = now

        def publish_raw(self, camera: str, raw: bytes) -> None:
            self.publishers[camera].publish(raw)

        def has_result(self, camera: str, stamp_ns: int) -> bool:
            with self._lock:
                return (camera, stamp_ns) in self._results

        def take_result(self, camera: str, stamp_ns: int) -> tuple[Any, float]:
            """(SceneUnderstanding or None, monotonic time it arrived)."""
            key = (camera, stamp_ns)
            return self._take(self._results, key), self._take(self.arrivals, key)

    return BagPlayer


def run_live(bag_path: str | Path, cameras: dict[str, str], topics: dict[str, str],
             configs: Sequence[str | Path] = (), backend: str | None = None,
             results_topic: str = "scene_understanding", rate: float = 1.0,
             timeout: float = 120.0, settle: float = 5.0, domain_id: int | None = None,
             progress: bool = True) -> RunOutput:
    """Play the bag's image topics (`topics`: topic -> message type, `cameras`: topic ->
    camera name) into a fresh node and record what it published for each message.
    `settle`: after the last frame, how long to wait for results once none arrive."""
    from tqdm import tqdm

    from vlm_node.tools.process import NodeProcess, NodeProcessError, isolate_this_process

    if not rate > 0:
        raise ConfigError(f"rate must be positive, got {rate}")
    # The player runs in this process: same domain and discovery range as the node.
    env = isolate_this_process(domain_id)
    player_class = _player_class()
    compressed = {t for t, m in topics.items() if m == io.COMPRESSED_IMAGE}
    t_start = time.monotonic()
    node = NodeProcess(node_arguments(cameras, compressed, backend), configs=configs, env=env)
    sent: list[_Sent] = []
    log_times: list[int] = []
    try:
        node.wait_ready(timeout)
        topic = results_topic if results_topic.startswith("/") else "/" + results_topic
        with player_class(topics, cameras, topic) as player:
            player.wait_connected(min(timeout, 30.0))
            load_s = time.monotonic() - t_start
            with io.open_bag(bag_path) as bag:
                total = sum(bag.topics[t].count for t in cameras)
                bar = tqdm(bag.messages(cameras), total=total, desc="eval --live",
                           unit="frame", file=sys.stderr, disable=None if progress else True)
                t0 = time.monotonic()
                for i, message in enumerate(bar):
                    log_times.append(message.timestamp)
                    due = t0 + (message.timestamp - log_times[0]) / 1e9 / rate
                    time.sleep(max(0.0, due - time.monotonic()))
                    sent.append(_publish(player, bag, message, i, cameras[message.topic]))
                bar.close()
            _settle(player, sent, settle, timeout)
            if node.proc.poll() is not None:  # its missing results are not "skipped frames"
                raise NodeProcessError(f"the node exited with status {node.proc.returncode} "
                                       f"during the run:\n{node.tail()}")
            end = max(player.last_result_at, sent[-1].published_at if sent else t0)
            wall_s = end - t0
            playback_s = sent[-1].published_at - sent[0].published_at if sent else 0.0
            records = [_collect(player, s) for s in sent]
    finally:
        node.stop()
    return RunOutput(records, wall_s, load_s, log_times, playback_s, node.output())


def _publish(player: Any, bag: io.Bag, message: io.BagMessage, index: int, camera: str
             ) -> _Sent:
    rec = FrameRecord(index, message.topic, camera, stamp_ns=message.timestamp,
                      log_time_ns=message.timestamp, status=NOT_ANALYSED, reason=NO_RESULT)
    try:
        rec.stamp_ns = io.stamp_ns(bag.deserialize(message).header)
    except BagError as exc:  # published all the same: what the node makes of it is its business
        rec.status, rec.reason = DROPPED, f"decode_error: {exc}"
    raw = bytes(message.raw)
    # the clock is read before publishing: the node may receive (and start its own latency
    # clock) while publish() is still returning
    published_at = time.monotonic()
    player.publish_raw(camera, raw)
    return _Sent(rec, published_at)


def _settle(player: Any, sent: Sequence[_Sent], quiet: float, timeout: float,
            clock: Callable[[], float] = time.monotonic) -> None:
    """Wait until the last frame of every camera has its result (the latest frame is the one
    the node analyses last), or no result has come for `quiet` seconds, or `timeout`."""
    last: dict[str, FrameRecord] = {}
    for s in sent:
        if s.record.status != DROPPED:
            last[s.record.camera] = s.record
    start = clock()
    while clock() - start < timeout:
        if all(player.has_result(r.camera, r.stamp_ns) for r in last.values()):
            return
        if clock() - max(player.last_result_at, start) >= quiet:
            return
        time.sleep(0.02)


def _collect(player: Any, sent: _Sent) -> FrameRecord:
    from vlm_node.ros import convert

    rec = sent.record
    if rec.status == DROPPED:
        return rec
    msg, arrived = player.take_result(rec.camera, rec.stamp_ns)
    if msg is None:
        return rec
    rec.status, rec.reason = ANALYSED, ""
    rec.readings = [convert.sign_reading_of(s) for s in msg.signs]
    rec.faces, rec.plates = int(msg.faces_redacted), int(msg.plates_redacted)
    rec.latency_ms = (arrived - sent.published_at) * 1e3
    rec.node_latency_ms, rec.analysis_ms = float(msg.latency_ms), float(msg.analysis_ms)
    rec.degraded, rec.degraded_reason = bool(msg.degraded), msg.degraded_reason
    rec.backend = msg.backend
    return rec
