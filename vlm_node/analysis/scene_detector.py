"""A scene description without a VLM: road users and animals from a COCO object detector.

The detector (FastestDet, the one the anonymizer's head backstop loads: `vlm_node.anonymize.
persons`) gives boxes with classes; this module turns them into `SceneObject`s of the
DetectedObject.msg categories and a `SceneInfo` whose hazards, summary and confidence come from
those objects only:

- pedestrian: a person not riding; hazard `pedestrian`.
- cyclist: a person over a bicycle or motorbike (the ride's box mostly inside the person's
  box and below its centre); hazard `cyclist`; the box spans both.
- animal: the COCO animals that walk on roads (not birds); hazard `animal`.
- vehicle: car, bus, truck, or a motorbike nobody rides. Listed with its box but **no hazard**:
  whether a vehicle is stopped or close ahead needs motion or range, which one box in one frame
  does not give.

Weather, lighting and road type stay `unknown`: nothing here measures them. With a VLM, the
VLM's description is kept and its hazards are joined with the detector's (`fuse_scene`); the
objects (pixel-grounded) always come from the detector.

When the anonymizer's person pass already ran the detector on the frame, its objects ride along
on the `AnonymizedFrame` (`objects`) and are used instead of a second pass.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

from vlm_node.frames import AnonymizedFrame
from vlm_node.results import ObjectDetection, SceneInfo, SceneObject
from vlm_node.vocab import HAZARDS, OBJECT_CATEGORIES, SCENE_SOURCES, UNKNOWN

PEDESTRIAN, CYCLIST, VEHICLE, ANIMAL = "pedestrian", "cyclist", "vehicle", "animal"
DETECTOR, VLM, FUSED = "detector", "vlm", "fused"
RIDES = ("bicycle", "motorbike")
VEHICLES = ("car", "bus", "truck", "motorbike")
ANIMALS = ("cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe")
# Which hazard an object category raises (vehicles raise none: see the module docstring).
HAZARD_OF = {PEDESTRIAN: "pedestrian", CYCLIST: "cyclist", ANIMAL: "animal"}
# A ride belongs to a person when this fraction of the ride's box lies inside the person's.
RIDE_OVERLAP = 0.3
MAX_SUMMARY = 200  # SceneDescription.summary

for _c in (PEDESTRIAN, CYCLIST, VEHICLE, ANIMAL):
    assert _c in OBJECT_CATEGORIES, f"DetectedObject.msg lacks CATEGORY {_c!r}"
for _h in HAZARD_OF.values():
    assert _h in HAZARDS, f"SceneDescription.msg lacks HAZARD {_h!r}"
for _s in (DETECTOR, VLM, FUSED):
    assert _s in SCENE_SOURCES, f"SceneDescription.msg lacks SOURCE {_s!r}"


def scene_objects(found: Iterable[ObjectDetection], threshold: float) -> list[SceneObject]:
    """Road users and animals among the detector's `found` objects scoring `threshold` or more,
    riders paired with their rides; ordered by category, then score (highest first)."""
    kept = [o for o in found if o.score >= threshold]
    people = [o for o in kept if o.label == "person"]
    rides = [o for o in kept if o.label in RIDES]
    ridden: dict[int, int] = {}  # ride index -> person index
    for ri, ride in enumerate(rides):
        best, best_cover = -1, RIDE_OVERLAP
        for pi, person in enumerate(people):
            cover = ride.box.coverage_by(person.box)
            if (cover >= best_cover and ride.box.center[1] > person.box.center[1]
                    and pi not in ridden.values()):
                best, best_cover = pi, cover
        if best >= 0:
            ridden[ri] = best
    riders = {pi: ri for ri, pi in ridden.items()}
    out: list[SceneObject] = []
    for pi, person in enumerate(people):
        if pi in riders:
            ride = rides[riders[pi]]
            b, r = person.box, ride.box
            box = type(b).from_xyxy(min(b.x, r.x), min(b.y, r.y), max(b.x2, r.x2),
                                    max(b.y2, r.y2))
            out.append(SceneObject(CYCLIST, f"person+{ride.label}", min(person.score, ride.score),
                                   box))
        else:
            out.append(SceneObject(PEDESTRIAN, "person", person.score, person.box))
    for ri, ride in enumerate(rides):
        if ri not in ridden and ride.label in VEHICLES:
            out.append(SceneObject(VEHICLE, ride.label, ride.score, ride.box))
    for o in kept:
        if o.label in VEHICLES and o.label not in RIDES:
            out.append(SceneObject(VEHICLE, o.label, o.score, o.box))
        elif o.label in ANIMALS:
            out.append(SceneObject(ANIMAL, o.label, o.score, o.box))
    order = {c: i for i, c in enumerate((PEDESTRIAN, CYCLIST, ANIMAL, VEHICLE))}
    out.sort(key=lambda s: (order[s.category], -s.score))
    return out


def hazards_of(objects: Sequence[SceneObject]) -> tuple[str, ...]:
    """The hazards the objects raise, each once, in vocabulary order."""
    raised = {HAZARD_OF[o.category] for o in objects if o.category in HAZARD_OF}
    return tuple(h for h in HAZARDS if h in raised)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def compose_summary(objects: Sequence[SceneObject]) -> str:
    """One sentence from the objects alone, e.g. "Detector: 2 pedestrians, 1 vehicle; weather,
    lighting and road type not measured." Never anything the objects do not say."""
    counts = Counter(o.category for o in objects)
    parts = [_plural(counts[c], c) for c in (PEDESTRIAN, CYCLIST, ANIMAL, VEHICLE) if counts[c]]
    seen = ", ".join(parts) if parts else "no road users or animals detected"
    return f"Detector: {seen}; weather, lighting and road type not measured."[:MAX_SUMMARY]


def detector_scene(objects: Sequence[SceneObject]) -> SceneInfo:
    """The scene as the detector alone describes it (source `detector`)."""
    return SceneInfo(summary=compose_summary(objects), weather=UNKNOWN, lighting=UNKNOWN,
                     road_type=UNKNOWN, hazards=hazards_of(objects),
                     confidence=max((o.score for o in objects), default=0.0),
                     source=DETECTOR, objects=tuple(objects))


def fuse_scene(vlm: SceneInfo, objects: Sequence[SceneObject]) -> SceneInfo:
    """The VLM's description with the detector's hazards joined in (union, vocabulary order)
    and the detector's objects; source `fused`. The summary keeps the VLM's sentence and adds
    what the detector counted, so the two never silently disagree."""
    joined = set(vlm.hazards) | set(hazards_of(objects))
    counts = Counter(o.category for o in objects)
    parts = [_plural(counts[c], c) for c in (PEDESTRIAN, CYCLIST, ANIMAL, VEHICLE) if counts[c]]
    extra = f" Detector: {', '.join(parts) if parts else 'none'}."
    summary = vlm.summary.rstrip()
    if len(summary) + len(extra) > MAX_SUMMARY:
        summary = summary[:MAX_SUMMARY - len(extra) - 3].rstrip() + "..."
    return SceneInfo(summary=summary + extra, weather=vlm.weather, lighting=vlm.lighting,
                     road_type=vlm.road_type, hazards=tuple(h for h in HAZARDS if h in joined),
                     confidence=vlm.confidence, source=FUSED, objects=tuple(objects))


class SceneDetector:
    """The detector of scene analysis: objects of a frame (shared from the anonymizer when it
    ran the detector at a low enough threshold, else its own pass) -> SceneInfo."""

    def __init__(self, threshold: float = 0.5, tiles: int = 1,
                 providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 1) -> None:
        self.threshold = threshold
        self.tiles = tiles
        self.providers = tuple(providers)
        self.threads = threads
        self._detector = None
        self.counts = {"shared": 0, "own": 0}

    def load(self) -> "SceneDetector":
        """Load the detector model now (configure time), not on the first frame."""
        from vlm_node.anonymize.persons import ObjectDetector
        from vlm_node.anonymize.runtime import Runtime
        if self._detector is None:
            self._detector = ObjectDetector(None, Runtime(self.providers, self.threads),
                                            tiles=self.tiles)
        return self

    def found(self, frame: AnonymizedFrame) -> list[ObjectDetection]:
        """The detector's objects in `frame`: those the anonymizer passed along when it kept
        objects down to our threshold, else a pass of our own on the anonymized pixels."""
        if frame.objects is not None and frame.objects_threshold <= self.threshold:
            self.counts["shared"] += 1
            return list(frame.objects)
        self.load()
        self.counts["own"] += 1
        return self._detector.detect(frame.image, self.threshold)

    def describe(self, frame: AnonymizedFrame, vlm: SceneInfo | None = None) -> SceneInfo:
        objects = scene_objects(self.found(frame), self.threshold)
        return detector_scene(objects) if vlm is None else fuse_scene(vlm, objects)
