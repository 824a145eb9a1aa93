"""Tiny random-weight models of real architectures, built and saved in the test session so the
real `from_pretrained` loading path runs without a model hub.

Each builder trains a byte-level BPE tokenizer in-process (on the prompt text, so its vocabulary
has realistic pieces), builds the processor from the architecture's PIL image processor (no
torchvision), builds the model from a small config with a fixed seed, and `save_pretrained`s
both. Weights are initialised wider than usual (initializer_range 0.2) so answers depend on the
image, which makes the batched-equals-unbatched test meaningful.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from vlm_node.analysis.prompt import example_answer_text, system_prompt

_BUILT: dict[str, Path] = {}

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}"
    "{{ m['content'] }}{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}"
    "<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# SmolVLM's layout: "<|im_start|>User:<image>...<end_of_utterance>\nAssistant:".
SMOLVLM = (
    "<|im_start|>{% for m in messages %}{{ m['role'] | capitalize }}:{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}")


def train_tokenizer(specials: list[str], vocab_size: int = 512, **kwargs: str):
    """A byte-level BPE tokenizer (GPT-2 / SmolLM style) trained on the prompt and answers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    corpus = [system_prompt(), example_answer_text(), "user assistant system User Assistant"]
    tok.train_from_iterator(corpus * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


def build_tiny_llava(path: Path, seed: int = 0) -> Path:
    import torch
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    tok = train_tokenizer(["<pad>", "<s>", "</s>", "<image>", "<|im_start|>", "<|im_end|>"],
                          pad_token="<pad>", bos_token="<s>", eos_token="<|im_end|>")
    image_processor = LlavaImageProcessorPil(size={"shortest_edge": 32},
                                             crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=8,
                               vision_feature_select_strategy="default", chat_template=CHATML,
                               num_additional_image_tokens=1)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                              num_attention_heads=2, image_size=32, patch_size=8,
                              projection_dim=32, initializer_range=0.2)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=96,
                       num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                       max_position_embeddings=2048, initializer_range=0.2,
                       pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tok.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(seed)
    LlavaForConditionalGeneration(config).eval().save_pretrained(path)
    processor.save_pretrained(path)
    return path


def build_tiny_idefics3(path: Path, seed: int = 0) -> Path:
    """SmolVLM's architecture (Idefics3: SigLIP-style encoder, pixel shuffle, Llama decoder),
    with image splitting into tiles on, at 32-px tiles."""
    import torch
    from transformers import (Idefics3Config, Idefics3ForConditionalGeneration,
                              Idefics3Processor, LlamaConfig)
    from transformers.models.idefics3.configuration_idefics3 import Idefics3VisionConfig
    from transformers.models.idefics3.image_processing_pil_idefics3 import (
        Idefics3ImageProcessorPil)

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<fake_token_around_image>",
                "<image>", "<end_of_utterance>", "<global-img>"]
    specials += [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    tok = train_tokenizer(specials, pad_token="<|endoftext|>", bos_token="<|im_start|>",
                          eos_token="<end_of_utterance>")
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": 64},
                                                max_image_size={"longest_edge": 32},
                                                do_image_splitting=True)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tok,
                                  image_seq_len=4, chat_template=SMOLVLM)
    vision = Idefics3VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                  num_attention_heads=2, image_size=32, patch_size=8,
                                  initializer_range=0.2)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=96,
                       num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                       max_position_embeddings=2048, initializer_range=0.2,
                       pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id)
    config = Idefics3Config(vision_config=vision.to_dict(), text_config=text.to_dict(),
                            image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=2)
    torch.manual_seed(seed)
    Idefics3ForConditionalGeneration(config).eval().save_pretrained(path)
    processor.save_pretrained(path)
    return path


def build_tiny_clip(path: Path, seed: int = 0) -> Path:
    import torch
    from tokenizers import processors
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok = train_tokenizer(["<|startoftext|>", "<|endoftext|>"], vocab_size=400,
                          bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                          pad_token="<|endoftext|>", model_max_length=96)
    # CLIP pools the text at the end-of-text token: every prompt must carry one.
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", tok.bos_token_id),
                        ("<|endoftext|>", tok.eos_token_id)])
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32},
                                            crop_size={"height": 32, "width": 32})
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tok)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=96,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=32, patch_size=8),
        projection_dim=16)
    torch.manual_seed(seed)
    CLIPModel(config).eval().save_pretrained(path)
    processor.save_pretrained(path)
    return path


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "llava": build_tiny_llava, "idefics3": build_tiny_idefics3, "clip": build_tiny_clip}


def built(name: str, factory: pytest.TempPathFactory) -> Path:
    """Build model `name` once per test session (several modules share it)."""
    if name not in _BUILT:
        _BUILT[name] = BUILDERS[name](factory.mktemp(f"tiny_{name}"))
    return _BUILT[name]


@pytest.fixture(scope="session")
def tiny_vlm_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Saved tiny VLMs of two architectures: {"llava": dir, "idefics3": dir}."""
    return {name: built(name, tmp_path_factory) for name in ("llava", "idefics3")}


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built("clip", tmp_path_factory)
