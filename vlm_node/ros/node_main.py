"""Entry point of `ros2 run vlm_node vlm_node` (and `vlm-node run`)."""
from __future__ import annotations

import sys
from typing import Sequence

from vlm_node import fastdds


def main(args: Sequence[str] | None = None) -> int:
    """Start the node: apply the large-image Fast DDS profile (unless the user set one), parse
    ROS arguments, configure + activate when `autostart`, spin a multi-threaded executor (one
    thread per camera plus the diagnostics timer), and shut down cleanly on SIGINT/SIGTERM."""
    fastdds.apply()
    # rclpy after fastdds.apply(): Fast DDS reads the profile variable when the first
    # participant is created.
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn

    from vlm_node.errors import ConfigError
    from vlm_node.ros.node import VlmNode

    rclpy.init(args=list(args) if args is not None else None)
    node = None
    code = 0
    try:
        try:
            node = VlmNode()
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
        executor = MultiThreadedExecutor(num_threads=len(node.config.cameras) + 2)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            try:
                node.trigger_shutdown()
            except Exception:  # noqa: BLE001 - already shut down or never configured
                pass
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
