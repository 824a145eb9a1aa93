"""The node's configuration tree: node settings, cameras, anonymizer, analysis.

The same dataclasses configure the ROS node (each leaf becomes a declared parameter, dotted by
nesting: `anonymizer.margin`), the offline tools (which read the same YAML files), and tests. One
YAML format: the ROS 2 parameters file (`<node>: ros__parameters: {...}`), so `config/*.yaml`
works with `--params-file`, launch files and `vlm-node eval --config` alike.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from vlm_node.analysis.config import AnalysisConfig
from vlm_node.anonymize.config import AnonymizerConfig
from vlm_node.errors import ConfigError
from vlm_node.params import apply_overrides, setting, validate

TRANSPORTS = ("raw", "compressed")
RELIABILITY = ("best_effort", "reliable")


@dataclass
class CameraConfig:
    """One camera. Declared as parameters `camera.<name>.<field>` for each name in `cameras`."""

    topic: str = setting("", "Input image topic; empty = /<name>/image_raw (or "
                             "/<name>/image_raw/compressed for compressed transport).")
    transport: str = setting("raw", "sensor_msgs/Image (`raw`) or CompressedImage "
                                    "(`compressed`).", choices=TRANSPORTS)
    analysis_rate: float = setting(0.0, "Maximum analyses per second for this camera; 0 = as "
                                        "often as the backend keeps up.", min=0.0, max=120.0,
                                   dynamic=True)
    publish_compressed: bool = setting(False, "Also publish <name>/image_anonymized/compressed "
                                              "(JPEG).")
    publish_annotated: bool = setting(False, "Also publish <name>/image_annotated: the analysed "
                                             "anonymized frame with redactions, signs, scene "
                                             "objects and a degraded banner drawn (analysis "
                                             "rate).")

    def resolved_topic(self, name: str) -> str:
        if self.topic:
            return self.topic
        suffix = "/compressed" if self.transport == "compressed" else ""
        return f"/{name}/image_raw{suffix}"


# Topic segments that name the image stream, not the camera (image_transport conventions).
_STREAM_WORDS = {"image_raw", "image", "image_color", "image_rect", "image_rect_color",
                 "compressed", "compresseddepth", "theora"}


def camera_name_of(topic: str) -> str:
    """The camera an image topic belongs to, for topics that no configured camera names (the
    inverse of `CameraConfig.resolved_topic`): `/front/image_raw` -> `front`,
    `/car/left/image_raw/compressed` -> `car_left`. Used wherever a bag's topics become
    cameras (anonymize-bag's frames and results messages, eval), so both name them alike."""
    parts = [p for p in topic.split("/") if p and p.lower() not in _STREAM_WORDS]
    name = re.sub(r"[^A-Za-z0-9_]", "_", "_".join(parts)) or "camera"
    return name if name[0].isalpha() else f"camera_{name}"


@dataclass
class NodeConfig:
    cameras: tuple[str, ...] = setting(
        ("camera",), "Camera names; each gets parameters camera.<name>.topic/transport/"
                     "analysis_rate and publishes <name>/image_anonymized.",
        default_factory=lambda: ("camera",))
    results_topic: str = setting("scene_understanding", "SceneUnderstanding output topic.")
    publish_anonymized: bool = setting(True, "Publish <camera>/image_anonymized at camera rate.")
    max_frame_age: float = setting(1.0, "Frames and results older than this many seconds "
                                        "(since arrival) are dropped, never published as fresh.",
                                   min=0.01, max=60.0, dynamic=True)
    analysis_enabled: bool = setting(True, "Run the analysis backend (off: anonymize and "
                                           "republish only).")
    analysis_nice: int = setting(
        10, "Priority of the analysis threads below the camera threads (a nice increment, "
            "Linux; 0 = equal): analysis is always busy on the latest frame, and at equal "
            "priority it takes CPU from the anonymized stream on small computers. 19 published "
            "57-61 instead of 52-58 of 100 busy 1080p frames at 10 Hz on 2 idle cores, as "
            "many analysis results; not the default because nice is machine-wide: other "
            "programs at normal priority would leave a nice-19 analysis about 1.5 % of a core "
            "(docs/anonymizer.md, camera rate).", min=0, max=19)
    analysis_process: bool = setting(
        True, "Run the analysis in a child process (at analysis_nice) instead of threads of "
              "the node's process: its Python work then never holds the camera path's GIL "
              "(vlm_node/analysis/process_analyzer.py). Busy 1080p at 10 Hz: lower p50 latency "
              "in all 15 paired runs and lower p95 in 11 than in threads, for ~0.4 s more "
              "start-up and ~160 MB more memory; false keeps it in threads "
              "(docs/anonymizer.md, camera rate).")
    analysis_yield: bool = setting(
        True, "With analysis_process: stop the analysis process while a camera frame is "
              "being anonymized (SIGSTOP/SIGCONT; at most analysis_yield_max_s at a time), so "
              "the camera path has the whole computer. Busy 1080p at 10 Hz: ~50 instead of "
              "~70 ms to anonymize a frame, p95 latency 97-102 instead of 110-133 ms on a "
              "moving camera, for about half the analysis results (docs/anonymizer.md, "
              "camera rate). An analysis whose model runs on a GPU is never held (a held "
              "child would stop feeding it).",
        dynamic=True)
    analysis_yield_max_s: float = setting(
        0.5, "Longest the analysis process is held stopped at a time: several cameras "
             "anonymizing in turn would otherwise never let it run.", min=0.05, max=10.0)
    frames_in_flight: int = setting(
        1, "Frames of one camera in anonymization at once (1: one at a time). With 2 the next "
           "frame's detectors start while the last frame finishes, released and published in "
           "order (vlm_node/frames_in_flight.py); the anonymizer then runs a frame's stages "
           "in sequence and without plate reuse (anonymize.config.for_frames_in_flight). See "
           "README, Running the node, for what it buys.", min=1, max=4)
    qos_reliability: str = setting("best_effort", "Input QoS reliability (SensorDataQoS is "
                                                  "best_effort).", choices=RELIABILITY)
    qos_depth: int = setting(
        1, "Input QoS history depth. 1 (keep only the newest frame) unlike SensorDataQoS's 5: "
           "when anonymizing is slower than the camera, a deeper queue only adds latency "
           "(README, Node overhead). Where only some frames are slower (scene cuts), 3 "
           "publishes more frames, each later (busy 1080p at 10 Hz without analysis: 96/100 "
           "at p95 400 ms against 80/100 at 288 ms; docs/anonymizer.md).", min=1, max=100)
    diagnostics_period: float = setting(1.0, "Seconds between /diagnostics messages.",
                                        min=0.1, max=60.0)
    jpeg_quality: int = setting(90, "JPEG quality of /compressed outputs.", min=10, max=100,
                                dynamic=True)
    anonymizer: AnonymizerConfig = field(default_factory=AnonymizerConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    camera: dict[str, CameraConfig] = field(default_factory=dict)

    def camera_config(self, name: str) -> CameraConfig:
        return self.camera.get(name) or CameraConfig()


def _section_applies(key: str, node_name: str) -> bool:
    """Whether a parameters-file section key names this node the way rcl matches it: `/**`,
    `/**/name`, `name`, `/name` or `/any/namespace/name`."""
    parts = [p for p in str(key).split("/") if p]
    return parts in (["**"], [node_name]) or (bool(parts) and parts[-1] == node_name)


def load_params_yaml(path: str | Path, node_name: str = "vlm_node") -> dict[str, Any]:
    """The parameters a YAML file sets for `node_name`. A ROS 2 parameters file
    (`<node>: ros__parameters: {...}`): the `ros__parameters` of every section that applies to
    the node, in file order, later sections overriding earlier ones. A file without any
    `ros__parameters` section is read as a plain mapping of parameter names (the contents of
    `ros__parameters`, nested or dotted: `anonymizer: {redaction: pixelate}`), which the
    offline tools accept too (`vlm-node run` passes files to ROS, which wants the first form)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of node names to ros__parameters")
    sections = {k: v for k, v in data.items()
                if isinstance(v, dict) and isinstance(v.get("ros__parameters"), dict)}
    if not sections:
        return {str(k): v for k, v in data.items()}
    params: dict[str, Any] = {}
    for key, section in sections.items():
        if _section_applies(key, node_name):
            params.update(section["ros__parameters"])
    if not params:
        raise ConfigError(f"{path}: no `/**/{node_name}: ros__parameters:` section")
    return params


def flatten_params(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested parameter mappings as dotted keys, so files can override each other leaf by
    leaf (a nested `analysis:` section must not replace another file's whole section)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_params(value, name + "."))
        else:
            out[name] = value
    return out


def config_sources(files: Sequence[str | Path] = (), *, default_file: bool = True
                   ) -> list[Path]:
    """The parameter files in the order they apply: config/default.yaml (unless
    `default_file` is false), then each of `files`. `vlm-node run` hands this list to ROS as
    --params-file arguments; `resolve` reads it itself, so the node and every offline tool
    layer the same files the same way."""
    from vlm_node.paths import config_file

    return [*([config_file("default.yaml")] if default_file else []), *map(Path, files)]


def resolve_params(files: Sequence[str | Path] = (), overrides: dict[str, Any] | None = None,
                   *, default_file: bool = True) -> dict[str, Any]:
    """Dotted parameters: config/default.yaml, then each file, then `overrides` (dotted or
    nested). Parameters no source sets keep the built-in defaults of the dataclasses."""
    params: dict[str, Any] = {}
    for path in config_sources(files, default_file=default_file):
        if not path.is_file():
            raise FileNotFoundError(f"--config {path}: no such file")
        params.update(flatten_params(load_params_yaml(path)))
    params.update(flatten_params(overrides or {}))
    return params


def resolve(files: Sequence[str | Path] = (), overrides: dict[str, Any] | None = None, *,
            default_file: bool = True) -> NodeConfig:
    """The one configuration resolver: built-in defaults, then config/default.yaml, then each
    file, then `overrides` (e.g. `{"analysis.backend": "ocr"}` from a command-line option),
    validated (ConfigError names every bad value). Every subcommand configures itself here;
    the node gets the same layers from ROS (`config_sources`) and ends in the same
    `node_config_from_params`."""
    return node_config_from_params(resolve_params(files, overrides, default_file=default_file))


def node_config_from_params(params: dict[str, Any]) -> NodeConfig:
    """Build and validate a NodeConfig from a (nested or dotted) parameter mapping."""
    params = dict(params)
    cameras_raw = params.pop("camera", {}) or {}
    dotted_cams = {k: params.pop(k) for k in list(params) if k.startswith("camera.")}
    for key, value in dotted_cams.items():
        _, name, leaf = key.split(".", 2)
        cameras_raw.setdefault(name, {})[leaf] = value
    config = apply_overrides(NodeConfig(), params)
    if not config.cameras:
        raise ConfigError("cameras must name at least one camera")
    unknown = set(cameras_raw) - set(config.cameras)
    if unknown:
        raise ConfigError(f"camera.{sorted(unknown)[0]} is configured but not listed in cameras "
                          f"{list(config.cameras)}")
    cams = {name: apply_overrides(CameraConfig(), cameras_raw.get(name, {}), f"camera.{name}.")
            for name in config.cameras}
    config = dataclasses.replace(config, camera=cams)
    validate(config)
    for name, cam in cams.items():
        validate(cam, f"camera.{name}.")
    return config
