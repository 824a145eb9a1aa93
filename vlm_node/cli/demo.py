"""`vlm-node demo`: the whole product on bundled data, over real DDS.

Renders road scenes (speed-limit and other signs composited onto real photos shipped in the
package, some with a pedestrian's face), starts the real node as a separate process (`vlm-node
run`), publishes each scene as a camera frame, and prints what the node published: signs read
(against what was drawn), faces and plates redacted, latency. Writes the anonymized images the
node published and a JSON of its messages to the output directory.

Privacy holds here too: the only pixels written are those received from the node's
`<camera>/image_anonymized` topic; the rendered input frames are never saved.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from vlm_node.anonymize.config import REDACTION_MODES
from vlm_node.cli.args import add_config, frame_size

DEFAULT_CAMERAS = "front,rear"
# Seconds to wait for a frame's anonymized and annotated images after its result.
IMAGE_GRACE_S = 10.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="run the node on bundled road scenes over DDS (writes demo_output/)",
        description="Render road scenes from the photos shipped in the package, play them "
                    "through the real vlm_node process over DDS, print the signs it read, the "
                    "faces/plates it redacted and its latency, and write the anonymized images "
                    "and the published messages (results.json) to --output. The node runs in a "
                    "ROS domain of its own limited to this host, so it does not disturb (or "
                    "hear) other nodes.")
    p.add_argument("--output", "-o", default="demo_output", metavar="DIR",
                   help="output directory (default: demo_output)")
    p.add_argument("--frames", type=int, default=6, metavar="N",
                   help="number of frames to play (default 6: one of each bundled scene)")
    p.add_argument("--cameras", default=DEFAULT_CAMERAS, metavar="A,B",
                   help=f"camera names; frames go to them in turn (default {DEFAULT_CAMERAS})")
    p.add_argument("--size", type=frame_size, default=(640, 480), metavar="WxH",
                   help="frame size (default 640x480)")
    p.add_argument("--backend", default="auto",
                   choices=("auto", "transformers", "openai", "ocr", "clip"),
                   help="analysis backend (default auto: the VLM if it is in the local model "
                        "cache, otherwise OCR marked degraded)")
    add_config(p)
    p.add_argument("--mode", choices=REDACTION_MODES,
                   help="redaction mode of the node (anonymizer.redaction; e.g. replace: "
                        "average faces instead of blurred ones)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="seconds to wait for the node to start and for each result "
                        "(default 120; the first frame loads the models)")
    p.add_argument("--domain-id", type=int, metavar="N",
                   help="ROS_DOMAIN_ID for the demo (default: yours if exported, else random)")
    p.set_defaults(func=run_demo)


def _describe_sign(sign: dict[str, Any]) -> str:
    value = sign.get("value")
    if value is None:
        return str(sign["class"])
    number = int(value) if float(value).is_integer() else value
    unit = f" {sign['unit']}" if sign.get("unit") else ""
    return f"{sign['class']} {number}{unit}"


def run_demo(args: argparse.Namespace) -> int:
    # Imports here keep `vlm-node --help` fast and free of rclpy.
    import cv2

    from vlm_node.tools.process import NodeProcess, NodeProcessError, isolate_this_process
    from vlm_node.evaluation.matching import match_signs
    from vlm_node.tools.render.scenes import ROAD_SCENE_COUNT, load_photos, make_road_scene

    size = args.size
    cameras = [c.strip() for c in args.cameras.split(",") if c.strip()]
    if not cameras:
        raise SystemExit("vlm-node demo: error: --cameras names no camera")
    if args.frames < 1:
        raise SystemExit("vlm-node demo: error: --frames must be at least 1")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("*_anonymized.jpg"), *out.glob("*_annotated.jpg")]:
        old.unlink()

    photos = load_photos()
    scenes = [make_road_scene(i % ROAD_SCENE_COUNT, size, seed=i // ROAD_SCENE_COUNT,
                              photos=photos) for i in range(args.frames)]

    env = isolate_this_process(args.domain_id)
    from vlm_node.tools.player import FramePlayer  # after the DDS environment is set

    ros_args = ["-p", f"cameras:={json.dumps(cameras)}", "-p", "qos_reliability:=reliable",
                "-p", f"analysis.backend:={args.backend}", "-p", "max_frame_age:=60.0",
                # The demo's frames on one camera are unrelated stills, not a video: regions
                # carried over from the previous frame would redact the wrong places.
                "-p", "anonymizer.carry_frames:=0"]
    if args.mode:
        ros_args += ["-p", f"anonymizer.redaction:={args.mode}"]
    for cam in cameras:  # pictures of what the node found, for index.html
        ros_args += ["-p", f"camera.{cam}.publish_annotated:=true"]
    print(f"vlm-node demo: {args.frames} frames {size[0]}x{size[1]} on cameras "
          f"{', '.join(cameras)}; starting the node (ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, "
          f"backend {args.backend}) ...", flush=True)
    t_start = time.monotonic()
    node = NodeProcess(ros_args, configs=args.config, env=env)
    records: list[dict[str, Any]] = []
    rows: list[tuple[str, ...]] = []
    failures = 0
    try:
        node.wait_ready(args.timeout)
        with FramePlayer(cameras) as player:
            player.wait_connected(min(args.timeout, 30.0), annotated=True)
            print(f"node ready in {time.monotonic() - t_start:.1f} s\n", flush=True)
            for i, scene in enumerate(scenes):
                cam = cameras[i % len(cameras)]
                stamp = time.time_ns()
                # the images travel best-effort after the result; a demo waits for what it
                # shows (on a 2 GHz AVX2-only host the annotated frame came > 1 s after it)
                played = player.play(cam, scene.image, stamp, timeout=args.timeout,
                                     image_grace=min(args.timeout, IMAGE_GRACE_S))
                record, row, ok = _report(i, played, scene, match_signs)
                failures += 0 if ok else 1
                if played.anonymized is not None:
                    name = f"{i:02d}_{cam}_anonymized.jpg"
                    if not cv2.imwrite(str(out / name), played.anonymized,
                                       [cv2.IMWRITE_JPEG_QUALITY, 92]):
                        raise OSError(f"could not write {out / name}")
                    record["image"] = name
                if played.annotated is not None:
                    name = f"{i:02d}_{cam}_annotated.jpg"
                    if not cv2.imwrite(str(out / name), played.annotated,
                                       [cv2.IMWRITE_JPEG_QUALITY, 92]):
                        raise OSError(f"could not write {out / name}")
                    record["annotated_image"] = name
                records.append(record)
                rows.append(row)
                if i == 0:
                    print(_format_row(HEADER))
                print(_format_row(row), flush=True)
    except NodeProcessError as exc:
        print(f"vlm-node demo: error: {exc}", file=sys.stderr)
        node.stop()
        return 1
    finally:
        code, _ = node.stop()
    status_line = _node_status(node.output())
    latencies = [r["message"]["latency_ms"] for r in records]
    summary = {
        "frames": len(records), "cameras": cameras, "size": list(size),
        "signs_expected": sum(len(r["expected"]) for r in records),
        "signs_read_correctly": sum(r["correct"] for r in records),
        "false_readings": sum(r["false_readings"] for r in records),
        "faces_expected": sum(r["faces_expected"] for r in records),
        "faces_redacted": sum(r["message"]["faces_redacted"] for r in records),
        "plates_expected": sum(r["plates_expected"] for r in records),
        "plates_redacted": sum(r["message"]["plates_redacted"] for r in records),
        "latency_ms": {"p50": round(float(np.percentile(latencies, 50)), 1),
                       "p90": round(float(np.percentile(latencies, 90)), 1),
                       "mean": round(statistics.fmean(latencies), 1)},
        "backend": records[-1]["message"]["backend"] if records else "",
        "degraded_reason": records[-1]["message"]["degraded_reason"] if records else "",
        "node_exit_status": code,
    }
    (out / "results.json").write_text(json.dumps({"summary": summary, "frames": records},
                                                 indent=1) + "\n", encoding="utf-8")
    print(f"\nsigns read correctly: {summary['signs_read_correctly']}/"
          f"{summary['signs_expected']} (false readings: {summary['false_readings']}); "
          f"faces redacted: {summary['faces_redacted']} (pedestrian faces drawn: "
          f"{summary['faces_expected']}); plates redacted: {summary['plates_redacted']} "
          f"(plates in the photos: {summary['plates_expected']})")
    print(f"latency from frame arrival to result: p50 {summary['latency_ms']['p50']} ms, "
          f"p90 {summary['latency_ms']['p90']} ms")
    print(f"backend: {summary['backend']}" + (f" (degraded: {summary['degraded_reason']})"
                                              if summary["degraded_reason"] else ""))
    if status_line and not summary["degraded_reason"]:
        print(status_line)
    page = _write_page(out, summary, records, rows)
    print(f"wrote {len(records)} anonymized images, results.json and {page.name} to {out}/")
    return 1 if failures else 0


def _write_page(out: Path, summary: dict[str, Any], records: list[dict[str, Any]],
                rows: list[tuple[str, ...]]) -> Path:
    """index.html: the summary, the per-frame table (with the scene as described) and every
    annotated frame as the node published it."""
    from vlm_node.html_report import Page, Picture, Table, write_page

    scene_cells = []
    for r in records:
        scene = r["message"].get("scene")
        scene_cells.append(f"[{scene['source']}] {scene['summary']}" if scene else "-")
    table = Table("What the node published, per frame", (*HEADER, "scene"),
                  [(*row, scene) for row, scene in zip(rows, scene_cells)])
    figures = Table("Summary", ("figure", "value"), [
        ("signs read correctly", f"{summary['signs_read_correctly']}/{summary['signs_expected']}"),
        ("false readings", summary["false_readings"]),
        ("faces redacted (pedestrian faces drawn)",
         f"{summary['faces_redacted']} ({summary['faces_expected']})"),
        ("plates redacted (plates in the photos)",
         f"{summary['plates_redacted']} ({summary['plates_expected']})"),
        ("latency p50 / p90", f"{summary['latency_ms']['p50']} / {summary['latency_ms']['p90']}"
                              " ms"),
        ("backend", summary["backend"] + (f" (degraded: {summary['degraded_reason']})"
                                          if summary["degraded_reason"] else ""))])
    frames = [Picture(r["annotated_image"], f"#{r['index']} {r['camera']}")
              for r in records if r.get("annotated_image")]
    notes = ["Frames as published on <camera>/image_annotated: drawn on the anonymized frame "
             "(redactions outlined, signs with class, value, unit and track state, scene "
             "objects, a banner when degraded). Data: results.json."]
    return write_page(out, Page("vlm-node demo", notes, [figures, table], frames))


HEADER = ("#", "camera", "stamp", "signs read", "drawn", "faces", "plates", "latency")
WIDTHS = (2, 7, 20, 30, 42, 5, 6, 9)


def _format_row(row: tuple[str, ...]) -> str:
    return "  ".join(str(v).ljust(w) for v, w in zip(row, WIDTHS)).rstrip()


def _report(i: int, played: Any, scene: Any, match_signs: Any
            ) -> tuple[dict[str, Any], tuple[str, ...], bool]:
    from vlm_node.ros import convert

    msg = convert.scene_understanding_to_json(played.result)
    readings = [convert.sign_reading_of(s) for s in played.result.signs]
    expected = [s.to_json() for s in scene.signs]
    matches = match_signs(readings, expected)
    correct = sum(1 for m in matches if m.value_ok)
    extra = [m for m in matches if m.label is None]
    record = {"index": i, "camera": played.camera, "stamp_ns": played.stamp_ns,
              "background": scene.background, "expected": expected, "correct": correct,
              "false_readings": len(extra), "faces_expected": len(scene.faces or []),
              "plates_expected": len(scene.plates or []),
              "message": msg, "round_trip_ms": round(played.round_trip_ms, 1)}
    read = ", ".join(_describe_sign(s) for s in msg["signs"]) or "-"
    drawn = ", ".join(_describe_sign(s) for s in expected)
    mark = "ok" if correct == len(expected) and not extra else f"{correct}/{len(expected)}"
    stamp = f"{played.stamp_ns // 1_000_000_000}.{played.stamp_ns % 1_000_000_000:09d}"
    row = (str(i), played.camera, stamp, read, f"{drawn} [{mark}]",
           str(msg["faces_redacted"]), str(msg["plates_redacted"]), f"{msg['latency_ms']:.0f} ms")
    ok = played.anonymized is not None
    return record, row, ok


def _node_status(log: str) -> str:
    """The node's own `configured:` line (backend and why it is degraded), for the summary."""
    for line in log.splitlines():
        if "configured:" in line:
            return "node: " + line.split("configured:", 1)[1].strip()
    return ""
