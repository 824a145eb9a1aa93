"""The `ocr` analysis backend: colour/shape sign candidates read with PP-OCR, no VLM.

It runs on a CPU with the PP-OCRv4 recogniser that ships inside the pinned
`rapidocr-onnxruntime` wheel, so the node still publishes speed limits when no VLM can be
loaded (the `auto` backend falls back to it, marked degraded). OCR runs only on candidate crops
(the sign's legend), never on the whole frame: the recogniser alone costs a few milliseconds
per crop, where text detection on a 720p frame costs hundreds.

A candidate becomes a reading only when shape, colour and text agree on one class:
- red ring + large number: speed limit (km/h); "7.5 t": weight limit; "3.5 m" between
  arrowheads above and below: height limit (width limits are skipped: their side arrowheads
  get read into the number);
- white portrait rectangle + "SPEED LIMIT" + number: speed limit (mph);
- white disc crossed by stripes + number: end of speed limit;
- red octagon or disc + "STOP": stop; red disc + one white bar: no entry;
- red inverted triangle: yield; red triangle + "!": general caution;
- yellow diamond: priority road (crossed out: end of priority road);
- blue disc + number: minimum speed; blue square + "P": parking.
Everything else is skipped rather than guessed, and every number is checked against
`vocab.VALUE_RULES` (a speed of 7 or 1000 is a misreading and is dropped).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Sequence

import cv2
import numpy as np

from vlm_node.analysis.base import AnalysisBackend
from vlm_node.analysis.circle_proposals import find_circles, fit_ring, ring_in
from vlm_node.analysis.crossing_signs import MIN_BLUE_SHARE as CROSSING_MIN_BLUE
from vlm_node.analysis.crossing_signs import MIN_SIDE_PX as CROSSING_MIN_SIDE
from vlm_node.analysis.crossing_signs import crossing_score
from vlm_node.analysis.diamond_proposals import find_diamonds
from vlm_node.analysis.gtsrb import (CLASSIFIER_LABELS, GTSRB_CLASSES, SPEED_LIMIT_IDS,
                                     gtsrb_class, speed_limit_id)
from vlm_node.analysis.legend_image import (binarized, count_glyphs, dark_mask, enlarge,
                                            ink_columns, is_bar, is_exclamation, legend_crop,
                                            limit_class, row_bands, shrink,
                                            whiten_outside_ellipse, without_bridges,
                                            without_stripes)
from vlm_node.analysis.ocr_config import OcrConfig
from vlm_node.analysis.sign_candidates import (Shape, SignCandidate, end_squares,
                                               find_candidates, find_proposals,
                                               find_proposals_near, max_paint_shares,
                                               paint_integrals, paint_share, proposal_masks)
from vlm_node.analysis.sign_classifier import (SHIPPED_MODELS, SignClass, SignClassifier,
                                               prepare_crops)
from vlm_node.analysis.proposal_ranker import DEFAULT_RANKER, ProposalRanker
from vlm_node.analysis.proposal_ranker import features as ranker_features
from vlm_node.analysis.sign_proposer import DEFAULT_MODEL as DEFAULT_PROPOSER
from vlm_node.analysis.sign_proposer import SignProposer
from vlm_node.analysis.sign_verifier import DEFAULT_VERIFIER, SignVerifier
from vlm_node.analysis.sign_text import (TextRead, digit_count, letters, parse_number, plausible,
                                         reads_letters, says)
from vlm_node.analysis.speed_values import DEFAULT_VALUE_MODEL, SpeedValueReader, ValueRead
from vlm_node.analysis.stacked_proposals import KNOWN_IOU, stacked_boxes
from vlm_node.analysis.triangle_proposals import find_triangles
from vlm_node.anonymize.plates import REC_PAD
from vlm_node.anonymize.runtime import PP_OCR_REC, rapidocr_model
from vlm_node.errors import AnalysisError, BackendUnavailableError
from vlm_node.frames import AnonymizedFrame
from vlm_node.geometry import Box, box_array, iou_matrix, nms
from vlm_node.results import AnalysisResult, SignReading, TextHint
from vlm_node.stats import PartTimes

log = logging.getLogger(__name__)

OCR_PACKAGE = "rapidocr-onnxruntime"
OCR_PIN = "rapidocr-onnxruntime==1.4.4"
# The recogniser's input width at its 48 px height: every crop of a batch is padded to at least
# this (PP-OCR's own default, 320 px, is a text line); a sign legend is 1-3 text heights wide and
# the network's time grows with the width, while a wider crop (a US SPEED LIMIT line) still widens
# its batch. 256 gave the readings of 320 (2026-12-02); 128 (2026-12-03 evening) gave the same
# classes, values and boxes as 256 on all 437 development and no-sign frames (only recogniser
# scores moved, by a few hundredths) for 0.57x the recognition time of a 1080p frame (50.8 ->
# 28.8 ms; GTSDB frames at 1080p, three rounds in turn in one process); 96 lost a value.
OCR_REC_WIDTH = 128

SETTLE_AGREEMENT = 0.85
"""`OcrBackend._settled`: share of the seven grown crops that must read OCR's number (six)."""


_MIN_SPEED_TEXT_HEIGHT = 0.36
_SPEED_PROPOSAL = "speed_proposal"  # found_by of a proposal OCR reads for a speed value only
_RANKED_RING = "ranked_ring"  # found_by of a ring fitted in a proposal (`ranked_ring_reads`)
_CIRCLE_READ = "circle_read"  # found_by of a big round outline OCR alone reads (circle_read_px)
SHAPE_KNOWN_IOU = 0.85  # a triangle or grown diamond overlapping a colour region's box this
# much is that box
_CLASSIFIER_BOX = "classifier"  # found_by of a ring made of the classifier's box (_ring_candidate)
_HINT = "hint"  # found_by of a candidate placed on the anonymizer's sign text (`hint_candidates`)
STOP_HINT_PAINT = 0.15
"""Share of a STOP hint's octagon box that must be red paint (the loose red mask): a stop sign's
face is red around its word (0.37-0.57 on GTSDB's stop signs, 0.19 and 0.34 on the two hazy
Kaggle ones the classifier calls background), "STOP" written on a wall or a white panel is
not."""
# A round outline only OCR vouches for: the recogniser's score its number needs. On the
# development photos the six right values read this way scored 0.92-1.00; numbers on drums and
# shirts in crowd photos 0.58-0.94, with fewer glyphs counted than digits read.
_CIRCLE_READ_SCORE = 0.9
# Round outlines a frame that get such a read (largest first): each is a recogniser call, and
# on the development photos a third one added no value (a first-only cap lost one).
_CIRCLE_READS_PER_FRAME = 2
LEARNED_SCALES = (1.0, 1.15, 0.87)
"""Each learned box is also classified 15 % larger and smaller about its centre: its size is a
heatmap cell's estimate, and the classifier's speed mass on small foreign signs moves with the
box (Kaggle road398's 100: 0.27 at the proposer's box, 0.48 at the colour region's, 0.77 at the
label's). With `learned_replaces: search`, held-out Kaggle values 81.1 -> 86.8 %."""
ADDED_KNOWN_IOU = 0.2
"""A learned box added to the full search (`learned_adds`) overlapping a candidate or proposal by
more than this is left out: the search looked there."""
ADDED_MIN_PROBABILITY = 0.97
"""What the classifier's answer on a learned box added to the full search must reach, instead of
the paint check (such a box is where no paint region is: dark and washed-out signs). Dark
lamps, shirts and shadows there read as signs at 0.93-0.97: on GTSDB 00000-00599 the readings
`learned_adds` added scored 0.93-0.96 where wrong or on no sign, 0.95-1.00 where right (most
>= 0.97); on the WIDER crowds 7 of its 9 added false readings scored under 0.97."""
ADDED_MIN_SATURATION = 50.0
"""The colour an added learned box must show (`_coloured`)."""
LEARNED_FIT_SIDE = 64.0
"""The patch side (px) a learned outline's ring is fitted on (`fit_ring`), whatever its size."""
LEARNED_MIN_SCORE = 0.05
"""A learned proposal scored lower is no box at all (`learned_proposals`): of the 286 held-out
development signs its ten best boxes cover (IoU >= 0.3), the lowest scores 0.068 and 2 score
under 0.1."""
# A colour proposal whose round outline gets a ring read (`proposal_ring_reads`): red paint on
# at least this share of its box (a saturated rim covers a fifth or more; a pale one, only
# partly in the loose red mask, 0.13-0.27 on the Kaggle development photos), 1-3 glyphs (a 5
# km/h sign has one; the red paint and the ring found vouch for it), and a side of at most
# this share of the frame's short side (the frame Hough pass's largest circle) ...
_RING_READ_RED = 0.1
_RING_READ_GLYPHS = (1, 2, 3)
_RING_READ_MAX_SHARE = 0.7
# ... and the middle half of its (top) square holds at most this share of the box's red: a
# ring's red is at its edge, a red car's or a brick wall's all over (at 1080p half the Hough
# passes saved).
_RING_MIDDLE_RED = 0.5
# `ranked_ring_reads`: Hough passes a frame, the colour proposals' lowest speed mass for one,
# the IoU at which a proposal is a near-copy of one tried (colour proposals come in
# near-copies), and the fitted ring's speed mass from which OCR's sure number stands without
# the strict read's glyph count.
_RANKED_RING_TRIES = 6
_RANKED_MIN_MASS = 0.1
_RANKED_RING_SAME = 0.6
_RANKED_SURE_MASS = 0.5
# The finder's ring boxes a circle can be fitted in (`fit_rings`): a sign seen at an angle is an
# ellipse the finder fits and a circle does not.
_ROUNDISH_ASPECT = 1.25
# A ring fitted inside a speed proposal is read beside the proposal's own box when the two
# overlap less than this (IoU); nearly the same box would read the same.
_REFIT_IOU = 0.8
# Crossing-sign tests (`crossing_signs`): boxes of blue paint >= this share, side ratio within
# this, at most this many a frame; the confidence of a reading is its measured precision.
_CROSSING_PAINT = 0.2
_CROSSING_ASPECT = 1.4
_CROSSING_TESTS = 12
CROSSING_CONFIDENCE = 0.9


def _decimal_point(sign_class: str, value: float, unit: str, score: float
                   ) -> tuple[float | None, float]:
    """The value of a weight/height/width limit, restoring a decimal point OCR dropped
    ("35 m" on a height-limit sign is 3.5 m; no such sign says 35 m). Returns (None, 0) when
    neither reading is plausible; a restored point costs confidence."""
    if plausible(sign_class, value, unit):
        return value, score
    if float(value).is_integer() and 10 <= value <= 99 and \
            plausible(sign_class, value / 10.0, unit):
        return value / 10.0, score * 0.8
    return None, 0.0


# --- the backend -------------------------------------------------------------------------------


@dataclass
class _Job:
    """What to recognise for one candidate, and how to interpret it."""

    cand: SignCandidate
    kind: str  # "ring", "us", "end", "stop", "blue", "none"
    crops: list[np.ndarray]  # one per text row (or one)
    light_legend: bool = False
    reads: list[TextRead] = field(default_factory=list)
    alt_reads: list[TextRead] | None = None  # of the binarized crops, when read
    # Height of the main text row over the legend's height: large digits fill about half of a
    # speed-limit disc, the "7.5 t" of a weight limit about a quarter.
    text_height: float = 0.0
    # US rectangle: index of each crop's row, and how many rows the legend has.
    rows: int = 1
    # Separate glyphs (full-height ink blobs) in the main text row: more glyphs than the
    # recogniser returned characters means it dropped one ("1000" read as "100").
    glyphs: int = 0
    # The same place read through another box (`fit_rings`: a speed proposal's own box beside
    # the ring fitted in it, the ring fitted in a finder ring's or a classifier sign's box):
    # the surer of the two readings is used; when any pass of either reads another number, a
    # pending read gives none and a classifier's check keeps its own box's (`_check_read`).
    fallback: "_Job | None" = None
    # A speed proposal's (`_speed_proposals`): the value the classifier read on its box, which
    # was not kept as a sign (its paint check failed); OCR may confirm it, not contradict it
    # (gtsdb_00397 at 1080p: a box half on a dusk 70, the classifier's 70 at 0.97, OCR's 20)
    classifier_value: float | None = None


PEOPLE_MIN_SCORES = {"face": 0.5, "person": 0.7}
"""Scores from which the anonymizer's faces and persons count as people for `people_of`. Its
redaction thresholds are lower on purpose (a face box at 0.12 on a sign is redacted all the
same, and sign posts pass as persons at 0.3-0.5); at these scores none of the 414 labelled
signs of the development photos (GTSDB 00300-00599, Kaggle road0-437) lies on a person."""


def people_of(frame: AnonymizedFrame) -> tuple[Box, ...]:
    """Where the anonymizer found people in a frame, boxes only: its COCO persons (when its
    person pass ran), and each face grown up by its own height, where hats and hair are."""
    heads = tuple(Box(d.box.x, d.box.y - d.box.h, d.box.w, 2 * d.box.h)
                  for d in frame.detections
                  if d.kind == "face" and d.score >= PEOPLE_MIN_SCORES["face"])
    return heads + tuple(o.box for o in frame.objects or ()
                         if o.label == "person" and o.score >= PEOPLE_MIN_SCORES["person"])


def on_people(box: Box, people: Sequence[Box]) -> bool:
    """Whether half of `box` or more lies inside one of `people` (`people_of`)."""
    return any(box.coverage_by(p) >= 0.5 for p in people)


VEHICLE_LABELS = frozenset({"car", "truck", "bus"})
VEHICLE_PART = 0.15
"""The widest a reading may be, as a share of the vehicle's width, to count as a part of it
(tail lights 0.08-0.1 of their car): a sign as wide as a fifth of a vehicle box stands in front
of it, or the box is wrong (the object pass took a rendered road scene for a car 0.7 of the
frame wide, a 50 sign in it)."""
VEHICLE_MIN_SCORE = 0.6
"""COCO vehicles from which a speed-limit reading on one is dropped (`on_vehicle`). Round red
tail lights with a white lamp read as "speed limit 100" at 0.95-0.98 (gtsdb_00285, a car the
anonymizer's detector scores 0.79); real signs stand in front of parked cars and buses too, but
of the 868 labelled development signs the 9 inside a vehicle's lower two thirds are keep-right
and other low signs, or lie in vehicles scored 0.35-0.51, and no speed limit lies in one scored
0.6 or more."""


def vehicles_of(frame: AnonymizedFrame) -> tuple[Box, ...]:
    """Where the anonymizer's object pass found cars, trucks and buses (when it ran), boxes."""
    return tuple(o.box for o in frame.objects or ()
                 if o.label in VEHICLE_LABELS and o.score >= VEHICLE_MIN_SCORE)


def on_vehicle(box: Box, vehicles: Sequence[Box]) -> bool:
    """Whether `box` is a part of one of `vehicles`: at most VEHICLE_PART of its width, and
    (0.8 of it or more) in its lower two thirds: lamps, wheels and badges, or a truck's own
    speed sticker, which is no rule for the road."""
    return any(box.w <= VEHICLE_PART * v.w
               and box.coverage_by(Box(v.x, v.y + v.h / 3, v.w, v.h * 2 / 3)) >= 0.8
               for v in vehicles)


@dataclass
class _Search:
    """Where `_read_classified` looks in one frame, in full-frame pixels."""

    candidates: list[SignCandidate]  # the shape finder's, legends located
    proposals: list[Box]  # colour regions and holes that show sign paint
    # end squares of elongated proposals (`square_ends`), the tops of tall ones first: those
    # may be any class (`square_tops_any_class`), the rest speed limits only
    squares: list[Box]
    # round outlines no colour region matched (`circle_proposals`): a dusk rim that keeps some
    # loose red but too little for a region; round classes only (see `circle_round_classes`)
    circles: list[Box]
    masks: dict[str, np.ndarray]  # the proposal masks, at the search's scale
    scale: float  # search image / frame
    # the frame itself less a margin, for a sign crop (`whole_frame_px`); empty otherwise
    whole: list[Box] = field(default_factory=list)
    top_squares: int = 0  # how many of `squares` are tops of tall proposals
    # triangular outlines no colour region matched (`triangle_proposals`): triangular classes
    triangles: list[Box] = field(default_factory=list)
    # priority-road boxes grown from diamond-shaped yellow fields (`diamond_proposals`)
    diamonds: list[Box] = field(default_factory=list)
    # how many of `proposals`, the last ones, are learned boxes added to the full search
    # (`learned_adds`): classified like the others, but not read by OCR on their own
    added: int = 0
    # whether the learned proposer stood for the search (frames of `learned_min_side` and more)
    learned: bool = False


class OcrBackend(AnalysisBackend):
    """Sign candidates + PP-OCR recognition; no scene description, results marked degraded."""

    name = "ocr"
    supports_batching = False
    describes_scene = False

    def __init__(self, config: OcrConfig | None = None,
                 engine_factory: Callable[[OcrConfig], Any] | None = None) -> None:
        self.config = config or OcrConfig()
        self._engine_factory = engine_factory or _rapidocr_engine
        self._engine: Any = None
        self._classifier: SignClassifier | None = None
        self._verifier: SignVerifier | None = None
        self._ranker: ProposalRanker | None = None
        self._proposer: SignProposer | None = None  # `learned_proposals`
        self._values: SpeedValueReader | None = None  # `value_reader`
        self._model_id = ""
        # the round-outline search (a Hough pass, ~60 ms on a 960 px frame, GIL released)
        # runs beside the colour search, which needs nothing from it
        self._outline_pool: ThreadPoolExecutor | None = None
        # wall ms of the reader's parts, summed over frames (`vlm-node bench signs` prints
        # them a frame): "search" (the colour/shape search in the reader's thread),
        # "classify" (the first classifier batches: every box but the round outlines, the
        # wait for the outline thread, the outlines, and the second look), "recognise"
        # (PP-OCR model calls); the rest of a frame is the caller's total less these. Inside
        # "search": "search.finder" (the shape finder's candidates), "search.proposals"
        # (colour masks and regions), "search.shapes" (triangles and diamonds); inside
        # "classify": "classify.wait" (the wait for the Hough thread)
        self.part_times = PartTimes()

    @property
    def model_id(self) -> str:
        return self._model_id or "ocr (not loaded)"

    @property
    def classifier(self) -> SignClassifier | None:
        """The loaded sign classifier (None before load() or with `classifier: false`)."""
        return self._classifier

    def load(self) -> None:
        if self._engine is not None:
            return
        self._engine = self._engine_factory(self.config)
        self._model_id = _engine_id()
        if self.config.classifier:
            # No silent fallback to OCR rules: a missing model is a broken install.
            model = self.config.classifier_model or \
                SHIPPED_MODELS[self.config.classifier_precision]
            self._classifier = SignClassifier(model, self.config.runtime())
            self._model_id += f" + sign classifier {self._classifier.path.name}"
            self._verifier = self._load_verifier()
            if self._verifier is not None:
                self._model_id += " + verifier"
            if self.config.value_reader:
                self._values = SpeedValueReader(
                    self.config.value_reader_model or DEFAULT_VALUE_MODEL,
                    self.config.runtime())
                self._model_id += f" + value reader {self._values.path.name}"
        if self.config.ranked_proposals > 0:
            self._ranker = self._load_ranker()
        if self.config.learned_proposals > 0:
            self._proposer = SignProposer(self.config.proposer_model or DEFAULT_PROPOSER,
                                          self.config.runtime())
            self._model_id += f" + proposer {self._proposer.path.name}"
        if self._proposer is not None or self.config.circle_proposals:
            # the Hough pass's thread, or the learned proposer's (either runs beside the
            # shape finder on the second core)
            self._outline_pool = ThreadPoolExecutor(1, thread_name_prefix="sign-outlines")
        # Warm-up: the first onnxruntime run allocates and picks kernels (~100 ms).
        probe = np.full((48, 96, 3), 255, np.uint8)
        cv2.putText(probe, "50", (14, 38), cv2.FONT_HERSHEY_SIMPLEX, 1.3, (0, 0, 0), 3)
        self._recognize([probe])

    def _load_ranker(self) -> ProposalRanker:
        """The proposal ranker (`ranker_model`, else the shipped one); a missing or broken
        file is an error, as a missing classifier is."""
        return ProposalRanker.load(Path(self.config.ranker_model) if self.config.ranker_model
                                   else DEFAULT_RANKER)

    def _load_verifier(self) -> SignVerifier | None:
        """The sign verifier for the loaded classifier (`verifier`, `verifier_model`). A
        verifier fitted on another classifier's probabilities is an error, not skipped: its
        weights would mean nothing there."""
        assert self._classifier is not None
        cfg = self.config
        if not cfg.verifier:
            return None
        if not cfg.verifier_model and cfg.classifier_model:
            log.warning("analysis.ocr.classifier_model is set: the shipped sign verifier "
                        "belongs to the shipped classifier and is not used; fit one with "
                        "`vlm-node fit-verifier` and set analysis.ocr.verifier_model")
            return None
        verifier = SignVerifier.load(Path(cfg.verifier_model) if cfg.verifier_model
                                     else DEFAULT_VERIFIER)
        verifier.check_classifier(self._classifier.source_sha256, self._classifier.path)
        return verifier

    def close(self) -> None:
        self._engine = None
        self._classifier = None
        self._verifier = None
        self._ranker = None
        self._proposer = None
        self._values = None
        if self._outline_pool is not None:
            self._outline_pool.shutdown(wait=True)
            self._outline_pool = None

    def analyze(self, frames: Sequence[AnonymizedFrame]) -> list[AnalysisResult]:
        if self._engine is None:
            raise BackendUnavailableError("the ocr backend is not loaded; call load() first")
        results = []
        for frame in frames:
            t0 = time.perf_counter()
            signs = self.read_frame(frame)
            results.append(AnalysisResult(
                signs=signs, scene=None, backend=self.name, model_id=self.model_id,
                analysis_ms=(time.perf_counter() - t0) * 1000.0, degraded=True,
                degraded_reason=self._degraded_reason()))
        return results

    def _degraded_reason(self) -> str:
        if self._classifier is not None:
            return ("no VLM: signs from the sign classifier (GTSRB classes) and PP-OCR, no "
                    "scene description")
        return ("OCR-only analysis (sign candidates + PP-OCR): no scene description, "
                "pictogram signs not classified")

    def read_frame(self, frame: AnonymizedFrame) -> list[SignReading]:
        """`read_signs` with what the anonymizer found in `frame` (its sign text, people and
        vehicles): how the node, `analyze` and `fit-verifier` read a frame."""
        return self.read_signs(frame.image, frame.text_hints, people_of(frame),
                               vehicles_of(frame))

    # The work, on plain arrays so that evaluation tools can call it too.

    def read_signs(self, bgr: np.ndarray, hints: Sequence[TextHint] = (),
                   people: Sequence[Box] = (), vehicles: Sequence[Box] = ()
                   ) -> list[SignReading]:
        """Validated sign readings of one BGR frame (already anonymized by the caller);
        `hints`: sign text the anonymizer read (`AnonymizedFrame.text_hints`); `people`: where
        the anonymizer found faces and people (`people_of`), `vehicles` where it found cars,
        trucks and buses (`vehicles_of`), boxes only. A speed limit on a vehicle is dropped
        (`on_vehicle`)."""
        if self._engine is None:
            raise BackendUnavailableError("the ocr backend is not loaded; call load() first")
        readings = (self._read_classified(bgr, hints, people) if self._classifier is not None
                    else self._read_ocr_only(bgr, hints))
        return [r for r in readings if not (r.sign_class == "speed_limit" and r.box is not None
                                            and on_vehicle(r.box, vehicles))]

    def _read_ocr_only(self, bgr: np.ndarray, hints: Sequence[TextHint]) -> list[SignReading]:
        """Readings without the classifier: the shape finder's candidates read by PP-OCR."""
        cfg = self.config
        with self.part_times.part("search"):
            cands = find_candidates(bgr, cfg.candidates)
        cands += hint_candidates(hints, cands, bgr.shape[1], bgr.shape[0])
        readings: list[SignReading] = []
        jobs: list[_Job] = []
        for cand in cands:
            decided, direct = self._without_text(bgr, cand)
            if decided:
                if direct is not None and direct.confidence >= cfg.min_confidence:
                    readings.append(direct)
                continue
            job = self._job(bgr, cand)
            if job is not None and len(jobs) < cfg.max_reads:
                jobs.append(job)
        self._run(jobs, [j.crops for j in jobs])
        # Second pass on binarized crops: for legends the first pass could not use, and for
        # small ones, whose reading must be confirmed (a blurred 50 reads as 30 alone).
        second = [j for j in jobs if self._is_small(j) or
                  (cfg.retry_binarized and self._interpret(bgr, j, j.reads) is None)]
        self._run(second, [[binarized(c, j.light_legend) for c in j.crops] for j in second],
                  alt=True)
        for job in jobs:
            reading = self._reading(bgr, job)
            if reading is not None and reading.confidence >= cfg.min_confidence:
                readings.append(reading)
        return readings

    def proposal_features(self, bgr: np.ndarray) -> tuple[list[Box], np.ndarray]:
        """Every colour proposal of `bgr` (frame coordinates, none held back by the ranker)
        and its ranker features (`proposal_ranker.features`): what `vlm-node fit-ranker`
        fits on, computed exactly as the search ranks them (the full search, whatever the
        frame's size: `learned_min_side`)."""
        found = self._search(bgr, rank=False, learn=False)
        boxes = [b.scaled(found.scale) for b in found.proposals]
        return found.proposals, ranker_features(boxes, found.masks, found.scale)

    def _search(self, bgr: np.ndarray, rank: bool = True, learn: bool = True) -> _Search:
        """Where to look (`_Search`), in full-frame coordinates, round outlines included
        (`_start_search`, then its outlines awaited)."""
        found, outlines = self._start_search(bgr, rank, learn)
        return dataclasses.replace(found, circles=outlines())

    def _start_search(self, bgr: np.ndarray, rank: bool = True, learn: bool = True
                      ) -> tuple[_Search, Callable[[], list[Box]]]:
        """Where to look (`_Search`, its `circles` still empty), in full-frame coordinates,
        and a call that returns the round outlines (`circle_proposals`) once the outline
        thread has them. Why two steps: the Hough pass runs on the second core beside the
        colour search and often outlasts it; the caller classifies the other boxes meanwhile
        instead of waiting. The search runs on the frame shrunk so its longer side is at most
        `search_max_side`: its cost grows with the pixel count, and a sign big enough to
        classify (12 px at full size) is still a 6 px region at half size; crops and OCR then
        use the full-resolution frame. `learn`: False for the full search whatever the
        settings (`learned_proposals`)."""
        cfg = self.config
        pcfg = cfg.proposals
        h, w = bgr.shape[:2]
        scale = min(1.0, cfg.search_max_side / max(h, w)) if cfg.search_max_side > 0 else 1.0
        ccfg = cfg.candidates
        small = bgr
        if scale < 1.0:
            small = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))),
                               interpolation=cv2.INTER_AREA)
            ccfg = dataclasses.replace(
                ccfg, min_size_px=max(cfg.search_min_px, round(ccfg.min_size_px * scale)))
            pcfg = dataclasses.replace(
                pcfg, min_size_px=max(cfg.search_min_px, round(pcfg.min_size_px * scale)))
        args: tuple[Any, ...] | None = None
        outlines: Future[list[Box]] | None = None
        cscale = 1.0
        # the learned proposer's boxes (`learned_proposals`) stand for the Hough outlines, and
        # with `learned_replaces: search` for the colour proposals and shapes too
        # (`learned_adds`: on smaller frames they are added to the full search instead, but
        # not to a sign crop's, which its whole-frame box reads: `whole_frame_px`)
        large = max(h, w) >= cfg.learned_min_side
        learned = learn and self._proposer is not None and cfg.learned_proposals > 0 and \
            (large or (cfg.learned_adds and not whole_frame(w, h, cfg)))
        replacing = learned and large
        learned_boxes: list[Box] = []  # (made with the proposals, below)
        all_learned = replacing and cfg.learned_replaces == "search"
        proposed: Future[list[Box]] | None = None
        # the paint masks too, ahead of the proposer, when no Hough pass needs the thread (the
        # frames the proposer stands for the search on): they are then ready when the shape
        # finder is done, instead of 5 ms after it (GTSDB 00300-00599 at 1080p: ~58 -> ~55.5 ms
        # median a frame, three runs each, the same readings)
        painted: Future[dict[str, np.ndarray]] | None = None
        if replacing and self._outline_pool is not None:
            painted = self._outline_pool.submit(proposal_masks, small, pcfg)
        if learned and self._outline_pool is not None:
            proposed = self._outline_pool.submit(self._learned, small, pcfg.min_size_px)
        if cfg.circle_proposals and not replacing:
            # radius from the smallest proposal (12 px a side at full size: ~5 px with the rim
            # growth) to a sign a twelfth of the frame's height across the rim, then on a
            # shrunk copy up to a sign 0.7 of it across (passed close by)
            outline_image = small
            cmax = cfg.circle_max_side
            if cmax > 0 and max(small.shape[:2]) > cmax:
                cscale = cmax / max(small.shape[:2])
                outline_image = cv2.resize(
                    small, (max(1, round(small.shape[1] * cscale)),
                            max(1, round(small.shape[0] * cscale))),
                    interpolation=cv2.INTER_AREA)
            short = min(outline_image.shape[:2])
            args = (outline_image, max(3, round(pcfg.min_size_px * cscale / 2.2)),
                    round(0.085 * short), round(0.35 * short))
            if self._outline_pool is not None:
                outlines = self._outline_pool.submit(find_circles, *args)
        timed = self.part_times.part
        with timed("search.finder"):
            if scale < 1.0 and cfg.finder_scale < 1.0:
                # a frame larger than the search holds larger signs too (see the setting);
                # the finder's floor stays search_min_px of its own pixels. Bilinear, not
                # area: 0.6 vs 2.5 ms at 0.75 of 960x540 (area's non-integer path), the same
                # readings on the 1080p development frames (at 0.75 little aliases)
                fscale = cfg.finder_scale
                finder_image = cv2.resize(
                    small, (max(1, round(small.shape[1] * fscale)),
                            max(1, round(small.shape[0] * fscale))),
                    interpolation=cv2.INTER_LINEAR)
                cands = [dataclasses.replace(c, box=c.box.scaled(1 / fscale),
                                             legend=c.legend.scaled(1 / fscale))
                         for c in find_candidates(finder_image, dataclasses.replace(
                             ccfg, min_size_px=cfg.search_min_px))]
            else:
                cands = find_candidates(small, ccfg)
        with timed("search.proposals"):
            masks = painted.result() if painted is not None else proposal_masks(small, pcfg)
            if learned:
                # (the paint masks first: the proposer may still be running on the other core)
                learned_boxes = proposed.result() if proposed is not None else \
                    self._learned(small, pcfg.min_size_px)
            if all_learned:
                # no paint pre-filter or ranking: the learned boxes are few and ranked already
                proposals = at_learned_scales(learned_boxes)
                if cfg.learned_paint_regions > 0:
                    proposals += find_proposals_near(small, pcfg, masks, learned_boxes,
                                                     cfg.learned_paint_regions)
            else:
                proposals = find_proposals(small, pcfg, masks)
                # the paint shares of boxes, for the pre-filter and the ranker: made once
                integrals = paint_integrals(masks)
                if pcfg.min_paint > 0:
                    # a proposal without any sign paint could only pass as a grey end-of-limit
                    # sign, which the finder's white candidates cover: not worth a crop
                    shares = max_paint_shares(masks, proposals, integrals)
                    proposals = [b for b, share in zip(proposals, shares)
                                 if share >= pcfg.min_paint]
                if rank and cfg.ranked_proposals > 0:
                    if self._ranker is None:  # the setting was raised from 0 at run time
                        self._ranker = self._load_ranker()
                    proposals = self._ranker.best(proposals, masks, scale,
                                                  cfg.ranked_proposals, integrals)
        # outlines that are already a region's box add nothing
        known = box_array([c.box for c in cands] + proposals)
        # added to the full search (`learned_adds`) as proposals where the search has no box
        # of its size (IoU <= ADDED_KNOWN_IOU with every box of at least `learned_known_area`
        # of its area: where it has one, its box's reads decide; a learned
        # box beside it took the place of Kaggle road412's 100, which OCR reads through the
        # proposal); not as outlines: those compete for the frame's ring reads, and a larger
        # learned box took them from the Hough circle that read Kaggle road352's 70
        added = _not_known([b for b in at_learned_scales(learned_boxes)
                            if max(b.w, b.h) >= pcfg.min_size_px], known, ADDED_KNOWN_IOU,
                           cfg.learned_known_area) \
            if learned and not replacing else []
        with timed("search.shapes"):
            triangles = _not_known(find_triangles(small, pcfg.min_size_px), known,
                                   SHAPE_KNOWN_IOU) \
                if cfg.triangle_proposals and not all_learned else []
            diamonds = _not_known(find_diamonds(masks, pcfg.min_size_px,
                                                0.6 * min(small.shape[:2])), known,
                                  SHAPE_KNOWN_IOU) \
                if cfg.diamond_proposals and not all_learned else []
        up = 1.0 / scale

        def full_size(boxes: list[Box]) -> list[Box]:
            """Search-image boxes in frame pixels; under the full-size floor dropped: the
            shrunk search's 6 px floor admits regions under `min_size_px` at full size (~15 %
            of the classifier's crops at 1080p, and on the development photos only two
            non-speed readings), not worth classifying."""
            if scale >= 1.0:
                return boxes
            return [b.scaled(up) for b in boxes
                    if max(b.w, b.h) * up >= cfg.proposals.min_size_px]

        def outlines_found() -> list[Box]:
            """The round outlines no candidate or proposal already boxes, in frame pixels."""
            if replacing:
                # (replacing the search, they are its proposals too: read as outlines as well,
                # the ring reads of big round signs need them: 70.8 -> 81.1 % of the held-out
                # Kaggle values, docs/sign_proposer.md)
                # (each box at every scale is one more crop; read as a ring only once)
                # (each refitted to the ring inside it, as the Hough pass's circles are
                # rings: a heatmap cell's box often sits a few pixels off the rim, and a ring
                # read through it then loses a digit; held-out Kaggle road340's 40 and
                # road410's 100 read only through the fitted ring. On a 64 px patch: 0.2 ms
                # a box, where up to 128 px cost ~1 ms for big signs)
                return [fit_ring(bgr, b, LEARNED_FIT_SIDE) for b in full_size(
                    learned_boxes if all_learned else
                    _not_known(at_learned_scales(learned_boxes), known, 0.5))]
            if args is None:
                return []
            with timed("classify.wait"):  # the caller's wait for the outline thread
                found = outlines.result() if outlines is not None else find_circles(*args)
            if cscale < 1.0:
                found = [b.scaled(1.0 / cscale) for b in found]
            return full_size(_not_known(found, known, 0.5))

        if scale < 1.0:
            cands = [dataclasses.replace(c, box=c.box.scaled(up), legend=c.legend.scaled(up))
                     for c in cands]
        proposals, triangles, diamonds, added = (
            full_size(b) for b in (proposals, triangles, diamonds, added))
        squares = end_squares(proposals, cfg.square_ends, cfg.proposals.min_size_px)
        tops = 0
        if cfg.square_tops_any_class:
            # the top square of a tall box shares its corner and width
            tall = {(b.x, b.y, b.w) for b in proposals if b.h > b.w}
            top = [(sq.x, sq.y, sq.w) in tall for sq in squares]
            squares = [sq for sq, t in zip(squares, top) if t] + \
                [sq for sq, t in zip(squares, top) if not t]
            tops = sum(top)
        return (_Search(cands, proposals + added, squares, [], masks, scale,
                        whole_frame(w, h, cfg), tops, triangles, diamonds, len(added),
                        learned=replacing), outlines_found)

    def _learned(self, small: np.ndarray, floor: float) -> list[Box]:
        """The learned proposer's `learned_proposals` best boxes on the search image (its
        pixels), none under `floor` px across."""
        assert self._proposer is not None
        return [b for b, _ in self._proposer.propose(small, self.config.learned_proposals,
                                                     LEARNED_MIN_SCORE)
                if max(b.w, b.h) >= floor]

    def _read_classified(self, bgr: np.ndarray, hints: Sequence[TextHint] = (),
                         people: Sequence[Box] = ()) -> list[SignReading]:
        """Readings when the classifier is loaded: the finder's candidates and the looser
        proposals are all classified; what it calls a sign is published with its calibrated
        probability as confidence; what it rejects is not a sign, except that OCR still reads
        the finder's candidates for classes the classifier has no class for."""
        assert self._classifier is not None
        pcfg = self.config.proposals
        timed = self.part_times.part
        with timed("search"):
            found, outlines = self._start_search(bgr)
        masks, scale = found.masks, found.scale
        cands = found.candidates + hint_candidates(hints, found.candidates, bgr.shape[1],
                                                   bgr.shape[0], stop_signs=True)
        whole = found.whole
        # cv2 rather than a numpy copy of bgr[..., ::-1] (negative stride): 1.8 vs 29.6 ms at
        # 1080p, the same pixels
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        classifier = self._classifier
        before = [c.box for c in cands] + found.proposals + whole + found.squares
        after = found.triangles + found.diamonds
        with timed("classify"):
            # every box but the round outlines is classified while the outline thread may
            # still run (a crop's answer does not depend on the rest of its batch)
            early = classifier.probabilities(prepare_crops(rgb, before + after))
            # a round outline on a person is a hat, a badge or a face, not a dusk speed limit
            circles = [b for b in outlines() if not on_people(b, people)]
            probs = np.concatenate([early[:len(before)],
                                    classifier.probabilities(prepare_crops(rgb, circles)),
                                    early[len(before):]])
            boxes = first_boxes = before + circles + after
            if self.config.refine_max > 0:
                boxes, results = classifier.classify_refined(
                    rgb, boxes, self.config.refine_max, probs=probs)
            else:
                results = classifier.results(probs)
        self.part_times.count("classify", len(boxes))
        # boxes[:finder] are the finder's, boxes[speed_only:triangle] may only be speed limits
        # (squares and outlines) except the first `top_squares`, boxes[outline:triangle] are
        # the round outlines, boxes[triangle:diamond] the triangular ones (triangular classes
        # only), boxes[diamond:] the grown yellow fields (priority road only); the whole
        # frame's box, if any, is the last before speed_only
        finder = len(cands)
        speed_only = finder + len(found.proposals) + len(whole)
        outline = speed_only + len(found.squares)
        triangle = outline + len(circles)
        diamond = triangle + len(found.triangles)
        unpainted = range(speed_only - len(whole), speed_only)
        added = range(speed_only - len(whole) - found.added, speed_only - len(whole))
        # an added learned box on a Hough outline (found beside them, so not yet known when
        # they were added) answering other than a speed value leaves the place to the
        # outline's reads: one read as a roundabout took that of Kaggle road368's 40, which OCR
        # reads through the outline (a speed value stays: OCR checks it, and dropping every
        # added box on an outline lost 20 of 370 values on half the WIDER scenes)
        on_outlines = {i for i, near in zip(added, _near(
            [first_boxes[i] for i in added], box_array(circles), ADDED_KNOWN_IOU)) if near}
        # a sign has its paint: white letters, lamps and faces the network takes for a sign
        # do not (the share is measured on the frame's masks, white balance and all)
        # an outline is read only as a sign of its shape: a triangle as a triangular class, a
        # grown yellow diamond as priority road, a round outline as a round one
        # (`circle_round_classes`; speed limits only before the verifier and the people
        # filter, when faces and lamps passed as other classes); end
        # squares only as speed limits (other classes: 25 more false readings on the 141
        # crowd photos), except the top of a tall region (`square_tops_any_class`)
        # (a sign crop's whole-frame box has no paint check: a dark crop shows none)
        shaped = [i for i, r in enumerate(results) if r.is_sign and
                  (r.gtsrb is not None and r.gtsrb.is_diamond if i >= diamond else
                   r.gtsrb is not None and r.gtsrb.is_triangle if i >= triangle else
                   i < speed_only + found.top_squares or r.sign_class == "speed_limit"
                   or (i >= outline and self.config.circle_round_classes
                       and r.gtsrb is not None and r.gtsrb.is_round))
                  and (i not in added
                       or (_added_reading(r) and (r.value is not None or i not in on_outlines)))]
        kept = [i for i in shaped if i in unpainted or (
            _coloured(bgr, boxes[i]) if i in added
            else _painted(results[i], boxes[i], masks, scale, pcfg.min_paint))]
        if self.config.unpainted_value_looks > 0:
            # a sure speed value without its paint (a dark or night sign's dull rim, which
            # keeps some colour: a white copyright octagon on grey read as 100 at 0.993 and
            # held) stands when it holds as the crop moves (`unpainted_value_looks`); an added
            # learned box has had its colour test already
            known = set(kept)
            dull = [i for i in shaped if i not in known and results[i].value is not None
                    and results[i].gtsrb is not None
                    and results[i].probability >= ADDED_MIN_PROBABILITY
                    and i not in added and _coloured(bgr, boxes[i])]
            looks = classifier.sure_looks_many(
                rgb, [boxes[i] for i in dull], [results[i].gtsrb.class_id for i in dull])
            kept = sorted(kept + [i for i, n in zip(dull, looks)
                                  if n >= self.config.unpainted_value_looks])
        signs = [(boxes[i], results[i]) for i in kept]
        # results of round outlines no colour region matched (`outline_needs_ocr`)
        outlined = {id(results[i]) for i in kept if outline <= i < triangle
                    and self.config.outline_needs_ocr}
        # a sign crop's value read through its whole frame stands without OCR's check: the
        # crop is what the classifier was trained on, while OCR misreads its small, colour-
        # fringed legend (held-out GTSRB crops: 95.8 -> 96.3 % of 30-60 px values, 97.0 ->
        # 98.3 % above 60 px, the same one wrong value); a class without a value still asks OCR
        crop_values = {id(results[i]) for i in kept if i in unpainted
                       and results[i].value is not None}
        # the same goes for the verifier: it was fitted on readings in scenes; a sign crop read
        # whole is the classifier's own training domain (on the 860 shared GTSRB sample crops
        # the verifier would have dropped 7 right readings through the whole-frame box)
        crop_readings = {id(results[i]) for i in kept if i in unpainted}
        # One reading per sign: a ring and its inner disc, or a candidate and a proposal, are
        # the same sign; the most probable box speaks for it, the finder's shape-fitted box
        # first among near-equals, a triangular outline last: it is there for signs no colour
        # region found, and its box (often the rim's inner edge) reads less surely elsewhere.
        scores = [r.probability + (0.01 if i < finder else -0.01 if i >= triangle else 0.0)
                  for i, (_, r) in zip(kept, signs)]
        keep = nms([b for b, _ in signs], scores, 0.3)
        keep = values_over_family(signs, scores, keep, 0.3)
        signs = [signs[i] for i in keep]
        signs = [(b, r) for b, r in signs
                 if not any(o is not r and ob.area > b.area and b.coverage_by(ob) > 0.6
                            and o.probability >= r.probability for ob, o in signs)]
        if self.config.stacked_proposals:
            signs += self._stacked(rgb, signs, people, masks, scale)
        readings: list[SignReading] = []
        # (index, job): readings[index] is the reading of signs[index], one a sign in order
        checks: list[tuple[int, _Job]] = []
        unconfirmed: set[int] = set()
        unjudged: set[int] = set()  # readings the verifier leaves alone
        for box, res in signs:
            # report the finder's shape-fitted outline when it lies on the same sign (a
            # proposal is a colour region's bounding box, often a little wider)
            near = [c for c in cands if c.box.iou(box) > 0.5]
            fitted = [c.box for c in near]
            # (a text hint's candidate is a box around words, not a fitted outline)
            outlined_sign = any(c.found_by != _HINT for c in near)
            box = max(fitted, key=box.iou) if fitted else box
            small = max(box.w, box.h) < self.config.min_value_px
            if small and res.value is not None and self.config.grown_look:
                grown = self._classifier.grown_look(rgb, box, res)
                if grown is not None and max(grown.w, grown.h) >= self.config.min_value_px:
                    box, small = grown, False
            reading = SignReading(res.sign_class, res.probability, "classifier",
                                  value=None if small else res.value,
                                  unit="" if small else res.unit, box=box)
            if not small and (res.value is not None or res.sign_class == "speed_limit") \
                    and id(res) not in crop_values:
                job = self._check_job(bgr, box, res, cands)
                if job is not None:
                    checks.append((len(readings), job))
                elif reading.value is not None and not self._holds(rgb, reading):
                    reading = dataclasses.replace(reading, value=None, unit="")
                if id(res) in outlined:
                    unconfirmed.add(len(readings))
                    if job is None:
                        reading = dataclasses.replace(reading, value=None, unit="")
            if id(res) in crop_readings or (outlined_sign and self.config.verifier_spares_fitted):
                unjudged.add(len(readings))
            readings.append(reading)
        # OCR for what the classifier cannot know, on the finder's candidates it rejected
        # (a pictogram ring may be a foreign speed number: `ocr_on_pictograms`)
        taken = [b for b, r in signs if not (self.config.ocr_on_pictograms
                                             and r.sign_class in PICTOGRAM_RINGS)]
        pending = [(results[i].speed_mass, self._job(bgr, c)) for i, c in enumerate(cands)
                   if not any(c.box.iou(b) > 0.3 for b in taken)]
        pending = [(m, j) for m, j in pending if j is not None and (
            j.kind in ("us", "blue", "ring") or (j.kind == "stop" and j.cand.found_by == _HINT))]
        budget = max(0, self.config.max_reads - len(checks))
        pending = pending[:budget]
        if self.config.fit_rings:
            # the finder's ellipse on a tilted or half-shaded sign can sit off its ring, and the
            # rim then reads as a "1" (a 5 as 15): its own fitted ring must not read otherwise.
            # Not for an ellipse far from round: a sign seen from the side is one, the finder
            # fitted it, and no circle does (Kaggle road120: a 151 x 209 px 30 lost that way)
            for _, job in pending:
                if job.kind == "ring" and _circle_fits(job.cand):
                    job.fallback = self._fitted_job(bgr, job.cand)

        def held() -> list[Box]:
            """Places the ring reads below keep off: signs, finder candidates and jobs so far,
            but not white rectangles (`_hides_rings`)."""
            return taken + [c.box for c in cands if _hides_rings(c)] + \
                [j.cand.box for _, j in pending if _hides_rings(j.cand)]

        # big outlines first: their strict read (as many digits as glyphs) decides a sign the
        # looser speed-proposal read of the same place (its box refitted) might not
        pending += self._circle_reads(bgr, boxes[outline:triangle], results[outline:triangle],
                                      held(), budget - len(pending))
        # (the learned boxes added to the search are the classifier's only: OCR read "60" in
        # the glasses of a blind-pedestrians plate through one, Kaggle road122)
        readable = [i for i in range(finder, triangle) if i not in added]
        pending += self._speed_proposals(
            bgr, [boxes[i] for i in readable], [results[i] for i in readable], held(),
            budget - len(pending), outline - finder - len(added), scale)
        # last: the classifier vouched for none of these
        pending += self._proposal_rings(
            bgr, boxes[finder:added.start], results[finder:added.start],
            masks, scale, held(), budget - len(pending))
        if not found.learned:
            # (at 1080p, with the learned proposer's tighter boxes, they read no more values
            # and cost 1.05x the stage: `ranked_ring_reads`)
            pending += self._ranked_rings(
                bgr, rgb, boxes[finder:added.start], results[finder:added.start], masks,
                scale, held(), budget - len(pending))
        jobs = [j for _, j in checks] + [j for _, j in pending]
        everything = jobs + [j.fallback for j in jobs if j.fallback]
        self._run(everything, [j.crops for j in everything])
        small = [j for j in everything if self._is_small(j)]
        self._run(small, [[binarized(c, j.light_legend) for c in j.crops] for j in small],
                  alt=True)
        # speed limits left without a value, which the speed-value reader may fill: (index,
        # the classifier's value, the number OCR read there, the classifier's lean), or None
        unfilled: list[tuple[int, float | None, float | None, float | None]] = []
        for index, job in checks:
            ocr = self._check_read(bgr, job, readings[index])
            reading = second_opinion(
                readings[index], ocr, self.config.min_confidence,
                self.config.ocr_unknown_values,
                job.glyphs if self.config.ocr_digit_counts and job.kind == "ring" else 0)
            if reading.value is None and self.config.ocr_digit_counts and \
                    self._passes_agree_on_more_digits(bgr, job, readings[index], ocr):
                reading = with_ocr_value(readings[index], ocr)
            if readings[index].value is None and reading.value is not None and \
                    self.config.lost_one_guard and \
                    lost_leading_one(signs[index][1], reading.value, reading.unit):
                reading = dataclasses.replace(reading, value=None, unit="")
            if ocr is None and reading.value is not None and reads_letters(job.reads):
                reading = dataclasses.replace(reading, value=None, unit="")
            if ocr is None and reading.value is not None and self.config.ocr_unknown_values \
                    and self._unknown_value_read(bgr, job, reading):
                reading = dataclasses.replace(reading, value=None, unit="")
            if reading.value is None and readings[index].value is not None:
                reading = self._settled(rgb, reading, ocr)
            if index in unconfirmed and reading.value is not None and \
                    (ocr is None or ocr.value != reading.value):
                # a round outline with some red is not yet a sign: red hats and drums with a
                # light centre pass the classifier; only a number OCR reads too is published
                reading = dataclasses.replace(reading, value=None, unit="")
            if reading.value is not None and (ocr is None or ocr.value != reading.value) and \
                    not self._holds(rgb, reading):
                reading = dataclasses.replace(reading, value=None, unit="")
            if reading.value is None and reading.sign_class == "speed_limit" and \
                    index not in unconfirmed:
                # the classifier's lean counts only where OCR read nothing at all: no number in
                # either pass, no letters (a protest card's "C" the classifier takes for 100)
                silent = ocr is None and not reads_letters(job.reads) and \
                    not self._pass_values(bgr, [job])
                unfilled.append((index, readings[index].value,
                                 ocr.value if ocr is not None else None,
                                 speed_lean(signs[index][1]) if silent else None))
            readings[index] = reading
        if self._values is not None and self.config.value_reader and unfilled:
            self._fill_values(rgb, readings, unfilled)
        # OCR's reading of each pending job's own box (the speed-value reader checks its
        # number against it, `_read_rings`)
        box_reads: list[SignReading | None] = []
        for mass, job in pending:
            reading = self._reading(bgr, job)
            box_reads.append(reading)
            # (reading, glyphs counted on its crop) of the box and of the ring fitted in it
            reads = [(reading, job.glyphs)]
            if job.fallback is not None:
                if len(self._pass_values(bgr, [job, job.fallback])) > 1:
                    continue  # the fitted ring and the proposal's box read different numbers
                reads.append((self._reading(bgr, job.fallback), job.fallback.glyphs))
                reading = _surer(reading, reads[1][0])
            if reading is None or reading.confidence < self.config.min_confidence:
                continue
            if ocr_only(reading) and job.cand.found_by != _SPEED_PROPOSAL:
                readings.append(reading)
            elif job.cand.found_by == _HINT and job.kind == "stop":
                # STOP read twice (the anonymizer's text pass, then this legend crop) on red
                # paint: a stop sign the classifier did not know (hazy, foreign lettering)
                if reading.sign_class == "stop" and paint_share(
                        masks, job.cand.box.scaled(scale), "red") >= STOP_HINT_PAINT:
                    readings.append(reading)
            elif job.cand.found_by == _CIRCLE_READ:
                passed = surest_circle_read(reads)
                if passed is not None:
                    readings.append(passed)
            elif job.cand.found_by == _RANKED_RING:
                passed = ranked_ring_read(reading, job.glyphs, mass)
                if passed is not None:
                    readings.append(passed)
            elif job.kind == "ring" and reading.sign_class == "speed_limit" and \
                    mass >= self.config.ocr_speed_mass and \
                    job.classifier_value in (None, reading.value):
                # a red ring the shape finder vouches for, more likely a speed limit than not
                # to the classifier but of no GTSRB value or design it is sure of (a 40, a
                # foreign font): OCR's strict reading of the number decides
                readings.append(dataclasses.replace(
                    reading, confidence=min(reading.confidence, mass)))
        if self._values is not None and self.config.value_reader:
            for reading in self._read_rings(rgb, pending, box_reads, readings):
                # the reader's own calibrated threshold judged it; the verifier was fitted
                # on the sign classifier's answers, which on these rings are unsure
                unjudged.add(len(readings))
                readings.append(reading)
        if self.config.ocr_on_pictograms:
            readings, unjudged = numbers_over_pictograms(readings, unjudged)
        if self.config.crossing_signs:
            readings += self._crossings(bgr, cands, boxes[finder:outline], readings, masks,
                                        scale)
        readings = self._verified(rgb, readings, unjudged)
        if self.config.lost_zero_guard:
            readings = self._lost_zeros(rgb, readings)
        return one_per_sign(readings)

    def _read_rings(self, rgb: np.ndarray, pending: Sequence[tuple[float, _Job]],
                    box_reads: Sequence[SignReading | None], readings: Sequence[SignReading]
                    ) -> list[SignReading]:
        """Speed limits of values GTSRB lacks on red rings OCR was asked to read and nothing
        was published from: the speed-value reader's sure read (`value_reader_ring_probability`)
        of a ring the classifier gives a speed mass of at least `value_reader_mass`, where OCR
        read no other number (`ring_value`). Why: a 40 or a 5 under a branch's shadow or on a
        washed-out rim is a ring the classifier half believes and OCR cannot read (Kaggle
        road208's 5 and road210's 40: the reader 0.99 through the finder's box). One reading
        a place: the surest first, nothing over a reading already made."""
        assert self._values is not None
        cfg = self.config
        jobs = [(mass, job, ocr) for (mass, job), ocr in zip(pending, box_reads)
                if job.kind == "ring" and mass >= cfg.value_reader_mass
                and not any(r.box is not None and r.box.iou(job.cand.box) > 0.3
                            for r in readings)]
        if not jobs:
            return []
        found: list[SignReading] = []
        reads = self._values.read(rgb, [job.cand.box for _, job, _ in jobs])
        order = sorted(range(len(jobs)), key=lambda i: -reads[i].probability)
        for i in order:
            mass, job, ocr = jobs[i]
            reading = ring_value(reads[i], mass, job.cand.box,
                                 ocr.value if ocr is not None else None,
                                 cfg.value_reader_ring_probability)
            if reading is not None and not any(f.box is not None and f.box.iou(job.cand.box)
                                               > 0.3 for f in found):
                found.append(reading)
        return found

    def _fill_values(self, rgb: np.ndarray, readings: list[SignReading],
                     unfilled: Sequence[tuple[int, float | None, float | None, float | None]]
                     ) -> None:
        """Speed limits left without a number after OCR's second opinion get the speed-value
        reader's value where `value_fill` allows it, in place. One batch for the frame's such
        signs."""
        assert self._values is not None
        need = self.config.value_reader_min_probability or self._values.min_probability
        todo = [(u, box) for u in unfilled if (box := readings[u[0]].box) is not None]
        answers = self._values.read(rgb, [box for _, box in todo])
        lean_ok = self.config.value_reader_lean
        for ((index, classifier_value, ocr_value, lean), _), read in zip(todo, answers):
            filled = value_fill(readings[index], read, classifier_value, ocr_value, need,
                                lean if lean_ok else None)
            if filled is not None:
                readings[index] = filled

    def _holds(self, rgb: np.ndarray, reading: SignReading) -> bool:
        """Whether the classifier's speed value on `reading`, which OCR did not read too, holds
        as its crop moves: at least `value_looks` of the seven looks at its box give it at
        >= 0.9; and whether the speed-value reader reads it too (`value_reader_agrees`) on the
        box, grown or shrunk by 10 %. Why the second network: a truck's red cab side read as 30
        held in 4 of 7 looks, the reader called it no speed value on all three of its own.
        A value that is not a GTSRB class's (OCR's own) passes; without the reader
        (`value_reader` false) the looks alone judge."""
        need = self.config.value_looks
        class_id = speed_limit_id(reading.value, reading.unit)
        if class_id is None or reading.box is None:
            return True
        if need and self._classifier.sure_looks(rgb, reading.box, class_id) < need:
            return False
        agree = self.config.value_reader_agrees
        if not agree or self._values is None or not self.config.value_reader:
            return True
        return any(r.value == reading.value and r.probability >= agree
                   for r in self._values.read(rgb, reader_looks(reading.box)))

    def _lost_zeros(self, rgb: np.ndarray, readings: list[SignReading]) -> list[SignReading]:
        """`readings` with a km/h 5 or 10 left without its number where the speed-value reader
        reads ten times it (50, 100) at >= LOST_ZERO_PROBABILITY on one of its looks at the
        box (`lost_zero_guard`). Why: OCR loses a blurred 0 beside the rim (a placed 26 px
        50 read "(5."), the reader does not (it read 50 at 0.97 there, and 5 or no value on
        every real 5 of the development photos), and a 5 where the limit is 50 is the worst
        misread a planner could get. Without the reader (`value_reader` false) nothing
        changes. One batch for the frame's such readings."""
        todo = [i for i, r in enumerate(readings) if r.sign_class == "speed_limit"
                and r.unit == "km/h" and r.value in LOST_ZERO_VALUES and r.box is not None]
        if not todo or self._values is None or not self.config.value_reader:
            return readings
        looks = [reader_looks(readings[i].box) for i in todo]
        reads = self._values.read(rgb, [b for boxes in looks for b in boxes])
        out = list(readings)
        start = 0
        for i, boxes in zip(todo, looks):
            mine, start = reads[start:start + len(boxes)], start + len(boxes)
            tens = 10 * readings[i].value
            if any(r.value == tens and r.probability >= LOST_ZERO_PROBABILITY for r in mine):
                out[i] = dataclasses.replace(readings[i], value=None, unit="")
        return out

    def _check_job(self, bgr: np.ndarray, box: Box, res: SignClass,
                   cands: Sequence[SignCandidate]) -> _Job | None:
        """OCR's job for its second opinion on a sign the classifier answered (`res` on
        `box`): the finder's ring on it, or the classifier's box, with the ring fitted inside
        as a fallback (`fit_rings`). Its candidate's score is 1: the classifier has vouched
        for the sign, so OCR's confidence is the recogniser's own score, not that score times
        the finder's shape fit (a 0.99 read of 100 on three glyphs counted 0.84 through a
        ring fitted at 0.85, under the 0.9 that `other_digit_count` and `unknown_value` ask,
        and a foreign 100 stayed an 80 with its value dropped: Kaggle road117)."""
        job = self._job(bgr, dataclasses.replace(self._ring_candidate(box, res, cands),
                                                 score=1.0))
        if job is not None and self.config.fit_rings and job.kind == "ring" and \
                _circle_fits(job.cand):
            # a classifier box wider than the ring puts the rim in the legend
            job.fallback = self._fitted_job(bgr, job.cand)
        return job

    def _crossings(self, bgr: np.ndarray, cands: Sequence[SignCandidate], boxes: Sequence[Box],
                   readings: Sequence[SignReading], masks: dict[str, np.ndarray], scale: float
                   ) -> list[SignReading]:
        """Pedestrian-crossing readings (`crossing_signs`) on the finder's blue candidates and
        the squarish proposals with blue paint, where no reading is yet, at most
        `_CROSSING_TESTS` boxes a frame, the bluest first."""
        tried = [(1.0, c.box) for c in cands if c.border == "blue"]
        tried += [(share, b) for b in boxes
                  if (share := paint_share(masks, b.scaled(scale), "blue")) >= _CROSSING_PAINT]
        out: list[SignReading] = []
        taken = [r.box for r in readings if r.box is not None]
        tests = 0
        for _, box in sorted(tried, key=lambda sb: -sb[0]):
            if tests >= _CROSSING_TESTS:
                break
            if not 1 / _CROSSING_ASPECT <= box.w / max(box.h, 1e-6) <= _CROSSING_ASPECT or \
                    min(box.w, box.h) < CROSSING_MIN_SIDE or \
                    any(box.iou(t) > 0.3 for t in taken):
                continue
            tests += 1
            if crossing_score(bgr, box) >= CROSSING_MIN_BLUE:
                out.append(SignReading("pedestrian_crossing", CROSSING_CONFIDENCE, "shape",
                                       box=box))
                taken.append(box)
        return out

    def _verified(self, rgb: np.ndarray, readings: list[SignReading],
                  unjudged: Collection[int] = ()) -> list[SignReading]:
        """`readings` less the classifier's readings the verifier judges false (one batch of
        crops through each reading's published box: the box the verifier was fitted on). A
        number OCR read too stands: two readers agree on it. `unjudged`: indices of readings
        left alone (a sign crop read whole)."""
        if self._verifier is None:
            return readings
        assert self._classifier is not None
        judged = [i for i, r in enumerate(readings) if r.source == "classifier"
                  and r.box is not None and not (r.value is not None and r.text)
                  and i not in unjudged]
        if not judged:
            return readings
        boxes = [box for i in judged if (box := readings[i].box) is not None]
        probs = self._classifier.probabilities(prepare_crops(rgb, boxes))
        dropped = {i for i, ok in zip(judged, self._verifier.accepts(probs)) if not ok}
        return [r for i, r in enumerate(readings) if i not in dropped]

    def _stacked(self, rgb: np.ndarray, signs: Sequence[tuple[Box, SignClass]],
                 people: Sequence[Box], masks: dict[str, np.ndarray], scale: float
                 ) -> list[tuple[Box, SignClass]]:
        """The signs above and below the accepted `signs` on their posts (`stacked_boxes`),
        classified in one batch and kept as any classified box is: a sign class, its paint,
        on nobody; where two overlap, one that will publish its whole class (a speed limit
        with its value, on a box of at least `min_value_px`) before one that is only sure of
        some speed limit or too small for its value, then the more probable one (ranked by
        probability alone, the family's sum of eight classes or a 0.8x box under
        `min_value_px` took gtsdb_00443's 120 away)."""
        assert self._classifier is not None
        known = [b for b, _ in signs]
        boxes = [b for b in _not_known(stacked_boxes(known, rgb.shape[1], rgb.shape[0]),
                                       box_array(known), KNOWN_IOU)
                 if not on_people(b, people)]
        if not boxes:
            return []
        min_paint = self.config.proposals.min_paint
        found = [(b, r) for b, r in zip(boxes, self._classifier.classify(rgb, boxes))
                 if r.is_sign and _painted(r, b, masks, scale, min_paint)]
        whole = [r.gtsrb is not None and (r.value is None
                                          or max(b.w, b.h) >= self.config.min_value_px)
                 for b, r in found]
        keep = nms([b for b, _ in found],
                   [r.probability + (1.0 if w else 0.0) for (_, r), w in zip(found, whole)],
                   KNOWN_IOU)
        return [found[i] for i in sorted(keep)]

    def _settled(self, rgb: np.ndarray, reading: SignReading, ocr: SignReading | None
                 ) -> SignReading:
        """A classifier value that OCR contradicted (`second_opinion` dropped it) gets OCR's
        value back when the classifier, looking again through the box grown to the whole
        sign (`SignClassifier.grown_agrees`: seven shifted and scaled crops, each >= 0.9),
        reads OCR's number too. Why: the classifier's box is often a proposal on the sign's
        inner disc, where a 50 can read as 30; OCR reads the legend whole. Two readers then
        agree on one number, through crops neither first looked at, so six of the seven
        crops suffice here (`SETTLE_AGREEMENT`; a small box with no OCR check needs all
        seven); otherwise the value stays dropped (`grown_look` off: never)."""
        assert self._classifier is not None
        if not self.config.grown_look or ocr is None or ocr.value is None or \
                ocr.sign_class != "speed_limit" or reading.box is None or \
                ocr.confidence < self.config.min_confidence:
            return reading
        class_id = speed_limit_id(ocr.value, ocr.unit)
        if class_id is None or self._classifier.grown_agrees(
                rgb, reading.box, class_id, SETTLE_AGREEMENT) is None:
            return reading
        return with_ocr_value(reading, ocr)

    def _speed_proposals(self, bgr: np.ndarray, boxes: Sequence[Box],
                         results: Sequence[SignClass], taken: Sequence[Box], budget: int,
                         outlines_from: int | None = None, scale: float = 1.0
                         ) -> list[tuple[float, _Job]]:
        """Ring jobs for proposals the classifier rejected but leaned towards a speed limit on
        (its speed classes together >= `ocr_speed_mass`), most speed-like first, one per
        place, none where a sign or a finder candidate already is. Why: speed signs of other
        countries (thinner rims, other fonts, values GTSRB lacks such as 40 and 90) are proposed
        by colour but not always found as a ring by the shape finder, and the classifier only
        says "some speed limit"; OCR's strict reading of the number (glyph count, text height,
        plausible value) then decides, as for the finder's rings. At most `budget` jobs
        (the frame's OCR reads left): the crops are only prepared for those. `boxes` from
        `outlines_from` on are round outlines (Hough circles); the others, colour regions'
        boxes, are refitted to the ring inside them first (`fit_rings`). `scale`: the search
        image's pixels per frame pixel (`speed_proposal_px` counts search pixels)."""
        cfg = self.config
        budget = min(budget, cfg.speed_proposals)
        if cfg.ocr_speed_mass >= 1.0 or budget <= 0:
            return []
        # a legend under `confirm_below_px` must read the same in both passes (`_reading`)
        min_side = max(cfg.min_value_px, cfg.speed_proposal_px / scale)
        order = sorted((i for i, r in enumerate(results) if r.speed_mass >= cfg.ocr_speed_mass
                        and min(boxes[i].w, boxes[i].h) >= min_side),
                       key=lambda i: -results[i].speed_mass)
        out: list[tuple[float, _Job]] = []
        used = list(taken)
        for i in order:
            box, res = boxes[i], results[i]
            if any(box.iou(b) > 0.3 for b in used):
                continue
            used.append(box)
            cand = dataclasses.replace(self._ring_candidate(box, res, []), score=res.speed_mass,
                                       found_by=_SPEED_PROPOSAL)
            job = self._job(bgr, cand)
            # (a round outline is a fitted circle already)
            fitted = self._fitted_job(bgr, cand) if cfg.fit_rings and (
                outlines_from is None or i < outlines_from) else None
            if fitted is not None:
                fitted.fallback = job if job is not None and job.kind == "ring" else None
                job = fitted
            if job is not None and job.kind == "ring":
                job.classifier_value = res.value
                out.append((res.speed_mass, job))
                if len(out) >= budget:
                    break
        return out

    def _fitted_job(self, bgr: np.ndarray, cand: SignCandidate) -> _Job | None:
        """A ring job for the ring fitted inside `cand`'s box (`fit_ring`), the candidate
        otherwise unchanged, when that ring differs from the box (IoU < `_REFIT_IOU`); None
        otherwise, or when the fitted legend gives no ring job."""
        fitted = fit_ring(bgr, cand.box)
        if fitted.iou(cand.box) >= _REFIT_IOU:
            return None
        job = self._job(bgr, dataclasses.replace(cand, box=fitted, legend=_ring_legend(fitted)))
        return job if job is not None and job.kind == "ring" else None

    def _circle_reads(self, bgr: np.ndarray, circles: Sequence[Box],
                      results: Sequence[SignClass], taken: Sequence[Box], budget: int,
                      glyphs: tuple[int, ...] = (2, 3)) -> list[tuple[float, _Job]]:
        """Ring jobs for big round outlines no sign, candidate or other job covers, largest
        first, at most `budget` and _CIRCLE_READS_PER_FRAME. Why without the classifier's
        vote: a speed limit of another country seen from near (a thin maroon rim against the
        light, a 40 or 90 GTSRB has no class for) is no colour region and is misclassified
        outright (a 40 as a roundabout at 0.97), yet its number is big and clear; OCR's
        strictest reading decides (see `circle_read_px`)."""
        min_px = self.config.circle_read_px
        budget = min(budget, _CIRCLE_READS_PER_FRAME)
        if min_px <= 0 or budget <= 0:
            return []
        used = list(taken)
        out: list[tuple[float, _Job]] = []
        for box, res in sorted(zip(circles, results), key=lambda br: -br[0].area):
            if min(box.w, box.h) < min_px or \
                    any(box.iou(u) > 0.3 or box.coverage_by(u) > 0.5 for u in used):
                continue  # (a circle inside a sign is one of its digits or its inner edge)
            # a speed number here has two or three glyphs (circle_read_ok wants as many digits
            # read): on the development photos 237 of 258 outlines read in vain held one blob
            # (a wheel's hub, a lamp), skipped before the recogniser runs
            job = self._ring_read_job(bgr, box, res, _CIRCLE_READ, glyphs)
            if job is not None:
                # only an outline that is read hides the circles inside it: a large false
                # outline (around a sign and its post) must not hide the sign's own rim
                used.append(box)
                if self.config.fit_rings:
                    # the ring fitted inside, read beside it (`fit_rings`), with the glyphs
                    # asked of the outline: a big outline's inner ring is another sign's
                    fitted = self._fitted_job(bgr, job.cand)
                    job.fallback = fitted if fitted is not None and fitted.glyphs in glyphs \
                        else None
                out.append((res.speed_mass, job))
                if len(out) >= budget:
                    break
        return out

    def _ring_read_job(self, bgr: np.ndarray, box: Box, res: SignClass, found_by: str,
                       glyphs: Collection[int]) -> _Job | None:
        """The ring job of a ring OCR alone reads (`found_by`: a round outline, a ring fitted in
        a proposal), scored 1 as a fitted shape is, when its legend holds one of `glyphs`
        counted glyphs; None otherwise."""
        ring = self._ring_candidate(box, res, [])
        job = self._job(bgr, dataclasses.replace(ring, score=1.0, found_by=found_by))
        return job if job is not None and job.kind == "ring" and job.glyphs in glyphs else None

    def _proposal_rings(self, bgr: np.ndarray, boxes: Sequence[Box],
                        results: Sequence[SignClass], masks: dict[str, np.ndarray],
                        scale: float, taken: Sequence[Box], budget: int
                        ) -> list[tuple[float, _Job]]:
        """Ring jobs (`_circle_reads`) on the round outlines found inside the largest colour
        proposals with red paint (`proposal_ring_reads`, `ring_in`). Why: a pale rim is too
        unsaturated for the finder's ring and too faint an edge against the sky for the
        frame's Hough pass, yet the proposal's box holds it, and one Hough pass on that box
        finds it; the classifier, trained on GTSRB, calls a 40 or a 5 background."""
        n = self.config.proposal_ring_reads
        min_px = self.config.circle_read_px
        if n <= 0 or min_px <= 0 or budget <= 0:
            return []
        max_px = _RING_READ_MAX_SHARE * min(bgr.shape[:2])
        order = sorted((i for i, b in enumerate(boxes) if min_px <= min(b.w, b.h)
                        and max(b.w, b.h) <= max_px), key=lambda i: -boxes[i].area)
        rings: list[Box] = []
        ring_results: list[SignClass] = []
        tried = 0
        for i in order:
            box = boxes[i]
            if any(box.iou(t) > 0.3 for t in taken):
                continue
            red = paint_share(masks, box.scaled(scale), "red")
            side = min(box.w, box.h)  # a tall box is a sign on its post: the top square
            middle = Box(box.x + box.w / 2 - side / 4, box.y + side / 4, side / 2, side / 2)
            if red < _RING_READ_RED or \
                    paint_share(masks, middle.scaled(scale), "red") > _RING_MIDDLE_RED * red:
                continue
            tried += 1
            ring = ring_in(bgr, box)
            if ring is not None:
                rings.append(ring)
                ring_results.append(results[i])
            if tried >= n:
                break
        return self._circle_reads(bgr, rings, ring_results, taken, budget, _RING_READ_GLYPHS)

    def _ranked_rings(self, bgr: np.ndarray, rgb: np.ndarray, boxes: Sequence[Box],
                      results: Sequence[SignClass], masks: dict[str, np.ndarray],
                      scale: float, taken: Sequence[Box], budget: int
                      ) -> list[tuple[float, _Job]]:
        """Ring jobs (`ranked_ring_reads`) for the rings fitted inside the red colour
        proposals the classifier leaned most towards a speed limit, those whose fitted ring
        it then takes for one (speed mass >= `ocr_speed_mass`), the most speed-like first.
        Why: a colour proposal is often looser than its sign (the sign with its post, or
        with the sign above it), and the classifier's speed mass on the loose box is low
        (Kaggle road357's 40: 0.14 on the proposal, 0.55 on the ring fitted in it), so the
        speed-proposal reads never see it; a value GTSRB has no class for (40, 90, 5) then
        has only OCR, which reads it through a tight box. At most `_RANKED_RING_TRIES` Hough
        passes a frame, on proposals of at least `speed_proposal_px` search pixels (`scale`:
        the search image's pixels per frame pixel, as for `masks`)."""
        n = min(self.config.ranked_ring_reads, budget)
        if n <= 0 or self._classifier is None:
            return []
        min_side = max(self.config.min_value_px, self.config.speed_proposal_px / scale)
        order = sorted((i for i, b in enumerate(boxes) if min(b.w, b.h) >= min_side
                        and results[i].speed_mass >= _RANKED_MIN_MASS),
                       key=lambda i: -results[i].speed_mass)
        rings: list[Box] = []
        tried: list[Box] = []
        for i in order:
            if len(tried) >= _RANKED_RING_TRIES:
                break
            box = boxes[i]
            if any(box.iou(t) > 0.3 for t in taken) or \
                    any(box.iou(t) > _RANKED_RING_SAME for t in tried) or \
                    paint_share(masks, box.scaled(scale), "red") < _RING_READ_RED:
                continue
            tried.append(box)
            ring = ring_in(bgr, box)
            if ring is not None and min(ring.w, ring.h) >= min_side:
                rings.append(ring)
        if not rings:
            return []
        found = self._classifier.results(
            self._classifier.probabilities(prepare_crops(rgb, rings)))
        jobs: list[tuple[float, _Job]] = []
        used = list(taken)
        for i in sorted(range(len(rings)), key=lambda i: -found[i].speed_mass):
            ring, res = rings[i], found[i]
            if res.speed_mass < self.config.ocr_speed_mass:
                break
            if any(ring.iou(u) > 0.3 or ring.coverage_by(u) > 0.5 for u in used):
                continue
            # (scored 1 as a round outline is: the classifier's mass caps what is published)
            job = self._ring_read_job(bgr, ring, res, _RANKED_RING, _RING_READ_GLYPHS)
            if job is None:
                continue
            used.append(ring)
            jobs.append((res.speed_mass, job))
            if len(jobs) >= n:
                break
        return jobs

    @staticmethod
    def _ring_candidate(box: Box, res: SignClass, cands: list[SignCandidate]) -> SignCandidate:
        """The finder's ring candidate on this sign, or one made from the classifier's box (a
        speed sign's legend is the inner ~70 % of the disc), for OCR's second opinion."""
        rings = [c for c in cands if c.border == "red" and not c.filled
                 and c.shape == Shape.CIRCLE and c.box.iou(box) > 0.5]
        if rings:
            return max(rings, key=lambda c: c.box.iou(box))
        border = "white" if res.sign_class == "end_speed_limit" else "red"
        return SignCandidate(box, Shape.CIRCLE, border, "white", False, res.probability,
                             _ring_legend(box), found_by=_CLASSIFIER_BOX)

    def _recognize(self, crops: list[np.ndarray]) -> list[TextRead]:
        if not crops:
            return []
        try:
            res, _ = self._engine.text_rec(crops)
        except Exception as exc:  # onnxruntime raises plain RuntimeErrors
            raise AnalysisError(f"PP-OCR recognition failed: {exc}") from exc
        return [TextRead(str(t), float(s)) for t, s in res]

    def _run(self, jobs: list[_Job], crops: list[list[np.ndarray]], alt: bool = False) -> None:
        """Recognise all crops of all jobs in one batched call."""
        flat = [c for cs in crops for c in cs]
        with self.part_times.part("recognise"):
            reads = self._recognize(flat)
        i = 0
        for job, cs in zip(jobs, crops):
            if alt:
                job.alt_reads = reads[i:i + len(cs)]
            else:
                job.reads = reads[i:i + len(cs)]
            i += len(cs)

    def _unknown_value_read(self, bgr: np.ndarray, job: _Job, reading: SignReading) -> bool:
        """Whether one of the job's passes alone surely reads a speed value GTSRB has no class
        for, other than the classifier's `reading`. Why: a small legend needs both passes to
        agree before OCR's value is published, but one sure read of a 90 is evidence enough
        that the classifier's 80 is the nearest class it knows, not the sign (Kaggle road422).
        Values GTSRB has are left to the agreement rule: on the GTSDB photos a single pass
        contradicted 13 right classifier values of 15-30 px signs."""
        return any(unknown_value(one) and one.value != reading.value
                   for one in self._pass_readings(bgr, [job]))

    def _pass_values(self, bgr: np.ndarray, jobs: Sequence[_Job]) -> set[tuple[str, float]]:
        """The (class, value) pairs that any single pass of `jobs` reads."""
        return {(one.sign_class, one.value) for one in self._pass_readings(bgr, jobs)
                if one.value is not None}

    def _pass_readings(self, bgr: np.ndarray, jobs: Sequence[_Job]) -> list[SignReading]:
        """Each pass of each of `jobs` (colour, then binarized when it ran) interpreted on its
        own, without the two-pass agreement `_reading` asks of small legends."""
        out = []
        for job in jobs:
            for reads in (job.reads, job.alt_reads):
                one = self._interpret(bgr, job, reads) if reads else None
                if one is not None:
                    out.append(one)
        return out

    def _check_read(self, bgr: np.ndarray, job: _Job, classified: SignReading
                    ) -> SignReading | None:
        """OCR's reading of the legend of a sign the classifier `classified`, its second
        opinion: through the sign's box, or through the ring fitted inside it (`fit_rings`,
        `job.fallback`) when that reads surer, no pass of either reads another number, and it
        has no fewer digits than the classifier's value; otherwise the box's own reading, as
        without the fit. Why: a classifier box wider than the ring puts the rim in the legend,
        and OCR then reads nothing or a bracket, so a classifier value of the wrong class (a
        foreign 100 taken for 80) stood unchecked (Kaggle road0-437: 6 more values, 1 wrong
        fewer). Not with fewer digits: a ring fitted to the rim's inner edge cuts off the "1"
        of a 120 (GTSDB at 1080p: three right values dropped over a "20" or a "10")."""
        ocr = self._reading(bgr, job)
        if job.fallback is None or len(self._pass_values(bgr, [job, job.fallback])) > 1:
            return ocr
        other = self._reading(bgr, job.fallback)
        if other is None or (classified.value is not None and
                             digit_count(other.text) < value_digits(classified.value)):
            return ocr
        return _surer(ocr, other)

    def _passes_agree_on_more_digits(self, bgr: np.ndarray, job: _Job,
                                     classified: SignReading, ocr: SignReading | None) -> bool:
        """Whether OCR's check `ocr` of the classifier's speed value (`classified`) has more
        digits than it and at least two of the check's passes (the box's colour and binarized
        reads, the fitted ring's) read that value at >= `AGREED_PASS_SCORE` while none reads
        another number. Why: a foreign 100 of 20-23 px is an 80 or a 50 to the classifier,
        and its digits touch at that size, so the glyph count that `other_digit_count` asks
        for sees one or two blobs; two passes agreeing on three digits are the evidence
        instead (Kaggle road221/226/408). Only more digits, as there: a lost "1" is the
        common misread, an invented one is not."""
        if ocr is None or ocr.value is None or ocr.sign_class != "speed_limit" or \
                classified.sign_class != "speed_limit" or classified.value is None or \
                digit_count(ocr.text) <= value_digits(classified.value):
            return False
        passes = self._pass_readings(bgr, [j for j in (job, job.fallback) if j is not None])
        if {p.value for p in passes if p.value is not None} != {ocr.value}:
            return False
        return sum(1 for p in passes if p.value == ocr.value
                   and p.confidence >= AGREED_PASS_SCORE) >= 2

    def _is_small(self, job: _Job) -> bool:
        return job.kind != "us" and job.cand.legend.h < self.config.confirm_below_px

    def _reading(self, bgr: np.ndarray, job: _Job) -> SignReading | None:
        """The job's reading: from the first pass, else the binarized pass; small legends
        need both passes to agree on class and value."""
        first = self._interpret(bgr, job, job.reads)
        alt = self._interpret(bgr, job, job.alt_reads) if job.alt_reads is not None else None
        if self._is_small(job):
            if first is None or alt is None or (first.sign_class, first.value) != \
                    (alt.sign_class, alt.value):
                return None
            return first if first.confidence >= alt.confidence else alt
        return first if first is not None else alt

    def _without_text(self, bgr: np.ndarray, cand: SignCandidate
                      ) -> tuple[bool, SignReading | None]:
        """Classes that shape and colour decide alone (or with a simple legend check):
        (True, reading) when decided, (True, None) when the candidate is to be skipped, and
        (False, None) when its text has to be read."""
        def reading(cls: str, conf: float) -> tuple[bool, SignReading]:
            return True, SignReading(cls, float(min(1.0, conf)), "ocr", box=cand.box)

        if cand.border == "red" and cand.shape == Shape.TRIANGLE_DOWN and not cand.filled:
            return reading("yield", cand.score)
        if cand.border == "red" and cand.shape == Shape.TRIANGLE_UP and not cand.filled:
            crop = enlarge(legend_crop(bgr, cand.legend), self.config.legend_height_px)
            if crop.size and is_exclamation(crop):
                return reading("general_caution", cand.score * 0.9)
            return True, None  # other warning signs differ only in pictograms: skip
        if cand.border == "yellow" and cand.shape == Shape.DIAMOND:
            # 'End of priority road' crosses the yellow field with dark stripes.
            cls = "end_priority_road" if cand.dark_fraction > 0.15 else "priority_road"
            return reading(cls, cand.score)
        if cand.border == "red" and cand.filled and cand.shape == Shape.CIRCLE:
            crop = legend_crop(bgr, cand.legend)
            if crop.size and is_bar(enlarge(crop, self.config.legend_height_px)):
                return reading("no_entry", cand.score * 0.95)
        return False, None

    def _job(self, bgr: np.ndarray, cand: SignCandidate) -> _Job | None:
        """The crop(s) to read for a candidate whose class depends on its text."""
        height = self.config.legend_height_px
        # A ring's legend box is its inner disc exactly; other legends get a small margin.
        ring = cand.border == "red" and not cand.filled and cand.shape == Shape.CIRCLE
        legend = legend_crop(bgr, cand.legend if ring else cand.legend.expanded(0.04))
        if legend.size == 0 or min(legend.shape[:2]) < 6:
            return None
        legend = shrink(legend, 3 * height)
        if cand.border == "red" and not cand.filled and cand.shape == Shape.CIRCLE:
            if cand.inner != "white":
                return None  # red ring on blue: no parking / no stopping, no text to read
            face = enlarge(whiten_outside_ellipse(legend), height)
            bands = row_bands(dark_mask(face), min_frac=0.5)
            if not bands:
                return None
            # For counting glyphs, also drop the blurred inner edge of the rim.
            core = enlarge(whiten_outside_ellipse(legend, 0.92), height)
            # The tallest row is the text; arrowheads of height limits are rows of their own.
            a, b = max(bands, key=lambda ab: ab[1] - ab[0])
            pad = max(2, (b - a) // 5)
            row = face[max(0, a - pad):b + pad] if len(bands) > 1 else face
            ink = dark_mask(core)
            glyphs = count_glyphs(ink[a:b])
            if glyphs == 1:
                top = max(0, a - pad)
                row = ink_columns(face[top:b + pad], ink[top:b + pad], b - a)
            # digits joined by a thin line count apart; the cut above keeps to the plain count
            # (a small 120 whose digits touch the rim reads right only when cut to its ink)
            glyphs = max(glyphs, count_glyphs(without_bridges(ink[a:b])))
            return _Job(cand, "ring", [enlarge(row, height)],
                        text_height=(b - a) / face.shape[0], glyphs=glyphs)
        if cand.border == "red" and cand.filled:
            return _Job(cand, "stop", [enlarge(legend, height)], light_legend=True)
        if cand.border == "blue":
            return _Job(cand, "blue", [enlarge(legend, height)], light_legend=True)
        if cand.border == "white" and cand.shape == Shape.RECTANGLE:
            big = enlarge(legend, 3 * height)
            bands = row_bands(dark_mask(big))
            if not bands:
                return None
            crops = [enlarge(big[max(0, a - 3):b + 3], height) for a, b in bands]
            return _Job(cand, "us", crops, rows=len(bands))
        if cand.border == "white" and cand.shape in (Shape.CIRCLE, Shape.OCTAGON):
            return _Job(cand, "end", [without_stripes(whiten_outside_ellipse(legend))])
        return None

    def _interpret(self, bgr: np.ndarray, job: _Job, reads: list[TextRead]
                   ) -> SignReading | None:
        """Interpret one pass of a job's text; None when it does not make a valid reading."""
        cfg = self.config
        cand = job.cand
        good = [r for r in reads if r.score >= cfg.min_text_score and r.text.strip()]
        if not good:
            return None
        text = " ".join(r.text.strip() for r in good)[:64]

        def reading(cls: str, score: float, value: float | None = None, unit: str = ""
                    ) -> SignReading:
            return SignReading(cls, float(min(1.0, score * cand.score)), "ocr", value=value,
                               unit=unit, text=text, box=cand.box)

        if job.kind in ("ring", "end", "blue"):
            best = max(good, key=lambda r: r.score)
            num = parse_number(best.text)
            if job.kind == "blue":
                if num is not None and num.unit in ("", "km/h") and \
                        plausible("minimum_speed", num.value, "km/h"):
                    return reading("minimum_speed", best.score, num.value, "km/h")
                if cand.shape == Shape.RECTANGLE and letters(best.text) == "P":
                    return reading("parking", best.score)
                return None
            if num is None:
                return None
            if job.kind == "end":
                if num.unit in ("", "km/h") and plausible("end_speed_limit", num.value, "km/h"):
                    return reading("end_speed_limit", best.score, num.value, "km/h")
                return None
            if num.unit in ("t", "m"):
                if num.unit == "t":
                    cls = "weight_limit"
                else:
                    crop = enlarge(whiten_outside_ellipse(legend_crop(bgr, cand.legend)),
                                   cfg.legend_height_px)
                    found = limit_class(crop) if crop.size else None
                    if found != "height_limit":
                        # No arrowheads seen (height or width?), or arrowheads beside the text,
                        # which the recogniser reads into it ("2.2 m" as "2m"): skip.
                        return None
                    cls = found
                value, score = _decimal_point(cls, num.value, num.unit, best.score)
                if value is None:
                    return None
                return reading(cls, score, value, num.unit)
            if num.unit == "" and not float(num.value).is_integer() and \
                    job.text_height < _MIN_SPEED_TEXT_HEIGHT:
                # Small text with a decimal point on a red ring, its unit not read: with
                # arrowheads a height or width limit, without them a weight limit ("7.5").
                # (A bare integer could be anything with a lost digit or unit: skipped.)
                crop = enlarge(whiten_outside_ellipse(legend_crop(bgr, cand.legend)),
                               cfg.legend_height_px)
                cls = (limit_class(crop) if crop.size else None) or "weight_limit"
                if cls == "width_limit":
                    return None
                unit = "t" if cls == "weight_limit" else "m"
                if not plausible(cls, num.value, unit):
                    return None
                return reading(cls, best.score * 0.8, num.value, unit)
            if num.unit not in ("", "km/h") or not plausible("speed_limit", num.value, "km/h"):
                return None
            digits = digit_count(best.text)
            if job.glyphs > digits and not (
                    cfg.spare_rim_blob and rim_blob(num.value, job.glyphs, digits)):
                return None  # a digit more on the sign than in the text: misread
            if job.text_height < _MIN_SPEED_TEXT_HEIGHT:
                # Small text on a red ring with its unit unread: a weight or height limit
                # whose "t" or "m" was lost; publishing it as a speed would be wrong.
                return None
            return reading("speed_limit", best.score, num.value, "km/h")
        if job.kind == "stop":
            if any(says(r.text, "STOP") for r in good):
                best = max(r.score for r in good if says(r.text, "STOP"))
                return reading("stop", best)
            # A ring sign in front of red paint is found as a red disc; a large number on it
            # is a speed limit all the same.
            num = parse_number(max(good, key=lambda r: r.score).text)
            if num is not None and num.unit in ("", "km/h") and \
                    plausible("speed_limit", num.value, "km/h"):
                return reading("speed_limit", good[0].score * 0.8, num.value, "km/h")
            return None
        if job.kind == "us":
            words = " ".join(r.text for r in good)
            nums = [(i, r, parse_number(r.text)) for i, r in enumerate(reads) if r in good]
            nums = [(i, r, n) for i, r, n in nums if n is not None and n.unit in ("", "mph")]
            if not nums:
                return None
            i, r, n = max(nums, key=lambda t: t[1].score)
            if not plausible("speed_limit", n.value, "mph"):
                return None
            # A white rectangle with a number is also a house number or a price tag: require
            # the words, or the layout of SPEED LIMIT (text rows above the number, which is
            # the last row).
            if says(words, "SPEED") or says(words, "LIMIT"):
                return reading("speed_limit", r.score, n.value, "mph")
            if i == job.rows - 1 and i >= 1:
                return reading("speed_limit", r.score * 0.8, n.value, "mph")
            return None
        return None


# A box reading a value stands in for a speed-family answer on the same sign only when it is at
# least this share of that box's area: a value read on a smaller box inside it (an inner disc)
# published wrong values on sign crops (120 read as 100 three times).
FAMILY_YIELD_AREA = 0.8


def at_learned_scales(boxes: Sequence[Box]) -> list[Box]:
    """Each learned box at each of the `LEARNED_SCALES` about its centre, scale by scale (the
    boxes at their own size first)."""
    return [b.expanded((g - 1) / 2) for g in LEARNED_SCALES for b in boxes]


def _hides_rings(cand: SignCandidate) -> bool:
    """Whether a finder candidate keeps the ring reads (round outlines, speed proposals, rings
    in red proposals) off its place: all but white rectangles. Why: the white plate a speed
    sign is mounted on, or a signboard behind it, is found as a US-style rectangle whose job
    reads an mph limit only under the words SPEED LIMIT; it read nothing, and the sign's own
    red ring, proposed at speed mass 0.88, went unread (Kaggle road406, a 100)."""
    return not (cand.border == "white" and cand.shape == Shape.RECTANGLE)


def reader_looks(box: Box) -> list[Box]:
    """The speed-value reader's looks at a sign's box when it checks a value: the box, grown
    and shrunk by 10 % (a box a little off the sign reads surely in one of them)."""
    return [box, box.expanded(0.1), box.expanded(-0.1)]


LOST_ZERO_VALUES = frozenset({5.0, 10.0})
"""km/h values that are another limit less its trailing 0 (50, 100): `lost_zero_guard`."""
LOST_ZERO_PROBABILITY = 0.9
"""The speed-value reader's probability of ten times such a value that drops it."""


def _ring_legend(box: Box) -> Box:
    """A speed sign's legend inside its ring's box: the inner ~70 % of the disc."""
    return Box(box.x + 0.15 * box.w, box.y + 0.15 * box.h, 0.7 * box.w, 0.7 * box.h)


def one_per_sign(readings: Sequence[SignReading]) -> list[SignReading]:
    """`readings` less those that repeat a surer reading of the same class and value on the
    same place (boxes at IoU > 0.5, or one inside the other by more than 0.8 of its area),
    in their order. Why: two routes can read one sign through boxes that their own overlap
    checks did not see as one (a round outline's ring read and a speed proposal whose box was
    refitted onto the same ring afterwards: Kaggle road295's 40 at 1080p, published twice), and
    a planner would count two signs."""
    keep: list[SignReading] = []
    for r in sorted(readings, key=lambda r: -r.confidence):
        if r.box is None or not any(
                k.box is not None and (k.sign_class, k.value, k.unit) == (r.sign_class, r.value,
                                                                          r.unit)
                and (k.box.iou(r.box) > 0.5 or r.box.coverage_by(k.box) > 0.8
                     or k.box.coverage_by(r.box) > 0.8) for k in keep):
            keep.append(r)
    kept = {id(r) for r in keep}
    return [r for r in readings if id(r) in kept]


def _surer(a: SignReading | None, b: SignReading | None) -> SignReading | None:
    """The more confident of two readings of one place (a box and the ring fitted in it); `a`
    on a tie, the other when one is None."""
    if a is None or (b is not None and b.confidence > a.confidence):
        return b
    return a


def _circle_fits(cand: SignCandidate) -> bool:
    """Whether a ring job's box may be refitted to a circle (`fit_rings`): any box but the
    finder's own ellipse fit far from round (sides more than _ROUNDISH_ASPECT apart), a sign
    seen at an angle that no circle fits."""
    box = cand.box
    return cand.found_by == _CLASSIFIER_BOX or \
        max(box.w, box.h) <= _ROUNDISH_ASPECT * min(box.w, box.h)


def _added_reading(res: SignClass) -> bool:
    """Whether the classifier's answer on a learned box added to the full search
    (`learned_adds`) may stand: sure (`ADDED_MIN_PROBABILITY`), and not a speed limit without
    its number, which would take the place of a proposal OCR reads the value of (Kaggle
    road412's 100)."""
    return res.probability >= ADDED_MIN_PROBABILITY and not (
        res.sign_class == "speed_limit" and res.value is None)


def _coloured(bgr: np.ndarray, box: Box) -> bool:
    """Whether `box` shows some saturated colour (its 90th percentile of HSV saturation at
    least ADDED_MIN_SATURATION): what an added learned box must show in place of the paint
    check. A dark sign's rim keeps its hue (93 dark placed speed limits: 73 or more in 95 %),
    a stock photo's white copyright mark on grey does not (22; read as 100 at 0.99)."""
    rows, cols = box.int_slices(bgr.shape[1], bgr.shape[0])
    patch = bgr[rows, cols]
    if patch.size == 0:
        return False
    sat = cv2.cvtColor(patch, cv2.COLOR_BGR2HSV)[..., 1]
    return float(np.percentile(sat, 90)) >= ADDED_MIN_SATURATION


def _near(boxes: Sequence[Box], others: np.ndarray, iou: float) -> list[bool]:
    """For each of `boxes`, whether it overlaps one of `others` (N x 4 `box_array`) by IoU >
    `iou`; one matrix, not ~1,600 Box.iou calls in Python (22 ms a 1080p frame)."""
    if not boxes or not len(others):
        return [False] * len(boxes)
    return (iou_matrix(box_array(boxes), others) > iou).any(axis=1).tolist()


def _not_known(boxes: Sequence[Box], known: np.ndarray, iou: float, min_area: float = 0.0
               ) -> list[Box]:
    """`boxes` less those overlapping a `known` box (N x 4 `box_array`) by IoU > `iou`; with
    `min_area`, only known boxes of at least that share of the box's area count."""
    if not boxes or not len(known):
        return list(boxes)
    areas = known[:, 2] * known[:, 3]
    return [b for b, row in zip(boxes, iou_matrix(box_array(boxes), known))
            if not ((row > iou) & (areas >= min_area * b.area)).any()]


def values_over_family(signs: Sequence[tuple[Box, SignClass]], scores: Sequence[float],
                       keep: Sequence[int], iou_threshold: float) -> list[int]:
    """`keep` (the NMS survivors of `signs`) with each speed-family answer (sure of a speed
    limit, not of which) replaced by the best suppressed box of the same sign (IoU above
    `iou_threshold`, at least FAMILY_YIELD_AREA of its area) that reads a speed value, when
    at least as many of the sign's boxes read that value as answer the family. Why: the
    family's probability is the eight speed classes' sum, so it outranks any one class on a
    near box of the same sign, and NMS then dropped a value the classifier did read
    (development photos 170 -> 172 of 199, 0 wrong; held-out GTSRB crops 30-60 px 98.4 ->
    98.6 %). Why the vote: one box among many that reads a value is the classifier's guess at
    a small foreign sign, not a reading (Kaggle road231's 20 px 100: one box of six said 80;
    with the learned proposer's boxes, each classified at three scales, 3 of 5 wrong values on
    Kaggle road0-437 went; the colour search's readings are the same with it)."""
    taken = set(keep)
    out = []
    for k in keep:
        box, res = signs[k]
        if res.gtsrb is None:
            alternatives = [j for j, (b, r) in enumerate(signs) if j not in taken and
                            r.gtsrb is not None and r.gtsrb.is_speed_limit and
                            b.iou(box) > iou_threshold and b.area >= FAMILY_YIELD_AREA * box.area]
            if alternatives:
                best = max(alternatives, key=lambda j: scores[j])
                value = signs[best][1].value
                family = sum(1 for b, r in signs
                             if r.gtsrb is None and b.iou(box) > iou_threshold)
                if sum(1 for j in alternatives if signs[j][1].value == value) >= family:
                    k = best
                    taken.add(k)
        out.append(k)
    return out


# The margin (share of the crop on each side) around a sign crop's sign: GTSRB documents 10 %
# of the sign (at least 5 px; its training crops' ROI columns give 0.08-0.19 by crop width).
# Three boxes (0.08, 0.14, 0.2), or one at 0.14, read within one crop as many held-out
# GTSRB crops right and published as many or more wrong values: one box at 0.1 it is.
WHOLE_FRAME_MARGIN = 0.1


def whole_frame(width: int, height: int, config: OcrConfig) -> list[Box]:
    """The box a sign crop's sign fills (`whole_frame_px`): the frame less WHOLE_FRAME_MARGIN
    on every side, in a list; empty for a frame too big to be a crop."""
    if config.whole_frame_px <= 0 or max(width, height) > config.whole_frame_px:
        return []
    m = WHOLE_FRAME_MARGIN
    return [Box(m * width, m * height, (1 - 2 * m) * width, (1 - 2 * m) * height)]


def _paint(res: SignClass) -> str:
    """The paint colour a classified sign must show ("" for grey/white signs)."""
    return res.gtsrb.paint if res.gtsrb is not None else "red"  # a speed limit's rim


def _painted(res: SignClass, box: Box, masks: dict[str, np.ndarray], scale: float,
             min_paint: float) -> bool:
    """Whether `box` (full-frame coordinates; the masks are the search image's, `scale` of it)
    shows the paint of the sign it was classified as, at least `min_paint` of it: white
    letters, lamps and faces the network takes for a sign do not. Grey and white signs pass."""
    paint = _paint(res)
    return not paint or paint_share(masks, box.scaled(scale), paint) >= min_paint


# Classes some GTSRB class stands for: from a candidate the classifier rejected, OCR may not
# publish these (the classifier knows them and said no); mph speed limits are US signs, which
# GTSRB lacks, so OCR keeps them.
_CLASSIFIER_CLASSES = frozenset(c.sign_class for c in GTSRB_CLASSES)


def ocr_only(reading: SignReading) -> bool:
    """Whether OCR may publish `reading` from a candidate the classifier rejected."""
    if reading.sign_class == "speed_limit":
        return reading.unit == "mph"
    return reading.sign_class not in _CLASSIFIER_CLASSES


def second_opinion(reading: SignReading, ocr: SignReading | None, min_confidence: float,
                   unknown_values: bool = True, glyphs: int = 0) -> SignReading:
    """The classifier's numbered reading checked against OCR's read of the same legend. When
    OCR reads a plausible number (or another numbered class) that differs, the value is
    dropped: the sign is still reported, but a wrong speed limit is worse than none. When OCR
    agrees, its text is kept; when it reads nothing usable, the classifier stands alone. A
    speed limit the classifier could not give a value fills it from OCR, and with
    `unknown_values` so does OCR's sure read of a value GTSRB has no class for (the classifier
    answers a 40 or a 90 with the nearest class it knows: Kaggle road0-437, 5 more values).
    With `glyphs` (the ring's counted glyphs; 0 = not counted), OCR's sure read whose digits
    are those glyphs also wins over a classifier value with fewer digits
    (`other_digit_count`)."""
    if ocr is None or ocr.confidence < min_confidence or ocr.value is None:
        return reading
    if reading.value is None:
        # the classifier saw a speed limit but not which (a 40 or 90: GTSRB has no such class):
        # OCR's number, validated by its own rules, is the value
        if ocr.sign_class == reading.sign_class:
            return with_ocr_value(reading, ocr)
        return reading
    if ocr.sign_class == reading.sign_class and ocr.value == reading.value and \
            ocr.unit == reading.unit:
        return dataclasses.replace(reading, text=ocr.text)
    # the classifier's value is the nearest GTSRB class to a sign it has no class for, or has
    # fewer digits than OCR's sure read on as many counted glyphs
    if (unknown_values and reading.sign_class == "speed_limit" and unknown_value(ocr)) or \
            (glyphs and other_digit_count(reading, ocr, glyphs)):
        return with_ocr_value(reading, ocr)
    return dataclasses.replace(reading, value=None, unit="", text=ocr.text)


def speed_lean(answer: SignClass) -> float | None:
    """The km/h value the classifier's answer leans to: its value, or without one the value of
    its most probable speed class; None when that is no speed class."""
    if answer.gtsrb is not None:
        return answer.value if answer.unit == "km/h" else None
    if answer.runner_up not in CLASSIFIER_LABELS:
        return None
    lean = CLASSIFIER_LABELS.index(answer.runner_up)
    return gtsrb_class(lean).value if lean in SPEED_LIMIT_IDS else None


def value_fill(reading: SignReading, read: ValueRead, classifier_value: float | None,
               ocr_value: float | None, min_probability: float,
               lean: float | None = None) -> SignReading | None:
    """The speed limit `reading`, left without a value, with the speed-value reader's number,
    or None. The reader must be sure (`min_probability`), and OCR must not have read another
    number on the same legend (two readers disagreeing: a wrong speed limit is worse than
    none). Then:

    - a number no GTSRB class carries (5, 10, 15, 40, 90, 110) fills the sign: that is why the
      classifier could not answer; where the classifier had a value of its own that OCR
      contradicted, OCR must have read the reader's number (two readers against one, Kaggle
      road111: a 110 the classifier calls 100);
    - a GTSRB value fills only when it is the classifier's `lean` (its value, or its most
      probable speed class: `speed_lean`) and OCR read nothing (the caller passes no lean
      otherwise: no number in either pass, no letters; `value_reader_lean`): two networks
      naming one number, where the classifier alone stayed under its threshold or its value
      did not hold as the crop moved. Letters matter: a protest card's "C" is a 100 to the
      classifier and to the reader alike (WIDER 2_Demonstration_..._990). Alone, the reader's
      sure mistakes on foreign designs are such values (Kaggle road0-437 through the labelled
      boxes, the first trained model: a 130 read as 100 at 0.99, 90s as 80 at 0.96).

    The reading is as sure as the less sure of the classifier and the reader."""
    if reading.sign_class != "speed_limit" or reading.value is not None or \
            not read.sure(min_probability) or read.value is None or \
            (ocr_value is not None and ocr_value != read.value):
        return None
    leaned = lean is not None and read.value == lean and ocr_value is None
    if speed_limit_id(read.value, "km/h") is not None and not leaned:
        return None
    if classifier_value is not None and ocr_value != read.value and not leaned:
        return None
    return dataclasses.replace(reading, value=read.value, unit="km/h",
                               confidence=min(reading.confidence, read.probability))


def ring_value(read: ValueRead, mass: float, box: Box, ocr_value: float | None,
               min_probability: float) -> SignReading | None:
    """The speed limit the speed-value reader reads on a red ring nothing else published
    (`OcrBackend._read_rings`), or None: the read must be sure (`min_probability`), of a
    value GTSRB lacks (`value_fill`'s reason) and not contradicted by OCR. Its confidence is
    the reader's probability capped at the classifier's speed mass, as for OCR's reads of
    such rings: the classifier did not vouch for the sign."""
    if not read.sure(min_probability) or read.value is None or \
            speed_limit_id(read.value, "km/h") is not None or \
            (ocr_value is not None and ocr_value != read.value):
        return None
    return SignReading("speed_limit", min(read.probability, mass), "classifier",
                       value=read.value, unit="km/h", text=f"{read.value:g}", box=box)


LOST_ONE_VALUES = frozenset({10.0, 20.0, 30.0})
"""Two-digit speed values that a leading 1 makes another one (110, 120, 130 km/h): what OCR
reads on a three-digit sign whose thin 1 it lost (`lost_leading_one`)."""


def lost_leading_one(answer: SignClass, value: float, unit: str) -> bool:
    """Whether OCR's `value`, filling the speed limit the classifier answered (`answer`)
    without its number, may be a three-digit sign's number less its leading 1: a 10, 20 or 30
    (`LOST_ONE_VALUES`) where the classifier's most probable speed class has three digits
    (`lost_one_guard`). Why: the thin 1 of a blurred 120 is what the recogniser loses or reads
    as the rim ("(20") and the blob count merges with the ring; a Kaggle 120 enlarged into a
    1080p frame and a GTSRB 120 placed into one (the classifier leaning to 120 and to 100)
    were published as 20 that way. Only this pattern: where the lean names another number of
    as many digits, OCR's fill is the one to trust (Kaggle road106's 60 leans to 80, road116's
    130 to 120), and a 40 or 90 has no class of its own to lean to."""
    if answer.gtsrb is not None or answer.runner_up not in CLASSIFIER_LABELS:
        return False
    lean = CLASSIFIER_LABELS.index(answer.runner_up)
    if lean not in SPEED_LIMIT_IDS:
        return False
    leaned = gtsrb_class(lean)
    return leaned.value is not None and leaned.unit == unit == "km/h" and \
        value_digits(leaned.value) == 3 and value in LOST_ONE_VALUES


def rim_blob(value: float, glyphs: int, digits: int) -> bool:
    """Whether the one blob more than OCR's digits on a ring (`glyphs` counted, `digits` read)
    cannot be a digit OCR lost, so that it is a piece of the rim or a branch across the disc
    (`spare_rim_blob`): a two-digit 40 to 90 with three blobs, since no speed limit is written
    140 to 190 or with a third digit after them. A 10, 20 or 30 with a blob more may be a
    110-130 whose thin 1 was lost, and a 5 with one more a 15 or a 50: those stay misreads.
    Why: Kaggle road297's clean 31 px 40 under a warning sign reads "40" at 1.0 in both passes,
    and a rim fragment made it three blobs."""
    return digits == 2 and glyphs == 3 and 40 <= value <= 90


def with_ocr_value(reading: SignReading, ocr: SignReading) -> SignReading:
    """The classifier's `reading` with OCR's value, unit and text, as sure as the less sure of
    the two: what every rule that lets OCR's number stand does."""
    return dataclasses.replace(reading, value=ocr.value, unit=ocr.unit, text=ocr.text,
                               confidence=min(reading.confidence, ocr.confidence))


def value_digits(value: float) -> int:
    """How many digits a speed value is written with (100 -> 3), for the digit rules."""
    return len(f"{value:g}")


def other_digit_count(reading: SignReading, ocr: SignReading, glyphs: int) -> bool:
    """Whether OCR surely (>= UNKNOWN_VALUE_SCORE) read a speed value whose digits are the
    `glyphs` counted on the disc while the classifier's speed value has fewer digits. Why:
    how many digits a sign holds is the one thing the blob count sees without reading them,
    and a classifier trained on German signs maps a 100 in a narrower font to its 80 (Kaggle
    road0-437: three 100s read as 80 or 50). Only more digits: the thin "1" of a 100 is
    what a crop cut at the rim loses, for the recogniser and the blob count alike."""
    if reading.sign_class != "speed_limit" or reading.value is None or \
            ocr.sign_class != "speed_limit" or ocr.value is None or \
            ocr.confidence < UNKNOWN_VALUE_SCORE:
        return False
    return digit_count(ocr.text) == glyphs > value_digits(reading.value)


UNKNOWN_VALUE_SCORE = 0.9
"""OCR confidence at which its read of a speed value GTSRB lacks overrules the classifier."""

AGREED_PASS_SCORE = 0.85
"""Confidence each of two OCR passes needs for their shared read of more digits than the
classifier's value to replace it (`OcrBackend._passes_agree_on_more_digits`): on the Kaggle
development photos 0.9 gave two of the three foreign 100s it was made for (one pass read
0.85), on GTSDB 00000-00599 neither threshold changed a value."""


def unknown_value(ocr: SignReading) -> bool:
    """Whether OCR surely read a speed limit whose value no GTSRB class carries (a 40, a 90, a
    5, or any mph value): the classifier cannot answer such a sign right."""
    return (ocr.sign_class == "speed_limit" and ocr.value is not None
            and ocr.confidence >= UNKNOWN_VALUE_SCORE
            and speed_limit_id(ocr.value, ocr.unit) is None)


def circle_read_ok(reading: SignReading, glyphs: int) -> bool:
    """Whether OCR's reading of a round outline nothing else vouched for (`circle_read_px`) is
    published: a speed limit with a value, read at a recogniser score >= _CIRCLE_READ_SCORE,
    whose digits are exactly the glyphs counted on the disc (a "10" on a drum counted as one
    blob, or a digit the recogniser invented, is not a sign's number)."""
    return (reading.sign_class == "speed_limit" and reading.value is not None
            and reading.confidence >= _CIRCLE_READ_SCORE and glyphs == digit_count(reading.text))


PICTOGRAM_RINGS = frozenset({"no_trucks", "no_vehicles", "no_overtaking",
                             "no_overtaking_trucks"})
"""GTSRB's red rings on white with a pictogram and no number: the classes the classifier gives
a speed sign it has no class for when the crop is loose (a 40 at 0.96 as no trucks, Kaggle
road161/road181), so they do not keep OCR's ring reads off their place (`ocr_on_pictograms`)."""
PICTOGRAM_NUMBER_IOU = 0.4
"""A speed value OCR read on a box overlapping a pictogram reading by more than this replaces
it (`numbers_over_pictograms`)."""


def numbers_over_pictograms(readings: list[SignReading], unjudged: set[int]
                            ) -> tuple[list[SignReading], set[int]]:
    """`readings` without the classifier's pictogram rings (`PICTOGRAM_RINGS`) on which OCR's
    strict ring read found a speed value, and `unjudged` (indices the verifier leaves alone)
    renumbered to match. Why: a pictogram has no digits; a number read there at the strictness
    of the ring reads (as many digits as glyphs, a plausible value) is the sign, and one sign
    is published once."""
    valued = [r.box for r in readings if r.source == "ocr" and r.sign_class == "speed_limit"
              and r.value is not None and r.box is not None]
    drop = {i for i, r in enumerate(readings)
            if r.source == "classifier" and r.sign_class in PICTOGRAM_RINGS and r.box is not None
            and any(v.iou(r.box) > PICTOGRAM_NUMBER_IOU for v in valued)}
    if not drop:
        return readings, unjudged
    kept = [i for i in range(len(readings)) if i not in drop]
    renumbered = {old: new for new, old in enumerate(kept)}
    return [readings[i] for i in kept], {renumbered[i] for i in unjudged if i in renumbered}


def ranked_ring_read(reading: SignReading | None, glyphs: int, mass: float
                     ) -> SignReading | None:
    """What OCR's reading of a ring fitted in a colour proposal (`ranked_ring_reads`)
    publishes: the round outlines' strict read (`circle_read_ok`), or, where the classifier
    took the ring for a speed limit (speed mass >= `_RANKED_SURE_MASS`), a speed value read at
    >= _CIRCLE_READ_SCORE whatever the glyphs counted, its confidence capped at that mass.
    Why the second: branches and shadows across a sign merge or split the blobs of its digits
    (Kaggle road357's 40 counts one), and the classifier's vote stands in for the count. A
    small legend's two passes must agree before either (`OcrBackend._reading`)."""
    if reading is None:
        return None
    if circle_read_ok(reading, glyphs):
        return reading
    if mass >= _RANKED_SURE_MASS and reading.sign_class == "speed_limit" and \
            reading.value is not None and reading.confidence >= _CIRCLE_READ_SCORE:
        return dataclasses.replace(reading, confidence=min(reading.confidence, mass))
    return None


def surest_circle_read(reads: Sequence[tuple[SignReading | None, int]]
                       ) -> SignReading | None:
    """The surest of a round outline's readings, (reading, glyphs counted on its own crop) of
    its box and of the ring fitted inside it, that passes `circle_read_ok`; None when none
    does. Why either: the box's legend may hold the rim, read as a bracket that lowers the
    recogniser's score ("(90" at 0.89, Kaggle road391), while the fitted ring's tighter crop
    may merge two digits into one counted glyph ("40" on one blob, Kaggle road269)."""
    passed = [r for r, glyphs in reads if r is not None and circle_read_ok(r, glyphs)]
    return max(passed, key=lambda r: r.confidence) if passed else None


HINT_SCORE = 0.85
"""Candidate score of a sign found through a text hint: below a clean shape fit (0.9-0.97),
since only its words, not its outline, were seen."""


def hint_candidates(hints: Sequence[TextHint], found: Sequence[SignCandidate], width: int,
                    height: int, stop_signs: bool = False) -> list[SignCandidate]:
    """Signs that the colour-and-shape search or the classifier missed but whose words the
    anonymizer's text detector read: SPEED LIMIT (a US sign's white face merges with a white
    wall or car behind it, so no outline separates it; the face is the text block grown by 12 %
    on each side, read as a `us` job) and STOP (a hazy or foreign stop sign the classifier
    calls background; read as a `stop` job and published only on red paint, which the
    classifier's path checks: `stop_signs` True there). Each reading is validated like any
    other. Hints already inside a candidate add nothing."""
    out = []
    for hint in hints:
        if stop_signs and says(hint.text, "STOP"):
            # the word spans about three quarters of a stop sign's width: the octagon is the
            # square around it, the word its legend
            cx, cy = hint.box.center
            side = hint.box.w / 0.75
            box = Box(cx - side / 2, cy - side / 2, side, side).clipped(width, height)
            cand = SignCandidate(box, Shape.OCTAGON, "red", "white", True, HINT_SCORE,
                                 hint.box.clipped(width, height), found_by=_HINT)
        elif says(hint.text, "SPEED") or says(hint.text, "LIMIT"):
            box = hint.box.expanded(0.12).clipped(width, height)
            cand = SignCandidate(box, Shape.RECTANGLE, "white", "black", True, HINT_SCORE, box,
                                 found_by=_HINT)
        else:
            continue
        if box.area <= 0 or any(box.coverage_by(c.box) > 0.5 for c in found):
            continue
        out.append(cand)
    return out


def _rapidocr_engine(config: OcrConfig) -> Any:
    """A RapidOCR instance (PP-OCRv4 ONNX models from the wheel)."""
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the ocr backend needs {OCR_PIN} (pip install '{OCR_PIN}'), or choose another "
            f"analysis.backend") from exc
    kwargs: dict[str, Any] = {"print_verbose": False, "rec_img_shape": [3, 48, OCR_REC_WIDTH]}
    if config.threads > 0:
        kwargs["intra_op_num_threads"] = config.threads
    try:
        engine = RapidOCR(**kwargs)
    except Exception as exc:  # missing model files, onnxruntime errors
        raise BackendUnavailableError(f"PP-OCR could not be loaded: {exc}") from exc
    if not hasattr(getattr(getattr(engine, "text_rec", None), "session", None), "session"):
        raise BackendUnavailableError(
            f"this {OCR_PACKAGE} has no text_rec recogniser session; install {OCR_PIN}")
    # The recogniser runs on a session of the package's engine and options (no busy-waiting
    # threads, `session_options`) rather than the wheel's own, which spins between runs.
    try:
        engine.text_rec.session.session = config.runtime().session(
            rapidocr_model(PP_OCR_REC), pad=REC_PAD)
    except Exception as exc:  # missing model file, engine errors
        raise BackendUnavailableError(f"PP-OCR could not be loaded: {exc}") from exc
    return engine


def _engine_id() -> str:
    try:
        from importlib.metadata import version
        ver = version(OCR_PACKAGE)
    except Exception:  # not installed as a distribution (vendored): still report the models
        ver = "unknown"
    return f"{OCR_PACKAGE} {ver} (PP-OCRv4 rec) + colour/shape sign candidates"
