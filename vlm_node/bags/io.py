"""rosbag2 plumbing shared by the bag tools: typestore, reading, writing, image conversion.

`ros2 bag` / rosbag2_py and cv_bridge cannot be installed here (see shared ENVIRONMENT.md), so
bags are read and written with `rosbags`, whose MCAP and sqlite3 files are the ones `ros2 bag`
and Foxglove open, and pixels go through `vlm_node.image_codec`. Keeping the typestore (with the
project's own messages), the mapping of every reader failure to `BagError`, atomic output and
the image conversion in this one module means sample-bag, anonymize-bag and eval cannot
disagree about any of them.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import apsw
import numpy as np
import yaml
from rosbags.interfaces import (Connection, ConnectionExtRosbag2, MessageDefinitionFormat, Qos,
                                QosDurability, QosHistory, QosLiveliness, QosReliability,
                                QosTime)
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, TypesysError, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from vlm_node import image_codec
from vlm_node.errors import BagError, MalformedImageError
from vlm_node.interfaces import MESSAGES, PACKAGE, msg_text

__all__ = [
    "ROS_STORE", "BAG_VERSION", "IMAGE", "COMPRESSED_IMAGE", "IMAGE_TYPES", "STORAGES",
    "SENSOR_DATA_QOS", "RELIABLE_QOS", "MCAP_MAGIC", "make_typestore", "typestore",
    "is_image_type", "TopicSummary", "BagMessage", "Bag", "open_bag", "BagWriter",
    "atomic_output", "header", "stamp_ns", "image_to_bgr", "bgr_to_image", "bgr_to_compressed",
]

# The project's ROS 2 distribution (its wheels are Kilted; Jazzy messages used here are the same).
ROS_STORE = Stores.ROS2_KILTED
# rosbag2 metadata version written by Jazzy and Kilted (QoS as a YAML list, enum names).
BAG_VERSION = 9
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
STORAGES = ("mcap", "sqlite3")
_PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
# First and last 8 bytes of every complete MCAP file.
MCAP_MAGIC = b"\x89MCAP0\r\n"

_ZERO = QosTime(0, 0)  # rmw "unspecified": the middleware default (infinite) for durations
# rclcpp::SensorDataQoS, what camera drivers offer.
SENSOR_DATA_QOS = Qos(QosHistory.KEEP_LAST, 5, QosReliability.BEST_EFFORT,
                      QosDurability.VOLATILE, _ZERO, _ZERO, QosLiveliness.AUTOMATIC, _ZERO,
                      False)
# rclcpp's default profile (depth 100: what tf2 broadcasters offer on /tf).
RELIABLE_QOS = Qos(QosHistory.KEEP_LAST, 100, QosReliability.RELIABLE, QosDurability.VOLATILE,
                   _ZERO, _ZERO, QosLiveliness.AUTOMATIC, _ZERO, False)

# What a damaged bag makes rosbags and its storage back-ends raise while opening or reading
# (its sqlite3 reader uses apsw, its writer the standard sqlite3 module).
_READ_ERRORS = (ReaderError, SerdeError, apsw.Error, sqlite3.Error, struct.error, OSError,
                EOFError, KeyError, ValueError, IndexError)


def make_typestore() -> Typestore:
    """A new ROS 2 typestore with `vlm_node_interfaces` registered from the package's .msg files.

    New on every call: callers that register a bag's own types must not change anyone else's.
    """
    store = get_typestore(ROS_STORE)
    types: dict[str, Any] = {}
    for name in MESSAGES:
        types.update(get_types_from_msg(msg_text(name), f"{PACKAGE}/msg/{name}"))
    store.register(types)
    return store


@lru_cache(maxsize=1)
def typestore() -> Typestore:
    """The shared typestore for (de)serializing standard and project messages; do not register
    further types in it (use `make_typestore()` for that)."""
    return make_typestore()


def is_image_type(msgtype: str) -> bool:
    """True for sensor_msgs/msg/Image and CompressedImage (also the ROS 1 style names)."""
    return msgtype.replace("/msg/", "/") in {t.replace("/msg/", "/") for t in IMAGE_TYPES}


@dataclass(frozen=True, slots=True)
class TopicSummary:
    """One topic of a bag: type, message count and the connections that carry it."""

    name: str
    msgtype: str
    count: int
    connections: tuple[Connection, ...]

    @property
    def is_image(self) -> bool:
        return is_image_type(self.msgtype)


@dataclass(frozen=True, slots=True)
class BagMessage:
    """One stored message: its connection, log time (ns) and serialized CDR bytes as stored."""

    connection: Connection
    timestamp: int
    raw: bytes

    @property
    def topic(self) -> str:
        return self.connection.topic

    @property
    def msgtype(self) -> str:
        return self.connection.msgtype


def _storage_of(path: Path) -> str:
    """'mcap' or 'sqlite3' from a bag directory's metadata.yaml or a bare file's suffix."""
    if path.is_dir():
        meta = path / "metadata.yaml"
        if not meta.is_file():
            raise BagError(f"{path}: not a rosbag2 directory (no metadata.yaml)")
        try:
            info = yaml.safe_load(meta.read_text(encoding="utf-8"))["rosbag2_bagfile_information"]
            return str(info["storage_identifier"])
        except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError) as exc:
            raise BagError(f"{meta}: not rosbag2 metadata ({type(exc).__name__}: {exc})") \
                from exc
    suffix = {".mcap": "mcap", ".db3": "sqlite3"}.get(path.suffix)
    if suffix is None:
        raise BagError(f"{path}: not a bag (expected a directory with metadata.yaml, a .mcap "
                       "or a .db3 file)")
    return suffix


def _check_mcap_complete(path: Path) -> None:
    """A crashed or truncated recording lacks the trailing magic; rosbags would then scan what
    is there and return a silently shortened bag. Refuse it: a partial input must not turn
    into an output that looks complete."""
    with path.open("rb") as f:
        head = f.read(len(MCAP_MAGIC))
        size = f.seek(0, os.SEEK_END)
        if size < 2 * len(MCAP_MAGIC):
            raise BagError(f"{path}: truncated MCAP file ({size} bytes)")
        f.seek(-len(MCAP_MAGIC), os.SEEK_END)
        tail = f.read(len(MCAP_MAGIC))
    if head != MCAP_MAGIC:
        raise BagError(f"{path}: not an MCAP file (bad magic {head!r})")
    if tail != MCAP_MAGIC:
        raise BagError(f"{path}: truncated MCAP file (no end magic; the recording did not "
                       "finish). Recover it first, e.g. `mcap recover`")


class Bag:
    """An open rosbag2 for reading; create it with `open_bag()`.

    Every failure of the underlying reader (corrupt chunk, truncated database, missing file)
    surfaces as `BagError` naming the bag, so callers handle one error type.
    """

    def __init__(self, path: Path, reader: Reader, storage: str) -> None:
        self.path = path
        self.storage = storage
        self._reader = reader

    @property
    def connections(self) -> list[Connection]:
        return list(self._reader.connections)

    @property
    def topics(self) -> dict[str, TopicSummary]:
        """Topics in name order. A topic recorded with several types reports the first."""
        out: dict[str, TopicSummary] = {}
        for name, info in sorted(self._reader.topics.items()):
            conns = tuple(info.connections)
            out[name] = TopicSummary(name, info.msgtype or conns[0].msgtype, info.msgcount,
                                     conns)
        return out

    @property
    def message_count(self) -> int:
        return int(self._reader.message_count)

    @property
    def start_ns(self) -> int:
        return int(self._reader.start_time) if self.message_count else 0

    @property
    def end_ns(self) -> int:
        """Log time of the last message (rosbags reports one past it)."""
        return int(self._reader.end_time) - 1 if self.message_count else 0

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def custom_data(self) -> dict[str, str]:
        return dict(self._reader.storage.metadata.custom or {})

    def image_topics(self) -> list[str]:
        return [name for name, t in self.topics.items() if t.is_image]

    def messages(self, topics: Iterable[str] | None = None, start_ns: int | None = None,
                 stop_ns: int | None = None) -> Iterator[BagMessage]:
        """Messages in log-time order, optionally of `topics` only and with log time in
        [start_ns, stop_ns); raises BagError when the data turns out to be damaged part-way.

        A whole read (no range) also raises BagError when fewer messages were read than the
        bag's index announces (a truncated bag). A ranged read cannot know how many to expect:
        a caller that reads a bag in time ranges must compare the sum over the ranges with
        `message_count` itself (the chunked runner does)."""
        wanted = None if topics is None else set(topics)
        conns = [c for c in self._reader.connections if wanted is None or c.topic in wanted]
        if wanted is not None and not conns:
            return
        ranged = start_ns is not None or stop_ns is not None
        expected = 0 if ranged else sum(c.msgcount for c in conns)
        count = 0
        try:
            for conn, timestamp, raw in self._reader.messages(connections=conns, start=start_ns,
                                                              stop=stop_ns):
                count += 1
                yield BagMessage(conn, int(timestamp), raw)
        except _READ_ERRORS as exc:
            raise BagError(f"{self.path}: damaged bag, reading failed after {count} messages: "
                           f"{type(exc).__name__}: {exc}") from exc
        if expected and count != expected:
            raise BagError(f"{self.path}: truncated or inconsistent bag: read {count} messages, "
                           f"its index lists {expected}")

    def deserialize(self, message: BagMessage, store: Typestore | None = None) -> Any:
        """The message object (rosbags dataclass; array fields are views into `raw`)."""
        try:
            return (store or typestore()).deserialize_cdr(message.raw, message.msgtype)
        except (SerdeError, KeyError, struct.error, ValueError, IndexError,
                TypesysError) as exc:
            raise BagError(f"{self.path}: cannot deserialize a {message.msgtype} on "
                           f"{message.topic} at {message.timestamp}: {exc}") from exc


@contextmanager
def open_bag(path: str | Path) -> Iterator[Bag]:
    """Open a rosbag2 for reading: a directory with metadata.yaml (MCAP or sqlite3) or a bare
    .mcap / .db3 file."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    storage = _storage_of(path)
    if storage not in STORAGES:
        raise BagError(f"{path}: storage {storage!r} is not supported (only {STORAGES})")
    if path.is_file() and storage == "mcap":
        _check_mcap_complete(path)
    try:
        reader = Reader(path)
        reader.open()
    except (FileNotFoundError, *_READ_ERRORS) as exc:
        raise BagError(f"{path}: cannot open bag: {type(exc).__name__}: {exc}") from exc
    try:
        if path.is_dir() and storage == "mcap":
            for f in reader.storage.storages:  # type: ignore[attr-defined]
                _check_mcap_complete(Path(f.path))
        yield Bag(path, reader, storage)
    finally:
        try:
            reader.close()
        except _READ_ERRORS:
            pass  # closing a reader that failed part-way; its error is already on its way


class BagWriter:
    """A new rosbag2 directory (metadata.yaml + one MCAP or sqlite3 file) written with rosbags.

    Connections carry the message definition and RIHS01 hash, so `ros2 bag info/play` and
    Foxglove decode the project's custom messages without its sources.
    """

    def __init__(self, path: str | Path, storage: str = "mcap",
                 store: Typestore | None = None) -> None:
        if storage not in STORAGES:
            raise BagError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        self.path = Path(path)
        self.storage = storage
        self.store = store or typestore()
        try:
            self._writer = Writer(self.path, version=BAG_VERSION,
                                  storage_plugin=_PLUGINS[storage])
        except WriterError as exc:
            raise BagError(str(exc)) from exc
        self._open = False

    def __enter__(self) -> "BagWriter":
        try:
            self._writer.open()
        except (WriterError, OSError) as exc:
            raise BagError(f"{self.path}: cannot create bag: {exc}") from exc
        self._open = True
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self._open:
            return
        self._open = False
        if exc_type is None:
            try:
                self._writer.close()
            except (WriterError, OSError, sqlite3.Error) as err:
                raise BagError(f"{self.path}: finishing the bag failed: {err}") from err
        else:
            self._writer.abort()

    def add_topic(self, topic: str, msgtype: str, qos: Sequence[Qos] = ()) -> Connection:
        """A connection whose definition and hash come from this writer's typestore."""
        try:
            return self._writer.add_connection(topic, msgtype, typestore=self.store,
                                               offered_qos_profiles=list(qos))
        except (WriterError, TypesysError, KeyError) as exc:
            raise BagError(f"{self.path}: cannot add topic {topic} ({msgtype}): {exc}") from exc

    def copy_connection(self, conn: Connection) -> Connection:
        """A connection identical to `conn` of another bag: topic, type, message definition,
        type hash, serialization format and offered QoS profiles. A missing hash (bags from
        before Iron, bare MCAP files without it) is computed from the stored definition."""
        ext = conn.ext
        if not isinstance(ext, ConnectionExtRosbag2):
            raise BagError(f"{conn.topic}: not a rosbag2 connection")
        msgdef = conn.msgdef.data if conn.msgdef.format != MessageDefinitionFormat.NONE else None
        digest = conn.digest or None
        if msgdef is None or digest is None:
            self._ensure_type(conn)
            if msgdef is None:
                msgdef, _ = self.store.generate_msgdef(conn.msgtype, ros_version=2)
            digest = digest or self.store.hash_rihs01(conn.msgtype)
        try:
            return self._writer.add_connection(
                conn.topic, conn.msgtype, msgdef=msgdef, rihs01=digest,
                serialization_format=ext.serialization_format,
                offered_qos_profiles=list(ext.offered_qos_profiles))
        except WriterError as exc:
            raise BagError(f"{self.path}: cannot copy connection {conn.topic}: {exc}") from exc

    def _ensure_type(self, conn: Connection) -> None:
        if conn.msgtype in self.store.types:
            return
        if conn.msgdef.format != MessageDefinitionFormat.MSG or not conn.msgdef.data:
            raise BagError(f"{conn.topic}: type {conn.msgtype} is unknown and the bag stores no "
                           ".msg definition for it, so its hash cannot be computed")
        try:
            self.store.register(get_types_from_msg(conn.msgdef.data, conn.msgtype))
        except Exception as exc:  # noqa: BLE001 - the parser raises several unrelated types
            raise BagError(f"{conn.topic}: cannot parse the definition of {conn.msgtype}: "
                           f"{exc}") from exc

    def write(self, conn: Connection, timestamp: int, raw: bytes | memoryview) -> None:
        try:
            self._writer.write(conn, int(timestamp), raw)
        except (WriterError, OSError, sqlite3.Error) as exc:
            raise BagError(f"{self.path}: write failed on {conn.topic}: {exc}") from exc

    def write_msg(self, conn: Connection, timestamp: int, msg: Any) -> None:
        """Serialize `msg` (a rosbags message object of the connection's type) and write it."""
        self.write(conn, timestamp, self.store.serialize_cdr(msg, conn.msgtype))

    def set_custom_data(self, key: str, value: str) -> None:
        """metadata.yaml `custom_data` (shown by `ros2 bag info`), e.g. the settings used."""
        self._writer.set_custom_data(key, value)


@contextmanager
def atomic_output(out: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield the path to write a bag directory to; it appears at `out` only when the block
    succeeds, in one rename on the same filesystem, so readers never see half a bag.

    The bag is written as `<out parent>/.<name>.partial-<pid>/<name>` (so its data file gets
    the final name); on any exception that directory is removed. An existing `out` is an
    error unless `force`, and then replaced only after the new bag is complete.
    """
    out = Path(out)
    if out.exists() and not force:
        raise BagError(f"{out} exists; choose another output or pass --force to replace it")
    if not out.parent.is_dir():
        raise BagError(f"output directory {out.parent} does not exist")
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        yield staging / out.name
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(staging / out.name, out)
        if old is not None and old.is_dir():
            shutil.rmtree(old)
        elif old is not None:
            old.unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------------------ images

def header(stamp_ns: int, frame_id: str, store: Typestore | None = None) -> Any:
    """A std_msgs/Header with the stamp split exactly into (sec, nanosec)."""
    types = (store or typestore()).types
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id)


def stamp_ns(msg_header: Any) -> int:
    """Nanoseconds of a Header's stamp."""
    return int(msg_header.stamp.sec) * 1_000_000_000 + int(msg_header.stamp.nanosec)


def image_to_bgr(msg: Any, msgtype: str) -> np.ndarray:
    """HxWx3 uint8 BGR pixels of a deserialized Image or CompressedImage; raises the
    image_codec errors (ImageConversionError subclasses) for malformed ones. The array may be
    a read-only view of the message buffer."""
    if msgtype == COMPRESSED_IMAGE:
        return image_codec.compressed_to_bgr8(msg)
    if msgtype == IMAGE:
        return image_codec.image_to_bgr8(msg)
    raise BagError(f"{msgtype} is not an image type ({', '.join(IMAGE_TYPES)})")


def bgr_to_image(bgr: np.ndarray, msg_header: Any, encoding: str = "bgr8",
                 step: int | None = None, is_bigendian: bool = False,
                 store: Typestore | None = None) -> Any:
    """A sensor_msgs/Image of `bgr` in `encoding`, with rows of `step` bytes (default: tight;
    larger keeps a driver's padded layout, padding zero-filled) and the requested byte order
    for multi-byte encodings."""
    raw = image_codec.array_to_image(image_codec.bgr8_to_array(bgr, encoding), encoding)
    data = np.frombuffer(raw.data, dtype=np.uint8)
    rows = data.size // raw.step
    itemsize = image_codec.dtype_of(encoding).itemsize
    if is_bigendian != raw.is_bigendian and itemsize > 1:
        data = data.view(image_codec.dtype_of(encoding)).byteswap().view(np.uint8)
    row_bytes = raw.step if step is None else int(step)
    if row_bytes < raw.step:
        raise MalformedImageError(
            f"step {row_bytes} is shorter than a {encoding} row of width {raw.width} "
            f"({raw.step} bytes)")
    if row_bytes != raw.step:
        padded = np.zeros((rows, row_bytes), dtype=np.uint8)
        padded[:, :raw.step] = data.reshape(rows, raw.step)
        data = padded.reshape(-1)
    image_type = (store or typestore()).types[IMAGE]
    return image_type(header=msg_header, height=raw.height, width=raw.width,
                      encoding=encoding, is_bigendian=bool(is_bigendian and itemsize > 1),
                      step=row_bytes, data=np.ascontiguousarray(data))


def bgr_to_compressed(bgr: np.ndarray, msg_header: Any, kind: str = "jpeg", quality: int = 90,
                      store: Typestore | None = None) -> Any:
    """A sensor_msgs/CompressedImage of `bgr` with compressed_image_transport's format
    string ("bgr8; jpeg compressed bgr8")."""
    fmt, data = image_codec.encode_compressed(bgr, kind, quality)
    compressed_type = (store or typestore()).types[COMPRESSED_IMAGE]
    return compressed_type(header=msg_header, format=fmt,
                           data=np.frombuffer(data, dtype=np.uint8))
