"""CenterFace's input blob: planar RGB float32, C-contiguous, the same values as the strided
transpose it replaced."""
import numpy as np

from vlm_node.anonymize.faces import _pad_to_stride, _planar_rgb


def test_planar_rgb_equals_the_strided_transpose_and_is_contiguous():
    rng = np.random.default_rng(0)
    for h, w in ((1, 1), (7, 13), (544, 960)):
        img = rng.integers(0, 256, (h, w, 3), np.uint8)
        blob = _planar_rgb(img)
        assert blob.dtype == np.float32 and blob.shape == (1, 3, h, w)
        assert blob.flags.c_contiguous
        assert np.array_equal(blob, img[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32))
        assert np.array_equal(blob[0, 0], img[:, :, 2])  # red first


def test_planar_rgb_of_a_padded_view():
    img = np.random.default_rng(1).integers(0, 256, (50, 70, 3), np.uint8)
    padded = _pad_to_stride(img, 32)
    blob = _planar_rgb(padded)
    assert blob.shape == (1, 3, 64, 96)
    assert np.array_equal(blob, padded[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32))
