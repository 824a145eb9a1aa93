"""The analysis in a child process (`analysis_process`): same results as in-process, frames
cross as AnonymizedFrames, and a child that crashes, hangs or cannot load is reported and
replaced instead of taking the node down."""
from __future__ import annotations

import os

import numpy as np
import pytest

from process_fakes import MeanFactory
from vlm_node.analysis.engine import analyzer_from_config
from vlm_node.analysis.process_analyzer import ProcessAnalyzer
from vlm_node.config import resolve
from vlm_node.errors import AnalysisError, BackendUnavailableError
from vlm_node.frames import FrameMeta, _release
from vlm_node.tools.render.scenes import make_road_scene


def frame(value: int = 7, camera: str = "front"):
    image = np.full((48, 64, 3), value, np.uint8)
    return _release(FrameMeta(camera, 1, camera), image, (), 1.0)


@pytest.fixture
def make():
    made: list[ProcessAnalyzer] = []

    def _make(factory, **kw) -> ProcessAnalyzer:
        pa = ProcessAnalyzer(factory, None, **kw)
        made.append(pa)
        return pa.start()
    yield _make
    for pa in made:
        pa.close()


def test_frames_are_analysed_in_another_process_in_order(make):
    pa = make(MeanFactory())
    results = pa.analyze([frame(7, "a"), frame(200, "b")])
    assert [r.analysis_ms for r in results] == [7.0, 200.0]
    assert {r.model_id for r in results} == {str(pa.status()["process_pid"])}
    assert int(results[0].model_id) != os.getpid()
    status = pa.status()
    assert status["calls"] == 1 and status["process_alive"] and status["process_restarts"] == 0
    assert pa.analyze([]) == []


def test_the_real_engine_gives_the_same_signs_as_in_process():
    config = resolve([], {"analysis.backend": "ocr"})
    scene = make_road_scene(0, seed=3)
    f = _release(FrameMeta("front", 1, "front"), scene.image, (), 1.0)
    local = analyzer_from_config(config)
    try:
        expected = local.analyze([f])[0]
    finally:
        local.close()
    pa = ProcessAnalyzer(analyzer_from_config, config, nice=5).start()
    try:
        got = pa.analyze([f])[0]
        assert pa.status()["backend"] == "ocr"
    finally:
        pa.close()
    assert expected.signs, "the rendered scene has signs to read"
    assert [(s.sign_class, s.value, s.box) for s in got.signs] == \
        [(s.sign_class, s.value, s.box) for s in expected.signs]


def test_a_load_error_names_the_cause():
    with pytest.raises(BackendUnavailableError, match="weights file missing"):
        ProcessAnalyzer(MeanFactory("load_error"), None).start()


def test_an_unpicklable_factory_is_refused_with_the_setting_to_change():
    with pytest.raises(BackendUnavailableError, match="analysis_process:=false"):
        ProcessAnalyzer(lambda config: None, None).start()


def test_a_failing_batch_is_an_analysis_error_and_the_child_lives_on(make):
    pa = make(MeanFactory("raise"))
    pid = pa.status()["process_pid"]
    for _ in range(2):
        with pytest.raises(AnalysisError, match="ValueError: model says no"):
            pa.analyze([frame()])
    assert pa.status()["process_pid"] == pid and pa.status()["process_restarts"] == 0


def test_a_crashed_child_fails_its_batch_and_is_replaced(make, tmp_path):
    pa = make(MeanFactory("crash", str(tmp_path / "crashed")))
    first = pa.status()["process_pid"]
    with pytest.raises(AnalysisError, match="exit code 3"):
        pa.analyze([frame(9)])
    assert not pa.status()["process_alive"]
    (result,) = pa.analyze([frame(9)])
    assert result.analysis_ms == 9.0
    status = pa.status()
    assert status["process_restarts"] == 1 and status["process_pid"] not in (0, first)


def test_a_hung_child_times_out_and_is_replaced(make, tmp_path):
    pa = make(MeanFactory("hang", str(tmp_path / "hung")), reply_timeout=1.0)
    with pytest.raises(AnalysisError, match="did not answer within 1 s"):
        pa.analyze([frame()])
    (result,) = pa.analyze([frame(5)])
    assert result.analysis_ms == 5.0 and pa.status()["process_restarts"] == 1


def test_close_ends_the_child(make):
    pa = make(MeanFactory())
    proc = pa._proc
    pa.close()
    assert not proc.is_alive() and proc.exitcode == 0
    pa.close()  # twice is harmless
