"""Road scenes for evaluation and demos: rendered signs (and pasted faces) on real photos.

Signs from `vlm_node.tools.render.signs` are composited onto the photos shipped in
`vlm_node/assets/photos` with seeded random size, position, mild perspective, blur, lighting,
noise and JPEG loss, so OCR and VLM backends are measured on something closer to a camera frame
than a clean drawing. Every scene carries exact labels (sign boxes from the warped alpha, and
the photo's face/plate boxes carried through the resize), written in the project's one label
format so the same evaluation command reads these sets and the real labelled data.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from vlm_node.geometry import Box
from vlm_node.paths import ASSETS
from vlm_node.tools.render.signs import RENDERABLE_CLASSES, SignSpec, render_sign

PHOTOS_DIR = ASSETS / "photos"

# Values as they are posted: km/h signs mostly in tens, mph signs in fives.
SPEED_VALUES_KMH: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130)
SPEED_VALUES_MPH: tuple[int, ...] = (15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75)
VALUE_CHOICES: dict[str, tuple[float, ...]] = {
    "end_speed_limit": (30, 40, 50, 60, 70, 80, 100, 120),
    "minimum_speed": (30, 40, 50, 60),
    "advisory_speed": (25, 30, 35, 40, 45, 50, 55),
    "weight_limit": (3.5, 5.5, 7.5, 12, 20, 30),
    "height_limit": (2.5, 3, 3.2, 3.5, 3.8, 4),
    "width_limit": (2, 2.2, 2.5),
}

# The default mixture of a labelled evaluation set: speed limits dominate (the planner's main
# need), the other classes are the ones an OCR-only backend can in principle recognise, plus a
# few pictogram signs that it must *not* mislabel.
DEFAULT_CLASS_WEIGHTS: dict[str, float] = {
    "speed_limit": 0.40, "speed_limit_us": 0.08, "end_speed_limit": 0.06, "stop": 0.07,
    "yield": 0.06, "no_entry": 0.05, "priority_road": 0.05, "weight_limit": 0.04,
    "height_limit": 0.04, "general_caution": 0.03, "minimum_speed": 0.03,
    "no_overtaking": 0.03, "ahead_only": 0.02, "parking": 0.02, "roadworks": 0.02,
}

OUTPUT_SIZES: tuple[tuple[int, int] | None, ...] = (None, (640, 480), (1280, 720))


@dataclass(frozen=True, slots=True)
class Photo:
    """One shipped photo and its labels. `faces`/`plates` are None where not labelled."""

    file: str
    path: Path
    width: int
    height: int
    use: str  # "background" (road/car photo) or "face" (portrait used as a face donor)
    faces: tuple[Box, ...] | None = None
    plates: tuple[Box, ...] | None = None

    def load(self) -> np.ndarray:
        """BGR pixels; raises when the file is missing or its size disagrees with the labels."""
        image = cv2.imread(str(self.path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"photo not readable: {self.path}")
        if image.shape[:2] != (self.height, self.width):
            raise ValueError(f"{self.path}: size {image.shape[1]}x{image.shape[0]} differs from "
                             f"photos.json ({self.width}x{self.height})")
        return image


def load_photos(directory: Path = PHOTOS_DIR) -> list[Photo]:
    """The photos listed in `directory/photos.json` (the label format, plus a `use` key)."""
    doc = json.loads((directory / "photos.json").read_text(encoding="utf-8"))
    photos = []
    for entry in doc["images"]:
        def boxes(kind: str) -> tuple[Box, ...] | None:
            if kind not in entry:
                return None
            return tuple(Box.from_list(b) for b in entry[kind])
        photos.append(Photo(entry["file"], directory / entry["file"], int(entry["width"]),
                            int(entry["height"]), entry.get("use", "background"),
                            boxes("faces"), boxes("plates")))
    return photos


@dataclass(slots=True)
class SignLabel:
    """A sign placed in a scene: its box in output pixels and what it shows."""

    box: Box
    sign_class: str
    value: float | None = None
    unit: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"box": _int_box(self.box), "class": self.sign_class}
        if self.value is not None:
            out["value"] = int(self.value) if float(self.value).is_integer() else self.value
            out["unit"] = self.unit
        return out


@dataclass(slots=True)
class Scene:
    """A composited BGR image and its complete labels (None = kind not labelled)."""

    image: np.ndarray
    signs: list[SignLabel] = field(default_factory=list)
    faces: list[Box] | None = None
    plates: list[Box] | None = None
    background: str = ""

    def label_entry(self, file: str) -> dict[str, Any]:
        """This scene as one `images[]` entry of labels.json."""
        h, w = self.image.shape[:2]
        entry: dict[str, Any] = {"file": file, "width": w, "height": h,
                                 "signs": [s.to_json() for s in self.signs]}
        if self.faces is not None:
            entry["faces"] = [_int_box(b) for b in self.faces]
        if self.plates is not None:
            entry["plates"] = [_int_box(b) for b in self.plates]
        return entry


@dataclass(frozen=True, slots=True)
class Appearance:
    """Ranges of the random appearance changes; the defaults are mild (a sign a camera can
    still read), widen them to stress a backend."""

    min_height_px: int = 24
    max_height_frac: float = 0.25
    max_yaw_deg: float = 25.0  # turn about the vertical axis (foreshortens the width)
    max_roll_deg: float = 5.0  # in-plane rotation
    max_keystone: float = 0.06  # one side taller than the other (perspective)
    blur_sigma: tuple[float, float] = (0.0, 1.0)
    brightness: tuple[float, float] = (0.6, 1.15)
    contrast: tuple[float, float] = (0.7, 1.05)
    noise_sigma: tuple[float, float] = (0.0, 5.0)
    jpeg_quality: tuple[int, int] = (60, 95)
    pole_probability: float = 0.7


def _int_box(box: Box) -> list[int]:
    return [int(round(v)) for v in (box.x, box.y, box.w, box.h)]


def _cover(src: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(scaled width, scaled height, crop x, crop y) that make `src` cover `size` (w, h)."""
    (w, h), (out_w, out_h) = src, size
    s = max(out_w / w, out_h / h)
    new_w, new_h = max(out_w, int(round(w * s))), max(out_h, int(round(h * s)))
    return new_w, new_h, (new_w - out_w) // 2, (new_h - out_h) // 2


def fit_to_size(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Scale `image` to cover `size` (w, h) and centre-crop it (None: an unchanged copy)."""
    if size is None:
        return image.copy()
    h, w = image.shape[:2]
    new_w, new_h, x0, y0 = _cover((w, h), size)
    interp = cv2.INTER_AREA if new_w < w else cv2.INTER_CUBIC
    resized = cv2.resize(image, (new_w, new_h), interpolation=interp)
    return np.ascontiguousarray(resized[y0:y0 + size[1], x0:x0 + size[0]])


def fit_boxes(boxes: Sequence[Box], src: tuple[int, int], size: tuple[int, int] | None
              ) -> list[Box]:
    """Boxes of an image of size `src` (w, h) after `fit_to_size(image, size)`, clipped (a
    half-visible plate still has to be redacted); boxes cropped away entirely are dropped."""
    if size is None:
        return list(boxes)
    new_w, new_h, x0, y0 = _cover(src, size)
    moved = []
    for b in boxes:
        nb = b.scaled(new_w / src[0], new_h / src[1]).shifted(-x0, -y0).clipped(*size)
        if nb.w >= 2 and nb.h >= 2:
            moved.append(nb)
    return moved


def _warp_sign(rgba: np.ndarray, rng: np.random.Generator, app: Appearance
               ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Premultiplied RGB (float32, HxWx3) and alpha (float32 0..1) of the sign after a mild
    perspective warp, on a canvas with a margin; plus the sign centre in that canvas."""
    h, w = rgba.shape[:2]
    yaw = math.radians(rng.uniform(-app.max_yaw_deg, app.max_yaw_deg))
    roll = math.radians(rng.uniform(-app.max_roll_deg, app.max_roll_deg))
    keystone = rng.uniform(-app.max_keystone, app.max_keystone)
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    pts = []
    for x, y in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)):
        xs = x * math.cos(yaw)
        ys = y * (1 + keystone * (x / (w / 2)))
        pts.append((xs * math.cos(roll) - ys * math.sin(roll),
                    xs * math.sin(roll) + ys * math.cos(roll)))
    dst = np.float32(pts)
    margin = 4
    dst -= dst.min(axis=0) - margin
    out_w = int(math.ceil(dst[:, 0].max())) + margin
    out_h = int(math.ceil(dst[:, 1].max())) + margin
    m = cv2.getPerspectiveTransform(src, dst)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    premult = np.concatenate([rgba[..., :3].astype(np.float32) * alpha, alpha], axis=2)
    warped = cv2.warpPerspective(premult, m, (out_w, out_h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    centre = (float(dst[:, 0].mean()), float(dst[:, 1].mean()))
    return warped[..., :3], warped[..., 3], centre


def _alpha_box(alpha: np.ndarray) -> Box:
    ys, xs = np.nonzero(alpha > 0.5)
    return Box.from_xyxy(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def _overlaps(box: Box, others: Sequence[Box], margin: float = 2.0) -> bool:
    grown = Box(box.x - margin, box.y - margin, box.w + 2 * margin, box.h + 2 * margin)
    return any(grown.intersection(o) > 0 for o in others)


def place_sign(image: np.ndarray, spec: SignSpec, height_px: int, rng: np.random.Generator,
               avoid: Sequence[Box] = (), app: Appearance = Appearance(),
               blur_floor: float = 0.0) -> Box | None:
    """Composite one sign (in place, RGB order of `image` is BGR) about `height_px` tall at a
    random spot that overlaps none of `avoid`; returns its box, or None when no spot fits."""
    img_h, img_w = image.shape[:2]
    rgba = render_sign(spec, max(8, int(height_px)))
    rgb_p, alpha, _ = _warp_sign(rgba, rng, app)
    ph, pw = alpha.shape
    if pw > img_w or ph > img_h:
        return None
    local = _alpha_box(alpha)
    for _ in range(60):
        x0 = int(rng.integers(0, img_w - pw + 1))
        # Signs stand beside and above the road: keep them out of the lowest fifth.
        y_max = max(0, min(img_h - ph, int(img_h * 0.8) - ph))
        y0 = int(rng.integers(0, y_max + 1))
        box = local.shifted(x0, y0)
        if not _overlaps(box, avoid):
            break
    else:
        return None

    region = image[y0:y0 + ph, x0:x0 + pw].astype(np.float32)
    if rng.random() < app.pole_probability:
        pole_w = max(2, int(round(box.w * 0.07)))
        cx = int(round(box.x + box.w / 2))
        pole = Box(cx - pole_w / 2, box.y2 - 1, pole_w, img_h - box.y2 + 1)
        if not _overlaps(pole, avoid, margin=0.0):
            shade = float(rng.uniform(110, 175))
            px1, px2 = int(pole.x), int(math.ceil(pole.x2))
            image[int(pole.y):, px1:px2] = np.clip(
                shade + np.linspace(-25, 25, px2 - px1)[None, :, None], 0, 255).astype(np.uint8)
            region = image[y0:y0 + ph, x0:x0 + pw].astype(np.float32)

    # Lighting: brightness/contrast on the sign, plus a little of the scene's colour cast.
    bright = rng.uniform(*app.brightness)
    contrast = rng.uniform(*app.contrast)
    cast = region.reshape(-1, 3).mean(axis=0)[::-1] * rng.uniform(0.0, 0.12)
    a3 = alpha[..., None]
    rgb = np.where(a3 > 1e-3, rgb_p / np.maximum(a3, 1e-3), 0.0)
    rgb = ((rgb - 128.0) * contrast + 128.0) * bright + cast
    rgb_p = np.clip(rgb, 0, 255) * a3
    sigma = max(blur_floor, rng.uniform(*app.blur_sigma))
    if sigma > 0.15:
        rgb_p = cv2.GaussianBlur(rgb_p, (0, 0), sigma)
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)
    out = rgb_p[..., ::-1] + region * (1.0 - alpha[..., None])
    image[y0:y0 + ph, x0:x0 + pw] = np.clip(out, 0, 255).astype(np.uint8)
    return box


def paste_face(image: np.ndarray, donor: np.ndarray, face: Box, face_height_px: float,
               rng: np.random.Generator, avoid: Sequence[Box] = ()) -> Box | None:
    """Paste head and shoulders from a portrait so that the face is `face_height_px` tall
    (a pedestrian a few metres away), blended with a soft elliptical mask; returns the face
    box in `image`, or None when no free spot exists."""
    img_h, img_w = image.shape[:2]
    dh, dw = donor.shape[:2]
    cx1 = max(0.0, face.x - 0.55 * face.w)
    cy1 = max(0.0, face.y - 0.3 * face.h)
    cx2 = min(float(dw), face.x2 + 0.55 * face.w)
    cy2 = min(float(dh), face.y2 + 1.3 * face.h)
    s = face_height_px / face.h
    crop = donor[int(cy1):int(cy2), int(cx1):int(cx2)]
    pw, ph = max(2, int(round(crop.shape[1] * s))), max(2, int(round(crop.shape[0] * s)))
    if pw >= img_w or ph >= img_h:
        return None
    patch = cv2.resize(crop, (pw, ph), interpolation=cv2.INTER_AREA).astype(np.float32)
    mask = np.zeros((ph, pw), np.float32)
    cv2.ellipse(mask, (pw // 2, ph // 2), (int(pw * 0.46), int(ph * 0.5)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, pw * 0.04))[..., None]
    face_local = Box((face.x - int(cx1)) * s, (face.y - int(cy1)) * s, face.w * s, face.h * s)
    for _ in range(60):
        x0 = int(rng.integers(0, img_w - pw + 1))
        y0 = int(rng.integers(int(img_h * 0.25), max(int(img_h * 0.25) + 1, img_h - ph + 1)))
        if not _overlaps(Box(x0, y0, pw, ph), avoid):
            break
    else:
        return None
    region = image[y0:y0 + ph, x0:x0 + pw].astype(np.float32)
    image[y0:y0 + ph, x0:x0 + pw] = np.clip(patch * mask + region * (1 - mask), 0,
                                            255).astype(np.uint8)
    return face_local.shifted(x0, y0)


def _finish(image: np.ndarray, rng: np.random.Generator, app: Appearance) -> np.ndarray:
    """Sensor noise and JPEG loss over the whole frame (both hit small signs hardest)."""
    sigma = rng.uniform(*app.noise_sigma)
    if sigma > 0.2:
        noise = rng.normal(0.0, sigma, image.shape).astype(np.float32)
        image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    quality = int(rng.integers(app.jpeg_quality[0], app.jpeg_quality[1] + 1))
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def _rng(seed: int | Sequence[int] | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def compose_scene(photo: Photo, specs: Sequence[SignSpec],
                  seed: int | Sequence[int] | np.random.Generator = 0,
                  size: tuple[int, int] | None = None, app: Appearance = Appearance(),
                  heights: Sequence[int] | None = None) -> Scene:
    """`photo` (fitted to `size`) with `specs` composited at random sizes and places.

    Sign heights are log-uniform between `app.min_height_px` and `app.max_height_frac` of the
    image height unless `heights` gives them. A sign that finds no free spot is left out (and
    so is absent from the labels).
    """
    rng = _rng(seed)
    fitted = fit_to_size(photo.load(), size)
    src = (photo.width, photo.height)
    faces = fit_boxes(photo.faces or (), src, size)
    plates = fit_boxes(photo.plates or (), src, size)
    img_h = fitted.shape[0]
    upscale = img_h / photo.height if size is not None else 1.0
    blur_floor = 0.3 * max(0.0, upscale - 1.0)  # an upscaled photo is soft; so is the sign
    avoid: list[Box] = [*faces, *plates]
    signs: list[SignLabel] = []
    lo = math.log(app.min_height_px)
    hi = math.log(max(app.min_height_px, app.max_height_frac * img_h))
    for i, spec in enumerate(specs):
        h = heights[i] if heights is not None else int(round(math.exp(rng.uniform(lo, hi))))
        box = place_sign(fitted, spec, h, rng, avoid, app, blur_floor)
        if box is None:
            continue
        avoid.append(box)
        signs.append(SignLabel(box, spec.sign_class, spec.value, spec.unit))
    fitted = _finish(fitted, rng, app)
    return Scene(fitted, signs, faces if photo.faces is not None else None,
                 plates if photo.plates is not None else None, photo.file)


def random_spec(rng: np.random.Generator,
                weights: dict[str, float] | None = None) -> SignSpec:
    """A random sign of the weighted class mixture (`speed_limit_us` = the US rectangle)."""
    weights = weights or DEFAULT_CLASS_WEIGHTS
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=float)
    name = names[int(rng.choice(len(names), p=p / p.sum()))]
    if name == "speed_limit_us":
        return SignSpec("speed_limit", float(rng.choice(SPEED_VALUES_MPH)), "us")
    if name not in RENDERABLE_CLASSES:
        raise ValueError(f"unknown sign class {name!r} in weights")
    if name == "speed_limit":
        return SignSpec(name, float(rng.choice(SPEED_VALUES_KMH)))
    if name in VALUE_CHOICES:
        style = "us" if name == "advisory_speed" else "vienna"
        return SignSpec(name, float(rng.choice(VALUE_CHOICES[name])), style)
    return SignSpec(name)


def render_labelled_set(out_dir: str | Path, count: int = 100, seed: int = 0,
                        weights: dict[str, float] | None = None,
                        sizes: Sequence[tuple[int, int] | None] = OUTPUT_SIZES,
                        signs_per_image: tuple[int, int] = (1, 2),
                        app: Appearance = Appearance(),
                        photos: Sequence[Photo] | None = None) -> Path:
    """Write `count` scenes as JPEG files plus `labels.json` into `out_dir`; returns the
    labels path. Scene i depends only on (seed, i), so sets of different sizes share a prefix."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    backgrounds = [p for p in (photos or load_photos()) if p.use == "background"]
    if not backgrounds:
        raise ValueError("no background photos to render on")
    entries = []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        photo = backgrounds[int(rng.integers(len(backgrounds)))]
        size = sizes[int(rng.integers(len(sizes)))]
        n = int(rng.integers(signs_per_image[0], signs_per_image[1] + 1))
        specs = [random_spec(rng, weights) for _ in range(n)]
        scene = compose_scene(photo, specs, rng, size, app)
        name = f"scene_{i:04d}.jpg"
        if not cv2.imwrite(str(out / name), scene.image, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"could not write {out / name}")
        entries.append(scene.label_entry(name))
    labels = out / "labels.json"
    labels.write_text(json.dumps({"images": entries}, indent=1) + "\n", encoding="utf-8")
    return labels


# The demo's fixed scenes: background, speed limit, optional second sign, face donor or "".
_ROAD_SCENES: tuple[tuple[str, SignSpec, SignSpec | None, str], ...] = (
    ("Cars2.jpg", SignSpec("speed_limit", 50), None, "obama.jpg"),
    ("Cars21.jpg", SignSpec("speed_limit", 30), SignSpec("yield"), ""),
    ("Cars41.jpg", SignSpec("speed_limit", 80), None, "biden.jpg"),
    ("Cars36.jpg", SignSpec("speed_limit", 100), SignSpec("no_overtaking"), ""),
    ("Cars7.jpg", SignSpec("speed_limit", 60), SignSpec("stop"), "obama.jpg"),
    ("Cars34.jpg", SignSpec("speed_limit", 55, "us"), None, ""),
)

ROAD_SCENE_COUNT = len(_ROAD_SCENES)


def make_road_scene(index: int, size: tuple[int, int] = (640, 480), seed: int = 0,
                    photos: Sequence[Photo] | None = None) -> Scene:
    """Demo scene `index` (cycled over ROAD_SCENE_COUNT fixed layouts): a real photo with a
    clearly readable speed-limit sign, sometimes a second sign, and in some a pasted face at
    pedestrian size. Same (index, size, seed) -> same pixels and labels."""
    by_file = {p.file: p for p in (photos or load_photos())}
    bg_name, speed, extra, donor_name = _ROAD_SCENES[index % ROAD_SCENE_COUNT]
    rng = np.random.default_rng([seed, index, size[0], size[1]])
    photo = by_file[bg_name]
    gentle = Appearance(max_yaw_deg=12.0, max_roll_deg=2.0, blur_sigma=(0.0, 0.4),
                        brightness=(0.85, 1.1), contrast=(0.9, 1.05), noise_sigma=(0.0, 2.0),
                        jpeg_quality=(85, 95), pole_probability=1.0)
    fitted = fit_to_size(photo.load(), size)
    faces = fit_boxes(photo.faces or (), (photo.width, photo.height), size)
    plates = fit_boxes(photo.plates or (), (photo.width, photo.height), size)
    h = fitted.shape[0]
    avoid: list[Box] = [*faces, *plates]
    signs: list[SignLabel] = []
    blur_floor = 0.3 * max(0.0, h / photo.height - 1.0)
    for spec, frac in ((speed, rng.uniform(0.15, 0.2)), (extra, rng.uniform(0.11, 0.15))):
        if spec is None:
            continue
        box = place_sign(fitted, spec, int(round(frac * h)), rng, avoid, gentle, blur_floor)
        if box is None:
            raise RuntimeError(f"road scene {index}: no room for {spec.sign_class} at {size}")
        avoid.append(box)
        signs.append(SignLabel(box, spec.sign_class, spec.value, spec.unit))
    if donor_name:
        donor = by_file[donor_name]
        if not donor.faces:
            raise ValueError(f"{donor_name} has no face box in photos.json")
        face = paste_face(fitted, donor.load(), donor.faces[0], rng.uniform(0.07, 0.1) * h,
                          rng, avoid)
        if face is None:
            raise RuntimeError(f"road scene {index}: no room for a face at {size}")
        faces.append(face)
    fitted = _finish(fitted, rng, gentle)
    return Scene(fitted, signs, faces, plates, bg_name)
