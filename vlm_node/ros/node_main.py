"""Entry point of `ros2 run vlm_node vlm_node` (and `vlm-node run`)."""
from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Sequence

from vlm_node import fastdds, malloc_tuning

FORCE_AFTER_S = 1.0
"""A second SIGINT/SIGTERM this long after the first exits at once; sooner, it is the same
request arriving twice (terminal and `ros2 launch` both forward Ctrl-C)."""


def main(args: Sequence[str] | None = None, *,
         node_factory: Callable[[], Any] | None = None) -> int:
    """Start the node: apply the large-image Fast DDS profile (unless the user set one), parse
    ROS arguments, configure + activate when `autostart`, spin the executor (`make_executor`), and
    shut down cleanly on SIGINT/SIGTERM.

    rclpy's own signal handlers are replaced: they shut the context down at once, after which
    the node can no longer publish its lifecycle transitions or release its entities in order.
    Here a signal only ends the spin; the node then goes through its shutdown transition (stop
    subscriptions, join the analysis worker, release models) while the context is still valid.
    A second signal (after `FORCE_AFTER_S`) exits immediately. `node_factory` (tests) builds the
    node instead of `VlmNode()`, e.g. with an injected analyzer.
    """
    fastdds.apply()
    malloc_tuning.keep_large_buffers()
    # rclpy after fastdds.apply(): Fast DDS reads the profile variable when the first
    # participant is created.
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.signals import SignalHandlerOptions

    from vlm_node.errors import ConfigError
    from vlm_node.ros.node import VlmNode

    rclpy.init(args=list(args) if args is not None else None,
               signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    first_signal = [0.0]

    def on_signal(signum: int, frame: object) -> None:
        # Ctrl-C under `ros2 launch` in a terminal reaches the node twice within milliseconds:
        # from the terminal (same process group) and forwarded by launch. That is one request;
        # only a signal after FORCE_AFTER_S means "stop now".
        now = time.monotonic()
        if stop.is_set():
            if now - first_signal[0] >= FORCE_AFTER_S:
                os._exit(128 + signum)
            return
        first_signal[0] = now
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    # `kill -USR1 <pid>`: every thread's Python stack to stderr, for a node that stops
    # answering (no debugger or ptrace needed on the vehicle).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    node = None
    try:
        try:
            node = node_factory() if node_factory is not None else VlmNode()
        except ConfigError as exc:
            print(f"vlm_node: {exc}", file=sys.stderr)
            return 2
        if node.autostart:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal("configure failed; see the error above")
                return 1
            if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal("activate failed")
                return 1
        executor = make_executor(len(node.config.cameras))
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, name="executor", daemon=True)
        spinner.start()
        while not stop.wait(0.2) and spinner.is_alive():
            pass
        executor.shutdown(timeout_sec=5.0)
        return 0
    finally:
        if node is not None:
            _shutdown(node)
            node.destroy_node()
        rclpy.try_shutdown()
        faulthandler.unregister(signal.SIGUSR1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def make_executor(cameras: int, context: Any = None) -> "Executor":  # noqa: F821
    """One camera: a single-threaded executor (the analysis worker has its own thread anyway);
    rclpy's MultiThreadedExecutor costs CPU and latency per frame for nothing here (figures in
    README, Node overhead). Several cameras: one thread per camera plus one for timers and
    services, so cameras are decoded and anonymized in parallel (their callback groups allow
    it)."""
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
    if cameras <= 1:
        return SingleThreadedExecutor(context=context)
    return MultiThreadedExecutor(num_threads=cameras + 1, context=context)


def _shutdown(node: "VlmNode") -> None:  # noqa: F821 - imported lazily in main()
    """The lifecycle shutdown transition, from whichever primary state the node is in."""
    state_id, label = node._state_machine.current_state
    if label in ("unconfigured", "inactive", "active"):
        node.trigger_shutdown()
        node.get_logger().info("shut down")


if __name__ == "__main__":
    sys.exit(main())
