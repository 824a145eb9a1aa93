"""Several bags in one call: which bags the IN arguments name, where each output goes, and the
one-process runner for them (`vlm_node.bags.ray_runner` is the parallel one).

Naming rule (`plan_jobs`): one IN that is a bag -> OUT is that bag's output (the classic form);
one IN that is a directory holding bags (no metadata.yaml of its own) -> OUT is a directory
and each bag found under IN is written to OUT/<its path relative to IN>; several INs -> OUT is
a directory and each IN (a bag, or a directory of bags) keeps its own name under OUT. A bare
`.mcap`/`.db3` file becomes a bag directory named after the file without its suffix.

Every output bag is atomic on its own. A bag that fails (damaged, bad option for it) has no
output and is reported with its error; the other bags are still written, since one bad
recording must not throw away hours of work on the others.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from vlm_node.anonymize import AnonymizerConfig
from vlm_node.bags.anonymize import LabelScorer, anonymize_bag, check_paths
from vlm_node.bags.summary import BatchSummary
from vlm_node.errors import BagError, ConfigError, VlmNodeError

__all__ = ["BAG_SUFFIXES", "AnonymizeOptions", "BagJob", "is_bag", "find_bags", "plan_jobs",
           "check_outputs", "prepare_output_dirs", "remove_empty_dirs", "anonymize_bags"]

BAG_SUFFIXES = (".mcap", ".db3")


@dataclass(frozen=True, slots=True)
class AnonymizeOptions:
    """The settings every bag of a call shares (the options of `anonymize_bag`)."""

    config: AnonymizerConfig
    topics: tuple[str, ...] | None = None
    storage: str | None = None
    results_topic: str | None = None
    force: bool = False
    frames_in_flight: int | None = None  # None: frames_in_flight_for's default
    labels: LabelScorer | None = None  # scored into each bag's summary
    video_plan: bool = False  # the node's frame plan (one process only: for_recordings)


@dataclass(frozen=True, slots=True)
class BagJob:
    """One input bag and the bag directory its anonymized copy goes to."""

    src: Path
    dst: Path


def is_bag(path: Path) -> bool:
    """A rosbag2 directory (holds metadata.yaml) or a bare MCAP / sqlite3 file."""
    if path.is_dir():
        return (path / "metadata.yaml").is_file()
    return path.is_file() and path.suffix in BAG_SUFFIXES


def find_bags(root: Path) -> list[Path]:
    """Bags under the directory `root`, in name order. A bag directory is not searched further
    (its data files belong to it); hidden entries are skipped (they include the staging
    directories of outputs being written)."""
    found: list[Path] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if is_bag(entry):
            found.append(entry)
        elif entry.is_dir() and not entry.is_symlink():
            found.extend(find_bags(entry))
    return found


def _output_name(relative: Path) -> Path:
    return relative.with_suffix("") if relative.suffix in BAG_SUFFIXES else relative


def plan_jobs(inputs: Sequence[str | Path], output: str | Path) -> tuple[list[BagJob], bool]:
    """(jobs, batch): the bags the IN arguments name and their outputs (see the module
    docstring); batch is False for the classic form, one IN that is a bag (or does not exist:
    `anonymize_bag` then reports it as it always did)."""
    ins = [Path(p) for p in inputs]
    out = Path(output)
    if not ins:
        raise ConfigError("no input bag given")
    if len(ins) == 1 and (is_bag(ins[0]) or not ins[0].is_dir()):
        return [BagJob(ins[0], out)], False
    if out.is_file() or is_bag(out):
        raise ConfigError(f"{out} is a bag or a file; with several input bags OUT must be a "
                          "directory (it is created if missing)")
    jobs: list[BagJob] = []
    for src in ins:
        if not src.exists():
            raise BagError(f"bag not found: {src}")
        if src.resolve() == out.resolve() or src.resolve() in out.resolve().parents:
            raise ConfigError(f"output directory {out} would sit inside the input {src}")
        base = out if len(ins) == 1 else out / _output_name(Path(src.name))
        if is_bag(src):
            jobs.append(BagJob(src, base))
            continue
        if not src.is_dir():
            raise BagError(f"{src}: not a bag (expected a directory with metadata.yaml, a "
                           ".mcap or a .db3 file) nor a directory holding bags")
        bags = find_bags(src)
        if not bags:
            raise BagError(f"{src}: no bags found in this directory (a bag is a directory "
                           "with metadata.yaml, a .mcap or a .db3 file)")
        jobs.extend(BagJob(b, base / _output_name(b.relative_to(src))) for b in bags)
    seen: dict[Path, Path] = {}
    for job in jobs:
        check_paths(job.src, job.dst)
        if job.dst in seen:
            raise ConfigError(f"{seen[job.dst]} and {job.src} would both be written to "
                              f"{job.dst}; rename one of them")
        seen[job.dst] = job.src
    return jobs, True


def check_outputs(jobs: Sequence[BagJob], force: bool) -> None:
    """Refuse, before any work, outputs that exist (unless `force`)."""
    existing = [str(j.dst) for j in jobs if j.dst.exists()]
    if existing and not force:
        raise BagError(f"{', '.join(existing)} exist(s); choose another output or pass --force "
                       "to replace")


def prepare_output_dirs(jobs: Sequence[BagJob], root: Path) -> list[Path]:
    """Create `root` (OUT; its parent must exist, as for a single output bag) and the
    directories below it that the outputs go to; returns those created (parents first), so
    that the caller can remove the ones that stay empty."""
    if not root.parent.is_dir():
        raise BagError(f"output directory {root.parent} does not exist")
    created: list[Path] = []
    for job in jobs:
        for p in reversed(job.dst.parents):
            if (p == root or root in p.parents) and not p.exists():
                p.mkdir()
                created.append(p)
    return created


def remove_empty_dirs(created: Sequence[Path]) -> None:
    """Remove the directories `prepare_output_dirs` made that received no output (every bag
    in them failed), deepest first: a failed call leaves nothing behind."""
    for path in reversed(created):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def anonymize_bags(jobs: Sequence[BagJob], root: Path, options: AnonymizeOptions,
                   progress: bool | None = None) -> BatchSummary:
    """The bags one after another in this process (the single-process path for each); `root`
    is OUT, the directory receiving them."""
    t0 = time.perf_counter()
    check_outputs(jobs, options.force)
    batch = BatchSummary("single-process")
    created = prepare_output_dirs(jobs, Path(root))
    try:
        for job in jobs:
            try:
                batch.bags.append(anonymize_bag(
                    job.src, job.dst, options.config, topics=options.topics,
                    storage=options.storage, results_topic=options.results_topic,
                    force=options.force, progress=progress,
                    frames_in_flight=options.frames_in_flight, labels=options.labels,
                    video_plan=options.video_plan))
            except VlmNodeError as exc:
                batch.failed[str(job.src)] = str(exc)
    finally:
        remove_empty_dirs(created)
    batch.seconds = time.perf_counter() - t0
    return batch
