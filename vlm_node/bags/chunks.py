"""Time chunks of a bag: the unit of work when many bags, or long ones, are anonymized in
parallel (`vlm_node.bags.ray_runner` runs `run_chunk` as Ray tasks).

Why chunks in time: a bag's topics are long sequences whose carry-over state runs through
them, so the only cut that scales with the recording's length is in time. A chunk is the log
time range [start, stop) of one bag; its task writes every message of that range, exactly as
the single-process path would (`vlm_node.bags.anonymize.write_messages`), into a temporary chunk
bag, and the driver copies the chunk bags, in order, into the output bag (`merge_chunk`).

Carry-over across a cut: the first frames after a cut would start with no carried regions, so
a face the detector misses in the chunk's first frame would be left readable although a whole
run carries it. Each task therefore first runs the last `warmup_frames` frames of every image
topic before its start through that topic's anonymizer (nothing of them is written or
counted: the previous chunk owns them). With the default 2 x (carry_frames + 1) frames, every
region a whole run can carry into the chunk's first frame was detected during the warm-up,
together with the detection before it that sets its motion, so the output is identical to a
whole run's (tested) except where one object was missed repeatedly in a chain of gaps longer
than the warm-up; a topic whose frames are further apart than the look-back window (see
`plan_chunks`) also gets fewer warm-up frames.
"""
from __future__ import annotations

import math
import os
import shutil
import socket
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from rosbags.interfaces import Connection

from vlm_node.anonymize import AnonymizerConfig
from vlm_node.anonymize.config import for_recordings
from vlm_node.bags import io
from vlm_node.bags.anonymize import (LabelScorer, Output, Selection, TopicAnonymizer,
                                     close_all, new_summary, open_output, topic_anonymizers,
                                     write_messages)
from vlm_node.bags.summary import BagAnonymizeSummary
from vlm_node.errors import BagError, ConfigError

__all__ = ["CHUNK_STORAGE", "LOOKBACK_FACTOR", "Chunk", "ChunkTask", "ChunkResult",
           "check_chunking", "default_warmup_frames", "plan_chunks", "run_chunk",
           "merge_chunk"]

# Chunk bags are temporary and read back once by the driver: MCAP, the faster of the two.
CHUNK_STORAGE = "mcap"
# The warm-up frames are looked for in a window this many times their nominal duration (the
# slowest topic's mean frame period x warmup_frames), so jitter and a few lost frames still
# leave enough in it.
LOOKBACK_FACTOR = 2.0


@dataclass(frozen=True, slots=True)
class Chunk:
    """Messages of one bag with log time in [start_ns, stop_ns); None is an open end (first
    and last chunk), so that nothing outside the planned span can be lost. Warm-up frames are
    taken from [warmup_from_ns, start_ns); None: no warm-up."""

    index: int
    count: int
    start_ns: int | None
    stop_ns: int | None
    warmup_from_ns: int | None = None

    def describe(self, origin_ns: int) -> str:
        """`chunk 2/3 (10.0-20.0 s)`, times from `origin_ns` (the bag's first message)."""
        start = "start" if self.start_ns is None else f"{(self.start_ns - origin_ns) / 1e9:.1f}"
        stop = "end" if self.stop_ns is None else f"{(self.stop_ns - origin_ns) / 1e9:.1f} s"
        return f"chunk {self.index + 1}/{self.count} ({start}-{stop})"


def default_warmup_frames(config: AnonymizerConfig) -> int:
    """2 x (carry_frames + 1): the last detection of every region a whole run can carry into
    a chunk's first frame, and the detection before it (its motion), fall in the warm-up."""
    return 2 * (config.carry_frames + 1)


def check_chunking(chunk_seconds: float, warmup_frames: int | None) -> None:
    """ConfigError naming the option for a chunk length or warm-up that cannot work."""
    if isinstance(chunk_seconds, bool) or not isinstance(chunk_seconds, (int, float)) \
            or not math.isfinite(chunk_seconds) or chunk_seconds < 1e-3:
        raise ConfigError(f"--chunk-seconds must be a number >= 0.001, got {chunk_seconds!r}")
    if warmup_frames is not None and (isinstance(warmup_frames, bool)
                                      or not isinstance(warmup_frames, int)
                                      or warmup_frames < 0):
        raise ConfigError(f"--warmup-frames must be an integer >= 0, got {warmup_frames!r}")


def plan_chunks(bag: io.Bag, selection: Selection, chunk_seconds: float,
                warmup_frames: int) -> list[Chunk]:
    """Cut the bag's log-time span into chunks of `chunk_seconds` (the last one shorter).

    The warm-up window before each cut is LOOKBACK_FACTOR x warmup_frames x the longest mean
    frame period of the anonymized topics (bag duration / (frames - 1), from the bag's index:
    no pass over the data is needed to plan)."""
    check_chunking(chunk_seconds, warmup_frames)
    length = int(round(chunk_seconds * 1e9))
    count = bag.duration_ns // length + 1 if bag.message_count else 1
    frames = [bag.topics[t].count for t in selection.anonymized]
    periods = [bag.duration_ns / (n - 1) for n in frames if n > 1]
    lookback = (int(math.ceil(LOOKBACK_FACTOR * warmup_frames * max(periods)))
                if periods and warmup_frames else 0)
    chunks = []
    for i in range(count):
        start = bag.start_ns + i * length if i else None
        stop = bag.start_ns + (i + 1) * length if i < count - 1 else None
        warm = max(bag.start_ns, start - lookback) if start is not None and lookback else None
        chunks.append(Chunk(i, count, start, stop, warm))
    return chunks


@dataclass(frozen=True, slots=True)
class ChunkTask:
    """Everything a worker needs for one chunk: plain data, so it pickles to any machine.
    `out` must be on storage the driver reads too (next to the output bag)."""

    src: str
    out: str
    chunk: Chunk
    selection: Selection
    config: AnonymizerConfig
    warmup_frames: int
    labels: LabelScorer | None = None


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """What a task did: the counts and stage times of the chunk's own messages (warm-up
    frames only in `summary.warmup_frames`), where it ran, and when (epoch seconds)."""

    task: ChunkTask
    summary: BagAnonymizeSummary
    host: str
    pid: int
    started: float
    finished: float


def run_chunk(task: ChunkTask) -> ChunkResult:
    """Anonymize one chunk into the new bag `task.out` (MCAP). Raises BagError when the input
    is damaged in this range. A bag already at `task.out` is a leftover of an attempt whose
    worker died (Ray retries such tasks) and is replaced."""
    started = time.time()
    t0 = time.perf_counter()
    out = Path(task.out)
    if out.exists():
        shutil.rmtree(out)
    src = Path(task.src)
    chunk = task.chunk
    # the whole pass on every frame: the video plan's cadence counts frames from the start of
    # a stream, which a chunk cannot know (anonymize.config.for_recordings)
    config = for_recordings(task.config)
    with io.open_bag(src) as bag:
        summary = new_summary(src, out, bag, task.selection, config)
        store = io.make_typestore()
        workers = topic_anonymizers(task.selection, config, store, summary, task.labels)
        try:
            with io.BagWriter(out, CHUNK_STORAGE, store) as writer:
                output = open_output(bag, writer, task.selection)
                summary.setup_seconds = time.perf_counter() - t0
                summary.warmup_frames = _warm_up(bag, chunk, workers, task.warmup_frames)
                write_messages(bag, bag.messages(None, chunk.start_ns, chunk.stop_ns), output,
                               workers, summary)
        finally:
            close_all(workers)
    summary.seconds = time.perf_counter() - t0
    return ChunkResult(task, summary, socket.gethostname(), os.getpid(), started, time.time())


def _warm_up(bag: io.Bag, chunk: Chunk, workers: dict[str, TopicAnonymizer],
             frames: int) -> int:
    """Run the last `frames` frames of each anonymized topic before the chunk's start through
    its anonymizer (carry-over state only); returns how many were run."""
    if chunk.warmup_from_ns is None or chunk.start_ns is None or not frames or not workers:
        return 0
    recent: dict[str, deque[io.BagMessage]] = {t: deque(maxlen=frames) for t in workers}
    for message in bag.messages(workers, chunk.warmup_from_ns, chunk.start_ns):
        recent[message.topic].append(message)
    # sorted() is stable: each topic keeps its log-time order, as in a whole run
    warm = sorted((m for q in recent.values() for m in q), key=lambda m: m.timestamp)
    for message in warm:
        workers[message.topic].warm_up(bag, message)
    return len(warm)


def merge_chunk(result: ChunkResult, out: Output) -> int:
    """Copy the chunk bag's messages, as stored and with their log times, into the output bag;
    returns how many. Connections correspond by position: the task and the driver both made
    them with `open_output` from the same input and selection (checked)."""
    path = Path(result.task.out)
    expected = result.summary.messages_written
    count = 0
    with io.open_bag(path) as chunk_bag:
        mapping = _connection_map(chunk_bag, out)
        for message in chunk_bag.messages():
            out.writer.write(mapping[message.connection.id], message.timestamp, message.raw)
            count += 1
    if count != expected:
        raise BagError(f"{path}: chunk bag holds {count} messages, its task wrote {expected}")
    return count


def _connection_map(chunk_bag: io.Bag, out: Output) -> dict[int, Connection]:
    targets = list(out.conns.values()) + ([out.results] if out.results is not None else [])
    sources = sorted(chunk_bag.connections, key=lambda c: c.id)
    if [(c.topic, c.msgtype) for c in sources] != [(c.topic, c.msgtype) for c in targets]:
        raise BagError(f"{chunk_bag.path}: chunk bag connections "
                       f"{[c.topic for c in sources]} do not match the output's "
                       f"{[c.topic for c in targets]}")
    return {s.id: t for s, t in zip(sources, targets)}
