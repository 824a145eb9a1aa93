"""Configuration dataclasses <-> ROS parameters, in one place.

Every leaf of the config tree is declared with a ParameterDescriptor built from its `setting()`
metadata: type, description, numeric range, allowed values (in the description and checked on
set) and read_only for settings that cannot change while running. Values come back as a
validated NodeConfig, so the node never works on a half-checked parameter.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType)
from rclpy.node import Node

from vlm_node.config import CameraConfig, NodeConfig, node_config_from_params
from vlm_node.params import SettingInfo, info_of, walk

_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}


def _param_type(owner: Any, f: dataclasses.Field) -> int:
    hint = typing.get_type_hints(type(owner))[f.name]
    if hint in _TYPES:
        return _TYPES[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (tuple, list) and args and args[0] is str:
        return ParameterType.PARAMETER_STRING_ARRAY
    if origin in (tuple, list) and args and args[0] is float:
        return ParameterType.PARAMETER_DOUBLE_ARRAY
    if origin in (tuple, list) and args and args[0] is int:
        return ParameterType.PARAMETER_INTEGER_ARRAY
    raise TypeError(f"no ROS parameter type for {f.name}: {hint}")


def descriptor(name: str, ptype: int, info: SettingInfo) -> ParameterDescriptor:
    text = info.description
    if info.choices is not None:
        text += f" One of: {', '.join(str(c) for c in info.choices)}."
    d = ParameterDescriptor(name=name, type=ptype, description=text, read_only=not info.dynamic)
    if ptype == ParameterType.PARAMETER_DOUBLE and (info.min is not None or info.max is not None):
        d.floating_point_range = [FloatingPointRange(
            from_value=float(info.min if info.min is not None else -1e300),
            to_value=float(info.max if info.max is not None else 1e300), step=0.0)]
    if ptype == ParameterType.PARAMETER_INTEGER and (info.min is not None or info.max is not None):
        d.integer_range = [IntegerRange(
            from_value=int(info.min if info.min is not None else -2**63),
            to_value=int(info.max if info.max is not None else 2**63 - 1), step=0)]
    return d


def _declare_tree(node: Node, obj: Any, prefix: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, f, value, owner in walk(obj, prefix):
        info = info_of(f)
        if info is None:
            continue  # e.g. the per-camera dict, declared per camera name
        ptype = _param_type(owner, f)
        default = list(value) if isinstance(value, tuple) else value
        param = node.declare_parameter(name, default, descriptor(name, ptype, info))
        values[name] = param.value
    return values


def declare_node_config(node: Node) -> NodeConfig:
    """Declare every parameter (reading overrides from --params-file / -p) and return the
    validated configuration. Raises ConfigError with the reason when a value is invalid."""
    values = _declare_tree(node, NodeConfig(), "")
    cameras = [str(c) for c in values["cameras"]]
    for cam in cameras:
        values.update(_declare_tree(node, CameraConfig(), f"camera.{cam}."))
    return node_config_from_params(values)


def is_dynamic(name: str) -> bool:
    """Whether parameter `name` may change at run time (descriptor read_only is the enforcement;
    this answers for the node's on-set callback)."""
    obj: Any = NodeConfig()
    parts = name.split(".")
    if parts[0] == "camera" and len(parts) == 3:
        obj, parts = CameraConfig(), parts[2:]
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(obj)}
        if part not in fields:
            return False
        if i == len(parts) - 1:
            info = info_of(fields[part])
            return bool(info and info.dynamic)
        obj = getattr(obj, part)
    return False


def config_with(config: NodeConfig, changes: dict[str, Any]) -> NodeConfig:
    """`config` with parameter `changes` (dotted names) applied and validated (ConfigError)."""
    params: dict[str, Any] = {}
    for name, f, value, _ in walk(config):
        if info_of(f) is not None:
            params[name] = value
    for cam, cc in config.camera.items():
        for name, f, value, _ in walk(cc, f"camera.{cam}."):
            params[name] = value
    params.update(changes)
    return node_config_from_params(params)
