"""Plays frames into a running vlm_node over DDS and collects what it publishes.

Used by `vlm-node demo`: one frame at a time per camera, waiting for the SceneUnderstanding with
that frame's stamp, so every frame is analysed (the node keeps only the latest frame per camera
and would otherwise skip frames that arrive while the model is busy, which is right on a vehicle
but not for a demo that reports on each frame).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from vlm_node import image_codec
from vlm_node.ros import convert
from vlm_node.tools.process import NodeProcessError, wait_until
from vlm_node_interfaces.msg import SceneUnderstanding


@dataclass
class Played:
    """What came back for one frame: the result message and, if they arrived, the anonymized
    image (BGR pixels decoded from `<camera>/image_anonymized`) and the annotated one
    (`<camera>/image_annotated`, when the node publishes it)."""

    camera: str
    stamp_ns: int
    result: SceneUnderstanding
    anonymized: np.ndarray | None
    round_trip_ms: float
    annotated: np.ndarray | None = None


class FramePlayer:
    """A node of its own (own rclpy Context and executor thread) that publishes
    `/<camera>/image_raw` and subscribes to the results and anonymized images."""

    def __init__(self, cameras: Sequence[str], results_topic: str = "/scene_understanding",
                 node_name: str = "vlm_demo_player") -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node(node_name, context=self.context)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._lock = threading.Lock()
        self._results: dict[tuple[str, int], SceneUnderstanding] = {}
        self._images: dict[tuple[str, int], Image] = {}
        self._annotated: dict[tuple[str, int], Image] = {}
        self.publishers = {cam: self.node.create_publisher(Image, f"/{cam}/image_raw", reliable)
                           for cam in cameras}
        self.node.create_subscription(SceneUnderstanding, results_topic, self._on_result,
                                      QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        # camera -> (anonymized, annotated) image subscriptions
        self._image_subs = {cam: (
            self.node.create_subscription(
                Image, f"/{cam}/image_anonymized",
                lambda msg, cam=cam: self._on_image(cam, msg), qos_profile_sensor_data),
            self.node.create_subscription(
                Image, f"/{cam}/image_annotated",
                lambda msg, cam=cam: self._on_annotated(cam, msg), qos_profile_sensor_data))
            for cam in cameras}
        self._results_topic = results_topic
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name="player_spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - the context was shut down under it
            pass

    def _on_result(self, msg: SceneUnderstanding) -> None:
        with self._lock:
            self._results[(msg.camera, convert.stamp_ns(msg.header.stamp))] = msg

    def _on_image(self, camera: str, msg: Image) -> None:
        with self._lock:
            self._images[(camera, convert.stamp_ns(msg.header.stamp))] = msg

    def _on_annotated(self, camera: str, msg: Image) -> None:
        with self._lock:
            self._annotated[(camera, convert.stamp_ns(msg.header.stamp))] = msg

    def wait_connected(self, timeout: float = 20.0, annotated: bool = False) -> None:
        """Until every camera topic has a subscriber, the results topic a publisher and each
        camera's anonymized image (and, with `annotated`, its annotated image) subscription a
        matched publisher (discovery between processes takes a moment, each topic on its own;
        the images travel best effort, so one sent before its topic matched is lost: a demo
        run under load once missed its first annotated image that way)."""
        for cam, pub in self.publishers.items():
            wait_until(lambda pub=pub: pub.get_subscription_count() > 0, timeout,
                       f"the node to subscribe to /{cam}/image_raw")
        wait_until(lambda: self.node.count_publishers(self._results_topic) > 0, timeout,
                   f"the node's {self._results_topic} publisher")
        for cam, subs in self._image_subs.items():
            for sub in subs if annotated else subs[:1]:
                wait_until(lambda sub=sub: sub.get_publisher_count() > 0, timeout,
                           f"the node's {sub.topic_name} publisher")

    def play(self, camera: str, bgr: np.ndarray, stamp_ns: int, frame_id: str = "",
             timeout: float = 60.0, image_grace: float = 1.0) -> Played:
        """Publish one BGR frame on /<camera>/image_raw and wait for its result (matched by
        camera and stamp). The anonymized image is waited for up to `image_grace` seconds more:
        it travels best-effort, like camera data."""
        raw = image_codec.array_to_image(np.ascontiguousarray(bgr), "bgr8")
        msg = Image(height=raw.height, width=raw.width, encoding=raw.encoding,
                    is_bigendian=bool(raw.is_bigendian), step=raw.step,
                    data=convert.byte_array(raw.data))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        msg.header.frame_id = frame_id or f"{camera}_optical_frame"
        key = (camera, int(stamp_ns))
        t0 = time.monotonic()
        self.publishers[camera].publish(msg)
        result = wait_until(lambda: self._take(self._results, key), timeout,
                            f"the result for {camera} frame {stamp_ns}")
        elapsed = (time.monotonic() - t0) * 1e3
        image_msg = None
        try:
            image_msg = wait_until(lambda: self._take(self._images, key), image_grace,
                                   f"the anonymized image of {camera} frame {stamp_ns}")
        except NodeProcessError:
            pass
        pixels = image_codec.image_to_bgr8(image_msg).copy() if image_msg is not None else None
        annotated = None
        if self.node.count_publishers(f"/{camera}/image_annotated") > 0:
            try:
                msg_a = wait_until(lambda: self._take(self._annotated, key), image_grace,
                                   f"the annotated image of {camera} frame {stamp_ns}")
                annotated = image_codec.image_to_bgr8(msg_a).copy()
            except NodeProcessError:
                pass
        return Played(camera, int(stamp_ns), result, pixels, elapsed, annotated)

    def _take(self, store: dict[tuple[str, int], Any], key: tuple[str, int]) -> Any:
        with self._lock:
            return store.pop(key, None)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)

    def __enter__(self) -> "FramePlayer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
