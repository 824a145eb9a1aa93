#!/usr/bin/env python3
"""Throughput of `anonymize-bag` on one bag: the single-process path against Ray with 1, 2, ...
workers, in one run on the same bag, so that the rows share the machine's state.

Why a script and not a test: the figures depend on the machine and on what else runs on it;
each row therefore records the load average and how busy the machine's CPUs were during the
run (other jobs show as busy CPU the run cannot have used). Used for docs/bags.md:

    .venv/bin/python scripts/bench_bag_ray.py --bag /tmp/bag1080 --workers 1 2 --chunk-seconds 3

The bag is made first if missing (`vlm-node sample-bag BAG --frames 60 --cameras 1 --seconds 6
--size 1920x1080`); the Ray cluster is started once, before the Ray rows, and its start-up
time is reported on its own.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from vlm_node.anonymize.config import frames_in_flight_for
from vlm_node.bags.anonymize import anonymize_bag, load_anonymizer_config
from vlm_node.bags.batch import AnonymizeOptions, BagJob
from vlm_node.bags.ray_runner import RayOptions, anonymize_bags_ray
from vlm_node.tools.sample_bag import write_sample_bag
from vlm_node.bags.summary import BagAnonymizeSummary


@dataclass
class Row:
    """One measured run."""

    runner: str
    seconds: float
    frames: int
    frames_per_second: float
    realtime_factor: float
    faces: int
    plates: int
    chunks: int
    warmup_frames: int
    merge_seconds: float
    chunk_setup_seconds: float
    load_before: float
    machine_busy: float  # fraction of all CPUs busy during the run (this run + others)


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _measure(name: str, run: Callable[[], BagAnonymizeSummary]) -> Row:
    load = os.getloadavg()[0]
    busy0, total0 = _cpu_times()
    t0 = time.perf_counter()
    summary = run()
    seconds = time.perf_counter() - t0
    busy1, total1 = _cpu_times()
    return Row(name, seconds, summary.frames, summary.frames / seconds,
               summary.bag_seconds / seconds, summary.faces, summary.plates, summary.chunks,
               summary.warmup_frames, summary.merge_seconds, summary.chunk_setup_seconds, load,
               (busy1 - busy0) / max(1, total1 - total0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bag", type=Path, default=Path("/tmp/bench_bag1080"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_bag_out"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chunk-seconds", type=float, default=3.0)
    parser.add_argument("--cpus", type=int, default=os.cpu_count(),
                        help="CPUs of the local Ray cluster")
    parser.add_argument("--json", type=Path, help="write the rows as JSON")
    args = parser.parse_args()

    if not args.bag.exists():
        t0 = time.perf_counter()
        write_sample_bag(args.bag, 60, 1, 6.0, "mcap", (1920, 1080), seed=0)
        print(f"wrote {args.bag} in {time.perf_counter() - t0:.1f} s")
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    config = load_anonymizer_config()
    rows: list[Row] = []

    for in_flight in sorted({1, frames_in_flight_for(config)}):
        name = f"one process, {in_flight} frame(s) in flight"
        out = args.out / f"single{in_flight}"
        rows.append(_measure(name, lambda: anonymize_bag(
            args.bag, out, config, progress=False, frames_in_flight=in_flight)))
        shutil.rmtree(out)

    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.WARNING)
    start_seconds = time.perf_counter() - t0
    try:
        for workers in args.workers:
            out = args.out / f"ray{workers}"

            def run_ray() -> BagAnonymizeSummary:
                batch = anonymize_bags_ray(
                    [BagJob(args.bag, out)], None, AnonymizeOptions(config),
                    RayOptions("auto", workers, args.chunk_seconds), progress=False)
                if batch.failed:
                    raise SystemExit(f"failed: {batch.failed}")
                return batch.bags[0]
            rows.append(_measure(f"ray, {workers} worker(s)", run_ray))
            shutil.rmtree(out)
    finally:
        ray.shutdown()

    print(f"Ray local cluster start-up: {start_seconds:.1f} s ({args.cpus} CPUs)")
    print("| runner | wall s | frames/s | real-time factor | chunks | warm-up frames | merge s "
          "| task set-up s | load before | machine busy |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.runner} | {r.seconds:.1f} | {r.frames_per_second:.2f} | "
              f"{r.realtime_factor:.2f} | {r.chunks or '-'} | {r.warmup_frames} | "
              f"{r.merge_seconds:.2f} | {r.chunk_setup_seconds:.1f} | {r.load_before:.2f} | "
              f"{100 * r.machine_busy:.0f} % |")
    if args.json:
        args.json.write_text(json.dumps({"ray_start_seconds": start_seconds,
                                         "rows": [asdict(r) for r in rows]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
