"""Arguments shared by the subcommands, so every `--size` or `--frames-in-flight` reads, explains
and fails the same way."""
from __future__ import annotations

import argparse

MIN_SIDE, MAX_SIDE = 16, 8192


def frame_size(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H). An argparse `type`: a bad value becomes a usage error naming the
    option."""
    w, sep, h = text.strip().lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}")
    size = int(w), int(h)
    if not all(MIN_SIDE <= v <= MAX_SIDE for v in size):
        raise argparse.ArgumentTypeError(
            f"{text!r}: width and height must be between {MIN_SIDE} and {MAX_SIDE}")
    return size


def frame_sizes(text: str) -> list[tuple[int, int]]:
    """'WxH,WxH,...' -> [(W, H), ...]."""
    return [frame_size(part) for part in text.split(",") if part.strip()]


def add_frames_in_flight(parser: argparse.ArgumentParser, released: str, note: str = "") -> None:
    """--frames-in-flight N of the offline tools (`vlm_node.pipeline.run_in_flight`);
    `released` says what
    happens to the frames in order, `note` when the option does not apply."""
    from vlm_node.anonymize.config import MAX_FRAMES_IN_FLIGHT

    parser.add_argument(
        "--frames-in-flight", type=int, metavar="N",
        help=f"frames decoded and run through the detectors at once, {released} in order, so "
             "results equal those of 1 (default: one per CPU core, divided by "
             "anonymizer.threads, and one more when that makes two or more, at most "
             f"{MAX_FRAMES_IN_FLIGHT}){note}")


def frames_in_flight(args: argparse.Namespace) -> int | None:
    """The checked --frames-in-flight value (None: the default), before any work starts."""
    from vlm_node.errors import ConfigError

    value = args.frames_in_flight
    if value is not None and value < 1:
        raise ConfigError(f"--frames-in-flight must be at least 1, got {value}")
    return value


def add_config(parser: argparse.ArgumentParser, applies: str = "") -> None:
    """--config YAML (repeatable) of every command: the layers of `vlm_node.config.resolve`;
    `applies` says which settings the command uses."""
    parser.add_argument(
        "--config", metavar="YAML", action="append", default=[],
        help="ROS 2 parameters file (or a plain mapping of parameters) applied after "
             f"config/default.yaml, as for `vlm-node run` (repeatable){applies}")


def add_output(parser: argparse.ArgumentParser, metavar: str, help: str, *,
               default: str | None = None, required: bool = False,
               old: str | None = None) -> None:
    """--output/-o of every command that writes somewhere. `old`: a former spelling kept as a
    hidden alias so that existing scripts keep working."""
    parser.add_argument("--output", "-o", default=default, required=required, metavar=metavar,
                        help=help)
    if old is not None:
        parser.add_argument(old, dest="output", default=argparse.SUPPRESS, metavar=metavar,
                            help=argparse.SUPPRESS)


def split_variant(spec: str) -> tuple[str, list[tuple[str, str]]]:
    """`--variant 'NAME:P=V[,P=V...]'` of the benchmarks -> (NAME, [(P, V), ...]), the values as
    written; 'NAME:' alone is the configured setting again under another name (a repeat shows
    the run-to-run noise). ValueError names the expected form."""
    name, sep, params = spec.partition(":")
    assignments = [a.strip() for a in params.split(",") if a.strip()]
    if not sep or not name.strip() or any("=" not in a for a in assignments):
        raise ValueError(f"--variant {spec!r}: expected NAME:PARAM=VALUE[,PARAM=VALUE...]")
    pairs = [a.split("=", 1) for a in assignments]
    return name.strip(), [(key.strip(), value.strip()) for key, value in pairs]
