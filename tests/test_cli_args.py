"""Shared argument types: every --size parses and fails the same way."""
import argparse

import pytest

from vlm_node.cli.args import frame_size, frame_sizes, split_variant
from vlm_node.cli.main import build_parser


def test_frame_size_parses_and_bounds():
    assert frame_size("640x480") == (640, 480) and frame_size(" 1920X1080 ") == (1920, 1080)
    assert frame_sizes("1280x720,1920x1080") == [(1280, 720), (1920, 1080)]
    for bad in ("640", "640x", "x480", "-640x480", "640x480x3", "axb", "8x8", "9000x10"):
        with pytest.raises(argparse.ArgumentTypeError):
            frame_size(bad)


@pytest.mark.parametrize("argv", [["demo", "--size", "big"], ["bench", "node", "--size", "1x1"],
                                  ["bench", "anonymize", "--sizes", "640x480,oops"]])
def test_bad_size_is_a_usage_error_naming_the_option(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "--size" in capsys.readouterr().err


def test_output_is_one_spelling_with_the_old_ones_as_hidden_aliases(capsys):
    """--output/-o everywhere; eval's --out and bench analyze's --json-out still parse (old
    scripts) but are not shown in --help."""
    parser = build_parser()
    assert parser.parse_args(["eval", "bag", "--out", "x"]).output == "x"
    assert parser.parse_args(["eval", "bag", "-o", "y"]).output == "y"
    assert parser.parse_args(["eval", "bag"]).output == "eval_output"
    assert parser.parse_args(["bench", "analyze", "--json-out", "f.json"]).output == "f.json"
    assert parser.parse_args(["bench", "analyze"]).output is None
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "--help"])
    shown = capsys.readouterr().out
    assert "--output DIR" in shown and "--out " not in shown


def test_benchmark_variants_split_into_a_name_and_assignments():
    """`bench node` and `bench signs` read --variant alike; the values stay text for each to
    convert (ROS parameters, YAML)."""
    assert split_variant("full pass: anonymizer.plate_scan_tiles=1, a.b = x=y") == (
        "full pass", [("anonymizer.plate_scan_tiles", "1"), ("a.b", "x=y")])
    assert split_variant("again:") == ("again", [])
    for bad in ("no colon", ":a=1", "name:a", "name:a=1,b"):
        with pytest.raises(ValueError, match="NAME:PARAM=VALUE"):
            split_variant(bad)
