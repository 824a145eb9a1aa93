"""Zero-shot sign classification with CLIP (backend `clip`): sign candidates (colour and shape,
`vlm_node.analysis.sign_candidates`) are cropped and matched against a text description of every
sign class, as in the CLIP paper (Radford et al. 2021, section 3.1.4): each class's text
embedding is the normalised mean over several prompt templates ("prompt ensembling").

CLIP tells what a sign means from its pictogram and shape; it does not read numbers, so a
speed-limit reading from here has no value: fusion with OCR supplies it. A few "not a sign"
descriptions (car, building, sky ...) absorb candidates that are not signs at all.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Sequence

import numpy as np

from vlm_node.analysis.base import AnalysisBackend
from vlm_node.analysis.config import AnalysisConfig
from vlm_node.analysis.prompt import describe_class
from vlm_node.analysis.sign_candidates import CandidateConfig, SignCandidate, find_candidates
from vlm_node.analysis.transformers_backend import first_line, import_torch_stack, resolve_device
from vlm_node.errors import AnalysisError, BackendUnavailableError
from vlm_node.frames import AnonymizedFrame
from vlm_node.results import AnalysisResult, SignReading
from vlm_node.vocab import SIGN_CLASSES, UNKNOWN

log = logging.getLogger(__name__)

# Templates in the style of the CLIP paper's ensembles (its GTSRB set describes traffic signs
# zoomed in, centred and close up; low resolution and blur match small, far-away signs).
TEMPLATES = (
    "a photo of a {} traffic sign.",
    "a zoomed in photo of a {} traffic sign.",
    "a centered photo of a {} traffic sign.",
    "a close up photo of a {} road sign.",
    "a low resolution photo of a {} traffic sign.",
    "a blurry photo of a {} sign by the road.",
)
NOT_A_SIGN = ("a car", "the back of a truck", "a building facade", "a tree", "the sky",
              "a traffic light", "a brick wall", "a road surface", "a shop sign")
CROP_MARGIN = 0.1  # context around a candidate, as a fraction of its size


class ClipBackend(AnalysisBackend):
    name = "clip"
    supports_batching = True  # all candidates of all frames go through one image forward pass
    describes_scene = False

    def __init__(self, config: AnalysisConfig,
                 candidates: CandidateConfig | None = None) -> None:
        self.config = config
        self.candidate_config = candidates or CandidateConfig()
        self._model: Any = None
        self._processor: Any = None
        self._device = "cpu"
        self.labels: list[str | None] = []  # class per text embedding row; None = not a sign
        self.text_embeddings: Any = None  # (len(labels), dim), unit rows
        self._logit_scale = 100.0

    @property
    def model_id(self) -> str:
        return self.config.clip.model

    def load(self) -> None:
        torch, transformers, _ = import_torch_stack()
        self._device = resolve_device(self.config.device)
        local_only = (not self.config.allow_download
                      or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"))
        name = self.model_id
        try:
            self._processor = transformers.AutoProcessor.from_pretrained(
                name, local_files_only=local_only)
            self._model = transformers.AutoModel.from_pretrained(
                name, local_files_only=local_only).to(self._device).eval()
        except OSError as exc:
            raise BackendUnavailableError(
                f"analysis.clip.model={name!r} could not be loaded from "
                f"{'local files' if local_only else 'the hub'}: {first_line(exc)}") from exc
        except (ValueError, KeyError, ImportError, TypeError) as exc:
            raise BackendUnavailableError(f"analysis.clip.model={name!r} is not a CLIP-style "
                                          f"model: {first_line(exc)}") from exc
        if not (hasattr(self._model, "get_text_features")
                and hasattr(self._model, "get_image_features")):
            raise BackendUnavailableError(f"analysis.clip.model={name!r} has no joint "
                                          f"image-text embedding (get_text/image_features)")
        scale = getattr(self._model, "logit_scale", None)
        self._logit_scale = float(scale.detach().exp()) if scale is not None else 100.0
        classes = [c for c in SIGN_CLASSES if c != UNKNOWN]
        rows = [self._ensemble([t.format(describe_class(c)) for t in TEMPLATES])
                for c in classes]
        rows += [self._ensemble([f"a photo of {thing}."]) for thing in NOT_A_SIGN]
        self.labels = [*classes, *([None] * len(NOT_A_SIGN))]
        self.text_embeddings = torch.stack(rows)
        try:  # warm-up on one grey crop
            self.classify([np.full((32, 32, 3), 127, np.uint8)])
        except AnalysisError as exc:
            raise BackendUnavailableError(f"analysis.clip.model={name!r}: warm-up failed: "
                                          f"{exc}") from exc

    def _features(self, out: Any) -> Any:
        # transformers 5 returns a model output whose pooler_output holds the projected
        # features; older releases return the tensor itself.
        return getattr(out, "pooler_output", out)

    def _ensemble(self, prompts: list[str]) -> Any:
        """The class's text embedding: mean of the normalised prompt embeddings, normalised."""
        import torch
        inputs = self._processor(text=prompts, return_tensors="pt", padding=True,
                                 truncation=True)
        inputs = {k: v.to(self._device) for k, v in inputs.items()}
        with torch.inference_mode():
            feats = self._features(self._model.get_text_features(**inputs)).float()
        feats = feats / feats.norm(dim=-1, keepdim=True)
        mean = feats.mean(dim=0)
        return mean / mean.norm()

    def classify(self, crops_bgr: Sequence[np.ndarray]) -> list[tuple[str | None, float]]:
        """(class or None for "not a sign", probability) per BGR crop, in one forward pass."""
        if self._model is None:
            raise BackendUnavailableError("clip backend used before load()")
        if not crops_bgr:
            return []
        import torch
        _, _, pil = import_torch_stack()
        images = [pil.fromarray(np.ascontiguousarray(c[:, :, ::-1])) for c in crops_bgr]
        try:
            inputs = self._processor(images=images, return_tensors="pt")
            pixels = inputs["pixel_values"].to(self._device, dtype=self._model.dtype)
            with torch.inference_mode():
                feats = self._features(self._model.get_image_features(pixel_values=pixels))
        except (RuntimeError, ValueError) as exc:
            raise AnalysisError(f"CLIP failed on {len(images)} crops: {first_line(exc)}") \
                from exc
        feats = feats.float()
        feats = feats / feats.norm(dim=-1, keepdim=True)
        probs = (self._logit_scale * feats @ self.text_embeddings.T).softmax(dim=-1)
        best = probs.argmax(dim=-1)
        return [(self.labels[int(i)], float(probs[row, i])) for row, i in enumerate(best)]

    def _crops(self, frame: AnonymizedFrame) -> list[tuple[SignCandidate, np.ndarray]]:
        img = frame.image
        h, w = img.shape[:2]
        cands = find_candidates(img, self.candidate_config)[:self.config.clip.max_candidates]
        out = []
        for cand in cands:
            rows, cols = cand.box.expanded(CROP_MARGIN).int_slices(w, h)
            crop = img[rows, cols]
            if crop.size:
                out.append((cand, crop))
        return out

    def analyze(self, frames: Sequence[AnonymizedFrame]) -> list[AnalysisResult]:
        t0 = time.perf_counter()
        per_frame = [self._crops(f) for f in frames]
        flat = [crop for crops in per_frame for _, crop in crops]
        labels = iter(self.classify(flat))
        ms = (time.perf_counter() - t0) * 1e3
        results = []
        for crops in per_frame:
            signs = []
            for cand, _ in crops:
                label, prob = next(labels)
                if label is None or prob < self.config.clip.min_probability:
                    continue
                signs.append(SignReading(sign_class=label, confidence=prob, source="clip",
                                         box=cand.box))
            results.append(AnalysisResult(signs=signs, scene=None, backend=self.name,
                                          model_id=self.model_id, analysis_ms=ms))
        return results

    def close(self) -> None:
        self._model = None
        self._processor = None
