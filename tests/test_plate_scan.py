"""The anonymizer on video: rotating plate-scan bands with vehicle regions every frame, the cheap
face pass between thorough ones, and what keeps both fail closed (carried tracks, whole scans
when nothing is carried)."""
import json

import cv2
import numpy as np
import pytest

from helpers import read_bgr, shared
from vlm_node.anonymize import Anonymizer, AnonymizerConfig
from vlm_node.anonymize.plate_scan import (PlateScan, band_rows, carried_hints,
                                           join_overlapping, scan_rects)
from vlm_node.anonymize.tracking import CarryOver
from vlm_node.frames import FrameMeta
from vlm_node.geometry import Box
from vlm_node.results import Detection, TextHint

W, H = 1280, 720
STEP_NS = 100_000_000  # 10 Hz


def test_bands_cover_every_row_with_overlap():
    for height, n in [(720, 4), (1080, 4), (1080, 3), (480, 2)]:
        rows = band_rows(height, n)
        assert len(rows) == n and rows[0][0] == 0 and rows[-1][1] == height
        for (a0, a1), (b0, b1) in zip(rows, rows[1:]):
            assert b0 < a1 and a1 - b0 >= int(0.1 * height) - 1  # overlap: a plate fits whole
    assert band_rows(720, 1) == [(0, 720)]


def test_scan_rects_add_only_vehicles_outside_the_band():
    scan = PlateScan(0, 4, ((10, 20, 100, 80), (300, 500, 600, 700), (700, 100, 900, 400)))
    rects = scan_rects(scan, W, H)
    y1 = band_rows(H, 4)[0][1]
    assert rects[0] == (0, 0, W, y1)
    # the first vehicle lies inside band 0; the third reaches out of it: only its part
    # below the band is added, from one band overlap (72 rows at 720) above the band's edge
    assert rects[1:] == [(300, 500, 600, 700), (700, y1 - 72, 900, 400)]
    assert scan_rects(PlateScan(), W, H) == [(0, 0, W, H)]
    assert join_overlapping([(0, 0, 10, 10), (5, 5, 20, 20), (30, 30, 40, 40)]) == [
        (0, 0, 20, 20), (30, 30, 40, 40)]


def _plate_photo(name: str, width: int) -> tuple[np.ndarray, Box]:
    """A labelled car photo of the shared data scaled to `width` px, and its plate box."""
    import json
    labels = json.loads(shared("labels.json").read_text())
    entry = next(e for e in labels["images"] if e["file"] == f"plates/images/{name}")
    img = read_bgr(shared(entry["file"]))
    s = width / img.shape[1]
    small = cv2.resize(img, (width, round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
    x, y, w, h = entry["plates"][0]
    return small, Box(x * s, y * s, w * s, h * s)


def _frames(photo: np.ndarray | None, x: int, y: int, count: int) -> list[np.ndarray]:
    out = []
    for _ in range(count):
        frame = np.full((H, W, 3), 90, np.uint8)
        if photo is not None:  # cut at the frame's edge, as a car entering the view
            part = photo[:H - y, :W - x]
            frame[y:y + part.shape[0], x:x + part.shape[1]] = part
        out.append(frame)
    return out


def _redacted(frame, plate: Box) -> bool:
    return any(d.kind == "plate" and d.box.iou(plate) >= 0.3 for d in frame.detections)


def test_scan_cadence_and_cheap_face_frames_and_reset():
    anon = Anonymizer(AnonymizerConfig(plate_scan_bands=4, face_thorough_every=3))
    bands, cheap = [], []
    for i, frame in enumerate(_frames(None, 0, 0, 7)):
        pending = anon.detect_frame(frame)
        bands.append(pending.scan.band)
        cheap.append(pending.cheap_faces)
        anon.release(FrameMeta("cam", (i + 1) * STEP_NS, "cam"), pending)
    # the first frame of a stream is scanned whole with the thorough face pass
    assert bands == [None, 0, 1, 2, 3, 0, 1]
    assert cheap == [False, True, True, False, True, True, False]
    anon.reset()
    pending = anon.detect_frame(_frames(None, 0, 0, 1)[0])
    assert pending.scan.full and not pending.cheap_faces
    # a gap in time restarts the rotation too (nothing carried across it)
    anon.release(FrameMeta("cam", 100 * STEP_NS, "cam"), pending)
    for stamp in (101, 200):
        anon.release(FrameMeta("cam", stamp * STEP_NS, "cam"),
                     anon.detect_frame(_frames(None, 0, 0, 1)[0]))
    assert anon.detect_frame(_frames(None, 0, 0, 1)[0]).scan.full


@pytest.mark.parametrize("vehicle_pass", [True, False])
def test_plate_arriving_outside_the_band_is_found_on_its_vehicle(vehicle_pass):
    """A car arrives in the lower part of the frame on a frame whose band is the top one: the
    vehicle region finds its plate on that very frame. Without the vehicle pass the same plate
    is only found when its band comes round (the price the setting documents), and then stays
    redacted."""
    car, plate = _plate_photo("Cars0.jpg", 420)
    x, y = 800, 420
    plate = plate.shifted(x, y)
    assert plate.y > band_rows(H, 4)[2][1] and plate.y2 < H  # only band 3 holds the plate
    anon = Anonymizer(AnonymizerConfig(plate_scan_bands=4, plate_vehicle_pass=vehicle_pass))
    frames = _frames(None, 0, 0, 1) + _frames(car, x, y, 4)
    found = []
    for i, image in enumerate(frames):
        pending = anon.detect_frame(image)
        out = anon.release(FrameMeta("cam", (i + 1) * STEP_NS, "cam"), pending)
        found.append(_redacted(out, plate))
        if i == 1:
            assert pending.scan.band == 0
            assert bool(pending.scan.regions) is vehicle_pass
    if vehicle_pass:
        assert found == [False, True, True, True, True]
    else:
        assert found == [False, False, False, False, True]  # band 3 on the 5th frame


def test_plate_on_no_vehicle_is_carried_until_its_band_comes_round():
    """A plate the COCO detector sees no vehicle around (a tight crop of a car's rear) is
    found by its band and stays redacted on the frames whose bands do not hold it, though
    carry_frames is 1: plate tracks are held bands - 1 frames."""
    photo, plate = _plate_photo("Cars6.jpg", 300)
    x, y = 200, 430
    plate = plate.shifted(x, y)
    anon = Anonymizer(AnonymizerConfig(plate_scan_bands=4, carry_frames=1))
    frames = _frames(None, 0, 0, 1) + _frames(photo, x, y, 9)
    found, regions = [], []
    for i, image in enumerate(frames):
        pending = anon.detect_frame(image)
        regions.append(pending.scan.regions)
        out = anon.release(FrameMeta("cam", (i + 1) * STEP_NS, "cam"), pending)
        found.append(_redacted(out, plate))
    assert not any(regions)  # no vehicle: only the bands find this plate
    first = found.index(True)
    assert 1 <= first <= 4  # within one rotation of the 4 bands
    assert all(found[first:])  # and never lost again: carried between its band's turns


def test_partial_scan_is_completed_when_nothing_is_carried():
    """Frames detected ahead (an offline tool keeps several in flight) with a partial scan,
    then the stream restarts before they are released: the release scans the rest of the
    frame (fail closed), so the plate outside the band is still redacted."""
    photo, plate = _plate_photo("Cars6.jpg", 300)
    x, y = 200, 430
    plate = plate.shifted(x, y)
    anon = Anonymizer(AnonymizerConfig(plate_scan_bands=4, face_thorough_every=2))
    frames = _frames(photo, x, y, 2)
    anon.release(FrameMeta("cam", STEP_NS, "cam"), anon.detect_frame(frames[0]))
    pending = anon.detect_frame(frames[1])
    assert pending.scan.band == 0 and pending.cheap_faces
    assert not any(d.kind == "plate" and d.box.iou(plate) >= 0.3 for d in pending.detections)
    anon.reset()
    out = anon.release(FrameMeta("cam", 2 * STEP_NS, "cam"), pending)
    assert _redacted(out, plate) and anon.scan_completions == 1


def test_cheap_face_boxes_never_shrink_a_thorough_track():
    carry = CarryOver(frames=3)
    big = Detection("face", Box(100, 100, 60, 60), 0.9, "centerface")
    small = Detection("face", Box(112, 112, 40, 40), 0.5, "centerface")
    carry.update([big], 640, 480)
    seen, _ = carry.update([small], 640, 480, frozenset({"face"}))
    box = seen[0][0].box
    assert (box.w, box.h) == (60, 60) and box.center == small.box.center
    seen, _ = carry.update([small], 640, 480)  # a thorough frame: the detection as it is
    assert seen[0][0].box == small.box


def test_hints_of_other_bands_ride_along():
    speed = TextHint(Box(100, 600, 80, 40), "SPEED LIMIT")
    stored: dict[int, list[TextHint]] = {}
    assert carried_hints([speed], stored, PlateScan(None, 4), H) == [speed]
    # next frame scans band 0, which does not hold the sign: its hint is still handed on
    assert carried_hints([], stored, PlateScan(0, 4), H) == [speed]
    # band 3 is scanned and the sign is gone: the hint goes
    assert carried_hints([], stored, PlateScan(3, 4), H) == []


def test_bench_anonymize_times_photos_of_a_directory(tmp_path):
    """`bench anonymize --frames-dir` times real photos as frames (no labels needed) for each
    setting, with the per-stage split, p95 and CPU time per frame."""
    from vlm_node.cli import bench_anonymize

    out = tmp_path / "bench.json"
    rc = bench_anonymize.main(["anonymize", "--frames-dir",
                               str(shared("faces/face_recognition_examples")), "--sizes",
                               "480x270", "--frames", "6", "--warmup", "1", "--clip", "3",
                               "--settings", "every_frame,default", "--output", str(out)])
    assert rc == 0
    rows = {r["setting"]: r for r in json.loads(out.read_text())["results"]}
    assert rows["every_frame"]["overrides"]["plate_scan_bands"] == 1
    for row in rows.values():
        size = row["sizes"]["480x270"]
        assert "labelled" not in row  # no labels: timing only
        assert all(c["labels"] == 0 for c in size["frames"].values())
        for stage in ("faces", "persons", "plates", "redact"):
            assert size["ms_mean"][stage] > 0
        assert 0 < size["anonymize_ms_p50"] <= size["anonymize_ms_p95"]
        assert size["cpu_ms_per_frame"] > 0


def test_analysis_threads_run_below_the_camera_path():
    """The node builds its analysis in a thread of lowered priority: threads the analysis
    starts inherit it (vlm_node/priority.py); the caller's own priority is untouched."""
    import os
    import threading

    from vlm_node.priority import run_lowered

    def build():
        seen = []
        t = threading.Thread(target=lambda: seen.append(
            os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        t.start()
        t.join()
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), seen[0]

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    builder, started = run_lowered(build, 10)
    assert builder == started == min(19, mine + 10)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
    with pytest.raises(ValueError, match="boom"):
        run_lowered(lambda: (_ for _ in ()).throw(ValueError("boom")), 10)


def test_scene_cut_gets_the_whole_pass():
    """A frame unlike the one before (a cut in a recording, a camera switched) is planned
    as the first of a stream: what was found before says nothing about it."""
    anon = Anonymizer(AnonymizerConfig(plate_scan_bands=3, face_thorough_every=2))
    grey, other = _frames(None, 0, 0, 1)[0], np.full((H, W, 3), 230, np.uint8)
    plans = []
    for i, image in enumerate([grey, grey, grey, other, other]):
        pending = anon.detect_frame(image.copy(), (i + 1) * STEP_NS)
        plans.append((pending.scan.band, pending.cheap_faces))
        anon.release(FrameMeta("cam", (i + 1) * STEP_NS, "cam"), pending)
    assert plans == [(None, False), (0, True), (1, False), (None, False), (0, True)]
