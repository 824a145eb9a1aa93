"""`vlm-node bench node`: what the node itself costs on the image path, against a bare rclpy echo
node measured in the same run on the same frames.

Both targets run as separate processes (as on a vehicle) and are fed by this process over Fast
DDS with the same profile: 1080p bgr8 `sensor_msgs/Image` at a fixed rate, best-effort sensor
QoS. Latency is publish -> receive of the republished frame (same host clock), CPU is the
target process's user+system time over the measured frames. vlm_node runs with analysis
disabled and, unless asked, with face and plate detection off, so the figure isolates the
node's own overhead: decode, hand-off, re-encode and publish, bookkeeping.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from vlm_node.tools.process import NodeProcess, isolate_this_process, wait_until
from vlm_node.stats import percentiles

INPUT = "/bench_cam/image_raw"


@dataclass
class TargetFigures:
    """Measured figures of one target."""

    name: str
    sent: int
    received: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    cpu_ms_per_frame: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (children not included)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Probe:
    """Publisher of the input frames and subscriber of one output topic, in its own Context."""

    def __init__(self, output: str) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        self._rclpy = rclpy
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node("vlm_bench_probe", context=self.context)
        self.pub = self.node.create_publisher(Image, INPUT, qos_profile_sensor_data)
        self.received: dict[int, int] = {}
        self._lock = threading.Lock()
        self.node.create_subscription(Image, output, self._on_image, qos_profile_sensor_data)
        self.output = output
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - context shut down under it
            pass

    def _on_image(self, msg: Any) -> None:
        now = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self._lock:
            self.received[stamp] = now

    def wait_connected(self, timeout: float) -> None:
        wait_until(lambda: self.pub.get_subscription_count() > 0, timeout,
                   f"a subscriber on {INPUT}")
        wait_until(lambda: self.node.count_publishers(self.output) > 0, timeout,
                   f"a publisher on {self.output}")

    def play(self, msg: Any, frames: int, rate: float) -> list[int]:
        """Publish `frames` copies of `msg` at `rate` Hz, each stamped with its send time."""
        sent = []
        t0 = time.monotonic()
        for i in range(frames):
            stamp = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            self.pub.publish(msg)
            sent.append(stamp)
            time.sleep(max(0.0, t0 + (i + 1) / rate - time.monotonic()))
        return sent

    def take(self, stamps: list[int]) -> list[float]:
        with self._lock:
            return [(self.received[s] - s) / 1e6 for s in stamps if s in self.received]

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


def _frame_msg(width: int, height: int) -> Any:
    from sensor_msgs.msg import Image

    from vlm_node import image_codec
    from vlm_node.tools.render.scenes import make_road_scene
    from vlm_node.ros import convert

    pixels = make_road_scene(0, (width, height)).image
    raw = image_codec.array_to_image(np.ascontiguousarray(pixels), "bgr8")
    return Image(height=raw.height, width=raw.width, encoding="bgr8", step=raw.step,
                 data=convert.byte_array(raw.data))


def measure(name: str, start: Callable[[], NodeProcess], output: str, msg: Any, frames: int,
            rate: float, warmup: int = 10, timeout: float = 60.0) -> TargetFigures:
    """Start a target, warm it up, play `frames` frames and collect its figures."""
    proc = start()
    probe = None
    try:
        proc.wait_ready(timeout)
        probe = _Probe(output)
        probe.wait_connected(timeout)
        probe.play(msg, warmup, rate)
        time.sleep(0.5)
        cpu0 = _cpu_seconds(proc.proc.pid)
        sent = probe.play(msg, frames, rate)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and len(probe.take(sent)) < len(sent):
            time.sleep(0.05)
        cpu1 = _cpu_seconds(proc.proc.pid)
        lat = probe.take(sent)
    finally:
        if probe is not None:
            probe.close()
        proc.stop()
    if not lat:
        raise RuntimeError(f"{name}: none of {frames} frames came back on {output}")
    pct = percentiles(lat, (50, 95, 99))
    return TargetFigures(name, len(sent), len(lat), round(pct["p50"], 2), round(pct["p95"], 2),
                         round(pct["p99"], 2), round(float(np.mean(lat)), 2),
                         round((cpu1 - cpu0) * 1e3 / len(lat), 2))


def bench_node(width: int = 1920, height: int = 1080, frames: int = 100, rate: float = 10.0,
               anonymize: bool = False, print_fn: Callable[[str], None] = print
               ) -> dict[str, Any]:
    """Echo baseline, then vlm_node (anonymizer detectors off, analysis off), and with
    `anonymize` vlm_node with the default anonymizer too; prints a table, returns figures."""
    env = isolate_this_process()
    msg = _frame_msg(width, height)

    def echo() -> NodeProcess:
        return NodeProcess(["-p", f"input:={INPUT}", "-p", "output:=/bench_cam/echo"],
                           env=env, module="vlm_node.tools.echo_node", ready_mark="ready:")

    def node(detect: bool) -> Callable[[], NodeProcess]:
        args = ["-p", "cameras:=[bench_cam]", "-p", "analysis_enabled:=false"]
        if not detect:
            args += ["-p", "anonymizer.faces:=false", "-p", "anonymizer.plates:=false"]
        return lambda: NodeProcess(args, env=env)

    targets = [("rclpy echo (baseline)", echo, "/bench_cam/echo"),
               ("vlm_node, detectors off", node(False), "/bench_cam/image_anonymized")]
    if anonymize:
        targets.append(("vlm_node, default anonymizer", node(True),
                        "/bench_cam/image_anonymized"))
    print_fn(f"{frames} frames {width}x{height} bgr8 at {rate:g} Hz per target, "
             f"{os.cpu_count()} CPUs")
    results = [measure(n, s, out, msg, frames, rate) for n, s, out in targets]
    base = results[0]
    print_fn(f"{'target':<30} {'recv':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
             f"{'CPU ms/frame':>13} {'p95 vs echo':>12}")
    for r in results:
        print_fn(f"{r.name:<30} {r.received:>4}/{r.sent:<4} {r.p50_ms:>8.1f} {r.p95_ms:>8.1f} "
                 f"{r.p99_ms:>8.1f} {r.cpu_ms_per_frame:>13.1f} "
                 f"{r.p95_ms / base.p95_ms:>11.2f}x")
    return {"frame": [width, height], "frames": frames, "rate_hz": rate,
            "targets": [r.to_json() for r in results],
            "p95_ratio": round(results[1].p95_ms / base.p95_ms, 3)}
