"""Start vlm_node on a vehicle.

    ros2 launch vlm_node vlm_node.launch.py config_file:=/path/to/vehicle.yaml \
        namespace:=car1 backend:=transformers

Parameters: the package's config/default.yaml, then `config_file`, then `backend` when given.
The large-image Fast DDS profile shipped with vlm_node is applied to every process this file
starts unless FASTDDS_DEFAULT_PROFILES_FILE is already set (camera drivers publishing 1080p
images need it too: include them in this launch description or give them the same variable).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _node(context, *args, **kwargs):
    share = get_package_share_directory("vlm_node")
    params = [os.path.join(share, "config", "default.yaml")]
    config_file = LaunchConfiguration("config_file").perform(context)
    if config_file:
        params.append(config_file)
    backend = LaunchConfiguration("backend").perform(context)
    if backend:
        params.append({"analysis.backend": backend})
    return [Node(
        package="vlm_node", executable="vlm_node", name="vlm_node",
        namespace=LaunchConfiguration("namespace"), parameters=params, output="screen",
        emulate_tty=True,
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
    )]


def generate_launch_description():
    actions = [
        DeclareLaunchArgument("config_file", default_value="",
                              description="ROS 2 parameters YAML for this vehicle (applied after "
                                          "config/default.yaml)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node and its topics"),
        DeclareLaunchArgument("backend", default_value="",
                              description="override analysis.backend: auto, transformers, openai, "
                                          "ocr or clip"),
        DeclareLaunchArgument("log_level", default_value="info"),
    ]
    if not os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        from vlm_node.fastdds import PROFILE
        actions.append(SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", str(PROFILE)))
    actions.append(OpaqueFunction(function=_node))
    return LaunchDescription(actions)
