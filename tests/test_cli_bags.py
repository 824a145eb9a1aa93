"""`vlm-node sample-bag` and `vlm-node anonymize-bag`: help, outputs and exit codes (0 ok, 1 frames
dropped, 2 error with nothing left at OUT)."""
import json

import numpy as np
import pytest

from bag_helpers import write_bag
from vlm_node.bags import io
from vlm_node.cli import main as cli_main


@pytest.fixture
def cli(monkeypatch):
    """The real `vlm-node` parser with only the bag subcommands registered."""
    monkeypatch.setattr(cli_main, "SUBCOMMANDS", ("sample_bag", "anonymize_bag"))
    return cli_main.main


def test_both_commands_are_registered():
    assert {"sample_bag", "anonymize_bag"} <= set(cli_main.SUBCOMMANDS)


@pytest.mark.parametrize("command,words", [
    ("sample-bag", ["--frames", "--cameras", "--seconds", "--storage", "--size", "--seed",
                    "--force", "labels.json"]),
    ("anonymize-bag", ["--topics", "--storage", "--config", "--mode", "--results-topic",
                       "--summary", "--force", "Exit status", "IN [IN ...] OUT", "--ray",
                       "auto|ADDRESS", "ray://HOST:10001", "--workers", "--chunk-seconds",
                       "--warmup-frames"])])
def test_help(cli, capsys, command, words):
    with pytest.raises(SystemExit) as exc:
        cli([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for word in words:
        assert word in text


def test_sample_bag_then_anonymize_bag(cli, tmp_path, capsys):
    bag = tmp_path / "bag"
    assert cli(["sample-bag", str(bag), "--frames", "2", "--cameras", "2", "--seconds", "0.2",
                "--size", "320x240", "--storage", "sqlite3", "--seed", "3"]) == 0
    assert "wrote" in capsys.readouterr().out
    labels = json.loads((bag / "labels.json").read_text())
    assert len(labels["images"]) == 4
    with io.open_bag(bag) as b:
        assert b.storage == "sqlite3"

    out, summary = tmp_path / "anon", tmp_path / "summary.json"
    params = tmp_path / "params.yaml"
    params.write_text("/**/vlm_node:\n  ros__parameters:\n    anonymizer:\n"
                      "      redaction: pixelate\n")
    assert cli(["anonymize-bag", str(bag), str(out), "--storage", "mcap", "--config",
                str(params), "--summary", str(summary), "--no-progress", "--labels",
                str(bag / "labels.json")]) == 0
    text = capsys.readouterr().out
    assert "4 frames" in text and "real-time factor" in text and "/tf: 2 copied" in text
    assert "validation on 4 labelled frames: faces recall" in text
    data = json.loads(summary.read_text())
    assert data["frames"] == 4 and data["dropped"] == 0 and data["storage_out"] == "mcap"
    assert data["validation"]["frames"] == 4 and data["validation"]["face"]["leaked"] == 0
    assert data["config"]["redaction"] == "pixelate"
    with io.open_bag(out) as b:
        assert b.storage == "mcap" and b.message_count == 4 + 2 + 1

    # OUT exists now: refused without --force (exit 2), accepted with it
    assert cli(["anonymize-bag", str(bag), str(out), "--no-progress"]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli(["anonymize-bag", str(bag), str(out), "--no-progress", "--force",
                "--mode", "fill", "--topics", "/front/image_raw"]) == 0
    assert "NOT written" in capsys.readouterr().out


def test_sample_bag_errors(cli, tmp_path, capsys):
    assert cli(["sample-bag", str(tmp_path / "b"), "--cameras", "0"]) == 2
    assert "cameras must be" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli(["sample-bag", str(tmp_path / "b"), "--size", "640by480"])
    assert exc.value.code == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_anonymize_bag_exit_1_when_frames_dropped(cli, tmp_path, capsys):
    store = io.typestore()

    def build(w):
        conn = w.add_topic("/cam/image_raw/compressed", io.COMPRESSED_IMAGE)
        w.write_msg(conn, 1, store.types[io.COMPRESSED_IMAGE](
            header=io.header(1, "cam"), format="jpeg",
            data=np.frombuffer(b"\x89PNG\r\n\x1a\n broken", np.uint8)))
    write_bag(tmp_path / "in", build)
    assert cli(["anonymize-bag", str(tmp_path / "in"), str(tmp_path / "out"),
                "--no-progress"]) == 1
    assert "DROPPED: decode_error 1" in capsys.readouterr().out
    with io.open_bag(tmp_path / "out") as b:
        assert b.message_count == 0


def test_anonymize_bag_exit_2_on_bad_input(cli, tmp_path, capsys):
    assert cli(["anonymize-bag", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "bag not found" in capsys.readouterr().err
    (tmp_path / "cut.mcap").write_bytes(b"\x89MCAP0\r\n" + b"\x00" * 100)
    assert cli(["anonymize-bag", str(tmp_path / "cut.mcap"), str(tmp_path / "out")]) == 2
    assert "truncated MCAP" in capsys.readouterr().err
    assert cli(["anonymize-bag", str(tmp_path / "cut.mcap"), str(tmp_path / "out"),
                "--config", str(tmp_path / "nope.yaml")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mcap"]


@pytest.mark.parametrize("extra,message", [
    (["--workers", "2"], "--workers only apply with --ray"),
    (["--chunk-seconds", "5", "--warmup-frames", "0"],
     "--chunk-seconds, --warmup-frames only apply with --ray"),
    (["--ray", "auto", "--chunk-seconds", "0"], "--chunk-seconds must be"),
    (["--ray", "auto", "--workers", "0"], "--workers must be"),
    (["--frames-in-flight", "0"], "--frames-in-flight must be at least 1"),
    (["--labels", "missing.json"], "--labels missing.json: file not found"),
    (["--ray", "auto", "--frames-in-flight", "2"], "--frames-in-flight does not apply"),
    (["--ray", "auto", "--video-plan"], "--video-plan does not apply with --ray")])
def test_anonymize_bag_parallel_options_are_checked_first(cli, tmp_path, capsys, extra,
                                                          message):
    """Before any bag is opened or Ray is started: exit 2 and nothing written."""
    assert cli(["anonymize-bag", str(tmp_path / "in"), str(tmp_path / "out"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_anonymize_bag_several_bags_without_ray(cli, tmp_path, capsys):
    """Several INs without --ray: one after another in this process, each under its name."""
    for name in ("one", "two"):
        assert cli(["sample-bag", str(tmp_path / name), "--frames", "2", "--cameras", "1",
                    "--seconds", "0.2", "--size", "160x120"]) == 0
    summary = tmp_path / "summary.json"
    assert cli(["anonymize-bag", str(tmp_path / "one"), str(tmp_path / "two"),
                str(tmp_path / "out"), "--summary", str(summary), "--no-progress"]) == 0
    assert "total: 2 bags written, 0 failed; 4 frames" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one", "two"]
    data = json.loads(summary.read_text())
    assert data["runner"] == "single-process" and len(data["bags"]) == 2
    # again: the outputs exist now, refused before any work
    assert cli(["anonymize-bag", str(tmp_path / "one"), str(tmp_path / "two"),
                str(tmp_path / "out"), "--no-progress"]) == 2
    assert "--force" in capsys.readouterr().err


def test_anonymize_bag_unreachable_cluster_fails_fast(cli, tmp_path, capsys):
    """A cluster address nobody listens at: exit 2 in seconds (Ray itself waits minutes)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed
    assert cli(["sample-bag", str(tmp_path / "in"), "--frames", "1", "--cameras", "1",
                "--size", "160x120"]) == 0
    assert cli(["anonymize-bag", str(tmp_path / "in"), str(tmp_path / "out"), "--ray",
                f"127.0.0.1:{port}", "--no-progress"]) == 2
    assert f"nothing accepts connections at 127.0.0.1:{port}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
