"""Typed settings: one declaration gives the default, the description, the valid range and
whether the value may change at run time.

Configuration objects are dataclasses whose fields are declared with `setting(...)`. The ROS node
turns each field into a declared parameter with a `ParameterDescriptor` built from this metadata,
YAML files map onto the same names, and `validate()` gives one clear reason per bad value, so the
node, the CLI and the bag tools accept and reject exactly the same configurations.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Iterator, Sequence, get_type_hints

from vlm_node.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SettingInfo:
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    dynamic: bool = False  # may change while the node runs


def setting(default: Any = dataclasses.MISSING, description: str = "", *, min: float | None = None,
            max: float | None = None, choices: Sequence[Any] | None = None, dynamic: bool = False,
            default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field carrying a SettingInfo (description, range, choices, run-time change)."""
    info = SettingInfo(description, min, max, tuple(choices) if choices is not None else None,
                       dynamic)
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata={"setting": info})
    return field(default=default, metadata={"setting": info})


def info_of(f: dataclasses.Field) -> SettingInfo | None:
    return f.metadata.get("setting")


def check_value(name: str, value: Any, info: SettingInfo) -> str | None:
    """Why `value` is not acceptable for setting `name`, or None when it is."""
    if info.choices is not None:
        values = value if isinstance(value, (list, tuple)) else [value]
        bad = [v for v in values if v not in info.choices]
        if bad:
            return (f"{name}={value!r} is not allowed; choose from "
                    f"{', '.join(repr(c) for c in info.choices)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return f"{name}={value!r} must be a finite number"
        if info.min is not None and value < info.min:
            return f"{name}={value!r} is below the minimum {info.min:g}"
        if info.max is not None and value > info.max:
            return f"{name}={value!r} is above the maximum {info.max:g}"
    return None


def walk(obj: Any, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any, Any]]:
    """Yield (dotted_name, field, value, owner) for every leaf setting of a nested dataclass."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        name = f"{prefix}{f.name}"
        if is_dataclass(value) and not isinstance(value, type):
            yield from walk(value, name + ".")
        else:
            yield name, f, value, obj


def validate(obj: Any, prefix: str = "") -> None:
    """Raise ConfigError naming every invalid setting of `obj` (nested dataclasses included);
    `prefix` is prepended to the names in the message (e.g. "camera.front.")."""
    problems = []
    for name, f, value, _ in walk(obj, prefix):
        info = info_of(f)
        if info is not None:
            reason = check_value(name, value, info)
            if reason:
                problems.append(reason)
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Convert YAML/CLI values to the field's type (int -> float where a float is declared)."""
    text = str(annotation)
    if (text in ("float", "<class 'float'>") and isinstance(value, int)
            and not isinstance(value, bool)):
        return float(value)
    if text in ("int", "<class 'int'>") and isinstance(value, float) and value.is_integer():
        return int(value)
    if text.startswith("tuple") and isinstance(value, list):
        return tuple(value)
    expected = {"float": (int, float), "int": (int,), "bool": (bool,), "str": (str,)}.get(
        text.replace("<class '", "").replace("'>", ""))
    if expected and (not isinstance(value, expected) or
                     (bool not in expected and isinstance(value, bool))):
        raise ConfigError(f"{name}={value!r} has the wrong type; expected {expected[-1].__name__}")
    return value


def apply_overrides(obj: Any, values: dict[str, Any], prefix: str = "") -> Any:
    """A copy of dataclass `obj` with `values` applied; keys are field names or dotted paths
    (`anonymizer.face_threshold`) or nested dicts. Unknown keys raise ConfigError."""
    hints = get_type_hints(type(obj))
    flat: dict[str, Any] = {}
    for key, value in values.items():
        head, _, rest = key.partition(".")
        if rest:
            flat.setdefault(head, {})[rest] = value
        else:
            flat[head] = value
    changes: dict[str, Any] = {}
    names = {f.name for f in fields(obj)}
    for key, value in flat.items():
        if key not in names:
            raise ConfigError(f"unknown setting {prefix + key!r}; known: "
                              f"{', '.join(sorted(names))}")
        current = getattr(obj, key)
        if is_dataclass(current) and isinstance(value, dict):
            changes[key] = apply_overrides(current, value, f"{prefix}{key}.")
        else:
            changes[key] = _coerce(prefix + key, value, hints[key])
    return dataclasses.replace(obj, **changes)
