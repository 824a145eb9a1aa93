"""`vlm-node anonymize-bag`: an anonymized copy of a rosbag2 (faces and plates redacted in every
camera topic, all other messages copied byte for byte).

Exit status: 0 when every image frame was anonymized, 1 when some were dropped (they are left
out of the output, never copied), 2 on errors (unreadable, corrupt or truncated input, bad
options); then nothing is left at OUT.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from vlm_node.bags.io import STORAGES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "anonymize-bag", help="redact faces and plates in every camera topic of a rosbag2",
        description="Write an anonymized copy of the rosbag2 IN to the new bag directory OUT: "
                    "each sensor_msgs/Image and CompressedImage topic (or those in --topics) is "
                    "anonymized with the node's anonymizer and re-encoded in its own layout "
                    "(encoding and row step; compressed format and estimated JPEG quality); "
                    "every other message is copied byte-identical with its timestamp, QoS "
                    "profiles and message definition. A frame that cannot be anonymized is "
                    "dropped and counted, never copied; image topics not selected by --topics "
                    "are left out. OUT appears only when complete.",
        epilog="Exit status: 0 all frames anonymized, 1 some frames dropped, 2 error (no OUT).")
    p.add_argument("input", metavar="IN",
                   help="bag: a rosbag2 directory (MCAP or sqlite3) or a bare .mcap/.db3 file")
    p.add_argument("output", metavar="OUT", help="bag directory to create")
    p.add_argument("--topics", nargs="+", metavar="TOPIC",
                   help="image topics to anonymize (default: every image topic); other image "
                        "topics are not written")
    p.add_argument("--storage", choices=STORAGES,
                   help="storage plugin of OUT (default: the input's)")
    p.add_argument("--config", metavar="YAML",
                   help="ROS 2 parameters file with anonymizer.* settings, as for `vlm-node "
                        "run --config` (applied over config/default.yaml)")
    p.add_argument("--mode", choices=("blur", "pixelate", "fill", "synthetic"),
                   help="redaction mode (overrides anonymizer.redaction)")
    p.add_argument("--results-topic", metavar="TOPIC",
                   help="also write a vlm_node_interfaces/SceneUnderstanding per anonymized "
                        "frame on TOPIC with the redaction counts (no analysis: marked "
                        "degraded)")
    p.add_argument("--summary", metavar="JSON",
                   help="write counts, timings and the settings used as JSON")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vlm_node.bags.anonymize import anonymize_bag, load_anonymizer_config

    config = load_anonymizer_config(args.config, args.mode)
    summary = anonymize_bag(
        args.input, args.output, config, topics=tuple(args.topics) if args.topics else None,
        storage=args.storage, results_topic=args.results_topic, force=args.force,
        progress=False if args.no_progress else None)
    print(summary.report())
    if args.summary:
        path = Path(args.summary)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(summary.to_json(), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    return 1 if summary.dropped else 0
