"""The one labels.json reader (`vlm_node.evaluation.labels`) and the redaction scoring
(`vlm_node.evaluation.redaction`): the shared data sets in their three layouts, path
resolution, `faces_ignore`, and exact counts on hand-made boxes."""
import json
import re
from pathlib import Path

import pytest

from helpers import shared
from vlm_node.errors import ConfigError
from vlm_node.evaluation.labels import ImageLabel, load_labels
from vlm_node.evaluation.matching import greedy_pairs
from vlm_node.evaluation.redaction import KindCounts, new_counts, score_image
from vlm_node.geometry import Box
from vlm_node.results import Detection

MARGINS = {"face": 0.0, "plate": 0.0}


@pytest.mark.parametrize("name, entries, kinds", [
    ("labels.json", 40, {"faces": 10, "plates": 30}),  # paths relative to its folder
    ("faces_wider_train/labels.json", 141, {"faces": 141}),  # paths from the parent folder
    ("signs_real_dev/labels.json", 526, {"signs": 526}),  # likewise
])
def test_shared_label_files_load_with_every_image_found(name, entries, kinds):
    labels = load_labels(shared(name))
    assert len(labels) == entries
    assert all(lb.path is not None and lb.path.is_file() for lb in labels)
    for key, n in kinds.items():
        assert sum(getattr(lb, key) is not None for lb in labels) == n
    for kind in {"faces", "plates", "signs"} - set(kinds):  # absent: not labelled, not empty
        assert all(getattr(lb, kind) is None for lb in labels)


def test_wider_faces_ignore_is_read():
    labels = load_labels(shared("faces_wider_train/labels.json"))
    doc = json.loads(shared("faces_wider_train/labels.json").read_text())
    assert sum(len(lb.faces_ignore) for lb in labels) == sum(
        len(e["faces_ignore"]) for e in doc["images"]) > 0


def test_paths_relative_to_the_folder_or_a_given_root(tmp_path):
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "a.jpg").write_bytes(b"")
    doc = {"images": [{"file": "a.jpg", "faces": [[1, 2, 3, 4]]}]}
    (tmp_path / "set" / "labels.json").write_text(json.dumps(doc))
    [lb] = load_labels(tmp_path / "set" / "labels.json")
    assert lb.path == (tmp_path / "set" / "a.jpg").resolve() and lb.plates is None
    [lb] = load_labels(tmp_path / "set" / "labels.json", root=tmp_path / "elsewhere")
    assert lb.path == tmp_path / "elsewhere" / "a.jpg"
    # written from the common data folder: "set/a.jpg" inside set/labels.json
    doc["images"][0]["file"] = "set/a.jpg"
    (tmp_path / "set" / "labels.json").write_text(json.dumps(doc))
    [lb] = load_labels(tmp_path / "set" / "labels.json")
    assert lb.path == (tmp_path / "set" / "a.jpg").resolve()
    (tmp_path / "set" / "labels.json").write_text(json.dumps({"images": [{"width": 3}]}))
    with pytest.raises(ConfigError, match=r"images\[0\]"):
        load_labels(tmp_path / "set" / "labels.json")


def det(kind, box):
    return Detection(kind, Box.from_list(box), 0.9)


def test_redaction_counts_recall_precision_leaks_and_ignored():
    labels = {"face": [Box(0, 0, 20, 20), Box(100, 100, 20, 20), Box(200, 0, 4, 4)],
              "plate": None}  # plates not labelled: not scored at all
    dets = [det("face", [1, 1, 20, 20]),  # matches the first face
            det("face", [300, 300, 20, 20]),  # false positive
            det("face", [200, 0, 4, 4]),  # a tiny face: ignored with ignore_below=5
            det("plate", [50, 50, 30, 10])]
    counts = score_image(labels, dets, 400, 400, margins=MARGINS, ignore_below=5)
    assert list(counts) == ["face"]
    assert counts["face"] == KindCounts(labels=2, matched=1, detections=2, false_positives=1,
                                        leaked=1)
    assert counts["face"].to_json()["recall"] == 0.5
    # a detection on a faces_ignore box counts neither way
    label = ImageLabel(faces=(Box(0, 0, 20, 20),), faces_ignore=(Box(300, 300, 20, 20),))
    counts = score_image(label, dets[:2], 400, 400, margins=MARGINS)
    assert counts["face"] == KindCounts(labels=1, matched=1, detections=1)


def test_counts_add_and_the_greedy_pairs_take_the_best_first():
    total = new_counts()
    total["face"].add(KindCounts(1, 1, 2, 1, 0)).add(KindCounts(2, 0, 0, 0, 2))
    assert total["face"] == KindCounts(3, 1, 2, 1, 2) and total["plate"] == KindCounts()
    with pytest.raises(TypeError):
        total["face"].add(object())
    # label 0 overlaps both detections; the better pair (label 1, det 0) is taken first
    labels = [Box(0, 0, 10, 10), Box(2, 0, 10, 10)]
    found = [Box(2, 0, 10, 10), Box(0, 0, 9, 10)]
    assert sorted(greedy_pairs(labels, found, 0.3)) == [(0, 1), (1, 0)]
    assert greedy_pairs([None], found, 0.0) == []


def test_the_shipped_kaggle_development_labels_hold_only_the_development_range():
    """docs/data/kaggle_road0-437_labels.json: speed values read by eye for the Kaggle
    road-sign photos road0-road437 (the figures of docs/sign_classifier.md); road438-road876
    are reserved for independent evaluation and must never appear in it."""
    path = Path(__file__).resolve().parents[1] / "docs/data/kaggle_road0-437_labels.json"
    images = load_labels(path, root=path.parent)
    numbers = [int(re.search(r"road(\d+)\.png$", str(i.path)).group(1)) for i in images]
    assert sorted(numbers) == list(range(438))
    speed = [s for i in images for s in i.signs or [] if s["class"] == "speed_limit"]
    assert len(speed) == 291
    valued = [s["value"] for s in speed if s.get("value") is not None]
    assert len(valued) == 287 and {40, 90, 100}.issubset(valued)
    assert all(5 <= v <= 130 for v in valued)
