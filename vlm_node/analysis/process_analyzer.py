"""The analysis engine in a child process of its own, below the camera path (`analysis_process`).

Why a process and not only a lower thread priority (`analysis_nice`, vlm_node/priority.py): in
one interpreter the analysis' Python stretches (the sign search, OCR's post-processing, the
scene rules) hold the GIL, and a camera callback that needs the GIL waits for a thread the
kernel has just been told to run last. In a process of its own, at the lowered priority, the
analysis only gets the CPU the camera path leaves, and the two never wait on each other's
interpreter. The price is a copy of each analysed frame through a pipe (a few ms at 1080p, at
the analysis rate, not the camera rate).

A process can also be held: `hold()` / `release()` stop the child (SIGSTOP) while the
camera path anonymizes a frame and let it go on afterwards (`analysis_yield`). Nice only
lowers the analysis' share of a core; stopped, it takes nothing, not even the memory
bandwidth and shared caches its OpenVINO models contend for (docs/anonymizer.md: busy 1080p
frames anonymized in ~50 instead of ~70 ms, the analysis giving about half the results). A
hold longer than `max_hold_s` is let go, so that several cameras anonymizing in turn never
starve the analysis altogether.

What crosses: `AnonymizedFrame`s one way (pickling re-releases them through the same type
checks, see vlm_node/frames.py), results and the engine's status the other. A child that dies
is started again on the next batch and counted (`process_restarts`); a batch it does not answer
within `reply_timeout` fails like any backend error, and the child is replaced.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any, Callable, Iterator, Sequence

from vlm_node.errors import AnalysisError, BackendUnavailableError
from vlm_node.frames import AnonymizedFrame
from vlm_node.results import AnalysisResult

log = logging.getLogger(__name__)

AnalyzerFactory = Callable[[Any], Any]
"""Builds the analyzer from the node's config; it runs in the child, so it must be picklable
(a module-level function or class, such as `analyzer_from_config`)."""

READY_TIMEOUT_S = 900.0
"""How long the child may take to load its models (a VLM from a slow disk takes minutes)."""


def _serve(conn: Connection, factory: AnalyzerFactory, config: Any, nice: int) -> None:
    """The child's loop: build the analyzer, then answer one batch per request until told to
    close or the parent goes away.

    The child ignores SIGINT: a Ctrl-C in a terminal, or `ros2 launch` stopping the node,
    reaches the whole process group, and the node shuts its analysis down itself (`close`,
    or the pipe closing when it exits); a KeyboardInterrupt here would only print a
    traceback mid-batch."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if nice > 0 and hasattr(os, "nice"):
        os.nice(nice)  # every thread the analyzer starts (onnxruntime pools) inherits it
    try:
        analyzer = factory(config)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", type(exc).__name__, str(exc), {}))
        conn.close()
        return
    try:
        conn.send(("ready", analyzer.status()))
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                break  # the parent is gone
            if request[0] != "analyze":
                break
            try:
                results = analyzer.analyze(request[1])
            except Exception as exc:  # noqa: BLE001 - a failed batch, not a dead child
                conn.send(("error", type(exc).__name__, str(exc), analyzer.status()))
                continue
            conn.send(("ok", results, analyzer.status()))
    finally:
        analyzer.close()
        conn.close()


def runs_on_gpu(status: dict[str, Any]) -> bool:
    """Whether an analysis status reports a model on a GPU: a backend's `device` (the engine
    reports it as `<backend>.device`) naming CUDA."""
    return any((k == "device" or k.endswith(".device")) and str(v).startswith("cuda")
               for k, v in status.items())


def _die_with_parent() -> None:
    """Ask Linux to kill this process when the thread that started it ends (prctl
    PR_SET_PDEATHSIG). Why: a child held stopped (`ProcessAnalyzer.hold`) cannot notice its
    pipe closing, so a node killed outright would leave it stopped for good; SIGKILL ends a
    stopped process too. Linux sends it when the *thread* that started the child ends: the
    node's configure thread, or its analysis worker after a restart; a child that loses its
    worker that way (a deactivated node) is started again on the next batch, like any child
    that died."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: pipe EOF still ends a running child
        pass


_PR_SET_PDEATHSIG = 1


class ProcessAnalyzer:
    """Analyzer protocol (analyze, status, close) over a child process that runs the real one.

    `analyze` is called from one worker thread at a time (the node's); `status` may be called
    from any thread at any time and answers from the last status the child sent, without a
    round trip."""

    def __init__(self, factory: AnalyzerFactory, config: Any, *, nice: int = 0,
                 reply_timeout: float = 120.0, ready_timeout: float = READY_TIMEOUT_S,
                 max_hold_s: float = 0.5) -> None:
        self.factory, self.config, self.nice = factory, config, nice
        self.reply_timeout, self.ready_timeout = reply_timeout, ready_timeout
        self.max_hold_s = max_hold_s
        self._hold_lock = threading.Lock()
        self._holds = 0  # frames being anonymized that asked to hold the child
        self._stopped_at: float | None = None  # when the child was stopped, if it is
        self._on_gpu = False  # the child's last status names a CUDA device (`runs_on_gpu`)
        self._overdue = False  # let go after max_hold_s: no new stop until holds reach 0
        self.held_s = 0.0  # total time the child was held stopped
        self.overdue_releases = 0
        self._ctx = multiprocessing.get_context("spawn")  # never fork a process running DDS
        self._proc: Any = None
        self._conn: Connection | None = None
        self._call_lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._status: dict[str, Any] = {}
        self.restarts = 0

    # ------------------------------------------------------------------ child process
    def start(self) -> ProcessAnalyzer:
        """Start the child and wait until its analyzer has loaded; raises
        BackendUnavailableError with the child's own message when it cannot load."""
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_serve, args=(child, self.factory, self.config,
                                                      self.nice),
                                 name="vlm_analysis", daemon=True)
        try:
            proc.start()
        except Exception as exc:  # e.g. an unpicklable factory
            raise BackendUnavailableError(
                f"the analysis process could not start: {exc} (the analyzer factory must be "
                f"picklable; or set analysis_process:=false)") from exc
        child.close()
        deadline = time.monotonic() + self.ready_timeout
        reply = None
        while reply is None and time.monotonic() < deadline:
            if parent.poll(0.2):
                try:
                    reply = parent.recv()
                except EOFError:
                    break
            elif not proc.is_alive():
                break
        if reply is None or reply[0] != "ready":
            why = (f"{reply[1]}: {reply[2]}" if reply is not None
                   else f"exited with code {proc.exitcode}" if not proc.is_alive()
                   else f"not ready within {self.ready_timeout:.0f} s")
            self._kill(proc, parent)
            raise BackendUnavailableError(f"the analysis process failed to load: {why}")
        self._proc, self._conn = proc, parent
        self._set_status(reply[1])
        log.info("analysis process %d ready", proc.pid)
        return self

    @staticmethod
    def _kill(proc: Any, conn: Connection | None, grace: float = 0.0) -> None:
        if conn is not None:
            conn.close()
        proc.join(grace)
        if proc.is_alive():
            proc.kill()
            proc.join(5.0)

    def _replace(self, why: str) -> None:
        """Drop the current child (dead or hung): the next batch starts a new one."""
        if self._proc is not None:
            log.warning("analysis process %d replaced: %s", self._proc.pid, why)
            self._kill(self._proc, self._conn)
        self._proc = self._conn = None

    # ------------------------------------------------------------------ Analyzer protocol
    def analyze(self, frames: Sequence[AnonymizedFrame]) -> list[AnalysisResult]:
        if not frames:
            return []
        with self._call_lock:
            if self._proc is None or not self._proc.is_alive():
                if self._proc is not None:
                    self._replace(f"exited with code {self._proc.exitcode}")
                self.restarts += 1
                try:
                    self.start()
                except BackendUnavailableError as exc:
                    raise AnalysisError(str(exc)) from exc
            assert self._conn is not None
            try:
                self._conn.send(("analyze", list(frames)))
                if not self._conn.poll(self.reply_timeout):
                    self._replace(f"no answer within {self.reply_timeout:.0f} s")
                    raise AnalysisError(f"the analysis process did not answer within "
                                        f"{self.reply_timeout:.0f} s; it is restarted")
                reply = self._conn.recv()
            except (EOFError, OSError) as exc:
                # The pipe closes a moment before the child is reaped; wait for the
                # reaping so that the error names the real exit code, not None.
                code = None
                if self._proc is not None:
                    self._proc.join(5.0)
                    code = self._proc.exitcode
                self._replace(f"connection lost ({exc or type(exc).__name__})")
                raise AnalysisError(f"the analysis process died (exit code {code}); it is "
                                    f"restarted on the next batch") from exc
        self._set_status(reply[-1])
        if reply[0] != "ok":
            raise AnalysisError(f"{reply[1]}: {reply[2]}")
        return list(reply[1])

    # ------------------------------------------------------------------ holding
    def hold(self) -> None:
        """A camera frame is about to be anonymized: stop the child until `release` (calls
        nest; the child runs again when every hold is released). Not while the child's
        status says its model runs on a GPU (`runs_on_gpu`): the CPUs are not what limits it
        then, and a stopped process stops feeding the GPU."""
        with self._hold_lock:
            self._holds += 1  # counted even on a GPU, so that release() stays balanced
            if self._on_gpu:
                return
            self._check_overdue()
            if self._holds == 1 and not self._overdue and self._signal(signal.SIGSTOP):
                self._stopped_at = time.monotonic()

    def release(self) -> None:
        """The frame of one `hold` is done (published or dropped)."""
        with self._hold_lock:
            self._holds = max(0, self._holds - 1)
            self._check_overdue()
            if self._holds == 0:
                self._overdue = False
                self._go_on()

    def _check_overdue(self) -> None:
        if (self._stopped_at is not None
                and time.monotonic() - self._stopped_at > self.max_hold_s):
            self._go_on()
            self._overdue = True
            self.overdue_releases += 1

    def _go_on(self) -> None:
        if self._stopped_at is not None:
            self.held_s += time.monotonic() - self._stopped_at
            self._stopped_at = None
            self._signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> bool:
        """Send `sig` to the child; False when there is none (starting, or exited meanwhile:
        replaced on the next batch)."""
        proc = self._proc
        if proc is None or not proc.pid:
            return False
        try:
            os.kill(proc.pid, sig)
        except OSError:
            return False
        return True

    @contextmanager
    def held(self) -> Iterator[None]:
        """`hold` for the block, `release` after it however it ends."""
        self.hold()
        try:
            yield
        finally:
            self.release()

    def _set_status(self, status: dict[str, Any]) -> None:
        with self._status_lock:
            self._status = dict(status)
            self._on_gpu = runs_on_gpu(status)

    def status(self) -> dict[str, Any]:
        with self._status_lock:
            out = dict(self._status)
        proc = self._proc
        out["process_pid"] = proc.pid if proc is not None else 0
        out["process_restarts"] = self.restarts
        out["process_alive"] = bool(proc is not None and proc.is_alive())
        out["process_held_s"] = round(self.held_s, 3)
        out["process_overdue_releases"] = self.overdue_releases
        return out

    def close(self) -> None:
        with self._hold_lock:  # a stopped child could not read "close"
            self._holds = 0
            self._overdue = False
            self._go_on()
        with self._call_lock:
            proc, conn = self._proc, self._conn
            self._proc = self._conn = None
            if proc is None:
                return
            try:
                assert conn is not None
                conn.send(("close",))
            except (OSError, ValueError):
                pass
            self._kill(proc, conn, grace=10.0)
