"""Inference sessions and model files: the anonymizer's detectors, and the sessions of the sign
classifier and the OCR recogniser too.

Every neural model is an ONNX file run by one of two engines (`ENGINES`): onnxruntime, whose
providers (`anonymizer.providers`) move the models to CUDA or TensorRT on a vehicle computer,
or OpenVINO on the CPU (`openvino_session`), which computes in bfloat16 where the CPU has it.
A provider or engine that was asked for but is not available is an error, never a silent fall
back to the CPU: a node that was configured for the GPU and quietly runs on the CPU misses its
frame rate, and with a time budget that means dropped frames.
"""
from __future__ import annotations

import contextvars
import importlib.util
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from vlm_node.errors import ConfigError
from vlm_node.paths import ASSETS

MODELS = ASSETS / "models"

# Providers this package knows how to request; which of them exist depends on the installed
# onnxruntime build (onnxruntime: CPU; onnxruntime-gpu: CUDA and TensorRT as well).
KNOWN_PROVIDERS = ("CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider",
                   "OpenVINOExecutionProvider", "ROCMExecutionProvider")


def shipped_model(relative: str) -> Path:
    """A model file shipped in vlm_node/assets/models (see ATTRIBUTION.md there)."""
    path = MODELS / relative
    if not path.is_file():
        raise FileNotFoundError(f"model file missing from the installation: {path}")
    return path


# The PP-OCRv4 files of the rapidocr-onnxruntime wheel that the package runs itself.
PP_OCR_DET = "ch_PP-OCRv4_det_infer.onnx"
PP_OCR_REC = "ch_PP-OCRv4_rec_infer.onnx"


def rapidocr_model(name: str) -> Path:
    """A PP-OCR ONNX file from the installed rapidocr-onnxruntime wheel (Apache-2.0). The wheel
    is a pinned dependency, so its 16 MB of weights are not duplicated in this package."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "rapidocr-onnxruntime is not installed; it provides the PP-OCR text detector used for "
            "plates: pip install --no-deps rapidocr-onnxruntime==1.4.4")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"PP-OCR model {name} not found in rapidocr-onnxruntime ({path})")
    return path


# The engines that run the ONNX files (`Runtime.session`). OpenVINO is the default: on the
# development photos it gave the same faces, plates and signs as onnxruntime (one speed value of
# 345 fewer) in 0.52-0.58x the CPU time (README, "Inference engines").
ENGINES = ("onnxruntime", "openvino")
DEFAULT_ENGINE = "openvino"
CPU = ("CPUExecutionProvider",)
# OpenVINO's precision: "auto" is the one it picks for the CPU, "f32" forces float32.
PRECISIONS = ("auto", "f32")
# The help of the `engine` and `precision` settings (anonymizer and analysis.ocr alike).
ENGINE_HELP = ("Inference engine of the ONNX models: `onnxruntime` (its `providers` choose CPU, "
               "CUDA or TensorRT) or `openvino` (OpenVINO's CPU plugin, bfloat16 where the CPU "
               "computes it: Intel AMX or AVX512-BF16).")
# How many input shapes a model whose input has the same shape frame after frame (the face
# pass, the plate bands) keeps compiled for exactly that shape with OpenVINO
# (`OpenVinoSession`, `exact_shapes`): a 1080p stream uses two per model (CenterFace at 960 and
# 640 px, the text detector's band and whole pass); four leave room for a second camera size.
FRAME_SHAPES = 4
FRAME_SHAPES_HELP = (
    "With engine `openvino`: how many input shapes of the models that see the same shape "
    "frame after frame (CenterFace, the plate text detector on whole frames and bands) are "
    "kept compiled for exactly that shape, the last used kept (0 = one model for every "
    "shape). 1.2x (CenterFace) and 1.5x (text detector) faster; each new shape costs a "
    "0.15-0.35 s compile and ~50-70 MB.")
# How much larger (in input elements) a shape an OpenVINO model has already prepared may be
# for a new input of a model whose input sizes vary (`OpenVinoSession`, `shape_reuse`).
SHAPE_REUSE = 1.5
SHAPE_REUSE_HELP = (
    "With engine `openvino`: a model whose input size varies from call to call (the plate "
    "text detector on vehicle regions, the text recogniser) runs a new input shape padded to "
    "one it has already run when that one has at most this many times the input's elements "
    "(OpenVINO prepares each new shape on its first call: 41 instead of 13 ms for the text "
    "detector). 1 = off. The node only: offline tools and frames_in_flight > 1 keep it off, "
    "so that their output does not depend on the order of calls.")
PRECISION_HELP = ("With engine `openvino`: `auto` lets OpenVINO compute in bfloat16 where the "
                  "CPU has it (float32 elsewhere); `f32` keeps float32 everywhere.")

# Whether the models now running serve a frame of a stream whose size has not changed (set by
# the anonymizer for the thread that detects the frame: `stream_frame`).
_STREAM_FRAME: contextvars.ContextVar[bool] = contextvars.ContextVar("vlm_node_stream_frame",
                                                                     default=False)


@contextmanager
def stream_frame(on: bool = True) -> Iterator[None]:
    """Within this block (on this thread), the sessions asked for with `recurring` run on the
    models compiled for their exact input shape (`OpenVinoSession`); outside it, on the model
    compiled for any shape. Why the anonymizer says so per frame rather than each session
    deciding: a stream keeps its frame size, so its shapes come back every frame and a
    compile per shape pays after a few frames; a folder of photos brings a new size almost
    every image (1,573 photos: 74 s with one model for every shape, 204 s compiling per
    shape). Why a context variable: the detectors between the anonymizer and the sessions
    (the face models, the plate scan) need not carry it, and frames detected at the same
    time on two threads each keep their own answer."""
    token = _STREAM_FRAME.set(on)
    try:
        yield
    finally:
        _STREAM_FRAME.reset(token)


def in_stream_frame() -> bool:
    """Whether the calling thread is inside `stream_frame(True)`."""
    return _STREAM_FRAME.get()


def check_providers(providers: Sequence[str]) -> list[str]:
    """`providers` if this onnxruntime build has every one of them, else ConfigError."""
    import onnxruntime as ort

    if not providers:
        raise ConfigError("anonymizer.providers is empty; use e.g. ['CPUExecutionProvider']")
    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing:
        raise ConfigError(
            f"anonymizer.providers asks for {', '.join(missing)}, which this onnxruntime build "
            f"does not have (available: {', '.join(available)}); install onnxruntime-gpu for "
            f"CUDA/TensorRT or choose from the available ones")
    return list(providers)


def session_options(threads: int = 0):  # noqa: ANN201
    """The SessionOptions of every onnxruntime session of the package: `threads` intra-op
    threads (0 = onnxruntime's default, one per core), one inter-op thread, and no spinning.

    Why no spinning: by default onnxruntime's pool threads busy-wait after each run for the
    next one. The node runs several sessions at once (the anonymizer's detectors in parallel,
    then the sign classifier and OCR beside OpenCV work), so on two cores the spinning threads
    took CPU from the threads with work: the 1080p sign stage cost 451 CPU-ms and 239 ms a
    frame with spinning, 339 CPU-ms and 193 ms without (same readings; docs/sign_classifier.md).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # the UltraFace exports warn about every initializer
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


@dataclass(frozen=True)
class Runtime:
    """Where and how the ONNX models of one component run: the `engine`, onnxruntime's
    `providers` (in order of preference), intra-op `threads` per model (0 = one per core) and,
    for OpenVINO, the `precision` ("auto": bfloat16 where the CPU computes it, else float32;
    "f32"), how many shapes it compiles exactly for inputs that recur frame after frame
    (`frame_shapes`) and how much larger a prepared shape a varying input may be padded to
    (`shape_reuse`, models with `pad` only; 1 = off). One value object so that a setting added
    here reaches every model the same way."""

    providers: tuple[str, ...] = CPU
    threads: int = 1
    engine: str = DEFAULT_ENGINE
    precision: str = "auto"
    frame_shapes: int = FRAME_SHAPES
    shape_reuse: float = 1.0

    def session(self, path: Path, pad: Mapping[int, int] | None = None,  # noqa: ANN201
                recurring: bool = False):
        """A session for the ONNX file `path`: with onnxruntime an InferenceSession on
        `providers` with `session_options`; with OpenVINO an `OpenVinoSession` on the CPU
        (onnxruntime's providers do not apply there: anything but the CPU provider is a
        ConfigError, not silently ignored). Raises ConfigError when onnxruntime did not get the
        first provider asked for (it would itself fall back to the CPU with a warning).
        `pad`: input dimensions OpenVINO may zero-pad; `recurring`: the caller's inputs have
        the same shape frame after frame of a stream, so within `stream_frame` OpenVINO runs
        them on models compiled for each shape exactly, `frame_shapes` of them kept
        (`OpenVinoSession`, `exact_shapes`); onnxruntime runs every shape alike and gets the
        input as it is."""
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown inference engine {self.engine!r}; choose one of "
                              f"{', '.join(ENGINES)}")
        if self.engine == "openvino":
            if tuple(self.providers) != CPU:
                raise ConfigError(
                    f"providers {list(self.providers)} are onnxruntime's; engine 'openvino' runs "
                    "on the CPU only: use engine 'onnxruntime' for CUDA/TensorRT")
            from vlm_node.anonymize.openvino_session import OpenVinoSession
            return OpenVinoSession(path, self.threads, self.precision, pad,
                                   self.frame_shapes if recurring else 0,
                                   self.shape_reuse if pad else 1.0)
        import onnxruntime as ort

        wanted = check_providers(self.providers)
        session = ort.InferenceSession(str(path), session_options(self.threads),
                                       providers=wanted)
        got = session.get_providers()
        if got[0] != wanted[0]:
            raise ConfigError(f"{path.name}: onnxruntime could not start {wanted[0]} (session "
                              f"runs on {', '.join(got)}); check the CUDA/TensorRT installation")
        return session

    @property
    def compiles_per_shape(self) -> bool:
        """Whether a session asked for with `recurring` differs from a plain one (OpenVINO with
        `frame_shapes` > 0): a caller that runs inputs of both kinds then keeps one session of
        each; otherwise one session serves both."""
        return self.engine == "openvino" and self.frame_shapes > 0
