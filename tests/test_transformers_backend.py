"""The transformers backend on tiny random-weight VLMs of two architectures (LLaVA and Idefics3,
SmolVLM's architecture), loaded through the real AutoProcessor / AutoModelForImageTextToText
`from_pretrained` path."""
import json
import shutil
import time

import numpy as np
import pytest

from tiny_models import tiny_vlm_dirs  # noqa: F401 - session fixture
from vlm_node.analysis.config import AnalysisConfig
from vlm_node.analysis.prompt import example_answer_text, system_prompt
from vlm_node.analysis.schema import BatchOutputError
from vlm_node.analysis.transformers_backend import TransformersBackend, prepare_image
from vlm_node.errors import BackendUnavailableError
from vlm_node.frames import FrameMeta, _release
from vlm_node.geometry import Box

ARCHS = ("llava", "idefics3")


def frame(image, camera="front"):
    return _release(FrameMeta(camera, 1, camera), image, (), 0.0)


def noise(h, w, seed):
    return np.random.RandomState(seed).randint(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def backends(tiny_vlm_dirs):  # noqa: F811
    loaded = {}
    for arch in ARCHS:
        b = TransformersBackend(AnalysisConfig(model=str(tiny_vlm_dirs[arch]), device="cpu",
                                               max_new_tokens=24))
        b.load()
        loaded[arch] = b
    yield loaded
    for b in loaded.values():
        b.close()


@pytest.mark.parametrize("arch", ARCHS)
def test_loads_through_from_pretrained_with_the_chat_template(backends, arch):
    b = backends[arch]
    assert b.loaded and b.device == "cpu" and b.supports_batching and b.describes_scene
    text = b.prompt_for(320, 240)
    assert system_prompt() in text and "320x240" in text and "<image>" in text
    assert b._processor.tokenizer.padding_side == "left"


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_generate_equals_one_frame_at_a_time(backends, arch):
    b = backends[arch]
    # Different sizes give different prompt lengths (and, for Idefics3, tile counts), so the
    # batch really is left-padded.
    images = [prepare_image(noise(h, w, i), 1024)
              for i, (h, w) in enumerate([(48, 64), (64, 32), (40, 90), (64, 64)])]
    batched = b.generate(images)
    single = [b.generate([im])[0] for im in images]
    assert batched == single
    assert len(set(batched)) > 1, "answers should depend on the image"


@pytest.mark.parametrize("arch", ARCHS)
def test_random_weights_give_validated_results_or_model_output_error(backends, arch):
    frames = [frame(noise(48, 64, 10 + i), f"cam{i}") for i in range(3)]
    try:
        results = backends[arch].analyze(frames)
    except BatchOutputError as exc:
        assert len(exc.results) == 3 and len(exc.errors) == 3
        results = [r for r in exc.results if r is not None]
        assert all(e for r, e in zip(exc.results, exc.errors) if r is None)
    for r in results:
        assert r.backend == "transformers" and r.analysis_ms > 0
        for s in r.signs:
            assert s.source == "vlm" and 0 <= s.confidence <= 1


def test_answers_are_parsed_and_boxes_mapped_back_to_the_frame(backends, monkeypatch):
    b = backends["llava"]
    config = AnalysisConfig(model=b.model_id, max_image_side=640)
    b.config, old = config, b.config
    seen = []

    def scripted(images, max_new_tokens=None, min_new_tokens=None):
        seen.extend((im.image.width, im.image.height) for im in images)
        return [example_answer_text(), "no json here"]

    monkeypatch.setattr(b, "generate", scripted)
    try:
        with pytest.raises(BatchOutputError) as err:
            b.analyze([frame(noise(960, 1280, 1)), frame(noise(960, 1280, 2), "rear")])
    finally:
        b.config = old
    assert seen == [(640, 480), (640, 480)]  # downscaled to max_image_side
    good, bad = err.value.results
    assert bad is None and "no JSON object" in err.value.errors[1]
    sign = good.signs[0]
    # the example's box [412, 96, 38, 40] is clipped at x=320 in model pixels, then scaled x2
    assert sign.box == Box(824, 192, 76, 80)
    assert (sign.sign_class, sign.value, good.scene.road_type) == ("speed_limit", 50, "urban")


def test_missing_local_model_fails_fast_naming_the_parameter(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_cache"))
    for name in (str(tmp_path / "no_such_model"), "nobody/no-such-vlm"):
        t0 = time.monotonic()
        with pytest.raises(BackendUnavailableError) as err:
            TransformersBackend(AnalysisConfig(model=name, device="cpu")).load()
        assert time.monotonic() - t0 < 10
        assert f"analysis.model={name!r}" in str(err.value)
        assert "local files" in str(err.value)
        assert ".." not in str(err.value)  # the library's full stop does not double ours


def test_cuda_requested_without_cuda_names_the_device_parameter(tiny_vlm_dirs):  # noqa: F811
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BackendUnavailableError, match="analysis.device=cuda"):
        TransformersBackend(AnalysisConfig(model=str(tiny_vlm_dirs["llava"]),
                                           device="cuda")).load()


def test_template_without_a_system_role_gets_the_instructions_in_the_user_turn(
        tiny_vlm_dirs, tmp_path):  # noqa: F811
    model_dir = tmp_path / "llava_no_system"
    shutil.copytree(tiny_vlm_dirs["llava"], model_dir)
    template = (model_dir / "chat_template.jinja").read_text()
    (model_dir / "chat_template.jinja").write_text(
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
        "supported') }}{% endif %}" + template)
    b = TransformersBackend(AnalysisConfig(model=str(model_dir), device="cpu",
                                           max_new_tokens=8))
    b.load()
    assert b._system_role is False
    prompt = b.prompt_for(64, 64)
    assert "<|im_start|>system" not in prompt and system_prompt() in prompt
    assert json.loads((model_dir / "config.json").read_text())["model_type"] == "llava"


def test_image_longest_edge_override(tiny_vlm_dirs):  # noqa: F811
    images = [prepare_image(noise(48, 64, 0), 1024)]
    lengths = {}
    for edge in (0, 32):
        b = TransformersBackend(AnalysisConfig(model=str(tiny_vlm_dirs["idefics3"]),
                                               device="cpu", image_longest_edge=edge))
        b.load()
        inputs = b._processor(text=[b.prompt_for(64, 48)], images=[[images[0].image]],
                              return_tensors="pt", **b._image_kwargs)
        lengths[edge] = inputs["pixel_values"].shape[1]
    assert lengths == {0: 5, 32: 1}  # 2x2 tiles + global image -> the global image only
    with pytest.raises(BackendUnavailableError, match="analysis.image_longest_edge=32"):
        TransformersBackend(AnalysisConfig(model=str(tiny_vlm_dirs["llava"]), device="cpu",
                                           image_longest_edge=32)).load()
