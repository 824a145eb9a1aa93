"""The one output schema of the analysis backends, and the parser that turns model text into
validated `SignReading`s and a `SceneInfo`.

The JSON Schema is generated from `vlm_node.vocab` (so it cannot drift from the .msg files) and
committed as `vlm_node/schema/analysis.schema.json` for servers that constrain decoding with it
(`response_format`) and for humans; a test checks the committed file equals `build_schema()`.
Regenerate it with `python -m vlm_node.analysis.schema`.

The parser trusts nothing: structure is taken only from the first top-level JSON object of the
answer, every field is validated on its own (a bad field is dropped or replaced by its documented
default, the rest of the answer is kept), and text read from a sign is only ever a cut string.
Output that cannot be safely repaired raises ModelOutputError.
"""
from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vlm_node.errors import ModelOutputError
from vlm_node.geometry import Box
from vlm_node.results import AnalysisResult, SceneInfo, SignReading
from vlm_node.vocab import (HAZARDS, LIGHTING, ROAD_TYPES, SIGN_CLASSES, SPEED_STEP, UNITS,
                            UNKNOWN, VALUE_RULES, WEATHER)

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema" / "analysis.schema.json"

MAX_TEXT = 64  # TrafficSign.text
MAX_SUMMARY = 200  # SceneDescription.summary
MAX_SIGNS = 16  # more readings than this in one frame is a degenerate (looping) answer
# The model gave no confidence: neither confident nor doubtful. Fusion with OCR moves it.
DEFAULT_CONFIDENCE = 0.5
# Answers longer than this are cut before parsing (then handled as truncated output).
MAX_ANSWER_CHARS = 65536
MAX_DEPTH = 8  # the schema nests 4 deep; deeper input is not an answer


# ------------------------------------------------------------------------------------ schema
def build_schema() -> dict[str, Any]:
    """The JSON Schema of an answer, from the vocabularies.

    Every property is required and nullable where it may be absent, and only keywords that
    OpenAI-style strict structured output and vLLM/llama.cpp grammars all accept are used; limits
    those do not enforce (string lengths, value ranges, uniqueness) are the parser's job.
    """
    sign = {
        "type": "object",
        "additionalProperties": False,
        "required": ["class", "value", "unit", "text", "box", "confidence"],
        "properties": {
            "class": {"type": "string", "enum": list(SIGN_CLASSES),
                      "description": "What the sign means; unknown when unsure."},
            "value": {"type": ["number", "null"],
                      "description": "The number on the sign (speed, weight, height, width), "
                                     "else null."},
            "unit": {"type": "string", "enum": list(UNITS),
                     "description": "Unit of value; empty when value is null."},
            "text": {"type": "string",
                     "description": f"Text printed on the sign, at most {MAX_TEXT} characters."},
            "box": {"anyOf": [{"type": "array", "items": {"type": "number"},
                               "minItems": 4, "maxItems": 4},
                              {"type": "null"}],
                    "description": "[x, y, width, height] in pixels of the image, or null."},
            "confidence": {"type": "number", "description": "0 to 1."},
        },
    }
    scene = {
        "type": "object",
        "additionalProperties": False,
        "required": ["summary", "weather", "lighting", "road_type", "hazards"],
        "properties": {
            "summary": {"type": "string",
                        "description": f"One sentence, at most {MAX_SUMMARY} characters."},
            "weather": {"type": "string", "enum": list(WEATHER)},
            "lighting": {"type": "string", "enum": list(LIGHTING)},
            "road_type": {"type": "string", "enum": list(ROAD_TYPES)},
            "hazards": {"type": "array", "items": {"type": "string", "enum": list(HAZARDS)}},
        },
    }
    return {
        "title": "vlm_node scene analysis",
        "description": "Traffic signs read in one camera image and a description of the scene.",
        "type": "object",
        "additionalProperties": False,
        "required": ["signs", "scene"],
        "properties": {"signs": {"type": "array", "items": sign}, "scene": scene},
    }


def schema_text() -> str:
    """The committed file's exact content."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_text(), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ normalization
# Synonyms small VLMs use for vocabulary values; the target of every alias is a vocabulary value.
CLASS_ALIASES = {
    "give_way": "yield", "do_not_enter": "no_entry", "wrong_way": "no_entry",
    "max_speed": "speed_limit", "maximum_speed": "speed_limit",
    "speed_limit_end": "end_speed_limit", "end_of_speed_limit": "end_speed_limit",
    "no_passing": "no_overtaking", "end_no_passing": "end_no_overtaking",
    "crosswalk": "pedestrian_crossing", "zebra_crossing": "pedestrian_crossing",
    "road_work": "roadworks", "road_works": "roadworks", "construction": "roadworks",
    "traffic_light": "traffic_signals", "traffic_lights": "traffic_signals",
    "warning": "general_caution", "caution": "general_caution", "danger": "general_caution",
    "school_zone": "children", "level_crossing": "railway_crossing",
    "freeway": "motorway", "highway": "motorway", "no_waiting": "no_parking",
    # the white disc with a red rim and nothing inside: "road closed" to all vehicles (DE 250);
    # GTSRB calls it "no vehicles", the one class name it has here
    "road_closed": "no_vehicles", "closed_to_all_vehicles": "no_vehicles",
}
WEATHER_ALIASES = {"sunny": "clear", "overcast": "cloudy", "rainy": "rain", "raining": "rain",
                   "snowy": "snow", "snowing": "snow", "foggy": "fog", "mist": "fog",
                   "misty": "fog", "haze": "fog"}
LIGHTING_ALIASES = {"daytime": "day", "daylight": "day", "dusk": "twilight", "dawn": "twilight",
                    "nighttime": "night", "night_time": "night", "dark": "night",
                    "street_lights": "artificial", "tunnel": "artificial"}
ROAD_ALIASES = {"highway": "motorway", "freeway": "motorway", "expressway": "motorway",
                "autobahn": "motorway", "city": "urban", "street": "urban", "country": "rural",
                "countryside": "rural", "parking_lot": "parking", "car_park": "parking",
                "dirt_road": "offroad", "unpaved": "offroad"}
HAZARD_ALIASES = {"pedestrians": "pedestrian", "person": "pedestrian", "people": "pedestrian",
                  "cyclists": "cyclist", "bicycle": "cyclist", "bike": "cyclist",
                  "crosswalk": "pedestrian_crossing", "construction": "roadworks",
                  "road_work": "roadworks", "road_works": "roadworks",
                  "stopped_car": "stopped_vehicle", "parked_vehicle": "stopped_vehicle",
                  "ambulance": "emergency_vehicle", "police": "emergency_vehicle",
                  "animals": "animal", "fog": "low_visibility", "wet": "wet_road",
                  "ice": "ice_snow", "snow": "ice_snow", "traffic": "traffic_jam",
                  "level_crossing": "railway_crossing", "sun_glare": "glare"}
UNIT_ALIASES = {"km/h": "km/h", "kmh": "km/h", "kph": "km/h", "kmph": "km/h", "km_h": "km/h",
                "km/hr": "km/h", "mph": "mph", "mi/h": "mph", "t": "t", "ton": "t", "tons": "t",
                "tonne": "t", "tonnes": "t", "m": "m", "meter": "m", "meters": "m",
                "metre": "m", "metres": "m"}
SPEED_CLASSES = tuple(c for c, (units, _, _) in VALUE_RULES.items() if "km/h" in units)


def _token(raw: Any) -> str:
    """`" Speed-Limit "` -> `speed_limit`: the form vocabulary values are compared in."""
    if not isinstance(raw, str):
        return ""
    s = re.sub(r"[\s\-/]+", "_", raw.strip().lower())
    return re.sub(r"[^a-z0-9_]", "", s).strip("_")


def _pick(raw: Any, vocabulary: Sequence[str], aliases: dict[str, str]) -> str | None:
    """The vocabulary value `raw` names (directly, as an alias, plural or `..._sign`), or None."""
    t = _token(raw)
    for cand in (t, t.removesuffix("_sign"), t.removesuffix("s")):
        if cand in vocabulary:
            return cand
        if cand in aliases:
            return aliases[cand]
    return None


def normalize_class(raw: Any) -> str:
    """A sign class from the vocabulary; anything else is `unknown`."""
    return _pick(raw, SIGN_CLASSES, CLASS_ALIASES) or UNKNOWN


def normalize_unit(raw: Any) -> str | None:
    if not isinstance(raw, str):
        return None
    return UNIT_ALIASES.get(raw.strip().lower().replace(" ", ""))


def clean_text(raw: Any, limit: int) -> str:
    """Printable single-line text cut to `limit` characters; numbers become their digits."""
    if isinstance(raw, bool) or raw is None:
        return ""
    if isinstance(raw, (int, float)):
        raw = f"{raw:g}" if math.isfinite(raw) else ""
    if not isinstance(raw, str):
        return ""
    chars = [" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in raw]
    return " ".join("".join(chars).split())[:limit].rstrip()


def _number(raw: Any) -> tuple[float | None, str | None]:
    """A finite number from a JSON number or a numeric string (`"50"`, `"50 km/h"`), with the
    unit the string named."""
    if isinstance(raw, bool):
        return None, None
    if isinstance(raw, (int, float)):
        return (float(raw), None) if math.isfinite(raw) else (None, None)
    if isinstance(raw, str):
        m = re.fullmatch(r"\s*(\d{1,4}(?:[.,]\d{1,3})?)\s*([a-zA-Z/ ]{0,6})\s*", raw)
        if m:
            unit = normalize_unit(m.group(2)) if m.group(2).strip() else None
            return float(m.group(1).replace(",", ".")), unit
    return None, None


def check_value(sign_class: str, value: float | None, unit: str | None,
                default_speed_unit: str = "km/h") -> tuple[float | None, str, str]:
    """Validate a sign's number against VALUE_RULES: `(value or None, unit, why dropped)`.

    A class without a rule carries no number; a number outside the class's range, or a speed
    that is not a multiple of SPEED_STEP, is a misreading and is dropped (the sign is kept).
    The unit must be one the class allows; a missing or foreign unit is replaced by the class's
    default (`default_speed_unit` for speeds).
    """
    if value is None:
        return None, "", ""
    rule = VALUE_RULES.get(sign_class)
    if rule is None:
        return None, "", f"class {sign_class} carries no number"
    units, low, high = rule
    if not math.isfinite(value) or not low <= value <= high:
        return None, "", f"{value:g} outside {low:g}..{high:g} for {sign_class}"
    if sign_class in SPEED_CLASSES:
        steps = value / SPEED_STEP
        if abs(steps - round(steps)) > 1e-6:
            return None, "", f"speed {value:g} is not a multiple of {SPEED_STEP:g}"
    if unit not in units:
        unit = default_speed_unit if default_speed_unit in units else units[0]
    return value, unit, ""


# ---------------------------------------------------------------------------- JSON extraction
class _Obj(dict):
    """A JSON object that remembers keys it saw twice (an ambiguous answer)."""

    duplicates: frozenset[str] = frozenset()


def _pairs(pairs: list[tuple[str, Any]]) -> _Obj:
    obj = _Obj()
    dups = set()
    for k, v in pairs:
        if k in obj:
            dups.add(k)
        else:
            obj[k] = v
    obj.duplicates = frozenset(dups)
    return obj


_LITERALS = {"true": "true", "false": "false", "null": "null",
             "True": "true", "False": "false", "None": "null"}
_DELIMS = set(",:[]{}\"' \t\r\n")


class _Scanner:
    """One pass over the answer from its first `{`: copies the top-level object as strict JSON,
    repairing what can be repaired without guessing content (single-quoted strings, Python
    literals, unquoted keys, trailing commas, truncation) and recording each repair."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.out: list[str] = []
        self.stack: list[str] = []
        self.expect_key: list[bool] = []
        self.repairs: list[str] = []
        # (len(out), stack, expect_key) at the last point where the output so far, closed,
        # is valid JSON holding only complete values.
        self.safe: tuple[int, tuple[str, ...], tuple[bool, ...]] = (0, (), ())
        self.end = 0  # index in text after the top-level object

    def _repair(self, what: str) -> None:
        if what not in self.repairs:
            self.repairs.append(what)

    def _mark_safe(self) -> None:
        self.safe = (len(self.out), tuple(self.stack), tuple(self.expect_key))

    def _value_done(self) -> None:
        """A complete value was written (not a key)."""
        self._mark_safe()

    def run(self, start: int) -> str:
        text, n, i = self.text, len(self.text), start
        while i < n:
            c = text[i]
            if c in " \t\r\n":
                self.out.append(c)
                i += 1
            elif c in "{[":
                if len(self.stack) >= MAX_DEPTH:
                    raise ModelOutputError(f"answer nests deeper than {MAX_DEPTH} levels")
                self.stack.append(c)
                self.expect_key.append(c == "{")
                self.out.append(c)
                self._mark_safe()
                i += 1
            elif c in "}]":
                want = "{" if c == "}" else "["
                if not self.stack or self.stack[-1] != want:
                    raise ModelOutputError(f"mismatched {c!r} at character {i}")
                self._drop_trailing_comma()
                self.stack.pop()
                self.expect_key.pop()
                self.out.append(c)
                i += 1
                if not self.stack:
                    self.end = i
                    return "".join(self.out)
                self._value_done()
            elif c == ":":
                self.out.append(c)
                self.expect_key[-1] = False
                i += 1
            elif c == ",":
                self.out.append(c)
                if self.stack[-1] == "{":
                    self.expect_key[-1] = True
                i += 1
            elif c in "\"'":
                i = self._string(i)
            else:
                i = self._bare(i)
        self.end = n
        return self._close_truncated()

    def _drop_trailing_comma(self) -> None:
        j = len(self.out) - 1
        while j >= 0 and self.out[j] in " \t\r\n":
            j -= 1
        if j >= 0 and self.out[j] == ",":
            del self.out[j]
            self._repair("trailing comma removed")

    def _string(self, i: int) -> int:
        text, quote = self.text, self.text[i]
        if quote == "'":
            self._repair("single quotes replaced")
        is_key = self.stack[-1] == "{" and self.expect_key[-1]
        buf = ['"']
        j = i + 1
        while j < len(text):
            c = text[j]
            if c == "\\" and j + 1 < len(text):
                nxt = text[j + 1]
                if quote == "'" and nxt == "'":
                    buf.append("'")
                else:
                    buf.append(c + nxt)
                j += 2
                continue
            if c == quote:
                buf.append('"')
                self.out.append("".join(buf))
                if not is_key:
                    self._value_done()
                return j + 1
            if c == '"':  # only reachable inside a single-quoted string
                buf.append('\\"')
            elif c in "\n\r\t":
                buf.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[c])
            else:
                buf.append(c)
            j += 1
        return j  # unterminated: truncated output; nothing of it is written

    def _bare(self, i: int) -> int:
        text = self.text
        j = i
        while j < len(text) and text[j] not in _DELIMS:
            j += 1
        word = text[i:j]
        truncated = j >= len(text)
        in_key = bool(self.stack) and self.stack[-1] == "{" and self.expect_key[-1]
        if in_key:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", word):
                raise ModelOutputError(f"invalid key {word[:20]!r} at character {i}")
            if not truncated:
                self.out.append(f'"{word}"')
                self._repair("unquoted keys quoted")
            return j
        if truncated:
            return j  # a number or literal cut by truncation may be incomplete: not written
        if word in _LITERALS:
            if _LITERALS[word] != word:
                self._repair("Python literals converted")
            self.out.append(_LITERALS[word])
        elif re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", word):
            self.out.append(word)
        else:
            raise ModelOutputError(f"invalid token {word[:20]!r} at character {i}")
        self._value_done()
        return j

    def _close_truncated(self) -> str:
        self._repair("truncated output closed")
        length, stack, expect = self.safe
        del self.out[length:]
        self.stack, self.expect_key = list(stack), list(expect)
        # Drop a dangling `,` and a key whose value never came.
        while True:
            tail = "".join(self.out).rstrip()
            if tail.endswith(","):
                self.out = list(tail[:-1])
                continue
            break
        for c in reversed(self.stack):
            self.out.append("}" if c == "{" else "]")
        return "".join(self.out)


@dataclass
class Extracted:
    """The top-level JSON value of an answer and what was done to get it."""

    value: Any
    repairs: list[str] = field(default_factory=list)


def extract_json(text: str) -> Extracted:
    """The first top-level JSON object in `text`, repaired where that is safe.

    Prose and code fences around the object are ignored; inside it, repairs never invent
    content: a value cut by truncation is dropped rather than completed. Raises
    ModelOutputError when there is no object or it cannot be repaired.
    """
    if not isinstance(text, str):
        raise ModelOutputError(f"model answer is {type(text).__name__}, not text")
    repairs: list[str] = []
    if len(text) > MAX_ANSWER_CHARS:
        text = text[:MAX_ANSWER_CHARS]
        repairs.append(f"answer cut to {MAX_ANSWER_CHARS} characters")
    start = text.find("{")
    if start < 0:
        raise ModelOutputError(f"no JSON object in model answer: {_excerpt(text)}")
    prefix = text[:start].strip()
    if prefix:
        repairs.append("code fence removed" if prefix.startswith("```")
                       and prefix.count("\n") <= 1 and len(prefix) <= 16
                       else "text before the JSON ignored")
    scanner = _Scanner(text)
    candidate = scanner.run(start)
    repairs += scanner.repairs
    rest = text[scanner.end:].strip()
    if rest and rest.strip("`").strip():
        repairs.append("text after the JSON ignored")
    elif rest:
        repairs.append("code fence removed")
    try:
        value = json.loads(candidate, object_pairs_hook=_pairs)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ModelOutputError(f"model answer is not valid JSON ({exc}): "
                               f"{_excerpt(text[start:])}") from exc
    return Extracted(value, list(dict.fromkeys(repairs)))


def _excerpt(text: str, limit: int = 80) -> str:
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


# ---------------------------------------------------------------------------------- parsing
@dataclass
class ParsedAnalysis:
    """Validated content of one answer, and a record of what validation changed."""

    signs: list[SignReading]
    scene: SceneInfo | None
    repairs: list[str] = field(default_factory=list)  # JSON-level repairs
    issues: list[str] = field(default_factory=list)  # fields dropped or replaced


@dataclass(frozen=True)
class ParseOptions:
    """How model coordinates map onto the frame, and the defaults the parser applies."""

    image_width: int
    image_height: int
    scale_x: float = 1.0  # model (resized image) pixels -> frame pixels
    scale_y: float = 1.0
    default_speed_unit: str = "km/h"
    max_signs: int = MAX_SIGNS
    source: str = "vlm"


def parse_answer(text: str, options: ParseOptions) -> ParsedAnalysis:
    """Model answer text -> validated readings and scene (ModelOutputError when unusable)."""
    extracted = extract_json(text)
    top = extracted.value
    if not isinstance(top, dict):
        raise ModelOutputError("model answer is not a JSON object")
    if top.duplicates & {"signs", "scene"}:
        raise ModelOutputError(f"model answer repeats keys {sorted(top.duplicates)}: ambiguous")
    if "signs" not in top and "scene" not in top:
        raise ModelOutputError(f"model answer has neither `signs` nor `scene`; keys: "
                               f"{sorted(top)[:8]}")
    issues: list[str] = []
    extra = sorted(set(top) - {"signs", "scene"})
    if extra:
        issues.append(f"ignored keys {extra[:8]}")
    signs = _signs(top.get("signs"), options, issues)
    scene = _scene(top.get("scene"), issues)
    return ParsedAnalysis(signs, scene, extracted.repairs, issues)


def _signs(raw: Any, opt: ParseOptions, issues: list[str]) -> list[SignReading]:
    if raw is None:
        return []
    if isinstance(raw, dict):  # one sign given as an object instead of a one-element list
        raw = [raw]
        issues.append("signs was an object, read as a list of one")
    if not isinstance(raw, list):
        issues.append(f"signs is {type(raw).__name__}, not a list: ignored")
        return []
    if len(raw) > opt.max_signs:
        issues.append(f"{len(raw)} signs, only the first {opt.max_signs} kept")
        raw = raw[:opt.max_signs]
    out = []
    for i, item in enumerate(raw):
        reading = _sign(item, i, opt, issues)
        if reading is not None:
            out.append(reading)
    return out


def _sign(obj: Any, i: int, opt: ParseOptions, issues: list[str]) -> SignReading | None:
    if not isinstance(obj, dict):
        issues.append(f"sign {i} is not an object: dropped")
        return None
    if getattr(obj, "duplicates", None):
        issues.append(f"sign {i} repeats keys {sorted(obj.duplicates)}: dropped as ambiguous")
        return None
    extra = sorted(set(obj) - {"class", "value", "unit", "text", "box", "confidence"})
    if extra:
        issues.append(f"sign {i}: ignored keys {extra[:8]}")
    sign_class = normalize_class(obj.get("class"))
    if sign_class == UNKNOWN and obj.get("class") not in (None, UNKNOWN):
        issues.append(f"sign {i}: class {clean_text(obj.get('class'), 32)!r} -> unknown")
    number, unit_in_value = _number(obj.get("value"))
    if obj.get("value") is not None and number is None:
        issues.append(f"sign {i}: value {clean_text(obj.get('value'), 16)!r} is not a number")
    unit = normalize_unit(obj.get("unit")) or unit_in_value
    value, unit, why = check_value(sign_class, number, unit, opt.default_speed_unit)
    if why:
        issues.append(f"sign {i}: value dropped ({why})")
    text = clean_text(obj.get("text"), MAX_TEXT)
    box = _box(obj.get("box"), opt, i, issues)
    confidence = _confidence(obj.get("confidence"))
    if sign_class == UNKNOWN and value is None and not text and box is None:
        issues.append(f"sign {i}: nothing readable: dropped")
        return None
    return SignReading(sign_class=sign_class, confidence=confidence, source=opt.source,
                       value=value, unit=unit, text=text, box=box)


def _box(raw: Any, opt: ParseOptions, i: int, issues: list[str]) -> Box | None:
    if raw is None:
        return None
    ok = (isinstance(raw, list) and len(raw) == 4
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  for v in raw))
    if not ok or raw[2] <= 0 or raw[3] <= 0:
        issues.append(f"sign {i}: box {str(raw)[:40]} is not [x, y, w, h] with w, h > 0")
        return None
    box = Box(*(float(v) for v in raw)).scaled(opt.scale_x, opt.scale_y)
    clipped = box.clipped(opt.image_width, opt.image_height)
    if clipped.w < 1.0 or clipped.h < 1.0:
        issues.append(f"sign {i}: box outside the image")
        return None
    return clipped


def _confidence(raw: Any) -> float:
    value, _ = _number(raw)
    if value is None:
        return DEFAULT_CONFIDENCE
    return min(1.0, max(0.0, value))


def _scene(raw: Any, issues: list[str]) -> SceneInfo | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        issues.append(f"scene is {type(raw).__name__}, not an object: ignored")
        return None
    if raw.duplicates:
        issues.append(f"scene repeats keys {sorted(raw.duplicates)}: ignored as ambiguous")
        return None
    extra = sorted(set(raw) - {"summary", "weather", "lighting", "road_type", "hazards"})
    if extra:
        issues.append(f"scene: ignored keys {extra[:8]}")
    picked = {}
    for key, vocabulary, aliases in (("weather", WEATHER, WEATHER_ALIASES),
                                     ("lighting", LIGHTING, LIGHTING_ALIASES),
                                     ("road_type", ROAD_TYPES, ROAD_ALIASES)):
        value = _pick(raw.get(key), vocabulary, aliases)
        if value is None:
            if raw.get(key) is not None:
                issues.append(f"scene: {key} {clean_text(raw.get(key), 24)!r} -> unknown")
            value = UNKNOWN
        picked[key] = value
    hazards_raw = raw.get("hazards")
    if isinstance(hazards_raw, str):
        hazards_raw = [hazards_raw]
    hazards: list[str] = []
    if isinstance(hazards_raw, list):
        for h in hazards_raw:
            name = _pick(h, HAZARDS, HAZARD_ALIASES)
            if name is None:
                issues.append(f"scene: hazard {clean_text(h, 24)!r} not in the vocabulary")
            elif name not in hazards:
                hazards.append(name)
    elif hazards_raw is not None:
        issues.append("scene: hazards is not a list")
    # The schema asks for no self-reported confidence (a VLM's is uncalibrated); the scene's
    # confidence is how complete it is: the share of enumerated fields with a known value.
    known = sum(1 for v in picked.values() if v != UNKNOWN)
    return SceneInfo(summary=clean_text(raw.get("summary"), MAX_SUMMARY),
                     weather=picked["weather"], lighting=picked["lighting"],
                     road_type=picked["road_type"], hazards=tuple(hazards),
                     confidence=known / 3.0)


class BatchOutputError(ModelOutputError):
    """Some frames of a batch gave unusable answers. `results[i]` is None for those frames and
    `errors[i]` says why; the other frames' results are valid and usable."""

    def __init__(self, results: list[AnalysisResult | None], errors: list[str]) -> None:
        self.results = results
        self.errors = errors
        bad = [i for i, r in enumerate(results) if r is None]
        first = next((e for e in errors if e), "")
        super().__init__(f"{len(bad)} of {len(results)} answers unusable: {first}")


if __name__ == "__main__":
    print(f"wrote {write_schema()}")
