"""The CLIP zero-shot backend on a tiny random-weight CLIP loaded through from_pretrained."""
import cv2
import numpy as np
import pytest

from tiny_models import tiny_clip_dir  # noqa: F401 - session fixture
from vlm_node.analysis.clip_backend import CROP_MARGIN, NOT_A_SIGN, TEMPLATES, ClipBackend
from vlm_node.analysis.config import AnalysisConfig, ClipConfig
from vlm_node.analysis.sign_candidates import find_candidates
from vlm_node.analysis.prompt import describe_class
from vlm_node.errors import BackendUnavailableError
from vlm_node.frames import FrameMeta, _release
from vlm_node.geometry import Box
from vlm_node.vocab import SIGN_CLASSES


def sign_scene(seed=0):
    """A grey street-ish image with a red-ringed speed sign (a sign candidate) at (60, 60)."""
    rng = np.random.RandomState(seed)
    img = np.clip(rng.normal(100, 8, (240, 320, 3)), 0, 255).astype(np.uint8)
    cv2.circle(img, (100, 100), 40, (0, 0, 220), -1)
    cv2.circle(img, (100, 100), 31, (255, 255, 255), -1)
    cv2.putText(img, "50", (72, 115), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 3)
    return _release(FrameMeta("front", seed, "front"), img, (), 0.0)


@pytest.fixture(scope="module")
def clip(tiny_clip_dir):  # noqa: F811
    b = ClipBackend(AnalysisConfig(device="cpu",
                                   clip=ClipConfig(model=str(tiny_clip_dir), min_probability=0)))
    b.load()
    yield b
    b.close()


def test_class_embeddings_are_prompt_ensembles(clip):
    import torch
    classes = [c for c in SIGN_CLASSES if c != "unknown"]
    assert clip.labels == [*classes, *([None] * len(NOT_A_SIGN))]
    emb = clip.text_embeddings
    assert emb.shape[0] == len(clip.labels)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(len(clip.labels)), atol=1e-5)
    # recompute one class by hand: normalise each template's embedding, average, normalise
    prompts = [t.format(describe_class("stop")) for t in TEMPLATES]
    inputs = clip._processor(text=prompts, return_tensors="pt", padding=True, truncation=True)
    feats = clip._model.get_text_features(**inputs).pooler_output.detach()
    feats = feats / feats.norm(dim=-1, keepdim=True)
    expected = feats.mean(0) / feats.mean(0).norm()
    assert torch.allclose(emb[classes.index("stop")], expected, atol=1e-5)


def test_candidates_are_classified_with_their_boxes(clip):
    (result,) = clip.analyze([sign_scene()])
    assert result.backend == "clip" and result.scene is None
    # the reading carries the candidate finder's box (the ring as fitted, not the drawn circle's
    # bounding square); classify the same crop the backend classified
    (cand,) = find_candidates(sign_scene().image, clip.candidate_config)
    assert cand.box.iou(Box(60, 60, 81, 81)) > 0.9
    rows, cols = cand.box.expanded(CROP_MARGIN).int_slices(320, 240)
    probs = clip.classify([sign_scene().image[rows, cols]])
    label, prob = probs[0]
    if label is None:  # random weights may call it "not a sign": then nothing is reported
        assert result.signs == []
    else:
        (sign,) = result.signs
        assert sign.sign_class == label and sign.source == "clip" and sign.value is None
        assert sign.box == cand.box
        assert 0 < sign.confidence <= 1


def test_min_probability_filters_readings(clip, tiny_clip_dir):  # noqa: F811
    strict = ClipBackend(AnalysisConfig(device="cpu", clip=ClipConfig(
        model=str(tiny_clip_dir), min_probability=1.0)))
    strict.load()
    assert strict.analyze([sign_scene()])[0].signs == []


def test_one_forward_pass_for_all_frames_equals_frame_by_frame(clip):
    frames = [sign_scene(1), sign_scene(2), sign_scene(3)]
    together = clip.analyze(frames)
    alone = [clip.analyze([f])[0] for f in frames]
    for a, b in zip(together, alone):
        assert [(s.sign_class, s.box) for s in a.signs] == [(s.sign_class, s.box) for s in b.signs]
        expected = [s.confidence for s in b.signs]
        assert [s.confidence for s in a.signs] == pytest.approx(expected, abs=1e-5)


def test_not_a_sign_is_not_reported(clip, monkeypatch):
    monkeypatch.setattr(clip, "classify", lambda crops: [(None, 0.99)] * len(crops))
    assert clip.analyze([sign_scene()])[0].signs == []
    monkeypatch.setattr(clip, "classify", lambda crops: [("speed_limit", 0.7)] * len(crops))
    (sign,) = clip.analyze([sign_scene()])[0].signs
    assert (sign.sign_class, sign.confidence, sign.value, sign.source) == (
        "speed_limit", 0.7, None, "clip")


def test_no_candidates_no_readings(clip):
    flat = _release(FrameMeta("f", 0, "f"), np.full((120, 160, 3), 90, np.uint8), (), 0.0)
    assert clip.analyze([flat])[0].signs == []


def test_missing_model_names_the_parameter(tmp_path):
    b = ClipBackend(AnalysisConfig(device="cpu", clip=ClipConfig(model=str(tmp_path / "x"))))
    with pytest.raises(BackendUnavailableError, match="analysis.clip.model="):
        b.load()
