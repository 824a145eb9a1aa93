"""The analysis in a child process (`analysis_process`): same results as in-process, frames
cross as AnonymizedFrames, and a child that crashes, hangs or cannot load is reported and
replaced instead of taking the node down."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from process_fakes import MeanFactory
from vlm_node.analysis.engine import analyzer_from_config
from vlm_node.analysis.process_analyzer import ProcessAnalyzer
from vlm_node.config import resolve
from vlm_node.errors import AnalysisError, BackendUnavailableError
from vlm_node.frames import FrameMeta, _release
from vlm_node.tools.bench_node import stat_fields
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


def _state(pid: int) -> str:
    """The process's scheduler state letter (T = stopped)."""
    return stat_fields(pid)[0]


def _settles(pid: int, letters: str, timeout: float = 5.0) -> bool:
    """Whether the process reaches one of the states `letters` (signals arrive a moment
    after they are sent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _state(pid) in letters:
            return True
        time.sleep(0.01)
    return False


def test_hold_stops_the_child_until_every_hold_is_released(make):
    """`analysis_yield`: the camera path holds the analysis process stopped while it
    anonymizes a frame; holds nest (two cameras), and a held batch finishes once let go."""
    pa = make(MeanFactory(), max_hold_s=30.0)
    pid = pa.status()["process_pid"]
    pa.hold()
    assert _settles(pid, "T")
    pa.hold()  # a second camera's frame
    pa.release()
    assert _settles(pid, "T")  # one frame still being anonymized
    done = threading.Event()
    got: list = []
    worker = threading.Thread(target=lambda: (got.extend(pa.analyze([frame(4)])), done.set()))
    worker.start()
    assert not done.wait(0.5)  # the child cannot answer while stopped
    pa.release()
    assert done.wait(10) and got[0].analysis_ms == 4.0
    worker.join()
    assert _settles(pid, "RS")
    status = pa.status()
    assert status["process_held_s"] >= 0.5 and status["process_overdue_releases"] == 0
    pa.release()  # an extra release is harmless
    assert _settles(pid, "RS")


def test_a_hold_longer_than_max_is_let_go_until_the_holds_end(make):
    """Cameras anonymizing in turn could keep holds open for ever: after max_hold_s the child
    runs again, and is stopped anew only once every hold was released."""
    pa = make(MeanFactory(), max_hold_s=0.2)
    pid = pa.status()["process_pid"]
    pa.hold()
    time.sleep(0.3)
    pa.hold()  # overdue: let go, and not stopped again by this hold
    assert _settles(pid, "RS") and pa.status()["process_overdue_releases"] == 1
    pa.release()
    pa.release()
    pa.hold()  # every hold released: the next frame stops it again
    assert _settles(pid, "T")
    pa.release()
    assert _settles(pid, "RS")


def test_close_ends_a_held_child_at_once(make):
    pa = make(MeanFactory(), max_hold_s=30.0)
    proc = pa._proc
    pa.hold()
    start = time.monotonic()
    pa.close()
    assert not proc.is_alive() and proc.exitcode == 0 and time.monotonic() - start < 5


def test_a_held_child_dies_with_a_killed_node(tmp_path):
    """A stopped child cannot see its pipe close: it asks Linux to kill it when the node
    goes (parent-death signal), or a node killed outright would leave it stopped for good."""
    script = tmp_path / "node.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path[:0] = {[str(Path(__file__).parent)]!r}\n"
        "from process_fakes import MeanFactory\n"
        "from vlm_node.analysis.process_analyzer import ProcessAnalyzer\n"
        "if __name__ == '__main__':\n"
        "    pa = ProcessAnalyzer(MeanFactory(), None, max_hold_s=60).start()\n"
        "    pa.hold()\n"
        "    print(pa.status()['process_pid'], flush=True)\n"
        "    time.sleep(60)\n")
    node = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(node.stdout.readline())
        assert _settles(child, "T")
    finally:
        node.kill()
        node.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{child}"):
        if _state(child) == "Z":  # killed, not yet reaped by its new parent
            break
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{child}") or _state(child) == "Z"


def test_an_analysis_on_a_gpu_is_not_held(make):
    """A held process stops feeding its GPU while the CPUs are not what limits it: holds
    are counted but the child keeps running when its status names a CUDA device."""
    from vlm_node.analysis.process_analyzer import runs_on_gpu

    assert runs_on_gpu({"transformers.device": "cuda:0"})
    assert not runs_on_gpu({"transformers.device": "cpu", "backend": "cuda-less"})
    pa = make(MeanFactory("gpu"), max_hold_s=30.0)
    pid = pa.status()["process_pid"]
    pa.hold()
    assert not _settles(pid, "T", timeout=0.5)
    pa.release()
    assert pa.status()["process_held_s"] == 0.0
