"""The baseline of `vlm-node bench node`: a bare rclpy node that republishes every image it
receives, unchanged, with the same QoS as vlm_node. Whatever vlm_node costs beyond this is its
own overhead (decode, anonymizer hand-off, re-encode, bookkeeping).

    python -m vlm_node.tools.echo_node --ros-args -p input:=/cam/image_raw -p output:=/cam/echo
"""
from __future__ import annotations

import sys
from typing import Sequence

from vlm_node import fastdds


def main(args: Sequence[str] | None = None) -> int:
    fastdds.apply()
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init(args=list(args) if args is not None else None)
    node = Node("vlm_echo")
    source = node.declare_parameter("input", "/camera/image_raw").value
    target = node.declare_parameter("output", "/camera/image_echo").value
    pub = node.create_publisher(Image, target, qos_profile_sensor_data)
    node.create_subscription(Image, source, pub.publish, qos_profile_sensor_data)
    node.get_logger().info(f"ready: {source} -> {target}")
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
