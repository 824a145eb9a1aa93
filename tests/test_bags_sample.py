"""`write_sample_bag`: a valid rosbag2 (read back with rosbags and with the `mcap` reader),
labels that match every image message, deterministic, validated arguments."""
import json

import pytest
import yaml
from mcap.reader import make_reader

from bag_helpers import read_all
from vlm_node.bags import io
from vlm_node.tools.sample_bag import START_NS, write_sample_bag
from vlm_node.errors import BagError, ConfigError

# 1 Hz: every frame starts a new shot (another scene), so three frames show several classes
FRAMES, CAMERAS, SECONDS, SIZE, SEED = 3, 3, 3.0, (320, 240), 5
IMAGE_TOPICS = {"/front/image_raw": io.IMAGE,
                "/rear/image_raw/compressed": io.COMPRESSED_IMAGE,
                "/left/image_raw/compressed": io.COMPRESSED_IMAGE}


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    """The same sample bag as MCAP and as sqlite3, plus one with another seed."""
    root = tmp_path_factory.mktemp("sample")
    mcap = write_sample_bag(root / "mcap", FRAMES, CAMERAS, SECONDS, "mcap", SIZE, SEED)
    sqlite = write_sample_bag(root / "sqlite", FRAMES, CAMERAS, SECONDS, "sqlite3", SIZE, SEED)
    other = write_sample_bag(root / "other", FRAMES, CAMERAS, SECONDS, "mcap", SIZE, SEED + 1)
    return {"mcap": mcap.parent, "sqlite3": sqlite.parent, "other": other.parent}


def test_returns_labels_inside_the_bag_directory(bags):
    assert (bags["mcap"] / "labels.json").is_file()
    names = {k: sorted(p.name for p in bags[k].iterdir()) for k in ("mcap", "sqlite3")}
    assert names["mcap"] == ["labels.json", "mcap.mcap", "metadata.yaml"]
    assert names["sqlite3"] == ["labels.json", "metadata.yaml", "sqlite.db3"]


@pytest.mark.parametrize("storage,data_file", [("mcap", "mcap.mcap"), ("sqlite3", "sqlite.db3")])
def test_metadata_yaml(bags, storage, data_file):
    meta = yaml.safe_load((bags[storage] / "metadata.yaml").read_text())
    info = meta["rosbag2_bagfile_information"]
    assert info["version"] == 9
    assert info["storage_identifier"] == storage
    assert info["relative_file_paths"] == [data_file]
    assert info["message_count"] == FRAMES * CAMERAS + FRAMES + 1  # images, /tf, /tf_static
    assert info["starting_time"]["nanoseconds_since_epoch"] == START_NS
    topics = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
    assert set(topics) == set(IMAGE_TOPICS) | {"/tf", "/tf_static"}
    for name, msgtype in IMAGE_TOPICS.items():
        assert topics[name]["topic_metadata"]["type"] == msgtype
        assert topics[name]["message_count"] == FRAMES
        qos = topics[name]["topic_metadata"]["offered_qos_profiles"][0]
        assert (qos["reliability"], qos["history"], qos["depth"]) == ("best_effort",
                                                                      "keep_last", 5)
        assert topics[name]["topic_metadata"]["type_description_hash"].startswith("RIHS01_")
    assert topics["/tf_static"]["topic_metadata"]["offered_qos_profiles"][0]["durability"] \
        == "transient_local"
    assert json.loads(info["custom_data"]["vlm_node.sample"])["seed"] == SEED


def test_rosbags_read_back_matches_labels(bags):
    labels = json.loads((bags["mcap"] / "labels.json").read_text())
    entries = {(e["topic"], e["stamp_ns"]): e for e in labels["images"]}
    assert len(entries) == len(labels["images"]) == FRAMES * CAMERAS
    assert labels["sample"] == {"frames": FRAMES, "cameras": CAMERAS, "seconds": SECONDS,
                                "storage": "mcap", "size": list(SIZE), "seed": SEED}
    seen = set()
    with io.open_bag(bags["mcap"]) as bag:
        assert bag.image_topics() == sorted(IMAGE_TOPICS)
        for m in bag.messages(bag.image_topics()):
            msg = bag.deserialize(m)
            assert m.msgtype == IMAGE_TOPICS[m.topic]
            assert io.stamp_ns(msg.header) == m.timestamp  # header stamp == log time
            entry = entries[(m.topic, m.timestamp)]
            assert entry["file"] == f"{m.topic}@{m.timestamp}"
            assert msg.header.frame_id == entry["frame_id"] == f"{entry['camera']}_camera"
            image = io.image_to_bgr(msg, m.msgtype)
            assert image.shape == (SIZE[1], SIZE[0], 3)
            assert (entry["width"], entry["height"]) == SIZE
            if m.msgtype == io.IMAGE:
                assert (msg.encoding, msg.step) == ("bgr8", SIZE[0] * 3)
            else:
                assert msg.format == "bgr8; jpeg compressed bgr8"
            seen.add((m.topic, m.timestamp))
    assert seen == set(entries)
    # Every image labels all three kinds, boxes inside the frame, with real content.
    faces = sum(len(e["faces"]) for e in entries.values())
    assert faces >= 3
    classes = {s["class"] for e in entries.values() for s in e["signs"]}
    assert len(classes) >= 3 and "speed_limit" in classes
    assert any(s.get("value") for e in entries.values() for s in e["signs"])
    for e in entries.values():
        for box in e["faces"] + e["plates"] + [s["box"] for s in e["signs"]]:
            x, y, w, h = box
            assert w > 0 and h > 0 and x >= 0 and y >= 0
            assert x + w <= SIZE[0] + 1 and y + h <= SIZE[1] + 1


def test_camera_rate_and_interleaving(bags):
    with io.open_bag(bags["mcap"]) as bag:
        stamps = {t: [m.timestamp for m in bag.messages([t])] for t in IMAGE_TOPICS}
    period = int(SECONDS * 1e9 / FRAMES)
    assert stamps["/front/image_raw"] == [START_NS + i * period for i in range(FRAMES)]
    offsets = [stamps[t][0] - START_NS for t in IMAGE_TOPICS]
    assert offsets == [k * period // (2 * CAMERAS) for k in range(CAMERAS)]


def test_mcap_reader_reads_the_same_messages(bags):
    with (bags["mcap"] / "mcap.mcap").open("rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary.statistics.message_count == FRAMES * CAMERAS + FRAMES + 1
        schemas = {c.topic: summary.schemas[c.schema_id] for c in summary.channels.values()}
        assert schemas["/front/image_raw"].name == io.IMAGE
        assert schemas["/tf"].name == "tf2_msgs/msg/TFMessage"
        assert all(s.encoding == "ros2msg" for s in schemas.values())
        assert all(c.message_encoding == "cdr" for c in summary.channels.values())
        got = [(ch.topic, msg.log_time, msg.publish_time, bytes(msg.data))
               for _, ch, msg in reader.iter_messages(log_time_order=True)]
    ours = [(m.topic, m.timestamp, m.timestamp, bytes(m.raw)) for m in read_all(bags["mcap"])]
    assert sorted(got) == sorted(ours)


def test_deterministic_and_storage_independent(bags):
    mcap, sqlite, other = (read_all(bags[k]) for k in ("mcap", "sqlite3", "other"))
    key = lambda m: (m.timestamp, m.topic)  # noqa: E731
    assert [(m.topic, m.timestamp, m.raw) for m in sorted(mcap, key=key)] == \
        [(m.topic, m.timestamp, m.raw) for m in sorted(sqlite, key=key)]
    labels = [json.loads((bags[k] / "labels.json").read_text())["images"]
              for k in ("mcap", "sqlite3", "other")]
    assert labels[0] == labels[1]
    assert labels[0] != labels[2]
    front = [m.raw for m in sorted(mcap, key=key) if m.topic == "/front/image_raw"]
    front_other = [m.raw for m in sorted(other, key=key) if m.topic == "/front/image_raw"]
    assert all(a != b for a, b in zip(front, front_other))


def test_tf_messages(bags):
    with io.open_bag(bags["mcap"]) as bag:
        tf = [bag.deserialize(m) for m in bag.messages(["/tf"])]
        static = [bag.deserialize(m) for m in bag.messages(["/tf_static"])]
    xs = [t.transforms[0].transform.translation.x for t in tf]
    assert xs[0] == 0.0 and all(b > a for a, b in zip(xs, xs[1:]))
    children = [t.child_frame_id for t in static[0].transforms]
    assert children == ["front_camera", "rear_camera", "left_camera"]


@pytest.mark.parametrize("kwargs,message", [
    ({"frames": 0}, "frames must be"), ({"cameras": 9}, "cameras must be"),
    ({"seconds": 0.0}, "seconds must be"), ({"seconds": 1e-6}, "frames/s per camera"),
    ({"storage": "rosbag1"}, "storage must be"), ({"size": (100, 50)}, "size must be"),
    ({"size": (240, 320)}, "landscape"),
    ({"seed": -1}, "seed must be")])
def test_invalid_arguments(tmp_path, kwargs, message):
    args = {"frames": 2, "cameras": 1, "seconds": 1.0, "storage": "mcap", "size": (320, 240),
            "seed": 0, **kwargs}
    with pytest.raises(ConfigError, match=message):
        write_sample_bag(tmp_path / "bag", **args)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_unless_forced(tmp_path):
    out = tmp_path / "bag"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(BagError, match="exists"):
        write_sample_bag(out, 1, 1, 0.1, size=(320, 240))
    assert (out / "keep.txt").read_text() == "mine"
    labels = write_sample_bag(out, 1, 1, 0.1, size=(320, 240), force=True)
    assert not (out / "keep.txt").exists() and labels.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]  # no staging left over


def test_frames_come_in_shots_that_zoom_towards_the_scene(tmp_path):
    """10 Hz: ten frames per shot; within a shot the same signs, growing and moving outwards
    from the centre; the next shot is another scene."""
    labels = write_sample_bag(tmp_path / "shots", 12, 1, 1.2, size=(640, 480), seed=3)
    entries = json.loads(labels.read_text())["images"]
    first, last, next_shot = entries[0], entries[9], entries[10]
    assert [s["class"] for s in first["signs"]] == [s["class"] for s in last["signs"]]
    a, b = first["signs"][0]["box"], last["signs"][0]["box"]
    assert b[2] > a[2] * 1.1 and b[3] > a[3] * 1.1  # 9 frames x 1.5 % closer
    assert abs(b[0] + b[2] / 2 - 320) > abs(a[0] + a[2] / 2 - 320)  # away from the centre
    assert next_shot["signs"] != first["signs"] or next_shot["faces"] != first["faces"]
