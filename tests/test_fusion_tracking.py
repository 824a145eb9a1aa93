"""Fusion of VLM and OCR readings, and per-camera sign tracking (k of n, expiry, value change)."""
import pytest

from vlm_node.analysis.config import FusionConfig, TrackingConfig
from vlm_node.analysis.engine import tracker_factory_from_config
from vlm_node.analysis.fusion import fuse_readings, fuse_results
from vlm_node.analysis.config import AnalysisConfig
from vlm_node.analysis.tracking import SignTracker
from vlm_node.errors import ConfigError
from vlm_node.geometry import Box
from vlm_node.results import AnalysisResult, SceneInfo, SignReading

FUSION = FusionConfig(iou_threshold=0.3, conflict_factor=0.5, prefer_ocr_box=True)
B1 = Box(100, 100, 40, 40)
B1_OCR = Box(104, 102, 36, 38)  # the same sign, IoU ~0.86
B2 = Box(400, 80, 50, 50)


def vlm(cls="speed_limit", value=50.0, box=B1, conf=0.6, text="50", unit="km/h"):
    return SignReading(cls, conf, "vlm", value if value is not None else None,
                       unit if value is not None else "", text, box)


def ocr(cls="speed_limit", value=50.0, box=B1_OCR, conf=0.8, text="50"):
    return SignReading(cls, conf, "ocr", value, "km/h" if value is not None else "", text, box)


# ---------------------------------------------------------------------------------- fusion
def test_ocr_number_confirms_the_vlm_number():
    (s,), stats = fuse_readings([vlm()], [ocr()], FUSION)
    assert (s.source, s.value, s.sign_class) == ("fused", 50.0, "speed_limit")
    assert s.confidence == pytest.approx(1 - 0.4 * 0.2)  # noisy-OR: up from 0.6
    assert s.box == B1_OCR and stats.confirmed == 1


def test_ocr_number_corrects_the_vlm_number_with_lower_confidence():
    (s,), stats = fuse_readings([vlm(value=80.0, text="80")], [ocr(value=60.0, text="60")],
                                FUSION)
    assert (s.source, s.value, s.text) == ("fused", 60.0, "60")
    assert s.confidence == pytest.approx(0.6 * 0.5)
    assert stats.corrected == 1 and "corrected" in stats.notes[0]


def test_ocr_fills_a_missing_number():
    (s,), stats = fuse_readings([vlm(value=None, text="")], [ocr(value=30.0, conf=0.7)], FUSION)
    assert (s.value, s.unit, s.source, s.confidence) == (30.0, "km/h", "fused", 0.6)
    assert stats.filled == 1


def test_invalid_ocr_number_does_not_correct():
    # 57 is not a speed limit (not a multiple of 5); the VLM's 50 stands, presence confirmed
    (s,), stats = fuse_readings([vlm()], [ocr(value=57.0)], FUSION)
    assert (s.value, s.source, s.confidence) == (50.0, "fused", 0.6)
    assert stats.corrected == stats.confirmed == 0


def test_class_conflict_keeps_the_vlm_class_and_lowers_confidence():
    (s,), _ = fuse_readings([vlm(cls="stop", value=None)], [ocr(value=50.0)], FUSION)
    assert (s.sign_class, s.value) == ("stop", None)  # 50 is no value for a stop sign
    assert s.confidence == pytest.approx(0.3)
    (s,), _ = fuse_readings([vlm(cls="unknown", value=None)], [ocr(value=50.0)], FUSION)
    assert (s.sign_class, s.value) == ("speed_limit", 50.0)


def test_boxless_vlm_reading_matches_by_class():
    readings, _ = fuse_readings([vlm(box=None)], [ocr(cls="stop", value=None, box=B2),
                                                  ocr(box=B1_OCR)], FUSION)
    assert [(r.sign_class, r.source, r.box) for r in readings] == [
        ("speed_limit", "fused", B1_OCR), ("stop", "ocr", B2)]


def test_far_apart_boxes_do_not_match_and_ocr_only_readings_are_added():
    readings, stats = fuse_readings([vlm(box=B1)], [ocr(box=B2)], FUSION)
    assert [(r.source, r.box) for r in readings] == [("vlm", B1), ("ocr", B2)]
    assert stats.added == 1 and stats.matched == 0


def test_best_overlap_wins_and_each_ocr_reading_is_used_once():
    near = Box(101, 101, 40, 40)
    readings, _ = fuse_readings([vlm(box=B1), vlm(box=Box(98, 99, 40, 40), value=30.0)],
                                [ocr(box=near, value=30.0)], FUSION)
    assert [r.source for r in readings] == ["fused", "vlm"]


def test_vlm_box_kept_when_configured():
    cfg = FusionConfig(prefer_ocr_box=False)
    (s,), _ = fuse_readings([vlm()], [ocr()], cfg)
    assert s.box == B1


def test_fuse_results_keeps_the_scene_and_backend():
    primary = AnalysisResult([vlm()], SceneInfo("x"), "transformers", "m", 12.0)
    fused, _ = fuse_results(primary, AnalysisResult([ocr()], None, "ocr"), FUSION)
    assert fused.scene.summary == "x" and fused.backend == "transformers"
    assert fused.signs[0].source == "fused" and primary.signs[0].source == "vlm"


# -------------------------------------------------------------------------------- tracking
def seen(tracker, *readings):
    return tracker.update(list(readings))


def test_confirmed_after_k_of_n_frames():
    t = SignTracker(k=3, n=5, m=10)
    states = []
    for present in [True, False, True, False, True, True]:
        out = seen(t, vlm()) if present else seen(t)
        states.append(out[0].track_state if out else "-")
    # seen in frames 1, 3, 5: the third sighting within 5 frames confirms
    assert states == ["tentative", "-", "tentative", "-", "confirmed", "confirmed"]
    assert {r.track_id for r in seen(t, vlm())} == {1}


def test_sightings_older_than_n_frames_do_not_count():
    t = SignTracker(k=2, n=3, m=10)
    seen(t, vlm())
    seen(t)
    seen(t)
    assert seen(t, vlm())[0].track_state == "tentative"  # frame 1 left the 3-frame window
    assert seen(t, vlm())[0].track_state == "confirmed"


def test_track_expires_after_m_unseen_frames_and_ids_are_not_reused():
    t = SignTracker(k=1, n=3, m=2)
    assert seen(t, vlm())[0].track_id == 1
    seen(t)
    assert seen(t, vlm())[0].track_id == 1  # 1 frame unseen: still alive
    seen(t)
    seen(t)  # 2 frames unseen: expired
    assert t.tracks == []
    assert seen(t, vlm())[0].track_id == 2


def test_association_by_class_and_box():
    t = SignTracker(k=1, n=3, m=5)
    a, b = seen(t, vlm(box=B1), vlm(cls="stop", value=None, box=B2))
    moved = Box(106, 104, 40, 40)
    c, d, e = seen(t, vlm(cls="stop", value=None, box=B2), vlm(box=moved),
                   vlm(box=Box(500, 300, 40, 40)))
    assert (c.track_id, d.track_id) == (b.track_id, a.track_id)
    assert e.track_id == 3  # a second speed sign elsewhere is a new track
    # a different class at the same place is a different sign
    assert seen(t, vlm(cls="no_entry", value=None, box=moved))[0].track_id == 4


def test_boxless_readings_continue_the_latest_track_of_their_class():
    t = SignTracker(k=2, n=3, m=5)
    first = seen(t, vlm(box=B1))[0]
    again = seen(t, vlm(box=None))[0]
    assert again.track_id == first.track_id and again.track_state == "confirmed"


def test_value_change_keeps_the_track_and_needs_k_sightings():
    t = SignTracker(k=2, n=4, m=5)
    states = [(r.track_id, r.value, r.track_state) for r in
              [seen(t, vlm(value=v))[0] for v in (80, 80, 60, 80, 60, 60)]]
    assert states == [(1, 80, "tentative"), (1, 80, "confirmed"),
                      (1, 60, "tentative"),   # one misreading never confirmed at once
                      (1, 80, "confirmed"), (1, 60, "confirmed"), (1, 60, "confirmed")]


def test_readings_are_new_objects():
    t = SignTracker(k=1, n=1, m=1)
    r = vlm()
    out = seen(t, r)[0]
    assert out is not r and r.track_id == 0 and out.track_id == 1


def test_tracker_configuration_is_checked():
    with pytest.raises(ConfigError, match="k <= n"):
        SignTracker(k=4, n=3)
    factory = tracker_factory_from_config(AnalysisConfig(tracking=TrackingConfig(k=2, n=3)))
    assert factory().k == 2 and factory() is not factory()
    assert tracker_factory_from_config(AnalysisConfig(
        tracking=TrackingConfig(enabled=False))) is None
