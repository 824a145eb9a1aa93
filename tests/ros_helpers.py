"""rclpy test harness: a context with its own executor thread, publishers/subscribers created on a
probe node, and waits that always time out with a clear failure instead of hanging."""
from __future__ import annotations

import threading
from typing import Any, Callable

import rclpy
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from vlm_node.tools.process import NodeProcessError, wait_until


class Harness:
    """Owns one rclpy Context (so tests never share global state) and an executor thread."""

    def __init__(self, name: str = "probe", single_threaded: bool = False) -> None:
        """`single_threaded`: a lighter executor for probes that only receive (rclpy's
        multi-threaded executor costs several ms of CPU per message)."""
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node(name, context=self.context)
        self.executor = (SingleThreadedExecutor(context=self.context) if single_threaded
                         else MultiThreadedExecutor(num_threads=4, context=self.context))
        self.executor.add_node(self.node)
        self.received: dict[str, list[Any]] = {}
        self.subscriptions: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - context shut down
            pass

    def add_node(self, node: Node) -> None:
        self.executor.add_node(node)

    def subscribe(self, msg_type: Any, topic: str, reliable: bool = False) -> list[Any]:
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        box: list[Any] = self.received.setdefault(topic, [])

        def callback(msg: Any) -> None:
            with self._lock:
                box.append(msg)
        self.subscriptions[topic] = self.node.create_subscription(msg_type, topic, callback, qos)
        return box

    def wait_matched(self, *topics: str, timeout: float = 20.0) -> None:
        """Until each subscription made with `subscribe` (or those on `topics`) is matched
        with a publisher: a sample sent before matching is simply lost."""
        for topic in topics or tuple(self.subscriptions):
            sub = self.subscriptions[topic]
            wait_for(lambda sub=sub: sub.get_publisher_count() > 0, timeout,
                     f"a publisher matched to {topic}")

    def publisher(self, msg_type: Any, topic: str, reliable: bool = True) -> Any:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        return self.node.create_publisher(msg_type, topic, qos)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.02) -> Any:
    """Poll `predicate` until truthy; fail the test with `what` after `timeout` seconds."""
    try:
        return wait_until(predicate, timeout, what, interval)
    except NodeProcessError as exc:
        raise AssertionError(str(exc)) from None


def wait_for_subscribers(publisher: Any, timeout: float = 10.0) -> None:
    wait_for(lambda: publisher.get_subscription_count() > 0, timeout,
             f"a subscriber on {publisher.topic_name}")
