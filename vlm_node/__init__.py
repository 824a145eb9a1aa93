"""vlm_node: anonymize camera frames, then read traffic signs and describe the scene.

The core (everything outside `vlm_node.ros`) imports no rclpy, so it runs in plain Python
processes: bag tools, evaluation, Ray workers and unit tests.
"""

__version__ = "0.1.0"
