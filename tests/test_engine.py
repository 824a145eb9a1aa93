"""The analysis engine: backend `auto`, require_vlm, run-time degraded mode with background
retry, batch timeouts, partial answers, fusion, and status() from another thread. Fallback
logic runs against small scripted backends; one test drives a real tiny VLM."""
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from tiny_models import tiny_vlm_dirs  # noqa: F401 - session fixture
from vlm_node.analysis.base import AnalysisBackend
from vlm_node.analysis.config import AnalysisConfig, FusionConfig
from vlm_node.analysis.engine import (AnalysisEngine, analyzer_from_config, create_backend,
                                      tracker_factory_from_config)
from vlm_node.analysis.schema import BatchOutputError
from vlm_node.errors import AnalysisError, BackendUnavailableError, ConfigError
from vlm_node.frames import FrameMeta, _release
from vlm_node.geometry import Box
from vlm_node.results import AnalysisResult, SceneInfo, SignReading

BOX = Box(10, 10, 30, 30)


class Scripted(AnalysisBackend):
    """A backend whose load and analyze outcomes follow a script.

    `steps`: one entry per analyze call, consumed in order (the last one repeats): "ok",
    an exception instance to raise, ("sleep", seconds), or ("partial", bad_index).
    """

    def __init__(self, name, value=50.0, load_errors=(), steps=("ok",)):
        self.name = name
        self.value = value
        self.load_errors = list(load_errors)
        self.steps = list(steps)
        self.load_calls = 0
        self.calls = 0
        self.closed = False

    @property
    def model_id(self):
        return f"scripted-{self.name}"

    def load(self):
        self.load_calls += 1
        if self.load_errors:
            raise self.load_errors.pop(0)

    def _result(self):
        source = "ocr" if self.name == "ocr" else "vlm"
        sign = SignReading("speed_limit", 0.6, source, self.value, "km/h", "", BOX)
        scene = SceneInfo("scripted", "clear") if source == "vlm" else None
        return AnalysisResult([sign], scene, self.name, self.model_id, 5.0)

    def analyze(self, frames):
        self.calls += 1
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, tuple) and step[0] == "sleep":
            time.sleep(step[1])
        results = [self._result() for _ in frames]
        if isinstance(step, tuple) and step[0] == "partial":
            results[step[1]] = None
            raise BatchOutputError(results, ["" if r else "no JSON object" for r in results])
        return results

    def close(self):
        self.closed = True


def test_a_backend_in_a_with_block_is_loaded_and_closed_even_on_error():
    with Scripted("ocr") as backend:
        assert isinstance(backend, Scripted)
        assert backend.load_calls == 1 and not backend.closed
    assert backend.closed
    failing = Scripted("ocr")
    with pytest.raises(RuntimeError, match="boom"):
        with failing:
            raise RuntimeError("boom")
    assert failing.closed and failing.load_calls == 1


def frames(n=2):
    return [_release(FrameMeta(f"cam{i}", i, f"cam{i}"), np.zeros((48, 64, 3), np.uint8), (),
                     0.0) for i in range(n)]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def engine(vlm, ocr, clock=None, **settings):
    settings.setdefault("retry_interval", 5.0)
    settings.setdefault("batch_timeout", 2.0)
    config = AnalysisConfig(**settings)
    return AnalysisEngine(config, primary_factory=lambda: vlm, ocr_factory=lambda: ocr,
                          clock=clock or Clock()).start()


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.01)


# ---------------------------------------------------------------------------------- start-up
def test_auto_uses_the_vlm_and_fuses_ocr():
    vlm, ocr = Scripted("transformers"), Scripted("ocr")
    e = engine(vlm, ocr)
    results = e.analyze(frames(2))
    assert [r.degraded for r in results] == [False, False]
    assert [r.backend for r in results] == ["transformers"] * 2
    assert results[0].signs[0].source == "fused"
    assert results[0].scene.summary.startswith("scripted")
    assert results[0].scene.source == "fused"  # the detector joined the VLM's description
    st = e.status()
    assert (st["state"], st["degraded"], st["active"], st["fusion"]) == (
        "ok", False, "transformers", True)
    assert st["fused_confirmed"] == 2 and vlm.calls == ocr.calls == 1


def test_auto_without_a_loadable_vlm_runs_degraded_on_ocr():
    vlm = Scripted("transformers", load_errors=[
        BackendUnavailableError("analysis.model='x' could not be loaded")])
    e = engine(vlm, Scripted("ocr"))
    results = e.analyze(frames(2))
    assert all(r.degraded and r.backend == "ocr" for r in results)
    assert "VLM not loaded: analysis.model='x'" in results[0].degraded_reason
    st = e.status()
    assert st["degraded"] and st["active"] == "ocr" and not st["vlm_loaded"]
    assert st["reason"] == results[0].degraded_reason and vlm.calls == 0


@pytest.mark.parametrize("settings, fragment", [
    ({"require_vlm": True}, "require_vlm is true"),
    ({"backend": "transformers"}, "analysis.backend='transformers'"),
    ({"fallback": False}, "analysis.fallback is false"),
])
def test_missing_vlm_is_fatal_when_required_or_explicit(settings, fragment):
    vlm = Scripted("transformers", load_errors=[BackendUnavailableError("no model")])
    ocr = Scripted("ocr")
    with pytest.raises(BackendUnavailableError, match=fragment):
        engine(vlm, ocr, **settings)
    assert ocr.closed


def test_no_vlm_and_no_ocr_is_fatal():
    vlm = Scripted("transformers", load_errors=[BackendUnavailableError("no model")])
    ocr = Scripted("ocr", load_errors=[BackendUnavailableError("no onnxruntime")])
    with pytest.raises(BackendUnavailableError, match="OCR unavailable: no onnxruntime"):
        engine(vlm, ocr)


def test_ocr_backend_alone():
    ocr = Scripted("ocr")
    e = AnalysisEngine(AnalysisConfig(backend="ocr"), ocr_factory=lambda: ocr).start()
    (r,) = e.analyze(frames(1))
    st = e.status()
    assert r.backend == "ocr" and st["active"] == "ocr" and not st["vlm_loaded"]
    assert st["degraded"] and st["reason"] == "analysis.backend is ocr: no VLM, OCR-only results"


def test_fusion_off_leaves_ocr_for_fallback_only():
    vlm, ocr = Scripted("transformers"), Scripted("ocr")
    e = engine(vlm, ocr, fusion=FusionConfig(enabled=False))
    assert e.analyze(frames(1))[0].signs[0].source == "vlm"
    assert ocr.calls == 0 and ocr.load_calls == 1


# ---------------------------------------------------------------------------------- run time
def test_vlm_error_degrades_then_recovers_in_the_background():
    clock = Clock()
    vlm = Scripted("transformers", steps=[AnalysisError("CUDA out of memory"), "ok"])
    ocr = Scripted("ocr")
    e = engine(vlm, ocr, clock, fusion=FusionConfig(enabled=False))
    first = e.analyze(frames(2))
    assert all(r.degraded for r in first)
    assert first[0].degraded_reason == "VLM failed: CUDA out of memory"
    assert e.status()["vlm_errors"] == 1 and e.status()["next_retry_s"] == 5.0
    # before the retry interval the VLM is not called at all
    e.analyze(frames(2))
    assert vlm.calls == 1 and e.status()["fallback_frames"] == 4
    clock.now += 5.0
    still = e.analyze(frames(2))  # answered by OCR; the retry runs in the background
    assert all(r.degraded for r in still)
    wait_for(lambda: e.status()["state"] == "ok")
    assert e.status()["recoveries"] == 1 and e.status()["probes"] == 1
    back = e.analyze(frames(2))
    assert not any(r.degraded for r in back) and back[0].backend == "transformers"


def test_failed_retry_waits_another_interval():
    clock = Clock()
    vlm = Scripted("transformers", steps=[AnalysisError("down"), AnalysisError("still down"),
                                          "ok"])
    e = engine(vlm, Scripted("ocr"), clock)
    e.analyze(frames(1))
    clock.now += 5.0
    e.analyze(frames(1))
    wait_for(lambda: e.status()["reason"].startswith("VLM retry failed"))
    assert e.status()["degraded"] and e.status()["next_retry_s"] == 5.0
    e.analyze(frames(1))
    assert vlm.calls == 2  # no new attempt before the next interval
    clock.now += 5.0
    e.analyze(frames(1))
    wait_for(lambda: e.status()["state"] == "ok")


def test_vlm_that_failed_to_load_is_loaded_again_by_the_retry():
    clock = Clock()
    vlm = Scripted("transformers", load_errors=[BackendUnavailableError("server down")])
    e = engine(vlm, Scripted("ocr"), clock)
    assert e.status()["degraded"]
    clock.now += 5.0
    e.analyze(frames(1))
    wait_for(lambda: e.status()["state"] == "ok")
    assert vlm.load_calls == 2 and e.status()["vlm_loaded"]


def test_batch_timeout_answers_from_ocr_and_abandons_the_batch():
    clock = Clock()
    vlm = Scripted("transformers", steps=[("sleep", 2.0), "ok"])
    e = engine(vlm, Scripted("ocr"), clock, batch_timeout=0.15,
               fusion=FusionConfig(enabled=False))
    t0 = time.monotonic()
    results = e.analyze(frames(2))
    assert time.monotonic() - t0 < 1.2  # the model would have taken 2 s
    assert all(r.degraded for r in results)
    assert "exceeded analysis.batch_timeout=0.15 s" in results[0].degraded_reason
    assert e.status()["vlm_timeouts"] == 1
    clock.now += 5.0
    e.analyze(frames(1))  # the slow batch may still run: no retry on top of it
    wait_for(lambda: vlm.calls == 1 and e._inflight is None)
    e.analyze(frames(1))  # now the retry goes out
    wait_for(lambda: e.status()["state"] == "ok")
    assert not e.analyze(frames(1))[0].degraded


def test_unusable_answer_for_one_frame_falls_back_for_that_frame_only():
    vlm = Scripted("transformers", steps=[("partial", 1)])
    e = engine(vlm, Scripted("ocr"))
    good, bad = e.analyze(frames(2))
    assert not good.degraded and good.signs[0].source == "fused"
    assert bad.degraded and bad.backend == "ocr"
    assert bad.degraded_reason == "VLM answer unusable: no JSON object"
    assert e.status()["state"] == "ok" and e.status()["output_errors"] == 1


def test_unexpected_backend_exception_degrades_too():
    vlm = Scripted("transformers", steps=[TypeError("bug"), "ok"])
    e = engine(vlm, Scripted("ocr"))
    assert e.analyze(frames(1))[0].degraded_reason == "VLM failed: bug"


def test_without_fallback_a_failed_batch_raises():
    vlm = Scripted("transformers", steps=[AnalysisError("boom")])
    e = engine(vlm, Scripted("ocr"), fallback=False)
    with pytest.raises(AnalysisError, match="boom"):
        e.analyze(frames(1))


def test_ocr_failing_during_fallback_raises():
    vlm = Scripted("transformers", steps=[AnalysisError("boom")])
    e = engine(vlm, Scripted("ocr", steps=[AnalysisError("ocr broke")]))
    with pytest.raises(AnalysisError, match="OCR fallback failed too"):
        e.analyze(frames(1))
    assert e.status()["ocr_errors"] >= 1


def test_status_is_safe_from_another_thread():
    vlm = Scripted("transformers", steps=[("sleep", 0.01)])
    e = engine(vlm, Scripted("ocr"))
    stop = threading.Event()
    seen, errors = [], []

    def reader():
        while not stop.is_set():
            try:
                seen.append(e.status()["batches"])
            except Exception as exc:  # noqa: BLE001 - the test reports it
                errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    for _ in range(20):
        e.analyze(frames(2))
    stop.set()
    t.join(timeout=5)
    assert not errors and seen == sorted(seen) and e.status()["batches"] == 20


def test_close_closes_the_backends_and_refuses_more_work():
    vlm, ocr = Scripted("transformers"), Scripted("ocr")
    e = engine(vlm, ocr)
    e.close()
    assert vlm.closed and ocr.closed and e.status()["state"] == "closed"
    with pytest.raises(AnalysisError, match="closed"):
        e.analyze(frames(1))


# ------------------------------------------------------------------------------ construction
@pytest.mark.parametrize("name, cls", [("transformers", "TransformersBackend"),
                                       ("openai", "OpenAIBackend"), ("clip", "ClipBackend"),
                                       ("auto", "TransformersBackend")])
def test_create_backend_by_name(name, cls):
    assert type(create_backend(AnalysisConfig(backend=name))).__name__ == cls


def test_config_objects_without_analysis_settings_are_rejected():
    with pytest.raises(ConfigError, match="no `analysis` settings"):
        analyzer_from_config(SimpleNamespace(cameras=("a",)))
    with pytest.raises(ConfigError, match="tracking.k=5 exceeds"):
        AnalysisEngine(AnalysisConfig(tracking=SimpleNamespace(k=5, n=3)))
    assert tracker_factory_from_config(SimpleNamespace(analysis=AnalysisConfig())) is not None


def test_real_tiny_vlm_garbage_becomes_ocr_fallback_per_frame(tiny_vlm_dirs):  # noqa: F811
    config = AnalysisConfig(model=str(tiny_vlm_dirs["idefics3"]), device="cpu",
                            max_new_tokens=16)
    ocr = Scripted("ocr")
    e = AnalysisEngine(config, ocr_factory=lambda: ocr).start()
    try:
        results = e.analyze(frames(2))
        st = e.status()
        assert st["state"] == "ok" and st["vlm_loaded"]
        for r in results:  # never a crash: a validated VLM result or a marked OCR fallback
            if r.degraded:
                assert r.backend == "ocr" and r.degraded_reason.startswith("VLM answer unusable")
            else:
                assert r.backend == "transformers"
        assert st["output_errors"] == sum(r.degraded for r in results)
    finally:
        e.close()


# ------------------------------------------------------------------------------ real OCR
@pytest.fixture(scope="module")
def road_scene():
    from vlm_node.tools.render.scenes import make_road_scene
    scene = make_road_scene(0, (640, 480))  # a 50 km/h sign on a real photo
    assert [(s.sign_class, s.value) for s in scene.signs] == [("speed_limit", 50)]
    return scene


def scene_frame(scene):
    return _release(FrameMeta("front", 7, "front"), scene.image.copy(), (), 0.0)


def test_auto_falls_back_to_the_real_ocr_backend(road_scene, tmp_path):
    config = AnalysisConfig(model=str(tmp_path / "no_model"), device="cpu")
    e = AnalysisEngine(config).start()
    try:
        (r,) = e.analyze([scene_frame(road_scene)])
        assert r.degraded and r.backend == "ocr"
        assert r.degraded_reason.startswith("VLM not loaded: analysis.model=")
        (sign,) = r.signs
        assert (sign.sign_class, sign.value, sign.unit, sign.source) == (
            "speed_limit", 50, "km/h", "classifier")  # the sign classifier of the ocr backend
        assert sign.box.iou(road_scene.signs[0].box) > 0.8
        assert e.status()["active"] == "ocr"
    finally:
        e.close()


def test_real_ocr_corrects_a_misread_vlm_number(road_scene):
    label = road_scene.signs[0].box

    class Misreading(Scripted):
        def _result(self):
            sign = SignReading("speed_limit", 0.8, "vlm", 80.0, "km/h", "80",
                               Box(label.x + 3, label.y - 2, label.w, label.h))
            return AnalysisResult([sign], SceneInfo("road"), "transformers", "m", 5.0)

    from vlm_node.analysis.engine import create_backend
    config = AnalysisConfig()
    e = AnalysisEngine(config, primary_factory=lambda: Misreading("transformers"),
                       ocr_factory=lambda: create_backend(config, "ocr")).start()
    try:
        (r,) = e.analyze([scene_frame(road_scene)])
        (sign,) = r.signs
        assert not r.degraded and (sign.source, sign.value) == ("fused", 50)
        assert sign.confidence < 0.8 * 0.5 + 1e-9  # lowered on conflict
        assert e.status()["fused_corrected"] == 1
    finally:
        e.close()
