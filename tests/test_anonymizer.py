import numpy as np
import pytest

from helpers import read_bgr, shared
from vlm_node.anonymize import Anonymizer, AnonymizerConfig
from vlm_node.errors import AnonymizationError
from vlm_node.frames import AnonymizedFrame, FrameMeta
from vlm_node.geometry import Box

META = FrameMeta("cam", 1_700_000_000_123_456_789, "cam_optical", 0.0)


@pytest.fixture(scope="module")
def anonymizer():
    return Anonymizer()


def test_face_is_blurred_and_the_rest_is_untouched(anonymizer):
    original = read_bgr(shared("faces/face_recognition_examples/obama.jpg"))
    frame = anonymizer.anonymize(META, original.copy())
    assert frame.count("face") == 1
    det = frame.detections[0]
    assert det.score > 0.8
    h, w = original.shape[:2]
    rows, cols = det.box.int_slices(w, h)
    diff = np.abs(frame.image.astype(int) - original.astype(int)).sum(axis=2)
    assert diff[rows, cols].mean() > 20  # the face changed a lot
    outside = det.box.expanded(anonymizer.config.margin + 0.02).clipped(w, h)
    r2, c2 = outside.int_slices(w, h)
    mask = np.ones_like(diff, bool)
    mask[r2, c2] = False
    assert diff[mask].max() == 0  # pixels outside the redacted region are bit-identical
    assert not frame.image.flags.writeable


def test_group_photo_faces_are_all_found(anonymizer):
    img = read_bgr(shared("faces/dlib_pascal_voc/2008_002079.jpg"))
    frame = anonymizer.anonymize(META, img)
    assert frame.count("face") == 6


def test_detector_failure_drops_the_frame(anonymizer, monkeypatch):
    def boom(image):
        raise RuntimeError("onnx session died")
    monkeypatch.setattr(anonymizer._faces, "detect", boom)
    img = np.full((64, 64, 3), 7, np.uint8)
    with pytest.raises(AnonymizationError, match="frame dropped: onnx session died"):
        anonymizer.anonymize(META, img)


def test_full_blur_policy_releases_a_fully_blurred_frame(monkeypatch):
    anon = Anonymizer(AnonymizerConfig(failure_policy="full_blur"))
    monkeypatch.setattr(anon._faces, "detect", lambda image: [][0])  # IndexError
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    original = img.copy()
    frame = anon.anonymize(META, img)
    assert frame.full_frame_redacted and frame.detections == ()
    # high-frequency content is gone: neighbouring pixels nearly equal everywhere
    assert np.abs(np.diff(frame.image.astype(int), axis=1)).mean() < 3
    assert np.abs(frame.image.astype(int) - original.astype(int)).mean() > 40


def test_corrupt_detector_output_fails_closed(anonymizer, monkeypatch):
    from vlm_node.results import Detection
    monkeypatch.setattr(anonymizer._faces, "detect",
                        lambda image: [Detection("face", Box(float("nan"), 0, 5, 5), 0.9)])
    with pytest.raises(AnonymizationError):
        anonymizer.anonymize(META, np.zeros((32, 32, 3), np.uint8))


def test_raw_frames_cannot_be_released_without_the_anonymizer():
    with pytest.raises(TypeError, match="created by vlm_node.anonymize only"):
        AnonymizedFrame(META, np.zeros((4, 4, 3), np.uint8))


@pytest.mark.parametrize("bad", [np.zeros((0, 0, 3), np.uint8), np.zeros((8, 8), np.uint8),
                                 np.zeros((8, 8, 3), np.float32)])
def test_bad_input_is_rejected(anonymizer, bad):
    with pytest.raises(AnonymizationError):
        anonymizer.anonymize(META, bad)
