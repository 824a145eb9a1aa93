"""The proposal ranker: its features on constructed masks, the fit, the cap, the shipped file
on a real 1080p road frame, and `vlm-node fit-ranker` end to end."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from helpers import shared
from vlm_node.analysis.ocr_backend import OcrBackend
from vlm_node.analysis.ocr_config import OcrConfig
from vlm_node.analysis.proposal_ranker import (BASE_FEATURES, DEFAULT_RANKER, ProposalRanker,
                                               expanded, features, fit_ranker)
from vlm_node.geometry import Box, box_array, iou_matrix


def _masks(h=100, w=200):
    return {k: np.zeros((h, w), np.uint8) for k in ("red", "blue", "yellow")}


def test_features_measure_paint_in_the_box_and_its_middle():
    masks = _masks()
    # a red ring 20 px wide: its rim painted, its middle not
    cv2.circle(masks["red"], (50, 50), 10, 255, 3)
    masks["blue"][40:60, 140:160] = 255  # a blue square, painted throughout
    x = features([Box(40, 40, 20, 20), Box(140, 40, 20, 20)], masks, scale=0.5)
    assert x.shape == (2, len(BASE_FEATURES))
    f = dict(zip(BASE_FEATURES, x[0]))
    assert 0.2 < f["red_box"] < 0.6 and f["red_middle"] < 0.1 and f["blue_box"] == 0
    g = dict(zip(BASE_FEATURES, x[1]))
    assert g["blue_box"] == g["blue_middle"] == 1.0 and g["red_box"] == 0
    # sizes in frame pixels (the search image is half the frame), places as shares of it
    assert f["log_side_px"] == pytest.approx(np.log(40))
    assert f["log_aspect"] == 0 and f["centre_y"] == pytest.approx(0.5)
    assert f["centre_x_off"] == pytest.approx(0.25) and g["centre_x_off"] == pytest.approx(0.25)
    # the loose red mask, when there is one, is what counts as red (as paint_share reads it)
    loose = dict(masks, red_loose=np.full((100, 200), 255, np.uint8))
    assert features([Box(40, 40, 20, 20)], loose, 0.5)[0, 0] == 1.0


def test_expanded_adds_every_pairwise_product_once():
    x = np.array([[1.0, 2.0, 3.0]])
    assert expanded(x).tolist() == [[1, 2, 3, 1, 2, 3, 4, 6, 9]]
    assert expanded(np.zeros((0, 10))).shape == (0, 65)


def test_fit_ranks_the_sign_like_rows_first_and_is_deterministic():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (400, len(BASE_FEATURES)))
    positive = (x[:, 0] > 0.8) & (x[:, 1] < 0.5)  # a red rim with an unpainted middle
    a = fit_ranker(x, positive, iterations=500)
    b = fit_ranker(x, positive, iterations=500)
    assert np.array_equal(a.weights, b.weights) and a.bias == b.bias
    s = a.scores_of(x)
    top = np.argsort(-s)[:int(positive.sum())]
    assert positive[top].mean() > 0.9
    with pytest.raises(ValueError):
        fit_ranker(x, np.zeros(len(x), bool))


def test_best_keeps_the_highest_scores_in_their_own_order(tmp_path):
    masks = _masks()
    masks["red"][10:30, 10:30] = 255
    masks["red"][10:30, 110:130] = 255
    boxes = [Box(60, 60, 20, 20), Box(110, 10, 20, 20), Box(150, 60, 20, 20), Box(10, 10, 20, 20)]
    # a ranker that only likes red in the box
    w = np.zeros(65)
    w[0] = 1.0
    ranker = ProposalRanker(w, 0.0)
    assert ranker.best(boxes, masks, 1.0, 2) == [boxes[1], boxes[3]]
    assert ranker.best(boxes, masks, 1.0, 10) == boxes
    path = tmp_path / "r.json"
    ranker.save(path)
    again = ProposalRanker.load(path)
    assert np.array_equal(again.weights, w) and again.bias == 0.0
    data = json.loads(path.read_text())
    path.write_text(json.dumps(dict(data, weights=[1.0, 2.0])))
    with pytest.raises(ValueError, match="65 weights"):
        ProposalRanker.load(path)
    with pytest.raises(ValueError, match="cannot read"):
        ProposalRanker.load(tmp_path / "missing.json")


@pytest.fixture(scope="module")
def road_1080p():
    """A GTSDB road photo of the development range (00300-00599, not the ranker's training
    photos) as a 1080p frame, with its labelled signs scaled alike."""
    labels = json.loads(shared("signs_real_dev/labels.json").read_text())
    entry = next(e for e in labels["images"] if e["file"].endswith("gtsdb_00323.jpg"))
    image = cv2.imread(str(shared("signs_real_dev/gtsdb_00323.jpg")))
    fx, fy = 1920 / image.shape[1], 1080 / image.shape[0]
    signs = [Box(x * fx, y * fy, w * fx, h * fy) for x, y, w, h in
             (s["box"] for s in entry["signs"])]
    return cv2.resize(image, (1920, 1080)), signs


def test_the_shipped_ranker_caps_a_busy_frame_and_keeps_its_signs(road_1080p):
    """The full search's ranking (a 1080p frame reads through the learned proposer by default:
    `learned_min_side`; the ranker serves smaller frames and `learned_proposals: 0`)."""
    frame, signs = road_1080p
    assert DEFAULT_RANKER.is_file()
    reader = OcrBackend(OcrConfig(learned_proposals=0))
    reader.load()
    try:
        every, rows = reader.proposal_features(frame)
        ranked = reader._search(frame).proposals
    finally:
        reader.close()
    assert rows.shape == (len(every), len(BASE_FEATURES)) and len(every) > 150
    assert len(ranked) <= 150
    assert all(any(b is r or b == r for b in every) for r in ranked)  # a subset, nothing new
    # every proposal that lies on a labelled sign is still among those classified
    on_sign = iou_matrix(box_array(every), box_array(signs)).max(axis=1) >= 0.4
    assert on_sign.any()
    kept = iou_matrix(box_array(ranked), box_array(signs)).max(axis=1) >= 0.4
    assert kept.sum() == on_sign.sum()


def test_ranker_features_come_from_the_full_search_whatever_the_frame(road_1080p):
    """`fit-ranker` fits on the colour proposals: a reader whose 1080p frames go through the
    learned proposer still gives the full search's proposals and features."""
    frame, _ = road_1080p
    learned = OcrBackend(OcrConfig())
    full = OcrBackend(OcrConfig(learned_proposals=0))
    try:
        learned.load()
        full.load()
        assert learned.proposal_features(frame)[0] == full.proposal_features(frame)[0]
        assert len(learned._search(frame).proposals) < len(full._search(frame).proposals)
    finally:
        learned.close()
        full.close()


def test_fit_ranker_command_writes_a_ranker_it_can_load(tmp_path, capsys):
    from vlm_node.cli.main import main

    out = tmp_path / "ranker.json"
    rc = main(["fit-ranker", str(shared("signs_real_dev/labels.json")), "--include",
               "gtsdb_0000[0-5].jpg", "--size", "960x540", "-o", str(out)])
    assert rc == 0
    ranker = ProposalRanker.load(out)
    assert ranker.training["photos"] == 6 and ranker.training["size"] == "960x540"
    assert 0 < ranker.training["on_signs"] < ranker.training["proposals"]
    assert "on labelled signs" in capsys.readouterr().out
