"""Latent flow matching: a dataset encoded once by a trained autoencoder, and the way back to pixels.

    data.autoencoder = "runs/vae_mnist"      # an autoencoder checkpoint (file or run folder)

turns any data source into latents: the split's images are encoded to their posterior means
(imgflow.nn.autoencoder), shifted and scaled to zero mean and unit variance with a shift and scale
measured on the train split (a held-out split is scaled with the train split's, stored in its cache
too), and cached as one float16 array (N, c, h, w) with the labels. The cache follows the project's one
cache protocol (imgflow.disk_cache): it is keyed by the source data's identity and a digest of the
autoencoder's weights (any change rebuilds it), a truncated or foreign file is rebuilt and never
trusted, it is written atomically, and a large one is memory-mapped.

`LatentCodec` holds the autoencoder with its shift and scale: `encode(images) -> latents` and
`decode(latents) -> images`, z = (mean - shift) * scale. A latent run's checkpoints carry the codec
(the autoencoder's model record and EMA weights, the shift and the scale) so `Sampler.from_checkpoint`
decodes without the autoencoder's file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from imgflow.checkpoint import Checkpoint, CheckpointError, load_checkpoint, load_weights_into
from imgflow.config import ConfigError
from imgflow.data import DataSpec, ImageData, data_identity, load_dataset
from imgflow.data.folder import RESIDENT_BYTES
from imgflow.digests import weights_digest
from imgflow.disk_cache import CacheFormat, cache_root, cached
from imgflow.model_record import ModelRecord, build_network
from imgflow.nn.backbones import backbone

#: bump when the cache's layout or the encoding changes: older caches are then rebuilt
LATENT_FORMAT = "imgflow-latent-cache-1"
ENCODE_BATCH = 256


def default_latent_cache_dir() -> Path:
    """<the imgflow cache (imgflow.disk_cache.cache_root)>/latents, beside the folder cache."""
    return cache_root() / "latents"


@dataclass
class LatentCodec:
    """An autoencoder with the shift and scale that make its latents zero-mean, unit-variance.

    encode: images (B, C, H, W) in [-1, 1] -> latents (B, c, H / f, W / f) = (mean(x) - shift) * scale;
    decode: latents -> images (unclipped) = decoder(latent / scale + shift).
    """

    autoencoder: nn.Module
    record: ModelRecord  # the autoencoder's own record (its data spec is the pixel data's)
    digest: str
    shift: float = 0.0
    scale: float = 1.0

    @property
    def kind(self) -> str:
        """Whose autoencoder it is: "imgflow" (its weights travel with a latent model)."""
        return "imgflow"

    @property
    def image_spec(self) -> DataSpec:
        return self.record.spec

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return tuple(self.autoencoder.latent_shape)  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> LatentCodec:
        self.autoencoder.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.autoencoder.parameters()).device

    @torch.inference_mode()
    def encode(self, images: Tensor) -> Tensor:
        mean, _ = self.autoencoder.encode(images.to(self.device).float())
        return (mean - self.shift) * self.scale

    @torch.inference_mode()
    def decode(self, latents: Tensor) -> Tensor:
        return self.autoencoder.decode(latents.to(self.device).float() / self.scale + self.shift)

    def to_record(self) -> dict[str, Any]:
        """What a latent run's model record keeps of the codec (the weights go into the checkpoint's tensors)."""
        return {"autoencoder": json.loads(self.record.to_json()), "digest": self.digest, "shift": self.shift, "scale": self.scale}

    def with_scaling(self, shift: float, scale: float) -> LatentCodec:
        return dataclasses.replace(self, shift=shift, scale=scale)

    @classmethod
    def from_record(cls, latent: dict[str, Any], weights: dict[str, Tensor], where: str | Path = "checkpoint") -> LatentCodec:
        """The codec a latent run's record and its `autoencoder.` tensors describe (the digest is checked)."""
        record = ModelRecord.from_json(json.dumps(latent["autoencoder"]))
        if not weights:
            raise CheckpointError(f"{where} is a latent model but holds no autoencoder weights; it cannot decode")
        if weights_digest(weights) != latent["digest"]:
            raise CheckpointError(f"the autoencoder weights inside {where} do not match its record (a damaged file?); "
                                  "use another checkpoint of the run")
        module = build_network(record)
        load_weights_into(module, weights, where)
        return cls(module.eval(), record, latent["digest"], float(latent["shift"]), float(latent["scale"]))


def load_autoencoder(where: str | Path, device: torch.device | str = "cpu") -> LatentCodec:
    """The autoencoder of a checkpoint (file or run folder; EMA weights) as a codec with shift 0 and scale 1.

    A missing or unreadable file, or a checkpoint of a flow model, is a CheckpointError naming the fix.
    """
    if not Path(where).exists():
        raise CheckpointError(f"data.autoencoder = {where} does not exist; train the autoencoder first (python scripts/train_images.py "
                              "--config configs/vae_mnist.toml, or your own autoencoder config) or point at its run folder")
    try:
        ckpt = load_checkpoint(where)
    except CheckpointError as exc:
        raise CheckpointError(f"data.autoencoder: {exc}") from None
    return codec_from_checkpoint(ckpt, device)


def codec_from_checkpoint(ckpt: Checkpoint, device: torch.device | str = "cpu") -> LatentCodec:
    """The autoencoder of a loaded checkpoint (EMA weights) as a codec with shift 0 and scale 1."""
    where, record = ckpt.path, ckpt.record
    if record is None or backbone(record.arch).kind != "autoencoder":
        raise CheckpointError(f"data.autoencoder = {where} is a checkpoint of a {record.arch if record else 'unknown'} model, "
                              "not of an autoencoder; train one with configs/vae_mnist.toml (model.arch = 'autoencoder') and point at it")
    weights = ckpt.weights("ema")
    module = build_network(record)
    load_weights_into(module, weights, ckpt.path)
    return LatentCodec(module.eval().to(device), record, weights_digest(weights))


def latent_spec(image_spec: DataSpec, codec: LatentCodec) -> DataSpec:
    """The spec of the latents of images of `image_spec`: the latent shape, the images' classes and fingerprint, and in
    `extra` the autoencoder's digest (resuming compares it). The decoded shape is the autoencoder's own (its record)."""
    c, h, _ = codec.latent_shape
    return DataSpec(image_spec.dataset, c, h, image_spec.class_names, image_spec.fingerprint, {"autoencoder_digest": codec.digest})


def check_codec_size(codec: LatentCodec, image_size: int, where: str) -> None:
    """ConfigError when the autoencoder was trained at another image size than data.image_size (checked before loading)."""
    have = codec.image_spec.image_size
    if have != image_size:
        raise ConfigError(f"data.autoencoder = {where} was trained on {have}x{have} images, but data.image_size "
                          f"is {image_size}; set data.image_size = {have} or train an autoencoder at {image_size}")


def check_codec_fits(codec: LatentCodec, spec: DataSpec, where: str) -> None:
    """ConfigError when the autoencoder was trained on images of another channel count or size than the data's."""
    have = codec.image_spec
    if have.channels != spec.channels:
        raise ConfigError(f"data.autoencoder = {where} was trained on {have.channels}-channel images, but this data has "
                          f"{spec.channels} channels; train an autoencoder on this data (or set the data's channels to {have.channels})")
    check_codec_size(codec, spec.image_size, where)


# --- the cache --------------------------------------------------------------------------------------

#: the latent cache: <dir>/latents.f16 ((N, c, h, w) float16, shifted and scaled) and <dir>/meta.json (imgflow.disk_cache)
LATENT_CACHE = CacheFormat(LATENT_FORMAT, "latents.f16", lambda meta: int(np.prod([meta["count"], *meta["latent_shape"]])) * 2)


def _cache_key(identity: dict[str, str], split: str, digest: str, scaling: tuple[float, float] | None) -> str:
    parts = {"format": LATENT_FORMAT, "data": identity, "split": split, "autoencoder": digest}
    if scaling is not None:  # a held-out split, scaled with the train split's statistics
        parts["scaling"] = [float(scaling[0]), float(scaling[1])]
    return hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(), digest_size=16).hexdigest()


def encoded_batches(codec: LatentCodec, data: ImageData, batch_size: int = ENCODE_BATCH, progress: bool = False):
    """Yield the (b, c, h, w) float32 posterior means (unscaled: shift 0, scale 1) of `data`, batch by batch, on the CPU."""
    from imgflow.core.progress import progress_bar

    raw = codec.with_scaling(0.0, 1.0)
    starts = range(0, len(data), batch_size)
    for start in progress_bar(starts, enabled=progress, desc="encoding", unit="batch", leave=False, mininterval=1.0, delay=2.0):
        x, _ = data.batch(torch.arange(start, min(start + batch_size, len(data))), "cpu")
        yield raw.encode(x).float().cpu()


def content_identity(data: ImageData) -> dict[str, str]:
    """The identity of data handed in as tensors: a digest of its values and labels."""
    h = hashlib.blake2b(digest_size=16)
    h.update(data.images.contiguous().view(torch.uint8).numpy().tobytes() if data.images.dtype == torch.uint8 else
             data.images.float().contiguous().numpy().tobytes())
    if data.labels is not None:
        h.update(data.labels.cpu().numpy().tobytes())
    return {"dataset": data.spec.dataset, "content": h.hexdigest(), "shape": str(tuple(data.images.shape))}


def encoded_dataset(codec: LatentCodec, data_section: Any, split: str = "train", *, cache_dir: str | Path | None = None,
                    progress: bool = False, log: Callable[[str], None] | None = None) -> tuple[ImageData, LatentCodec]:
    """The split of the data a [data] section describes as latents, and the codec with the train split's shift and scale
    (a held-out split is encoded with them too: its own statistics would make its latents look like the train split's)."""
    scaling = None
    if split != "train":
        _, trained = encoded_dataset(codec, data_section, "train", cache_dir=cache_dir, progress=progress, log=log)
        scaling = (trained.shift, trained.scale)
    pixels = load_dataset(data_section, split, progress=progress, log=log)
    return encode_data(codec, pixels, data_section, split, identity=data_identity(data_section), cache_dir=cache_dir,
                       progress=progress, log=log, scaling=scaling)


def encode_data(codec: LatentCodec, pixels: ImageData, data_section: Any = None, split: str = "train", *,
                identity: dict[str, str] | None = None, cache_dir: str | Path | None = None, progress: bool = False,
                log: Callable[[str], None] | None = None, scaling: tuple[float, float] | None = None) -> tuple[ImageData, LatentCodec]:
    """`pixels` as latents (through the cache of the module docstring), and the codec with the shift and scale they carry.

    The train split measures its own shift and scale; any other split must be given the train split's as `scaling`
    (shift, scale), which its cache stores beside its latents. identity: what decides the pixels (default: a digest of
    them). The latent data's spec has the latent shape, the pixel data's classes and fingerprint, and in `extra` the
    autoencoder's digest.
    """
    if (split == "train") != (scaling is None):
        raise ValueError("the train split measures its latents' shift and scale; any other split is scaled with the train "
                         f"split's: pass scaling=(shift, scale) for split {split!r} (encoded_dataset does), and none for 'train'")
    where = getattr(data_section, "autoencoder", "") or "the autoencoder"
    check_codec_fits(codec, pixels.spec, where)
    key = _cache_key(identity or content_identity(pixels), split, codec.digest, scaling)
    cache_dir = cache_dir or (getattr(data_section, "latent_cache_dir", "") or None)
    root = Path(cache_dir).expanduser() if cache_dir else default_latent_cache_dir()
    final = root / f"{pixels.spec.dataset}-{split}-{key[:16]}"
    say = log or (lambda _m: None)

    def write(tmp: Path) -> dict[str, Any]:
        say(f"encoding {len(pixels)} images with the autoencoder into {final}")
        return _write_latents(codec, pixels, tmp, scaling, progress)

    cache, _ = cached(final, LATENT_CACHE, key, write, what="latent cache", log=say,
                      unwritable=lambda exc: ConfigError(f"cannot create the latent cache folder {root} ({exc.strerror}); set "
                                                         "data.latent_cache_dir to a writable folder"),
                      short=lambda tmp: ConfigError(f"writing the latent cache in {tmp} fell short (disk full?); free space or set "
                                                    "data.latent_cache_dir"))
    meta = cache.meta
    shape = (meta["count"], *meta["latent_shape"])
    latents = torch.from_numpy(np.memmap(final / "latents.f16", dtype=np.float16, mode="c", shape=shape))
    labels = torch.tensor(meta["labels"], dtype=torch.long) if meta["labels"] is not None else None
    spec = latent_spec(pixels.spec, codec)
    info = {**pixels.info, "latent_cache": str(final)}
    scaled = codec.with_scaling(meta["shift"], meta["scale"])
    return ImageData(latents, labels, spec, resident=latents.numel() * 2 <= RESIDENT_BYTES, info=info), scaled


def _write_latents(codec: LatentCodec, pixels: ImageData, tmp: Path, scaling: tuple[float, float] | None, progress: bool) -> dict[str, Any]:
    """Encode into tmp/latents.f16 in two streaming passes (memory: one batch); the meta of the cache."""
    shape = (len(pixels), *codec.latent_shape)
    # pass 1: the unscaled means to disk, with float64 sums for the shift and scale
    raw = np.lib.format.open_memmap(tmp / "means.npy", mode="w+", dtype=np.float32, shape=shape)
    total = total_sq = 0.0
    row = 0
    for means in encoded_batches(codec, pixels, progress=progress):
        if not torch.isfinite(means).all():
            raise ConfigError("the autoencoder's latents of this data are not finite (a diverged autoencoder?); retrain it")
        raw[row:row + len(means)] = means.numpy()
        total += float(means.double().sum())
        total_sq += float(means.double().square().sum())
        row += len(means)
    if scaling is None:
        n = raw.size
        shift = total / n
        std = math.sqrt(max(total_sq / n - shift * shift, 0.0) * n / max(n - 1, 1))
        scale = 1.0 / std if std > 0 else 1.0
    else:
        shift, scale = float(scaling[0]), float(scaling[1])
    # pass 2: shifted, scaled, float16
    with open(tmp / "latents.f16", "wb") as out:
        for lo in range(0, len(raw), ENCODE_BATCH):
            out.write(((raw[lo:lo + ENCODE_BATCH].astype(np.float64) - shift) * scale).astype(np.float16).tobytes())
    del raw
    (tmp / "means.npy").unlink()
    return {"count": len(pixels), "latent_shape": list(shape[1:]), "shift": shift, "scale": scale,
            "statistics": "train split",
            "labels": pixels.labels.tolist() if pixels.labels is not None else None,
            "image_shape": list(pixels.spec.shape), "autoencoder_digest": codec.digest}


def load_training_data(data_section: Any, split: str = "train", *, codec: LatentCodec | None = None, progress: bool = False,
                       log: Callable[[str], None] | None = None) -> tuple[ImageData, LatentCodec | None]:
    """What a run trains on: the pixels of data_section, or (with data.autoencoder) their latents and the codec."""
    if not data_section.autoencoder:
        return load_dataset(data_section, split, progress=progress, log=log), None
    codec = codec or load_autoencoder(data_section.autoencoder)
    return encoded_dataset(codec, data_section, split, cache_dir=data_section.latent_cache_dir or None, progress=progress, log=log)


def latent_image_size(data_section: Any, codec: LatentCodec | None) -> int:
    """The side of what the flow model sees: data.image_size, divided by the autoencoder's factor for latent runs."""
    if codec is None:
        return data_section.image_size
    return data_section.image_size // codec.autoencoder.factor
