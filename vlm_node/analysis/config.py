"""Analysis settings: the `analysis.*` parameters of the node (nested groups become dotted names,
e.g. `analysis.openai.read_timeout`)."""
from __future__ import annotations

from dataclasses import dataclass, field

from vlm_node.analysis.ocr_config import OcrConfig
from vlm_node.errors import ConfigError
from vlm_node.params import setting, validate

BACKENDS = ("auto", "transformers", "openai", "ocr", "clip")
VLM_BACKENDS = ("transformers", "openai")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "float16", "bfloat16")
SPEED_UNITS = ("km/h", "mph")

# SmolVLM-256M-Instruct (Apache-2.0): an Idefics3 model with a SigLIP-base/16-512 encoder and a
# SmolLM2-135M decoder; under 1 GB of GPU memory, the smallest instruct VLM that reads text in
# images. Nothing is downloaded at run time: fetch it once (`huggingface-cli download ...`) or set
# `analysis.model` to a local directory.
DEFAULT_MODEL = "HuggingFaceTB/SmolVLM-256M-Instruct"
DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"


@dataclass
class OpenAIConfig:
    """An OpenAI-compatible `/v1/chat/completions` server (vLLM, llama.cpp, Ollama, hosted)."""

    base_url: str = setting("http://127.0.0.1:8000/v1", "Server base URL including /v1 "
                                                        "(http or https).")
    model: str = setting("", "Model name sent to the server; empty = analysis.model.")
    api_key_env: str = setting("VLM_NODE_API_KEY", "Name of the environment variable holding "
                                                   "the API key (the key itself is never a "
                                                   "parameter and never logged); unset = no key.")
    connect_timeout: float = setting(2.0, "Seconds to establish a connection.",
                                     min=0.05, max=60.0)
    read_timeout: float = setting(15.0, "Seconds to wait for the answer of one request.",
                                  min=0.05, max=600.0)
    retries: int = setting(2, "Retries of a request after a 5xx, 408, 429, timeout or "
                              "connection error (never after other 4xx).", min=0, max=10)
    backoff: float = setting(0.5, "Seconds before the first retry; doubles each retry.",
                             min=0.0, max=30.0)
    max_backoff: float = setting(8.0, "Longest wait between retries, seconds.",
                                 min=0.0, max=120.0)
    circuit_failures: int = setting(5, "Consecutive failed requests that open the circuit "
                                       "breaker (requests then fail at once).", min=1, max=1000)
    circuit_cooldown: float = setting(30.0, "Seconds the circuit stays open before one trial "
                                            "request (half-open).", min=0.05, max=3600.0)
    use_json_schema: bool = setting(True, "Send the output schema as response_format "
                                          "(json_schema); dropped for the session if the server "
                                          "rejects it with 400.")
    jpeg_quality: int = setting(85, "JPEG quality of the image sent.", min=30, max=100)
    max_concurrency: int = setting(4, "Frames of one batch sent in parallel.", min=1, max=32)
    check_model: bool = setting(True, "At load, GET /models and require the model to be "
                                      "listed.")


@dataclass
class ClipConfig:
    """Zero-shot sign classification of candidate crops (backend `clip`)."""

    model: str = setting(DEFAULT_CLIP_MODEL, "CLIP model: hub id (already downloaded) or "
                                             "local directory.")
    min_probability: float = setting(0.35, "Smallest class probability reported as a sign.",
                                     min=0.0, max=1.0)
    max_candidates: int = setting(16, "Most candidate regions classified per frame.",
                                  min=1, max=256)


@dataclass
class FusionConfig:
    """Combining VLM (or CLIP) readings with OCR readings of the same frame."""

    enabled: bool = setting(True, "Run OCR beside the VLM and fuse its numbers into the "
                                  "readings.")
    iou_threshold: float = setting(0.3, "Box IoU at which a VLM and an OCR reading are the "
                                        "same sign.", min=0.01, max=1.0)
    conflict_factor: float = setting(0.5, "Confidence multiplier when OCR corrects the VLM's "
                                          "number.", min=0.0, max=1.0)
    prefer_ocr_box: bool = setting(True, "Use the OCR box (pixel-grounded) for a matched sign.")


@dataclass
class TrackingConfig:
    """Per-camera sign tracks: a reading is confirmed once seen in k of the last n frames."""

    enabled: bool = setting(True, "Track signs across frames (track_id, track_state).")
    k: int = setting(3, "Frames out of the last n in which a sign (with the same value) must "
                        "be seen to be confirmed.", min=1, max=100)
    n: int = setting(5, "Window of frames for the k-of-n rule.", min=1, max=100)
    m: int = setting(10, "Frames a track survives unseen before it expires.", min=1, max=1000)
    iou_threshold: float = setting(0.3, "Box IoU for a reading to continue a track.",
                                   min=0.01, max=1.0)


@dataclass
class SceneConfig:
    """The scene detector: road users and animals from a COCO detector, so results have a
    scene description (hazards, objects with boxes) without a VLM, and a VLM's hazards are
    joined with pixel-grounded ones (`vlm_node.analysis.scene_detector`)."""

    enabled: bool = setting(True, "Describe the scene from the object detector (source "
                                  "`detector`), or fuse it into the VLM's (source `fused`).")
    score_threshold: float = setting(
        0.5, "Smallest detector score of a reported object. Image-level precision/recall on "
             "56 hand-labelled photos in the README (Scene description).", min=0.3, max=1.0)
    tiles: int = setting(1, "Tiles per side of the detector's own pass (used only when the "
                            "anonymizer's person pass did not already run it).", min=1, max=4)


@dataclass
class AnalysisConfig:
    backend: str = setting("auto", "`auto`: the VLM named by vlm_backend when it loads, else "
                                   "OCR marked degraded; or one backend explicitly.",
                           choices=BACKENDS)
    vlm_backend: str = setting("transformers", "The VLM backend `auto` tries.",
                               choices=VLM_BACKENDS)
    require_vlm: bool = setting(False, "Fail at start-up when the VLM cannot be loaded "
                                       "(instead of running degraded on OCR).")
    model: str = setting(DEFAULT_MODEL, "Image-text-to-text model: Hugging Face hub id "
                                        "(already in the local cache) or local directory.")
    allow_download: bool = setting(False, "Let the transformers backend download a missing "
                                          "model (off: load only local files, fail fast).")
    device: str = setting("auto", "Torch device; auto = cuda when available.", choices=DEVICES)
    dtype: str = setting("auto", "Weights dtype; auto = bfloat16 on cuda (float16 where "
                                 "bf16 is unsupported), float32 on cpu.", choices=DTYPES)
    max_new_tokens: int = setting(256, "Token budget of one answer.", min=8, max=4096)
    max_image_side: int = setting(1024, "Frames are downscaled so their longer side is at most "
                                        "this many pixels before the model sees them.",
                                  min=64, max=8192)
    image_longest_edge: int = setting(
        0, "Override the image processor's size.longest_edge (Idefics3/SmolVLM): SmolVLM's "
           "default 2048 upsamples a frame and splits it into up to 13 tiles of 64 tokens; 512 "
           "gives one tile. 0 = the model's default.", min=0, max=8192)
    default_speed_unit: str = setting("km/h", "Unit of a speed whose unit the model did not "
                                              "give.", choices=SPEED_UNITS)
    max_signs: int = setting(16, "Most signs kept from one answer.", min=1, max=64)
    batch_timeout: float = setting(20.0, "Seconds a VLM batch may take before its frames are "
                                         "answered by the OCR fallback.", min=0.1, max=600.0)
    fallback: bool = setting(True, "When the VLM fails or times out, answer from OCR marked "
                                   "degraded (off: the batch fails).")
    retry_interval: float = setting(30.0, "Seconds after a VLM failure before it is tried "
                                          "again (in the background).", min=0.1, max=3600.0)
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    ocr: OcrConfig = field(default_factory=OcrConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)


def check_analysis_config(config: AnalysisConfig, prefix: str = "analysis.") -> None:
    """Ranges and choices of every field, plus the rules that involve two fields."""
    validate(config, prefix)
    t = config.tracking
    if t.k > t.n:
        raise ConfigError(f"{prefix}tracking.k={t.k} exceeds {prefix}tracking.n={t.n}: a sign "
                          f"could never be confirmed")
    if config.openai.max_backoff < config.openai.backoff:
        raise ConfigError(f"{prefix}openai.max_backoff={config.openai.max_backoff:g} is below "
                          f"{prefix}openai.backoff={config.openai.backoff:g}")
