"""Licence-plate detection.

No plate detector with a clear licence and non-Chinese training data could be had offline, so
the default finds plates as *text with plate geometry*: PP-OCRv4's text detector (DBNet, from the
pinned rapidocr-onnxruntime wheel) marks text lines; lines stacked like the rows of one plate are
grouped; a group is a plate on geometry alone when it has several lines or its main line is long
enough for about 6 glyphs. Shorter single lines are read with PP-OCR recognition (when
`plate_verify` says so) and must show at least 3 characters that are not a bare 1-3 digit
number: the "50" or "120" of a speed-limit sign is not redacted. Text on a saturated red
background (STOP, DO NOT ENTER) is left alone too, so that traffic-sign text survives.

Two other detectors are kept for comparison (measured in docs/anonymizer.md): OpenCV's Haar
cascade for Russian plates (in the OpenCV 4.x wheel) and the hyperlpr2 SSD (Caffe, trained on
Chinese plates; not shipped, pass its path).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import cv2
import numpy as np

from vlm_node import vocab
from vlm_node.analysis.circle_proposals import ring_in
from vlm_node.anonymize.openvino_session import shape_cover
from vlm_node.anonymize.multiscale import (RawDetections, check_finite, merge, plan_views,
                                           run_view, working_scale)
from vlm_node.anonymize.plate_scan import ScanRect
from vlm_node.anonymize.runtime import PP_OCR_DET, PP_OCR_REC, Runtime, rapidocr_model
from vlm_node.geometry import Box
from vlm_node.results import TextHint

if TYPE_CHECKING:  # plate_reuse.py imports this module
    from vlm_node.anonymize.plate_reuse import ReadCache

PLATE_DETECTORS = ("ppocr", "haar", "ssd")
VERIFY_MODES = ("none", "ambiguous", "all")


# Input dimensions an engine that prepares every new shape (OpenVINO) may pad: the detector's
# map is cut back to the image (`TextDetector.probability`), and the recogniser's extra steps
# of zero (mid-grey) input decode as blanks, as the padding of its batches always did.
DET_PAD = {2: 64, 3: 64}
REC_PAD = {3: 32}

# The input shapes a stream's text models are prepared for at configure time
# (`TextPlateDetector.prepare`): those the vehicle regions and text lines of busy 1080p frames
# brought (a 240-frame drive through 24 crowd, road and car photos: the detector 32 shapes,
# all <= 576 px high and nearly all <= 384; the recogniser 33, all <= 320 px wide, batches of
# 1-4); a larger one is prepared when it first comes, as before.
PREPARED_DET_MAX_HEIGHT = 384
PREPARED_REC_MAX_WIDTH = 320


def _prepare_cover(session: Any, wants: list[tuple[int, ...]], reuse: float) -> int:
    """Run `session` once on a cover of the input shapes `wants` (`shape_cover` at `reuse`);
    how many shapes were run (0 on an engine whose sessions have no `prepare`)."""
    prepare = getattr(session, "prepare", None)
    return 0 if prepare is None else prepare(shape_cover(wants, reuse))


class TextDetector:
    """PP-OCRv4 DBNet text detection: a per-pixel text probability map, thresholded into
    regions whose minimum-area rectangles are grown back to the full line ("unclip", the DB
    paper's offset D = A * r / L for area A and perimeter L)."""

    name = "ppocr_det"
    input_size = None
    stride = 32

    def __init__(self, runtime: Runtime, bin_threshold: float = 0.3, unclip_ratio: float = 1.6,
                 path: Path | None = None, recurring: bool = False) -> None:
        """`recurring`: for inputs of the same shape frame after frame (`Runtime.session`)."""
        self.session = runtime.session(path or rapidocr_model(PP_OCR_DET), pad=DET_PAD,
                                       recurring=recurring)
        self._input = self.session.get_inputs()[0].name
        self.bin_threshold = bin_threshold
        self.unclip_ratio = unclip_ratio
        self._kernel = np.ones((2, 2), np.uint8)

    def prepare(self, max_height: int, max_width: int, reuse: float) -> int:
        """Prepare the any-shape model for every padded input up to `max_height` x `max_width`
        (a cover of them, `shape_cover` at `reuse`); how many shapes were run (0 on an engine
        without `prepare`)."""
        sh, sw = DET_PAD[2], DET_PAD[3]
        wants = [(1, 3, h, w) for h in range(sh, max_height + 1, sh)
                 for w in range(sw, -(-max_width // sw) * sw + 1, sw)]
        return _prepare_cover(self.session, wants, reuse)

    def probability(self, image: np.ndarray) -> np.ndarray:
        """Text probability map of `image` (BGR, any size), same size as the input."""
        h, w = image.shape[:2]
        ph, pw = -(-h // self.stride) * self.stride, -(-w // self.stride) * self.stride
        # RGB, mean 0.5 and std 0.5 on [0, 1] pixels: measured on the labelled plates, BGR
        # input finds 27 of 30 plates at native size, RGB 29. The padding to the stride is
        # black (-1 once normalised). Built plane by plane in place: the same numbers as
        # normalising an interleaved copy and transposing it, in 1.7 instead of 3.9 ms for
        # a 960x540 input (two temporaries and a strided copy fewer).
        x = np.full((1, 3, ph, pw), -1.0, np.float32)
        for c in range(3):
            plane = x[0, c, :h, :w]
            plane[...] = image[:, :, 2 - c]
            plane -= 127.5
            plane /= 127.5
        prob = self.session.run(None, {self._input: x})[0]
        return prob[0, 0, :h, :w]

    def predict(self, image: np.ndarray, threshold: float) -> RawDetections:
        prob = self.probability(image)
        mask = cv2.dilate((prob > self.bin_threshold).astype(np.uint8), self._kernel)
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        boxes, scores, quads = [], [], []
        for contour in contours:
            (cx, cy), (rw, rh), angle = cv2.minAreaRect(contour)
            if min(rw, rh) < 3:
                continue
            x, y, bw, bh = cv2.boundingRect(contour)
            region = np.zeros((bh, bw), np.uint8)
            cv2.drawContours(region, [contour - np.array([x, y])], -1, 1, -1)
            score = cv2.mean(prob[y:y + bh, x:x + bw], region)[0]
            if score < threshold:
                continue
            d = rw * rh * self.unclip_ratio / (2 * (rw + rh))
            quad = cv2.boxPoints(((cx, cy), (rw + 2 * d, rh + 2 * d), angle))
            boxes.append([quad[:, 0].min(), quad[:, 1].min(), quad[:, 0].max(), quad[:, 1].max()])
            scores.append(score)
            quads.append(quad)
        if not boxes:
            return RawDetections.empty(4)
        return RawDetections(np.array(boxes, np.float32), np.array(scores, np.float32),
                             np.array(quads, np.float32))


WIDTH_SPREAD = 1.5
"""`TextRecognizer.read_crops`: lines up to this many times as wide as the narrowest of their
group are read in one call."""
READ_BATCH = 4
"""`TextRecognizer.read_crops`: at most this many lines a call. OpenVINO runs a batch of more
than 4 at the next multiple of 8 (`openvino_session.batch_bucket`, which keeps the number of
shapes it prepares small), so 5 lines cost as much as 8 (one thread, 320 px lines: 42 ms for 5
in one call, 33 ms as 4 + 1); the recogniser gains nothing per line from larger batches (2.1
ms a 128 px line, 5.8 ms a 320 px line at every batch size)."""


class TextRecognizer:
    """PP-OCRv4 recognition (CTC over the model's own character list, stored in its metadata),
    used only to check whether a short text line holds enough characters to be a plate."""

    def __init__(self, runtime: Runtime, path: Path | None = None) -> None:
        self.session = runtime.session(path or rapidocr_model(PP_OCR_REC), pad=REC_PAD)
        self._input = self.session.get_inputs()[0].name
        meta = self.session.get_modelmeta().custom_metadata_map
        if "character" not in meta:
            raise ValueError("PP-OCR recognition model carries no character list")
        # index 0 is the CTC blank; the list ends with a space (use_space_char)
        self.charset = ["", *meta["character"].splitlines(), " "]

    def prepare(self, max_width: int, reuse: float) -> int:
        """Prepare the model for batches of 1-READ_BATCH lines up to `max_width` px wide (a
        cover, as `TextDetector.prepare`); how many shapes were run."""
        step = REC_PAD[3]
        wants = [(n, 3, 48, w) for n in range(1, READ_BATCH + 1)
                 for w in range(step, max_width + 1, step)]
        return _prepare_cover(self.session, wants, reuse)

    def crop(self, frame: np.ndarray, quad: np.ndarray) -> np.ndarray | None:
        """The line inside `quad` (4x2 frame px) straightened to height 48, or None when too
        small to read."""
        rect = level_rect(quad)
        rw, rh = rect[1]
        if rw < 2 or rh < 2:
            return None
        out_h = 48
        out_w = int(min(320, max(16, round(out_h * rw / rh))))
        src = cv2.boxPoints(rect).astype(np.float32)
        # boxPoints order: bottom-left, top-left, top-right, bottom-right of the rotated rect
        dst = np.array([[0, out_h - 1], [0, 0], [out_w - 1, 0], [out_w - 1, out_h - 1]],
                       np.float32)
        return cv2.warpPerspective(frame, cv2.getPerspectiveTransform(src, dst),
                                   (out_w, out_h), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)

    def read_many(self, frame: np.ndarray, quads: Sequence[np.ndarray]) -> list[str]:
        """Texts of the lines inside `quads`, recognised in one batch (one onnxruntime call
        costs about as much as three single ones on 2 cores). Crops are padded on the right
        with the normalised mid-grey the model was trained to ignore."""
        return self.read_crops([self.crop(frame, q) for q in quads])

    def read_crops(self, crops: Sequence[np.ndarray | None]) -> list[str]:
        """Texts of line crops (`crop`; None reads as ""), batched (`read_many`): crops of
        similar width share a call (at most READ_BATCH), each group padded only to its
        widest. Why: one batch padded to the widest line made a 52 px line cost as much as a
        320 px one (six lines of 52-320 px: 271 ms in one call on one core)."""
        present = sorted(((i, c) for i, c in enumerate(crops) if c is not None),
                         key=lambda ic: ic[1].shape[1])
        texts = [""] * len(crops)
        groups: list[list[tuple[int, np.ndarray]]] = []
        for i, c in present:
            if (groups and len(groups[-1]) < READ_BATCH
                    and c.shape[1] <= WIDTH_SPREAD * groups[-1][0][1].shape[1]):
                groups[-1].append((i, c))
            else:
                groups.append([(i, c)])
        for group in groups:
            batch = np.zeros((len(group), 3, 48, group[-1][1].shape[1]), np.float32)
            for j, (_, c) in enumerate(group):
                rgb = cv2.cvtColor(c, cv2.COLOR_BGR2RGB).astype(np.float32)
                batch[j, :, :, :c.shape[1]] = ((rgb - 127.5) / 127.5).transpose(2, 0, 1)
            probs = self.session.run(None, {self._input: batch})[0]
            for j, (i, _) in enumerate(group):
                texts[i] = self._decode(probs[j])[0]
        return texts

    def read(self, frame: np.ndarray, quad: np.ndarray) -> tuple[str, float]:
        """Text and mean character probability of the line inside `quad` (4x2 frame px)."""
        crop = self.crop(frame, quad)
        if crop is None:
            return "", 0.0
        x = (cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) - 127.5) / 127.5
        probs = self.session.run(None, {self._input: x.transpose(2, 0, 1)[None]})[0][0]
        return self._decode(probs)

    def _decode(self, probs: np.ndarray) -> tuple[str, float]:
        """Greedy CTC: best class per step, repeats merged, blanks dropped."""
        idx, conf = probs.argmax(1), probs.max(1)
        chars, confs, prev = [], [], 0
        for i, c in zip(idx, conf):
            if i != prev and i != 0 and i < len(self.charset):
                chars.append(self.charset[i])
                confs.append(float(c))
            prev = i
        return "".join(chars), float(np.mean(confs)) if confs else 0.0


@dataclass
class PlateGeometry:
    """Plate rules for grouped text lines (sizes in frame pixels, aspect = long/short side of
    a line's unclipped box, which adds about one glyph height: 2 glyphs ~1.1, 4 glyphs ~1.6,
    6 glyphs ~2.2)."""

    min_height: float = 6.0      # text-line height below which nothing is readable anyway
    min_aspect: float = 1.0      # taller than wide: a single glyph or a blob, never a plate
    sure_aspect: float = 2.2     # 6+ glyphs on one line: a plate on geometry alone
    max_aspect: float = 8.0      # longer lines are sentences, not plates
    max_angle: float = 35.0      # plates are roughly level in a road camera
    max_lines: int = 3
    red_share: float = 0.5       # saturated red share of STOP-like sign text (unread)
    colour_share: float = 0.25   # saturated red/green/blue share: sign or packaging text
    surface_saturation: float = 140.0  # mean HSV saturation of a group's box: coloured cloth
    min_chars: int = 4           # alphanumerics a read plate must show
    max_chars: int = 12          # more on one line is prose (stickers, captions, shop signs)
    max_reads: int = 12          # recognition calls per frame; beyond, unread = plate


def line_is_plate_text(text: str, max_chars: int) -> bool:
    """Whether a read line can belong to a plate: some alphanumerics, not more than a plate
    holds, and not mostly lower case (plates are written in capitals; captions and
    watermarks are not)."""
    glyphs = sum(ch.isascii() and ch.isalnum() for ch in text)
    letters = [ch for ch in text if ch.isascii() and ch.isalpha()]
    lower = sum(ch.islower() for ch in letters)
    if glyphs == 0 or glyphs > max_chars:
        return False
    return not (len(letters) >= 3 and lower > len(letters) / 2)


def sign_words_only(text: str) -> bool:
    """Whether a read line is made of words printed on traffic signs and nothing else (STOP,
    ONE WAY, SPEED LIMIT): no registration reads like that."""
    if any(ch.isdigit() for ch in text):
        return False
    words = re.findall(r"[A-Z]+", text.upper())
    return bool(words) and all(w in vocab.SIGN_WORDS for w in words)


def _sign_number(text: str) -> bool:
    """A bare number of 1-3 digits: what speed-limit and weight signs show, never a plate."""
    glyphs = "".join(ch for ch in text if ch.isascii() and ch.isalnum())
    return glyphs.isdigit() and len(glyphs) < 4


def _sign_legends(frame: np.ndarray, boxes: np.ndarray, heights: np.ndarray,
                  texts: dict[int, str]) -> set[int]:
    """Read lines that belong to a traffic sign and so must never join a plate below or above
    them into one group (the sign would be redacted with it, and a group that reads as a sign
    would leave the plate unredacted): lines of sign words only (STOP, SPEED LIMIT), a bare
    1-3 digit number inside a red ring (a limit sign's legend), and a bare number stacked
    with a sign-words line (the 40 under a US sign's SPEED LIMIT)."""
    words = {i for i, t in texts.items() if sign_words_only(t)}
    legends = set(words)
    for i, text in texts.items():
        if not _sign_number(text):
            continue
        if in_red_disc(frame, boxes[i]) or any(
                _same_plate(boxes[i], boxes[j], float(heights[i]), float(heights[j]))
                for j in words):
            legends.add(i)
    return legends


def _text_hints(boxes: np.ndarray, heights: np.ndarray, legends: set[int],
                texts: dict[int, str]) -> list[TextHint]:
    """Sign-text lines grouped as the rows of one sign (the plate grouping rule), each group
    with its box and its text top to bottom: SPEED / LIMIT / 45 -> "SPEED LIMIT 45"."""
    order = sorted(legends)
    if not order:
        return []
    hints = []
    for group in _group_lines(boxes[order], heights[order]):
        rows = sorted((order[i] for i in group), key=lambda i: float(boxes[i, 1]))
        gb = boxes[rows]
        box = Box.from_xyxy(float(gb[:, 0].min()), float(gb[:, 1].min()),
                            float(gb[:, 2].max()), float(gb[:, 3].max()))
        hints.append(TextHint(box, " ".join(texts[i] for i in rows)))
    return hints


def _judge_read(lines_text: list[str], g: PlateGeometry) -> tuple[bool, str]:
    """Plate decision on what a group of lines reads: enough characters, at least one line that
    can be plate text, and not a bare 1-3 digit number (what speed-limit and weight signs
    carry; a plate of 3 characters or less has letters)."""
    glyph_text = "".join(ch for ch in "".join(lines_text) if ch.isascii() and ch.isalnum())
    words = {w for t in lines_text for w in re.findall(r"[A-Z]+", t.upper())}
    if len(words & vocab.SIGN_WORDS) >= 2:
        return False, f"read {' '.join(lines_text)!r}: sign words"
    if not any(line_is_plate_text(t, g.max_chars) for t in lines_text):
        return False, f"read {glyph_text!r}: not plate text"
    if _sign_number(glyph_text):
        return False, f"read {glyph_text!r}: a sign number"
    if len(glyph_text) < g.min_chars:
        return False, f"read {glyph_text!r}: too few characters"
    return True, f"read {glyph_text!r}"


def level_rect(quad: np.ndarray) -> tuple[tuple[float, float], tuple[float, float], float]:
    """The minimum-area rectangle of `quad` with its long side as width and an angle in
    (-90, 90], so that the width runs left to right and text read along it is upright."""
    (cx, cy), (w, h), angle = cv2.minAreaRect(quad.astype(np.float32))
    if w < h:
        w, h, angle = h, w, angle - 90
    while angle > 90:
        angle -= 180
    while angle <= -90:
        angle += 180
    return (cx, cy), (w, h), angle


def _line_shape(quad: np.ndarray) -> tuple[float, float, float]:
    """(long side, short side, tilt in degrees from horizontal) of a text quad."""
    _, (w, h), angle = level_rect(quad)
    return float(w), float(h), abs(float(angle))


def _colour_shares(frame: np.ndarray, box: np.ndarray) -> tuple[float, float]:
    """Shares of strongly saturated red, and of green or blue, pixels in `box` (x1 y1 x2 y2).
    Red is the background of STOP and DO NOT ENTER signs; green and blue of direction signs and
    packaging, but also of Chinese and Korean plates, so those need a reading to decide."""
    h, w = frame.shape[:2]
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return 0.0, 0.0
    hsv = cv2.cvtColor(frame[y1:y2, x1:x2], cv2.COLOR_BGR2HSV)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    strong = (sat > 115) & (val > 60)
    red = strong & ((hue <= 8) | (hue >= 165))
    green_blue = strong & (hue >= 40) & (hue <= 130)
    return float(np.mean(red)), float(np.mean(green_blue))


def _mean_saturation(frame: np.ndarray, box: np.ndarray) -> float:
    """Mean HSV saturation (0-255) inside `box` (x1 y1 x2 y2): white, grey and most plate
    backgrounds are low, dyed cloth and painted signs high."""
    h, w = frame.shape[:2]
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return 0.0
    return float(cv2.cvtColor(frame[y1:y2, x1:x2], cv2.COLOR_BGR2HSV)[..., 1].mean())


# The red of `in_red_disc`: hue <= 9 or >= 155, saturation > 40. A sign's rim at dusk or
# against the light is pink (saturation ~75, hue down to 159 on the Kaggle development photos);
# with the former > 90 and >= 165, nine speed signs there were redacted as plates (a "40"
# joined with a line of text beside it), with this red and `in_round_outline` three. The hole
# must still be a round disc around the line.
_DISC_HUE = (9, 155)
_DISC_MIN_SATURATION = 40


def in_red_disc(frame: np.ndarray, box: np.ndarray) -> bool:
    """Whether the text line `box` (x1 y1 x2 y2) sits inside the light disc of a red ring: the
    legend of a prohibitory sign (speed or weight limit). Looks for a hole in the red mask
    around the line that contains the line's centre, covers most of it and is round (area
    over its enclosing circle's at least 0.75: a disc is ~0.9, the white rectangle of a plate
    set into red paint at most ~0.64); failing that, for a round outline around it
    (`in_round_outline`)."""
    h, w = frame.shape[:2]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    # the ring of a 2-3 digit legend lies within ~0.7 legend widths of its centre
    r = 1.2 * max(box[2] - box[0], box[3] - box[1])
    x1, y1 = max(0, int(cx - r)), max(0, int(cy - r))
    x2, y2 = min(w, int(np.ceil(cx + r))), min(h, int(np.ceil(cy + r)))
    if x2 - x1 < 8 or y2 - y1 < 8:
        return False
    hsv = cv2.cvtColor(frame[y1:y2, x1:x2], cv2.COLOR_BGR2HSV)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    red = (((hue <= _DISC_HUE[0]) | (hue >= _DISC_HUE[1])) & (sat > _DISC_MIN_SATURATION)
           & (val > 60)).astype(np.uint8)
    contours, hierarchy = cv2.findContours(red, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    line_area = (box[2] - box[0]) * (box[3] - box[1])
    for contour, (_, _, _, parent) in zip(contours, hierarchy[0] if hierarchy is not None
                                          else []):
        if parent < 0:
            continue  # an outer outline, not a hole
        area = cv2.contourArea(contour)
        if area < 0.5 * line_area:
            continue
        if cv2.pointPolygonTest(contour, (float(cx - x1), float(cy - y1)), False) <= 0:
            continue
        _, radius = cv2.minEnclosingCircle(contour)
        if area >= 0.75 * np.pi * radius * radius:
            return True
    return in_round_outline(frame, box)


def in_round_outline(frame: np.ndarray, box: np.ndarray) -> bool:
    """Whether the text line `box` (x1 y1 x2 y2) sits at the centre of a round outline about
    as wide as a speed sign's disc around such a legend (radius 0.6-1.3 line widths): the
    sign whose rim kept too little red for `in_red_disc` (pink against a dusk sky). A plate
    is a rectangle; its characters are never ringed."""
    lw = float(max(box[2] - box[0], box[3] - box[1]))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = 2.2 * lw
    ring = ring_in(frame, Box(cx - side / 2, cy - side / 2, side, side))
    if ring is None:
        return False
    rx, ry = ring.center
    return bool(ring.w >= 1.2 * lw and np.hypot(rx - cx, ry - cy) <= 0.25 * lw)


def registration_like(lines_text: list[str]) -> bool:
    """One row of 5-10 characters with at least two digits: what a plate on a coloured
    background (Chinese blue, Korean green) reads, and what direction signs and packaging
    text rarely do."""
    if len(lines_text) != 1:
        return False
    glyphs = [ch for ch in lines_text[0] if ch.isalnum()]
    return 5 <= len(glyphs) <= 10 and sum(ch.isdigit() for ch in glyphs) >= 2


def _rows(boxes: np.ndarray) -> int:
    """Number of text rows among line boxes (lines side by side count once)."""
    order = np.argsort(boxes[:, 1])
    rows, bottom = 0, -np.inf
    for i in order:
        if boxes[i, 1] >= bottom - 0.4 * (boxes[i, 3] - boxes[i, 1]):
            rows += 1
            bottom = boxes[i, 3]
        else:
            bottom = max(bottom, boxes[i, 3])
    return rows


def _same_plate(a: np.ndarray, b: np.ndarray, ha: float, hb: float) -> bool:
    """Whether text lines `a` and `b` (x1 y1 x2 y2, heights ha, hb) are rows of one plate:
    horizontally overlapping by half the narrower line, vertically close (gap under 0.8 line
    heights), heights within 4x (a US state name is about a third of the registration's
    height). Words side by side are not joined: measured on the labelled plates, joining them
    fused badges and country bands with plates and lost 3 of 30 at IoU 0.3."""
    if not (0.25 <= ha / max(hb, 1e-6) <= 4):
        return False
    x_overlap = min(a[2], b[2]) - max(a[0], b[0])
    narrow = min(a[2] - a[0], b[2] - b[0])
    if narrow <= 0 or x_overlap < 0.5 * narrow:
        return False
    gap = max(a[1], b[1]) - min(a[3], b[3])
    return gap <= 0.8 * max(ha, hb)


def _group_lines(boxes: np.ndarray, heights: np.ndarray) -> list[list[int]]:
    """Connected groups of text lines that belong to one plate (`_same_plate`)."""
    n = len(boxes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if _same_plate(boxes[i], boxes[j], float(heights[i]), float(heights[j])):
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


@dataclass(slots=True)
class PlateCandidate:
    """A plate found from text: its box (x1 y1 x2 y2, frame px), score, and why it was kept
    or rejected (for reports and tuning)."""

    box: np.ndarray
    score: float
    accepted: bool
    reason: str
    text: str = ""


def accepted_plates(candidates: Sequence[PlateCandidate]) -> RawDetections:
    """The accepted candidates as detections (box, score)."""
    kept = [c for c in candidates if c.accepted]
    if not kept:
        return RawDetections.empty()
    return RawDetections(np.array([c.box for c in kept], np.float32),
                         np.array([c.score for c in kept], np.float32),
                         np.zeros((len(kept), 0, 2), np.float32))


class TextPlateDetector:
    """Plates as grouped text lines with plate geometry (see the module docstring)."""

    name = "ppocr"

    def __init__(self, runtime: Runtime, *, score_threshold: float,
                 bin_threshold: float, max_side: int, max_upscale: float,
                 geometry: PlateGeometry, verify: str) -> None:
        if verify not in VERIFY_MODES:
            raise ValueError(f"plate_verify must be one of {VERIFY_MODES}, got {verify!r}")
        self.text = TextDetector(runtime, bin_threshold)
        # the whole frame and the bands of the video plan have the same shape on every frame
        # of a stream: run on models compiled for exactly that shape (1.5x faster with
        # OpenVINO); vehicle regions and other rectangles vary and keep the general model
        self.frame_text = (TextDetector(runtime, bin_threshold, recurring=True)
                           if runtime.compiles_per_shape else self.text)
        self.recognizer = TextRecognizer(runtime) if verify != "none" else None
        self.score_threshold = score_threshold
        self.max_side = max_side
        self.max_upscale = max_upscale
        self.geometry = geometry
        self.verify = verify

    def prepare(self, reuse: float) -> int:
        """Prepare the text models for the shapes a stream's vehicle regions and text lines
        bring (PREPARED_DET_MAX_HEIGHT x the pixel budget, PREPARED_REC_MAX_WIDTH), so that
        `shape_reuse` (`reuse`) pads them to a prepared shape instead of preparing one on a
        camera frame; how many shapes were run."""
        width = self.max_side if self.max_side > 0 else 1920
        ran = self.text.prepare(min(PREPARED_DET_MAX_HEIGHT, width), width, reuse)
        if self.recognizer is not None:
            ran += self.recognizer.prepare(PREPARED_REC_MAX_WIDTH, reuse)
        return ran

    def lines(self, frame: np.ndarray, scale: float | None = None, recurring: bool = True
              ) -> RawDetections:
        """Text lines in `frame` (boxes, DB scores, quads), in frame pixels. `scale`: model
        pixels per frame pixel; default from the pixel budget (`max_side`, `max_upscale`). A
        part of a larger frame is passed the whole frame's scale, so that it is seen exactly
        as the whole-frame pass would see it. `recurring`: `frame` has the same size on
        every frame of a stream (a whole frame, a band), not one of its own (a vehicle
        region)."""
        h, w = frame.shape[:2]
        if scale is None:
            scale = working_scale(w, h, self.max_side, self.max_upscale)
        view = plan_views(w, h, None, scale, 0, False)[0]
        text = self.frame_text if recurring else self.text
        lines = run_view(text, frame, view, self.score_threshold)
        check_finite(lines, "PP-OCR text detection")
        return lines

    def lines_of_rect(self, frame: np.ndarray, rect: ScanRect) -> RawDetections:
        """Text lines in the rectangle `rect` of `frame`, seen at its scale, in frame
        pixels."""
        found = self.lines(frame[rect.y1:rect.y2, rect.x1:rect.x2], rect.scale, rect.recurring)
        if not len(found):
            return RawDetections.empty(4)
        return RawDetections(
            found.boxes + np.array([rect.x1, rect.y1, rect.x1, rect.y1], np.float32),
            found.scores, found.points + np.array([rect.x1, rect.y1], np.float32))

    def _read_lines(self, frame: np.ndarray, lines: RawDetections, idx: Sequence[int],
                    cache: ReadCache | None) -> list[str]:
        """Texts of lines `idx`, read in one batch; with `cache`, lines that look as a line
        read at the same place on a recent frame take that reading, and the others are
        read and remembered."""
        assert self.recognizer is not None
        if cache is None:
            return self.recognizer.read_many(frame, lines.points[list(idx)])
        texts: list[str | None] = [cache.lookup(lines.boxes[i], frame) for i in idx]
        todo = [k for k, t in enumerate(texts) if t is None]
        read = self.recognizer.read_many(frame, lines.points[[idx[k] for k in todo]])
        for k, t in zip(todo, read):
            texts[k] = t
            cache.store(lines.boxes[idx[k]], frame, t)
        return [t or "" for t in texts]

    def detect(self, frame: np.ndarray) -> RawDetections:
        return self.detect_with_hints(frame)[0]

    def detect_with_hints(self, frame: np.ndarray, scale: float | None = None,
                          lines: RawDetections | None = None, cache: ReadCache | None = None
                          ) -> tuple[RawDetections, list[TextHint]]:
        """The accepted plates, and the sign text found on the way (`TextHint`); `lines`: the
        text lines to judge, when already found (`lines_of_rect`); `cache`: see
        `examine`."""
        candidates, hints = self.examine(frame, scale, lines, cache)
        return accepted_plates(candidates), hints

    def examine(self, frame: np.ndarray, scale: float | None = None,
                lines: RawDetections | None = None, cache: ReadCache | None = None
                ) -> tuple[list[PlateCandidate], list[TextHint]]:
        """Every grouped text region with the plate decision taken on it, and the lines kept
        out of plate groups as sign text, grouped into hints for the analysis. `lines`: the
        text lines of `frame` when already found (else the whole frame is searched at
        `scale`). `cache`: readings of earlier frames of the same camera to take over where a
        line looks the same (`plate_reuse.ReadCache`); the lines read and the decisions are
        the same as without it, only recognition calls are saved."""
        if lines is None:
            lines = self.lines(frame, scale)
        hints: list[TextHint] = []
        if not len(lines):
            return [], hints
        g = self.geometry
        shapes = np.array([_line_shape(q) for q in lines.points], np.float32)
        usable = np.nonzero((shapes[:, 1] >= g.min_height) & (shapes[:, 2] <= g.max_angle)
                            & (shapes[:, 0] / shapes[:, 1] <= g.max_aspect))[0]
        texts: dict[int, str] = {}
        reads = 0

        def read(i: int) -> str:
            nonlocal reads
            if i not in texts:
                assert self.recognizer is not None
                texts[i] = self._read_lines(frame, lines, [i], cache)[0]
                reads += 1
            return texts[i]

        if self.verify == "all" and usable.size:
            # prose, captions and empty blobs are dropped before they can join a plate group;
            # lines beyond the read budget (largest first are read) stay, unread
            assert self.recognizer is not None
            order = sorted(usable.tolist(), key=lambda i: -shapes[i, 1])[:g.max_reads]
            for i, t in zip(order, self._read_lines(frame, lines, order, cache)):
                texts[int(i)] = t
            reads = len(order)
            legends = _sign_legends(frame, lines.boxes, shapes[:, 1], texts)
            hints = _text_hints(lines.boxes, shapes[:, 1], legends, texts)
            usable = np.array([i for i in usable if int(i) not in texts
                               or (line_is_plate_text(texts[int(i)], g.max_chars)
                                   and int(i) not in legends)], int)
        out: list[PlateCandidate] = []
        if usable.size == 0:
            return out, hints
        boxes, shapes = lines.boxes[usable], shapes[usable]
        for group in _group_lines(boxes, shapes[:, 1]):
            gb = boxes[group]
            box = np.array([gb[:, 0].min(), gb[:, 1].min(), gb[:, 2].max(), gb[:, 3].max()],
                           np.float32)
            main = max(group, key=lambda i: shapes[i, 0])
            height = float(shapes[main, 1])
            aspect = float(shapes[main, 0]) / height
            rows = _rows(gb)
            score = float(lines.scores[usable[group]].max())
            # the plate's outline: a border of about a quarter glyph height around the text
            plate = box + np.array([-0.2, -0.15, 0.2, 0.15], np.float32) * height
            cand = PlateCandidate(plate, score, False, "")
            out.append(cand)
            shares = [_colour_shares(frame, boxes[i]) for i in group]
            red = max(r for r, _ in shares)
            coloured = max(r + c for r, c in shares) > g.colour_share
            if rows > g.max_lines:
                cand.reason = "too many lines"
            elif self.verify == "none" and red > g.red_share:
                cand.reason = "text on red: sign"
            elif coloured and self.verify != "none" and rows == 1 and not registration_like(
                    [" ".join(read(int(usable[i])) for i in group)]):
                cand.text = " ".join(texts.get(int(usable[i]), "") for i in group)
                cand.reason = "text on a coloured background, not a registration"
            elif coloured and self.verify != "none" and rows > 1 \
                    and _mean_saturation(frame, box) > g.surface_saturation and not any(
                        ch.isdigit() for i in group for ch in read(int(usable[i]))):
                # stacked rows on strongly coloured cloth or paint with no digit anywhere (a
                # club's name on a dog's coat); a plate with coloured letters sits on a white or
                # grey plate (a Californian vanity plate whose "1" reads as "I" must still pass)
                cand.text = " ".join(texts.get(int(usable[i]), "") for i in group)
                cand.reason = "stacked text on a coloured surface without a digit"
            elif rows == 1 and aspect < g.min_aspect:
                cand.reason = "taller than wide"
            elif self.verify == "none" or (self.verify == "ambiguous" and (
                    rows > 1 or aspect >= g.sure_aspect)):
                cand.accepted, cand.reason = True, "plate geometry"
            elif reads >= g.max_reads and any(int(usable[i]) not in texts for i in group):
                cand.accepted, cand.reason = True, "unread (read budget spent)"
            else:
                lines_text = [read(int(usable[i])) for i in group]
                cand.text = " ".join(lines_text)
                cand.accepted, cand.reason = _judge_read(lines_text, g)
        return out, hints


class HaarPlateDetector:
    """OpenCV's Haar cascade for Russian plates (shipped in the opencv-python 4.x wheel,
    removed in 5.0). Weak elsewhere; kept as a measured baseline."""

    name = "haar"

    def __init__(self, max_side: int, max_upscale: float, path: str = "") -> None:
        file = path or str(Path(cv2.data.haarcascades) / "haarcascade_russian_plate_number.xml")
        self.cascade = cv2.CascadeClassifier(file)
        if self.cascade.empty():
            raise FileNotFoundError(f"Haar cascade could not be loaded: {file}")
        self.max_side = max_side
        self.max_upscale = max_upscale

    def detect(self, frame: np.ndarray) -> RawDetections:
        h, w = frame.shape[:2]
        scale = working_scale(w, h, self.max_side, self.max_upscale)
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if scale != 1.0:
            gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))))
        found = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=3,
                                              minSize=(30, 10))
        if len(found) == 0:
            return RawDetections.empty()
        b = np.asarray(found, np.float32) / scale
        boxes = np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], 1)
        return RawDetections(boxes, np.ones(len(b), np.float32), np.zeros((len(b), 0, 2)))


class SsdPlateDetector:
    """hyperlpr2's MobileNet-SSD plate detector (Caffe, MIT; trained on Chinese plates). Not
    shipped: `path` is the .prototxt with the .caffemodel beside it (from the hyperlpr2 wheel,
    hyperlpr2/models/dnn/mininet_ssd_v1.*)."""

    name = "ssd"
    input_size = None
    stride = 1

    def __init__(self, path: str, score_threshold: float, max_side: int,
                 max_upscale: float) -> None:
        if not path:
            raise FileNotFoundError(
                "plate detector `ssd` needs anonymizer.plate_model: the path of hyperlpr2's "
                "mininet_ssd_v1.prototxt (the model is not shipped with vlm_node)")
        proto = Path(path)
        weights = proto.with_suffix(".caffemodel")
        if not proto.is_file() or not weights.is_file():
            raise FileNotFoundError(f"SSD plate model not found: {proto} / {weights}")
        self.net = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
        self.score_threshold = score_threshold
        self.max_side = max_side
        self.max_upscale = max_upscale
        self._mean = np.array([0.485, 0.456, 0.406], np.float32)
        self._std = np.array([0.229, 0.224, 0.225], np.float32)

    def predict(self, image: np.ndarray, threshold: float) -> RawDetections:
        h, w = image.shape[:2]
        rgb = image[:, :, ::-1].astype(np.float32) / 255.0
        blob = ((rgb - self._mean) / self._std).transpose(2, 0, 1)[None]
        self.net.setInput(np.ascontiguousarray(blob))
        out = self.net.forward()[0, 0]
        keep = out[:, 2] >= threshold
        out = out[keep]
        boxes = out[:, 3:7] * np.array([w, h, w, h], np.float32)
        return RawDetections(boxes.astype(np.float32), out[:, 2].astype(np.float32),
                             np.zeros((len(out), 0, 2), np.float32))

    def detect(self, frame: np.ndarray) -> RawDetections:
        h, w = frame.shape[:2]
        scale = working_scale(w, h, self.max_side, self.max_upscale)
        view = plan_views(w, h, None, scale, 0, False)[0]
        return merge(run_view(self, frame, view, self.score_threshold), 0.3)
