"""Labels of a recorded bag: the labels.json format of shared/data/README.md, where each image
entry also names the message it labels by `topic` and `stamp_ns` (header stamp, nanoseconds).

Results are matched to labels by topic and header stamp because that pair is what survives a
trip through the node: the node republishes the source header unchanged and names the camera,
while file names and message order do not exist on the wire.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlm_node.errors import ConfigError
from vlm_node.geometry import Box

LabelKey = tuple[str, int]  # (topic, header stamp in ns)


@dataclass(frozen=True)
class FrameLabel:
    """What one image message shows. A kind that is None is not labelled in that frame (it is
    then neither scored as missed nor as falsely detected); an empty list means "none there"."""

    topic: str
    stamp_ns: int
    width: int
    height: int
    signs: tuple[dict[str, Any], ...] | None  # entries as in labels.json ("box" may be None)
    faces: tuple[Box, ...] | None
    plates: tuple[Box, ...] | None

    @property
    def key(self) -> LabelKey:
        return (self.topic, self.stamp_ns)

    def boxes(self, kind: str) -> list[Box] | None:
        """Face or plate boxes in the form `anonymize.evaluation.score_image` takes."""
        found = {"face": self.faces, "plate": self.plates}[kind]
        return None if found is None else list(found)


def _boxes(entry: dict[str, Any], key: str) -> tuple[Box, ...] | None:
    if key not in entry:
        return None
    return tuple(Box.from_list(b) for b in entry[key])


def parse_entry(entry: dict[str, Any]) -> FrameLabel:
    """One `images[]` entry; raises KeyError/ValueError/TypeError on a malformed one."""
    signs = entry.get("signs")
    for sign in signs or ():
        if "class" not in sign:
            raise KeyError(f"a sign without 'class': {sign!r}")
    return FrameLabel(topic=str(entry["topic"]), stamp_ns=int(entry["stamp_ns"]),
                      width=int(entry["width"]), height=int(entry["height"]),
                      signs=None if signs is None else tuple(signs),
                      faces=_boxes(entry, "faces"), plates=_boxes(entry, "plates"))


def load_bag_labels(path: str | Path) -> dict[LabelKey, FrameLabel]:
    """(topic, stamp_ns) -> FrameLabel for every entry of a bag's labels.json. Entries without
    `topic`/`stamp_ns` (plain image labels) cannot belong to a bag message: ConfigError, as for
    duplicates, so a wrong labels file fails loudly instead of scoring nothing."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        entries = doc["images"]
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--labels {path}: not a labels file ({{\"images\": [...]}}): "
                          f"{exc}") from exc
    out: dict[LabelKey, FrameLabel] = {}
    for i, entry in enumerate(entries):
        try:
            label = parse_entry(entry)
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"--labels {path}: images[{i}] is not a bag label (needs topic, "
                              f"stamp_ns, width, height): {exc}") from exc
        if label.key in out:
            raise ConfigError(f"--labels {path}: images[{i}] labels {label.topic} at "
                              f"{label.stamp_ns} a second time")
        out[label.key] = label
    return out
