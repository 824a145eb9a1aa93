"""`vlm-node anonymize`: outputs at the same relative paths and formats, the report, metrics,
and failures that skip images instead of copying them."""
import json
import shutil

import cv2
import numpy as np
import pytest

from helpers import shared
from vlm_node.cli import main as cli_main


@pytest.fixture
def cli(monkeypatch):
    """The real `vlm-node` parser with only the anonymize subcommand registered."""
    monkeypatch.setattr(cli_main, "SUBCOMMANDS", ("anonymize",))
    return cli_main.main


@pytest.fixture
def dataset(tmp_path):
    """A small labelled tree: a jpg face photo at the top, a jpg and a png plate photo in a
    subdirectory, and a labels.json with paths relative to it."""
    root = tmp_path / "in"
    (root / "cars").mkdir(parents=True)
    shutil.copy(shared("faces/dlib_pascal_voc/2008_002079.jpg"), root / "group.jpg")
    shutil.copy(shared("plates/images/Cars0.jpg"), root / "cars" / "a.jpg")
    cv2.imwrite(str(root / "cars" / "b.png"), cv2.imread(str(shared("plates/images/Cars14.jpg"))))
    labels = json.loads(shared("labels.json").read_text())["images"]
    by_file = {e["file"]: e for e in labels}
    entries = [dict(by_file["faces/dlib_pascal_voc/2008_002079.jpg"], file="group.jpg"),
               dict(by_file["plates/images/Cars0.jpg"], file="cars/a.jpg"),
               dict(by_file["plates/images/Cars14.jpg"], file="cars/b.png")]
    (root / "labels.json").write_text(json.dumps({"images": entries}))
    return root


def test_directory_with_labels_and_report(cli, dataset, tmp_path, capsys):
    out, report = tmp_path / "out", tmp_path / "report.json"
    rc = cli(["anonymize", str(dataset), "--output", str(out), "--labels",
              str(dataset / "labels.json"), "--report", str(report), "--mode", "pixelate"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "faces: recall 1.000 (6/6)" in printed
    assert "plates: recall 1.000 (2/2)" in printed
    # same relative paths, names and formats
    assert (out / "group.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert (out / "cars" / "a.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert (out / "cars" / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the png is lossless: outside the redactions it is the input, inside it is not
    src = cv2.imread(str(dataset / "cars" / "b.png"))
    dst = cv2.imread(str(out / "cars" / "b.png"))
    rep = json.loads(report.read_text())
    assert rep["config"]["redaction"] == "pixelate" and rep["failed"] == []
    entry = next(i for i in rep["images"] if i["input"] == "cars/b.png")
    plates = [d for d in entry["detections"] if d["kind"] == "plate"]
    assert plates and all(len(d["box"]) == 4 and 0 < d["score"] <= 1 for d in plates)
    x, y, w, h = (int(v) for v in plates[0]["box"])
    inside = dst[y:y + h, x:x + w].astype(int) - src[y:y + h, x:x + w].astype(int)
    assert np.abs(inside).mean() > 10
    assert np.array_equal(dst[:100, :50], src[:100, :50])
    m = rep["metrics"]
    assert m["images_scored"] == 3
    assert m["face"]["recall"] == 1.0 and m["face"]["leaked"] == 0
    assert m["plate"] == json.loads((out / "metrics.json").read_text())["plate"]
    assert m["plate"]["labels"] == 2 and m["plate"]["leak_rate"] == 0.0
    assert entry["metrics"]["plate"]["matched"] == 1


def test_frames_in_flight_give_the_same_outputs(cli, tmp_path):
    """Images detected several at a time are redacted and written in order: with --sequence
    (carry-over from one image to the next, so the order matters: the face is hidden from the
    detector in the later frames) the outputs and reports of 1 and 3 in flight are identical."""
    photo = cv2.imread(str(shared("faces/dlib_pascal_voc/2008_002079.jpg")))
    hidden = photo.copy()
    labels = json.loads(shared("labels.json").read_text())["images"]
    faces = next(e for e in labels if e["file"].endswith("2008_002079.jpg"))["faces"]
    for x, y, w, h in faces:
        hidden[int(y):int(y + h), int(x):int(x + w)] = 128
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, img in enumerate([photo, hidden, hidden, photo, hidden]):
        cv2.imwrite(str(frames / f"{i:02d}.png"), img)
    reports = {}
    for n in (1, 3):
        out, report = tmp_path / f"out{n}", tmp_path / f"report{n}.json"
        assert cli(["anonymize", str(frames), "--output", str(out), "--sequence",
                    "--report", str(report), "--mode", "fill", "--frames-in-flight",
                    str(n)]) == 0
        rep = json.loads(report.read_text())
        reports[n] = [{k: v for k, v in i.items() if k not in ("output", "anonymize_ms")}
                      for i in rep["images"]]
        assert rep["config"]["parallel_stages"] == (n == 1)
    assert reports[1] == reports[3] and len(reports[1]) == 5
    assert any(d["detector"].startswith("carry:") for i in reports[1] for d in i["detections"])
    for i in range(5):
        name = f"{i:02d}.png"
        assert (tmp_path / "out1" / name).read_bytes() == (tmp_path / "out3" / name).read_bytes()


def test_glob_input_keeps_paths_relative_to_the_pattern_root(cli, dataset, tmp_path):
    out = tmp_path / "out"
    assert cli(["anonymize", str(dataset / "cars" / "*.jpg"), "--output", str(out)]) == 0
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["a.jpg"]


def test_unreadable_image_is_skipped_not_copied(cli, dataset, tmp_path, capsys):
    (dataset / "cars" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    out = tmp_path / "out"
    rc = cli(["anonymize", str(dataset / "cars"), "--output", str(out)])
    assert rc == 1
    assert not (out / "broken.jpg").exists()
    assert (out / "a.jpg").exists()
    assert "skipped" in capsys.readouterr().out


def test_failed_anonymization_writes_nothing(cli, dataset, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("vlm_node:\n  ros__parameters:\n    anonymizer.detector_budget_ms: 0.001\n")
    out = tmp_path / "out"
    rc = cli(["anonymize", str(dataset / "group.jpg"), "--output", str(out),
              "--config", str(cfg)])
    assert rc == 1
    assert not any(p.is_file() for p in out.rglob("*")) if out.exists() else True
    assert "over_budget" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["{tmp}/nothing_here"], "input not found"),
    (["{tmp}"], "no images found"),
])
def test_clear_errors(cli, tmp_path, capsys, args, message):
    rc = cli(["anonymize", *(a.format(tmp=tmp_path) for a in args), "--output",
              str(tmp_path / "out")])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_bad_config_is_rejected(cli, dataset, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("anonymizer:\n  redaction: smudge\n")
    rc = cli(["anonymize", str(dataset), "--output", str(tmp_path / "o"), "--config", str(cfg)])
    assert rc == 2
    assert "anonymizer.redaction='smudge'" in capsys.readouterr().err
