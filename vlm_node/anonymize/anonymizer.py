"""The anonymizer: detect faces and plates, carry regions across detector misses, redact them,
and release the frame only when every step succeeded.

Fail closed: an exception inside a detector or the redaction, a detector call that took longer
than its time budget, or detector output that is not a sane box (NaN, inf, empty, outside the
frame) means the frame is not released. Policy `drop` raises AnonymizationError (the caller
counts and drops), policy `full_blur` releases a frame blurred as a whole. Every failure is
counted by reason in `Anonymizer.stats` for the node's diagnostics. There is no code path that
returns the input pixels unredacted.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import cv2
import numpy as np

from vlm_node.anonymize.config import AnonymizerConfig
from vlm_node.anonymize.appearance import shared_estimator
from vlm_node.anonymize.face_replace import FaceReplacer
from vlm_node.anonymize.faces import load_face_model
from vlm_node.anonymize.multiscale import (CorruptOutput, RawDetections, added_where_new,
                                           View, check_finite, merge, merge_indices,
                                           plan_views, run_view, working_scale)
from vlm_node.anonymize.persons import HEAD_DETECTOR, ObjectDetector, faceless, head_box
from vlm_node.anonymize.plate_reuse import PlateMemory
from vlm_node.anonymize.plate_scan import FULL, PlateScan, carried_hints, vehicle_regions
from vlm_node.anonymize.plates import (HaarPlateDetector, PlateGeometry, SsdPlateDetector,
                                       TextPlateDetector)
from vlm_node.anonymize.redact import blur_all, blur_full_frame, redact, redaction_region
from vlm_node.anonymize.runtime import stream_frame
from vlm_node.anonymize.tracking import CarryOver
from vlm_node import in_order
from vlm_node.errors import AnonymizationError, ConfigError
from vlm_node.frames import AnonymizedFrame, FrameMeta, _release
from vlm_node.geometry import Box
from vlm_node.params import validate
from vlm_node.results import Detection, ObjectDetection, TextHint

FAILURE_REASONS = ("bad_input", "exception", "over_budget", "corrupt_output", "redaction_error")

THUMB = (32, 18)
"""Size of the grey thumbnails compared for scene cuts (`scene_cut_threshold`)."""

# Settings that decide which models are loaded and how; changing one rebuilds the detectors.
_STRUCTURAL = ("faces", "face_detectors", "face_model_paths", "face_nms_threshold", "plates",
               "plate_detector", "plate_model", "plate_text_threshold", "plate_verify",
               "head_backstop", "person_tiles", "person_model", "providers", "threads",
               "engine", "precision", "frame_shapes", "shape_reuse", "plate_vehicle_pass")


class DetectorFailure(Exception):
    """A detector failed in a way that must fail the frame; `reason` is a FAILURE_REASONS
    entry."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class AnonymizerStats:
    """Counters for diagnostics: frames seen and released, failures by reason, redactions by
    kind, and the last frame's per-stage times. Updated under the Anonymizer's lock."""

    frames: int = 0
    released: int = 0
    full_frame_blurred: int = 0
    failures: Counter = field(default_factory=Counter)
    redacted: Counter = field(default_factory=Counter)
    carried: int = 0
    last_ms: dict[str, float] = field(default_factory=dict)
    # faces `replace` mode had to blur, by reason (no_landmarks, too_small, turned)
    replace_fallbacks: Counter = field(default_factory=Counter)

    def snapshot(self) -> dict[str, Any]:
        return {"frames": self.frames, "released": self.released,
                "full_frame_blurred": self.full_frame_blurred,
                "failures": {r: self.failures.get(r, 0) for r in FAILURE_REASONS},
                "redacted": dict(self.redacted), "carried": self.carried,
                "replace_fallbacks": dict(self.replace_fallbacks),
                "last_ms": {k: round(v, 2) for k, v in self.last_ms.items()}}


@dataclass(slots=True)
class StageFindings:
    """What a detector stage found: regions to redact, and sign text it met on the way (only
    the text-based plate stage has any), and every object the person stage's COCO detector saw
    (shared with scene analysis). A stage may also return a bare list of regions."""

    detections: list[Detection]
    hints: list[TextHint] = field(default_factory=list)
    objects: list[ObjectDetection] | None = None
    vehicles: list[ObjectDetection] = field(default_factory=list)  # for the plate scan
    scan: PlateScan | None = None  # what a plate stage covered (vehicle regions included)


class FaceStage:
    """One face model run over the frame at the configured pixel budget (tiles + global pass
    for fixed-input models)."""

    kind = "face"

    def __init__(self, name: str, model: Any) -> None:
        self.name = name
        self.model = model

    def threshold(self, config: AnonymizerConfig) -> float:
        return float(getattr(config, f"{self.name}_score_threshold"))

    def detect(self, frame: np.ndarray, config: AnonymizerConfig, cheap: bool = False
               ) -> list[Detection]:
        """Faces in `frame`; `cheap`: at the smaller budget of the frames between thorough
        passes (`face_cheap_max_side`)."""
        h, w = frame.shape[:2]
        budget = config.face_cheap_max_side if cheap else config.face_max_side
        scale = working_scale(w, h, budget, config.face_max_upscale)
        views = plan_views(w, h, self.model.input_size, scale, config.face_tile_overlap,
                           config.face_global_pass and getattr(self.model, "global_pass", True))
        thr = self.threshold(config)
        dets = self._pass(frame, views, thr, config)
        if config.face_dark_pass_below > 0 and mean_grey(frame) < config.face_dark_pass_below:
            dets = added_where_new(dets, self._pass(brightened(frame), views, thr, config),
                                   DARK_PASS_NEW_IOU)
        return _to_detections(dets, "face", self.name, w, h, config.face_min_size)

    def _pass(self, frame: np.ndarray, views: list[View], thr: float,
              config: AnonymizerConfig) -> RawDetections:
        parts = [run_view(self.model, frame, v, thr) for v in views]
        for p in parts:
            check_finite(p, self.name)
        return merge(RawDetections.concat(parts, 0 if not parts else parts[0].points.shape[1]),
                     config.face_nms_threshold)


DARK_PASS_GAMMA = 1.8
"""The dark pass's brightening: out = 255 * (in / 255) ** (1 / 1.8), which lifts grey 30 to 78
and leaves white white. Measured against CLAHE on the L channel (clip 2, 8x8 tiles) on 858
WIDER crowd photos: the same faces found (20 vs 19 of 133 misses, every photo)."""
DARK_PASS_NEW_IOU = 0.3
"""A face of the dark pass is new when it overlaps every first-pass face by less than this."""
_GAMMA_LUT = np.array([round(255.0 * (i / 255.0) ** (1.0 / DARK_PASS_GAMMA)) for i in range(256)],
                      np.uint8)


def mean_grey(frame: np.ndarray) -> float:
    """Mean grey level (0-255) of a BGR frame, from a 64x36 area-averaged thumbnail (~0.3 ms
    at 1080p instead of a full-size conversion)."""
    thumb = cv2.resize(frame, (64, 36), interpolation=cv2.INTER_AREA)
    return float(cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY).mean())


def brightened(frame: np.ndarray) -> np.ndarray:
    """A gamma-brightened copy of `frame` (DARK_PASS_GAMMA): dark faces get their contrast
    back for the detector; the frame itself is not changed."""
    return cv2.LUT(frame, _GAMMA_LUT)


# Objects of every class at this score and above ride along with the frame for scene analysis
# (`AnonymizedFrame.objects`); the same single detector pass, filtered differently.
SHARED_OBJECT_THRESHOLD = 0.3


class PersonStage:
    """The person detector of the head backstop: people as `person` detections, turned into
    head regions once the face stages are done (`Anonymizer._detect`). The detector sees every
    COCO class in the same pass; those objects are kept for scene analysis."""

    kind = "person"
    name = "fastestdet"

    def __init__(self, detector: ObjectDetector) -> None:
        self.detector = detector

    def detect(self, frame: np.ndarray, config: AnonymizerConfig) -> StageFindings:
        found = self.detector.detect(frame, min(config.person_score_threshold,
                                                config.plate_vehicle_score_threshold,
                                                SHARED_OBJECT_THRESHOLD))
        # people only when the backstop is on (the detector may run for the plate scan alone)
        people = [Detection("person", o.box, o.score, self.name) for o in found
                  if config.faces and config.head_backstop and o.label == "person"
                  and o.score >= config.person_score_threshold]
        return StageFindings(people, objects=[o for o in found
                                              if o.score >= SHARED_OBJECT_THRESHOLD],
                             vehicles=[o for o in found
                                       if o.score >= config.plate_vehicle_score_threshold])


class PlateStage:
    """The configured plate detector."""

    kind = "plate"

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self.name = detector.name
        self.memory = PlateMemory()  # what the video plan's frames take over (plate_reuse.py)

    def forget(self) -> None:
        """The stream restarted: nothing seen before applies."""
        self.memory.forget()

    def detect(self, frame: np.ndarray, config: AnonymizerConfig,
               scan: PlateScan = FULL) -> StageFindings:
        """Plates in the part of `frame` that `scan` covers (the text detector only; other
        plate detectors always see the whole frame)."""
        d = self.detector
        d.max_side, d.max_upscale = config.plate_max_side, config.plate_max_upscale
        if isinstance(d, TextPlateDetector):
            d.score_threshold = config.plate_score_threshold
            d.geometry = _geometry(config)
        elif isinstance(d, SsdPlateDetector):
            d.score_threshold = config.plate_score_threshold
        hints: list[TextHint] = []
        h, w = frame.shape[:2]
        if isinstance(d, TextPlateDetector) and scan.bands > 1:
            # a frame of the video plan (plate_reuse.py)
            dets, hints = self.memory.scan(d, frame, scan, config.plate_reuse_frames)
        elif isinstance(d, TextPlateDetector):
            dets, hints = d.detect_with_hints(frame)
        else:
            dets = d.detect(frame)
        check_finite(dets, self.name)
        return StageFindings(_to_detections(dets, "plate", self.name, w, h, 0.0), hints,
                             scan=scan)


def _prepare(stages: Sequence[Any], config: AnonymizerConfig) -> int:
    """`Anonymizer.prepare` for `stages`: the text plate detector's models (the face and
    person models see the frame's own shape, compiled per shape on the first frame)."""
    if not (config.prepare_shapes and config.engine == "openvino" and config.shape_reuse > 1.0):
        return 0
    return sum(stage.detector.prepare(config.shape_reuse) for stage in stages
               if isinstance(stage, PlateStage) and isinstance(stage.detector, TextPlateDetector))


def _geometry(config: AnonymizerConfig) -> PlateGeometry:
    return PlateGeometry(min_height=config.plate_min_height, min_aspect=config.plate_min_aspect,
                         sure_aspect=config.plate_sure_aspect, min_chars=config.plate_min_chars,
                         max_reads=config.plate_max_reads)


def _to_detections(dets: RawDetections, kind: str, source: str, w: int, h: int,
                   min_size: float) -> list[Detection]:
    out = []
    # five face landmarks travel with the box (the `replace` mode warps onto them)
    five = kind == "face" and dets.points.ndim == 3 and dets.points.shape[1] == 5
    for i, ((x1, y1, x2, y2), score) in enumerate(zip(dets.boxes.tolist(),
                                                      dets.scores.tolist())):
        box = Box.from_xyxy(x1, y1, x2, y2).clipped(w, h)
        if box.w <= 0 or box.h <= 0 or min(box.w, box.h) < min_size:
            continue
        marks = tuple(map(tuple, dets.points[i].tolist())) if five else None
        out.append(Detection(kind, box, float(score), source, marks))
    return out


def _parse_model_paths(entries: tuple[str, ...]) -> dict[str, str]:
    paths: dict[str, str] = {}
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"anonymizer.face_model_paths entry {entry!r} must be "
                              f"`detector=path`, e.g. `yunet=/models/yunet.onnx`")
        paths[name.strip()] = path.strip()
    return paths


def build_stages(config: AnonymizerConfig) -> list[Any]:
    """The detector stages `config` asks for, models loaded."""
    stages: list[Any] = []
    if config.faces:
        paths = _parse_model_paths(config.face_model_paths)
        unknown = set(paths) - set(config.face_detectors)
        if unknown:
            raise ConfigError(f"anonymizer.face_model_paths names {', '.join(sorted(unknown))}, "
                              f"which is not in face_detectors")
        if not config.face_detectors:
            raise ConfigError("anonymizer.faces is on but face_detectors is empty")
        for name in dict.fromkeys(config.face_detectors):
            model = load_face_model(name, paths.get(name, ""), config.runtime(),
                                    config.face_nms_threshold)
            stages.append(FaceStage(name, model))
    if (config.faces and config.head_backstop) or (config.plates and config.plate_vehicle_pass):
        stages.append(PersonStage(ObjectDetector(config.person_model or None,
                                                 config.runtime(),
                                                 tiles=config.person_tiles)))
    if config.plates:
        if config.plate_detector == "ppocr":
            det: Any = TextPlateDetector(
                config.runtime(), score_threshold=config.plate_score_threshold,
                bin_threshold=config.plate_text_threshold, max_side=config.plate_max_side,
                max_upscale=config.plate_max_upscale, geometry=_geometry(config),
                verify=config.plate_verify)
        elif config.plate_detector == "haar":
            det = HaarPlateDetector(config.plate_max_side, config.plate_max_upscale,
                                    config.plate_model)
        else:
            det = SsdPlateDetector(config.plate_model, config.plate_score_threshold,
                                   config.plate_max_side, config.plate_max_upscale)
        stages.append(PlateStage(det))
    return stages


@dataclass(slots=True)
class PendingFrame:
    """A frame between detection and release: the pixels (not yet redacted: never handed
    out), the settings it was detected with, the regions found, per-stage times, how long
    the detection took, and the failure (reason, message, cause) that stopped detection."""

    image: np.ndarray
    config: AnonymizerConfig
    detections: list[Detection]
    timings: dict[str, float]
    detect_ms: float
    failure: tuple[str, str, BaseException] | None = None
    hints: tuple[TextHint, ...] = ()
    objects: tuple[ObjectDetection, ...] | None = None
    scan: PlateScan = FULL  # what the plate pass covered
    cheap_faces: bool = False  # the face pass ran at face_cheap_max_side
    generation: int = 0  # Anonymizer._generation when planned
    restarted: bool = False  # the plan started a new sequence at this frame


class Anonymizer:
    """Thread-safe (onnxruntime sessions are, the carry-over tracker is kept under a lock);
    create one per camera, since the carried-over regions belong to one camera's image
    geometry. `anonymize` does a frame in one call; `detect_frame` and `release` split it so
    that a runner can overlap the detection of consecutive frames."""

    def __init__(self, config: AnonymizerConfig | None = None) -> None:
        self.config = config or AnonymizerConfig()
        validate(self.config)
        self._lock = threading.Lock()  # stats, carry-over state, config
        self._last_stamp_ns: int | None = None  # header stamp of the last released frame
        self._call_lock = threading.Lock()  # one `anonymize` call at a time
        self.stats = AnonymizerStats()
        self.detectors = build_stages(self.config)
        # the face bank of `replace` mode, loaded when the mode is first asked for
        self._replacer = _replacer_for(self.config, None)
        self._carry = CarryOver(self.config.carry_frames, self.config.carry_iou,
                                self.config.carry_growth)
        self._pool: cf.ThreadPoolExecutor | None = None
        # frame plan (plate_scan.py, face_thorough_every), decided at detection in frame
        # order: `_seq` counts the frames detected since the stream (re)started; frame 0 gets
        # the whole plate scan and the thorough face pass, later ones a band and, between
        # thorough ones, the cheap face pass. A restart the plan could not foresee (reset(), a
        # failure, a gap in stamps it was not told) bumps `_generation`: frames planned before
        # it are completed at release, since nothing carried covers what they skipped.
        self._seq = 0
        self._generation = 0
        self._last_plan: tuple[int, tuple[int, int]] | None = None  # stamp, size planned last
        self._last_thumb: np.ndarray | None = None  # the last planned frame, tiny and grey
        self._released = 0  # frames released since the last restart
        self._band_hints: dict[int, list[TextHint]] = {}
        self.scan_completions = 0  # partial scans completed at release (stream restarted)
        self._prepared = False  # `prepare` was asked for: stages rebuilt later are prepared too

    def reconfigure(self, config: AnonymizerConfig) -> None:
        """Apply new settings. Model choices rebuild the detectors (loaded before the swap, so
        a failing load leaves the old ones working); everything else applies to the next
        frame."""
        validate(config)
        rebuild = any(getattr(config, n) != getattr(self.config, n) for n in _STRUCTURAL)
        stages = build_stages(config) if rebuild else None
        if stages is not None and self._prepared:
            _prepare(stages, config)
        replacer = _replacer_for(config, self._replacer)
        with self._lock:
            self._replacer = replacer
            if stages is not None:
                self.detectors = stages
            self.config = dataclasses.replace(config)
            self._carry.frames = config.carry_frames
            self._carry.iou_threshold = config.carry_iou
            self._carry.growth = config.carry_growth

    def prepare(self) -> int:
        """Before a stream's first frame (the node's configure step): prepare the models whose
        input shape varies from frame to frame for the shapes that stream will bring
        (`prepare_shapes`; OpenVINO with `shape_reuse` only), so that no camera frame waits
        while OpenVINO prepares one. How many shapes were run (0 when off, or when another
        camera of this process prepared them already)."""
        with self._lock:
            stages, config = self.detectors, self.config
            self._prepared = True
        return _prepare(stages, config)

    def _stage_pool(self) -> cf.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = cf.ThreadPoolExecutor(max_workers=4, thread_name_prefix="anon_stage")
        return self._pool

    def close(self) -> None:
        """Stop the stage threads (the detectors stay loaded until the object is dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def reset(self) -> None:
        """Forget carried regions (the next frame starts a new scene, e.g. unrelated photos)."""
        with self._lock:
            # before any frame of the sequence was released nothing is carried yet: the frames
            # planned so far (whole scan first) stay valid, as if the reset came before them
            self._restart(foreseen=self._released == 0)
            self._last_stamp_ns = None

    def _restart(self, foreseen: bool = False) -> None:
        """Carried regions are gone: forget them. Unless the frame plan already started the
        new sequence at this frame (`foreseen`), the next frame planned gets the whole scan
        and frames planned before are completed at release."""
        self._carry.reset()
        self._band_hints.clear()
        for stage in self.detectors:
            if isinstance(stage, PlateStage):
                stage.forget()
        self._released = 0
        if not foreseen:
            self._seq = 0
            self._generation += 1

    def _next_plan(self, config: AnonymizerConfig, stamp_ns: int | None, image: np.ndarray
                   ) -> tuple[PlateScan, bool, int, bool, bool]:
        """(plate scan, cheap face pass?, generation, starts a sequence?, same size as the
        frame planned before?) of the next frame to be detected (called in frame order). With
        the frame's stamp, a gap over carry_max_gap (or a stamp going back) starts a new
        sequence here already, as release will find; so do a new frame size and a scene cut
        (scene_cut_threshold): what was found in the frames before says nothing about where
        plates and faces are now. The frame size alone decides whether the models run on
        copies compiled for its shapes (`runtime.stream_frame`): decided in frame order, so
        frames in flight get the same models as one at a time."""
        bands, every = _cadence(config)
        size = (image.shape[1], image.shape[0])
        thumb = None
        if bands > 1 or every > 1:
            grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            thumb = cv2.resize(grey, THUMB, interpolation=cv2.INTER_AREA).astype(np.int16)
        with in_order.turn(), self._lock:
            restarted = steady = False
            if self._last_plan is not None:
                last_stamp, last_size = self._last_plan
                steady = size == last_size
                gap = (None if not (stamp_ns and last_stamp) or config.carry_max_gap <= 0
                       else (stamp_ns - last_stamp) / 1e9)
                cut = (config.scene_cut_threshold > 0 and thumb is not None
                       and self._last_thumb is not None and steady
                       and float(np.abs(thumb - self._last_thumb).mean())
                       > config.scene_cut_threshold)
                if not steady or cut or (gap is not None and (
                        gap < 0 or gap > config.carry_max_gap)):
                    self._seq, restarted = 0, True
            self._last_plan = (stamp_ns or 0, size)
            self._last_thumb = thumb
            k = self._seq
            self._seq += 1
            generation = self._generation
        scan = FULL if bands <= 1 else (PlateScan(None, bands) if k == 0
                                        else PlateScan((k - 1) % bands, bands))
        return scan, every > 1 and k % every != 0, generation, restarted, steady

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Regions to redact in `image` (HxWx3 uint8 BGR), margins not yet applied, without
        carry-over. Raises DetectorFailure when a detector fails, is over budget or returns
        corrupt boxes."""
        return self._detect(image, self.config, {}).detections

    def _detect(self, image: np.ndarray, config: AnonymizerConfig,
                timings: dict[str, float], scan: PlateScan = FULL,
                cheap_faces: bool = False, steady: bool = False) -> StageFindings:
        """Every stage on `image`; `steady`: a frame of a stream of frames of its size
        (`_next_plan`), whose models may run on copies compiled for their shapes."""
        h, w = image.shape[:2]
        faces: list[Detection] = []
        plates: list[Detection] = []
        persons: list[Detection] = []
        hints: list[TextHint] = []
        objects: list[ObjectDetection] | None = None
        stages = self.detectors
        person = next((s for s in stages if isinstance(s, PersonStage)), None)
        plate = next((s for s in stages if isinstance(s, PlateStage)), None)
        # a partial plate scan needs the vehicles of this frame: the person stage, then the
        # plate stage, in one task (the face stages run beside it)
        chained = (not scan.full and config.plate_vehicle_pass and person is not None
                   and plate is not None)
        tasks: list[list[Any]] = ([[s] for s in stages if s is not person and s is not plate]
                                  + [[person, plate]]) if chained else [[s] for s in stages]
        if config.parallel_stages and len(tasks) > 1:
            # onnxruntime releases the GIL: the face and plate detectors run on separate cores
            # at the same time (each with `threads` intra-op threads). Every stage is waited
            # for, so a failing one still fails the frame after the others finished.
            pool = self._stage_pool()
            futures = [pool.submit(_run_task, task, image, config, scan, cheap_faces, steady)
                       for task in tasks]
            outcomes = [o for f in futures for o in f.result()]
        else:
            outcomes = [o for task in tasks
                        for o in _run_task(task, image, config, scan, cheap_faces, steady)]
        stages = [s for task in tasks for s in task]
        for stage, (found, ms, error) in zip(stages, outcomes):
            if isinstance(error, CorruptOutput):
                raise DetectorFailure("corrupt_output", str(error)) from error
            if error is not None:
                raise DetectorFailure("exception", f"{stage.name}: {error}") from error
            key = f"{stage.kind}s_ms"
            timings[key] = timings.get(key, 0.0) + ms
            if config.detector_budget_ms > 0 and ms > config.detector_budget_ms:
                raise DetectorFailure("over_budget", f"{stage.name} took {ms:.0f} ms, over the "
                                      f"{config.detector_budget_ms:.0f} ms budget")
            if isinstance(found, StageFindings):
                if found.objects is not None:
                    objects = (objects or []) + found.objects
                if found.scan is not None:
                    scan = found.scan
                found, hints = found.detections, hints + found.hints
            _check_detections(found, stage.name, w, h)
            {"face": faces, "person": persons}.get(stage.kind, plates).extend(found)
        if sum(isinstance(s, FaceStage) for s in self.detectors) > 1 and len(faces) > 1:
            faces = _merge_detections(faces, config.face_nms_threshold)
        heads = [Detection("face", head_box(persons[i].box).clipped(w, h), persons[i].score,
                           HEAD_DETECTOR)
                 for i in faceless([p.box for p in persons], [f.box for f in faces])]
        return StageFindings(faces + heads + plates, hints, objects, scan=scan)

    def anonymize(self, meta: FrameMeta, image: np.ndarray) -> AnonymizedFrame:
        """Redact `image` in place and release it as an AnonymizedFrame.

        Raises AnonymizationError (policy `drop`) when anything fails; the caller must then drop
        the frame. `image` must not be used by the caller afterwards in either case. Concurrent
        calls are taken one at a time, in the order they arrive.
        """
        with self._call_lock:
            return self.release(meta, self.detect_frame(image, meta.stamp_ns))

    def detect_frame(self, image: np.ndarray, stamp_ns: int | None = None) -> PendingFrame:
        """First half of `anonymize`: run the detectors on `image` and keep their regions, or
        the failure that stopped them, for `release`. Several frames of a camera can be in
        detection at once (a bag runner keeps both cores busy that way); they must be
        detected and released in frame order, because carry-over and the frame plan follow
        the sequence. `stamp_ns` (the header stamp `release` will get) lets the plan see a
        gap in time at detection, so that frames in flight are planned as one at a time."""
        t0 = time.perf_counter()
        config = self.config
        timings: dict[str, float] = {}
        findings = StageFindings([])
        scan, cheap_faces, generation, restarted = FULL, False, self._generation, False
        steady = False
        failure: tuple[str, str, BaseException] | None = None
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
                and image.dtype == np.uint8 and image.size > 0):
            shape = getattr(image, "shape", None)
            message = (f"expected a non-empty HxWx3 uint8 image, got {shape} "
                       f"{getattr(image, 'dtype', type(image).__name__)}")
            failure = ("bad_input", message, AnonymizationError(message))
        else:
            if not image.flags.writeable:
                image = image.copy()
            scan, cheap_faces, generation, restarted, steady = self._next_plan(config, stamp_ns,
                                                                               image)
            try:
                findings = self._detect(image, config, timings, scan, cheap_faces, steady)
            except DetectorFailure as exc:
                failure = (exc.reason, str(exc), exc)
            except Exception as exc:  # noqa: BLE001 - anything unexpected also fails closed
                failure = ("exception", str(exc), exc)
        return PendingFrame(image, config, findings.detections, timings,
                            (time.perf_counter() - t0) * 1e3, failure, tuple(findings.hints),
                            None if findings.objects is None else tuple(findings.objects),
                            findings.scan or scan, cheap_faces, generation, restarted)

    def release(self, meta: FrameMeta, pending: PendingFrame) -> AnonymizedFrame:
        """Second half of `anonymize`: carry regions over, redact, and release the frame, or
        fail it (raising AnonymizationError under policy `drop`). Call it in frame order."""
        image, config, timings = pending.image, pending.config, pending.timings
        # anonymize_ms counts the frame's own work (detection + release), not the time it
        # waited between the two behind other frames
        t0 = time.perf_counter() - pending.detect_ms / 1e3
        with self._lock:
            self.stats.frames += 1
            self._check_gap(meta, config, pending.restarted)
            if pending.failure is not None:
                reason, message, cause = pending.failure
                if reason == "bad_input":
                    self.stats.failures[reason] += 1
                    raise AnonymizationError(message)
                return self._fail(meta, image, config, reason, message, cause, t0)
            try:
                h, w = image.shape[:2]
                detections, hints, scan = pending.detections, list(pending.hints), pending.scan
                cheap = pending.cheap_faces
                bands, every = _cadence(config)
                objects = pending.objects
                if self._carry.size not in (None, (w, h)) and not pending.restarted:
                    self._restart()  # a new size the plan did not see coming
                if ((not scan.full or cheap)
                        and (pending.generation != self._generation
                             or (not scan.full and bands == 1) or (cheap and every == 1))):
                    # the stream restarted after this frame was planned (reset, failure, an
                    # unforeseen gap): nothing carried covers what its partial passes skipped,
                    # or the cadence was switched off since. Detected again, whole.
                    found = self._detect(image, config, timings)
                    detections, hints, objects = found.detections, found.hints, found.objects
                    self.scan_completions += 1
                    scan = FULL if scan.full else PlateScan(None, scan.bands)
                    cheap = False
                bands = scan.bands if bands > 1 else 1
                self._carry.hold = {k: n - 1 for k, n in (("plate", bands), ("face", every))
                                    if n > 1}
                keep = frozenset({"face"}) if cheap else frozenset()
                seen, carried = (self._carry.update(detections, w, h, keep)
                                 if config.carry_frames or self._carry.hold
                                 else ([(d, 0) for d in detections], []))
                t1 = time.perf_counter()
                if config.redaction == "blur":
                    # the same pixels as `redact` region by region, smoothed in one call
                    regions = [redaction_region(det, config.margin if det.kind == "face"
                                                else config.plate_margin, w, h)
                               for det, _ in seen + carried]
                    try:
                        blur_all(image, regions)
                    except Exception as exc:  # noqa: BLE001
                        raise DetectorFailure("redaction_error", f"redaction failed: {exc}") \
                            from exc
                else:
                    for det, track_id in seen + carried:
                        margin = config.margin if det.kind == "face" else config.plate_margin
                        box, ellipse = redaction_region(det, margin, w, h)
                        try:
                            done = redact(image, box, ellipse, config.redaction,
                                          blocks=config.pixelate_blocks,
                                          fill_value=config.fill_value,
                                          seed=_redaction_seed(det, track_id),
                                          landmarks=det.landmarks, replacer=self._replacer)
                            if done.startswith("blur:"):
                                self.stats.replace_fallbacks[done[5:]] += 1
                        except Exception as exc:  # noqa: BLE001
                            raise DetectorFailure("redaction_error", f"redaction failed: {exc}") \
                                from exc
                timings["redact_ms"] = (time.perf_counter() - t1) * 1e3
                if self._replacer is not None and config.carry_frames:
                    self._replacer.forget_except({t.id for t in self._carry.tracks})
            except DetectorFailure as exc:
                return self._fail(meta, image, config, exc.reason, str(exc), exc, t0)
            except Exception as exc:  # noqa: BLE001 - anything unexpected also fails closed
                return self._fail(meta, image, config, "exception", str(exc), exc, t0)
            all_dets = tuple(d for d, _ in seen + carried)
            if bands > 1:
                hints = carried_hints(hints, self._band_hints, scan, h)
            self._released += 1
            self.stats.released += 1
            self.stats.carried += len(carried)
            for d in all_dets:
                self.stats.redacted[d.kind] += 1
            self.stats.last_ms = timings
            return _release(meta, image, all_dets, (time.perf_counter() - t0) * 1e3,
                            text_hints=tuple(hints),
                            objects=None if objects is None else tuple(objects),
                            objects_threshold=SHARED_OBJECT_THRESHOLD)

    def _check_gap(self, meta: FrameMeta, config: AnonymizerConfig, foreseen: bool) -> None:
        """Forget carried regions when this frame is more than `carry_max_gap` after the
        previous one, or stamped before it (a new sequence). Frames without stamps (0) keep
        the frame-count rule alone. `foreseen`: the frame plan saw this restart coming."""
        last, self._last_stamp_ns = self._last_stamp_ns, meta.stamp_ns
        if last is None or config.carry_max_gap <= 0 or not (meta.stamp_ns and last):
            return
        gap = (meta.stamp_ns - last) / 1e9
        if gap < 0 or gap > config.carry_max_gap:
            self._restart(foreseen)

    def _fail(self, meta: FrameMeta, image: np.ndarray, config: AnonymizerConfig, reason: str,
              message: str, cause: BaseException, t0: float) -> AnonymizedFrame:
        self.stats.failures[reason] += 1
        # the tracker may hold half-updated state; carried regions restart from detections
        self._restart()
        if config.failure_policy == "full_blur":
            try:
                blur_full_frame(image)
            except Exception as exc:  # noqa: BLE001
                raise AnonymizationError(f"full-frame blur failed: {exc}") from cause
            self.stats.full_frame_blurred += 1
            return _release(meta, image, (), (time.perf_counter() - t0) * 1e3, True)
        raise AnonymizationError(f"anonymization failed ({reason}), frame dropped: {message}") \
            from cause


def _replacer_for(config: AnonymizerConfig, current: FaceReplacer | None
                  ) -> FaceReplacer | None:
    """The face replacer `config` asks for: loaded when `replace` is first asked for (the bank,
    and the age-gender network when `replace_appearance` is on), kept afterwards with its
    per-track picks, its estimator switched with `replace_appearance`."""
    if current is None and config.redaction != "replace":
        return None
    replacer = current or FaceReplacer()
    want = config.replace_appearance and config.redaction == "replace"
    if want and replacer.estimator is None:
        replacer.estimator = shared_estimator()
    elif not config.replace_appearance:
        replacer.estimator = None
    return replacer


def _redaction_seed(det: Detection, track_id: int) -> int:
    """The seed of a region's rendered content: its track, so a tracked plate keeps its
    synthetic text. Untracked plates (carry-over off, track 0) get one from their position,
    or every synthetic plate of a frame would read the same. Untracked faces keep 0: for
    `replace` the seed is the track key, and 0 means "no track, do not remember the pick"."""
    if track_id or det.kind == "face":
        return track_id
    x, y = int(det.box.x), int(det.box.y)
    return 1 + ((x * 73856093) ^ (y * 19349663)) % 2_147_483_647


def _cadence(config: AnonymizerConfig) -> tuple[int, int]:
    """(plate scan bands, thorough face pass every N frames) in effect: both need carried
    regions between the frames they skip, so with carry-over off (carry_frames 0) every frame
    gets the whole plate scan and the thorough face pass."""
    if not config.carry_frames:
        return 1, 1
    return (config.plate_scan_bands if config.plates else 1,
            config.face_thorough_every if config.faces else 1)


def _run_stage(stage: Any, image: np.ndarray, config: AnonymizerConfig, scan: PlateScan = FULL,
               cheap_faces: bool = False) -> tuple[Any, float, BaseException | None]:
    """(detections, ms, None) or (None, ms, the exception): errors are returned, not raised, so
    that parallel stages are all collected before the frame is failed."""
    t0 = time.perf_counter()
    try:
        # the plan's arguments only when they differ from a plain frame's, so a stage keeps
        # the plain detect(frame, config) protocol
        if isinstance(stage, PlateStage) and scan != FULL:
            found = stage.detect(image, config, scan)
        elif isinstance(stage, FaceStage) and cheap_faces:
            found = stage.detect(image, config, True)
        else:
            found = stage.detect(image, config)
    except Exception as exc:  # noqa: BLE001 - any detector failure fails the frame
        return None, (time.perf_counter() - t0) * 1e3, exc
    return found, (time.perf_counter() - t0) * 1e3, None


def _run_task(task: list[Any], image: np.ndarray, config: AnonymizerConfig, scan: PlateScan,
              cheap_faces: bool = False, steady: bool = False
              ) -> list[tuple[Any, float, BaseException | None]]:
    """Stages run one after the other; a plate stage after the person stage scans the
    vehicles it found (`scan.regions`). A stage after a failed one is not run (its outcome
    is the same failure, so the frame fails either way). `steady`: see `Anonymizer._detect`
    (said to the sessions on this thread, `runtime.stream_frame`)."""
    with stream_frame(steady):
        out: list[tuple[Any, float, BaseException | None]] = []
        for stage in task:
            if out and out[-1][2] is not None:
                out.append((None, 0.0, out[-1][2]))
                continue
            if isinstance(stage, PlateStage) and out and isinstance(out[-1][0], StageFindings):
                h, w = image.shape[:2]
                scan = dataclasses.replace(scan, regions=tuple(vehicle_regions(
                    out[-1][0].vehicles, w, h, config.plate_vehicle_score_threshold)))
            out.append(_run_stage(stage, image, config, scan, cheap_faces))
        return out


def _check_detections(found: Any, source: str, w: int, h: int) -> None:
    if not isinstance(found, list):
        raise DetectorFailure("corrupt_output", f"{source} returned {type(found).__name__}, "
                              f"not a list of detections")
    for d in found:
        if not isinstance(d, Detection):
            raise DetectorFailure("corrupt_output", f"{source} returned {d!r}")
        b = d.box
        values = (b.x, b.y, b.w, b.h, d.score)
        if not all(np.isfinite(values)):
            raise DetectorFailure("corrupt_output", f"{source} returned a non-finite box "
                                  f"{b.to_list(None)} score {d.score}")
        if b.w <= 0 or b.h <= 0 or b.x < -1 or b.y < -1 or b.x2 > w + 1 or b.y2 > h + 1:
            raise DetectorFailure("corrupt_output", f"{source} returned a box outside the "
                                  f"{w}x{h} frame or with negative size: {b.to_list(None)}")


def _merge_detections(dets: list[Detection], iou: float) -> list[Detection]:
    """One box per face when several face detectors found it (the highest score wins)."""
    boxes = np.array([[d.box.x, d.box.y, d.box.x2, d.box.y2] for d in dets], np.float32)
    scores = np.array([d.score for d in dets], np.float32)
    return [dets[i] for i in merge_indices(boxes, scores, iou)]
