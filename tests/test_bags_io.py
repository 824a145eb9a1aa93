"""`vlm_node.bags.io` and `.compressed`: typestore with the project's messages, image conversion
in both directions (padded rows, byte order, colour order), errors for damaged bags, atomic
output, and re-encoding compressed images in their own layout and quality."""
import cv2
import numpy as np
import pytest

from bag_helpers import jpeg_bytes, portrait, write_bag
from helpers import shared
from vlm_node import image_codec
from vlm_node.bags import io
from vlm_node.bags.compressed import encode_like, inspect_compressed
from vlm_node.errors import BagError, MalformedImageError


@pytest.fixture(scope="module")
def bgr():
    image, _ = portrait((64, 48))
    return image


def test_typestore_has_project_messages():
    store = io.typestore()
    types = store.types
    sign = types["vlm_node_interfaces/msg/TrafficSign"](
        sign_class="speed_limit", text="50", has_value=True, value=50.0, unit="km/h",
        confidence=0.9, roi=types["sensor_msgs/msg/RegionOfInterest"](
            x_offset=1, y_offset=2, height=3, width=4, do_rectify=False),
        source="ocr", track_state="confirmed", track_id=7)
    msg = types["vlm_node_interfaces/msg/SceneUnderstanding"](
        header=io.header(1_500_000_000_123, "front_camera"), camera="front", signs=[sign],
        has_scene=False, scene=types["vlm_node_interfaces/msg/SceneDescription"](
            summary="", weather="clear", lighting="day", road_type="urban", hazards=["cyclist"],
            confidence=0.5, source="detector", objects=[
                types["vlm_node_interfaces/msg/DetectedObject"](
                    category="cyclist", label="person+bicycle", score=0.6,
                    roi=types["sensor_msgs/msg/RegionOfInterest"](
                        x_offset=5, y_offset=6, height=70, width=30, do_rectify=False))]),
        faces_redacted=2, plates_redacted=1, backend="ocr", model_id="", latency_ms=12.5,
        analysis_ms=3.0, degraded=True, degraded_reason="no VLM")
    raw = store.serialize_cdr(msg, "vlm_node_interfaces/msg/SceneUnderstanding")
    back = store.deserialize_cdr(raw, "vlm_node_interfaces/msg/SceneUnderstanding")
    assert back.signs[0].sign_class == "speed_limit" and back.signs[0].track_id == 7
    assert back.scene.hazards == ["cyclist"] and back.faces_redacted == 2
    obj = back.scene.objects[0]
    assert obj.label == "person+bicycle" and obj.roi.height == 70
    assert io.stamp_ns(back.header) == 1_500_000_000_123
    assert types["vlm_node_interfaces/msg/TrafficSign"].CLASS_SPEED_LIMIT == "speed_limit"
    msgdef, _ = store.generate_msgdef("vlm_node_interfaces/msg/SceneUnderstanding",
                                      ros_version=2)
    assert "MSG: vlm_node_interfaces/TrafficSign" in msgdef
    assert store.hash_rihs01("vlm_node_interfaces/msg/SceneUnderstanding").startswith("RIHS01_")
    assert io.make_typestore() is not io.make_typestore()


def test_is_image_type():
    assert io.is_image_type("sensor_msgs/msg/Image")
    assert io.is_image_type("sensor_msgs/CompressedImage")
    assert not io.is_image_type("sensor_msgs/msg/PointCloud2")


@pytest.mark.parametrize("encoding,step", [("bgr8", None), ("bgr8", 64 * 3 + 13),
                                           ("rgb8", 64 * 3 + 4), ("bgra8", None),
                                           ("mono8", 70), ("yuv422", None)])
def test_bgr_to_image_keeps_layout(bgr, encoding, step):
    msg = io.bgr_to_image(bgr, io.header(1, "cam"), encoding, step)
    row = image_codec.min_step(encoding, 64)
    assert (msg.encoding, msg.width, msg.height) == (encoding, 64, 48)
    assert msg.step == (step or row)
    assert msg.data.size == msg.step * 48
    if step:
        assert not msg.data.reshape(48, step)[:, row:].any()  # padding is zero
    back = io.image_to_bgr(msg, io.IMAGE)
    if encoding == "mono8":
        expected = cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        assert np.array_equal(back, expected)
    elif encoding == "yuv422":
        assert np.abs(back.astype(int) - bgr).mean() < 6
    else:
        assert np.array_equal(back, bgr)
    # and it survives CDR serialization
    raw = io.typestore().serialize_cdr(msg, io.IMAGE)
    assert np.array_equal(io.image_to_bgr(io.typestore().deserialize_cdr(raw, io.IMAGE),
                                          io.IMAGE), back)


def test_bgr_to_image_big_endian_16_bit(bgr):
    msg = io.bgr_to_image(bgr, io.header(1, "cam"), "bgr16", is_bigendian=True)
    assert msg.is_bigendian and msg.step == 64 * 6
    first = int.from_bytes(bytes(msg.data[:2]), "big")
    assert first == int(bgr[0, 0, 0]) * 257  # image_codec widens 8 bits as v * 257
    assert np.array_equal(io.image_to_bgr(msg, io.IMAGE), bgr)


def test_bgr_to_image_rejects_short_step(bgr):
    with pytest.raises(MalformedImageError, match="shorter"):
        io.bgr_to_image(bgr, io.header(1, "cam"), "bgr8", step=100)


def test_bgr_to_compressed(bgr):
    msg = io.bgr_to_compressed(bgr, io.header(5, "cam"), "jpeg", 95)
    assert msg.format == "bgr8; jpeg compressed bgr8"
    # a 64x48 crop of a photo is all detail: JPEG at 95 changes it by a few levels
    assert np.abs(io.image_to_bgr(msg, io.COMPRESSED_IMAGE).astype(int) - bgr).mean() < 8
    with pytest.raises(BagError, match="not an image type"):
        io.image_to_bgr(msg, "std_msgs/msg/String")


@pytest.mark.parametrize("quality", [35, 60, 90, 97])
@pytest.mark.parametrize("sampling,hv", [("420", (2, 2)), ("444", (1, 1)), ("422", (2, 1))])
def test_jpeg_quality_and_sampling_estimated(bgr, quality, sampling, hv):
    factor = getattr(cv2, f"IMWRITE_JPEG_SAMPLING_FACTOR_{sampling}")
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality,
                                         cv2.IMWRITE_JPEG_SAMPLING_FACTOR, factor])
    layout = inspect_compressed(buf.tobytes())
    assert (layout.kind, layout.channels, layout.quality, layout.sampling) == \
        ("jpeg", 3, quality, hv)
    again = inspect_compressed(encode_like(bgr, "jpeg", layout))
    assert again == layout


def test_jpeg_quality_of_another_encoder(bgr):
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.fromarray(bgr[..., ::-1]).save(buf, "JPEG", quality=83, progressive=True)
    layout = inspect_compressed(buf.getvalue())
    assert layout.quality == 83 and layout.progressive
    assert inspect_compressed(encode_like(bgr, "jpeg", layout)).progressive


def test_encode_like_gray_jpeg_and_16_bit_png(bgr):
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    layout = inspect_compressed(jpeg_bytes(gray, 70))
    assert (layout.channels, layout.quality) == (1, 70)
    out = encode_like(bgr, "mono8; jpeg compressed mono8", layout)
    assert cv2.imdecode(np.frombuffer(out, np.uint8), cv2.IMREAD_UNCHANGED).ndim == 2

    ok, png16 = cv2.imencode(".png", bgr.astype(np.uint16) * 257)
    layout = inspect_compressed(png16.tobytes())
    assert (layout.kind, layout.channels, layout.bit_depth) == ("png", 3, 16)
    out = encode_like(bgr, "bgr16; png compressed bgr16", layout)
    decoded = cv2.imdecode(np.frombuffer(out, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.dtype == np.uint16 and np.array_equal(decoded >> 8, bgr)


def test_encode_like_keeps_rgb_ordered_data(bgr):
    """"rgb8; jpeg compressed rgb8" holds RGB data: the codec swaps it back when decoding."""
    fmt = "rgb8; png compressed rgb8"
    layout = inspect_compressed(cv2.imencode(".png", bgr)[1].tobytes())
    data = encode_like(bgr, fmt, layout)
    stored = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(stored, bgr[..., ::-1])
    msg = io.typestore().types[io.COMPRESSED_IMAGE](header=io.header(0, ""), format=fmt,
                                                    data=np.frombuffer(data, np.uint8))
    assert np.array_equal(io.image_to_bgr(msg, io.COMPRESSED_IMAGE), bgr)


def test_encode_like_bayer_png_keeps_the_mosaic(bgr):
    fmt = "bayer_rggb8; png compressed "
    mosaic = image_codec.bgr8_to_array(bgr, "bayer_rggb8")
    layout = inspect_compressed(cv2.imencode(".png", mosaic)[1].tobytes())
    assert layout.channels == 1
    data = encode_like(bgr, fmt, layout)
    assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED),
                          mosaic)


def test_open_bag_errors(tmp_path):
    with pytest.raises(BagError, match="not found"):
        with io.open_bag(tmp_path / "missing"):
            pass
    (tmp_path / "dir").mkdir()
    with pytest.raises(BagError, match="no metadata.yaml"):
        with io.open_bag(tmp_path / "dir"):
            pass
    (tmp_path / "dir" / "metadata.yaml").write_text("rosbag2_bagfile_information: [1")
    with pytest.raises(BagError, match="not rosbag2 metadata"):
        with io.open_bag(tmp_path / "dir"):
            pass
    (tmp_path / "x.bag").write_bytes(b"#ROSBAG V2.0")
    with pytest.raises(BagError, match="not a bag"):
        with io.open_bag(tmp_path / "x.bag"):
            pass
    (tmp_path / "x.mcap").write_bytes(b"hello world, not mcap")
    with pytest.raises(BagError, match="not an MCAP file"):
        with io.open_bag(tmp_path / "x.mcap"):
            pass


def test_truncated_bare_mcap_is_refused(tmp_path):
    data = shared("rosbag/camera_sample.mcap").read_bytes()
    (tmp_path / "cut.mcap").write_bytes(data[:len(data) // 2])
    with pytest.raises(BagError, match="truncated MCAP"):
        with io.open_bag(tmp_path / "cut.mcap"):
            pass


def test_bare_mcap_file(tmp_path):
    with io.open_bag(shared("rosbag/camera_sample.mcap")) as bag:
        assert bag.storage == "mcap" and bag.message_count == 20
        assert bag.image_topics() == ["/camera/image_raw", "/camera/image_raw/compressed"]
        assert bag.duration_ns == 9_000_000_000
        assert sum(1 for _ in bag.messages(["/camera/image_raw"])) == 10


def test_writer_copies_connections_and_computes_missing_hashes(tmp_path):
    with io.open_bag(shared("rosbag/camera_sample.mcap")) as bag:
        src = bag.connections
        assert all(c.digest == "" for c in src)  # this file carries no type hashes
        with io.BagWriter(tmp_path / "copy", "sqlite3") as writer:
            conns = [writer.copy_connection(c) for c in src]
            for m in bag.messages():
                writer.write(conns[src.index(m.connection)], m.timestamp, m.raw)
    with io.open_bag(tmp_path / "copy") as copy:
        for c in copy.connections:
            original = next(s for s in src if s.topic == c.topic)
            assert c.msgdef.data == original.msgdef.data
            assert c.digest == io.typestore().hash_rihs01(c.msgtype)
        assert copy.message_count == 20


def test_atomic_output(tmp_path):
    out = tmp_path / "bag"
    with pytest.raises(RuntimeError):
        with io.atomic_output(out) as path:
            write_bag(path, lambda w: w.add_topic("/s", "std_msgs/msg/String"))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with io.atomic_output(out) as path:
        write_bag(path, lambda w: w.add_topic("/s", "std_msgs/msg/String"))
        assert not out.exists()
    assert (out / "metadata.yaml").is_file() and (out / "bag.mcap").is_file()
    with pytest.raises(BagError, match="--force"):
        with io.atomic_output(out):
            pass
    with pytest.raises(BagError, match="does not exist"):
        with io.atomic_output(tmp_path / "no" / "bag"):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]


def test_writer_validates_storage(tmp_path):
    with pytest.raises(BagError, match="storage must be"):
        io.BagWriter(tmp_path / "b", "rosbag1")
