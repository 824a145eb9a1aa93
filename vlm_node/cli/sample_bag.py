"""`vlm-node sample-bag`: write a labelled sample rosbag2 (rendered road scenes, K cameras)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from vlm_node.bags.io import STORAGES


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H); argparse turns the ValueError into a usage error naming the option."""
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}")
    return int(w), int(h)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample-bag", help="write a labelled sample rosbag2 of rendered road scenes",
        description="Write a rosbag2 directory (metadata.yaml + MCAP or sqlite3) that `ros2 bag` "
                    "and Foxglove open: K cameras of rendered road scenes (signs of several "
                    "classes and values on the shipped photos, pedestrian faces, plates), camera "
                    "0 as sensor_msgs/Image bgr8 and the others as CompressedImage JPEG, plus /tf "
                    "and /tf_static, and OUT/labels.json with the exact face, plate and sign "
                    "boxes of every image message, keyed by topic and stamp_ns. The same "
                    "arguments always give the same bag.")
    p.add_argument("output", metavar="OUT", help="bag directory to create")
    p.add_argument("--frames", type=int, default=50, help="frames per camera (default 50)")
    p.add_argument("--cameras", type=int, default=2, help="number of cameras, 1..8 (default 2)")
    p.add_argument("--seconds", type=float, default=5.0,
                   help="recording length; the camera rate is frames / seconds (default 5)")
    p.add_argument("--storage", choices=STORAGES, default="mcap",
                   help="storage plugin (default mcap)")
    p.add_argument("--size", type=parse_size, default=(640, 480), metavar="WxH",
                   help="frame size (default 640x480)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vlm_node.tools.sample_bag import write_sample_bag

    t0 = time.perf_counter()
    labels = write_sample_bag(Path(args.output), args.frames, args.cameras, args.seconds,
                              args.storage, args.size, args.seed, force=args.force)
    images = args.frames * args.cameras
    print(f"wrote {args.output} ({args.storage}, {args.cameras} camera(s) x {args.frames} "
          f"frames at {args.size[0]}x{args.size[1]}, {images} images) and {labels} in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0
