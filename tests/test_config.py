import os

import pytest

from vlm_node.anonymize.config import (AnonymizerConfig, for_frames_in_flight,
                                       frames_in_flight_for)
from vlm_node.config import NodeConfig, load_params_yaml, node_config_from_params
from vlm_node.errors import ConfigError


def test_cameras_and_nested_overrides():
    c = node_config_from_params({"cameras": ["front", "rear"],
                                 "camera": {"rear": {"transport": "compressed",
                                                     "analysis_rate": 2}},
                                 "anonymizer.margin": 0.4, "max_frame_age": 2})
    assert c.cameras == ("front", "rear")
    assert c.camera_config("front").resolved_topic("front") == "/front/image_raw"
    assert c.camera_config("rear").resolved_topic("rear") == "/rear/image_raw/compressed"
    assert c.camera_config("rear").analysis_rate == 2.0
    assert isinstance(c.max_frame_age, float) and c.anonymizer.margin == 0.4


@pytest.mark.parametrize("params, fragment", [
    ({"max_frame_age": 0.0}, "max_frame_age=0.0 is below the minimum 0.01"),
    ({"anonymizer.failure_policy": "pass_through"}, "choose from 'drop', 'full_blur'"),
    ({"qos_depth": "five"}, "qos_depth='five' has the wrong type"),
    ({"no_such_thing": 1}, "unknown setting 'no_such_thing'"),
    ({"cameras": ["a"], "camera.b.topic": "/x"}, "camera.b is configured but not listed"),
    ({"cameras": []}, "at least one camera"),
    ({"cameras": ["a"], "camera.a.transport": "h264"}, "camera.a.transport='h264'"),
])
def test_invalid_values_are_rejected_with_reason(params, fragment):
    with pytest.raises(ConfigError, match=None) as err:
        node_config_from_params(params)
    assert fragment in str(err.value)


def test_params_yaml(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("vlm_node:\n  ros__parameters:\n    cameras: [left]\n    qos_depth: 3\n")
    c = node_config_from_params(load_params_yaml(f))
    assert c.cameras == ("left",) and c.qos_depth == 3
    f.write_text("other_node:\n  ros__parameters: {a: 1}\n")
    with pytest.raises(ConfigError, match="no `/\\*\\*/vlm_node: ros__parameters:` section"):
        load_params_yaml(f)


def test_params_yaml_sections_match_like_rcl(tmp_path):
    """Wildcard and namespaced sections apply, in file order; other nodes' do not."""
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters: {qos_depth: 7, jpeg_quality: 50}\n"
                 "/**/vlm_node:\n  ros__parameters: {qos_depth: 4}\n"
                 "/car1/vlm_node:\n  ros__parameters: {cameras: [front]}\n"
                 "/car1/camera_driver:\n  ros__parameters: {cameras: [wrong]}\n")
    c = node_config_from_params(load_params_yaml(f))
    assert (c.qos_depth, c.jpeg_quality, c.cameras) == (4, 50, ("front",))


def test_shipped_configs_are_valid():
    from vlm_node.paths import config_file
    for name in ("default.yaml", "vehicle_1cam.yaml", "vehicle_4cam.yaml"):
        config = node_config_from_params(load_params_yaml(config_file(name)))
        assert config.cameras
    # `ros2 run vlm_node vlm_node` without a params file must behave like `vlm-node run`
    assert node_config_from_params(load_params_yaml(config_file("default.yaml"))) == \
        node_config_from_params({})
    four = node_config_from_params(load_params_yaml(config_file("vehicle_4cam.yaml")))
    assert four.camera_config("rear").resolved_topic("rear") == \
        "/cameras/rear/image_raw/compressed"


def test_defaults_are_valid():
    assert node_config_from_params({}) == node_config_from_params({"cameras": ["camera"]})
    assert NodeConfig().cameras == ("camera",)


@pytest.mark.parametrize("cores, threads, requested, expected", [
    (2, 1, None, 3),     # this build machine: one frame per core, and one more
    (16, 1, None, 8),    # capped
    (6, 2, None, 4),     # each frame's models use 2 threads
    (3, 2, None, 1),     # one frame's models take the cores: no extra frame
    (8, 0, None, 1),     # threads 0 = every core for one frame
    (1, 1, None, 1),
    (16, 1, 3, 3),       # asked for
])
def test_frames_in_flight_default_follows_the_cores(monkeypatch, cores, threads, requested,
                                                    expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    config = AnonymizerConfig(threads=threads)
    assert frames_in_flight_for(config, requested) == expected
    assert for_frames_in_flight(config, expected).parallel_stages == (expected == 1)


def test_resolve_layers_defaults_default_yaml_files_then_overrides(tmp_path):
    """One resolver for every command: built-in defaults, config/default.yaml, each file in
    order (leaf by leaf), then overrides; ROS parameters files and plain mappings alike."""
    from vlm_node.config import config_sources, resolve
    from vlm_node.paths import config_file

    default = resolve()
    assert default == node_config_from_params({})  # default.yaml restates the defaults
    ros = tmp_path / "vehicle.yaml"
    ros.write_text("/**/vlm_node:\n  ros__parameters:\n    cameras: [front]\n"
                   "    anonymizer:\n      redaction: pixelate\n      margin: 0.4\n")
    plain = tmp_path / "plain.yaml"
    plain.write_text("anonymizer:\n  margin: 0.2\nanalysis.backend: ocr\n")
    config = resolve([ros, plain], {"anonymizer.redaction": "fill"})
    assert (config.anonymizer.redaction, config.anonymizer.margin) == ("fill", 0.2)
    assert config.cameras == ("front",) and config.analysis.backend == "ocr"
    assert config.anonymizer.face_detectors == default.anonymizer.face_detectors
    assert config_sources([ros]) == [config_file("default.yaml"), ros]
    assert config_sources([ros], default_file=False) == [ros]
    ros.write_text("/**/vlm_node:\n  ros__parameters:\n    anonymizer:\n      margin: 7.0\n")
    with pytest.raises(ConfigError, match="margin"):
        resolve([ros])
    with pytest.raises(ConfigError, match="unknown setting"):
        resolve([], {"anonymizer.no_such": 1})
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        resolve([tmp_path / "nope.yaml"])


def test_every_command_resolves_the_same_configuration(tmp_path):
    """anonymize, anonymize-bag, analyze and eval read --config through `resolve`: the same
    file gives every one of them the same settings (anonymize used to skip default.yaml)."""
    import argparse

    from vlm_node.cli import analyze, anonymize, anonymize_bag, eval as eval_cli, run

    params = tmp_path / "p.yaml"
    params.write_text("/**/vlm_node:\n  ros__parameters:\n    anonymizer: {margin: 0.3}\n"
                      "    analysis: {backend: ocr}\n")
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    for module in (analyze, anonymize, anonymize_bag, eval_cli, run):
        module.register(sub)
    a = parser.parse_args(["anonymize", "x", "-o", "y", "--config", str(params), "--mode",
                           "fill"])
    assert anonymize.load_config(a.config, a.mode).margin == 0.3
    assert anonymize.load_config(a.config, a.mode).redaction == "fill"
    b = parser.parse_args(["anonymize-bag", "x", "y", "--config", str(params)])
    assert b.config == [str(params)]
    z = parser.parse_args(["analyze", "x", "--config", str(params), "--model", "m"])
    assert (analyze.analysis_config(z).backend, analyze.analysis_config(z).model) == ("ocr", "m")
    r = parser.parse_args(["run", "--config", str(params)])
    r.ros_args = []
    assert run.ros_arguments(r)[-2:] == ["--params-file", str(params)]
