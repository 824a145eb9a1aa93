"""VLM backend on Hugging Face transformers: any image-text-to-text model with a chat template
(SmolVLM/Idefics3, Qwen2-VL, LLaVA, ...), from a hub id in the local cache or a local directory.

Stages follow transformers' image-text-to-text pipeline (preprocess -> generate -> decode), but
all cameras' frames go through ONE `generate` call: the tokenizer pads on the left so every
sequence ends at the generation point, and greedy decoding makes the batched answers equal the
one-at-a-time answers. Nothing is downloaded at run time unless `analysis.allow_download` is set,
so a missing model fails at `load()` within a second instead of hanging on the network.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import cv2
import numpy as np

from vlm_node.analysis.base import AnalysisBackend
from vlm_node.analysis.config import AnalysisConfig
from vlm_node.analysis.prompt import chat_messages
from vlm_node.analysis.schema import BatchOutputError, ParseOptions, parse_answer
from vlm_node.errors import AnalysisError, BackendUnavailableError, ModelOutputError
from vlm_node.frames import AnonymizedFrame
from vlm_node.results import AnalysisResult

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)


def import_torch_stack() -> tuple[Any, Any, Any]:
    """torch, transformers, PIL: optional dependencies, imported where used."""
    try:
        import torch
        import transformers
        from PIL import Image as PILImage
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the transformers backend needs torch, transformers and pillow ({exc}); install "
            f"them or set analysis.backend to openai or ocr") from exc
    return torch, transformers, PILImage


def resolve_device(name: str) -> str:
    torch, _, _ = import_torch_stack()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("analysis.device=cuda but torch sees no CUDA device "
                                      "(a CPU-only torch build, or no driver); use auto or cpu")
    return name


def resolve_dtype(name: str, device: str) -> Any:
    torch, _, _ = import_torch_stack()
    if name == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, name)


@dataclass
class PreparedImage:
    """A frame as the model sees it: RGB, downscaled, with the factors mapping back."""

    image: "Image.Image"
    frame_width: int
    frame_height: int
    scale_x: float  # model pixels -> frame pixels
    scale_y: float


def prepare_image(bgr: np.ndarray, max_side: int) -> PreparedImage:
    """Downscale (area interpolation) so the longer side is at most `max_side`, BGR -> RGB."""
    _, _, pil = import_torch_stack()
    h, w = bgr.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        small = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA)
    else:
        nw, nh, small = w, h, bgr
    rgb = np.ascontiguousarray(small[:, :, ::-1])
    return PreparedImage(pil.fromarray(rgb), w, h, w / nw, h / nh)


class TransformersBackend(AnalysisBackend):
    """Loads processor + model once; `analyze` runs one greedy `generate` per batch."""

    name = "transformers"
    supports_batching = True
    describes_scene = True

    def __init__(self, config: AnalysisConfig, model: str | None = None) -> None:
        self.config = config
        self._model_name = model or config.model
        self._processor: Any = None
        self._model: Any = None
        self._device = "cpu"
        self._dtype: Any = None
        self._system_role = True
        self._prompts: dict[tuple[int, int], str] = {}
        self._image_kwargs: dict[str, Any] = {}

    @property
    def model_id(self) -> str:
        return self._model_name

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def device(self) -> str:
        return self._device

    def status(self) -> dict[str, Any]:
        """Diagnostics of the backend (the engine prefixes them with its name): the torch
        device the model runs on, which also tells the node not to hold the analysis while
        anonymizing (`analysis_yield`): a held process stops feeding a GPU."""
        return {"device": self._device if self.loaded else ""}

    # ------------------------------------------------------------------------------ loading
    def load(self) -> None:
        torch, transformers, _ = import_torch_stack()
        self._device = resolve_device(self.config.device)
        self._dtype = resolve_dtype(self.config.dtype, self._device)
        local_only = (not self.config.allow_download
                      or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"))
        name = self._model_name
        t0 = time.perf_counter()
        try:
            processor = transformers.AutoProcessor.from_pretrained(
                name, local_files_only=local_only)
            model = transformers.AutoModelForImageTextToText.from_pretrained(
                name, dtype=self._dtype, local_files_only=local_only)
        except OSError as exc:  # missing files / not in cache / no network
            where = "local files (analysis.allow_download is false)" if local_only else "the hub"
            raise BackendUnavailableError(
                f"analysis.model={name!r} could not be loaded from {where}: "
                f"{first_line(exc)}. Set analysis.model to a local model directory or to a hub "
                f"id already downloaded into the Hugging Face cache") from exc
        except (ValueError, KeyError, ImportError, TypeError) as exc:
            raise BackendUnavailableError(
                f"analysis.model={name!r} is not an image-text-to-text model this transformers "
                f"can load: {first_line(exc)}") from exc
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None or not hasattr(processor, "apply_chat_template"):
            raise BackendUnavailableError(f"analysis.model={name!r}: its processor has no "
                                          f"tokenizer or chat template")
        # Left padding: in a batch every prompt must end where generation starts.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._image_kwargs = self._image_size_override(processor)
        model.to(self._device).eval()
        self._processor, self._model = processor, model
        self._system_role = self._pick_template_mode()
        try:
            warm = np.full((64, 64, 3), 127, np.uint8)
            self.generate([prepare_image(warm, self.config.max_image_side)], max_new_tokens=2)
        except (AnalysisError, RuntimeError, ValueError) as exc:
            self.close()
            raise BackendUnavailableError(f"analysis.model={name!r} loaded but its warm-up "
                                          f"generation failed: {first_line(exc)}") from exc
        log.info("loaded %s on %s (%s) in %.1f s", name, self._device,
                 str(self._dtype).replace("torch.", ""), time.perf_counter() - t0)

    def _image_size_override(self, processor: Any) -> dict[str, Any]:
        edge = self.config.image_longest_edge
        if not edge:
            return {}
        size = getattr(getattr(processor, "image_processor", None), "size", None)
        current = size.get("longest_edge") if isinstance(size, dict) else \
            getattr(size, "longest_edge", None)
        if not current:
            raise BackendUnavailableError(
                f"analysis.image_longest_edge={edge} is set but the image processor of "
                f"{self._model_name!r} has no size.longest_edge; set it to 0")
        return {"size": {"longest_edge": edge}}

    def _pick_template_mode(self) -> bool:
        """True when the chat template takes a system message; some (e.g. Gemma-based) raise
        on one, and then the instructions go into the user turn."""
        last: Exception | None = None
        for system_role in (True, False):
            try:
                self._processor.apply_chat_template(
                    chat_messages(64, 64, system_role=system_role), add_generation_prompt=True,
                    tokenize=False)
                return system_role
            except Exception as exc:  # noqa: BLE001 - templates raise whatever jinja raises
                last = exc
        raise BackendUnavailableError(f"analysis.model={self._model_name!r}: the chat template "
                                      f"rejects an image + text message: {first_line(last)}")

    def close(self) -> None:
        on_cuda = self._model is not None and self._device.startswith("cuda")
        self._model = None
        self._processor = None
        self._prompts.clear()
        if on_cuda:  # hand the freed blocks back to the driver for other processes
            import torch
            torch.cuda.empty_cache()

    # ---------------------------------------------------------------------------- inference
    def prompt_for(self, width: int, height: int) -> str:
        key = (width, height)
        if key not in self._prompts:
            self._prompts[key] = self._processor.apply_chat_template(
                chat_messages(width, height, system_role=self._system_role),
                add_generation_prompt=True, tokenize=False)
        return self._prompts[key]

    def generate(self, images: Sequence[PreparedImage], max_new_tokens: int | None = None,
                 min_new_tokens: int | None = None) -> list[str]:
        """Answer texts for `images` from ONE greedy `generate` call (the batch path that
        `analyze` and the benchmark share)."""
        if self._model is None:
            raise BackendUnavailableError("transformers backend used before load()")
        import torch
        prompts = [self.prompt_for(p.image.width, p.image.height) for p in images]
        try:
            inputs = self._processor(text=prompts, images=[[p.image] for p in images],
                                     padding=True, return_tensors="pt", **self._image_kwargs)
            batch = {k: (v.to(self._device, dtype=self._dtype) if torch.is_floating_point(v)
                         else v.to(self._device))
                     for k, v in inputs.items() if isinstance(v, torch.Tensor)}
            tokenizer = self._processor.tokenizer
            kwargs: dict[str, Any] = dict(
                max_new_tokens=max_new_tokens or self.config.max_new_tokens, do_sample=False,
                num_beams=1, pad_token_id=tokenizer.pad_token_id)
            if min_new_tokens:
                kwargs["min_new_tokens"] = min_new_tokens
            with torch.inference_mode():
                out = self._model.generate(**batch, **kwargs)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise AnalysisError(f"generation failed on a batch of {len(images)}: "
                                f"{first_line(exc)}") from exc
        new_tokens = out[:, batch["input_ids"].shape[1]:]
        return self._processor.batch_decode(new_tokens, skip_special_tokens=True)

    def analyze(self, frames: Sequence[AnonymizedFrame]) -> list[AnalysisResult]:
        if not frames:
            return []
        t0 = time.perf_counter()
        prepared = [prepare_image(f.image, self.config.max_image_side) for f in frames]
        texts = self.generate(prepared)
        # Each frame waited for the whole batch: that is its analysis time.
        ms = (time.perf_counter() - t0) * 1e3
        results: list[AnalysisResult | None] = []
        errors: list[str] = []
        for p, text in zip(prepared, texts):
            options = ParseOptions(p.frame_width, p.frame_height, p.scale_x, p.scale_y,
                                   self.config.default_speed_unit, self.config.max_signs, "vlm")
            try:
                parsed = parse_answer(text, options)
            except ModelOutputError as exc:
                results.append(None)
                errors.append(str(exc))
                continue
            if parsed.issues or parsed.repairs:
                log.debug("answer repaired %s, issues %s", parsed.repairs, parsed.issues)
            results.append(AnalysisResult(signs=parsed.signs, scene=parsed.scene,
                                          backend=self.name, model_id=self.model_id,
                                          analysis_ms=ms))
            errors.append("")
        if any(r is None for r in results):
            raise BatchOutputError(results, errors)
        return [r for r in results if r is not None]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 300 characters, no closing full
    stop), for an error message that goes on after it."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300].rstrip(".")
