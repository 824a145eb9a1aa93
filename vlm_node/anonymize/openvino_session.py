"""The package's ONNX models on OpenVINO's CPU plugin, behind the part of onnxruntime's
`InferenceSession` interface the detectors, the sign classifier and the OCR recogniser use.

Why a second engine: on a CPU that computes bfloat16 in hardware (Intel AMX or AVX512-BF16, as
the Xeon VMs of the measurements in docs/anonymizer.md have), OpenVINO runs these convolutional
networks in bf16 and took the PP-OCR text detector from 175 to 57 ms and CenterFace from 81 to 41
ms a 960x544 frame on one thread (onnxruntime runs the same float32 graphs in float32 and has
no such mode for them). On CPUs without bf16 OpenVINO computes in float32 (the text detector
still 1.5x faster there). Which precision a model got is `precision`, and the benchmarks print
it.

Why an adapter rather than changes in every caller: the detectors were written against
onnxruntime's session (`run`, `get_inputs`, `get_outputs`, `get_modelmeta`), and one class
keeping that interface lets `runtime.Runtime.session` choose the engine in one place.
"""
from __future__ import annotations

import atexit
import gc
import logging
import math
import os
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import numpy as np

from vlm_node.anonymize.runtime import PRECISIONS, in_stream_frame
from vlm_node.errors import ConfigError
from vlm_node.paths import cache_dir

log = logging.getLogger(__name__)
# Environment variable naming the directory of compiled models; "off" disables the cache.
CACHE_ENV = "VLM_NODE_OPENVINO_CACHE"


@dataclass(frozen=True)
class NodeArg:
    """An input or output as onnxruntime describes it: a name and a shape whose dynamic
    dimensions are None (onnxruntime gives their symbolic names, which nothing here reads)."""

    name: str
    shape: list[int | None]


class OpenVinoSession:
    """One ONNX file compiled for OpenVINO's CPU plugin.

    Thread-safe like an onnxruntime session: an OpenVINO infer request is not, so every thread
    that calls `run` gets its own request on the shared compiled model (the anonymizer runs
    two frames' detectors at once in the offline tools)."""

    def __init__(self, path: Path, threads: int = 0, precision: str = "auto",
                 pad: Mapping[int, int] | None = None, exact_shapes: int = 0,
                 shape_reuse: float = 1.0) -> None:
        """`pad`: input dimension -> step. OpenVINO prepares each new input shape once (the
        recogniser took 49 ms on a shape it had not seen and 8 ms on one it had), so inputs
        are zero-padded up to a multiple of the step in those dimensions. Only for models
        whose callers read the outputs over the unpadded part alone (the text detector cuts
        its map back, the recogniser's extra steps decode as blanks). The batch dimension,
        when dynamic, is always padded to a few sizes and the outputs cut back to the batch.

        `exact_shapes` > 0: inside `runtime.stream_frame`, every input shape runs on a copy of
        the model compiled for exactly that shape, the `exact_shapes` shapes used last kept
        (`ExactShapes`), instead of on the one compiled for any shape. For callers whose input
        has the same shape frame after frame (a face pass over the whole frame, a plate band)
        on a stream whose frame size stays the same: a model compiled for a fixed
        shape ran CenterFace at 960x544 in 35 instead of 42 ms and the text detector at
        960x576 in 37 instead of 59 ms (docs/anonymizer.md), at the price of a compile
        (0.15-0.35 s) the first time a shape is seen and ~50-70 MB per shape kept.

        `shape_reuse` > 1: an input whose padded shape this session has not run yet is padded
        further, to the smallest shape it has run that is at least as large in every
        dimension and has at most `shape_reuse` times its elements (the same rule as `pad`:
        callers read the outputs over the unpadded part). The first call of a new shape costs
        2-4x a later one (the text detector on vehicle regions 41 instead of 13 ms, the
        recogniser 31 instead of 7 ms); a shape with a prepared neighbour never pays it, for
        at most that many times the work. Which shape an input gets depends on the shapes run
        before it, so outputs may differ by the padding with the order of calls: for a live
        stream, not for the offline tools (config.py turns it off there)."""
        try:
            import openvino  # noqa: F401 - checked here for a clear error
        except ImportError as exc:
            raise ConfigError(
                "engine 'openvino' needs the openvino package (requirements/runtime.txt); "
                "install it or use engine 'onnxruntime'") from exc
        if precision not in PRECISIONS:
            raise ConfigError(f"OpenVINO precision must be one of {PRECISIONS}, not {precision!r}")
        self._key = (str(path), _stamp(path), int(threads), precision)
        model, self._compiled = _compiled(*self._key)
        self.precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        self.path = Path(path)
        self._inputs = [NodeArg(p.get_any_name(), _shape(p.get_partial_shape()))
                        for p in model.inputs]
        self._outputs = [NodeArg(p.get_any_name(), _shape(p.get_partial_shape()))
                         for p in model.outputs]
        self._metadata = _metadata(model)
        self._pad = dict(pad or {})
        self._reuse = float(shape_reuse)
        self._shapes_run: set[tuple[int, ...]] = set()
        self._shapes_lock = threading.Lock()
        self.reused = 0  # inputs padded to a larger shape already run (`shape_reuse`)
        self._local = threading.local()
        self._exact = (_exact_models(str(path), _stamp(path), int(threads), precision,
                                     int(exact_shapes)) if exact_shapes > 0 else None)
        _LIVE.add(self)

    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        return ["OpenVINO CPU"]

    def get_modelmeta(self) -> SimpleNamespace:
        """The ONNX file's metadata_props, as onnxruntime's `custom_metadata_map`."""
        return SimpleNamespace(custom_metadata_map=dict(self._metadata))

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]
            ) -> list[np.ndarray]:
        """onnxruntime's `run`: the outputs named (all when None), in that order, as arrays the
        caller owns (an infer request reuses its output buffers on the next call)."""
        if self._compiled is None:
            raise RuntimeError(f"{self.path.name}: OpenVINO session used after release_all()")
        batch = {len(x) for x in feeds.values() if np.ndim(x)}
        n = batch.pop() if len(batch) == 1 else None
        exact = self._exact is not None and in_stream_frame()
        padded = {name: self._padded(name, np.asarray(x), exact) for name, x in feeds.items()}
        if exact:
            request = self._exact.request(padded)
        else:
            request = self._thread_request()
        request.infer(padded)
        names = output_names or [o.name for o in self._outputs]
        outs = [request.get_tensor(name).data for name in names]
        grown = n is not None and any(len(x) != n for x in padded.values())
        return [(o[:n] if grown and np.ndim(o) and len(o) > n else o).copy() for o in outs]

    def _thread_request(self) -> Any:  # noqa: ANN401
        """This thread's infer request on the model compiled for any shape (made on first use:
        requests are not shared between threads)."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        return request

    def prepare(self, shapes: Sequence[Sequence[int]]) -> int:
        """Run the model once on zeros of each input shape of `shapes` (a single-input model),
        smallest first, and remember them as run, so that OpenVINO has prepared them before a
        camera's frames need them and `shape_reuse` pads later inputs to them. Why: OpenVINO
        prepares each new input shape of an any-shape model on its first call (the text
        detector 41-75 instead of 7-13 ms), and in a node's first minute the frames that met a
        new shape took a median 121 against 57 ms (docs/anonymizer.md, "Shapes prepared at
        set-up"). A shape this process has already prepared for the same compiled
        model (another camera's session) is only remembered, not run again. Returns how many
        shapes were run."""
        if self._compiled is None:
            raise RuntimeError(f"{self.path.name}: OpenVINO session used after release_all()")
        if len(self._inputs) != 1:
            raise ValueError(f"{self.path.name}: prepare() takes single-input models")
        name = self._inputs[0].name
        request = self._thread_request()
        ran = 0
        for shape in sorted({tuple(int(v) for v in s) for s in shapes},
                            key=lambda s: (math.prod(s), s)):
            with _PREPARED_LOCK:
                done = shape in _PREPARED.setdefault(self._key, set())
            if not done:
                request.infer({name: np.zeros(shape, np.float32)})
                ran += 1
                with _PREPARED_LOCK:
                    _PREPARED[self._key].add(shape)
            with self._shapes_lock:
                self._shapes_run.add(shape)
        return ran

    def _run_shape(self, want: list[int]) -> list[int]:
        """`want`, or the smallest shape already run that covers it within `shape_reuse` times
        its elements (`__init__`); a shape not covered is remembered as run."""
        key = tuple(want)
        size = math.prod(key)
        with self._shapes_lock:
            if key in self._shapes_run:
                return want
            covering = [s for s in self._shapes_run if len(s) == len(key)
                        and all(a >= b for a, b in zip(s, key))
                        and math.prod(s) <= self._reuse * size]
            if covering:
                self.reused += 1
                return list(min(covering, key=lambda s: (math.prod(s), s)))
            self._shapes_run.add(key)
            return want

    def _padded(self, name: str, x: np.ndarray, exact: bool) -> np.ndarray:
        """`x` zero-padded at the end of the dynamic batch dimension (to `batch_bucket`) and
        of the dimensions of `pad` (to their step), and further to a shape already run
        (`shape_reuse`) unless it runs on a model compiled for its `exact` shape."""
        dims = next((i.shape for i in self._inputs if i.name == name), None)
        if dims is None or x.ndim != len(dims):
            return np.ascontiguousarray(x)
        want = list(x.shape)
        if dims[0] is None:
            want[0] = batch_bucket(x.shape[0])
        for dim, step in self._pad.items():
            if dims[dim] is None and step > 1:
                want[dim] = -(-x.shape[dim] // step) * step
        if self._reuse > 1.0 and not exact:
            want = self._run_shape(want)
        if want == list(x.shape):
            return np.ascontiguousarray(x)
        out = np.zeros(want, x.dtype)
        out[tuple(slice(0, k) for k in x.shape)] = x
        return out


_LIVE: "weakref.WeakSet[OpenVinoSession]" = weakref.WeakSet()

# Input shapes run through `OpenVinoSession.prepare` in this process, per compiled model
# (`_compiled`'s arguments): OpenVINO keeps what it prepared for a shape with the compiled model,
# which every session of the same file and settings shares.
_PREPARED: dict[tuple[str, tuple[int, int], int, str], set[tuple[int, ...]]] = {}
_PREPARED_LOCK = threading.Lock()


def shape_cover(wants: Sequence[Sequence[int]], reuse: float) -> list[tuple[int, ...]]:
    """A few shapes that between them cover every shape of `wants` the way `shape_reuse`
    covers an input: at least as large in every dimension, at most `reuse` times its elements
    (greedy set cover: the shape covering the most uncovered wants first, the smaller on a tie;
    deterministic). Why a cover and not every shape: the text detector's vehicle regions come
    in ~135 padded shapes, each ~10 MB once prepared; 25 of them cover the common ones."""
    left = {tuple(int(v) for v in w) for w in wants}
    candidates = sorted(left, key=lambda s: (math.prod(s), s))

    def covered_by(c: tuple[int, ...]) -> set[tuple[int, ...]]:
        return {w for w in left if len(w) == len(c) and all(a >= b for a, b in zip(c, w))
                and math.prod(c) <= reuse * math.prod(w)}

    chosen: list[tuple[int, ...]] = []
    while left:
        best = max(candidates, key=lambda c: (len(covered_by(c)), -math.prod(c)))
        left -= covered_by(best)
        chosen.append(best)
    return chosen


def release_all() -> None:
    """Drop every OpenVINO object this module made: each live session's infer requests and
    compiled model, the cache of compiled models and the Core. Registered with atexit when the
    Core is made. Why: a compiled model owns C++ threads, and one still alive when the process
    exits is destroyed with the plugin's static objects; a node stopped by SIGINT under `ros2
    launch` once aborted that way after its clean shutdown ("terminate called without an
    active exception", exit -6; once in this session's test runs, not reproduced in 21 more).
    Released here, they are gone before then."""
    for session in list(_LIVE):
        session._compiled = None
        session._local = threading.local()
        session._exact = None
    _exact_models.cache_clear()
    _compiled.cache_clear()
    with _PREPARED_LOCK:
        _PREPARED.clear()
    _make_core.cache_clear()
    gc.collect()


def batch_bucket(n: int) -> int:
    """The batch size a batch of `n` runs at: n up to 4, then the next multiple of 8 up to 64,
    then of 32 (a sign classifier batch of 1-400 crops takes ~20 shapes, not 400; at most
    ~1/8 of a large batch is padding)."""
    if n <= 4:
        return n
    step = 8 if n <= 64 else 32
    return -(-n // step) * step


@lru_cache(maxsize=32)
def _compiled(path: str, stamp: tuple[int, int], threads: int, precision: str
              ) -> tuple[Any, Any]:  # noqa: ANN401
    """The model read from `path` and compiled for the CPU, once per process and settings
    (`stamp`: the file's size and mtime, so a rewritten file is compiled again). Why: compiling
    takes ~1 s for the anonymizer's models against ~0.15 s for onnxruntime's sessions, and the
    tools and tests build many anonymizers; a compiled model serves any number of sessions
    (each thread of each session gets its own infer request)."""
    core = _core()
    model = core.read_model(path)
    return model, core.compile_model(model, "CPU", _compile_config(threads, precision))


class ExactShapes:
    """A model compiled once per input shape, the `capacity` shapes used last kept (least
    recently used dropped), each with an infer request per thread.

    Why a copy per shape: OpenVINO's CPU plugin runs a model compiled for one fixed shape
    faster than the same model compiled for any shape (its kernels and memory are laid out
    for that shape once): the text detector at 960x576 in 37 instead of 59 ms, CenterFace at
    960x544 in 35 instead of 42 ms (one thread, bf16). Why a bound: each copy holds its own
    buffers (~50-70 MB for the text detector at 960 px wide), and a caller whose shapes vary
    would otherwise keep one per shape it ever saw. A given shape always runs on the same
    compiled copy, so outputs do not depend on the order of calls or on what was evicted."""

    def __init__(self, path: str, stamp: tuple[int, int], threads: int, precision: str,
                 capacity: int) -> None:
        self.path, self.stamp, self.threads, self.precision = path, stamp, threads, precision
        self.capacity = capacity
        self._models: OrderedDict[tuple, tuple[Any, threading.local]] = OrderedDict()
        self._lock = threading.Lock()
        self.compiles = 0  # how many copies were compiled (evictions make it grow)

    def request(self, feeds: Mapping[str, np.ndarray]) -> Any:  # noqa: ANN401
        """This thread's infer request on the copy compiled for the shapes of `feeds`."""
        key = tuple((name, x.shape) for name, x in sorted(feeds.items()))
        with self._lock:
            entry = self._models.get(key)
            if entry is None:
                entry = (self._compile(dict(key)), threading.local())
                self._models[key] = entry
                self.compiles += 1
                while len(self._models) > self.capacity:
                    self._models.popitem(last=False)
            else:
                self._models.move_to_end(key)
        compiled, local = entry
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        return request

    def _compile(self, shapes: dict[str, tuple[int, ...]]) -> Any:  # noqa: ANN401
        """A copy of the model already read for `_compiled` (not the file read again),
        reshaped to `shapes` and compiled with the same settings."""
        model = _compiled(self.path, self.stamp, self.threads, self.precision)[0].clone()
        model.reshape({name: list(shape) for name, shape in shapes.items()})
        return _core().compile_model(model, "CPU", _compile_config(self.threads, self.precision))

    def shapes(self) -> list[tuple]:
        """The input shapes held, least recently used first."""
        with self._lock:
            return list(self._models)


@lru_cache(maxsize=32)
def _exact_models(path: str, stamp: tuple[int, int], threads: int, precision: str,
                  capacity: int) -> ExactShapes:
    """One `ExactShapes` per model file and settings in a process (`stamp` as `_compiled`),
    shared by every session asking for it, as the compiled models of `_compiled` are."""
    return ExactShapes(path, stamp, threads, precision, capacity)


def _compile_config(threads: int, precision: str) -> dict[str, Any]:
    """OpenVINO's compile settings for `threads` intra-op threads (0 = its default) and
    `precision`. No pinning: OpenVINO pins each compiled model's threads to cores of its own
    choice, and the anonymizer's models, run at once on their own threads, were all pinned to
    the same core (two models in parallel took 2.1x as long as each alone; unpinned 1.05x)."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
    if threads > 0:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if precision == "f32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    return config


def _stamp(path: Path) -> tuple[int, int]:
    st = Path(path).stat()
    return st.st_size, st.st_mtime_ns


_CORE_LOCK = threading.Lock()


def _core():  # noqa: ANN202
    """The process's OpenVINO Core (`_make_core`), made once even when the first sessions are
    made on several threads at once."""
    with _CORE_LOCK:
        return _make_core()


@lru_cache(maxsize=1)
def _make_core():  # noqa: ANN202
    """One OpenVINO Core per process (it loads the device plugins; compiling is thread-safe),
    caching compiled models in `CACHE_ENV`'s directory or cache_dir("openvino"): a process
    then starts its models in ~0.4 s instead of ~1.1 s (25 MB for all of them). OpenVINO keys
    the cache by model, settings and CPU, so a stale entry is never used. An unwritable
    directory (a read-only home on a vehicle) turns the cache off, said once in the log.
    Its Python bindings are warmed up before any session can run (`_warm_bindings`)."""
    import openvino as ov

    core = ov.Core()
    _warm_bindings(core)
    atexit.register(release_all)
    where = os.environ.get(CACHE_ENV, str(cache_dir("openvino")))
    if where.lower() in ("", "off", "0", "false"):
        return core
    try:
        Path(where).mkdir(parents=True, exist_ok=True)
        if not os.access(where, os.W_OK):
            raise PermissionError(f"{where} is not writable")
        core.set_property({"CACHE_DIR": where})
    except OSError as exc:
        log.warning("OpenVINO model cache off (%s): models compile on every start", exc)
    return core


def _warm_bindings(core: Any) -> None:  # noqa: ANN401
    """One inference of a one-operation model, numpy array in and out, on this thread alone.

    Why: the first hand-over of a numpy array in OpenVINO's Python bindings initialises
    static objects (pybind11's handle on the numpy C API, behind a once-only guard that waits
    for the GIL while another static's guard is held by a thread holding the GIL). When
    several threads made their first inference at the same time, as the anonymizer's stage
    threads do on a stream's first frame, the process could hang for good: 5 of 20 fresh
    processes whose 16 threads each made a first FastestDet call at once, and a busy-frame
    run hung on its first frame the same way (all stage threads waiting inside
    `InferRequest.infer`). Done here, once, before any session exists, it never hung in
    tests/test_engines.py's fresh processes."""
    import openvino as ov

    param = ov.opset13.parameter([1, 4], np.float32)
    model = ov.Model([ov.opset13.relu(param)], [param], "vlm_node_warm_up")
    request = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1}).create_infer_request()
    request.infer({0: np.zeros((1, 4), np.float32)})
    np.asarray(request.get_output_tensor(0).data).copy()


def cpu_precision() -> str:
    """The precision OpenVINO's CPU plugin computes in by default on this machine: "bf16"
    where the CPU has it in hardware, else "f32" (what `precision: auto` gets)."""
    return _core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()


def _shape(partial: Any) -> list[int | None]:  # noqa: ANN401
    return [d.get_length() if d.is_static else None for d in partial]


def _metadata(model: Any) -> dict[str, str]:  # noqa: ANN401
    """OpenVINO keeps an ONNX file's metadata_props under the model's rt_info 'framework'."""
    if not model.has_rt_info(["framework"]):
        return {}
    framework = model.get_rt_info()["framework"]
    return {str(k): v.astype(str) for k, v in framework.items()}
