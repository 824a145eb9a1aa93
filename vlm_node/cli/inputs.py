"""The image files a command reads from its INPUT argument: one file, a directory (searched
recursively) or a glob. One list of image suffixes and one walk, so `anonymize` and `analyze`
accept exactly the same inputs."""
from __future__ import annotations

import glob
from pathlib import Path

# .ppm: the GTSDB and GTSRB originals are PPM files
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                  ".pnm")


def collect_images(spec: str, exclude: Path | None = None) -> list[tuple[Path, Path]]:
    """(image path, path relative to the input root) for INPUT, sorted; the root is the file's
    folder, the directory, or the glob's folder before its first wildcard. Files under
    `exclude` (an output directory inside the input) are skipped. FileNotFoundError when the
    input does not exist or holds no image."""
    path = Path(spec)
    if path.is_file():
        found, root = [path], path.parent
    elif path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file()]
        root = path
    elif glob.has_magic(spec):
        found = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
        parts = Path(spec).parts
        first_magic = next(i for i, part in enumerate(parts) if glob.has_magic(part))
        root = Path(*parts[:first_magic]) if first_magic else Path(".")
    else:
        raise FileNotFoundError(f"input not found: {spec}")
    excluded = exclude.resolve() if exclude else None
    images = []
    for p in sorted(found):
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if excluded is not None and excluded in p.resolve().parents:
            continue
        images.append((p, p.relative_to(root) if p.is_relative_to(root) else Path(p.name)))
    if not images:
        raise FileNotFoundError(f"no images found in {spec} (a file, a directory or a glob of "
                                f"{', '.join(IMAGE_SUFFIXES)} files)")
    return images
