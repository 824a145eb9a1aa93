"""onnxruntime sessions and model files: the anonymizer's detectors, and the session options of
the sign classifier and the OCR recogniser too.

All neural detectors run on onnxruntime so that one setting (`anonymizer.providers`) moves them
to CUDA or TensorRT on a vehicle computer. A provider that was asked for but is not available is
an error, never a silent fall back to the CPU: a node that was configured for the GPU and quietly
runs on the CPU misses its frame rate, and with a time budget that means dropped frames.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

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


def create_session(path: Path, providers: Sequence[str], threads: int = 0):  # noqa: ANN201
    """An InferenceSession on `providers` (in order of preference) with `session_options`.
    Raises ConfigError when the session did not get the first provider asked for
    (onnxruntime itself would fall back to the CPU with a warning)."""
    import onnxruntime as ort

    wanted = check_providers(providers)
    session = ort.InferenceSession(str(path), session_options(threads), providers=wanted)
    got = session.get_providers()
    if got[0] != wanted[0]:
        raise ConfigError(f"{path.name}: onnxruntime could not start {wanted[0]} (session runs on "
                          f"{', '.join(got)}); check the CUDA/TensorRT installation")
    return session
