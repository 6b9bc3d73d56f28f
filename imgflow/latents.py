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
    decode: latents -> images (unclipped) = decoder(latent / scale + shift). shift and scale are numbers, or one per
    latent channel (a diffusers VAE's latents_mean / latents_std).

    Two kinds: imgflow's own autoencoder (`record` set; its weights travel inside every latent checkpoint; shift and
    scale measured on the train split) and a diffusers AutoencoderKL (`record` None, `source` says where it is and
    what its config holds; shift and scale are its config's, imgflow.diffusers_vae).
    """

    autoencoder: nn.Module
    record: ModelRecord | None  # imgflow's autoencoder's own record (its data spec is the pixel data's); None for a diffusers VAE
    digest: str
    shift: Scaling = 0.0
    scale: Scaling = 1.0
    source: dict[str, Any] = dataclasses.field(default_factory=dict)  # a diffusers VAE: {"source": path or repo id, "config": {...}}

    @property
    def kind(self) -> str:
        """Whose autoencoder it is: "imgflow" (its weights travel with a latent model) or "diffusers" (referenced)."""
        return "imgflow" if self.record is not None else "diffusers"

    @property
    def fixed_scaling(self) -> bool:
        """Whether shift and scale are the autoencoder's own (a diffusers VAE's config) rather than measured on the data."""
        return self.kind == "diffusers"

    @property
    def image_spec(self) -> DataSpec:
        if self.record is not None:
            return self.record.spec
        _, h, _ = self.latent_shape  # fully convolutional: the images of the size it was set up for
        return DataSpec("vae", self.autoencoder.in_channels, h * self.autoencoder.factor)

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
        return (mean - _channels(self.shift, mean)) * _channels(self.scale, mean)

    @torch.inference_mode()
    def decode(self, latents: Tensor) -> Tensor:
        z = latents.to(self.device).float()
        return self.autoencoder.decode(z / _channels(self.scale, z) + _channels(self.shift, z))

    def weights_to_save(self) -> dict[str, Tensor] | None:
        """What a latent checkpoint stores of the codec: imgflow's autoencoder's weights; nothing of a diffusers VAE (its
        record names it, with a digest)."""
        return self.autoencoder.state_dict() if self.kind == "imgflow" else None

    def to_record(self) -> dict[str, Any]:
        """What a latent run's model record keeps of the codec (imgflow's weights go into the checkpoint's tensors)."""
        shift, scale = _jsonable(self.shift), _jsonable(self.scale)
        if self.record is None:
            _, h, _ = self.latent_shape
            return {"kind": "diffusers", **self.source, "digest": self.digest, "shift": shift, "scale": scale,
                    "image": {"channels": self.autoencoder.in_channels, "image_size": h * self.autoencoder.factor}}
        return {"autoencoder": json.loads(self.record.to_json()), "digest": self.digest, "shift": shift, "scale": scale}

    def with_scaling(self, shift: Scaling | list[float], scale: Scaling | list[float]) -> LatentCodec:
        return dataclasses.replace(self, shift=_scaling(shift), scale=_scaling(scale))

    @classmethod
    def from_record(cls, latent: dict[str, Any], weights: dict[str, Tensor], where: str | Path = "checkpoint") -> LatentCodec:
        """The codec a latent run's record and its `autoencoder.` tensors describe (the digest is checked); a diffusers
        VAE is loaded from where the record says it came from, with the shift and scale the model was trained with."""
        if latent.get("kind") == "diffusers":
            return _diffusers_from_record(latent, where)
        record = ModelRecord.from_json(json.dumps(latent["autoencoder"]))
        if not weights:
            raise CheckpointError(f"{where} is a latent model but holds no autoencoder weights; it cannot decode")
        if weights_digest(weights) != latent["digest"]:
            raise CheckpointError(f"the autoencoder weights inside {where} do not match its record (a damaged file?); "
                                  "use another checkpoint of the run")
        module = build_network(record)
        load_weights_into(module, weights, where)
        return cls(module.eval(), record, latent["digest"], _scaling(latent["shift"]), _scaling(latent["scale"]))


#: a shift or scale: one number, or one per latent channel
Scaling = float | tuple[float, ...]


def _scaling(value: Any) -> Scaling:
    return tuple(float(v) for v in value) if isinstance(value, (list, tuple)) else float(value)


def _jsonable(value: Scaling) -> float | list[float]:
    return list(value) if isinstance(value, tuple) else value


def _channels(value: Scaling, like: Tensor) -> Tensor | float:
    """A shift or scale ready to broadcast against (B, c, h, w) latents."""
    if isinstance(value, tuple):
        return torch.tensor(value, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
    return value


def _diffusers_codec(folder: Path, source: str, image_size: int, device: torch.device | str, key: str) -> LatentCodec:
    from imgflow.diffusers_vae import DiffusersVAE, load_vae, scaling_from_config, vae_config

    vae = load_vae(folder, key)
    module = DiffusersVAE(vae, image_size)
    if image_size % module.factor:
        raise ConfigError(f"{key} = {source!r} downsamples by {module.factor}, and data.image_size = {image_size} is not a multiple "
                          f"of it; set data.image_size to a multiple of {module.factor}")
    shift, scale = scaling_from_config(dict(vae.config))
    digest = weights_digest(module.vae.state_dict())
    return LatentCodec(module.to(device), None, digest, shift, scale, {"source": source, "config": vae_config(vae)})


def _diffusers_from_record(latent: dict[str, Any], where: str | Path) -> LatentCodec:
    from imgflow.diffusers_vae import vae_folder

    source = latent["source"]
    folder = vae_folder(source, key=f"{where}: its VAE")
    if folder is None:
        raise CheckpointError(f"{where} decodes with the diffusers VAE {source!r}, which is not on this machine; put it back at "
                              "that path (or fetch it: a Hub repo id is downloaded into the Hub cache)")
    codec = _diffusers_codec(folder, source, int(latent["image"]["image_size"]), "cpu", f"{where}: its VAE")
    if codec.digest != latent["digest"]:
        raise CheckpointError(f"the VAE at {source!r} is not the one {where} was trained with (its weights' digest differs); "
                              "use the VAE the model was trained with")
    return codec.with_scaling(latent["shift"], latent["scale"])  # as trained, whatever the VAE's config says now


def load_autoencoder(where: str | Path, device: torch.device | str = "cpu", image_size: int | None = None) -> LatentCodec:
    """What data.autoencoder names, as a codec: an imgflow autoencoder's checkpoint (file or run folder; EMA weights;
    shift 0 and scale 1 until the train split measures them), or a diffusers AutoencoderKL (a local folder or a Hub
    repo id; its config's shift and scale; set up for images of `image_size`, default its config's sample_size).

    A missing or unreadable file, or a checkpoint of a flow model, is a CheckpointError naming the fix.
    """
    from imgflow.diffusers_vae import vae_folder

    folder = vae_folder(str(where))
    if folder is not None:
        size = image_size or int(json.loads((folder / "config.json").read_text()).get("sample_size", 256))
        return _diffusers_codec(folder, str(where), size, device, "data.autoencoder")
    if not Path(where).exists():
        raise CheckpointError(f"data.autoencoder = {where} does not exist; train the autoencoder first (python scripts/train_images.py "
                              "--config configs/vae_mnist.toml, or your own autoencoder config), point at its run folder, or name a "
                              "diffusers AutoencoderKL (a folder or a Hub repo id such as stabilityai/sd-vae-ft-ema)")
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
    if have.channels != spec.channels and codec.kind == "diffusers":
        raise ConfigError(f"data.autoencoder = {where} is a VAE of {have.channels}-channel images, but this data has {spec.channels} "
                          f"channels; use {have.channels}-channel data (or a VAE of {spec.channels} channels)")
    if have.channels != spec.channels:
        raise ConfigError(f"data.autoencoder = {where} was trained on {have.channels}-channel images, but this data has "
                          f"{spec.channels} channels; train an autoencoder on this data (or set the data's channels to {have.channels})")
    check_codec_size(codec, spec.image_size, where)


# --- the cache --------------------------------------------------------------------------------------

#: the latent cache: <dir>/latents.f16 ((N, c, h, w) float16, shifted and scaled) and <dir>/meta.json (imgflow.disk_cache)
LATENT_CACHE = CacheFormat(LATENT_FORMAT, "latents.f16", lambda meta: int(np.prod([meta["count"], *meta["latent_shape"]])) * 2)


def _cache_key(identity: dict[str, str], split: str, digest: str, scaling: tuple[Scaling, Scaling] | None) -> str:
    parts = {"format": LATENT_FORMAT, "data": identity, "split": split, "autoencoder": digest}
    if scaling is not None:  # a held-out split scaled with the train split's statistics, or a VAE's own scaling
        parts["scaling"] = [_jsonable(_scaling(scaling[0])), _jsonable(_scaling(scaling[1]))]
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
    if split != "train" and not codec.fixed_scaling:
        _, trained = encoded_dataset(codec, data_section, "train", cache_dir=cache_dir, progress=progress, log=log)
        scaling = (trained.shift, trained.scale)
    pixels = load_dataset(data_section, split, progress=progress, log=log)
    return encode_data(codec, pixels, data_section, split, identity=data_identity(data_section), cache_dir=cache_dir,
                       progress=progress, log=log, scaling=scaling)


def encode_data(codec: LatentCodec, pixels: ImageData, data_section: Any = None, split: str = "train", *,
                identity: dict[str, str] | None = None, cache_dir: str | Path | None = None, progress: bool = False,
                log: Callable[[str], None] | None = None, scaling: tuple[Scaling, Scaling] | None = None) -> tuple[ImageData, LatentCodec]:
    """`pixels` as latents (through the cache of the module docstring), and the codec with the shift and scale they carry.

    The train split measures its own shift and scale; any other split must be given the train split's as `scaling`
    (shift, scale), which its cache stores beside its latents. A diffusers VAE's shift and scale are its config's, for
    every split (used as written: a train split whose scaled latents are far from unit size gets a warning line).
    identity: what decides the pixels (default: a digest of them). The latent data's spec has the latent shape, the
    pixel data's classes and fingerprint, and in `extra` the autoencoder's digest.
    """
    if codec.fixed_scaling:  # a diffusers VAE's own shift and scale, for every split
        scaling = (codec.shift, codec.scale)
    elif (split == "train") != (scaling is None):
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
        meta = _write_latents(codec, pixels, tmp, scaling, progress)
        if codec.fixed_scaling and split == "train" and not 0.5 <= meta["rms"] <= 2.0:
            say(f"warning: {where}'s shift and scale (its config.json: shift {_jsonable(codec.shift)}, scale {_jsonable(codec.scale)}) "
                f"give latents of root mean square {meta['rms']:.3g} on this data, not about 1; used as written (a hand-edited "
                "scaling_factor? fix the VAE's config.json if it is wrong)")
        return meta

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


def _write_latents(codec: LatentCodec, pixels: ImageData, tmp: Path, scaling: tuple[Scaling, Scaling] | None, progress: bool) -> dict[str, Any]:
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
        shift, scale = _scaling(scaling[0]), _scaling(scaling[1])
    per_channel = lambda v: np.asarray(v, dtype=np.float64).reshape(1, -1, 1, 1) if isinstance(v, tuple) else v
    # pass 2: shifted, scaled, float16 (and the scaled values' mean square, which a VAE's written scaling may miss)
    square = 0.0
    with open(tmp / "latents.f16", "wb") as out:
        for lo in range(0, len(raw), ENCODE_BATCH):
            z = (raw[lo:lo + ENCODE_BATCH].astype(np.float64) - per_channel(shift)) * per_channel(scale)
            square += float(np.square(z).sum())
            out.write(z.astype(np.float16).tobytes())
    raw_size = raw.size
    del raw
    (tmp / "means.npy").unlink()
    return {"count": len(pixels), "latent_shape": list(shape[1:]), "shift": _jsonable(shift), "scale": _jsonable(scale),
            "rms": math.sqrt(square / max(raw_size, 1)),
            "statistics": "the VAE's config" if codec.fixed_scaling else "train split",
            "labels": pixels.labels.tolist() if pixels.labels is not None else None,
            "image_shape": list(pixels.spec.shape), "autoencoder_digest": codec.digest}


def load_training_data(data_section: Any, split: str = "train", *, codec: LatentCodec | None = None, progress: bool = False,
                       log: Callable[[str], None] | None = None) -> tuple[ImageData, LatentCodec | None]:
    """What a run trains on: the pixels of data_section, or (with data.autoencoder) their latents and the codec."""
    if not data_section.autoencoder:
        return load_dataset(data_section, split, progress=progress, log=log), None
    codec = codec or load_autoencoder(data_section.autoencoder, image_size=data_section.image_size)
    return encoded_dataset(codec, data_section, split, cache_dir=data_section.latent_cache_dir or None, progress=progress, log=log)


def latent_image_size(data_section: Any, codec: LatentCodec | None) -> int:
    """The side of what the flow model sees: data.image_size, divided by the autoencoder's factor for latent runs."""
    if codec is None:
        return data_section.image_size
    return data_section.image_size // codec.autoencoder.factor
