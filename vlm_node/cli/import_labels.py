"""`vlm-node import-labels`: convert a data set's published ground truth into labels.json.

GTSDB's gt.txt, GTSRB's CSV files, WIDER FACE's bbx_gt.txt, Pascal VOC folders (the Kaggle
road-sign and car-plate sets) and YOLO label folders become the one labels format every
evaluation command reads (`analyze --labels`, `anonymize --labels`, `bench anonymize
--faces-dev`). The conversion rules are in `vlm_node.evaluation.label_import`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from vlm_node.errors import ConfigError

EXAMPLES = """examples:
  vlm-node import-labels gtsdb FullIJCNN2013/gt.txt --include '00[6-8]*' -o gtsdb_test.json
  vlm-node import-labels gtsrb GTSRB/Final_Test/Images/GT-final_test.csv
  vlm-node import-labels wider wider_face_split/wider_face_val_bbx_gt.txt \\
      --images WIDER_val/images -o wider_val.json
  vlm-node import-labels voc road_signs/annotations -o road_signs.json
  vlm-node import-labels yolo widerface/labels/train --map 0=face -o wider_train.json
then e.g.: vlm-node analyze FullIJCNN2013 --labels gtsdb_test.json --backend ocr
"""


def register(sub: argparse._SubParsersAction) -> None:
    from vlm_node.cli.args import add_output

    p = sub.add_parser(
        "import-labels", help="convert GTSDB, GTSRB, WIDER FACE, Pascal VOC or YOLO ground "
                              "truth into labels.json",
        description="Convert a data set's published ground truth into the labels.json that "
                    "every evaluation command reads (docs/labels.md). GTSDB boxes are scaled "
                    "to each image's size (resized copies work); class ids become vocabulary "
                    "classes with their speed values; WIDER 'invalid' faces become ignore "
                    "boxes; YOLO class ids mean what --map says (they carry no names).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("format", choices=("gtsdb", "gtsrb", "wider", "voc", "yolo"),
                   help="gtsdb: gt.txt (file;x1;y1;x2;y2;class_id); gtsrb: a GT-*.csv, Test.csv "
                        "or Train.csv; wider: a *_bbx_gt.txt; voc: a folder of .xml files; "
                        "yolo: a folder of .txt files ('id cx cy w h', normalised)")
    p.add_argument("source", metavar="SOURCE", help="the ground-truth file (the folder of .xml "
                                                    "or .txt files for voc and yolo)")
    p.add_argument("--images", metavar="DIR",
                   help="where the images are: gtsdb: default the gt.txt's folder; wider: the "
                        "folder the event folders are in (required); voc: default SOURCE, "
                        "../images or ../JPEGImages; yolo: default SOURCE with its last "
                        "'labels' part replaced by 'images'; gtsrb: paths are relative to "
                        "the CSV")
    p.add_argument("--include", metavar="GLOB", action="append", default=[],
                   help="only images whose name (wider, gtsrb: path as listed) matches; "
                        "repeatable, e.g. --include '00[6-8]*' for GTSDB 00600-00899")
    p.add_argument("--map", metavar="NAME=CLASS", action="append", default=[],
                   help="voc: what an object name means, yolo: what a class id means (a "
                        "vocabulary class, face or plate; empty: skip it); repeatable; yolo "
                        "needs one for every id its files use")
    add_output(p, "JSON", "labels file to write (default: labels.json in the images' folder); "
                          "image paths in it are written relative to its folder")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from vlm_node.evaluation import label_import as li

    source = Path(args.source)
    if not source.exists():
        raise FileNotFoundError(f"{args.format} ground truth not found: {source}")
    images = Path(args.images) if args.images else None
    if images is not None and not images.is_dir():
        raise FileNotFoundError(f"--images {images}: not a folder")
    if args.map and args.format not in ("voc", "yolo"):
        raise ConfigError("--map applies to voc and yolo only")
    if args.format in ("voc", "yolo"):
        if not source.is_dir():
            raise ConfigError(f"{args.format}: SOURCE must be the folder of label files, got "
                              f"{source}")
        mapping = {}
        for item in args.map:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise ConfigError(f"--map {item!r}: expected NAME=CLASS (or NAME= to skip)")
            mapping[name] = value
        if args.format == "voc":
            imported = li.import_voc(source, images, args.include, mapping)
        else:
            imported = li.import_yolo(source, mapping, images, args.include)
        default_dir = imported.entries[0]["file"].parent if imported.entries else source
    elif source.is_dir():
        raise ConfigError(f"{args.format}: SOURCE must be the ground-truth file, not a folder")
    elif args.format == "gtsdb":
        imported = li.import_gtsdb(source, images or source.parent, args.include)
        default_dir = images or source.parent
    elif args.format == "gtsrb":
        imported = li.import_gtsrb(source, args.include)
        default_dir = source.parent
    else:
        if images is None:
            raise ConfigError("wider: pass --images DIR (the folder holding 0--Parade/ etc.)")
        imported = li.import_wider(source, images, args.include)
        default_dir = images
    if not imported.entries:
        raise ConfigError(f"no image matched: nothing to write (left out: "
                          f"{imported.skipped or 'nothing'})")
    output = Path(args.output) if args.output else Path(default_dir) / "labels.json"
    if output.exists() and not args.force:
        raise ConfigError(f"{output} exists; pass --force to overwrite it")
    li.write_labels(imported, output, f"vlm-node import-labels {args.format} {source}")
    counts = imported.counts()
    print(f"wrote {output}: " + ", ".join(f"{v} {k}" for k, v in counts.items()
                                          if v or k == "images"))
    for reason, n in sorted(imported.skipped.items()):
        print(f"  left out: {n} {reason}")
    return 0
