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
    (2, 1, None, 2),     # this build machine: one frame per core
    (16, 1, None, 8),    # capped
    (6, 2, None, 3),     # each frame's models use 2 threads
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
