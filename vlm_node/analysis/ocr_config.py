"""Settings of the `ocr` analysis backend (`analysis.ocr.*`): the sign search, the classifier,
the verifier, the learned proposer and PP-OCR, each with the measurement behind its default.

One module holds what can be set, its range and why its default is what it is; the backend
(`vlm_node.analysis.ocr_backend`) holds how the settings are used. Configuration resolution
(`vlm_node.analysis.config`, `vlm-node params`, the node's parameter declarations) reads this
module and never the backend's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from vlm_node.analysis.sign_candidates import CandidateConfig, ProposalConfig
from vlm_node.analysis.sign_classifier import SHIPPED_MODELS
from vlm_node.anonymize.runtime import (CPU, DEFAULT_ENGINE, ENGINE_HELP, ENGINES, PRECISION_HELP,
                                        PRECISIONS, Runtime)
from vlm_node.params import setting


@dataclass
class OcrConfig:
    """Settings of the `ocr` backend (`analysis.ocr.*` parameters)."""

    candidates: CandidateConfig = field(default_factory=CandidateConfig)
    max_reads: int = setting(8, "OCR at most this many candidates per frame (best scores "
                                "first); each costs a few ms.", min=1, max=64, dynamic=True)
    min_text_score: float = setting(0.5, "Minimum PP-OCR recognition score for text to count.",
                                    min=0.0, max=1.0, dynamic=True)
    min_confidence: float = setting(0.35, "Readings below this confidence (text score x "
                                          "candidate score) are not published.",
                                    min=0.0, max=1.0, dynamic=True)
    legend_height_px: int = setting(64, "Legend crops smaller than this are enlarged (bicubic) "
                                        "before recognition.", min=16, max=256)
    confirm_below_px: int = setting(24, "Legends smaller than this many pixels are read twice "
                                        "(colour and binarized) and published only when both "
                                        "reads agree.", min=0, max=256, dynamic=True)
    retry_binarized: bool = setting(True, "When the first read of a legend is unusable, read "
                                          "a binarized copy too (a second recogniser pass).",
                                    dynamic=True)
    threads: int = setting(0, "Intra-op threads for PP-OCR and the sign classifier; 0 = the "
                              "engine's default (all cores).", min=0, max=64)
    engine: str = setting(DEFAULT_ENGINE,
                          ENGINE_HELP + " Here: the sign classifier and the PP-OCR recogniser.",
                          choices=ENGINES)
    precision: str = setting("auto", PRECISION_HELP, choices=PRECISIONS)
    classifier: bool = setting(True, "Verify and classify sign candidates with the shipped "
                                     "sign classifier (GTSRB CNN); OCR then reads only what it "
                                     "cannot know (US SPEED LIMIT signs, text signs) and "
                                     "second-checks its speed values. false: OCR rules only.")
    classifier_model: str = setting("", "ONNX sign classifier to load; empty = the shipped "
                                        "model of classifier_precision.")
    classifier_precision: str = setting(
        "fp32", "Which shipped classifier runs: fp32, or int8 (the same network quantized, "
                "7-bit weights so every x86 CPU gives the same answers): the classifier in "
                "0.63x the time, the 1080p sign stage 0.81-0.85x, held-out GTSRB crops as "
                "fp32, but 167 instead of 170 of 199 development photo values (0 wrong either "
                "way; docs/sign_classifier.md).", choices=tuple(SHIPPED_MODELS))
    min_value_px: int = setting(12, "A classified sign smaller than this (box side, px) is "
                                    "published without its number: OCR cannot second-check "
                                    "legends that small. 14 until 2026-12-07 (on the GTSDB "
                                    "development photos the classifier's 10-13 px speed "
                                    "values on no sign were then as many as its right ones); "
                                    "12 since value_looks and value_reader_agrees judge a "
                                    "value the classifier gives alone: +5 GTSDB and +5 Kaggle "
                                    "development values, +44 of 539 held-out GTSRB crops "
                                    "placed at 9-16 px, no wrong value more.", min=0, max=200,
                                dynamic=True)
    grown_look: bool = setting(True, "A speed value the classifier reads on a box under "
                                     "min_value_px is kept when the box grown by 1.3 (a "
                                     "proposal on a small sign is often its inner disc) and "
                                     "six shifted and scaled copies of it all give the same "
                                     "class at >= 0.9 (SignClassifier.grown_look); the grown "
                                     "box then also gets OCR's second opinion. false: such "
                                     "boxes never carry a value.", dynamic=True)
    value_looks: int = setting(4, "A speed value the classifier gives alone (OCR read no "
                                  "number there, or another) is published only when at "
                                  "least this many of seven looks at its box (its crop and "
                                  "six shifted and scaled copies, SignClassifier.sure_looks) "
                                  "give it at >= 0.9, the second look's values included (3 "
                                  "of 7 for those alone until 2026-12-07). Watermarks, "
                                  "bokeh and lamps read as a speed limit at 0.93-0.99 fall "
                                  "apart when the crop moves, a real sign holds "
                                  "(docs/sign_classifier.md, 'Values that must hold'). "
                                  "0 = off.", min=0, max=7, dynamic=True)
    unpainted_value_looks: int = setting(
        6, "A speed value the classifier gives at >= 0.97 on a box that fails the paint "
           "check but shows some colour (a dark or night sign's dull rim) is kept when at "
           "least this many of seven looks at the box give it at >= 0.9 "
           "(SignClassifier.sure_looks); it is then checked like any other. 0 = such boxes "
           "are dropped (docs/sign_classifier.md, 'Values that must hold').",
        min=0, max=7, dynamic=True)
    ocr_speed_mass: float = setting(0.4, "OCR may read a speed limit on a red-ring candidate "
                                         "or colour proposal the classifier did not accept "
                                         "when the classifier's speed-limit classes together "
                                         "have at least this probability (1.0 = never); OCR's "
                                         "own number rules then decide.",
                                    min=0.0, max=1.0, dynamic=True)
    speed_proposals: int = setting(3, "At most this many colour proposals or round outlines "
                                      "per frame that the classifier leaned to a speed limit "
                                      "on (see ocr_speed_mass) get an OCR read; each costs a "
                                      "recogniser call. 0 = only the shape finder's rings.",
                                   min=0, max=64, dynamic=True)
    speed_proposal_px: int = setting(20, "Smallest such proposal OCR reads (box side, in "
                                         "pixels of the search image, so 40 px of a 1080p "
                                         "frame); legends under confirm_below_px must read "
                                         "the same twice. Was 35 frame px (one-pass legends "
                                         "only): on the Kaggle photos road0-437 20 reads 8 "
                                         "more values, 0 more wrong (docs/sign_classifier.md).",
                                     min=0, max=4096, dynamic=True)
    fit_rings: bool = setting(True, "Before OCR reads a colour proposal as a speed sign, "
                                    "fit the ring inside it (a small Hough pass on the box) "
                                    "and read both: a colour region's box often holds the "
                                    "post or a plate too, and the legend cut from it then "
                                    "holds the rim, read as '(40)'. The shape finder's rings "
                                    "(not an ellipse far from round), the classifier's "
                                    "OCR checks and the big round outlines read alone "
                                    "(circle_read_px) get the same second read (a tilted 5 "
                                    "read 15, a foreign 100 stood as 80, a rim read "
                                    "'(90'). Kaggle photos road0-437: 28 more values, 3 "
                                    "fewer wrong.",
                              dynamic=True)
    ocr_unknown_values: bool = setting(True, "OCR's sure read (>= 0.9) of a speed value GTSRB "
                                             "has no class for (40, 90, 5, 110, ...) wins over "
                                             "the classifier's value, which cannot be one of "
                                             "those; read in only one of two passes it still "
                                             "drops the classifier's value. false: any "
                                             "disagreement drops the value.", dynamic=True)
    ocr_digit_counts: bool = setting(True, "OCR's sure read (>= 0.9) of a speed value whose "
                                           "digits are the glyphs counted on the ring wins "
                                           "over a classifier value with fewer digits (a "
                                           "100 in a foreign font that the "
                                           "classifier calls 80); so does a read of more "
                                           "digits that two OCR passes share at >= 0.85 "
                                           "(small signs, whose digits touch). false: the "
                                           "value is dropped, as for any disagreement.",
                                     dynamic=True)
    lost_one_guard: bool = setting(True, "OCR's 10, 20 or 30 does not fill a speed limit "
                                         "the classifier read without its value when the "
                                         "speed class it leaned to most has three digits "
                                         "(100, 120). Why: the thin 1 of a blurred 120 is "
                                         "what OCR loses or takes for the rim. false: any "
                                         "number OCR reads fills the value.",
                                   dynamic=True)
    lost_zero_guard: bool = setting(True, "A published 5 or 10 km/h loses its number when "
                                          "the speed-value reader reads ten times it (50, "
                                          "100) at >= 0.9 on the sign's box, grown or shrunk "
                                          "by 10 %. Why: OCR loses a blurred 0 next to the "
                                          "rim (a 50 read '(5.'), and 5 where the limit is 50 "
                                          "is the worst misread a planner could get. false: "
                                          "OCR's 5 and 10 stand.", dynamic=True)
    spare_rim_blob: bool = setting(True, "One blob more on a ring than OCR's digits still "
                                         "lets a 40-90 stand (no limit is written 140-190: "
                                         "the blob is a rim fragment or a branch); a 5 or a "
                                         "10-30 with a blob more stays a misread (a 50, a "
                                         "120 whose 1 was lost). false: any blob more is a "
                                         "misread.",
                                   dynamic=True)
    value_reader: bool = setting(True, "A speed limit the classifier read without its "
                                       "number (a 40, a 90: GTSRB has no such class) and OCR "
                                       "could not fill gets the speed-value reader's number "
                                       "(a second CNN trained on GTSRB and Tsinghua-Tencent "
                                       "100K speed limits, docs/speed_value_reader.md) when "
                                       "the reader is sure and OCR read no other number. "
                                       "false: OCR alone fills such signs (set at start: "
                                       "the model loads with the classifier).")
    value_reader_model: str = setting("", "ONNX speed-value reader to load; empty = the "
                                          "shipped one.")
    value_reader_min_probability: float = setting(
        0.0, "The reader's calibrated probability a filled value needs; 0 = the threshold "
             "stored with the model (99.5 % of its held-out fills right).", min=0.0, max=1.0,
        dynamic=True)
    value_reader_lean: bool = setting(True, "The reader may also fill a GTSRB value (20-120) "
                                            "when it is the one the classifier leans to (its "
                                            "value, or its most probable speed class) and OCR "
                                            "read nothing (no number in either pass, no "
                                            "letters): two networks naming one number. "
                                            "Placed crowd set 652 -> 663 of 872 values, GTSDB "
                                            "251 -> 254, no wrong value added. false: the "
                                            "reader adds only values GTSRB lacks.",
                                      dynamic=True)
    value_reader_mass: float = setting(0.35, "A red ring OCR read nothing on is shown to the "
                                             "speed-value reader when the classifier gives it "
                                             "at least this speed mass (its eight speed "
                                             "classes together).", min=0.0, max=1.0,
                                       dynamic=True)
    value_reader_ring_probability: float = setting(
        0.97, "The reader's probability a value read on such a ring needs (stricter than a "
              "fill: the classifier did not vouch for the sign).", min=0.0, max=1.0,
        dynamic=True)
    value_reader_agrees: float = setting(
        0.9, "A speed value the classifier gives alone (the rule of value_looks) also needs "
             "the speed-value reader to read the same value at least this surely on its box "
             "or on the box grown or shrunk by 10 %: two networks trained apart must agree "
             "where OCR did not. 0 = off; with value_reader false the looks alone judge.",
        min=0.0, max=1.0, dynamic=True)
    ocr_on_pictograms: bool = setting(True, "Red rings the classifier calls a pictogram sign "
                                            "(no trucks, no vehicles, no overtaking) still get "
                                            "OCR's strict ring reads (the finder's rings, "
                                            "speed proposals, round outlines), and a speed "
                                            "value read there replaces the pictogram: a loose "
                                            "crop of a 40 (a value GTSRB lacks) is 'no trucks' "
                                            "at 0.96 to the classifier. Kaggle road0-437: 2 "
                                            "more values; GTSDB unchanged. false: a "
                                            "pictogram hides its place from OCR.",
                                      dynamic=True)
    crossing_signs: bool = setting(True, "Read blue squares holding a white apex-up triangle "
                                         "as pedestrian crossings (source 'shape'): the sign "
                                         "of most of Europe that GTSRB has no class for "
                                         "(vlm_node/analysis/crossing_signs.py).", dynamic=True)
    search_max_side: int = setting(960, "The colour/shape search (not the classifier's "
                                        "crops, not OCR) runs on the frame shrunk to at "
                                        "most this longer side; 0 = full resolution. 960 "
                                        "halves a 1080p frame exactly (OpenCV's fast path: "
                                        "2 ms instead of 24-33 ms for 1024).",
                                   min=0, max=8192)
    search_min_px: int = setting(9, "Smallest region (px across, on top of the full-size "
                                    "min_size_px) that a shrunk search image "
                                    "(search_max_side) proposes: 18 px at 1080p. At 6 a 1080p "
                                    "frame gave hundreds of 6-8 px texture regions, which "
                                    "filled proposals.max_proposals (smallest first) in half "
                                    "the frames and pushed larger regions, real signs among "
                                    "them, out. The 466 GTSDB development photos resized to "
                                    "1080p (bench signs): signs with their class 626 -> 651 of "
                                    "801, speed values 249 -> 254 of 284, readings on no "
                                    "labelled sign 136 -> 103, speed values there 8 -> 10 "
                                    "(blurred foliage of the enlarged photos). Frames up to "
                                    "1280 px are unchanged.",
                                 min=2, max=64)
    outline_needs_ocr: bool = setting(False, "A speed value read on a round outline no "
                                             "colour region matched (circle_proposals) is "
                                             "published only when OCR reads the same number. "
                                             "false: the classifier's value stands unless OCR "
                                             "reads another, as for other boxes; outlines on "
                                             "people (the anonymizer's faces and persons: red "
                                             "hats) are never classified. Development photos: "
                                             "165 -> 169 of 199 speed values, 0 wrong; crowd "
                                             "photos: no more valued speed readings.",
                                      dynamic=True)
    square_ends: float = setting(1.3, "Proposals at least this many times as long as wide "
                                      "also get their end squares classified (the top one "
                                      "of a tall box, both of a wide one), for speed limits "
                                      "only but see square_tops_any_class (a sign's face run "
                                      "on into a panel below it or into a light sky beside "
                                      "it); other classes on them were false readings in "
                                      "crowd photos. Development "
                                      "photos: 162 -> 165 of 199 speed values, 0 wrong; "
                                      "0 = off.", min=0.0, max=10.0)
    circle_round_classes: bool = setting(
        True, "A round outline (circle_proposals) may be read as any round class (prohibitions, "
              "mandatory directions, end-of signs), not only a speed limit: backlit and dusk "
              "no-entry, keep-right and no-overtaking signs. GTSDB 00300-00599 270 -> 279 of "
              "347 signs with their class, 00000-00299 354 -> 362; one more false reading on "
              "the 141 crowd photos.")
    square_tops_any_class: bool = setting(
        True, "The top square of a proposal taller than wide (a sign run on into the panel "
              "hung below it) may be read as any class, not only a speed limit; the other end "
              "squares stay speed limits only. Development photos: GTSDB 00300-00599 262 -> "
              "265 of 347 signs with their class, GTSDB 00000-00299 349 -> 351, no more "
              "readings on the 187 photos without signs.")
    refine_max: int = setting(12, "Boxes per frame (>= 20 px) that the classifier leaned "
                                  "towards a speed limit on without reading its value, "
                                  "classified again shifted and scaled (6 variants each, one "
                                  "batch); 0 = off.", min=0, max=200, dynamic=True)
    circle_proposals: bool = setting(True, "Also propose round outlines (gradient Hough "
                                           "circles on the search image, and on a shrunk copy "
                                           "for signs seen from near) to the classifier, for "
                                           "round classes (speed limits only with "
                                           "circle_round_classes false), none on people (see "
                                           "outline_needs_ocr): dusk signs whose rims keep too "
                                           "little red for a colour region; big ones also get "
                                           "OCR's own read (circle_read_px). Development "
                                           "photos: 148 -> 160 of 199 speed values, 0 wrong, "
                                           "for ~1.4x the sign stage's time; false = the "
                                           "faster search.")
    triangle_proposals: bool = setting(
        True, "Also propose triangular outlines (a local-mean threshold of the search image, "
              "vlm_node/analysis/triangle_proposals.py), read as triangular classes only "
              "(warnings, yield): backlit and overcast warning signs whose rims keep no colour "
              "for a region. With square_tops_any_class, GTSDB 00300-00599 262 -> 270 of 347 "
              "signs with their class, 00000-00299 349 -> 354, crowd photos unchanged; ~+5 % "
              "of the 1080p stage (docs/sign_classifier.md).")
    diamond_proposals: bool = setting(
        True, "Also propose priority-road signs from their yellow field (a diamond-shaped "
              "region of a looser yellow-to-orange mask, grown to twice its width; "
              "vlm_node/analysis/diamond_proposals.py), read as priority road only: the "
              "colour proposals box the field alone, which the classifier reads as "
              "background, or miss its orange or shaded paint (docs/sign_classifier.md).")
    stacked_proposals: bool = setting(
        True, "Also classify boxes of 0.8-1.25 times the size of each sign the classifier "
              "accepted, one and 1.15 mean heights above and below it "
              "(vlm_node/analysis/stacked_proposals.py): the other signs on its post, which "
              "merged into its colour region, left none (dusk) or were proposed off-centre. "
              "Read under the same rules as every box. GTSDB 00300-00599 285 -> 293 of 347 "
              "signs with their class, 00000-00299 364 -> 371, speed values 172 -> 174 of "
              "199, no reading on a photo without signs; ~+5 % of the 1080p stage "
              "(docs/sign_classifier.md).")
    whole_frame_px: int = setting(256, "A frame whose longer side is at most this many pixels "
                                       "is also classified whole (less a 10 % margin, as sign "
                                       "datasets cut their crops), without the paint check: "
                                       "such a frame is a sign crop (GTSRB's are 15-250 px), "
                                       "whose sign the search rejects as too big for a scene "
                                       "and a dark one shows no paint. Held-out GTSRB "
                                       "crops 30-60 px wide: speed values 82.6 -> 96.3 %, "
                                       "classes 52.5 -> 96.7 %; larger frames are never "
                                       "classified whole; 0 = off.",
                                  min=0, max=4096)
    circle_max_side: int = setting(0, "The round-outline search (circle_proposals) runs on "
                                      "the search image shrunk to at most this longer side; "
                                      "0 = the search image itself (search_max_side). The "
                                      "Hough pass is ~90 CPU-ms of a 1080p frame: 720 makes "
                                      "the stage ~0.85x, but reads 2 fewer development-photo "
                                      "values (640: 4 fewer).", min=0, max=8192)
    finder_scale: float = setting(
        0.75, "On a frame larger than the search image (search_max_side), the shape finder "
              "(shape-fitted rings, discs, white signs; not the colour proposals, outlines or "
              "the classifier) runs on the search image scaled by this; 1 = the search image "
              "itself. At 0.75 a 1080p frame's finder sees 720x405: its smallest sign is 24 "
              "px of the frame, ~1.25 % of its width (14 px of the 816 px development photos "
              "is 1.7 %); smaller signs are the proposals' and the classifier's. GTSDB "
              "development photos resized to 1080p: 272 instead of 273 of 347 classes, 123 "
              "instead of 120 of 138 values, the finder 21 -> 16 ms a frame. 0.5 (480x270, "
              "9 ms) lost a clear 88 px speed limit 5 of a Kaggle photo letterboxed to 1080p "
              "(its thin rim gone at 22 px; GTSRB has no 5, so only the finder's ring and OCR "
              "read it).",
        min=0.1, max=1.0)
    circle_read_px: int = setting(28, "With circle_proposals: round outlines at least this "
                                      "big (box side, px) that no sign or candidate covers "
                                      "and that hold 2-3 glyphs get OCR's ring read "
                                      "whatever the classifier said (big foreign speed "
                                      "limits: backlit maroon rims, values "
                                      "GTSRB lacks). Published only on the strictest "
                                      "evidence: as many digits read as glyphs counted, "
                                      "recogniser score >= 0.9, and under confirm_below_px "
                                      "the same in both passes. 40 until 2026-12-06: 28 reads "
                                      "3 more Kaggle road0-437 values, nothing else changed "
                                      "on the development photos. 0 = off.",
                                  min=0, max=4096, dynamic=True)
    proposal_ring_reads: int = setting(2, "Colour proposals with red paint at their edge, "
                                          "at least circle_read_px a side, no sign or "
                                          "candidate on them, whose box holds a round "
                                          "outline (a Hough pass on the box): this many a "
                                          "frame, largest "
                                          "first, get the ring read of circle_read_px on that "
                                          "outline whatever the classifier said. Why: a "
                                          "washed-out rim (pink at dusk, S ~75) is no ring "
                                          "to the colour finder and a 40 or a 5 is no GTSRB "
                                          "class. 0 = off.",
                                       min=0, max=64, dynamic=True)
    ranked_ring_reads: int = setting(2, "On frames the full search reads (under "
                                        "learned_min_side): rings fitted (a Hough pass each, "
                                        "at most 6 a frame) in the red colour proposals the "
                                        "classifier leaned most towards a speed limit are "
                                        "classified again, and this many a frame, those it "
                                        "then takes for one, get the round outlines' ring "
                                        "read. Why: a proposal looser than its sign scores "
                                        "low, the ring fitted in it as a speed limit, and a "
                                        "40 or 90 (no GTSRB class) has only OCR: Kaggle "
                                        "road0-437 244 -> 246 of 287 values, 0 wrong. 0 = off.",
                                     min=0, max=16, dynamic=True)
    verifier: bool = setting(True, "Drop the classifier's readings that the sign verifier "
                                   "(a logistic regression on the classifier's 44 outputs, "
                                   "fitted on readings of training photos: "
                                   "vlm_node/analysis/sign_verifier.py) judges false, unless "
                                   "OCR read the same number or the frame is a sign crop read "
                                   "whole (whole_frame_px). Held out: false readings on "
                                   "crowd photos 49 -> 23, readings on no labelled sign of "
                                   "the GTSDB development photos 50 -> 23; 1 of 347 signs and "
                                   "no speed value lost (docs/sign_classifier.md). false: "
                                   "every accepted reading is published.")
    verifier_spares_fitted: bool = setting(
        True, "The verifier leaves alone a reading whose box the shape finder fitted (a "
              "painted border of the class's colours around a regular shape): it was fitted "
              "to catch readings with no such outline (collars, flags, letters). Development "
              "photos at their own size: 180 of 182 finder-backed readings were real signs, "
              "the 2 others it kept anyway, and it dropped 2 real ones (a priority road "
              "scored 0.04).", dynamic=True)
    verifier_model: str = setting("", "Sign verifier file (`vlm-node fit-verifier`); empty = "
                                      "the shipped one, which belongs to the shipped classifier "
                                      "(with classifier_model set, no verifier runs unless this "
                                      "names one fitted for it).")
    ranked_proposals: int = setting(150, "At most this many colour proposals a frame reach "
                                         "the classifier, the most sign-like first by the "
                                         "proposal ranker (vlm_node/analysis/"
                                         "proposal_ranker.py, `vlm-node fit-ranker`); a 1080p "
                                         "frame has ~300. GTSDB 00300-00599 at 1080p: stage "
                                         "0.88x, 274/347 classes and 120/138 values either "
                                         "way, readings on no labelled sign 58 -> 29. 0 = "
                                         "every proposal.",
                                    min=0, max=1000, dynamic=True)
    ranker_model: str = setting("", "Proposal ranker file (`vlm-node fit-ranker`); empty = "
                                    "the shipped one.")
    learned_proposals: int = setting(
        10, "The learned sign proposer's K best boxes (vlm_node/analysis/sign_proposer.py, "
            "docs/sign_proposer.md) stand for the colour/shape search and the Hough pass on "
            "frames with a side of at least learned_min_side (learned_replaces: search), or "
            "for the Hough pass only (outlines): ~6 ms a 960x544 search image, on the second "
            "core beside the shape finder, instead of ~20 ms of search and a ~33 ms Hough "
            "pass. GTSDB 00300-00599 at 1080p: 0.67-0.73x the stage's time, 126 vs 123 of 138 "
            "values, 0 vs 2 wrong. 0 = never.",
        min=0, max=200)
    learned_min_side: int = setting(
        1280, "Frames whose longer side is at least this many pixels use the learned proposer "
              "(learned_proposals); smaller ones the full colour/shape search and Hough pass. "
              "Why: the 60 ms budget is a 1080p frame's, and there the learned search reads "
              "as many values with fewer wrong; at the development photos' own sizes "
              "(<= 816 px) the full search reads more (Kaggle road0-437 245 vs 237 of 287 "
              "values, 0 vs 2 wrong on a sign). 0 = every frame.", min=0)
    learned_replaces: str = setting(
        "search", "What the learned proposals stand for: 'search' (colour proposals, "
                  "shapes and outlines: the finder's candidates are left beside them) or "
                  "'outlines' (the Hough pass only; the colour proposals and shapes stay).",
        choices=("outlines", "search"))
    learned_paint_regions: float = setting(
        2.0, "With learned_replaces: search, the colour proposals are also looked for in the "
             "square this many times each learned box's side about its centre, and classified "
             "beside the learned boxes: the reader's value rules were tuned on paint regions' "
             "tight boxes (held-out native photos read through the learned search: GTSDB "
             "values 82.1 -> 86.6 %, Kaggle 85.9 -> 90.6 % when added); 0 = not at all.",
        min=0.0, max=4.0)
    learned_adds: bool = setting(
        True, "On frames under learned_min_side, the learned proposer's boxes are added to "
              "the full search where it has no candidate or proposal, for the classifier "
              "alone (no OCR of their own; instead of the paint check, answers of at least "
              "0.97 on a box with some colour): it finds dark signs that the paint-based "
              "search misses (GTSDB 00000-00599: 249 -> 253 of 284 values, no wrong one "
              "added; 1.10x the stage's time at 816x480). False = the full search alone.")
    learned_known_area: float = setting(
        0.5, "With learned_adds, a learned box counts as already searched only where a "
             "candidate or proposal of at least this share of its area overlaps it (IoU > "
             "0.2): a small paint region on a dark sign's rim or legend left the proposer's "
             "box on the whole sign out (a dark placed 120: read at 0.992 through it). Placed "
             "crowd signs 701 -> 714 of 872 values, GTSDB 00000-00599 classes 696 -> 701 of "
             "801, the same values and wrong values on the development photos and the crowds "
             "(2026-12-07). 0 = any overlapping box counts.",
        min=0.0, max=1.0, dynamic=True)
    proposer_model: str = setting("", "Sign proposer file (`python -m vlm_node.tools."
                                      "train_sign_proposer`); empty = the shipped one.")
    proposals: ProposalConfig = field(default_factory=ProposalConfig)

    def runtime(self) -> Runtime:
        """Where the sign classifier and the PP-OCR recogniser run (the CPU, by `engine`)."""
        return Runtime(CPU, self.threads, self.engine, self.precision)
