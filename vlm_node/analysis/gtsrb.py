"""The 43 GTSRB sign classes and what each means in the message vocabulary: the one table.

The sign classifier is trained on the GTSRB training split, so it answers with a GTSRB class id
(0..42) or `background`. Everything downstream (the published `TrafficSign.sign_class`, its
value and unit, the scoring of labelled photos) needs the message vocabulary instead; this table
is the only place that translation is written down. A class id's number is part of the sign
itself (speed limits, the end of 80), so it is recorded here too, never parsed from a name.
"""
from __future__ import annotations

from dataclasses import dataclass

from vlm_node import vocab


@dataclass(frozen=True, slots=True)
class GtsrbClass:
    """One GTSRB class: its id, a short name, the vocabulary class, and the number it carries."""

    class_id: int
    name: str
    sign_class: str
    value: float | None = None
    unit: str = ""
    # the sign's coloured paint (rim or face): "red", "blue", "yellow", or "" for the grey and
    # white end-of signs; a crop without it is no such sign, whatever the classifier says
    paint: str = "red"

    @property
    def is_speed_limit(self) -> bool:
        return self.sign_class == "speed_limit"

    @property
    def is_triangle(self) -> bool:
        """Whether the sign is a triangle (the warnings, yield, priority at the next
        intersection): what a triangle outline may be read as."""
        return self.class_id in TRIANGLE_IDS

    @property
    def is_round(self) -> bool:
        """Whether the sign is a disc (speed limits, prohibitions, mandatory directions, the
        end-of signs): what a round outline may be read as."""
        return self.class_id in ROUND_IDS

    @property
    def is_diamond(self) -> bool:
        """Whether the sign is a diamond (priority road): what a diamond proposal may be read
        as."""
        return self.class_id in DIAMOND_IDS


_KMH = "km/h"

GTSRB_CLASSES: tuple[GtsrbClass, ...] = (
    GtsrbClass(0, "speed_limit_20", "speed_limit", 20.0, _KMH),
    GtsrbClass(1, "speed_limit_30", "speed_limit", 30.0, _KMH),
    GtsrbClass(2, "speed_limit_50", "speed_limit", 50.0, _KMH),
    GtsrbClass(3, "speed_limit_60", "speed_limit", 60.0, _KMH),
    GtsrbClass(4, "speed_limit_70", "speed_limit", 70.0, _KMH),
    GtsrbClass(5, "speed_limit_80", "speed_limit", 80.0, _KMH),
    GtsrbClass(6, "end_speed_limit_80", "end_speed_limit", 80.0, _KMH, paint=""),
    GtsrbClass(7, "speed_limit_100", "speed_limit", 100.0, _KMH),
    GtsrbClass(8, "speed_limit_120", "speed_limit", 120.0, _KMH),
    GtsrbClass(9, "no_overtaking", "no_overtaking"),
    GtsrbClass(10, "no_overtaking_trucks", "no_overtaking_trucks"),
    GtsrbClass(11, "priority_next_intersection", "priority_next_intersection"),
    GtsrbClass(12, "priority_road", "priority_road", paint=""),  # yellow, often dull: unchecked
    GtsrbClass(13, "yield", "yield"),
    GtsrbClass(14, "stop", "stop"),
    GtsrbClass(15, "no_vehicles", "no_vehicles"),
    GtsrbClass(16, "no_trucks", "no_trucks"),
    GtsrbClass(17, "no_entry", "no_entry"),
    GtsrbClass(18, "general_caution", "general_caution"),
    GtsrbClass(19, "curve_left", "curve_left"),
    GtsrbClass(20, "curve_right", "curve_right"),
    GtsrbClass(21, "double_curve", "double_curve"),
    GtsrbClass(22, "bumpy_road", "bumpy_road"),
    GtsrbClass(23, "slippery_road", "slippery_road"),
    GtsrbClass(24, "road_narrows_right", "road_narrows_right"),
    GtsrbClass(25, "roadworks", "roadworks"),
    GtsrbClass(26, "traffic_signals", "traffic_signals"),
    GtsrbClass(27, "pedestrian_crossing", "pedestrian_crossing"),
    GtsrbClass(28, "children", "children"),
    GtsrbClass(29, "bicycles_crossing", "bicycles_crossing"),
    GtsrbClass(30, "ice_snow", "ice_snow"),
    GtsrbClass(31, "animals", "animals"),
    GtsrbClass(32, "end_all_limits", "end_all_limits", paint=""),
    GtsrbClass(33, "turn_right", "turn_right", paint="blue"),
    GtsrbClass(34, "turn_left", "turn_left", paint="blue"),
    GtsrbClass(35, "ahead_only", "ahead_only", paint="blue"),
    GtsrbClass(36, "straight_or_right", "straight_or_right", paint="blue"),
    GtsrbClass(37, "straight_or_left", "straight_or_left", paint="blue"),
    GtsrbClass(38, "keep_right", "keep_right", paint="blue"),
    GtsrbClass(39, "keep_left", "keep_left", paint="blue"),
    GtsrbClass(40, "roundabout", "roundabout", paint="blue"),
    GtsrbClass(41, "end_no_overtaking", "end_no_overtaking", paint=""),
    GtsrbClass(42, "end_no_overtaking_trucks", "end_no_overtaking_trucks", paint=""),
)

TRIANGLE_IDS: frozenset[int] = frozenset({11, 13} | set(range(18, 32)))
"""GTSRB ids of triangular signs: 11 (priority at the next intersection), 13 (yield, point
down), 18-31 (warnings)."""

DIAMOND_IDS: frozenset[int] = frozenset({12})
"""GTSRB ids of diamond signs: 12 (priority road)."""

ROUND_IDS: frozenset[int] = frozenset(set(range(0, 11)) | {15, 16, 17} | set(range(32, 43)))
"""GTSRB ids of round signs: 0-10 (speed limits, end of 80, no overtaking), 15-17 (no
vehicles, no trucks, no entry), 32-42 (end of all limits, mandatory directions, roundabout,
end of no overtaking). Not round: 12 (priority road, a diamond), 14 (stop, an octagon)."""

NUM_GTSRB = len(GTSRB_CLASSES)
# The classifier's extra class: "this crop is not one of the 43 signs".
BACKGROUND = "background"
BACKGROUND_ID = NUM_GTSRB
# Names of the classifier's outputs, in output order.
CLASSIFIER_LABELS: tuple[str, ...] = tuple(c.name for c in GTSRB_CLASSES) + (BACKGROUND,)
SPEED_LIMIT_IDS: frozenset[int] = frozenset(c.class_id for c in GTSRB_CLASSES if c.is_speed_limit)


def speed_limit_id(value: float | None, unit: str) -> int | None:
    """The GTSRB speed-limit class carrying `value` `unit` (None: GTSRB has no such sign, e.g.
    a 40 or anything in mph)."""
    for c in GTSRB_CLASSES:
        if c.is_speed_limit and c.value == value and c.unit == unit:
            return c.class_id
    return None


def gtsrb_class(class_id: int) -> GtsrbClass:
    """The class for a GTSRB id (0..42)."""
    if not 0 <= class_id < NUM_GTSRB:
        raise ValueError(f"GTSRB class ids are 0..{NUM_GTSRB - 1}; got {class_id}")
    return GTSRB_CLASSES[class_id]


for _c in GTSRB_CLASSES:
    assert _c.class_id == GTSRB_CLASSES.index(_c), f"GTSRB table out of order at {_c.name}"
    assert _c.sign_class in vocab.SIGN_CLASSES, \
        f"GTSRB class {_c.class_id} maps to {_c.sign_class!r}, which TrafficSign.msg lacks"
