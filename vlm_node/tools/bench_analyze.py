"""Analysis throughput: ms/frame and frames/s per backend, and for transformers the gain of
batching several cameras into one `generate` call over one frame at a time.

Models are random-weight instances of real architectures built from their published configs
(SmolVLM-256M = Idefics3, Qwen2.5-VL-3B): compute does not depend on the weights, so the figures
stand for the trained models as long as the generated length is fixed (min_new_tokens =
max_new_tokens). `size="reduced"` keeps every width and the vocabulary but cuts the number of
layers (for CPUs); `size="tiny"` is for smoke tests only. Frames are rendered road scenes, passed
through the real anonymizer (the core pipeline's).

The OCR and CLIP backends are timed through the core pipeline (`vlm_node.pipeline.Pipeline.
analyze`, one batch at a time, as the node calls it), so a stage added to the pipeline's
analysis is timed too; the transformers figures time `generate` itself, batched against naive.

SmolVLM runs through `TransformersBackend.generate` (the production batch path, after
`from_pretrained` of the saved random model). Qwen2.5-VL's processor needs torchvision (for
video), so its inputs are built from its PIL image processor and the tokenizer (image pad tokens
expanded as the processor would) and fed to the same kind of single `generate` call.
"""
from __future__ import annotations

import json
import statistics
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from vlm_node.analysis.config import AnalysisConfig
from vlm_node.analysis.prompt import EXAMPLE_ANSWER, example_answer_text, system_prompt, \
    user_prompt
from vlm_node.analysis.transformers_backend import (PreparedImage, TransformersBackend,
                                                    import_torch_stack, prepare_image,
                                                    resolve_device, resolve_dtype)
from vlm_node.frames import AnonymizedFrame

ARCHS = ("smolvlm-256m", "qwen2.5-vl-3b")
SIZES = ("full", "reduced", "tiny")
SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for m in messages %}{{ m['role'] | capitalize }}:{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}")
IDEFICS_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<fake_token_around_image>",
                    "<image>", "<end_of_utterance>", "<global-img>",
                    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7))]
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


# -------------------------------------------------------------------------------- tokenizer
def reference_tokenizer(vocab_size: int = 49152, max_chars: int = 6_000_000,
                        specials: Sequence[str] = ("<|endoftext|>",)) -> Any:
    """A byte-level BPE tokenizer trained here, SmolLM2/Qwen2 style (digits split one by one),
    on text every Python install carries: its documentation (pydoc topics) and stdlib sources.
    It stands in for a real model's tokenizer when counting answer tokens and sizing prompts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts, total = [], 0
    for path in [stdlib / "pydoc_data" / "topics.py", *sorted(stdlib.glob("*.py"))]:
        if total >= max_chars or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        texts.append(text)
        total += len(text)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def answer_token_counts(tokenizer: Any) -> dict[str, int]:
    """Tokens of the example answer (one sign + scene), of an answer without signs, of one
    extra sign, and of the system prompt."""
    def n(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    no_signs = json.dumps({"signs": [], "scene": EXAMPLE_ANSWER["scene"]}, separators=(",", ":"))
    one_sign = json.dumps(EXAMPLE_ANSWER["signs"][0], separators=(",", ":"))
    return {"example_answer": n(example_answer_text()), "answer_without_signs": n(no_signs),
            "one_more_sign": n(one_sign) + 1, "system_prompt": n(system_prompt())}


# ----------------------------------------------------------------------------- architectures
def _layers(size: str, full: int, reduced: int) -> int:
    return {"full": full, "reduced": reduced, "tiny": 1}[size]


def build_smolvlm(directory: Path, size: str, tokenizer: Any, dtype: Any) -> dict[str, Any]:
    """SmolVLM-256M-Instruct's architecture with random weights, saved with its processor."""
    import torch
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import (
        Idefics3ImageProcessorPil)

    tiny = size == "tiny"
    image = 64 if tiny else 512
    vision = dict(hidden_size=64 if tiny else 768, intermediate_size=128 if tiny else 3072,
                  num_hidden_layers=_layers(size, 12, 2), num_attention_heads=4 if tiny else 12,
                  image_size=image, patch_size=16)
    text = dict(model_type="llama", vocab_size=max(49280, len(tokenizer)),
                hidden_size=64 if tiny else 576, intermediate_size=128 if tiny else 1536,
                num_hidden_layers=_layers(size, 30, 4), num_attention_heads=4 if tiny else 9,
                num_key_value_heads=2 if tiny else 3, max_position_embeddings=8192,
                rope_theta=100000.0, rms_norm_eps=1e-5,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id)
    config = Idefics3Config(vision_config=vision, text_config=text, scale_factor=4,
                            image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    seq_len = (image // 16) ** 2 // 16
    processor = Idefics3Processor(
        image_processor=Idefics3ImageProcessorPil(size={"longest_edge": 4 * image},
                                                  max_image_size={"longest_edge": image}),
        tokenizer=tokenizer, image_seq_len=seq_len, chat_template=SMOLVLM_TEMPLATE)
    torch.manual_seed(0)
    model = Idefics3ForConditionalGeneration(config).to(dtype).eval()
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return {"params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
            "vision_layers": vision["num_hidden_layers"], "text_layers": text["num_hidden_layers"]}


def build_qwen25vl(size: str, tokenizer: Any, dtype: Any, device: str) -> tuple[Any, dict]:
    """Qwen2.5-VL-3B-Instruct's architecture with random weights (in memory)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tiny = size == "tiny"
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text = dict(vocab_size=max(151936, len(tokenizer)), hidden_size=64 if tiny else 2048,
                intermediate_size=128 if tiny else 11008, num_hidden_layers=_layers(size, 36, 2),
                num_attention_heads=4 if tiny else 16, num_key_value_heads=2,
                max_position_embeddings=128000, rms_norm_eps=1e-6, tie_word_embeddings=True,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                 "mrope_section": [2, 3, 3] if tiny else [16, 24, 24]},
                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    depth = _layers(size, 32, 2)
    vision = dict(depth=depth, hidden_size=64 if tiny else 1280,
                  intermediate_size=128 if tiny else 3420, num_heads=4 if tiny else 16,
                  out_hidden_size=text["hidden_size"], patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, window_size=112,
                  fullatt_block_indexes=[depth - 1] if depth < 32 else [7, 15, 23, 31])
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision,
                              image_token_id=ids["<|image_pad|>"],
                              video_token_id=ids["<|video_pad|>"],
                              vision_start_token_id=ids["<|vision_start|>"],
                              vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=True)
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).to(device=device, dtype=dtype).eval()
    return model, {"params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
                   "vision_layers": depth, "text_layers": text["num_hidden_layers"]}


class Runner(Protocol):
    def generate(self, images: Sequence[PreparedImage], max_new_tokens: int,
                 min_new_tokens: int) -> list[str]: ...


@dataclass
class _BackendRunner:
    backend: TransformersBackend

    def generate(self, images: Sequence[PreparedImage], max_new_tokens: int,
                 min_new_tokens: int) -> list[str]:
        return self.backend.generate(images, max_new_tokens, min_new_tokens)


@dataclass
class _QwenDirectRunner:
    model: Any
    tokenizer: Any
    image_processor: Any
    device: str
    dtype: Any

    def generate(self, images: Sequence[PreparedImage], max_new_tokens: int,
                 min_new_tokens: int) -> list[str]:
        import torch
        vision = self.image_processor(images=[p.image for p in images], return_tensors="pt")
        merge = self.image_processor.merge_size ** 2
        texts = []
        for p, grid in zip(images, vision["image_grid_thw"]):
            pads = "<|image_pad|>" * (int(grid.prod()) // merge)
            texts.append(f"<|im_start|>system\n{system_prompt()}<|im_end|>\n<|im_start|>user\n"
                         f"<|vision_start|>{pads}<|vision_end|>"
                         f"{user_prompt(p.image.width, p.image.height)}<|im_end|>\n"
                         f"<|im_start|>assistant\n")
        enc = self.tokenizer(texts, padding=True, return_tensors="pt")
        batch = {"input_ids": enc["input_ids"].to(self.device),
                 "attention_mask": enc["attention_mask"].to(self.device),
                 "pixel_values": vision["pixel_values"].to(self.device, dtype=self.dtype),
                 "image_grid_thw": vision["image_grid_thw"].to(self.device)}
        with torch.inference_mode():
            out = self.model.generate(**batch, max_new_tokens=max_new_tokens,
                                      min_new_tokens=min_new_tokens, do_sample=False,
                                      num_beams=1, pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:],
                                           skip_special_tokens=True)


# ---------------------------------------------------------------------------------- timing
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any], device: str) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3


def _figures(ms: float, frames: int) -> dict[str, float]:
    return {"batch_ms": round(ms, 1), "ms_per_frame": round(ms / frames, 1),
            "frames_per_s": round(frames * 1e3 / ms, 2)}


def bench_runner(runner: Runner, images: Sequence[PreparedImage], cameras: Sequence[int],
                 iterations: int, new_tokens: int, device: str) -> dict[str, Any]:
    """Batched (one generate for n cameras) against naive (n generates of one frame)."""
    runner.generate(images[:1], new_tokens, new_tokens)  # warm-up
    out: dict[str, Any] = {"batched": {}, "naive": {}, "speedup": {}}
    for n in cameras:
        batch = [images[i % len(images)] for i in range(n)]
        batched = statistics.median(
            _timed(lambda: runner.generate(batch, new_tokens, new_tokens), device)
            for _ in range(iterations))
        naive = statistics.median(
            _timed(lambda: [runner.generate([im], new_tokens, new_tokens) for im in batch],
                   device) for _ in range(iterations))
        out["batched"][n] = _figures(batched, n)
        out["naive"][n] = _figures(naive, n)
        out["speedup"][n] = round(naive / batched, 2)
    return out


def bench_backend(analyze: Callable[[list[AnonymizedFrame]], Any],
                  frames: Sequence[AnonymizedFrame], cameras: Sequence[int], iterations: int,
                  device: str = "cpu") -> dict[int, dict[str, float]]:
    """ms/frame and frames/s of a backend's `analyze` on batches of n cameras."""
    analyze(list(frames[:1]))
    out = {}
    for n in cameras:
        batch = [frames[i % len(frames)] for i in range(n)]
        ms = statistics.median(_timed(lambda: analyze(batch), device)
                               for _ in range(iterations))
        out[n] = _figures(ms, n)
    return out


def bench_frames(count: int, size: tuple[int, int]) -> list[AnonymizedFrame]:
    """Rendered road scenes (signs and pasted faces on real photos), anonymized for real by
    the core pipeline, as one stream (one set of models for all the cameras' frames)."""
    from vlm_node.anonymize import AnonymizerConfig
    from vlm_node.frames import FrameMeta
    from vlm_node.pipeline import Pipeline
    from vlm_node.tools.render.scenes import make_road_scene

    pipeline = Pipeline(AnonymizerConfig())
    try:
        return [pipeline.anonymize(FrameMeta(f"cam{i}", i, f"cam{i}"),
                                   make_road_scene(i, size).image, stream="bench")
                for i in range(count)]
    finally:
        pipeline.close()


def bench_analyze(archs: Sequence[str] = ARCHS, cameras: Sequence[int] = (1, 2, 4, 8),
                  iterations: int = 1, max_new_tokens: int = 32, device: str = "auto",
                  dtype: str = "auto", size: str = "reduced",
                  frame_size: tuple[int, int] = (640, 480), image_longest_edge: int = 512,
                  backends: Sequence[str] = ("transformers", "ocr", "clip"),
                  work_dir: Path | None = None,
                  print_fn: Callable[[str], Any] = print) -> dict[str, Any]:
    """Run the benchmark, print a table, return the figures."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}")
    torch, _, _ = import_torch_stack()
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    frames = bench_frames(max(cameras), frame_size)
    images = [prepare_image(f.image, 1024) for f in frames]
    result: dict[str, Any] = {
        "device": dev, "dtype": str(torch_dtype).replace("torch.", ""),
        "torch_threads": torch.get_num_threads(), "size": size, "iterations": iterations,
        "new_tokens": max_new_tokens, "frame_size": list(frame_size), "cameras": list(cameras)}
    if dev.startswith("cuda"):
        result["gpu"] = torch.cuda.get_device_name(0)
    print_fn(f"device {dev} ({result['dtype']}, {result['torch_threads']} threads), frames "
             f"{frame_size[0]}x{frame_size[1]}, {max_new_tokens} new tokens, size {size}")
    tmp = tempfile.TemporaryDirectory(prefix="vlm_bench_") if work_dir is None else None
    root = Path(tmp.name if tmp else work_dir)
    try:
        if "transformers" in backends:
            # trained here on the stdlib (tens of seconds on a loaded CPU): only the VLM
            # figures use it, so `--backends ocr` times the sign stage without it
            tokenizer = reference_tokenizer(
                specials=sorted(set(IDEFICS_SPECIALS + QWEN_SPECIALS)))
            result["answer_tokens"] = answer_token_counts(tokenizer)
            print_fn(f"answer tokens (reference BPE tokenizer): {result['answer_tokens']}")
            result["transformers"] = {}
            for arch in archs:
                result["transformers"][arch] = _bench_arch(
                    arch, root, size, tokenizer, torch_dtype, dev, dtype, images, cameras,
                    iterations, max_new_tokens, image_longest_edge, print_fn)
        if "ocr" in backends:
            result["ocr"] = _bench_simple("ocr", AnalysisConfig(backend="ocr"), frames, cameras,
                                          iterations, dev, print_fn)
        if "clip" in backends:
            result["clip"] = _bench_clip(root, size, frames, cameras, iterations, dev, print_fn)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return result


def _bench_arch(arch: str, root: Path, size: str, tokenizer: Any, torch_dtype: Any, dev: str,
                dtype: str, images: Sequence[PreparedImage], cameras: Sequence[int],
                iterations: int, new_tokens: int, longest_edge: int,
                print_fn: Callable[[str], Any]) -> dict[str, Any]:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil)
    tok = _with_specials(tokenizer, IDEFICS_SPECIALS if arch.startswith("smolvlm")
                         else QWEN_SPECIALS)
    if arch == "smolvlm-256m":
        directory = root / arch
        info = build_smolvlm(directory, size, tok, torch_dtype)
        edge = longest_edge if size != "tiny" else 0
        backend = TransformersBackend(AnalysisConfig(model=str(directory), device=dev,
                                                     dtype=dtype, image_longest_edge=edge))
        backend.load()
        runner: Runner = _BackendRunner(backend)
        info.update(path="TransformersBackend.generate", image_longest_edge=edge)
    elif arch == "qwen2.5-vl-3b":
        model, info = build_qwen25vl(size, tok, torch_dtype, dev)
        tok.padding_side = "left"
        runner = _QwenDirectRunner(model, tok, Qwen2VLImageProcessorPil(), dev, torch_dtype)
        info.update(path="image processor + tokenizer -> model.generate")
    else:
        raise ValueError(f"unknown architecture {arch!r}; choose from {ARCHS}")
    figures = bench_runner(runner, images, cameras, iterations, new_tokens, dev)
    figures["model"] = info
    print_fn(f"\n{arch} ({info['params_m']} M params, {info['vision_layers']} vision + "
             f"{info['text_layers']} text layers; {info['path']})")
    print_fn(f"{'cameras':>8} {'batched ms/frame':>17} {'frames/s':>9} {'naive ms/frame':>15} "
             f"{'frames/s':>9} {'speed-up':>9}")
    for n in cameras:
        b, s = figures["batched"][n], figures["naive"][n]
        print_fn(f"{n:>8} {b['ms_per_frame']:>17.1f} {b['frames_per_s']:>9.2f} "
                 f"{s['ms_per_frame']:>15.1f} {s['frames_per_s']:>9.2f} "
                 f"{figures['speedup'][n]:>8.2f}x")
    return figures


def _with_specials(tokenizer: Any, specials: Sequence[str]) -> Any:
    """A copy of the reference tokenizer with the architecture's special tokens roles set."""
    import copy
    tok = copy.deepcopy(tokenizer)
    tok.add_special_tokens({"additional_special_tokens": list(specials)})
    tok.pad_token = "<|endoftext|>"
    tok.bos_token = "<|im_start|>"
    tok.eos_token = "<end_of_utterance>" if "<end_of_utterance>" in specials else "<|im_end|>"
    return tok


def _bench_simple(name: str, config: AnalysisConfig, frames: Sequence[AnonymizedFrame],
                  cameras: Sequence[int], iterations: int, dev: str,
                  print_fn: Callable[[str], Any]) -> dict[Any, Any]:
    from vlm_node.analysis.engine import create_backend
    from vlm_node.anonymize import AnonymizerConfig
    from vlm_node.errors import AnalysisError
    from vlm_node.pipeline import Pipeline
    try:
        backend = create_backend(config, name)
        backend.load()
    except AnalysisError as exc:
        print_fn(f"\n{name}: not measured ({exc})")
        return {"error": str(exc)}
    pipeline = Pipeline(AnonymizerConfig(), analyzer=backend)  # frames come anonymized
    try:
        figures = bench_backend(pipeline.analyze, frames, cameras, iterations, dev)
    finally:
        pipeline.close()  # closes the backend
    print_fn(f"\n{name}: " + ", ".join(f"{n} cam {f['ms_per_frame']:.1f} ms/frame "
                                       f"({f['frames_per_s']:.2f}/s)" for n, f in figures.items()))
    return figures


def _bench_clip(root: Path, size: str, frames: Sequence[AnonymizedFrame],
                cameras: Sequence[int], iterations: int, dev: str,
                print_fn: Callable[[str], Any]) -> dict[Any, Any]:
    """A random CLIP ViT-B/32 (openai/clip-vit-base-patch32's shape) saved and loaded."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    tiny = size == "tiny"
    tok = reference_tokenizer(vocab_size=8192 if tiny else 49152,
                              specials=("<|startoftext|>", "<|endoftext|>"))
    tok.bos_token, tok.eos_token, tok.pad_token = ("<|startoftext|>", "<|endoftext|>",
                                                   "<|endoftext|>")
    tok.model_max_length = 77
    from tokenizers import processors
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", tok.bos_token_id),
                        ("<|endoftext|>", tok.eos_token_id)])
    layers = _layers(size, 12, 4)
    config = CLIPConfig(
        text_config=dict(vocab_size=max(49408, len(tok)), hidden_size=64 if tiny else 512,
                         intermediate_size=128 if tiny else 2048, num_hidden_layers=layers,
                         num_attention_heads=4 if tiny else 8, max_position_embeddings=77,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=64 if tiny else 768,
                           intermediate_size=128 if tiny else 3072, num_hidden_layers=layers,
                           num_attention_heads=4 if tiny else 12, image_size=224, patch_size=32),
        projection_dim=64 if tiny else 512)
    torch.manual_seed(0)
    directory = root / "clip"
    CLIPModel(config).eval().save_pretrained(directory)
    CLIPProcessor(image_processor=CLIPImageProcessorPil(), tokenizer=tok).save_pretrained(
        directory)
    cfg = AnalysisConfig(device=dev)
    cfg.clip.model, cfg.clip.min_probability = str(directory), 0.0
    return _bench_simple("clip", cfg, frames, cameras, iterations, dev, print_fn)
