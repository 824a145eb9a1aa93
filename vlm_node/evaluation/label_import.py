"""Published ground truth in its own format -> the project's labels.json (docs/labels.md).

Every evaluation command reads one format, so a data set someone downloads in its published
layout is converted once, here, rather than each tool learning four formats. The converters
know the quirks that make a figure silently wrong when guessed:

* **GTSDB** (`gt.txt` of FullIJCNN2013: `00600.ppm;x1;y1;x2;y2;class_id`): corners are
  inclusive pixels of the 1360x800 originals, so copies resized for distribution (the 816x480
  JPEGs around the web) need their boxes scaled; the scale is read from each image's own size.
  An image no line names has no sign of the 43 classes: it is labelled `signs: []` (a reading
  there is a false one), not left out.
* **GTSRB** (`GT-final_test.csv`, `GT-000NN.csv` with `;`, or the Kaggle layout's `Test.csv` /
  `Train.csv` with `,`): one sign per crop, its ROI corners inclusive.
* **WIDER FACE** (`wider_face_{train,val}_bbx_gt.txt`): `x y w h blur expression illumination
  invalid occlusion pose` per face; `invalid` faces become `faces_ignore` (neither missed nor
  falsely found), zero-size boxes are dropped; an image with no face lists one all-zero line.
* **Pascal VOC** XML folders (the Kaggle road-sign and car-plate sets): object names map to
  faces, plates or sign classes (`NAME_MAP`, plus any vocabulary class by its own name);
  names that are not signs to this project (`trafficlight`) are skipped and counted, an
  unknown name is an error unless the caller maps or skips it. A kind any file of the folder
  labels is labelled in every file (an empty list where that file has none): a data set
  labels a kind throughout, so a detection on a photo without one is a false one.
* **YOLO** folders (`<id> <cx> <cy> <w> <h>` per line, normalised to the image, one `.txt` per
  image; Ultralytics keeps them in `labels/<split>/` beside `images/<split>/`): the ids carry
  no names, so each must be mapped (`--map 0=face`) or skipped; an image without its `.txt` is
  left out and counted rather than taken as empty, because a missing file in a copied data set
  is more often a loss than a background image. Kinds are labelled throughout, as for VOC.

Class ids of GTSRB and GTSDB go through the one GTSRB table (`vlm_node.analysis.gtsrb`), so a
speed limit gets its value and unit exactly as the classifier's readings do.
"""
from __future__ import annotations

import csv
import fnmatch
import json
import os
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from vlm_node import vocab
from vlm_node.analysis.gtsrb import GTSRB_CLASSES
from vlm_node.errors import ConfigError
from vlm_node.geometry import Box

GTSDB_SIZE = (1360, 800)
"""Width and height of the GTSDB originals, the frame its gt.txt coordinates are in."""

NAME_MAP: dict[str, str] = {
    # Kaggle andrewmvd road-sign detection (VOC): crosswalk is the blue pedestrian-crossing sign
    "speedlimit": "speed_limit", "crosswalk": "pedestrian_crossing", "stop": "stop",
    # plate and face sets
    "licence": "plate", "license": "plate", "plate": "plate", "licence_plate": "plate",
    "license_plate": "plate", "number_plate": "plate", "face": "face",
}
"""VOC object name (lower case) -> `face`, `plate` or a vocabulary sign class."""

NOT_SIGNS = frozenset({"trafficlight", "traffic_light", "traffic light"})
"""VOC object names skipped by default: not a sign, face or plate to this project."""


@dataclass
class Imported:
    """The entries of one conversion and what was left out, for the command to report."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def counts(self) -> dict[str, int]:
        """Images and labelled objects per kind."""
        out = {"images": len(self.entries)}
        for key in ("faces", "faces_ignore", "plates", "signs"):
            out[key] = sum(len(e.get(key) or ()) for e in self.entries)
        return out


def sign_label(class_id: int, box: Box, where: str) -> dict[str, Any]:
    """A labels.json sign from a GTSRB class id (GTSDB uses the same ids); `where` names the
    source in the error for an id outside 0-42."""
    if not 0 <= class_id < len(GTSRB_CLASSES):
        raise ConfigError(f"{where}: class id {class_id} is not a GTSRB class (0-42)")
    g = GTSRB_CLASSES[class_id]
    sign: dict[str, Any] = {"box": _rounded(box), "class": g.sign_class,
                            "gtsrb_class_id": class_id}
    if g.value is not None:
        sign["value"] = g.value
        sign["unit"] = g.unit
    return sign


def _rounded(box: Box) -> list[float]:
    return [round(v, 2) for v in box.to_list()]


def inclusive_box(x1: float, y1: float, x2: float, y2: float, scale: float = 1.0) -> Box:
    """The box of inclusive pixel corners (GTSDB's gt.txt, GTSRB's ROI columns: x2 is the
    last column inside the sign), optionally scaled to a resized copy."""
    return Box.from_xyxy(x1 * scale, y1 * scale, (x2 + 1) * scale, (y2 + 1) * scale)


def gtsrb_roi(row: Mapping[str, str]) -> Box:
    """The sign's box in a GTSRB CSV row (`Roi.X1` ... `Roi.Y2`)."""
    return inclusive_box(float(row["Roi.X1"]), float(row["Roi.Y1"]), float(row["Roi.X2"]),
                         float(row["Roi.Y2"]))


def gtsrb_track(path: str) -> str:
    """The physical sign a GTSRB training crop shows, "class_track", from its file name
    (`00014_00003_00021.png`: class 14, track 3, frame 21): crops of one track are near-copies,
    so splits and held-out sets go by track."""
    cls, track = Path(path).stem.split("_")[:2]
    return f"{int(cls)}_{int(track)}"


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header (no decoding of the pixels)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable image ({exc})") from exc


def _included(name: str, include: Iterable[str]) -> bool:
    patterns = list(include)
    return not patterns or any(fnmatch.fnmatch(name, p) for p in patterns)


def _image_files(folder: Path) -> list[Path]:
    from vlm_node.cli.inputs import IMAGE_SUFFIXES

    return sorted(p for p in folder.iterdir() if p.is_file()
                  and p.suffix.lower() in IMAGE_SUFFIXES)


def _gtsdb_file(stem: str, by_stem: dict[str, Path]) -> Path | None:
    """The image of gt.txt's `stem` (`00600`): the file of that stem, or a renamed copy whose
    stem ends in it after a separator (`gtsdb_00600.jpg`, `gtsdb-00600.jpg`)."""
    if stem in by_stem:
        return by_stem[stem]
    for other, path in by_stem.items():
        if other.endswith(stem) and len(other) > len(stem) and not other[-len(stem) - 1].isalnum():
            return path
    return None


def import_gtsdb(gt_file: Path, images: Path, include: Iterable[str] = ()) -> Imported:
    """Entries for every image in `images` (filtered by `include` globs on the file name)
    with the signs `gt_file` lists for it, boxes scaled to each image's own size."""
    lines: dict[str, list[tuple[int, list[float]]]] = {}
    with gt_file.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(";")
            try:
                name, x1, y1, x2, y2, cid = parts
                corners = [float(x1), float(y1), float(x2), float(y2)]
                class_id = int(cid)
            except ValueError:
                raise ConfigError(f"{gt_file}:{n}: expected 'file;x1;y1;x2;y2;class_id', got "
                                  f"{line!r}") from None
            lines.setdefault(Path(name).stem, []).append((class_id, corners))
    files = {p.stem: p for p in _image_files(images)}
    out = Imported()
    paths: dict[Path, str] = {}  # image -> the gt.txt stem naming it
    for stem in lines:
        path = _gtsdb_file(stem, files)
        if path is None:
            out.skip("gt.txt boxes of images not in the folder", len(lines[stem]))
        else:
            paths[path] = stem
    for path in files.values():
        if not _included(path.name, include):
            continue
        width, height = image_size(path)
        scale = width / GTSDB_SIZE[0]
        if abs(height / GTSDB_SIZE[1] - scale) > 0.01:
            raise ConfigError(f"{path}: {width}x{height} is not a scaled GTSDB frame (1360x800 "
                              "or the same aspect); its gt.txt boxes cannot be placed")
        where = f"{gt_file} ({path.name})"
        signs = [sign_label(cid, inclusive_box(*c, scale=scale), where)
                 for cid, c in lines.get(paths.get(path, ""), [])]
        out.entries.append({"file": path, "width": width, "height": height, "signs": signs})
    if not out.entries:
        raise ConfigError(f"no image of {images} matched (gt.txt names {len(lines)} images)")
    return out


def import_gtsrb(csv_file: Path, include: Iterable[str] = ()) -> Imported:
    """One entry per crop of a GTSRB CSV (paths relative to the CSV's folder)."""
    text = csv_file.read_text(encoding="utf-8-sig")
    first = text.splitlines()[0] if text else ""
    reader = csv.DictReader(text.splitlines(), delimiter=";" if ";" in first else ",")
    needed = {"Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"}
    columns = set(reader.fieldnames or ())
    if not needed <= columns or not columns & {"Filename", "Path"}:
        raise ConfigError(f"{csv_file}: not a GTSRB CSV (columns {sorted(columns)}; expected "
                          "Filename or Path, Roi.X1..Roi.Y2, ClassId)")
    out = Imported()
    for n, row in enumerate(reader, 2):
        rel = row.get("Path") or row["Filename"]
        if Path(rel).name.startswith("aug_"):
            out.skip("augmented extras (aug_*)")  # some copies carry them; not GTSRB
            continue
        if not _included(rel, include):
            continue
        path = csv_file.parent / rel
        try:
            box = gtsrb_roi(row)
            class_id = int(row["ClassId"])
            width = int(row["Width"]) if row.get("Width") else None
            height = int(row["Height"]) if row.get("Height") else None
        except ValueError as exc:
            raise ConfigError(f"{csv_file}:{n}: {exc}") from None
        if width is None or height is None:
            width, height = image_size(path)
        out.entries.append({"file": path, "width": width, "height": height,
                            "signs": [sign_label(class_id, box, f"{csv_file}:{n}")]})
    return out


def import_wider(gt_file: Path, images: Path, include: Iterable[str] = ()) -> Imported:
    """Entries of a WIDER FACE `*_bbx_gt.txt` (image paths relative to `images`, e.g.
    `WIDER_val/images`, or directly in it for copies without the event folders)."""
    rows = [r.strip() for r in gt_file.read_text(encoding="utf-8").splitlines()]
    out = Imported()
    i = 0
    while i < len(rows):
        name = rows[i]
        if not name:
            i += 1
            continue
        try:
            count = int(rows[i + 1])
        except (IndexError, ValueError):
            raise ConfigError(f"{gt_file}:{i + 2}: expected the face count of {name}") from None
        # an image without faces still has one (all-zero) box line
        face_lines = rows[i + 2:i + 2 + max(count, 1)]
        faces, ignore = [], []
        for k, line in enumerate(face_lines[:count]):
            values = line.split()
            try:
                x, y, w, h = (float(v) for v in values[:4])
                invalid = int(values[7]) if len(values) > 7 else 0
            except ValueError:
                raise ConfigError(f"{gt_file}:{i + 3 + k}: expected 'x y w h blur expression "
                                  f"illumination invalid occlusion pose', got {line!r}") from None
            if w <= 0 or h <= 0:
                out.skip("zero-size face boxes")
                continue
            (ignore if invalid else faces).append([x, y, w, h])
        i += 2 + max(count, 1)
        if not _included(name, include):
            continue
        path = images / name
        if not path.is_file():  # a copy without the event folders
            path = images / Path(name).name
        if not path.is_file():
            out.skip("images listed but not in the folder")
            continue
        width, height = image_size(path)
        out.entries.append({"file": path, "width": width, "height": height, "faces": faces,
                            "faces_ignore": ignore})
    return out


def _voc_kind(name: str, mapping: Mapping[str, str]) -> str | None:
    """`face`, `plate`, a sign class, or None (skip) for a VOC object name."""
    key = name.strip().lower()
    if key in mapping:
        return mapping[key] or None
    if key in NAME_MAP:
        return NAME_MAP[key]
    if key in vocab.SIGN_CLASSES:
        return key
    if key in NOT_SIGNS:
        return None
    raise ConfigError(f"VOC object name {name!r} means nothing to this project; map it "
                      f"(--map {key}=CLASS, a vocabulary class, face or plate) or skip it "
                      f"(--map {key}=)")


def import_voc(folder: Path, images: Path | None = None, include: Iterable[str] = (),
               mapping: Mapping[str, str] | None = None) -> Imported:
    """Entries of every `*.xml` in `folder` (`filename` relative to `images`: default the
    folder itself, or its sibling `images/` or `JPEGImages/` where the file is there)."""
    mapping = {k.lower(): v for k, v in (mapping or {}).items()}
    _check_mapping(mapping)
    xmls = sorted(folder.glob("*.xml"))
    if not xmls:
        raise ConfigError(f"no Pascal VOC .xml files in {folder}")
    roots = [images] if images is not None else [folder, folder.parent / "images",
                                                 folder.parent / "JPEGImages"]
    out = Imported()
    kinds: set[str] = set()
    for xml in xmls:
        try:
            doc = ElementTree.parse(xml).getroot()
        except ElementTree.ParseError as exc:
            raise ConfigError(f"{xml}: not XML ({exc})") from None
        filename = (doc.findtext("filename") or xml.with_suffix(".png").name).strip()
        if not _included(filename, include):
            continue
        path = next((r / filename for r in roots if (r / filename).is_file()), None)
        if path is None:
            out.skip("annotations whose image is not found")
            continue
        entry: dict[str, Any] = {"file": path, "faces": [], "plates": [], "signs": []}
        size = doc.find("size")
        try:
            entry["width"] = int(float(size.findtext("width") or 0)) if size is not None else 0
            entry["height"] = int(float(size.findtext("height") or 0)) if size is not None else 0
        except ValueError:
            entry["width"] = entry["height"] = 0
        if not entry["width"] or not entry["height"]:
            entry["width"], entry["height"] = image_size(path)
        for obj in doc.iter("object"):
            name = obj.findtext("name") or ""
            kind = _voc_kind(name, mapping)
            if kind is None:
                out.skip(f"objects named {name.strip().lower()!r}")
                continue
            bnd = obj.find("bndbox")
            try:
                x1, y1, x2, y2 = (float(bnd.findtext(k) or "") for k in
                                  ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[union-attr]
            except (AttributeError, ValueError):
                raise ConfigError(f"{xml}: object {name!r} has no usable bndbox") from None
            kinds.add(_add_object(entry, kind, Box.from_xyxy(x1, y1, x2, y2)))
        out.entries.append(entry)
    _label_throughout(out.entries, kinds)
    return out


def _check_mapping(mapping: Mapping[str, str]) -> None:
    for key, value in mapping.items():
        if value and value not in ("face", "plate") and value not in vocab.SIGN_CLASSES:
            raise ConfigError(f"--map {key}={value}: not a vocabulary class, face or plate")


def _add_object(entry: dict[str, Any], kind: str, box: Box) -> str:
    """Append a `face`, `plate` or sign-class object to `entry`; returns its labels key."""
    if kind in ("face", "plate"):
        key = kind + "s"
        entry[key].append(_rounded(box))
        return key
    entry["signs"].append({"box": _rounded(box), "class": kind})
    return "signs"


def _label_throughout(entries: list[dict[str, Any]], kinds: set[str]) -> None:
    """A kind the set labels in any file is labelled in every file (an empty list where a file
    has none); a kind it never labels is left out, so nothing is scored for it."""
    for entry in entries:
        for key in ("faces", "plates", "signs"):
            if key not in kinds:
                del entry[key]


def default_yolo_images(labels: Path) -> Path:
    """Where a YOLO label folder's images are by Ultralytics' convention: the same path with
    its last `labels` part replaced by `images` (`ds/labels/train` -> `ds/images/train`), or the
    label folder itself when no part is named `labels`."""
    parts = list(labels.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "labels":
            parts[i] = "images"
            return Path(*parts)
    return labels


def import_yolo(folder: Path, mapping: Mapping[str, str], images: Path | None = None,
                include: Iterable[str] = ()) -> Imported:
    """Entries of the images of `images` (default: `default_yolo_images(folder)`) with their
    `folder/<stem>.txt` boxes; `mapping` gives each class id's kind (`""` skips the id)."""
    _check_mapping(mapping)
    image_dir = images if images is not None else default_yolo_images(folder)
    if not image_dir.is_dir():
        raise ConfigError(f"yolo: no image folder {image_dir}; pass --images DIR")
    label_files = {p.stem: p for p in folder.glob("*.txt")}
    if not label_files:
        raise ConfigError(f"no YOLO .txt label files in {folder}")
    out = Imported()
    kinds: set[str] = set()
    seen: set[str] = set()
    for path in _image_files(image_dir):
        if not _included(path.name, include):
            continue
        txt = label_files.get(path.stem)
        if txt is None:
            out.skip("images without a label file")
            continue
        seen.add(path.stem)
        width, height = image_size(path)
        entry: dict[str, Any] = {"file": path, "width": width, "height": height, "faces": [],
                                 "plates": [], "signs": []}
        for n, line in enumerate(txt.read_text(encoding="utf-8").splitlines(), 1):
            values = line.split()
            if not values:
                continue
            try:
                if len(values) != 5:
                    raise ValueError
                cx, cy, w, h = (float(v) for v in values[1:])
            except ValueError:
                raise ConfigError(f"{txt}:{n}: expected 'class cx cy w h' (normalised boxes; "
                                  f"polygons are not read), got {line!r}") from None
            if not all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)):
                raise ConfigError(f"{txt}:{n}: box values must be normalised to 0..1, got "
                                  f"{line!r}")
            if values[0] not in mapping:
                raise ConfigError(f"{txt}:{n}: class id {values[0]} has no meaning here; map "
                                  f"it (--map {values[0]}=face, plate or a vocabulary class) "
                                  f"or skip it (--map {values[0]}=)")
            kind = mapping[values[0]]
            if not kind:
                out.skip(f"objects of class id {values[0]}")
                continue
            if w <= 0 or h <= 0:
                out.skip("zero-size boxes")
                continue
            box = Box((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height)
            kinds.add(_add_object(entry, kind, box))
        out.entries.append(entry)
    orphans = len(set(label_files) - seen)
    if orphans and not include:
        out.skip("label files without an image", orphans)
    _label_throughout(out.entries, kinds)
    return out


def labels_document(imported: Imported, output: Path, source: str) -> dict[str, Any]:
    """The labels.json document for `imported`, its files relative to `output`'s folder."""
    folder = output.resolve().parent
    images = []
    for entry in imported.entries:
        e = dict(entry)
        e["file"] = Path(os.path.relpath(Path(entry["file"]).resolve(), folder)).as_posix()
        images.append(e)
    return {"format": "docs/labels.md of vlm_node: boxes are [x, y, w, h] in pixels of the "
                      "image as stored", "source": source, "images": images}


def write_labels(imported: Imported, output: Path, source: str) -> None:
    """Write `imported` as labels.json at `output` (folders created)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    doc = labels_document(imported, output, source)
    output.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
