"""`vlm-node sign-scenes`: real GTSRB sign crops placed into real photos without signs, written
as a labelled full-frame set (`vlm_node/evaluation/sign_scenes.py` says why and how)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vlm_node.errors import ConfigError
from vlm_node.geometry import Box

EXAMPLES = """examples:
  vlm-node sign-scenes gtsrb_train/ street_photos/ -o scenes/
  vlm-node sign-scenes gtsrb_train/ crowds/ --photo-labels crowds/labels.json \\
      --signs-per-photo 3 --sizes 14:48 -o scenes/
  vlm-node sign-scenes gtsrb_train/ road_photos/ --photo-labels road_photos/labels.json \\
      --size 1920x1080 -o scenes_1080p/     # signs at their own size in camera frames
then: vlm-node analyze scenes/ --labels scenes/labels.json --backend ocr --misses-dir misses/
"""


def _sizes(text: str) -> tuple[float, float]:
    lo, sep, hi = text.partition(":")
    try:
        out = float(lo), float(hi)
    except ValueError:
        out = (0.0, 0.0)
    if not sep or not 4 <= out[0] <= out[1]:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX px with 4 <= MIN <= MAX, got {text!r}")
    return out


def _outside(photo: Box, width: int, height: int) -> list[Box]:
    """The bands of a width x height frame around `photo` (a letterboxed photo's place), as
    boxes; none when the photo fills the frame."""
    bands = [Box(0, 0, width, photo.y), Box(0, photo.y2, width, height - photo.y2),
             Box(0, 0, photo.x, height), Box(photo.x2, 0, width - photo.x2, height)]
    return [b for b in bands if b.w >= 1 and b.h >= 1]


def register(sub: argparse._SubParsersAction) -> None:
    from vlm_node.cli.args import add_output, frame_size

    p = sub.add_parser(
        "sign-scenes", help="place real GTSRB sign crops into photos without signs: a "
                            "labelled full-frame set for `analyze --labels`",
        description="Build a labelled full-frame sign set from data you have: crops of the "
                    "GTSRB training split (Kaggle layout), by default only those of the tracks "
                    "the shipped sign classifier held out, pasted into your photos without "
                    "signs at road-camera sizes, their crop margins faded into the photo, each "
                    "frame JPEG-encoded. Writes OUT/<photo>.jpg and OUT/labels.json (every "
                    "placed sign's box, class, value and unit; the photos' own face, plate and "
                    "sign labels carried over). A reading on a photo's own pixels counts as "
                    "false unless --photo-labels lists its signs, so photos without labels "
                    "must hold no sign. The frames keep the photos' own pixels, faces and "
                    "plates included (an evaluation set: `analyze` anonymizes them first), so "
                    "write them only where the photos themselves may be kept.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gtsrb", metavar="GTSRB_DIR",
                   help="GTSRB training split in the Kaggle layout (Train.csv, Train/<class>/)")
    p.add_argument("photos", metavar="PHOTOS",
                   help="a photo, a folder (searched recursively) or a glob of photos without "
                        "signs")
    add_output(p, "DIR", "folder to write the frames and labels.json into", required=True)
    p.add_argument("--photo-labels", metavar="JSON",
                   help="labels.json of PHOTOS: signs are placed clear of its faces, plates "
                        "and signs, which are carried into the output labels (a road photo "
                        "whose signs are all labelled, such as GTSDB's, can take more)")
    p.add_argument("--signs-per-photo", type=int, default=2, metavar="N",
                   help="signs placed in each photo (default 2; fewer where they do not fit)")
    p.add_argument("--sizes", type=_sizes, default=(16.0, 64.0), metavar="MIN:MAX",
                   help="the sign's larger side in px, drawn log-uniformly (default 16:64: the "
                        "sizes a road camera sees signs at)")
    p.add_argument("--size", type=frame_size, metavar="WxH",
                   help="resize each photo to this frame size first, its labels alike, and "
                        "place the signs at --sizes in that frame (e.g. 1920x1080: far signs "
                        "at the size a 1080p camera sees them, where resizing a finished set "
                        "would enlarge the signs with the photo); default: each photo's own "
                        "size")
    p.add_argument("--fit", action="store_true",
                   help="with --size, keep each photo's aspect: scale it to fit and centre it "
                        "on a black frame (as `bench signs --fit`) instead of stretching it")
    p.add_argument("--speed-share", type=float, default=0.5, metavar="P",
                   help="share of placed signs that are speed limits (default 0.5)")
    p.add_argument("--tracks", choices=("held-out", "all"), default="held-out",
                   help="held-out (default): only crops of the tracks --model was not trained "
                        "on (its metadata lists them); all: every crop (the set then scores "
                        "training pixels)")
    p.add_argument("--model", metavar="ONNX",
                   help="the sign classifier whose held-out tracks to use (default: the "
                        "shipped one)")
    p.add_argument("--max-photos", type=int, default=0, metavar="N",
                   help="use at most N photos (0 = all)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of the frames (90)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed: the same arguments give the same set (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np
    from tqdm import tqdm

    from vlm_node.analysis.gtsrb import SPEED_LIMIT_IDS
    from vlm_node.analysis.sign_classifier import DEFAULT_MODEL
    from vlm_node.cli.inputs import collect_images
    from vlm_node.evaluation.labels import labels_by_image
    from vlm_node.evaluation.matching import scaled_signs
    from vlm_node.evaluation.sign_scenes import (CropPicker, held_out_tracks, load_sign_crops,
                                                 place_signs, scene_entry)
    from vlm_node.tools.bench_signs import as_frame

    if args.signs_per_photo < 1:
        raise ConfigError(f"--signs-per-photo must be at least 1, got {args.signs_per_photo}")
    if not 0.0 <= args.speed_share <= 1.0:
        raise ConfigError(f"--speed-share must be in [0, 1], got {args.speed_share}")
    if not 1 <= args.quality <= 100:
        raise ConfigError(f"--quality must be in 1..100, got {args.quality}")
    if args.fit and args.size is None:
        raise ConfigError("--fit letterboxes photos into --size: give --size WxH too")
    out_dir = Path(args.output)
    tracks = (held_out_tracks(Path(args.model or DEFAULT_MODEL))
              if args.tracks == "held-out" else None)
    crops = load_sign_crops(Path(args.gtsrb), tracks)
    rng = np.random.default_rng(args.seed)
    picker = CropPicker(crops, args.speed_share, rng)
    photo_labels = labels_by_image(args.photo_labels, "--photo-labels") \
        if args.photo_labels else {}
    inputs = collect_images(args.photos, exclude=out_dir)
    if args.max_photos > 0:
        inputs = inputs[:args.max_photos]
    entries: list[dict] = []
    skipped = {"unreadable": 0, "no room": 0}
    placed_total = speed = 0
    out_dir.mkdir(parents=True, exist_ok=True)
    names: set[str] = set()
    for src, rel in tqdm(inputs, desc="sign-scenes", unit="photo", file=sys.stderr,
                         disable=None):
        label = photo_labels.get(src.resolve())
        frame = cv2.imread(str(src), cv2.IMREAD_COLOR)
        if frame is None:
            skipped["unreadable"] += 1
            continue
        # (fx, fy, dx, dy): where the photo's labelled boxes go in the frame
        photo_h, photo_w = frame.shape[:2]
        frame, (fx, fy, dx, dy) = as_frame(frame, args.size, args.fit)
        # no sign on a letterbox's black bands (`--fit`): the frame outside the photo
        avoid: list[Box] = _outside(Box(dx, dy, photo_w * fx, photo_h * fy),
                                    frame.shape[1], frame.shape[0])
        carried = {}
        if label is not None:
            for key in ("faces", "faces_ignore", "plates"):
                boxes = getattr(label, key)
                if boxes is not None:
                    boxes = [b.scaled(fx, fy).shifted(dx, dy) for b in boxes]
                    avoid += boxes
                    carried[key] = [b.to_list(2) for b in boxes]
            if label.signs is not None:
                signs = scaled_signs(label.signs, fx, fy, dx, dy)
                avoid += [Box(*s["box"]) for s in signs if s.get("box") is not None]
                carried["signs"] = signs
        placed = place_signs(frame, picker, args.signs_per_photo,
                             (args.sizes[0], args.sizes[1]), rng, avoid)
        if not placed:
            skipped["no room"] += 1
            continue
        name = rel.with_suffix(".jpg").as_posix().replace("/", "__")
        while name in names:  # two photos of one stem in different formats
            name = "_" + name
        names.add(name)
        if not cv2.imwrite(str(out_dir / name), frame, [cv2.IMWRITE_JPEG_QUALITY, args.quality]):
            raise OSError(f"could not write {out_dir / name}")
        h, w = frame.shape[:2]
        entries.append(scene_entry(Path(name), w, h, placed, carried))
        placed_total += len(placed)
        speed += sum(p.crop.class_id in SPEED_LIMIT_IDS for p in placed)
    doc = {"format": "docs/labels.md of vlm_node: boxes are [x, y, w, h] in pixels of the "
                     "image as stored",
           "source": f"vlm-node sign-scenes {args.gtsrb} {args.photos} (tracks {args.tracks}, "
                     f"sizes {args.sizes[0]:g}-{args.sizes[1]:g} px, seed {args.seed}"
                     + (f", photos {'fitted' if args.fit else 'resized'} to "
                        f"{args.size[0]}x{args.size[1]}" if args.size else "") + ")",
           "images": entries}
    (out_dir / "labels.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"{placed_total} signs ({speed} speed limits) placed into {len(entries)} photos from "
          f"{len(crops)} GTSRB crops of {len({c.track for c in crops})} tracks -> "
          f"{out_dir / 'labels.json'}")
    left = {k: v for k, v in skipped.items() if v}
    if left:
        print("photos skipped: " + ", ".join(f"{v} {k}" for k, v in left.items()))
    return 0
