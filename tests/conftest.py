"""Test-session set-up: an isolated ROS domain so parallel runs on one machine never cross-talk,
and discovery limited to this host."""
import os
import random

# Before anything imports rclpy: the domain id is read when the context is created.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "1")
from vlm_node import fastdds  # noqa: E402

fastdds.apply()
