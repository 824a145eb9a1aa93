"""The `vlm_node` ROS 2 node: wiring only. Pixels and decisions are handled by the core
(`vlm_node.pipeline`); this class owns parameters, QoS, subscriptions, publishers, the analysis
worker thread and diagnostics.

Threads: each camera's subscription has its own mutually exclusive callback group, so a
multi-threaded executor decodes and anonymizes cameras in parallel at camera rate. Analysis runs
in one worker thread fed by latest-frame slots (`LatestFrameScheduler`), so a slow model never
blocks a camera callback and never builds a backlog.

Lifecycle: configure loads models and creates publishers, activate subscribes and starts the
worker, deactivate unsubscribes and stops it, cleanup releases the models. With `autostart`
(default true) `main()` runs configure and activate itself, so `vlm-node run` just works; a
lifecycle manager sets autostart false and drives the transitions.
"""
from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (HistoryPolicy, QoSProfile, ReliabilityPolicy, DurabilityPolicy,
                       qos_profile_sensor_data)
from sensor_msgs.msg import CompressedImage, Image

from vlm_node.analysis.process_analyzer import ProcessAnalyzer
from vlm_node.annotate import annotate
from vlm_node.anonymize.config import AnonymizerConfig, for_frames_in_flight
from vlm_node.anonymize.face_replace import FALLBACK_REASONS
from vlm_node.config import NodeConfig
from vlm_node.errors import AnonymizationError, ConfigError, ImageConversionError, VlmNodeError
from vlm_node.frames import AnonymizedFrame, FrameMeta
from vlm_node.frames_in_flight import FramesInFlight
from vlm_node.pipeline import Analyzer, Pipeline, Tracker, decode
from vlm_node.priority import lower_this_thread, run_lowered
from vlm_node.ros import convert
from vlm_node.ros.parameters import config_with, declare_node_config, is_dynamic
from vlm_node.scheduling import LatestFrameScheduler
from vlm_node.stats import CameraStats
from vlm_node_interfaces.msg import SceneUnderstanding

# Builds the analyzer from the configuration at configure time; tests inject their own.
AnalyzerFactory = Callable[[NodeConfig], Analyzer]
TrackerFactory = Callable[[NodeConfig], Callable[[], Tracker] | None]


class VlmNode(LifecycleNode):
    def __init__(self, node_name: str = "vlm_node", *,
                 analyzer_factory: AnalyzerFactory | None = None,
                 tracker_factory: TrackerFactory | None = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.declare_parameter("autostart", True, ParameterDescriptor(
            description="Configure and activate at start-up (false: wait for a lifecycle "
                        "manager).", read_only=True))
        self.config: NodeConfig = declare_node_config(self)
        self._analyzer_factory = analyzer_factory
        self._tracker_factory = tracker_factory
        self.add_on_set_parameters_callback(self._validate_parameters_callback)
        self.add_post_set_parameters_callback(self._apply_parameters_callback)

        self.stats = {name: CameraStats() for name in self.config.cameras}
        self.pipeline: Pipeline | None = None
        self.scheduler: LatestFrameScheduler | None = None
        self._camera_subs: list[Any] = []
        self._image_pubs: dict[str, Any] = {}
        self._compressed_pubs: dict[str, Any] = {}
        self._annotated_pubs: dict[str, Any] = {}
        self._encodings: dict[str, str] = {}
        self._results_pub = None
        self._worker: threading.Thread | None = None
        self._in_flight: dict[str, FramesInFlight] = {}
        self._running = threading.Event()
        self._warned: dict[str, float] = {}
        # Diagnostics also report while inactive (why is nothing coming out?): plain publisher.
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(self.config.diagnostics_period,
                                             self._diagnostics_callback)

    @property
    def autostart(self) -> bool:
        return bool(self.get_parameter("autostart").value)

    # ---------------------------------------------------------------- lifecycle transitions
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            analyzer = None
            if self.config.analysis_enabled:
                if self._analyzer_factory is None:
                    from vlm_node.analysis.engine import analyzer_from_config
                    factory: AnalyzerFactory = analyzer_from_config
                else:
                    factory = self._analyzer_factory
                if self.config.analysis_process:
                    analyzer = ProcessAnalyzer(
                        factory, self.config, nice=self.config.analysis_nice,
                        max_hold_s=self.config.analysis_yield_max_s).start()
                else:
                    # built in a thread of lowered priority: the threads the analysis starts
                    # (onnxruntime pools, its executor) inherit it and run below the camera
                    # path, like the worker thread (vlm_node/priority.py)
                    analyzer = run_lowered(lambda: factory(self.config),
                                           self.config.analysis_nice)
            trackers = None
            if self._tracker_factory is not None:
                trackers = self._tracker_factory(self.config)
            elif self.config.analysis_enabled:
                from vlm_node.analysis.engine import tracker_factory_from_config
                trackers = tracker_factory_from_config(self.config)
            pipeline = Pipeline(self._anonymizer_config(), analyzer, trackers)
            t0 = time.monotonic()
            prepared = sum(pipeline.add_camera(cam) for cam in self.config.cameras)
            if prepared:
                self.get_logger().info(
                    f"anonymizers set up in {time.monotonic() - t0:.1f} s, the plate text "
                    f"models prepared for {prepared} input shapes (anonymizer.prepare_shapes)")
        except (VlmNodeError, FileNotFoundError, OSError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.pipeline = pipeline
        self.scheduler = LatestFrameScheduler(max_frame_age=self.config.max_frame_age)
        for cam in self.config.cameras:
            cc = self.config.camera_config(cam)
            self.scheduler.add_camera(cam, cc.analysis_rate)
            if self.config.publish_anonymized:
                self._image_pubs[cam] = self.create_lifecycle_publisher(
                    Image, f"{cam}/image_anonymized", qos_profile_sensor_data)
                if cc.publish_compressed:
                    self._compressed_pubs[cam] = self.create_lifecycle_publisher(
                        CompressedImage, f"{cam}/image_anonymized/compressed",
                        qos_profile_sensor_data)
            if cc.publish_annotated:
                self._annotated_pubs[cam] = self.create_lifecycle_publisher(
                    Image, f"{cam}/image_annotated", qos_profile_sensor_data)
        self._results_pub = self.create_lifecycle_publisher(
            SceneUnderstanding, self.config.results_topic,
            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.VOLATILE))
        status = pipeline.status()
        text = (f"configured: cameras {list(self.config.cameras)}, analysis "
                f"{status.get('backend', 'off')} ({status.get('state', '')})")
        if status.get("degraded"):
            self.get_logger().warning(f"{text}, DEGRADED: {status.get('reason')}")
        else:
            self.get_logger().info(text)
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        qos = QoSProfile(depth=self.config.qos_depth, history=HistoryPolicy.KEEP_LAST,
                         reliability=(ReliabilityPolicy.BEST_EFFORT
                                      if self.config.qos_reliability == "best_effort"
                                      else ReliabilityPolicy.RELIABLE))
        for cam in self.config.cameras:
            cc = self.config.camera_config(cam)
            msg_type = CompressedImage if cc.transport == "compressed" else Image
            sub = self.create_subscription(
                msg_type, cc.resolved_topic(cam),
                lambda msg, info, cam=cam: self.image_callback(msg, cam, info), qos,
                callback_group=MutuallyExclusiveCallbackGroup())
            self._camera_subs.append(sub)
            if self.config.frames_in_flight > 1:
                self._in_flight[cam] = FramesInFlight(
                    self.config.frames_in_flight, self._detect_in_flight,
                    lambda item, outcome, cam=cam: self._release_in_flight(cam, item, outcome),
                    name=f"anon_{cam}")
        if self.config.analysis_enabled:
            self._running.set()
            self._worker = threading.Thread(target=self._analysis_loop, name="vlm_analysis",
                                            daemon=True)
            self._worker.start()
        self.get_logger().info("active: " + ", ".join(
            f"{c} <- {self.config.camera_config(c).resolved_topic(c)}"
            for c in self.config.cameras))
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_io()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_io()
        self._release()
        return super().on_shutdown(state)

    def destroy_node(self) -> None:
        """Also finalize the lifecycle state machine, now rather than when the garbage collector
        frees this object. rclpy's `LifecycleNode.destroy_node` leaves it alone, and it owns the
        five lifecycle services (`change_state`, `get_state`, ...), the `transition_event`
        publisher and a reference to the node handle, so the DDS participant too. This class's
        callbacks are bound to it (reference cycles), so only the cyclic collector frees it: until
        then a destroyed node stayed in the graph as a `/vlm_node` whose lifecycle services take
        requests and never answer. A lifecycle client that matched it (ros2 lifecycle, a
        lifecycle manager) could send its request there and wait forever."""
        super().destroy_node()
        self._state_machine.destroy_when_not_in_use()

    def _stop_io(self) -> None:
        for sub in self._camera_subs:
            self.destroy_subscription(sub)
        self._camera_subs.clear()
        for in_flight in self._in_flight.values():  # frames already taken are still published
            in_flight.close()
        self._in_flight.clear()
        self._running.clear()
        if self.scheduler is not None:
            self.scheduler.close()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
            self._worker = None
        if self.scheduler is not None:  # a fresh scheduler for a later activate
            old = self.scheduler
            self.scheduler = LatestFrameScheduler(max_frame_age=self.config.max_frame_age,
                                                  counts=old.counts)
            for cam in self.config.cameras:
                self.scheduler.add_camera(cam, self.config.camera_config(cam).analysis_rate)
                self.scheduler.counts[cam] = old.counts[cam]

    def _release(self) -> None:
        for pub in [*self._image_pubs.values(), *self._compressed_pubs.values(),
                    *self._annotated_pubs.values()]:
            self.destroy_lifecycle_publisher(pub)
        self._image_pubs.clear()
        self._compressed_pubs.clear()
        self._annotated_pubs.clear()
        if self._results_pub is not None:
            self.destroy_lifecycle_publisher(self._results_pub)
            self._results_pub = None
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline = None
        self.scheduler = None

    # ---------------------------------------------------------------- camera path
    def image_callback(self, msg: Image | CompressedImage, camera: str,
                       info: dict[str, int] | None = None) -> None:
        """Decode, anonymize, republish at camera rate, hand to the analysis slot. Never blocks
        on the model; any failure drops this frame only (counted), never the node.

        Age is counted from when the middleware received the frame (`info`), not from when
        this callback runs: when anonymizing is slower than the camera, frames wait in the
        subscription queue, and that wait belongs in `latency_ms` and `max_frame_age`."""
        now = time.monotonic()
        received = now - _queued_seconds(info)
        stats = self.stats[camera]
        stats.on_received()
        pipeline, scheduler = self.pipeline, self.scheduler
        if pipeline is None or scheduler is None:
            # a frame in the middle of a cleanup: never published, and counted like any
            # frame that could not be anonymized (every received frame is accounted for)
            stats.on_drop("anonymizer_failure")
            return
        if now - received > self.config.max_frame_age:
            stats.on_drop("stale_input")
            self._warn_throttled(f"queue:{camera}", f"{camera}: frames waited over "
                                 f"{self.config.max_frame_age} s in the input queue (anonymizing "
                                 f"slower than the camera); dropped, not published late")
            return
        try:
            bgr = decode(msg)
        except ImageConversionError as exc:
            stats.on_drop("decode_error")
            self._warn_throttled(f"decode:{camera}", f"{camera}: frame dropped: {exc}")
            return
        meta = convert.meta_of(msg, camera, received)
        in_flight = self._in_flight.get(camera)
        if in_flight is not None:
            if not in_flight.submit((msg, meta, bgr)):
                stats.on_drop("anonymizer_failure")  # deactivating: never published raw
            return
        try:
            with self._analysis_held(pipeline):
                frame = pipeline.anonymize(meta, bgr)
        except AnonymizationError as exc:
            stats.on_drop("anonymizer_failure")
            self._warn_throttled(f"anon:{camera}", f"{camera}: frame dropped: {exc}")
            return
        self._publish_anonymized(camera, msg, frame)

    def _analysis_held(self, pipeline: Pipeline) -> AbstractContextManager[None]:
        """The analysis process stopped for the block (`analysis_yield`), or nothing."""
        analyzer = pipeline.analyzer
        if not self.config.analysis_yield or not isinstance(analyzer, ProcessAnalyzer):
            return nullcontext()
        return analyzer.held()

    def _detect_in_flight(self, item: tuple[Any, FrameMeta, Any]) -> Any:
        """The detectors on one frame of `frames_in_flight` (a pool thread, frame order)."""
        _, meta, bgr = item
        pipeline = self.pipeline
        if pipeline is None:
            raise AnonymizationError("the node was cleaned up while the frame was in flight")
        with self._analysis_held(pipeline):
            return pipeline.detect(meta.camera, bgr, meta.stamp_ns)

    def _release_in_flight(self, camera: str, item: tuple[Any, FrameMeta, Any],
                           outcome: Any) -> None:
        """Redact and publish one frame of `frames_in_flight` (its release thread, frame
        order). Whatever failed, in detection or here, drops the frame (fail closed)."""
        msg, meta, _ = item
        pipeline = self.pipeline
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            if pipeline is None:
                raise AnonymizationError("the node was cleaned up while the frame was in flight")
            frame = pipeline.release(meta, outcome)
        except Exception as exc:  # noqa: BLE001 - any failure drops the frame, never the node
            self.stats[camera].on_drop("anonymizer_failure")
            self._warn_throttled(f"anon:{camera}", f"{camera}: frame dropped: {exc}")
            return
        self._publish_anonymized(camera, msg, frame)

    def _publish_anonymized(self, camera: str, msg: Any, frame: AnonymizedFrame) -> None:
        """Count, publish and hand to the analysis one anonymized frame."""
        stats, scheduler = self.stats[camera], self.scheduler
        stats.on_anonymized(frame.anonymize_ms, frame.count("face"), frame.count("plate"))
        pub = self._image_pubs.get(camera)
        if pub is not None:
            pub.publish(convert.image_msg(frame, "bgr8") if hasattr(msg, "format")
                        else convert.anonymized_image_msg(msg, frame))
        cpub = self._compressed_pubs.get(camera)
        if cpub is not None:
            cpub.publish(convert.compressed_msg(frame, "jpeg", self.config.jpeg_quality))
        if self.config.analysis_enabled and scheduler is not None:
            scheduler.put(frame)

    def _anonymizer_config(self) -> AnonymizerConfig:
        """The anonymizer's settings for this node's `frames_in_flight`."""
        return for_frames_in_flight(self.config.anonymizer, self.config.frames_in_flight)

    # ---------------------------------------------------------------- analysis worker
    def _analysis_loop(self) -> None:
        lower_this_thread(self.config.analysis_nice)
        while self._running.is_set():
            scheduler, pipeline = self.scheduler, self.pipeline
            if scheduler is None or pipeline is None:
                return
            batch = scheduler.take(timeout=0.25)
            if not batch or not self._running.is_set():
                continue
            try:
                results = pipeline.analyze(batch)
            except Exception as exc:  # noqa: BLE001 - a backend bug must not kill the worker
                for frame in batch:
                    self.stats[frame.meta.camera].on_drop("backend_error")
                self._warn_throttled("analysis", f"analysis failed: {exc}")
                continue
            for frame, result in zip(batch, results):
                stats = self.stats[frame.meta.camera]
                if not scheduler.is_fresh(frame):
                    stats.on_drop("stale_result")
                    continue
                latency_ms = (time.monotonic() - frame.meta.received) * 1e3
                if self._results_pub is not None:
                    self._results_pub.publish(convert.scene_understanding_msg(result, latency_ms))
                apub = self._annotated_pubs.get(frame.meta.camera)
                if apub is not None:
                    apub.publish(convert.annotated_msg(annotate(frame, result.analysis)))
                stats.on_result(latency_ms)

    # ---------------------------------------------------------------- parameters
    def _validate_parameters_callback(self, params: list[Parameter]) -> SetParametersResult:
        changes = {}
        for p in params:
            if p.name == "autostart" or not is_dynamic(p.name):
                return SetParametersResult(
                    successful=False,
                    reason=f"{p.name} cannot change while the node runs (restart with the new "
                           f"value)")
            changes[p.name] = p.value
        try:
            config_with(self.config, changes)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters_callback(self, params: list[Parameter]) -> None:
        self.config = config_with(self.config, {p.name: p.value for p in params})
        if self.pipeline is not None:
            self.pipeline.reconfigure_anonymizer(self._anonymizer_config())
        if self.scheduler is not None:
            self.scheduler.max_frame_age = self.config.max_frame_age
            for cam in self.config.cameras:
                self.scheduler.set_rate(cam, self.config.camera_config(cam).analysis_rate)
        self.get_logger().info("parameters changed: " + ", ".join(
            f"{p.name}={p.value!r}" for p in params))

    # ---------------------------------------------------------------- diagnostics
    def diagnostics(self) -> DiagnosticArray:
        """Per-camera rates, latency percentiles and drops by reason, plus the backend state."""
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        name = self.get_fully_qualified_name()
        status = self.pipeline.status() if self.pipeline is not None else {"state": "unconfigured"}
        degraded = bool(status.get("degraded"))
        backend = DiagnosticStatus(
            name=f"{name}: analysis", hardware_id=name,
            level=DiagnosticStatus.WARN if degraded else DiagnosticStatus.OK,
            message=(f"degraded: {status.get('reason', '')}" if degraded
                     else str(status.get("state", "ok"))))
        backend.values = [KeyValue(key=str(k), value=str(v)) for k, v in status.items()]
        arr.status.append(backend)
        for cam, stats in self.stats.items():
            snap = stats.snapshot()
            if self.scheduler is not None and cam in self.scheduler.counts:
                snap["dropped_stale"] = self.scheduler.counts[cam].stale
                snap["dropped_superseded"] = self.scheduler.counts[cam].superseded
            anon = self.pipeline.anonymizer_stats(cam) if self.pipeline is not None else None
            if anon is not None and self.config.anonymizer.redaction == "replace":
                # faces the `replace` mode had to blur instead, by reason (still redacted)
                for reason in FALLBACK_REASONS:
                    snap[f"replace_fallback_{reason}"] = anon.replace_fallbacks.get(reason, 0)
            drops = sum(v for k, v in snap.items()
                        if k.startswith("dropped_") and k != "dropped_superseded")
            level = DiagnosticStatus.WARN if drops else DiagnosticStatus.OK
            if snap["frames_received"] and not snap["frames_anonymized"]:
                level = DiagnosticStatus.ERROR
            st = DiagnosticStatus(
                name=f"{name}: camera {cam}", hardware_id=cam, level=level,
                message=f"{snap['input_rate_hz']} Hz in, {snap['anonymized_rate_hz']} Hz "
                        f"anonymized, {snap['result_rate_hz']} Hz results, {drops} dropped")
            st.values = [KeyValue(key=k, value=str(v)) for k, v in snap.items()]
            st.values.append(KeyValue(key="degraded", value=str(degraded).lower()))
            arr.status.append(st)
        return arr

    def _diagnostics_callback(self) -> None:
        self._diag_pub.publish(self.diagnostics())

    def _warn_throttled(self, key: str, text: str, period: float = 5.0) -> None:
        now = time.monotonic()
        if now - self._warned.get(key, -1e9) >= period:
            self._warned[key] = now
            self.get_logger().warning(text)


def _queued_seconds(info: dict[str, int] | None) -> float:
    """Seconds since the middleware received the message (rmw `received_timestamp`, system
    clock of this host); 0 when unknown or implausible (clock stepped)."""
    if not info or not info.get("received_timestamp"):
        return 0.0
    waited = (time.time_ns() - int(info["received_timestamp"])) / 1e9
    return waited if 0.0 <= waited < 3600.0 else 0.0
