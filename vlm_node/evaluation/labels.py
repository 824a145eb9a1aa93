"""The one reader of labels.json files (format: docs/labels.md), for photo sets and bags alike.

A labels file lists images; each entry names the image by `file` (photo sets) and/or by `topic`
and `stamp_ns` (the message of a recorded bag it labels), and may label faces, plates and
signs. A kind absent from an entry is *not labelled* there (neither a miss nor a false
detection can be scored for it); an empty list means "none there".

Bag labels are matched to results by topic and header stamp because that pair is what survives
a trip through the node: the node republishes the source header unchanged and names the camera,
while file names and message order do not exist on the wire.

File paths are relative to the labels file's folder, or to `root` where the caller gives one.
A path that is not found there but starts with that folder's own name is taken relative to the
folder's parent: datasets kept side by side in one data folder write their paths from that
common folder (`faces_wider_train/x.jpg` inside `faces_wider_train/labels.json`), and both
layouts then load without the caller knowing which one it has.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from vlm_node.errors import ConfigError
from vlm_node.geometry import Box

LabelKey = tuple[str, int]  # (topic, header stamp in ns)
BOX_KINDS = {"face": "faces", "plate": "plates"}  # redaction kind -> labels.json key


@dataclass(frozen=True)
class ImageLabel:
    """What one image (a file, or a bag message) shows; see the module docstring for None."""

    file: str | None = None  # as written in the labels file
    path: Path | None = None  # `file` resolved against the labels folder or root
    width: int | None = None
    height: int | None = None
    faces: tuple[Box, ...] | None = None
    plates: tuple[Box, ...] | None = None
    signs: tuple[dict[str, Any], ...] | None = None  # as in labels.json ("box" may be None)
    faces_ignore: tuple[Box, ...] = ()  # faces too small or unclear to count either way
    topic: str | None = None
    stamp_ns: int | None = None

    @property
    def key(self) -> LabelKey:
        """(topic, stamp_ns): what a bag message is looked up by."""
        if self.topic is None or self.stamp_ns is None:
            raise ValueError(f"label of {self.file!r} names no bag message (topic, stamp_ns)")
        return (self.topic, self.stamp_ns)

    def boxes(self, kind: str) -> list[Box] | None:
        """Boxes of a redaction kind ("face" or "plate"); None where it is not labelled."""
        found = {"face": self.faces, "plate": self.plates}[kind]
        return None if found is None else list(found)

    def ignored(self, kind: str) -> list[Box]:
        """Boxes of `kind` that count neither as missed nor as falsely detected."""
        return list(self.faces_ignore) if kind == "face" else []


def _boxes(entry: dict[str, Any], key: str) -> tuple[Box, ...] | None:
    if key not in entry:
        return None
    return tuple(Box.from_list(b) for b in entry[key])


def parse_entry(entry: dict[str, Any], folder: Path | None = None) -> ImageLabel:
    """One `images[]` entry (`file` resolved against `folder` as given, without the
    fallback of `load_labels`); raises KeyError/ValueError/TypeError on a malformed one."""
    signs = entry.get("signs")
    for sign in signs or ():
        if "class" not in sign:
            raise KeyError(f"a sign without 'class': {sign!r}")
    file = entry.get("file")
    topic = entry.get("topic")
    if file is None and topic is None:
        raise KeyError("an entry needs 'file' or 'topic' and 'stamp_ns'")

    def number(key: str) -> int | None:
        return int(entry[key]) if entry.get(key) is not None else None

    return ImageLabel(
        file=None if file is None else str(file),
        path=None if file is None or folder is None else folder / str(file),
        width=number("width"), height=number("height"),
        faces=_boxes(entry, "faces"), plates=_boxes(entry, "plates"),
        signs=None if signs is None else tuple(signs),
        faces_ignore=_boxes(entry, "faces_ignore") or (),
        topic=None if topic is None else str(topic), stamp_ns=number("stamp_ns"))


def _read(path: Path) -> list[Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        entries = doc["images"]
        if not isinstance(entries, list):
            raise TypeError("'images' is not a list")
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a labels file ({{\"images\": [...]}}): {exc}") from exc
    return entries


def _image_root(labels_file: Path, files: Iterable[str]) -> Path:
    """The folder the entries' paths are relative to (module docstring)."""
    folder = labels_file.resolve().parent
    first = next(iter(files), None)
    if first is None or (folder / first).exists():
        return folder
    parts = Path(first).parts
    if parts and parts[0] == folder.name and (folder.parent / first).exists():
        return folder.parent
    return folder


def labels_by_image(path: str | Path, option: str) -> dict[Path, ImageLabel]:
    """The file entries of a labels.json by resolved image path, as the photo tools look their
    inputs up; a missing or malformed file is a ConfigError naming the `option` it came from."""
    try:
        return {item.path.resolve(): item for item in load_labels(path)
                if item.path is not None}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{option} {path}: {exc}") from exc


def load_labels(path: str | Path, root: str | Path | None = None) -> list[ImageLabel]:
    """Every entry of a labels.json, in file order. ConfigError on a malformed file or entry
    (a wrong labels file fails loudly instead of scoring nothing)."""
    path = Path(path)
    entries = _read(path)
    files = (str(e["file"]) for e in entries if isinstance(e, dict) and e.get("file"))
    folder = Path(root) if root is not None else _image_root(path, files)
    out = []
    for i, entry in enumerate(entries):
        try:
            out.append(parse_entry(entry, folder))
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path}: images[{i}] is malformed: {exc}") from exc
    return out


def load_bag_labels(path: str | Path) -> dict[LabelKey, ImageLabel]:
    """(topic, stamp_ns) -> label for every entry of a bag's labels.json. Entries without
    `topic`/`stamp_ns`/`width`/`height` (plain image labels) cannot belong to a bag message:
    ConfigError, as for duplicates."""
    path = Path(path)
    out: dict[LabelKey, ImageLabel] = {}
    for i, label in enumerate(load_labels(path)):
        if None in (label.topic, label.stamp_ns, label.width, label.height):
            raise ConfigError(f"--labels {path}: images[{i}] is not a bag label (needs topic, "
                              f"stamp_ns, width, height)")
        if label.key in out:
            raise ConfigError(f"--labels {path}: images[{i}] labels {label.topic} at "
                              f"{label.stamp_ns} a second time")
        out[label.key] = label
    return out
