"""Labelled sample rosbag2 recordings: rendered road scenes on several camera topics.

Why: replay evaluation and bag anonymization need bags whose every face, plate and sign is
known exactly, and no such recording with a clear licence exists. Scenes come from
`vlm_node.tools.render.scenes` (signs of several classes and values rendered onto the shipped CC0
photos, faces pasted from the shipped portraits), so a bag is reproducible from its seed and
its labels are exact.

Layout of a sample bag (camera k of K, frame i of N, rate N / seconds):

* camera 0 `/front/image_raw`: sensor_msgs/Image bgr8 (tight rows), best-effort QoS;
* cameras 1.. `/<name>/image_raw/compressed`: sensor_msgs/CompressedImage JPEG (quality 90,
  format "bgr8; jpeg compressed bgr8", as compressed_image_transport writes it);
* `/tf`: tf2_msgs/TFMessage odom -> base_link at the camera rate (the vehicle drives at
  10 m/s), and `/tf_static` once (base_link -> each camera frame, transient local): non-image
  topics that tools must carry through unchanged;
* header stamp == log time; camera k is offset by k * period / (2K) so cameras interleave;
* frames come in shots of SHOT_SECONDS: one scene per shot, coming 1.5 % closer each frame
  (signs seen in consecutive frames confirm their tracks; faces and plates move a little).

`labels.json` sits in the bag directory beside metadata.yaml (the bag stays one self-contained
directory): the label format of docs/labels.md, each image entry with `file` =
"<topic>@<stamp_ns>" plus `topic`, `stamp_ns`, `camera` and `frame_id` keys.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
from rosbags.interfaces import QosDurability

from vlm_node.bags import io
from vlm_node.errors import ConfigError
from vlm_node.geometry import Box
from vlm_node.tools.render.scenes import (Photo, Scene, compose_scene, load_photos,
                                          make_road_scene, paste_face, random_spec)

__all__ = ["CAMERA_NAMES", "START_NS", "JPEG_QUALITY", "TF_TOPIC", "TF_STATIC_TOPIC",
           "SampleSpec", "CameraTopic", "camera_topics", "render_frame", "write_sample_bag"]

CAMERA_NAMES = ("front", "rear", "left", "right", "front_left", "front_right", "rear_left",
                "rear_right")
# 2025-06-15T15:06:40Z: a fixed epoch, so a seed gives identical bags on any day.
START_NS = 1_750_000_000_000_000_000
JPEG_QUALITY = 90  # the node's default `jpeg_quality` for /compressed outputs
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
SPEED_MPS = 10.0
MIN_SIZE = (160, 120)
MAX_SIDE = 7680
MAX_ASPECT = 8
MAX_FRAMES = 100_000
MIN_PERIOD_NS = 1_000_000  # 1 kHz: faster is no camera
LABELS_NAME = "labels.json"
SHOT_SECONDS = 1.0      # one scene this long, then the next
ZOOM_PER_FRAME = 0.015  # driving towards the scene: 1.5 % closer each frame
MIN_SIGN_VISIBLE = 0.7  # a sign cut by the frame edge beyond this is not labelled

_TF_STATIC_QOS = io.RELIABLE_QOS._replace(depth=1, durability=QosDurability.TRANSIENT_LOCAL)


@dataclass(frozen=True, slots=True)
class SampleSpec:
    """What to write; validated on creation with errors that name the option."""

    frames: int
    cameras: int
    seconds: float
    storage: str = "mcap"
    size: tuple[int, int] = (640, 480)
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.frames, bool) or not isinstance(self.frames, int) \
                or not 1 <= self.frames <= MAX_FRAMES:
            raise ConfigError(f"frames must be an integer in 1..{MAX_FRAMES}, got "
                              f"{self.frames!r}")
        if isinstance(self.cameras, bool) or not isinstance(self.cameras, int) \
                or not 1 <= self.cameras <= len(CAMERA_NAMES):
            raise ConfigError(f"cameras must be an integer in 1..{len(CAMERA_NAMES)}, got "
                              f"{self.cameras!r}")
        if not isinstance(self.seconds, (int, float)) or isinstance(self.seconds, bool) \
                or not self.seconds > 0 or self.seconds == float("inf"):
            raise ConfigError(f"seconds must be a positive number, got {self.seconds!r}")
        if self.period_ns < MIN_PERIOD_NS:
            raise ConfigError(f"{self.frames} frames in {self.seconds} s is "
                              f"{self.frames / self.seconds:.0f} frames/s per camera; at most "
                              f"{1e9 / MIN_PERIOD_NS:.0f} (use more seconds or fewer frames)")
        if self.storage not in io.STORAGES:
            raise ConfigError(f"storage must be one of {', '.join(io.STORAGES)}, got "
                              f"{self.storage!r}")
        w, h = self.size
        if not (MIN_SIZE[0] <= w <= MAX_SIDE and MIN_SIZE[1] <= h <= MAX_SIDE):
            raise ConfigError(f"size must be between {MIN_SIZE[0]}x{MIN_SIZE[1]} and "
                              f"{MAX_SIDE}x{MAX_SIDE}, got {w}x{h}")
        if not h <= w <= MAX_ASPECT * h:
            # the scenes place signs of 15-20 % of the height beside the road: a portrait
            # frame has no room for them
            raise ConfigError(f"size must be landscape or square, at most {MAX_ASPECT}:1, got "
                              f"{w}x{h}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")

    @property
    def period_ns(self) -> int:
        """Time between two frames of one camera."""
        return int(round(self.seconds * 1e9 / self.frames))

    @property
    def shot_frames(self) -> int:
        """Frames per shot (one scene)."""
        return max(1, round(SHOT_SECONDS * 1e9 / self.period_ns))

    def stamp_ns(self, camera: int, frame: int) -> int:
        return START_NS + frame * self.period_ns + camera * self.period_ns // (2 * self.cameras)


@dataclass(frozen=True, slots=True)
class CameraTopic:
    """One camera of a sample bag."""

    name: str
    topic: str
    msgtype: str
    frame_id: str


def camera_topics(cameras: int) -> list[CameraTopic]:
    """Camera 0 raw Image, the others CompressedImage, with image_transport topic names."""
    out = []
    for k, name in enumerate(CAMERA_NAMES[:cameras]):
        if k == 0:
            out.append(CameraTopic(name, f"/{name}/image_raw", io.IMAGE, f"{name}_camera"))
        else:
            out.append(CameraTopic(name, f"/{name}/image_raw/compressed", io.COMPRESSED_IMAGE,
                                   f"{name}_camera"))
    return out


def render_frame(spec: SampleSpec, camera: int, frame: int, photos: Sequence[Photo]) -> Scene:
    """The labelled frame `frame` of `camera`: frames come in shots of about SHOT_SECONDS, like
    a drive: within a shot the same scene comes closer (a zoom of ZOOM_PER_FRAME per frame
    about the centre), so signs are seen in consecutive frames (tracks confirm) and faces and
    plates move a little (carry-over matters); the next shot is another scene."""
    shot, step = divmod(frame, spec.shot_frames)
    scene = render_shot(spec, camera, shot, photos)
    return zoomed(scene, 1.0 + ZOOM_PER_FRAME * step) if step else scene


def zoomed(scene: Scene, scale: float) -> Scene:
    """`scene` magnified by `scale` about the image centre (same size), labels moved with it.
    Faces and plates are kept while any part is visible (they must still be redacted); signs
    are kept while at least MIN_SIGN_VISIBLE of them is in the frame."""
    h, w = scene.image.shape[:2]
    cx, cy = w / 2.0, h / 2.0
    matrix = np.array([[scale, 0.0, cx * (1 - scale)], [0.0, scale, cy * (1 - scale)]])
    image = cv2.warpAffine(scene.image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)

    def move(box: Box) -> tuple[Box | None, float]:
        x1, y1 = scale * (box.x - cx) + cx, scale * (box.y - cy) + cy
        full = Box(x1, y1, box.w * scale, box.h * scale)
        seen = full.clipped(w, h)
        if seen.w <= 0 or seen.h <= 0:
            return None, 0.0
        return seen, seen.area / full.area

    def keep(boxes: list[Box] | None) -> list[Box] | None:
        if boxes is None:
            return None
        return [b for b in (move(box)[0] for box in boxes) if b is not None]

    signs = []
    for sign in scene.signs:
        box, visible = move(sign.box)
        if box is not None and visible >= MIN_SIGN_VISIBLE:
            signs.append(dataclasses.replace(sign, box=box))
    return Scene(image, signs, keep(scene.faces), keep(scene.plates), scene.background)


def render_shot(spec: SampleSpec, camera: int, shot: int, photos: Sequence[Photo]) -> Scene:
    """The first frame of shot `shot` of `camera`; depends only on (spec.seed, spec.size,
    camera, shot). Even (camera + shot): one of the demo's road scenes (a readable speed limit,
    a pedestrian's face in half of them); odd: a random mixture of sign classes and values on
    a random photo, with a pedestrian face pasted in about half of the shots."""
    frame = shot
    index = frame * spec.cameras + camera
    if (camera + frame) % 2 == 0:
        return make_road_scene(index, spec.size, spec.seed, photos)
    rng = np.random.default_rng([spec.seed, camera, frame, 7])
    backgrounds = [p for p in photos if p.use == "background"]
    donors = [p for p in photos if p.use == "face" and p.faces]
    photo = backgrounds[int(rng.integers(len(backgrounds)))]
    specs = [random_spec(rng) for _ in range(int(rng.integers(1, 3)))]
    scene = compose_scene(photo, specs, rng, spec.size)
    if donors and rng.random() < 0.5:
        donor = donors[int(rng.integers(len(donors)))]
        avoid: list[Box] = [s.box for s in scene.signs] + list(scene.plates or ())
        face_h = rng.uniform(0.08, 0.12) * spec.size[1]
        face = paste_face(scene.image, donor.load(), donor.faces[0], face_h, rng, avoid)
        if face is not None:
            scene.faces = [*(scene.faces or []), face]
    return scene


def _static_transforms(store: Any, cams: Sequence[CameraTopic]) -> Any:
    types = store.types
    transforms = []
    for k, cam in enumerate(cams):
        yaw = 2 * np.pi * k / max(1, len(cams))  # cameras around the roof, facing outwards
        transforms.append(types["geometry_msgs/msg/TransformStamped"](
            header=io.header(START_NS, "base_link", store), child_frame_id=cam.frame_id,
            transform=_transform(types, 1.5 * np.cos(yaw), 1.5 * np.sin(yaw), 1.6, yaw)))
    return types["tf2_msgs/msg/TFMessage"](transforms=transforms)


def _transform(types: Any, x: float, y: float, z: float, yaw: float) -> Any:
    return types["geometry_msgs/msg/Transform"](
        translation=types["geometry_msgs/msg/Vector3"](x=float(x), y=float(y), z=float(z)),
        rotation=types["geometry_msgs/msg/Quaternion"](
            x=0.0, y=0.0, z=float(np.sin(yaw / 2)), w=float(np.cos(yaw / 2))))


def _odometry(store: Any, stamp: int) -> Any:
    types = store.types
    x = SPEED_MPS * (stamp - START_NS) / 1e9
    tf = types["geometry_msgs/msg/TransformStamped"](
        header=io.header(stamp, "odom", store), child_frame_id="base_link",
        transform=_transform(types, x, 0.0, 0.0, 0.0))
    return types["tf2_msgs/msg/TFMessage"](transforms=[tf])


def _write(path: Path, spec: SampleSpec) -> list[dict[str, Any]]:
    """Write the bag at `path`; returns the label entries in log-time order."""
    store = io.typestore()
    photos = load_photos()
    cams = camera_topics(spec.cameras)
    labels: list[tuple[int, int, dict[str, Any]]] = []
    shots: dict[int, Scene] = {}
    with io.BagWriter(path, spec.storage, store) as writer:
        writer.set_custom_data("vlm_node.sample", json.dumps(asdict(spec), sort_keys=True))
        conns = [writer.add_topic(c.topic, c.msgtype, [io.SENSOR_DATA_QOS]) for c in cams]
        tf_conn = writer.add_topic(TF_TOPIC, "tf2_msgs/msg/TFMessage", [io.RELIABLE_QOS])
        static_conn = writer.add_topic(TF_STATIC_TOPIC, "tf2_msgs/msg/TFMessage",
                                       [_TF_STATIC_QOS])
        writer.write_msg(static_conn, START_NS, _static_transforms(store, cams))
        for i in range(spec.frames):
            writer.write_msg(tf_conn, spec.stamp_ns(0, i), _odometry(store, spec.stamp_ns(0, i)))
            for k, (cam, conn) in enumerate(zip(cams, conns)):
                stamp = spec.stamp_ns(k, i)
                shot, step = divmod(i, spec.shot_frames)
                if step == 0:  # one render per shot; the frames in between are zooms of it
                    shots[k] = render_shot(spec, k, shot, photos)
                scene = zoomed(shots[k], 1.0 + ZOOM_PER_FRAME * step) if step else shots[k]
                hdr = io.header(stamp, cam.frame_id, store)
                if cam.msgtype == io.IMAGE:
                    msg = io.bgr_to_image(scene.image, hdr, "bgr8", store=store)
                else:
                    msg = io.bgr_to_compressed(scene.image, hdr, "jpeg", JPEG_QUALITY, store)
                writer.write_msg(conn, stamp, msg)
                entry = scene.label_entry(f"{cam.topic}@{stamp}")
                entry.update(topic=cam.topic, stamp_ns=stamp, camera=cam.name,
                             frame_id=cam.frame_id)
                labels.append((stamp, k, entry))
    return [entry for _, _, entry in sorted(labels, key=lambda t: (t[0], t[1]))]


def write_sample_bag(out: Path, frames: int, cameras: int, seconds: float,
                     storage: str = "mcap", size: tuple[int, int] = (640, 480), seed: int = 0,
                     force: bool = False) -> Path:
    """Write a labelled sample bag directory at `out` (atomically: nothing appears at `out`
    unless it is complete) and return the path of its labels.json. Same arguments, same
    bytes of every message and the same labels."""
    spec = SampleSpec(frames, cameras, float(seconds), storage, (int(size[0]), int(size[1])),
                      seed)
    out = Path(out)
    with io.atomic_output(out, force) as path:
        entries = _write(path, spec)
        doc = {"images": entries, "sample": asdict(spec)}
        (path / LABELS_NAME).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return out / LABELS_NAME
