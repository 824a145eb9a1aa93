"""The analysis engine: builds the configured backend and keeps results coming when the VLM
does not.

- backend `auto`: the VLM named by `vlm_backend` when it loads; otherwise OCR, every result marked
  degraded with the reason (`require_vlm` makes a VLM that does not load fatal instead). An
  explicitly named backend that does not load is always fatal.
- run time: when the VLM raises, or a batch exceeds `batch_timeout`, that batch is answered by OCR
  marked degraded; the VLM is left alone for `retry_interval` seconds, then tried again in the
  background on the latest frame, and resumes when that works. Frames whose individual answers
  could not be parsed are answered by OCR too, without giving up on the VLM.
- fusion: with `fusion.enabled`, OCR runs on the same frames (in the caller's thread, while the
  VLM works in its own) and grounds the VLM's numbers.
- scene: with `scene.enabled`, every result gets a scene description from the object detector
  (source `detector`), or the VLM's joined with it (source `fused`), whichever backend answered;
  `degraded` still says whether the VLM answered.

Threads: the primary backend is only ever used from the engine's single `vlm_backend` thread, so
a batch that hangs can be abandoned without a second call racing it; `analyze` is called by one
analysis worker, `status()` may be called from any thread.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import threading
import time
from typing import Any, Callable, Sequence

from vlm_node.analysis.base import AnalysisBackend
from vlm_node.analysis.config import AnalysisConfig, check_analysis_config
from vlm_node.analysis.fusion import fuse_results
from vlm_node.analysis.scene_detector import SceneDetector
from vlm_node.analysis.schema import BatchOutputError
from vlm_node.analysis.tracking import SignTracker
from vlm_node.errors import AnalysisError, BackendUnavailableError, ConfigError
from vlm_node.frames import AnonymizedFrame
from vlm_node.results import AnalysisResult

log = logging.getLogger(__name__)

BackendFactory = Callable[[], AnalysisBackend]
OK, DEGRADED, UNSTARTED, CLOSED = "ok", "degraded", "unstarted", "closed"


def create_backend(config: AnalysisConfig, name: str | None = None) -> AnalysisBackend:
    """An unloaded backend by name (`config.backend` by default; `auto` means the VLM)."""
    name = name or config.backend
    if name == "auto":
        name = config.vlm_backend
    if name == "transformers":
        from vlm_node.analysis.transformers_backend import TransformersBackend
        return TransformersBackend(config)
    if name == "openai":
        from vlm_node.analysis.openai_backend import OpenAIBackend
        return OpenAIBackend(config)
    if name == "clip":
        from vlm_node.analysis.clip_backend import ClipBackend
        return ClipBackend(config, config.ocr.candidates)
    if name == "ocr":
        return _ocr_backend(config)
    raise BackendUnavailableError(f"analysis.backend={name!r} is not a backend")


def _ocr_backend(config: AnalysisConfig) -> AnalysisBackend:
    from vlm_node.analysis.ocr_backend import OcrBackend
    return OcrBackend(config.ocr)


class AnalysisEngine:
    """`start()` once, then `analyze(frames)` from one worker thread; `status()` from any."""

    def __init__(self, config: AnalysisConfig, *, primary_factory: BackendFactory | None = None,
                 ocr_factory: BackendFactory | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        check_analysis_config(config)
        self.config = config
        self._primary_factory = primary_factory or (lambda: create_backend(config))
        self._ocr_factory = ocr_factory or (lambda: _ocr_backend(config))
        self._clock = clock
        self._lock = threading.Lock()
        self._executor = cf.ThreadPoolExecutor(1, thread_name_prefix="vlm_backend")
        self.primary: AnalysisBackend | None = None
        self.ocr: AnalysisBackend | None = None
        self.scene: SceneDetector | None = None
        self._ocr_only = config.backend == "ocr"
        self._primary_loaded = False
        self._state = UNSTARTED
        self._reason = ""
        self._next_retry = 0.0
        self._inflight: cf.Future | None = None  # a VLM call still running (timed out / probe)
        self._ocr_note = ""
        self.counts = {"batches": 0, "frames": 0, "vlm_errors": 0, "vlm_timeouts": 0,
                       "output_errors": 0, "fallback_frames": 0, "ocr_errors": 0, "probes": 0,
                       "recoveries": 0, "fused_confirmed": 0, "fused_corrected": 0,
                       "fused_filled": 0, "ocr_added": 0}

    # ------------------------------------------------------------------------------ start-up
    def start(self) -> "AnalysisEngine":
        """Load the backends; raises BackendUnavailableError when the configuration cannot
        run at all (an explicit backend, or a required VLM, that does not load)."""
        cfg = self.config
        if cfg.scene.enabled:
            self.scene = SceneDetector(cfg.scene.score_threshold, cfg.scene.tiles).load()
        if self._ocr_only:
            self.primary = self._ocr_factory()
            self.primary.load()
            self._primary_loaded = True
            # OCR-only results are degraded by design (no scene, no pictograms): say so here too.
            self._set_state(DEGRADED, "analysis.backend is ocr: no VLM, OCR-only results")
            return self
        self.primary = self._primary_factory()
        if cfg.fusion.enabled or cfg.fallback:
            try:
                ocr = self._ocr_factory()
                ocr.load()
                self.ocr = ocr
            except AnalysisError as exc:
                self._ocr_note = f"OCR unavailable: {exc}"
                log.warning("%s (no fusion, no fallback)", self._ocr_note)
        try:
            self._executor.submit(self.primary.load).result()
            self._primary_loaded = True
            self._set_state(OK, "")
        except AnalysisError as exc:
            explicit = cfg.backend != "auto"
            if explicit or cfg.require_vlm or self.ocr is None or not cfg.fallback:
                why = ("analysis.require_vlm is true" if cfg.require_vlm and not explicit
                       else f"analysis.backend={cfg.backend!r}" if explicit
                       else self._ocr_note or "analysis.fallback is false")
                self.close()
                raise BackendUnavailableError(f"{exc} ({why})") from exc
            self._degrade(f"VLM not loaded: {exc}")
            log.warning("analysis DEGRADED, answering from OCR: %s", self._reason)
        return self

    # ------------------------------------------------------------------------------ state
    def _set_state(self, state: str, reason: str) -> None:
        with self._lock:
            self._state, self._reason = state, reason

    def _degrade(self, reason: str) -> None:
        with self._lock:
            self._state, self._reason = DEGRADED, reason
            self._next_retry = self._clock() + self.config.retry_interval

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def status(self) -> dict[str, Any]:
        """Diagnostics: state, degraded flag and reason, which backend answers, error counts."""
        with self._lock:
            state, reason, counts = self._state, self._reason, dict(self.counts)
            retry = max(0.0, self._next_retry - self._clock()) if state == DEGRADED else 0.0
        primary = self.primary
        out: dict[str, Any] = {
            "backend": self.config.backend,
            "active": ("ocr" if state == DEGRADED or self._ocr_only
                       else primary.name if primary else ""),
            "state": state, "degraded": state == DEGRADED, "reason": reason,
            "model_id": primary.model_id if primary else "",
            "vlm_loaded": self._primary_loaded and not self._ocr_only,
            "ocr_available": self.ocr is not None or self._ocr_only,
            "fusion": self.config.fusion.enabled and self.ocr is not None,
            "next_retry_s": round(retry, 1), **counts}
        if self.scene is not None:
            out.update({f"scene_objects_{k}": v for k, v in self.scene.counts.items()})
        if self._ocr_note:
            out["ocr_note"] = self._ocr_note
        backend_status = getattr(primary, "status", None)
        if callable(backend_status):
            out.update({f"{primary.name}.{k}": v for k, v in backend_status().items()})
        return out

    # ------------------------------------------------------------------------------ analysis
    def analyze(self, frames: Sequence[AnonymizedFrame]) -> list[AnalysisResult]:
        results = self._analyze(frames)
        if self.scene is None:
            return results
        out = []
        for frame, result in zip(frames, results):
            t0 = time.perf_counter()
            scene = self.scene.describe(frame, result.scene)
            out.append(dataclasses.replace(
                result, scene=scene,
                analysis_ms=result.analysis_ms + (time.perf_counter() - t0) * 1e3))
        return out

    def _analyze(self, frames: Sequence[AnonymizedFrame]) -> list[AnalysisResult]:
        if self._state in (UNSTARTED, CLOSED) or self.primary is None:
            raise AnalysisError(f"analysis engine is {self._state}")
        if not frames:
            return []
        self._count("batches")
        self._count("frames", len(frames))
        if self._ocr_only:
            return self.primary.analyze(frames)
        with self._lock:
            usable = self._state == OK and self._inflight is None
        if not usable:
            self._maybe_probe(frames)
            return self._fallback(frames, self._reason_now(), None, self._clock())
        return self._run_vlm(frames)

    def _reason_now(self) -> str:
        with self._lock:
            if self._inflight is not None and self._state == OK:
                return "VLM still busy with an earlier batch"
            return self._reason

    def _run_vlm(self, frames: Sequence[AnonymizedFrame]) -> list[AnalysisResult]:
        t0 = self._clock()
        future = self._executor.submit(self.primary.analyze, list(frames))
        ocr_results = self._ocr(frames) if self.config.fusion.enabled else None
        try:
            remaining = self.config.batch_timeout - (self._clock() - t0)
            results = future.result(timeout=max(0.0, remaining))
        except cf.TimeoutError:
            with self._lock:
                self._inflight = future
            future.add_done_callback(self._inflight_done)
            self._count("vlm_timeouts")
            self._degrade(f"VLM batch exceeded analysis.batch_timeout="
                          f"{self.config.batch_timeout:g} s")
            log.warning("analysis DEGRADED: %s", self._reason)
            return self._fallback(frames, self._reason, ocr_results, t0)
        except BatchOutputError as exc:
            self._count("output_errors", sum(1 for r in exc.results if r is None))
            return self._merge_partial(frames, exc, ocr_results, t0)
        except Exception as exc:  # noqa: BLE001 - any backend failure (or bug) falls back
            self._count("vlm_errors")
            if not isinstance(exc, AnalysisError):
                log.exception("VLM backend raised an unexpected error")
            self._degrade(f"VLM failed: {exc}")
            log.warning("analysis DEGRADED: %s", self._reason)
            return self._fallback(frames, self._reason, ocr_results, t0)
        return [self._fuse(r, ocr_results[i] if ocr_results else None)
                for i, r in enumerate(results)]

    def _merge_partial(self, frames: Sequence[AnonymizedFrame], exc: BatchOutputError,
                       ocr_results: list[AnalysisResult] | None, t0: float
                       ) -> list[AnalysisResult]:
        bad = [i for i, r in enumerate(exc.results) if r is None]
        sub_ocr = [ocr_results[i] for i in bad] if ocr_results else None
        fallback = iter(self._fallback([frames[i] for i in bad], "", sub_ocr, t0,
                                       reasons=[f"VLM answer unusable: {exc.errors[i]}"
                                                for i in bad]))
        return [self._fuse(r, ocr_results[i] if ocr_results else None) if r is not None
                else next(fallback) for i, r in enumerate(exc.results)]

    def _fuse(self, result: AnalysisResult, ocr: AnalysisResult | None) -> AnalysisResult:
        if ocr is None:
            return result
        fused, stats = fuse_results(result, ocr, self.config.fusion,
                                    self.config.default_speed_unit)
        with self._lock:
            self.counts["fused_confirmed"] += stats.confirmed
            self.counts["fused_corrected"] += stats.corrected
            self.counts["fused_filled"] += stats.filled
            self.counts["ocr_added"] += stats.added
        return fused

    def _ocr(self, frames: Sequence[AnonymizedFrame]) -> list[AnalysisResult] | None:
        if self.ocr is None:
            return None
        try:
            return self.ocr.analyze(frames)
        except AnalysisError as exc:
            self._count("ocr_errors")
            log.warning("OCR failed on a batch: %s", exc)
            return None

    def _fallback(self, frames: Sequence[AnonymizedFrame], reason: str,
                  ocr_results: list[AnalysisResult] | None, t0: float,
                  reasons: list[str] | None = None) -> list[AnalysisResult]:
        """OCR results for `frames`, marked degraded with the reason (one per frame)."""
        reasons = reasons or [reason] * len(frames)
        if not frames:
            return []
        if not self.config.fallback or self.ocr is None:
            raise AnalysisError(reasons[0] + (f"; {self._ocr_note}" if self._ocr_note else
                                              "; analysis.fallback is false"))
        results = ocr_results if ocr_results is not None else self._ocr(frames)
        if results is None:
            raise AnalysisError(f"{reasons[0]}; and the OCR fallback failed too")
        self._count("fallback_frames", len(frames))
        ms = (self._clock() - t0) * 1e3
        return [dataclasses.replace(r, degraded=True, degraded_reason=why,
                                    analysis_ms=max(r.analysis_ms, ms))
                for r, why in zip(results, reasons)]

    # ------------------------------------------------------------------------------ recovery
    def _inflight_done(self, future: cf.Future) -> None:
        with self._lock:
            if self._inflight is future:
                self._inflight = None

    def _maybe_probe(self, frames: Sequence[AnonymizedFrame]) -> None:
        """After `retry_interval`, try the VLM again on the newest frame, in the background."""
        with self._lock:
            if (self._state != DEGRADED or self._inflight is not None
                    or self._clock() < self._next_retry):
                return
            self.counts["probes"] += 1
            frame = frames[-1]
            future = self._executor.submit(self._probe, frame)
            self._inflight = future
        future.add_done_callback(self._probe_done)

    def _probe(self, frame: AnonymizedFrame) -> None:
        assert self.primary is not None
        if not self._primary_loaded:
            self.primary.load()
            self._primary_loaded = True
        try:
            self.primary.analyze([frame])
        except BatchOutputError:
            pass  # the model ran and answered; one unusable answer is not a failure

    def _probe_done(self, future: cf.Future) -> None:
        exc = future.exception()
        with self._lock:
            self._inflight = None
            if self._state != DEGRADED:
                return
            if exc is None:
                self._state, self._reason = OK, ""
                self.counts["recoveries"] += 1
            else:
                self._reason = f"VLM retry failed: {exc}"
                self._next_retry = self._clock() + self.config.retry_interval
        if exc is None:
            log.info("VLM is back; analysis no longer degraded")

    def close(self) -> None:
        with self._lock:
            self._state = CLOSED
            busy = self._inflight is not None and not self._inflight.done()
        self._executor.shutdown(wait=not busy, cancel_futures=True)
        if self.primary is not None and not busy:
            self.primary.close()
        if self.ocr is not None:
            self.ocr.close()


def _analysis_config(config: Any) -> AnalysisConfig:
    """The AnalysisConfig of a NodeConfig (its `analysis` field), or `config` itself."""
    inner = getattr(config, "analysis", config)
    if not isinstance(inner, AnalysisConfig):
        raise ConfigError(f"{type(config).__name__} has no `analysis` settings (an "
                          f"AnalysisConfig); analysis cannot be configured")
    return inner


def analyzer_from_config(config: Any) -> AnalysisEngine:
    """A started engine for a NodeConfig (or AnalysisConfig): what the node calls at configure."""
    return AnalysisEngine(_analysis_config(config)).start()


def tracker_factory_from_config(config: Any) -> Callable[[], SignTracker] | None:
    """A per-camera SignTracker factory, or None when tracking is disabled."""
    tracking = _analysis_config(config).tracking
    if not tracking.enabled:
        return None
    SignTracker.from_config(tracking)  # raises ConfigError now rather than on the first frame
    return lambda: SignTracker.from_config(tracking)
