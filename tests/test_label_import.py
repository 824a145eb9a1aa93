"""`vlm-node import-labels`: GTSDB, GTSRB, WIDER FACE, Pascal VOC and YOLO ground truth become
labels.json with the right boxes, classes, values and ignore boxes, read back by the one labels
reader; bad input fails with a clear message; converted GTSRB crops score through `analyze`."""
import json
import shutil

import cv2
import numpy as np
import pytest

from helpers import shared
from vlm_node.cli.inputs import collect_images
from vlm_node.cli.main import main
from vlm_node.errors import ConfigError
from vlm_node.evaluation import label_import as li
from vlm_node.evaluation.labels import load_labels


def _image(path, width, height):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((height, width, 3), 90, np.uint8))
    return path


def _by_name(labels):
    return {lb.path.name: lb for lb in labels}


# --- GTSDB -------------------------------------------------------------------------------

GT_TXT = ("00600.ppm;100;200;139;239;1\n"   # a 30, 40x40 px inclusive corners
          "00600.ppm;700;300;759;359;14\n"  # a stop
          "00700.ppm;10;20;29;39;6\n"       # end of 80
          "00899.ppm;1;1;20;20;2\n")        # its image is not in the folder


def test_gtsdb_boxes_are_scaled_to_each_images_size(tmp_path):
    """Resized copies (here half size) get their boxes scaled; an image gt.txt does not name is
    labelled as having no sign; boxes of images that are not there are counted as left out."""
    folder = tmp_path / "FullIJCNN2013"
    _image(folder / "00600.ppm", 680, 400)
    _image(folder / "00601.ppm", 680, 400)
    _image(folder / "00700.ppm", 1360, 800)
    (folder / "gt.txt").write_text(GT_TXT)
    out = tmp_path / "out" / "gtsdb.json"
    assert main(["import-labels", "gtsdb", str(folder / "gt.txt"), "-o", str(out)]) == 0
    labels = _by_name(load_labels(out))
    assert set(labels) == {"00600.ppm", "00601.ppm", "00700.ppm"}
    thirty, stop = labels["00600.ppm"].signs
    assert thirty == {"box": [50.0, 100.0, 20.0, 20.0], "class": "speed_limit",
                      "gtsrb_class_id": 1, "value": 30.0, "unit": "km/h"}
    assert stop["class"] == "stop" and stop["box"] == [350.0, 150.0, 30.0, 30.0]
    assert "value" not in stop
    assert labels["00601.ppm"].signs == ()  # labelled: no sign there
    end = labels["00700.ppm"].signs[0]  # full size: unscaled
    assert (end["class"], end["value"], end["box"]) == ("end_speed_limit", 80.0,
                                                        [10.0, 20.0, 20.0, 20.0])
    assert labels["00600.ppm"].width == 680 and labels["00600.ppm"].faces is None
    doc = json.loads(out.read_text())
    assert doc["images"][0]["file"] == "../FullIJCNN2013/00600.ppm"  # relative to the output


def test_gtsdb_include_and_renamed_copies(tmp_path):
    """--include picks images by name; `gtsdb_00600.jpg` (a renamed copy) is 00600's image."""
    folder = tmp_path / "copies"
    _image(folder / "gtsdb_00600.jpg", 816, 480)
    _image(folder / "gtsdb_00700.jpg", 816, 480)
    (folder / "gt.txt").write_text(GT_TXT)
    got = li.import_gtsdb(folder / "gt.txt", folder, include=["*006*"])
    assert [e["file"].name for e in got.entries] == ["gtsdb_00600.jpg"]
    assert got.entries[0]["signs"][0]["box"] == [60.0, 120.0, 24.0, 24.0]  # x0.6
    assert got.skipped == {"gt.txt boxes of images not in the folder": 1}


def test_gtsdb_bad_input_is_a_clear_error(tmp_path):
    folder = tmp_path / "g"
    _image(folder / "00600.ppm", 640, 640)  # not GTSDB's aspect
    (folder / "gt.txt").write_text(GT_TXT)
    with pytest.raises(ConfigError, match="not a scaled GTSDB frame"):
        li.import_gtsdb(folder / "gt.txt", folder)
    (folder / "gt.txt").write_text("00600.ppm;1;2;3\n")
    with pytest.raises(ConfigError, match=r"gt.txt:1: expected 'file;x1;y1;x2;y2;class_id'"):
        li.import_gtsdb(folder / "gt.txt", folder)
    (folder / "gt.txt").write_text("00600.ppm;1;2;3;4;43\n")
    _image(folder / "00600.ppm", 1360, 800)
    with pytest.raises(ConfigError, match="class id 43 is not a GTSRB class"):
        li.import_gtsdb(folder / "gt.txt", folder)


# --- GTSRB -------------------------------------------------------------------------------

def test_gtsrb_official_and_kaggle_csv(tmp_path):
    """The official `;` CSV beside its crops and the Kaggle layout's `,` CSV with paths; ROI
    corners are inclusive; without Width/Height the size comes from the image."""
    official = tmp_path / "Final_Test" / "Images"
    _image(official / "00000.ppm", 30, 32)
    _image(official / "00001.ppm", 50, 50)
    (official / "GT-final_test.csv").write_text(
        "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
        "00000.ppm;30;32;5;6;24;25;4\n00001.ppm;50;50;5;5;44;44;17\n")
    got = li.import_gtsrb(official / "GT-final_test.csv")
    first, second = got.entries
    assert first["signs"] == [{"box": [5.0, 6.0, 20.0, 20.0], "class": "speed_limit",
                               "gtsrb_class_id": 4, "value": 70.0, "unit": "km/h"}]
    assert second["signs"][0]["class"] == "no_entry"
    assert (first["width"], first["height"]) == (30, 32)

    kaggle = tmp_path / "kaggle"
    _image(kaggle / "Test" / "00000.png", 40, 41)
    _image(kaggle / "Test" / "aug_1.png", 40, 41)
    (kaggle / "Test.csv").write_text("Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path\n"
                                     "4,4,35,36,8,Test/00000.png\n4,4,35,36,8,Test/aug_1.png\n")
    got = li.import_gtsrb(kaggle / "Test.csv")
    assert len(got.entries) == 1 and got.skipped == {"augmented extras (aug_*)": 1}
    entry = got.entries[0]
    assert (entry["width"], entry["height"]) == (40, 41)
    assert entry["signs"][0]["value"] == 120.0

    (kaggle / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="not a GTSRB CSV"):
        li.import_gtsrb(kaggle / "bad.csv")


def test_training_reads_the_same_roi():
    """The training tool and the importer place a GTSRB ROI the same way (one function)."""
    from vlm_node.tools import train_signs

    assert train_signs.gtsrb_roi is li.gtsrb_roi
    box = li.gtsrb_roi({"Roi.X1": "5", "Roi.Y1": "6", "Roi.X2": "24", "Roi.Y2": "25"})
    assert box.to_list() == [5.0, 6.0, 20.0, 20.0]


# --- WIDER FACE ----------------------------------------------------------------------------

WIDER_GT = """0--Parade/0_Parade_a.jpg
3
10 20 30 40 0 0 0 0 0 0
50 60 8 9 2 0 0 1 0 0
70 80 0 0 0 0 0 0 0 0
0--Parade/0_Parade_b.jpg
0
0 0 0 0 0 0 0 0 0 0
1--Handshaking/1_Handshaking_c.jpg
1
1 2 3 4 0 0 0 0 0 0
1--Handshaking/1_Handshaking_missing.jpg
1
1 2 3 4 0 0 0 0 0 0
"""


def test_wider_faces_ignore_boxes_and_empty_images(tmp_path):
    images = tmp_path / "WIDER_val" / "images"
    for name in ("0--Parade/0_Parade_a.jpg", "0--Parade/0_Parade_b.jpg",
                 "1--Handshaking/1_Handshaking_c.jpg"):
        _image(images / name, 64, 48)
    gt = tmp_path / "wider_face_val_bbx_gt.txt"
    gt.write_text(WIDER_GT)
    out = tmp_path / "wider.json"
    assert main(["import-labels", "wider", str(gt), "--images", str(images),
                 "--include", "0--Parade/*", "-o", str(out)]) == 0
    labels = _by_name(load_labels(out))
    assert set(labels) == {"0_Parade_a.jpg", "0_Parade_b.jpg"}
    a = labels["0_Parade_a.jpg"]
    assert [b.to_list() for b in a.faces] == [[10.0, 20.0, 30.0, 40.0]]
    assert [b.to_list() for b in a.faces_ignore] == [[50.0, 60.0, 8.0, 9.0]]  # invalid = 1
    assert labels["0_Parade_b.jpg"].faces == ()  # labelled: nobody there
    assert a.signs is None and a.plates is None  # not labelled in WIDER
    got = li.import_wider(gt, images)
    assert len(got.entries) == 3
    assert got.skipped == {"zero-size face boxes": 1, "images listed but not in the folder": 1}
    gt.write_text("0--Parade/0_Parade_a.jpg\nthree\n")
    with pytest.raises(ConfigError, match=":2: expected the face count"):
        li.import_wider(gt, images)


# --- Pascal VOC ----------------------------------------------------------------------------

def _voc(path, filename, objects, size=(100, 80)):
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b in objects)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><filename>{filename}</filename><size><width>{size[0]}"
                    f"</width><height>{size[1]}</height></size>{objs}</annotation>")


def test_voc_road_signs_and_plates(tmp_path):
    """Kaggle layout (annotations/ beside images/): names map to vocabulary classes, a traffic
    light is skipped and counted, and signs are labelled in every file of the set."""
    root = tmp_path / "road"
    _image(root / "images" / "road0.png", 100, 80)
    _image(root / "images" / "road1.png", 100, 80)
    _voc(root / "annotations" / "road0.xml", "road0.png",
         [("speedlimit", (10, 10, 30, 30)), ("trafficlight", (50, 5, 60, 25))])
    _voc(root / "annotations" / "road1.xml", "road1.png", [("trafficlight", (1, 1, 9, 20))])
    out = tmp_path / "road.json"
    assert main(["import-labels", "voc", str(root / "annotations"), "-o", str(out)]) == 0
    labels = _by_name(load_labels(out))
    assert labels["road0.png"].signs == ({"box": [10.0, 10.0, 20.0, 20.0],
                                          "class": "speed_limit"},)
    assert labels["road1.png"].signs == ()  # only a traffic light: no sign there
    assert labels["road0.png"].plates is None and labels["road0.png"].faces is None

    cars = tmp_path / "cars"
    _image(cars / "Cars61.png", 100, 80)
    _voc(cars / "Cars61.xml", "Cars61.png", [("licence", (20, 40, 60, 52))])
    got = li.import_voc(cars)
    assert got.entries[0]["plates"] == [[20.0, 40.0, 40.0, 12.0]]
    assert "signs" not in got.entries[0] and "faces" not in got.entries[0]


def test_voc_unknown_names_need_a_mapping(tmp_path, capsys):
    root = tmp_path / "set"
    _image(root / "a.png", 100, 80)
    _voc(root / "a.xml", "a.png", [("warning_deer", (1, 1, 20, 20)), ("person", (0, 0, 5, 5))])
    with pytest.raises(ConfigError, match="--map warning_deer=CLASS"):
        li.import_voc(root)
    got = li.import_voc(root, mapping={"warning_deer": "animals", "person": ""})
    assert got.entries[0]["signs"] == [{"box": [1.0, 1.0, 19.0, 19.0], "class": "animals"}]
    assert got.skipped == {"objects named 'person'": 1}
    assert main(["import-labels", "voc", str(root), "--map", "x=no_such_class",
                 "-o", str(tmp_path / "o.json")]) == 2
    assert "not a vocabulary class" in capsys.readouterr().err


# --- YOLO ----------------------------------------------------------------------------------

def test_yolo_faces_in_the_ultralytics_layout(tmp_path, capsys):
    """labels/train beside images/train: normalised centre boxes become pixel boxes of each
    image's own size, a skipped id is counted, an empty file is an image without faces, and an
    image without its file (or a file without its image) is left out and counted."""
    root = tmp_path / "widerface"
    _image(root / "images" / "train" / "a.jpg", 200, 100)
    _image(root / "images" / "train" / "b.png", 64, 48)
    _image(root / "images" / "train" / "c.jpg", 50, 50)  # its label file is lost
    labels = root / "labels" / "train"
    labels.mkdir(parents=True)
    (labels / "a.txt").write_text("0 0.5 0.5 0.1 0.2\n1 0.25 0.5 0.1 0.1\n\n0 0.05 0.1 0.1 0.2\n")
    (labels / "b.txt").write_text("")
    (labels / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    out = tmp_path / "wider.json"
    assert main(["import-labels", "yolo", str(labels), "--map", "0=face", "--map", "1=",
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 images, 2 faces" in printed and "1 images without a label file" in printed
    got = _by_name(load_labels(out))
    assert sorted(got) == ["a.jpg", "b.png"]
    assert [b.to_list() for b in got["a.jpg"].faces] == [[90.0, 40.0, 20.0, 20.0],
                                                         [0.0, 0.0, 20.0, 20.0]]
    assert got["b.png"].faces == ()
    assert got["a.jpg"].plates is None and got["a.jpg"].signs is None  # never labelled here
    imported = li.import_yolo(labels, {"0": "face", "1": ""})
    assert imported.skipped == {"objects of class id 1": 1, "images without a label file": 1,
                                "label files without an image": 1}
    # only the images asked for: the other label files are not orphans then
    assert li.import_yolo(labels, {"0": "face", "1": ""}, include=["a.*"]).skipped == {
        "objects of class id 1": 1}
    assert li.default_yolo_images(labels) == root / "images" / "train"
    assert li.default_yolo_images(tmp_path / "flat") == tmp_path / "flat"


def test_yolo_bad_input_is_explained(tmp_path, capsys):
    labels = tmp_path / "set"
    _image(labels / "a.jpg", 100, 100)
    (labels / "a.txt").write_text("3 0.5 0.5 0.2 0.2\n")
    with pytest.raises(ConfigError, match=r"a.txt:1: class id 3 .*--map 3=face"):
        li.import_yolo(labels, {})
    assert li.import_yolo(labels, {"3": "stop"}).entries[0]["signs"] == [
        {"box": [40.0, 40.0, 20.0, 20.0], "class": "stop"}]
    (labels / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.1 0.1 0.2 0.1 0.3 0.3\n")
    with pytest.raises(ConfigError, match=r"a.txt:2: expected 'class cx cy w h'"):
        li.import_yolo(labels, {"0": "face"})
    (labels / "a.txt").write_text("0 50 50 20 20\n")  # pixels, not normalised
    with pytest.raises(ConfigError, match="normalised to 0..1"):
        li.import_yolo(labels, {"0": "face"})
    with pytest.raises(ConfigError, match="not a vocabulary class"):
        li.import_yolo(labels, {"0": "no_such_class"})
    assert main(["import-labels", "yolo", str(labels), "--map", "0=face", "--images",
                 str(tmp_path / "nowhere"), "-o", str(tmp_path / "o.json")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["import-labels", "yolo", str(labels / "a.txt"), "--map", "0=face"]) == 2
    assert "must be the folder of label files" in capsys.readouterr().err
    assert main(["import-labels", "gtsdb", str(labels / "a.txt"), "--map", "0=face"]) == 2
    assert "--map applies to voc and yolo only" in capsys.readouterr().err


def test_cli_refuses_to_overwrite_and_explains_missing_input(tmp_path, capsys):
    folder = tmp_path / "g"
    _image(folder / "00600.ppm", 1360, 800)
    (folder / "gt.txt").write_text(GT_TXT)
    assert main(["import-labels", "gtsdb", str(folder / "gt.txt")]) == 0
    assert (folder / "labels.json").is_file()  # default: beside the images
    assert main(["import-labels", "gtsdb", str(folder / "gt.txt")]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["import-labels", "gtsdb", str(folder / "gt.txt"), "--force"]) == 0
    assert main(["import-labels", "wider", str(folder / "gt.txt")]) == 2
    assert "pass --images" in capsys.readouterr().err
    assert main(["import-labels", "gtsrb", str(tmp_path / "nope.csv")]) == 2
    assert "ground truth not found" in capsys.readouterr().err


def test_ppm_images_are_inputs(tmp_path):
    """The GTSDB and GTSRB originals are PPM files: every command accepts them."""
    _image(tmp_path / "00000.ppm", 20, 20)
    assert [p.name for p, _ in collect_images(str(tmp_path))] == ["00000.ppm"]


def test_imported_gtsrb_crops_score_through_analyze(tmp_path, capsys):
    """End to end as a user with the GTSRB test split would run it: real GTSRB crops saved as
    PPM with an official-style CSV, imported, then `analyze --labels` reads their values."""
    images = tmp_path / "Images"
    images.mkdir()
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    # held-out-track crops of the shipped model (a 30 and a 70), ROI = the crop less ~10 %
    for i, (name, cid) in enumerate((("00001_00023_00021.png", 1),
                                     ("00004_00055_00021.png", 4))):
        bgr = cv2.imread(str(shared("gtsrb_train_sample") / name))
        h, w = bgr.shape[:2]
        cv2.imwrite(str(images / f"{i:05d}.ppm"), bgr)
        rows.append(f"{i:05d}.ppm;{w};{h};{round(w * .1)};{round(h * .1)};"
                    f"{round(w * .9) - 1};{round(h * .9) - 1};{cid}")
    (images / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    assert main(["import-labels", "gtsrb", str(images / "GT-final_test.csv")]) == 0
    capsys.readouterr()
    assert main(["analyze", str(images), "--backend", "ocr",
                 "--labels", str(images / "labels.json")]) == 0
    out = capsys.readouterr().out
    assert "speed-limit value accuracy: 100.0 % of 2;" in out, out
    shutil.rmtree(images)
