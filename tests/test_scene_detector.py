"""The scene description without a VLM: objects -> categories, hazards, summary; fusion with a
VLM's description; sharing the anonymizer's detector pass; the engine attaching it."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import read_bgr, shared
from vlm_node.analysis.config import AnalysisConfig
from vlm_node.analysis.engine import AnalysisEngine
from vlm_node.analysis.scene_detector import (SceneDetector, detector_scene, fuse_scene,
                                              scene_objects)
from vlm_node.anonymize.anonymizer import SHARED_OBJECT_THRESHOLD, Anonymizer
from vlm_node.anonymize.config import AnonymizerConfig
from vlm_node.anonymize.persons import COCO_CLASSES, ObjectDetector
from vlm_node.frames import FrameMeta
from vlm_node.geometry import Box
from vlm_node.results import ObjectDetection, SceneInfo


def obj(label: str, score: float, x: float, y: float, w: float, h: float) -> ObjectDetection:
    return ObjectDetection(label, COCO_CLASSES.index(label), score, Box(x, y, w, h))


def test_categories_riders_and_threshold():
    found = [obj("person", 0.9, 100, 100, 40, 120),      # rides the bicycle below him
             obj("bicycle", 0.8, 90, 160, 60, 70),
             obj("person", 0.7, 400, 100, 40, 120),      # walks
             obj("motorbike", 0.6, 600, 200, 80, 60),    # parked: nobody on it -> vehicle
             obj("car", 0.55, 700, 150, 200, 120),
             obj("dog", 0.6, 300, 250, 40, 30),
             obj("bicycle", 0.9, 800, 300, 50, 40),      # riderless bicycle: not reported
             obj("person", 0.4, 10, 10, 20, 60),         # below the threshold
             obj("cup", 0.9, 0, 0, 10, 10)]              # not a road object
    objects = scene_objects(found, 0.5)
    assert [(o.category, o.label) for o in objects] == [
        ("pedestrian", "person"), ("cyclist", "person+bicycle"), ("animal", "dog"),
        ("vehicle", "motorbike"), ("vehicle", "car")]
    cyclist = objects[1]
    assert cyclist.box.to_list() == [90.0, 100.0, 60.0, 130.0]  # spans rider and bicycle
    assert cyclist.score == pytest.approx(0.8)
    scene = detector_scene(objects)
    # vehicles are listed with boxes but raise no hazard (stopped / close ahead is not
    # measurable from one box)
    assert scene.hazards == ("pedestrian", "cyclist", "animal")
    assert scene.summary == ("Detector: 1 pedestrian, 1 cyclist, 1 animal, 2 vehicles; weather, "
                             "lighting and road type not measured.")
    assert (scene.weather, scene.lighting, scene.road_type) == ("unknown",) * 3
    assert scene.source == "detector" and scene.confidence == pytest.approx(0.8)


def test_empty_scene_says_so():
    scene = detector_scene([])
    assert scene.hazards == () and scene.confidence == 0.0 and scene.objects == ()
    assert scene.summary.startswith("Detector: no road users or animals detected")


def test_fusion_joins_hazards_and_keeps_the_vlm_fields():
    vlm = SceneInfo(summary="Wet urban street at dusk.", weather="rain", lighting="twilight",
                    road_type="urban", hazards=("wet_road", "pedestrian"), confidence=0.7)
    objects = scene_objects([obj("person", 0.9, 0, 0, 10, 30), obj("dog", 0.8, 50, 50, 10, 10)],
                            0.5)
    fused = fuse_scene(vlm, objects)
    assert fused.source == "fused" and fused.objects == tuple(objects)
    assert fused.hazards == ("pedestrian", "animal", "wet_road")  # union, vocabulary order
    assert (fused.weather, fused.lighting, fused.road_type) == ("rain", "twilight", "urban")
    assert fused.summary == "Wet urban street at dusk. Detector: 1 pedestrian, 1 animal."
    long = fuse_scene(SceneInfo(summary="x" * 200), objects)
    assert len(long.summary) <= 200 and long.summary.endswith("Detector: 1 pedestrian, "
                                                              "1 animal.")


def test_real_photos():
    detector = ObjectDetector()
    people = read_bgr(shared("faces/dlib_pascal_voc/2008_002079.jpg"))
    dogs = read_bgr(shared("faces/dlib_pascal_voc/dogs.jpg"))
    road = read_bgr(shared("signs_real_dev/gtsdb_00491.jpg"))  # a bus and a car, no people
    s = detector_scene(scene_objects(detector.detect(people, 0.3), 0.5))
    assert s.hazards == ("pedestrian",) and len(s.objects) >= 4
    s = detector_scene(scene_objects(detector.detect(dogs, 0.3), 0.5))
    assert s.hazards == ("animal",) and {o.label for o in s.objects} == {"dog"}
    s = detector_scene(scene_objects(detector.detect(road, 0.3), 0.5))
    assert s.hazards == () and {o.label for o in s.objects} == {"bus", "car"}


def test_anonymizer_shares_its_detector_pass():
    image = read_bgr(shared("faces/dlib_pascal_voc/2008_002079.jpg"))
    raw_found = ObjectDetector().detect(image.copy(), SHARED_OBJECT_THRESHOLD)
    anonymizer = Anonymizer(AnonymizerConfig(plates=False))
    frame = anonymizer.anonymize(FrameMeta("cam", 1, "cam"), image)
    assert frame.objects is not None and frame.objects_threshold == SHARED_OBJECT_THRESHOLD
    # the very objects of the raw frame (boxes only), not a second pass on redacted pixels
    assert [(o.label, o.box) for o in frame.objects] == [(o.label, o.box) for o in raw_found]
    detector = SceneDetector(threshold=0.5)
    scene = detector.describe(frame)
    assert detector.counts == {"shared": 1, "own": 0} and scene.hazards == ("pedestrian",)
    # a threshold below what the anonymizer kept needs its own pass
    low = SceneDetector(threshold=0.2)
    low.found(frame)
    assert low.counts == {"shared": 0, "own": 1}
    # without the head backstop nothing is shared: the analysis runs the detector itself
    plain = Anonymizer(AnonymizerConfig(plates=False, head_backstop=False))
    frame2 = plain.anonymize(FrameMeta("cam", 2, "cam"), read_bgr(shared(
        "faces/dlib_pascal_voc/2008_002079.jpg")))
    assert frame2.objects is None
    own = SceneDetector(threshold=0.5)
    assert own.describe(frame2).hazards == ("pedestrian",) and own.counts["own"] == 1


def test_engine_describes_the_scene_without_a_vlm_and_stays_degraded():
    image = read_bgr(shared("faces/dlib_pascal_voc/dogs.jpg"))
    frame = Anonymizer(AnonymizerConfig(plates=False)).anonymize(FrameMeta("cam", 1, "cam"),
                                                                 image)
    engine = AnalysisEngine(AnalysisConfig(backend="ocr")).start()
    try:
        [result] = engine.analyze([frame])
    finally:
        engine.close()
    assert result.degraded and result.backend == "ocr"  # no VLM: still degraded
    assert result.scene is not None and result.scene.source == "detector"
    assert result.scene.hazards == ("animal",)


def test_scene_can_be_switched_off():
    from vlm_node.analysis.config import SceneConfig
    frame = Anonymizer(AnonymizerConfig(plates=False, faces=False)).anonymize(
        FrameMeta("cam", 1, "cam"), np.zeros((120, 160, 3), np.uint8))
    engine = AnalysisEngine(AnalysisConfig(backend="ocr",
                                           scene=SceneConfig(enabled=False))).start()
    try:
        [result] = engine.analyze([frame])
    finally:
        engine.close()
    assert result.scene is None and engine.scene is None


def test_hazard_figures_on_the_hand_labelled_photos():
    """The README's figures (threshold 0.5), recomputed: 56 photos labelled in
    docs/data/hazard_labels.json, through the default anonymizer and the scene detector."""
    import json

    from helpers import REPO, SHARED_DATA
    from vlm_node.tools.eval_hazards import DEFAULT_LABELS, evaluate

    shared("plates")  # skips without the shared data
    assert DEFAULT_LABELS == REPO / "docs" / "data" / "hazard_labels.json"
    labels = json.loads(DEFAULT_LABELS.read_text())
    result = evaluate(SHARED_DATA, labels, [0.5])
    assert result["images"] == 56 and result["shared_passes"] == 56  # detector ran once each
    got = {c: (m["tp"], m["fp"], m["fn"]) for c, m in result["by_threshold"]["0.5"].items()}
    assert got == {"pedestrian": (18, 4, 1), "vehicle": (17, 0, 21), "cyclist": (0, 0, 1),
                   "animal": (1, 0, 0)}
