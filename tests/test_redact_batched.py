"""blur_all: the blur of many regions smoothed in one call leaves exactly the pixels that
`redact(..., "blur")` leaves region by region, overlapping regions included."""
from __future__ import annotations

import random

import numpy as np
import pytest

from vlm_node.anonymize.redact import (_per_cell, _smoothed, _smoothed_all, blur_all, redact,
                                       redaction_region)
from vlm_node.geometry import Box
from vlm_node.results import Detection


def _image(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Noise over smooth gradients: every cell of a region has its own colour."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // max(1, w - 1)), (yy * 255 // max(1, h - 1)),
                     ((xx + yy) * 3) % 256], -1)
    return np.clip(base + rng.integers(-60, 61, (h, w, 3)), 0, 255).astype(np.uint8)


def _regions(rnd: random.Random, n: int, w: int, h: int) -> list[tuple[Box, bool]]:
    """Crowds: many regions, often overlapping (some nested or identical), some partly or
    wholly outside the frame, some a pixel or less across."""
    out: list[tuple[Box, bool]] = []
    for _ in range(n):
        kind = rnd.random()
        if out and kind < 0.15:
            box = out[rnd.randrange(len(out))][0]  # the same box again
        elif out and kind < 0.4:
            b = out[rnd.randrange(len(out))][0]  # overlapping a previous one
            box = Box(b.x + rnd.uniform(-0.5, 0.5) * b.w, b.y + rnd.uniform(-0.5, 0.5) * b.h,
                      b.w * rnd.uniform(0.3, 1.5), b.h * rnd.uniform(0.3, 1.5))
        elif kind < 0.5:
            box = Box(rnd.uniform(-5, w), rnd.uniform(-5, h), rnd.uniform(0, 2),
                      rnd.uniform(0, 2))
        else:
            s = rnd.uniform(3, min(w, h) * 0.6)
            box = Box(rnd.uniform(-s / 2, w), rnd.uniform(-s / 2, h), s * rnd.uniform(0.5, 2),
                      s * rnd.uniform(0.5, 2))
        det = Detection(rnd.choice(("face", "face", "plate")), box, 0.9)
        out.append(redaction_region(det, rnd.choice((0.0, 0.2)), w, h))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_blur_all_equals_redact_in_order(seed):
    rnd, rng = random.Random(seed), np.random.default_rng(seed)
    w, h = rnd.choice(((64, 48), (320, 240), (640, 360)))
    image = _image(rng, w, h)
    regions = _regions(rnd, rnd.choice((1, 2, 5, 30, 90)), w, h)
    got = _same_as_one_by_one(image, regions)
    if any(b.w >= 3 and b.h >= 3 for b, _ in regions):
        assert not np.array_equal(got, image)  # something was redacted


def _same_as_one_by_one(image, regions):
    """blur_all's result, asserted equal to redacting the regions one by one in order."""
    expected = image.copy()
    for box, ellipse in regions:
        redact(expected, box, ellipse, "blur")
    got = image.copy()
    blur_all(got, regions)
    assert np.array_equal(got, expected)
    return got


def test_order_matters_and_is_kept():
    """A region over one redacted before it reads the blurred pixels: a different result from
    the reverse order, and blur_all gives the one of the given order."""
    rng = np.random.default_rng(3)
    image = _image(rng, 200, 120)
    a, b = (Box(10.0, 10.0, 80.0, 60.0), True), (Box(50.0, 30.0, 90.0, 70.0), False)
    results = []
    for order in ([a, b], [b, a]):
        results.append(_same_as_one_by_one(image, order))
    assert not np.array_equal(*results)


def test_smoothed_all_equals_one_call_per_image():
    rng = np.random.default_rng(0)
    mids = [_per_cell(rng.integers(0, 256, (int(sh), int(sw), 3), np.uint8))
            for sw, sh in rng.integers(1, 7, (60, 2))]
    together = _smoothed_all(mids)
    assert [m.shape for m in together] == [m.shape for m in mids]
    for got, mid in zip(together, mids):
        assert np.array_equal(got, _smoothed(mid))


def test_empty_and_outside_regions_change_nothing():
    image = _image(np.random.default_rng(1), 50, 40)
    got = image.copy()
    blur_all(got, [])
    blur_all(got, [(Box(60.0, 10.0, 20.0, 20.0), True), (Box(5.0, 5.0, 0.0, 9.0), False)])
    assert np.array_equal(got, image)


def test_anonymizer_blurs_through_blur_all_and_fails_closed_when_it_raises(monkeypatch):
    """Blur mode redacts through blur_all with every released region, margins applied; an
    error there fails the frame closed as `redaction_error`, as one in `redact` did."""
    import vlm_node.anonymize.anonymizer as anonymizer_module
    from bag_helpers import portrait
    from vlm_node.anonymize import Anonymizer
    from vlm_node.errors import AnonymizationError
    from vlm_node.frames import FrameMeta

    image, _ = portrait((640, 480))
    an = Anonymizer()
    calls = []

    def recording(img, regions):
        calls.append(list(regions))
        blur_all(img, regions)

    monkeypatch.setattr(anonymizer_module, "blur_all", recording)
    out = an.anonymize(FrameMeta("cam", 1, "f"), image.copy())
    margins = {"face": an.config.margin, "plate": an.config.plate_margin}
    regions = [redaction_region(d, margins[d.kind], 640, 480) for d in out.detections]
    assert regions and calls == [regions]
    expected = image.copy()
    for box, ellipse in calls[0]:
        redact(expected, box, ellipse, "blur")
    assert np.array_equal(out.image, expected)

    def broken(img, regions):
        raise RuntimeError("boom")

    monkeypatch.setattr(anonymizer_module, "blur_all", broken)
    with pytest.raises(AnonymizationError):  # the default failure policy: drop
        an.anonymize(FrameMeta("cam", 2, "f"), image.copy())
    assert an.stats.failures["redaction_error"] == 1
