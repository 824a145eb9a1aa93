"""Fusing VLM (or CLIP) readings with OCR readings of the same frame.

Small VLMs misread digits; OCR reads digits well but knows little about what a sign means. So the
VLM (or CLIP) reading keeps its class, and OCR grounds the number, the text and the box:

- match: boxes overlapping at IoU >= `iou_threshold` (best pairs first); a reading without a box
  matches an unmatched reading of the same class instead;
- OCR's number equal to the VLM's: confirmed, source "fused", confidence up (noisy-OR);
- OCR's number different (and valid for the class): corrected to OCR's, source "fused",
  confidence down (min of the two times `conflict_factor`);
- VLM without a number, OCR with one: filled in, confidence = the smaller of the two;
- OCR readings nobody matched are added with their own source ("ocr", or "classifier" for the
  OCR backend's sign classifier, "shape" for its crossing-sign test).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from vlm_node.analysis.config import FusionConfig
from vlm_node.analysis.schema import check_value
from vlm_node.results import AnalysisResult, SignReading
from vlm_node.vocab import UNKNOWN


@dataclass
class FusionStats:
    confirmed: int = 0  # OCR read the same number
    corrected: int = 0  # OCR read a different number, which replaced the VLM's
    filled: int = 0  # OCR supplied a number the VLM did not give
    matched: int = 0  # pairs of readings of the same sign
    added: int = 0  # OCR-only readings
    notes: list[str] = field(default_factory=list)


def _pairs(primary: list[SignReading], ocr: list[SignReading], iou_threshold: float
           ) -> list[tuple[int, int]]:
    pairs: list[tuple[int, int]] = []
    used_p: set[int] = set()
    used_o: set[int] = set()
    by_iou = sorted(((p.box.iou(o.box), i, j) for i, p in enumerate(primary)
                     for j, o in enumerate(ocr) if p.box is not None and o.box is not None),
                    reverse=True)
    for iou, i, j in by_iou:
        if iou < iou_threshold:
            break
        if i not in used_p and j not in used_o:
            pairs.append((i, j))
            used_p.add(i)
            used_o.add(j)
    # Without a box on one side, the class is all there is to match on.
    for i, p in enumerate(primary):
        if i in used_p:
            continue
        options = [j for j, o in enumerate(ocr) if j not in used_o
                   and o.sign_class == p.sign_class != UNKNOWN
                   and (p.box is None or o.box is None)]
        if options:
            j = max(options, key=lambda j: ocr[j].confidence)
            pairs.append((i, j))
            used_p.add(i)
            used_o.add(j)
    return pairs


def _combine(p: SignReading, o: SignReading, config: FusionConfig, default_speed_unit: str,
             stats: FusionStats) -> SignReading:
    sign_class = p.sign_class if p.sign_class != UNKNOWN else o.sign_class
    confidence = p.confidence
    if UNKNOWN not in (p.sign_class, o.sign_class) and p.sign_class != o.sign_class:
        confidence *= config.conflict_factor
        stats.notes.append(f"class {p.sign_class} (vlm) vs {o.sign_class} (ocr)")
    value, unit = p.value, p.unit
    if p.value is not None:  # a VLM number that is not valid for the fused class is dropped
        value, unit, _ = check_value(sign_class, p.value, p.unit, default_speed_unit)
    ocr_value, ocr_unit, _ = check_value(sign_class, o.value, o.unit, default_speed_unit)
    if ocr_value is not None:
        if value is None:
            value, unit = ocr_value, ocr_unit
            confidence = min(confidence, o.confidence)
            stats.filled += 1
        elif abs(value - ocr_value) < 1e-6:
            confidence = 1.0 - (1.0 - confidence) * (1.0 - o.confidence)
            stats.confirmed += 1
        else:
            stats.notes.append(f"{sign_class}: vlm {value:g} corrected to ocr {ocr_value:g}")
            value, unit = ocr_value, ocr_unit
            confidence = min(confidence, o.confidence) * config.conflict_factor
            stats.corrected += 1
    box = (o.box if config.prefer_ocr_box and o.box is not None else p.box) or o.box
    stats.matched += 1
    return dataclasses.replace(p, sign_class=sign_class, value=value, unit=unit,
                               text=o.text or p.text, box=box,
                               confidence=min(1.0, max(0.0, confidence)), source="fused")


def fuse_readings(primary: list[SignReading], ocr: list[SignReading], config: FusionConfig,
                  default_speed_unit: str = "km/h") -> tuple[list[SignReading], FusionStats]:
    """Fused readings (primary order, then OCR-only readings) and what fusion did."""
    stats = FusionStats()
    pairs = dict(_pairs(primary, ocr, config.iou_threshold))
    matched_ocr = set(pairs.values())
    out = [(_combine(p, ocr[pairs[i]], config, default_speed_unit, stats) if i in pairs else p)
           for i, p in enumerate(primary)]
    for j, o in enumerate(ocr):
        if j not in matched_ocr:
            # keeps "classifier" (the sign classifier) and "shape" (the crossing-sign test);
            # plain OCR ones are "ocr"
            out.append(dataclasses.replace(o, source=o.source or "ocr"))
            stats.added += 1
    return out, stats


def fuse_results(primary: AnalysisResult, ocr: AnalysisResult, config: FusionConfig,
                 default_speed_unit: str = "km/h") -> tuple[AnalysisResult, FusionStats]:
    """`primary` with its signs fused with `ocr`'s; the scene and backend stay primary's."""
    signs, stats = fuse_readings(primary.signs, ocr.signs, config, default_speed_unit)
    return dataclasses.replace(primary, signs=signs), stats
