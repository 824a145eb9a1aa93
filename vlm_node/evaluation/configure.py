"""The node configuration an evaluation runs with, and which camera each bag topic feeds.

Both modes start from what `vlm-node run` reads (`vlm_node.config.resolve_params`:
config/default.yaml, then each --config), so the offline replay evaluates the configuration the
live node would run. Cameras come from the
bag: a camera of the configuration whose resolved topic is a bag topic keeps its name (and its
settings); any other image topic gets a camera named after the topic (`/front/image_raw` ->
`front`), because a bag recorded elsewhere rarely matches the local camera list.
"""
from __future__ import annotations

from typing import Any, Sequence

from vlm_node.bags import io
from vlm_node.config import CameraConfig, NodeConfig, camera_name_of, node_config_from_params
from vlm_node.errors import BagError, ConfigError
from vlm_node.params import apply_overrides


def image_topics(bag: io.Bag) -> dict[str, str]:
    """Image topic -> message type; BagError when the bag has none (nothing to evaluate)."""
    topics = {name: t.msgtype for name, t in bag.topics.items() if t.is_image}
    if not topics:
        raise BagError(f"{bag.path}: no sensor_msgs/Image or CompressedImage topic "
                       f"(topics: {', '.join(bag.topics) or 'none'})")
    return topics


def camera_names(topics: Sequence[str], params: dict[str, Any]) -> dict[str, str]:
    """Bag image topic -> camera name (configured name where the topic matches)."""
    configured = params.get("cameras") or ()
    cams = _camera_settings(params)
    by_topic = {}
    for name in configured:
        cc = apply_overrides(CameraConfig(), cams.get(name, {}), f"camera.{name}.")
        by_topic.setdefault(cc.resolved_topic(name), name)
    out: dict[str, str] = {}
    for topic in topics:
        name = by_topic.get(topic) or camera_name_of(topic)
        base, n = name, 2
        while name in out.values():
            name, n = f"{base}_{n}", n + 1
        out[topic] = name
    return out


def _camera_settings(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cams: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        if key.startswith("camera."):
            parts = key.split(".", 2)
            if len(parts) != 3:
                raise ConfigError(f"{key}: expected camera.<name>.<setting>")
            cams.setdefault(parts[1], {})[parts[2]] = value
    return cams


def camera_params(cameras: dict[str, str], compressed: set[str]) -> dict[str, Any]:
    """The parameters that point the node's cameras at the bag's topics (`compressed`: the
    topics carrying sensor_msgs/CompressedImage)."""
    out: dict[str, Any] = {"cameras": list(cameras.values())}
    for topic, name in cameras.items():
        out[f"camera.{name}.topic"] = topic
        out[f"camera.{name}.transport"] = "compressed" if topic in compressed else "raw"
    return out


def node_config_for_bag(params: dict[str, Any], cameras: dict[str, str],
                        compressed: set[str]) -> NodeConfig:
    """NodeConfig with the bag's cameras; settings of configured cameras that are not in the
    bag are left out (they would name cameras the node is not given)."""
    names = set(cameras.values())
    kept = {k: v for k, v in params.items()
            if not k.startswith("camera.") or k.split(".", 2)[1] in names}
    return node_config_from_params({**kept, **camera_params(cameras, compressed)})
