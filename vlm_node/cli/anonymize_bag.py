"""`vlm-node anonymize-bag`: an anonymized copy of a rosbag2 (faces and plates redacted in every
camera topic, all other messages copied byte for byte), of one bag or of many, in this process
or in parallel on a Ray cluster (`--ray`).

Exit status: 0 when every image frame was anonymized, 1 when some were dropped (they are left
out of the output, never copied), 2 on errors (unreadable, corrupt or truncated input, bad
options, a failed chunk); a bag with an error has no output.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlm_node.anonymize.config import REDACTION_MODES
from vlm_node.bags.io import STORAGES
from vlm_node.cli.args import add_config, add_frames_in_flight, frames_in_flight
from vlm_node.errors import ConfigError

if TYPE_CHECKING:
    from vlm_node.bags.ray_runner import RayOptions
    from vlm_node.evaluation.redaction import BagRedactionScorer

RAY_ONLY = ("workers", "chunk_seconds", "warmup_frames")


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
                    "are left out. OUT appears only when complete. Several INs, or one IN that "
                    "is a directory holding bags, make OUT a directory that receives one output "
                    "bag per input under the input's relative name; --ray runs them, cut into "
                    "time chunks, in parallel on a Ray cluster.",
        epilog="Exit status: 0 all frames anonymized, 1 some frames dropped, 2 error (a bag "
               "with an error has no output). Example: vlm-node anonymize-bag /data/drives/ "
               "/data/anon/ --ray auto --chunk-seconds 30")
    p.add_argument("input", metavar="IN", nargs="+",
                   help="bag: a rosbag2 directory (MCAP or sqlite3) or a bare .mcap/.db3 file; "
                        "or a directory holding bags (searched recursively)")
    p.add_argument("output", metavar="OUT",
                   help="bag directory to create; with several bags the directory receiving "
                        "them (created if missing)")
    p.add_argument("--topics", nargs="+", metavar="TOPIC",
                   help="image topics to anonymize (default: every image topic); other image "
                        "topics are not written")
    p.add_argument("--storage", choices=STORAGES,
                   help="storage plugin of OUT (default: the input's)")
    add_config(p, "; its anonymizer.* settings apply")
    p.add_argument("--mode", choices=REDACTION_MODES,
                   help="redaction mode (overrides anonymizer.redaction)")
    p.add_argument("--results-topic", metavar="TOPIC",
                   help="also write a vlm_node_interfaces/SceneUnderstanding per anonymized "
                        "frame on TOPIC with the redaction counts (no analysis: marked "
                        "degraded)")
    p.add_argument("--labels", metavar="JSON",
                   help="labels.json keyed by topic and header stamp (the format of `vlm-node "
                        "sample-bag` and `vlm-node eval`): score the redactions of the "
                        "labelled frames and print face and plate recall, precision and leak "
                        "rate (also in --summary); with several bags, one file for all")
    p.add_argument("--summary", metavar="JSON",
                   help="write counts, timings and the settings used as JSON (with several "
                        "bags or --ray: one entry per bag under \"bags\", plus totals)")
    add_frames_in_flight(p, "released and written",
                         "; not with --ray, whose tasks use one core each")
    p.add_argument("--video-plan", action="store_true",
                   help="use the node's cheaper frame plan (plates in vehicle regions and one "
                        "rotating band per frame, the thorough face pass every "
                        "anonymizer.face_thorough_every frames) instead of the default whole "
                        "pass on every frame: faster, but a plate on no detected vehicle can be "
                        "found 1-2 frames late, which a released recording keeps; not with "
                        "--ray (a time chunk cannot know the plan's cadence)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    ray = p.add_argument_group(
        "parallel on Ray", "Each bag is cut into time chunks; one Ray task anonymizes one chunk "
        "into a temporary chunk bag beside OUT, and this process merges them in order. On a "
        "cluster, IN and OUT must be on storage every node mounts at the same path.")
    ray.add_argument("--ray", metavar="auto|ADDRESS",
                     help="auto: the Ray cluster this machine belongs to, else a new local one; "
                          "or a cluster address, ray://HOST:10001 or HOST:6379")
    ray.add_argument("--workers", type=int, metavar="N",
                     help="chunk tasks running at once (default: as many as the cluster has "
                          "CPUs; each task uses one, or anonymizer.threads)")
    ray.add_argument("--chunk-seconds", type=float, metavar="S",
                     help="length of a chunk in recorded time (default: 30)")
    ray.add_argument("--warmup-frames", type=int, metavar="K",
                     help="frames of each image topic before a chunk run for carry-over but "
                          "not written (default: 2 x (anonymizer.carry_frames + 1) = 8)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vlm_node.bags.anonymize import anonymize_bag
    from vlm_node.config import resolve
    from vlm_node.bags.batch import AnonymizeOptions, anonymize_bags, plan_jobs

    given = [f"--{name.replace('_', '-')}" for name in RAY_ONLY
             if getattr(args, name) is not None]
    if args.ray is None and given:
        raise ConfigError(f"{', '.join(given)} only apply with --ray")
    if args.ray is not None and args.video_plan:
        raise ConfigError("--video-plan does not apply with --ray (its band and face cadence "
                          "count frames from a stream's start, which a time chunk cannot know)")
    if args.ray is not None and args.frames_in_flight is not None:
        raise ConfigError("--frames-in-flight does not apply with --ray (each chunk task runs "
                          "one frame at a time on its CPU; use --workers)")
    in_flight = frames_in_flight(args)
    ray_options = _ray_options(args) if args.ray is not None else None
    config = resolve(args.config,
                     {"anonymizer.redaction": args.mode} if args.mode else None).anonymizer
    labels = _load_labels(args.labels) if args.labels else None
    options = AnonymizeOptions(config, tuple(args.topics) if args.topics else None,
                               args.storage, args.results_topic, args.force, in_flight, labels,
                               args.video_plan)
    progress = False if args.no_progress else None
    jobs, batch = plan_jobs(args.input, args.output)
    if ray_options is None and not batch:
        summary = anonymize_bag(
            args.input[0], args.output, config, topics=options.topics, storage=args.storage,
            results_topic=args.results_topic, force=args.force, progress=progress,
            frames_in_flight=in_flight, labels=labels, video_plan=args.video_plan)
        print(summary.report())
        _write_summary(args.summary, summary.to_json())
        return 1 if summary.dropped else 0
    if ray_options is None:
        result = anonymize_bags(jobs, Path(args.output), options, progress)
    else:
        from vlm_node.bags.ray_runner import anonymize_bags_ray

        result = anonymize_bags_ray(jobs, Path(args.output) if batch else None, options,
                                    ray_options, progress)
    print(result.report())
    for src, error in result.failed.items():
        print(f"vlm-node anonymize-bag: error: {src}: {error}", file=sys.stderr)
    _write_summary(args.summary, result.to_json())
    return 2 if result.failed else 1 if result.dropped else 0


def _load_labels(path: str) -> "BagRedactionScorer":
    from vlm_node.evaluation.labels import load_bag_labels
    from vlm_node.evaluation.redaction import BagRedactionScorer

    try:
        return BagRedactionScorer(load_bag_labels(path))
    except FileNotFoundError as exc:
        raise ConfigError(f"--labels {path}: file not found") from exc


def _ray_options(args: argparse.Namespace) -> "RayOptions":
    from vlm_node.bags.ray_runner import DEFAULT_CHUNK_SECONDS, RayOptions

    return RayOptions(args.ray, args.workers,
                      DEFAULT_CHUNK_SECONDS if args.chunk_seconds is None else args.chunk_seconds,
                      args.warmup_frames)


def _write_summary(path: str | None, data: dict[str, Any]) -> None:
    if not path:
        return
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)
