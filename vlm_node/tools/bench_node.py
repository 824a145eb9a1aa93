"""`vlm-node bench node`: what the node itself costs on the image path, against a bare rclpy echo
node measured in the same run on the same frames.

Both targets run as separate processes (as on a vehicle) and are fed by this process over Fast
DDS with the same profile: 1080p bgr8 `sensor_msgs/Image` at a fixed rate, best-effort sensor
QoS. Latency is publish -> receive of the republished frame (same host clock), CPU is the
target process's user+system time over the measured frames. vlm_node runs with analysis
disabled and, unless asked, with face and plate detection off, so the figure isolates the
node's own overhead: decode, hand-off, re-encode and publish, bookkeeping.

A rendered road scene repeated flatters the anonymizer (one plate, no crowd, the same pixels
every frame). `frames_dir` plays real photos instead, each letterboxed to the frame size and
sent in turn (busy frames: crowds, signs, text), and `analysis` runs the node's default
analysis beside the anonymizer, as on a vehicle. The node's own diagnostics (anonymizer time
per frame, results published, drops) are read from /diagnostics during the run.

How a photo stays in view (`motion`): `still` sends the same pixels `hold` times in a row (a
parked car; every new photo is a scene cut), `drive` zooms into it a little more each frame
(`drive_frames`), as a camera moving forward sees a scene grow: no two frames are alike, as on
a real drive, and the anonymizer's per-frame plan meets motion instead of repeats.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

from vlm_node.tools.process import NodeProcess, isolate_this_process, wait_until
from vlm_node.stats import percentiles

INPUT = "/bench_cam/image_raw"
CAMERA = "bench_cam"
MOTIONS = ("still", "drive")

DRIVE_ZOOM_PER_FRAME = 0.02
"""`drive`: how much a scene grows from one frame to the next (a sign 70 m ahead at 50 km/h and
10 Hz grows ~2 % a frame), about a point just above the frame's middle (the road ahead)."""
DRIVE_FOCUS = (0.5, 0.45)


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
    cpu_ms_per_sent_frame: float = 0.0
    diagnostics: dict[str, str] | None = None  # the node's last camera status (vlm_node only)
    # the same figures for the frames a scene cut weighs on (its first two) and for the rest
    # (`scene_split`); None when every frame is a cut (hold 1)
    after_cut: dict[str, float] | None = None
    steady: dict[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


AFTER_CUT_FRAMES = 2
"""Frames of a scene that its cut weighs on: the cut frame itself (the anonymizer's whole pass)
and the next one, which arrives while that pass is still running."""


def scene_split(latencies_ms: Sequence[float | None], hold: int
                ) -> tuple[dict[str, float], dict[str, float]] | None:
    """Latency figures of the frames after each scene cut (the first `AFTER_CUT_FRAMES` of
    every `hold`) and of the others, from per-frame latencies in send order (None = not
    published). Why: with a cut every `hold` frames, p95 over all frames mixes two costs, the
    whole pass a new scene needs and the frame-to-frame plan; the split says which one a
    setting moves. None when `hold` leaves no frame that is not right after a cut."""
    if hold <= AFTER_CUT_FRAMES:
        return None
    parts: tuple[list[float | None], list[float | None]] = ([], [])
    for i, ms in enumerate(latencies_ms):
        parts[0 if i % hold < AFTER_CUT_FRAMES else 1].append(ms)

    def figures(part: list[float | None]) -> dict[str, float]:
        got = [ms for ms in part if ms is not None]
        out = {"sent": float(len(part)), "received": float(len(got))}
        if got:
            pct = percentiles(got, (50, 95))
            out.update(p50_ms=round(pct["p50"], 2), p95_ms=round(pct["p95"], 2),
                       max_ms=round(max(got), 2))
        return out

    return figures(parts[0]), figures(parts[1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` and of its live descendants (the node's
    analysis runs in a child process by default, `analysis_process`; a descendant that
    exits between two readings is not counted)."""
    total = 0.0
    for proc in [pid, *_descendants(pid)]:
        try:
            total += own_cpu_seconds(proc)
        except OSError:  # exited meanwhile
            continue
    return total


def stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (field 3, the state, first)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().rsplit(")", 1)[1].split()


def own_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` alone."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    """Process ids below `pid` (Linux /proc/PID/task/TID/children)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            continue
        for kid in kids:
            out += [kid, *_descendants(kid)]
    return out


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
        from diagnostic_msgs.msg import DiagnosticArray

        self.diagnostics: dict[str, str] | None = None
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
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

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if status.hardware_id == CAMERA:
                with self._lock:
                    self.diagnostics = {kv.key: kv.value for kv in status.values}

    def wait_connected(self, timeout: float) -> None:
        wait_until(lambda: self.pub.get_subscription_count() > 0, timeout,
                   f"a subscriber on {INPUT}")
        wait_until(lambda: self.node.count_publishers(self.output) > 0, timeout,
                   f"a publisher on {self.output}")

    def play(self, msgs: list[Any], frames: int, rate: float, hold: int = 1) -> list[int]:
        """Publish `frames` messages at `rate` Hz, cycling through `msgs` and sending each
        `hold` times in a row (a scene stays in view for a while, as on video), each stamped
        with its send time."""
        sent = []
        t0 = time.monotonic()
        for i in range(frames):
            msg = msgs[(i // hold) % len(msgs)]
            stamp = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            self.pub.publish(msg)
            sent.append(stamp)
            time.sleep(max(0.0, t0 + (i + 1) / rate - time.monotonic()))
        return sent

    def take(self, stamps: list[int]) -> list[float]:
        return [ms for ms in self.each(stamps) if ms is not None]

    def each(self, stamps: list[int]) -> list[float | None]:
        """Latency of each frame in `stamps` (ms), None for one not received."""
        with self._lock:
            return [(self.received[s] - s) / 1e6 if s in self.received else None
                    for s in stamps]

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


def letterbox(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """`image` scaled to fit `width` x `height` (aspect kept, enlarged or shrunk) and centred
    on black: a photo of any size as a camera frame of the benchmark's size."""
    return letterboxed(image, (width, height))[0]


def letterboxed(image: np.ndarray, size: tuple[int, int]
                ) -> tuple[np.ndarray, float, float, float]:
    """`letterbox` with where the photo went: (frame, scale, dx, dy), the photo's pixel (x, y)
    at (x * scale + dx, y * scale + dy) in the frame of `size` (w, h), so labels can follow it
    (`bench signs --fit`). Why not stretch: a 4:3 or portrait photo's round signs would become
    ellipses the sign search does not take for signs."""
    import cv2

    width, height = size
    h, w = image.shape[:2]
    s = min(width / w, height / h)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    out = np.zeros((height, width, 3), np.uint8)
    x0, y0 = (width - nw) // 2, (height - nh) // 2
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(image, (nw, nh), interpolation=interp)
    return out, s, float(x0), float(y0)


def photo_frames(frames_dir: str, width: int, height: int, limit: int = 0) -> list[np.ndarray]:
    """The images under `frames_dir` (sorted; at most `limit`, 0 = all), letterboxed to the
    frame size."""
    import cv2

    from vlm_node.cli.inputs import collect_images

    frames = []
    for path, _ in collect_images(frames_dir):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"unreadable image {path}")
        frames.append(letterbox(img, width, height))
        if limit and len(frames) >= limit:
            break
    return frames


def zoomed(image: np.ndarray, zoom: float, focus: tuple[float, float] = DRIVE_FOCUS
           ) -> np.ndarray:
    """`image` magnified `zoom` times about `focus` (fractions of its width and height), the
    same size: what a camera moving towards that point sees."""
    import cv2

    h, w = image.shape[:2]
    fx, fy = focus[0] * w, focus[1] * h
    matrix = np.array([[zoom, 0.0, fx * (1.0 - zoom)], [0.0, zoom, fy * (1.0 - zoom)]])
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT)


def drive_frames(images: Sequence[np.ndarray], frames: int, hold: int) -> list[np.ndarray]:
    """The `frames` frames of a `drive` run: each image `hold` frames in a row, the k-th of
    them zoomed by (1 + DRIVE_ZOOM_PER_FRAME) ** k."""
    return [zoomed(images[(i // hold) % len(images)], (1.0 + DRIVE_ZOOM_PER_FRAME) ** (i % hold))
            for i in range(frames)]


def _images(width: int, height: int, frames_dir: str | None = None,
            limit: int = 0) -> list[np.ndarray]:
    from vlm_node.tools.render.scenes import make_road_scene

    if frames_dir:
        return photo_frames(frames_dir, width, height, limit)
    return [make_road_scene(0, (width, height)).image]


def _frame_msgs(images: Sequence[np.ndarray]) -> list[Any]:
    from sensor_msgs.msg import Image

    from vlm_node import image_codec
    from vlm_node.ros import convert

    msgs = []
    for pixels in images:
        raw = image_codec.array_to_image(np.ascontiguousarray(pixels), "bgr8")
        msgs.append(Image(height=raw.height, width=raw.width, encoding="bgr8", step=raw.step,
                          data=convert.byte_array(raw.data)))
    return msgs


def measure(name: str, start: Callable[[], NodeProcess], output: str, msgs: list[Any],
            frames: int, rate: float, warmup: int = 10, timeout: float = 120.0, hold: int = 1,
            played: list[Any] | None = None) -> TargetFigures:
    """Start a target, warm it up on the first `warmup` frames of the sequence it is measured
    on, play `frames` frames (`played` in order when given, else `msgs` each `hold` times)
    and collect its figures."""
    proc = start()
    probe = None
    try:
        proc.wait_ready(timeout)
        probe = _Probe(output)
        probe.wait_connected(timeout)
        if played is not None:
            probe.play(played, warmup, rate)
        else:
            probe.play(msgs, warmup, rate, hold)
        time.sleep(0.5)
        cpu0 = _cpu_seconds(proc.proc.pid)
        sent = (probe.play(played, frames, rate) if played is not None
                else probe.play(msgs, frames, rate, hold))
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and len(probe.take(sent)) < len(sent):
            time.sleep(0.05)
        cpu1 = _cpu_seconds(proc.proc.pid)
        each = probe.each(sent)
        lat = [ms for ms in each if ms is not None]
        time.sleep(1.2)  # one more diagnostics period (1 s by default) after the last frame
        with probe._lock:
            diagnostics = probe.diagnostics
    finally:
        if probe is not None:
            probe.close()
        proc.stop()
    if not lat:
        raise RuntimeError(f"{name}: none of {frames} frames came back on {output}")
    pct = percentiles(lat, (50, 95, 99))
    split = scene_split(each, hold)
    return TargetFigures(name, len(sent), len(lat), round(pct["p50"], 2), round(pct["p95"], 2),
                         round(pct["p99"], 2), round(float(np.mean(lat)), 2),
                         round((cpu1 - cpu0) * 1e3 / len(lat), 2),
                         round((cpu1 - cpu0) * 1e3 / len(sent), 2), diagnostics,
                         *(split or (None, None)))


def _split_text(part: dict[str, float]) -> str:
    got = f"{part['received']:.0f}/{part['sent']:.0f}"
    if "p50_ms" not in part:
        return got
    return f"{got}, {part['p50_ms']:.0f} / {part['p95_ms']:.0f} / {part['max_ms']:.0f}"


def bench_node(width: int = 1920, height: int = 1080, frames: int = 100, rate: float = 10.0,
               anonymize: bool = False, print_fn: Callable[[str], None] = print, *,
               frames_dir: str | None = None, max_photos: int = 0, analysis: bool = False,
               variants: Sequence[tuple[str, Sequence[str]]] = (), baselines: bool = True,
               hold: int = 1, motion: str = "still", warmup: int = 10) -> dict[str, Any]:
    """Echo baseline, then vlm_node (anonymizer detectors off, analysis off), and with
    `anonymize` vlm_node with the default anonymizer too; prints a table, returns figures.

    `frames_dir`: play these photos (letterboxed) instead of one rendered road scene, each
    `hold` frames in a row, repeated (`motion` still) or zooming in (`drive`).
    `analysis`: the anonymizing targets also run the default analysis. `variants`: more
    anonymizing targets, each a name and `-p` parameter assignments (`anonymizer.x:=v`), to
    compare settings in the same run. `baselines=False` skips the echo and detectors-off
    targets (their figures only make sense beside a plain anonymizer run)."""
    if motion not in MOTIONS:
        raise ValueError(f"motion {motion!r}: choose from {', '.join(MOTIONS)}")
    env = isolate_this_process()
    images = _images(width, height, frames_dir, max_photos)
    msgs = _frame_msgs(images)
    # every target gets the same frames; a drive's are made once (hold x photos, not more
    # than are sent)
    played = _frame_msgs(drive_frames(images, frames, hold)) if motion == "drive" else None

    def echo() -> NodeProcess:
        return NodeProcess(["-p", f"input:={INPUT}", "-p", "output:=/bench_cam/echo"],
                           env=env, module="vlm_node.tools.echo_node", ready_mark="ready:")

    def node(detect: bool, with_analysis: bool, extra: Sequence[str] = ()
             ) -> Callable[[], NodeProcess]:
        args = ["-p", f"cameras:=[{CAMERA}]",
                "-p", f"analysis_enabled:={'true' if with_analysis else 'false'}"]
        if not detect:
            args += ["-p", "anonymizer.faces:=false", "-p", "anonymizer.plates:=false"]
        for assignment in extra:
            args += ["-p", assignment]
        return lambda: NodeProcess(args, env=env)

    output = f"/{CAMERA}/image_anonymized"
    targets: list[tuple[str, Callable[[], NodeProcess], str]] = []
    if baselines:
        targets += [("rclpy echo (baseline)", echo, "/bench_cam/echo"),
                    ("vlm_node, detectors off", node(False, False), output)]
    suffix = " + analysis" if analysis else ""
    if anonymize:
        targets.append((f"vlm_node, default anonymizer{suffix}", node(True, analysis), output))
    for name, assignments in variants:
        targets.append((f"{name}{suffix}", node(True, analysis, assignments), output))
    if not targets:
        raise ValueError("nothing to measure: no baselines, --anonymize or variants")
    source = (f"{len(msgs)} photos from {frames_dir}, {hold} frames each" if frames_dir
              else "a rendered road scene")
    if motion == "drive":
        source += f", zooming in {DRIVE_ZOOM_PER_FRAME:.0%} a frame"
    source += f"; {warmup} warm-up frames"
    print_fn(f"{frames} frames {width}x{height} bgr8 at {rate:g} Hz per target ({source}), "
             f"{os.cpu_count()} CPUs")
    # one rendered scene has no cuts to split by
    cut_every = hold if len(msgs) > 1 else 1
    results = [measure(n, s, out, msgs, frames, rate, warmup, hold=cut_every, played=played)
               for n, s, out in targets]
    base = results[0]
    print_fn(f"{'target':<44} {'recv':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
             f"{'CPU ms/frame':>13} {'anon ms p50/p95':>16} {'results':>8} "
             f"{'p95 vs first':>12}")
    for r in results:
        d = r.diagnostics or {}
        anon = (f"{float(d['anonymize_ms_p50']):.0f}/{float(d['anonymize_ms_p95']):.0f}"
                if "anonymize_ms_p50" in d else "-")
        print_fn(f"{r.name:<44} {r.received:>4}/{r.sent:<4} {r.p50_ms:>8.1f} {r.p95_ms:>8.1f} "
                 f"{r.p99_ms:>8.1f} {r.cpu_ms_per_frame:>13.1f} {anon:>16} "
                 f"{d.get('results_published', '-'):>8} {r.p95_ms / base.p95_ms:>11.2f}x")
    if any(r.steady for r in results):
        print_fn(f"frames right after a scene cut (the first {AFTER_CUT_FRAMES} of every {hold}) "
                 "and the rest: published, p50 / p95 / max ms")
        for r in results:
            if r.after_cut and r.steady:
                print_fn(f"  {r.name:<42} after a cut {_split_text(r.after_cut)};"
                         f"  steady {_split_text(r.steady)}")
    figures: dict[str, Any] = {"frame": [width, height], "frames": frames, "rate_hz": rate,
                               "frames_dir": frames_dir, "photos": len(msgs),
                               "hold": hold, "motion": motion, "analysis": analysis,
                               "warmup": warmup,
                               "targets": [r.to_json() for r in results]}
    if baselines:
        figures["p95_ratio"] = round(results[1].p95_ms / base.p95_ms, 3)
    return figures
