"""Your own images: a folder of PNG/JPEG/WebP/BMP files, converted once into a memory-mapped uint8 cache.

Layout: sub-folders of `data.folder.path` are classes (labels by sorted folder name, images found
recursively inside each); a folder with images and no sub-folders is an unlabelled dataset
(an unconditional model). Hidden files and folders are skipped; other non-image files are
ignored and counted.

Every image is converted once: EXIF orientation applied, transparency composited onto black,
turned into `data.folder.channels` (1: luminance, 3: RGB), then fitted to `data.image_size` by
resizing the shorter side and centre-cropping (`data.folder.fit = "crop"`) or resizing the longer side
and padding with black (`"pad"`), with PIL's antialiasing bicubic filter. The result is one
uint8 (N, C, H, W) array on disk under `data.folder.cache_dir` (default ~/.cache/imgflow/folders),
keyed by the file list with sizes and modification times, the transform and the hold-out
fraction: any change rebuilds it, the second start only lists the files and maps the array.
A cache that is truncated or from another format version is rebuilt, never trusted.
Conversion shows a progress bar (on a terminal) and uses the available cores.

Splits: a deterministic `data.folder.holdout_fraction` of the files (chosen by a hash of each file's
path relative to `data.folder.path`, so adding files never moves old ones between splits) is the
held-out "test" split that evaluation measures against; the rest is "train". The cache stores
the train rows first, so each split is one contiguous memory-mapped block: a dataset larger
than memory trains with the same (seed, step) batches as one in memory.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from imgflow.data.images import ImageData
from imgflow.data.spec import DataSpec
from imgflow.disk_cache import CacheFolder, CacheFormat, cache_root, cached

#: file suffixes read as images (case-insensitive)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
#: bump when the cache's layout or the conversion changes: older caches are then rebuilt
CACHE_FORMAT = "imgflow-folder-cache-2"
FITS = ("crop", "pad")
#: a split whose pixels take at most this much stays resident on an accelerator; larger ones stream from the map
RESIDENT_BYTES = 2 << 30
#: below this many images conversion runs in this process (starting workers costs more)
PARALLEL_FROM = 512


class DataError(ValueError):
    """A problem with the user's images (one line naming the path and the fix)."""


def default_cache_dir() -> Path:
    """Where converted folders are cached by default: <the imgflow cache>/folders."""
    return cache_root() / "folders"


@dataclass
class FolderScan:
    """The images under a folder, in dataset order (class by class, sorted paths), with what identifies them."""

    root: Path
    files: list[str]  # paths relative to root, POSIX style
    labels: list[int] | None  # None: a flat (unlabelled) folder
    class_names: tuple[str, ...]
    stats: list[tuple[int, int]]  # (size in bytes, mtime in ns) per file
    ignored: int  # non-image files

    @property
    def fingerprint(self) -> str:
        """Digest of the file list with sizes and modification times and the class names."""
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps(self.class_names).encode())
        for rel, (size, mtime) in zip(self.files, self.stats):
            h.update(f"{rel}\0{size}\0{mtime}\n".encode())
        return h.hexdigest()


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _walk(folder: Path) -> Iterator[tuple[Path, str]]:
    """(directory, file name) of every non-hidden file under folder, in sorted order."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(f for f in filenames if not f.startswith(".")):
            yield Path(dirpath), name


def scan_folder(path: str | Path) -> FolderScan:
    """List the images of a folder (sub-folders are classes) with one clear error for a folder that cannot be used."""
    root = Path(path).expanduser()
    if not str(path):
        raise DataError("data.folder.path is empty; set it to the folder that holds your images (data.dataset = 'folder')")
    if not root.is_dir():
        what = "is a file" if root.exists() else "does not exist"
        raise DataError(f"data.folder.path {root} {what}; set it to the folder that holds your images")
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        raise DataError(f"cannot read data.folder.path {root} ({exc.strerror}); check its permissions") from None
    class_dirs = [e for e in entries if e.is_dir() and not e.name.startswith(".")]
    top_images = [e.name for e in entries if e.is_file() and _is_image(e.name) and not e.name.startswith(".")]
    ignored = sum(1 for e in entries if e.is_file() and not _is_image(e.name) and not e.name.startswith("."))
    files: list[str] = []
    labels: list[int] = []
    if class_dirs and top_images:
        raise DataError(f"{root} holds both images ({top_images[0]}, ...) and class sub-folders ({class_dirs[0].name}, ...); "
                        "move the loose images into a class folder, or point data.folder.path at a folder of images only")
    for label, cls in enumerate(class_dirs):
        found = 0
        for folder, name in _walk(cls):
            if _is_image(name):
                files.append((folder / name).relative_to(root).as_posix())
                labels.append(label)
                found += 1
            else:
                ignored += 1
        if not found:
            raise DataError(f"class folder {cls} has no images ({', '.join(IMAGE_SUFFIXES)}); add some or remove the folder")
    if not class_dirs:
        files = top_images
    if not files:
        raise DataError(f"{root} holds no images ({ignored} other files ignored); supported: {', '.join(IMAGE_SUFFIXES)}")
    stats = []
    for rel in files:
        st = (root / rel).stat()
        stats.append((st.st_size, st.st_mtime_ns))
    names = tuple(c.name for c in class_dirs)
    return FolderScan(root, files, labels if class_dirs else None, names, stats, ignored)


def in_holdout(relpath: str, fraction: float) -> bool:
    """Whether a file belongs to the held-out split: a hash of its relative path, uniform in [0, 1), below `fraction`."""
    if fraction <= 0:
        return False
    u = int.from_bytes(hashlib.blake2b(relpath.encode(), digest_size=8).digest(), "little") / 2.0**64
    return u < fraction


# --- conversion ----------------------------------------------------------------------------------


def convert_image(path: str | Path, image_size: int, channels: int, fit: str) -> np.ndarray:
    """One image file as uint8 (channels, image_size, image_size); raises OSError/ValueError for an unreadable file."""
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        opened.load()  # decode now: a truncated file fails here
        img = ImageOps.exif_transpose(opened)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        img = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8), "L")
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        background = Image.new(img.mode, img.size, (0, 0, 0, 255) if img.mode == "RGBA" else (0, 255))
        img = Image.alpha_composite(background, img) if img.mode == "RGBA" else Image.alpha_composite(
            background.convert("RGBA"), img.convert("RGBA"))
    img = img.convert("L" if channels == 1 else "RGB")
    size = (image_size, image_size)
    if img.size != size:
        if fit == "crop":
            img = ImageOps.fit(img, size, method=Image.Resampling.BICUBIC, centering=(0.5, 0.5))
        else:
            img = ImageOps.pad(img, size, method=Image.Resampling.BICUBIC, color=0, centering=(0.5, 0.5))
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def _convert_task(task: tuple[str, int, int, str]) -> tuple[np.ndarray | None, str | None]:
    try:
        return convert_image(*task), None
    except Exception as exc:  # any failure of the decoder (truncated, unidentified, a decompression bomb) makes the file unusable
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unreadable'}"


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _converted(tasks: list[tuple[str, int, int, str]], workers: int) -> Iterator[tuple[np.ndarray | None, str | None]]:
    if workers <= 1 or len(tasks) < PARALLEL_FROM:
        yield from map(_convert_task, tasks)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method)) as pool:
        yield from pool.map(_convert_task, tasks, chunksize=64)


# --- the cache -------------------------------------------------------------------------------------


#: the folder cache: <dir>/images.u8 (N x C x H x W uint8, train rows first) and <dir>/meta.json (imgflow.disk_cache)
FOLDER_CACHE = CacheFormat(CACHE_FORMAT, "images.u8", lambda meta: int(np.prod([meta["count"], *meta["image_shape"]])))


def cache_images(cache: CacheFolder) -> np.ndarray:
    """The cached (N, C, H, W) uint8 images, memory-mapped copy-on-write."""
    return np.memmap(cache.dir / "images.u8", dtype=np.uint8, mode="c", shape=(cache.meta["count"], *cache.meta["image_shape"]))


def _safe_name(root: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", root.resolve().name or "root")[:40]


def transform_of(image_size: int, channels: int, fit: str, holdout_fraction: float, skip_bad: bool) -> dict[str, Any]:
    """Everything besides the files that decides a cache's contents."""
    return {"format": CACHE_FORMAT, "size": image_size, "channels": channels, "fit": fit, "holdout": holdout_fraction, "skip_bad": skip_bad}


def cache_key(scan: FolderScan, transform: dict[str, Any]) -> str:
    return hashlib.blake2b((scan.fingerprint + json.dumps(transform, sort_keys=True)).encode(), digest_size=16).hexdigest()


def build_cache(scan: FolderScan, image_size: int, channels: int, fit: str, holdout_fraction: float, *, skip_bad: bool = False,
                cache_dir: str | Path | None = None, workers: int = 0, progress: bool = False,
                log: Callable[[str], None] | None = None) -> CacheFolder:
    """The cache of a scanned folder under this transform: reused when valid, otherwise (re)built atomically."""
    from imgflow.core.progress import progress_bar

    transform = transform_of(image_size, channels, fit, holdout_fraction, skip_bad)
    key = cache_key(scan, transform)
    root_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    final = root_dir / f"{_safe_name(scan.root)}-{key[:16]}"

    def write(tmp: Path) -> dict[str, Any]:
        order = [i for i, rel in enumerate(scan.files) if not in_holdout(rel, holdout_fraction)]
        n_train_files = len(order)
        order += [i for i, rel in enumerate(scan.files) if in_holdout(rel, holdout_fraction)]
        tasks = [(str(scan.root / scan.files[i]), image_size, channels, fit) for i in order]
        kept, skipped, n_train = [], [], 0
        with progress_bar(total=len(tasks), enabled=progress, desc=f"converting {scan.root.name}", unit="img", mininterval=1.0,
                          delay=2.0, leave=False) as bar, open(tmp / "images.u8", "wb") as out:
            for position, (pixels, error) in enumerate(_converted(tasks, workers or available_cores())):
                bar.update(1)
                i = order[position]
                if pixels is None:
                    if not skip_bad:
                        raise DataError(f"cannot read image {scan.root / scan.files[i]} ({error}); fix or remove it, "
                                        "or set data.folder.skip_bad_images = true to leave such files out")
                    skipped.append(scan.files[i])
                    continue
                out.write(pixels.tobytes())
                kept.append(i)
                n_train += position < n_train_files
        if not kept:
            raise DataError(f"none of the {len(tasks)} images under {scan.root} could be read; check the files")
        return {
            "source": str(scan.root.resolve()), "transform": transform, "count": len(kept),
            "image_shape": [channels, image_size, image_size], "train_count": n_train, "files": [scan.files[i] for i in kept],
            "labels": [scan.labels[i] for i in kept] if scan.labels is not None else None, "class_names": list(scan.class_names),
            "skipped_bad_images": skipped, "ignored_files": scan.ignored, "fingerprint": scan.fingerprint,
        }

    cache, reused = cached(
        final, FOLDER_CACHE, key, write, what="image cache", log=log,
        unwritable=lambda exc: DataError(f"cannot create the image cache folder {root_dir} ({exc.strerror}); set data.folder.cache_dir "
                                         "to a writable folder"),
        short=lambda tmp: DataError(f"writing the image cache in {tmp} fell short (disk full?); free space or set data.folder.cache_dir"))
    if not reused:
        _remove_superseded(root_dir, final, cache.meta)
    return cache


def _remove_superseded(root_dir: Path, current: Path, meta: dict[str, Any]) -> None:
    """Delete caches of the same folder and transform whose files have since changed: they can never be hit again."""
    prefix = current.name.rsplit("-", 1)[0]
    for other in root_dir.glob(f"{prefix}-*"):
        if other == current or not other.is_dir() or ".tmp-" in other.name:
            continue
        try:
            theirs = json.loads((other / "meta.json").read_text())
        except (OSError, ValueError):
            continue
        if theirs.get("source") == meta["source"] and theirs.get("transform") == meta["transform"]:
            shutil.rmtree(other, ignore_errors=True)


# --- the dataset ---------------------------------------------------------------------------------


@dataclass
class FolderOptions:
    """[data.folder]: where your images are and how they become training images.

    path: the folder (its sub-folders are the classes; a flat folder is unlabelled); channels: 1 (grey) or
    3 (RGB, the default); fit: crop (shorter side to image_size, centre crop) | pad (longer side, black
    borders); holdout_fraction: the share of files held out for evaluation (chosen by path, deterministic);
    skip_bad_images: leave unreadable images out (counted) instead of stopping; cache_dir: where converted
    images are cached (default ~/.cache/imgflow/folders); workers: conversion processes (default: the
    available cores).
    """

    path: str | None = None
    channels: int | None = None
    fit: str = "crop"
    holdout_fraction: float = 0.1
    skip_bad_images: bool = False
    cache_dir: str | None = None
    workers: int | None = None

    @property
    def image_channels(self) -> int:
        return self.channels or 3


class FolderDataset:
    """The data source of data.dataset = 'folder' (see imgflow.data.DATASETS for the interface)."""

    name = "folder"
    options = FolderOptions
    flippable = True  # a folder of photos may be mirrored; set data.hflip only if yours may
    #: keys that only say where the files live (resume and classifiers ignore them)
    location_keys = ("folder.path", "folder.cache_dir", "folder.workers", "folder.skip_bad_images")
    #: [data] keys of torchvision's datasets that a folder does not read
    unused_keys: ClassVar[dict[str, str]] = {
        "data.data_root": "a folder's images are read from data.folder.path",
        "data.download": "a folder's images are on disk already (data.folder.path)",
        "data.resize": "a folder's images are fitted to data.image_size by data.folder.fit (crop or pad)",
    }

    def validate(self, data: Any, options: FolderOptions) -> None:
        """ValueError (one line naming the key and the fix) for settings no folder can satisfy."""
        if not options.path:
            raise ValueError("data.dataset = 'folder' needs data.folder.path, the folder that holds your images (sub-folders are classes)")
        if options.channels not in (None, 1, 3):
            raise ValueError(f"data.folder.channels must be 1 (grey) or 3 (RGB), got {options.channels}")
        if options.fit not in FITS:
            raise ValueError(f"data.folder.fit = {options.fit!r} is not one of: {', '.join(FITS)}")
        if not 0.0 <= options.holdout_fraction < 1.0:
            raise ValueError(f"data.folder.holdout_fraction must be in [0, 1), got {options.holdout_fraction}")
        if options.workers is not None and options.workers < 1:
            raise ValueError(f"data.folder.workers must be >= 1 (leave it out for the available cores), got {options.workers}")

    def spec(self, data: Any) -> DataSpec | None:
        """None: a folder's classes are known once it is scanned."""
        return None

    def identity(self, data: Any) -> dict[str, str]:
        o = data.options
        scan = scan_folder(o.path)
        return {"dataset": self.name, "image_size": str(data.image_size), "channels": str(o.image_channels), "fit": o.fit,
                "holdout_fraction": str(o.holdout_fraction), "fingerprint": scan.fingerprint}

    def load_split(self, data: Any, split: str = "train", progress: bool = False, log: Callable[[str], None] | None = None) -> ImageData:
        """The split ('train', or 'test': the held-out files) as memory-mapped uint8 (N, C, H, W)."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        o = data.options
        scan = scan_folder(o.path)
        channels = o.image_channels
        cache = build_cache(scan, data.image_size, channels, o.fit, o.holdout_fraction, skip_bad=o.skip_bad_images,
                            cache_dir=o.cache_dir or None, workers=o.workers or 0, progress=progress, log=log)
        meta = cache.meta
        lo, hi = (0, meta["train_count"]) if split == "train" else (meta["train_count"], meta["count"])
        if hi <= lo:
            fix = "lower data.folder.holdout_fraction" if split == "train" else "set data.folder.holdout_fraction > 0 (e.g. 0.1)"
            raise DataError(f"the {split} split of {scan.root} is empty ({meta['count']} images, hold-out fraction "
                            f"{o.holdout_fraction}); {fix}")
        images = torch.from_numpy(cache_images(cache)[lo:hi])
        labels = torch.tensor(meta["labels"][lo:hi], dtype=torch.long) if meta["labels"] is not None else None
        spec = DataSpec(self.name, channels, data.image_size, tuple(meta["class_names"]), scan.fingerprint)
        info = {"path": str(scan.root), "cache": str(cache.dir), "skipped_bad_images": len(meta["skipped_bad_images"]),
                "ignored_files": meta["ignored_files"], "split": split}
        return ImageData(images, labels, spec, resident=images.numel() <= RESIDENT_BYTES, info=info)


def export_image_folder(data: ImageData, out_dir: str | Path, progress: bool = False, prefix_index: bool = True) -> Path:
    """Write a dataset as a class-per-folder tree of PNGs: out_dir/<k>-<class name>/<row>.png (flat when unlabelled).

    Class folders are numbered so that their sorted order is the label order; file names are the
    zero-padded row index, so the folder's order within a class is the dataset's.
    """
    from PIL import Image

    from imgflow.core.progress import progress_bar

    out = Path(out_dir)
    names = data.spec.class_names
    width = len(str(max(len(names) - 1, 0)))
    folders = [out / ((f"{k:0{width}d}-" if prefix_index else "") + re.sub(r"[^A-Za-z0-9_.-]+", "_", n)) for k, n in enumerate(names)]
    for f in folders or [out]:
        f.mkdir(parents=True, exist_ok=True)
    digits = len(str(len(data)))
    for i in progress_bar(range(len(data)), enabled=progress, desc="writing PNGs", unit="img", mininterval=1.0):
        pixels = data.images[i].numpy()
        img = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
        folder = folders[int(data.labels[i])] if data.labels is not None and folders else out
        img.save(folder / f"{i:0{digits}d}.png")
    return out
