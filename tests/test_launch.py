"""The launch files, run by the real `launch` + `launch_ros` (what `ros2 launch` executes): the
node comes up under the requested namespace with the requested backend and stops on shutdown.

`make setup` installs launch and launch_ros from vendor/ros2 and registers vlm_node in the venv's
ament index (share/vlm_node, lib/vlm_node), so `get_package_share_directory` and launch_ros's
executable lookup work as in a colcon install.
"""
from __future__ import annotations

import os
import sys
import threading

import launch
import pytest
from ros_helpers import Harness, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def ament_prefix(monkeypatch):
    prefixes = os.environ.get("AMENT_PREFIX_PATH", "")
    if sys.prefix not in prefixes.split(os.pathsep):
        monkeypatch.setenv("AMENT_PREFIX_PATH", os.pathsep.join(p for p in (sys.prefix, prefixes)
                                                                if p))


@pytest.mark.parametrize("launch_file", ["vlm_node.launch.py", "vlm_node.launch.xml"])
def test_launch_file_starts_node_with_namespace_and_backend(launch_file: str) -> None:
    from ament_index_python.packages import get_package_share_directory
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import AnyLaunchDescriptionSource

    share = get_package_share_directory("vlm_node")
    path = os.path.join(share, "launch", launch_file)
    service = launch.LaunchService()
    service.include_launch_description(launch.LaunchDescription([IncludeLaunchDescription(
        AnyLaunchDescriptionSource(path),
        launch_arguments={"namespace": "car7", "backend": "ocr",
                          "config_file": os.path.join(share, "config",
                                                      "vehicle_1cam.yaml")}.items())]))
    found: dict[str, object] = {}

    def probe() -> None:
        """In a thread: LaunchService must run in the main thread."""
        harness = Harness("launch_probe")
        try:
            # vehicle_1cam.yaml: camera `front` reading the absolute topic /front/image_raw;
            # the outputs are relative names, so they land in the namespace
            wait_for(lambda: harness.node.count_publishers("/car7/scene_understanding") > 0, 60,
                     "/car7/scene_understanding from the launched node")
            wait_for(lambda: harness.node.count_publishers("/car7/front/image_anonymized") > 0,
                     10, "/car7/front/image_anonymized")
            wait_for(lambda: harness.node.count_subscribers("/front/image_raw") > 0, 10,
                     "the node's subscription to /front/image_raw")
            found["names"] = wait_for(
                lambda: [n for n in harness.node.get_node_names_and_namespaces()
                         if n == ("vlm_node", "/car7")], 10, "the node's name in the graph")
            found["types"] = dict(harness.node.get_topic_names_and_types())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            found["error"] = exc
        finally:
            harness.close()
            service.shutdown()

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    code = service.run()
    prober.join(30)
    if "error" in found:
        raise found["error"]
    assert ("vlm_node", "/car7") in found["names"]
    assert found["types"]["/front/image_raw"] == ["sensor_msgs/msg/Image"]
    assert found["types"]["/car7/scene_understanding"] == [
        "vlm_node_interfaces/msg/SceneUnderstanding"]
    assert code == 0
