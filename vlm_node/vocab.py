"""Controlled vocabularies (sign classes, units, sources, track states, weather, lighting, road
types, hazards), read from the constants of the vlm_node_interfaces .msg files.

Every validated reading uses these tuples; the JSON schema, the prompts and the parsers are built
from them, so adding a sign class means adding one constant line to TrafficSign.msg.
"""
from __future__ import annotations

from vlm_node.interfaces import msg_constants


def _group(message: str, prefix: str) -> tuple[str, ...]:
    return tuple(v for k, v in msg_constants(message).items() if k.startswith(prefix))


UNKNOWN = "unknown"

SIGN_CLASSES: tuple[str, ...] = _group("TrafficSign", "CLASS_")
UNITS: tuple[str, ...] = _group("TrafficSign", "UNIT_")
SOURCES: tuple[str, ...] = _group("TrafficSign", "SOURCE_")
TRACK_STATES: tuple[str, ...] = _group("TrafficSign", "TRACK_")
WEATHER: tuple[str, ...] = _group("SceneDescription", "WEATHER_")
LIGHTING: tuple[str, ...] = _group("SceneDescription", "LIGHTING_")
ROAD_TYPES: tuple[str, ...] = _group("SceneDescription", "ROAD_")
HAZARDS: tuple[str, ...] = _group("SceneDescription", "HAZARD_")
SCENE_SOURCES: tuple[str, ...] = _group("SceneDescription", "SOURCE_")
OBJECT_CATEGORIES: tuple[str, ...] = _group("DetectedObject", "CATEGORY_")

# Which unit a class's number is in, and the range of plausible values. A value outside the range
# is a misreading (a speed limit of 7 or 1000), so the parser drops the value rather than
# publishes it.
VALUE_RULES: dict[str, tuple[tuple[str, ...], float, float]] = {
    "speed_limit": (("km/h", "mph"), 5.0, 130.0),
    "end_speed_limit": (("km/h", "mph"), 5.0, 130.0),
    "minimum_speed": (("km/h", "mph"), 5.0, 130.0),
    "advisory_speed": (("km/h", "mph"), 5.0, 130.0),
    "weight_limit": (("t",), 1.0, 60.0),
    "height_limit": (("m",), 1.5, 6.0),
    "width_limit": (("m",), 1.5, 5.0),
}

# Words printed on traffic signs (upper case, as OCR reads them). Text that reads two of them
# ("SPEED LIMIT", "ONE WAY", "DO NOT ENTER") is a sign, never a licence plate.
SIGN_WORDS: frozenset[str] = frozenset({
    "SPEED", "LIMIT", "MPH", "KMH", "STOP", "YIELD", "ONE", "WAY", "DO", "NOT", "ENTER",
    "WRONG", "NO", "ENTRY", "END", "MINIMUM", "MAXIMUM", "ZONE", "SCHOOL", "AHEAD", "ONLY",
    "LANE", "TURN", "LEFT", "RIGHT", "EXIT", "ROAD", "WORK", "WORKS", "CLOSED", "PARKING",
    "TOW", "AWAY", "PASSING", "OVERTAKING", "TRUCKS", "WEIGHT", "HEIGHT", "CLEARANCE",
    "PEDESTRIAN", "CROSSING", "MERGE", "SLOW", "DETOUR", "TONS",
})

# Speed limits are posted in multiples of 5 (km/h and mph) almost everywhere.
SPEED_STEP = 5.0

for _cls in VALUE_RULES:
    assert _cls in SIGN_CLASSES, f"VALUE_RULES names {_cls!r}, which TrafficSign.msg lacks"
