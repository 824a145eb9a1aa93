"""Anonymize many bags, and long ones, in parallel on a Ray cluster.

Each bag is cut into time chunks (`vlm_node.bags.chunks`); one Ray task anonymizes one chunk
into a temporary chunk bag next to the output (so on a cluster the output directory must be
on storage every node mounts at the same path, and so must the inputs); the driver merges the
chunk bags of a bag in order into the output bag as soon as they are complete, while the
workers go on with later chunks. The output is as atomic as the single-process path's: it is
written in `atomic_output`'s staging directory (chunk bags included) and renamed into place
only when every chunk is merged and every input message is accounted for. A chunk that fails
(damaged input in its range, a worker that died more than Ray's retries allow, a chunk bag
that does not read back) fails its bag: the bag's other tasks are cancelled, its staging
directory removed, and the error names the chunk; other bags carry on.

Why a task per chunk and not per bag: a long recording would otherwise keep one worker busy
while the others idle; why the driver merges: it writes each output bag sequentially, which is
what rosbag2 storage needs, and the chunk bags are already on the shared storage.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import socket
import time
from collections import deque
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from vlm_node.anonymize import AnonymizerConfig
from vlm_node.anonymize.config import for_recordings
from vlm_node.bags import io
from vlm_node.bags.anonymize import (Output, check_paths, custom_data, labels_for,
                                     new_summary, open_output, select)
from vlm_node.bags.batch import (AnonymizeOptions, BagJob, check_outputs, prepare_output_dirs,
                                 remove_empty_dirs)
from vlm_node.bags.chunks import (ChunkResult, ChunkTask, check_chunking,
                                  default_warmup_frames, merge_chunk, plan_chunks, run_chunk)
from vlm_node.bags.summary import BatchSummary, Validation
from vlm_node.errors import BagError, ConfigError, VlmNodeError

__all__ = ["DEFAULT_CHUNK_SECONDS", "ClusterError", "RayOptions", "Cluster", "worker_config",
           "connect", "anonymize_bags_ray"]

log = logging.getLogger(__name__)

# Long enough that the warm-up (2 x 4 frames per topic at the default carry_frames 3) and a
# task's set-up cost a few per cent of a chunk at 10 Hz, short enough that an hour of
# recording gives 120 tasks to spread.
DEFAULT_CHUNK_SECONDS = 30.0
# Ray retries a task whose worker process died (OOM kill, lost node) this many times; a chunk
# task may rerun: it replaces its own leftover chunk bag. Exceptions are not retried.
TASK_RETRIES = 3
# A cluster address that accepts no TCP connection within this time is reported as unreachable.
CONNECT_TIMEOUT_S = 5.0


class ClusterError(VlmNodeError):
    """Ray could not be reached or started, or the cluster cannot run the tasks."""


@dataclass(frozen=True, slots=True)
class RayOptions:
    """How to run on Ray. `address`: "auto" (the cluster this machine is part of, else a new
    local one) or a cluster address (`ray://host:10001`, `host:6379`); `workers`: chunk tasks
    in flight at once (None: as many as the cluster's CPUs allow); `warmup_frames` None: the
    default of `chunks.default_warmup_frames`."""

    address: str = "auto"
    workers: int | None = None
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS
    warmup_frames: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.address, str) or not self.address:
            raise ConfigError(f"--ray needs 'auto' or a cluster address, got {self.address!r}")
        if self.workers is not None and (isinstance(self.workers, bool)
                                         or not isinstance(self.workers, int)
                                         or self.workers < 1):
            raise ConfigError(f"--workers must be an integer >= 1, got {self.workers!r}")
        check_chunking(self.chunk_seconds, self.warmup_frames)


@dataclass(frozen=True, slots=True)
class Cluster:
    """The Ray cluster this call uses."""

    cpus: int
    nodes: int
    started_here: bool  # this call connected (and must disconnect); False: already connected
    connect_seconds: float


def worker_config(config: AnonymizerConfig) -> tuple[AnonymizerConfig, int]:
    """(settings for a chunk task, CPUs it reserves). A task runs the face and plate detectors
    of a frame one after the other (`parallel_stages` off) with `anonymizer.threads`
    onnxruntime threads (0, one per core, becomes 1) and reserves that many CPUs: Ray's
    accounting then matches what a task uses, and N cores run N chunks at once, which
    replaces the detector-level parallelism of the single-process path with parallelism over
    chunks (the stages in sequence also cost less CPU per frame than in parallel; figures in
    docs/bags.md). Outputs do not depend on either setting (the same pixels, tested)."""
    threads = config.threads or 1
    # chunks get the whole pass on every frame (anonymize.config.for_recordings)
    return dataclasses.replace(for_recordings(config), threads=threads,
                               parallel_stages=False), threads


def connect(address: str) -> Cluster:
    """Connect to Ray unless this process already is (then that cluster is used as it is).

    A cluster address is first checked with a plain TCP connection: Ray itself waits minutes
    for a head that is not there. A local cluster this call starts does not send Ray's usage
    statistics (RAY_USAGE_STATS_ENABLED=0 unless set): an anonymization tool should not
    contact anyone by default."""
    import ray

    t0 = time.perf_counter()
    started = False
    if not ray.is_initialized():
        if address != "auto":
            _check_reachable(address)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            ray.init(address=None if address == "auto" else address,
                     logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            raise ClusterError(f"cannot connect to Ray at {address}: {type(exc).__name__}: "
                               f"{exc}") from exc
        started = True
    resources = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return Cluster(int(resources.get("CPU", 0)), nodes, started, time.perf_counter() - t0)


def _check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """ClusterError unless something accepts TCP connections at the address's host:port
    (`ray://HOST[:10001]` for Ray Client, `HOST[:6379]` for the head's GCS)."""
    client = address.startswith("ray://")
    rest = address[len("ray://"):] if client else address
    host, sep, port = rest.rpartition(":")
    if not sep:
        host, port = rest, "10001" if client else "6379"
    if not host or not port.isdigit():
        raise ClusterError(f"--ray {address!r}: expected auto, ray://HOST:PORT or HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterError(f"cannot connect to Ray at {address}: nothing accepts connections "
                           f"at {host}:{port} ({exc}); start the head with `ray start --head` "
                           "or check the address") from exc


class _BagRun:
    """The driver's state for one bag: its plan (made before any work, so that a bad option
    for one bag is reported at once), its output bag once started, the chunk results waiting
    to be merged in order, and the tasks in flight."""

    def __init__(self, job: BagJob, options: AnonymizeOptions, config: AnonymizerConfig,
                 ray_options: RayOptions) -> None:
        self.job = job
        self.force = options.force
        self.config = config
        self.labels = options.labels
        check_paths(job.src, job.dst)
        self.warmup_frames = (default_warmup_frames(config) if ray_options.warmup_frames is None
                              else ray_options.warmup_frames)
        with io.open_bag(job.src) as bag:
            self.selection = select(bag, options.topics, options.storage,
                                    options.results_topic)
            self.summary = new_summary(job.src, job.dst, bag, self.selection, config)
            if self.labels is not None:  # the chunks' scores are added to it
                self.summary.validation = Validation(
                    labelled=labels_for(self.labels, self.selection, bag),
                    kinds=self.labels.new_counts())
            self.chunks = plan_chunks(bag, self.selection, ray_options.chunk_seconds,
                                      self.warmup_frames)
            self.message_count = bag.message_count
            self.origin_ns = bag.start_ns
        self.summary.chunks = len(self.chunks)
        self.chunk_seconds = ray_options.chunk_seconds
        self.output: Output | None = None
        self.results: dict[int, ChunkResult] = {}
        self.next_merge = 0
        self.inflight: set[Any] = set()
        self.error: str | None = None
        self.settled = False  # recorded in the batch summary (written or failed)
        self._stack: ExitStack | None = None
        self._t0 = 0.0

    @property
    def started(self) -> bool:
        return self._stack is not None

    @property
    def complete(self) -> bool:
        return self.next_merge == len(self.chunks)

    def start(self) -> list[ChunkTask]:
        """Open the output (staging directory, writer, connections) and return the tasks."""
        self._t0 = time.perf_counter()
        with ExitStack() as stack:
            path = stack.enter_context(io.atomic_output(self.job.dst, self.force))
            # beside the bag in the staging directory: removed with it, whatever happens
            chunk_dir = path.with_name(path.name + ".chunks")
            chunk_dir.mkdir()
            store = io.make_typestore()
            writer = stack.enter_context(io.BagWriter(path, self.selection.storage, store))
            extra = {"chunks": len(self.chunks), "chunk_seconds": self.chunk_seconds,
                     "warmup_frames": self.warmup_frames}
            with io.open_bag(self.job.src) as bag:
                self.output = open_output(bag, writer, self.selection,
                                          custom_data(self.job.src, self.summary.config,
                                                      ray=extra))
            self._stack = stack.pop_all()
        self.summary.setup_seconds = time.perf_counter() - self._t0
        return [ChunkTask(str(self.job.src), str(chunk_dir / f"{c.index:05d}"), c,
                          self.selection, self.config, self.warmup_frames, self.labels)
                for c in self.chunks]

    def add_result(self, result: ChunkResult) -> None:
        self.results[result.task.chunk.index] = result

    def merge_ready(self) -> None:
        """Merge the chunks that are next in order; finish the bag after the last one."""
        assert self.output is not None
        while self.next_merge in self.results:
            result = self.results.pop(self.next_merge)
            t0 = time.perf_counter()
            merge_chunk(result, self.output)
            shutil.rmtree(result.task.out)
            self.summary.merge_seconds += time.perf_counter() - t0
            self.summary.absorb(result.summary)
            self.next_merge += 1
        if self.complete:
            self._finish()

    def _finish(self) -> None:
        if self.summary.messages_read != self.message_count:
            raise BagError(f"{self.job.src}: truncated or inconsistent bag: the chunks read "
                           f"{self.summary.messages_read} messages, its index lists "
                           f"{self.message_count}")
        assert self._stack is not None
        stack, self._stack = self._stack, None
        stack.close()  # the writer finishes the bag, atomic_output renames it into place
        self.summary.seconds = time.perf_counter() - self._t0

    def fail(self, message: str) -> None:
        if self.error is None:
            self.error = message

    def abort(self) -> None:
        """Remove everything written for this bag (staging directory, chunk bags)."""
        if self._stack is not None:
            stack, self._stack = self._stack, None
            exc = BagError(self.error or "aborted")
            stack.__exit__(BagError, exc, None)

    def describe(self, task: ChunkTask) -> str:
        return task.chunk.describe(self.origin_ns)


def _task_error(exc: BaseException) -> str:
    """The cause of a failed task in one line (RayTaskError carries the worker's exception)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"


def anonymize_bags_ray(jobs: Sequence[BagJob], root: Path | None, options: AnonymizeOptions,
                       ray_options: RayOptions, progress: bool | None = None) -> BatchSummary:
    """Anonymize `jobs` on Ray (see the module docstring). `root` is OUT when it is a
    directory receiving several bags (created if missing, removed again if nothing was
    written to it), None for one bag whose output is OUT itself. Bags that fail are listed in
    the result's `failed`; errors that concern every bag (outputs exist, no cluster) raise."""
    import ray
    from tqdm import tqdm

    t0 = time.perf_counter()
    check_outputs(jobs, options.force)
    config, cpus_per_task = worker_config(options.config)
    batch = BatchSummary("ray")
    runs: list[_BagRun] = []
    for job in jobs:  # every bag planned before any work: a bad option shows at once
        try:
            runs.append(_BagRun(job, options, config, ray_options))
        except VlmNodeError as exc:
            batch.failed[str(job.src)] = str(exc)
    if runs:
        cluster = connect(ray_options.address)
        try:
            slots = cluster.cpus // cpus_per_task
            if slots < 1:
                raise ClusterError(f"the cluster has {cluster.cpus} CPUs; a chunk task needs "
                                   f"{cpus_per_task} (anonymizer.threads)")
            batch.workers = ray_options.workers or slots
            batch.cluster_cpus, batch.nodes = cluster.cpus, cluster.nodes
            batch.connect_seconds = cluster.connect_seconds
            for run in runs:
                run.summary.workers = batch.workers
            remote = ray.remote(run_chunk).options(
                num_cpus=cpus_per_task, max_retries=TASK_RETRIES, retry_exceptions=False)
            created = prepare_output_dirs(jobs, root) if root is not None else []
            try:
                with tqdm(total=sum(len(r.chunks) for r in runs), desc="anonymize-bag",
                          unit="chunk", disable=None if progress is None else not progress
                          ) as bar:
                    _schedule(ray, remote, runs, batch, bar)
            finally:
                remove_empty_dirs(created)
        finally:
            if cluster.started_here:
                ray.shutdown()
    order = {str(job.src): i for i, job in enumerate(jobs)}  # bags finish in any order
    batch.bags.sort(key=lambda summary: order[summary.input])
    batch.failed = dict(sorted(batch.failed.items(), key=lambda item: order[item[0]]))
    batch.seconds = time.perf_counter() - t0
    return batch


def _schedule(ray: Any, remote: Any, runs: list[_BagRun], batch: BatchSummary,
              bar: Any) -> None:
    """Keep up to `batch.workers` chunk tasks in flight, in bag order, and merge results as
    they arrive. On an exception or interrupt here, every unfinished bag is cancelled and
    removed."""
    workers = batch.workers
    queue: deque[tuple[_BagRun, ChunkTask]] = deque()
    pending = deque(runs)
    inflight: dict[Any, tuple[_BagRun, ChunkTask]] = {}

    def fill() -> None:
        while len(inflight) < workers and (queue or pending):
            if not queue:
                run = pending.popleft()
                try:
                    queue.extend((run, task) for task in run.start())
                except VlmNodeError as exc:
                    run.fail(str(exc))
                    bar.update(len(run.chunks))  # none of them will run
                    _settle(run, batch)
                continue
            run, task = queue.popleft()
            if run.error is not None:
                bar.update(1)  # not started: its bag failed already
                continue
            ref = remote.remote(task)
            inflight[ref] = (run, task)
            run.inflight.add(ref)

    try:
        fill()
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1)
            run, task = inflight.pop(ready[0])
            run.inflight.discard(ready[0])
            bar.update(1)
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                if run.error is None:
                    run.fail(f"{run.describe(task)} failed: {_task_error(exc)}")
                    for ref in run.inflight:
                        ray.cancel(ref)
            else:
                if run.error is None:
                    run.add_result(result)
            fill()
            if run.error is None:
                try:
                    run.merge_ready()
                except VlmNodeError as exc:
                    run.fail(f"{run.describe(task)}: merging failed: {exc}")
                    for ref in run.inflight:
                        ray.cancel(ref)
            _settle(run, batch)
    finally:
        for ref in inflight:
            ray.cancel(ref, force=True)
        for run in runs:
            if run.started:
                run.fail("interrupted")
                run.abort()


def _settle(run: _BagRun, batch: BatchSummary) -> None:
    """Record a bag that is done: written, or failed with no task of it still running (only
    then is its staging directory removed: a cancelled task may still have been writing)."""
    if run.settled:
        return
    if run.error is None and run.complete and not run.started:
        batch.bags.append(run.summary)
        run.settled = True
    elif run.error is not None and not run.inflight:
        run.abort()
        batch.failed[str(run.job.src)] = run.error
        run.settled = True
        log.error("%s", run.error)
