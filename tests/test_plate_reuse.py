"""What a video frame's plate pass takes over from the frames before (plate_reuse.py): text
lines of areas whose pixels are unchanged, readings of lines that look the same; and what keeps
it fail safe (a changed or moved area is searched again, every plate stays redacted)."""
import cv2
import numpy as np

from helpers import read_bgr, shared, shared_labels
from vlm_node.anonymize import Anonymizer, AnonymizerConfig
from vlm_node.anonymize.config import for_frames_in_flight, for_recordings
from vlm_node.anonymize.multiscale import RawDetections
from vlm_node.anonymize.plate_reuse import AreaMemory, ReadCache
from vlm_node.anonymize.plate_scan import dedupe_lines
from vlm_node.frames import FrameMeta
from vlm_node.geometry import Box

W, H = 1280, 720
STEP_NS = 100_000_000  # 10 Hz


def _road() -> np.ndarray:
    """A real road photo (GTSDB development image) as a 1280x720 frame: texture everywhere,
    as a camera sees it (a flat canvas has no motion to measure)."""
    img = read_bgr(shared("signs_real_dev/gtsdb_00311.jpg"))
    return cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)


def _car(name: str, width: int) -> tuple[np.ndarray, Box]:
    entry = next(e for e in shared_labels()["images"] if e["file"] == f"plates/images/{name}")
    img = read_bgr(shared(entry["file"]))
    s = width / img.shape[1]
    small = cv2.resize(img, (width, round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
    x, y, w, h = entry["plates"][0]
    return small, Box(x * s, y * s, w * s, h * s)


def _scene(car: np.ndarray, x: int, y: int, pan: float = 0.0) -> np.ndarray:
    frame = _road()
    frame[y:y + car.shape[0], x:x + car.shape[1]] = car
    if pan:
        m = np.float32([[1, 0, pan], [0, 1, 0]])
        frame = cv2.warpAffine(frame, m, (W, H), borderMode=cv2.BORDER_REPLICATE)
    return frame


def _covered(frame, plate: Box) -> float:
    """Share of the plate's area inside the released frame's plate regions."""
    mask = np.zeros((H, W), bool)
    for d in frame.detections:
        if d.kind == "plate":
            b = d.box
            mask[int(b.y):int(np.ceil(b.y2)), int(b.x):int(np.ceil(b.x2))] = True
    x1, y1 = int(plate.x), int(plate.y)
    return float(mask[y1:int(np.ceil(plate.y2)), x1:int(np.ceil(plate.x2))].mean())


def _memory(anon: Anonymizer):
    return next(s for s in anon.detectors if s.kind == "plate").memory


def test_tracked_plate_is_redacted_in_every_frame_held_and_moving():
    """A car stands (12 identical frames) then the camera pans 3 px a frame (12 frames): the
    plate is redacted in every frame, and frames after the first took lines and readings
    over instead of searching and reading again."""
    car, plate = _car("Cars0.jpg", 420)
    x, y = 700, 250
    anon = Anonymizer(AnonymizerConfig(plate_scan_bands=3))
    shots = [(_scene(car, x, y), 0.0)] * 12 + [(_scene(car, x, y, 3.0 * k), 3.0 * k)
                                               for k in range(1, 13)]
    for i, (image, dx) in enumerate(shots):
        out = anon.release(FrameMeta("cam", (i + 1) * STEP_NS, "cam"),
                           anon.detect_frame(image.copy(), (i + 1) * STEP_NS))
        assert _covered(out, plate.shifted(x + dx, y)) >= 0.9, f"frame {i}"
    memory = _memory(anon)
    assert memory.areas.taken >= 6 and memory.reads.hits >= 6


def test_reuse_off_searches_every_frame():
    car, plate = _car("Cars0.jpg", 420)
    anon = Anonymizer(AnonymizerConfig(plate_scan_bands=3, plate_reuse_frames=0))
    for i in range(5):
        out = anon.release(FrameMeta("cam", (i + 1) * STEP_NS, "cam"),
                           anon.detect_frame(_scene(car, 700, 250), (i + 1) * STEP_NS))
        assert _covered(out, plate.shifted(700, 250)) >= 0.9
    memory = _memory(anon)
    assert memory.areas.taken == memory.reads.hits == 0


def test_moved_plate_is_searched_again_on_the_frame_it_moved():
    """The car jumps 200 px while the rest of the scene stands: the areas that held it no
    longer match, so the plate is found at its new place on that very frame (not only
    carried from the old one)."""
    car, plate = _car("Cars0.jpg", 420)
    anon = Anonymizer(AnonymizerConfig(plate_scan_bands=3))
    frames = [_scene(car, 500, 250)] * 6 + [_scene(car, 700, 250)] * 3
    for i, image in enumerate(frames):
        memory = _memory(anon)
        searched = memory.areas.searched
        pending = anon.detect_frame(image.copy(), (i + 1) * STEP_NS)
        out = anon.release(FrameMeta("cam", (i + 1) * STEP_NS, "cam"), pending)
        where = plate.shifted(500 if i < 6 else 700, 250)
        assert _covered(out, where) >= 0.9, f"frame {i}"
        if i == 6:  # detected there, not carried
            assert memory.areas.searched > searched
            assert any(d.kind == "plate" and d.box.iou(where) >= 0.3
                       for d in pending.detections)
    assert memory.areas.taken > 0  # the frames before the jump took lines over


def test_area_memory_takes_over_only_unchanged_pixels():
    road = _road()
    memory = AreaMemory(max_age=6)
    band = (0, 200, W, 500)
    line = RawDetections(np.array([[300, 300, 400, 330]], np.float32), np.ones(1, np.float32),
                         np.array([[[300, 300], [400, 300], [400, 330], [300, 330]]],
                                  np.float32))
    memory.next_frame(road, restart=True)
    memory.store(band, line)
    # the same pixels: the line is taken over, nothing left to search
    memory.next_frame(road.copy(), restart=False)
    lines, strips = memory.take(band)
    assert len(lines) == 1 and strips == []
    # the scene panned 8 px: the line moves with it; the strip that came in at the left
    # border is searched, reaching into the frame
    m = np.float32([[1, 0, 8], [0, 1, 0]])
    memory.next_frame(cv2.warpAffine(road, m, (W, H), borderMode=cv2.BORDER_REPLICATE), False)
    lines, strips = memory.take(band)
    assert abs(float(lines.boxes[0, 0]) - 308) <= 1.0
    assert len(strips) == 1 and strips[0][0] == 0 and strips[0][2] >= 8 + 0.2 * H
    # a plate 48 px wide appeared inside the band: searched again
    car, plate = _car("Cars0.jpg", 125)  # its plate 48 px wide
    crop = car[int(plate.y):int(plate.y2), int(plate.x):int(plate.x2)]
    changed = road.copy()
    changed[320:320 + crop.shape[0], 900:900 + crop.shape[1]] = crop
    memory.next_frame(changed, False)
    assert memory.take(band) is None
    # a rectangle the remembered area does not cover is searched
    memory.next_frame(road.copy(), False)
    assert memory.take((0, 150, W, 500)) is None
    # and nothing is taken over after max_age frames
    for _ in range(6):
        memory.next_frame(road.copy(), False)
    assert memory.take(band) is None


def test_read_cache_reuses_only_the_same_pixels_and_expires():
    car, plate = _car("Cars0.jpg", 420)
    scene = _scene(car, 700, 250)
    p = plate.shifted(700, 250)
    box = np.array([p.x, p.y, p.x2, p.y2], np.float32)
    cache = ReadCache(max_age=2)
    cache.next_frame()
    cache.store(box, scene, "ALR486")
    cache.next_frame()
    assert cache.lookup(box, scene) == "ALR486"
    moved = _scene(car, 700, 250, 3.0)
    assert cache.lookup(box + np.float32([3, 0, 3, 0]), moved) == "ALR486"
    other, _ = _car("Cars1.jpg", 420)  # other pixels at the same place
    assert cache.lookup(box, _scene(other, 700, 250)) is None
    cache.next_frame(consult=False)  # a whole pass reads every line itself
    assert cache.lookup(box, scene) is None
    cache.next_frame()
    assert cache.lookup(box, scene) is None  # read 3 frames ago, max_age 2: read again
    assert cache.hits == 2


def test_lines_of_overlapping_rects_are_kept_once():
    whole = [10, 10, 110, 30]
    cut = [60, 10, 110, 30]  # the same line cut by the other rectangle's edge
    other = [10, 40, 110, 60]
    boxes = np.array([cut, whole, other, [12, 10, 108, 30]], np.float32)
    keep = dedupe_lines(boxes, np.array([1, 0, 0, 0]))
    # the cut copy from rectangle 1 goes; lines of one rectangle are never merged
    assert keep.tolist() == [1, 2, 3]


def test_offline_runs_with_frames_in_flight_do_not_reuse():
    config = AnonymizerConfig()
    assert config.plate_reuse_frames > 0
    assert for_recordings(config, video_plan=True).plate_reuse_frames == 0
    assert for_frames_in_flight(config, 2).plate_reuse_frames == 0
    assert for_frames_in_flight(config, 1).plate_reuse_frames == config.plate_reuse_frames


def test_area_with_rejected_text_is_searched_again():
    """Text judged not to be a plate is borderline: the area around it is searched again
    next time instead of repeating the decision on the old lines."""
    road = _road()
    memory = AreaMemory(max_age=6)
    band, other = (0, 200, W, 500), (0, 520, W, 720)
    memory.next_frame(road, restart=True)
    memory.store(band, RawDetections.empty(4))
    memory.store(other, RawDetections.empty(4))
    memory.forget_around([np.array([600, 300, 700, 330], np.float32)])
    memory.next_frame(road.copy(), restart=False)
    assert memory.take(band) is None
    assert memory.take(other) is not None
