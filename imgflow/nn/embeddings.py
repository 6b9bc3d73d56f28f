"""Time and class embeddings for the image networks.

Time t is in [0, 1] (t = 0 noise, t = 1 data). Every embedding accepts t as a python
float, a 0-d tensor, a (B,) tensor or a (B, 1, ..., 1) tensor; `time_vector` turns any of
them into a float32 (B,) vector. The features are always computed in float32 (t * 1000 in
bfloat16 would round consecutive solver steps to the same value); the MLP that follows
runs in whatever precision autocast or the weights choose.

Class labels use one extra learned row: indices 0..num_classes-1 are the real classes and
index `num_classes` is the null (unconditional) label that classifier-free guidance needs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from imgflow.core.registry import Registry

__all__ = [
    "TIME_EMBEDDINGS",
    "ClassEmbedding",
    "FourierTimeEmbedding",
    "SinusoidalTimeEmbedding",
    "apply_label_drop",
    "drop_labels",
    "fourier_features",
    "label_drop_mask",
    "make_time_embedding",
    "sinusoidal_features",
    "time_vector",
]


def time_vector(t: Tensor | float, batch_size: int, device: torch.device | str | None = None) -> Tensor:
    """Return t as a float32 (B,) tensor: scalars broadcast, (B, 1, ...) is flattened.

    Raises ValueError when t holds neither one value nor one value per sample.
    """
    t = torch.as_tensor(t, device=device)
    t = t.to(torch.float32)
    if t.numel() == 1:
        return t.reshape(1).expand(batch_size)
    if t.numel() != batch_size or (t.dim() > 1 and t.shape[0] != batch_size):
        raise ValueError(
            f"time of shape {tuple(t.shape)} does not match batch size {batch_size}; "
            "pass t as a scalar, (B,) or (B, 1, ..., 1)"
        )
    return t.reshape(batch_size)


def sinusoidal_features(t: Tensor, dim: int, scale: float = 1000.0, max_period: float = 10000.0) -> Tensor:
    """Transformer/DDPM sinusoids of (scale * t): (B,) -> (B, dim), as [cos | sin].

    Frequencies run geometrically from 1 to 1 / max_period. With scale = 1000 the time
    t in [0, 1] covers the same range as the integer steps 0..1000 of DDPM, which is what
    the published U-Net recipes were tuned for. An odd dim gets one zero column.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = (scale * t.to(torch.float32))[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def fourier_features(t: Tensor, freqs: Tensor) -> Tensor:
    """Random Fourier features [sin(2 pi f t) | cos(2 pi f t)]: (B,) -> (B, 2 * len(freqs))."""
    args = 2.0 * math.pi * t.to(torch.float32)[:, None] * freqs.to(torch.float32)[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def _mlp(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))


def _to_param_dtype(features: Tensor, module: nn.Module) -> Tensor:
    # Under autocast the weights stay float32 and autocast casts the matmul; for a model
    # converted to bf16/fp16 with .to(dtype) the features must follow the weights.
    return features.to(next(module.parameters()).dtype)


class SinusoidalTimeEmbedding(nn.Module):
    """t -> sinusoids of (scale * t) with `dim` features -> Linear-SiLU-Linear -> out_dim."""

    def __init__(self, dim: int, out_dim: int, scale: float = 1000.0, max_period: float = 10000.0) -> None:
        super().__init__()
        self.dim = dim
        self.scale = float(scale)
        self.max_period = float(max_period)
        self.mlp = _mlp(dim, out_dim)

    def features(self, t: Tensor) -> Tensor:
        return sinusoidal_features(t, self.dim, self.scale, self.max_period)

    def forward(self, t: Tensor) -> Tensor:
        """t: (B,) float -> (B, out_dim)."""
        return self.mlp(_to_param_dtype(self.features(t), self.mlp))


class FourierTimeEmbedding(nn.Module):
    """t -> Gaussian random Fourier features (std `scale`) -> Linear-SiLU-Linear -> out_dim.

    The frequencies are drawn once at construction and saved with the model (a buffer when
    fixed, a parameter when `learnable`), so a checkpoint reproduces the same embedding.
    """

    def __init__(self, dim: int, out_dim: int, scale: float = 16.0, learnable: bool = False) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"Fourier time embedding needs an even dim (sin and cos pairs), got {dim}")
        freqs = torch.randn(dim // 2) * scale
        if learnable:
            self.freqs = nn.Parameter(freqs)
        else:
            self.register_buffer("freqs", freqs)
        self.dim = dim
        self.scale = float(scale)
        self.mlp = _mlp(dim, out_dim)

    def features(self, t: Tensor) -> Tensor:
        return fourier_features(t, self.freqs)

    def forward(self, t: Tensor) -> Tensor:
        """t: (B,) float -> (B, out_dim)."""
        return self.mlp(_to_param_dtype(self.features(t), self.mlp))


#: the time embeddings a backbone's time_embedding key chooses from
TIME_EMBEDDINGS = Registry("time embedding", "time_embedding", [("sinusoidal", SinusoidalTimeEmbedding), ("fourier", FourierTimeEmbedding)])


def make_time_embedding(kind: str, dim: int, out_dim: int, **kwargs) -> nn.Module:
    """Build a time embedding by name ("sinusoidal" or "fourier")."""
    return TIME_EMBEDDINGS[kind](dim, out_dim, **kwargs)


class ClassEmbedding(nn.Module):
    """Learned label embedding with num_classes real rows plus one null row.

    `null_index` (= num_classes) is the unconditional label; `forward(None, batch_size)`
    embeds a whole batch of null labels.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.embedding = nn.Embedding(self.num_classes + 1, dim)

    @property
    def null_index(self) -> int:
        return self.num_classes

    def labels(self, y: Tensor | None, batch_size: int, device: torch.device | str | None = None) -> Tensor:
        """y as a (B,) long tensor; None means all null labels."""
        if y is None:
            return torch.full((batch_size,), self.null_index, dtype=torch.long, device=device)
        y = torch.as_tensor(y, device=device)
        if y.dtype.is_floating_point or y.dtype == torch.bool:
            raise TypeError(f"class labels must be an integer tensor, got dtype {y.dtype}")
        if y.dim() == 0:
            y = y.expand(batch_size)
        if y.shape != (batch_size,):
            raise ValueError(f"labels of shape {tuple(y.shape)} do not match batch size {batch_size}; pass y as (B,)")
        return y.long()

    def forward(self, y: Tensor | None, batch_size: int | None = None, device: torch.device | str | None = None) -> Tensor:
        """(B,) labels in [0, num_classes] (or None with batch_size) -> (B, dim)."""
        if y is None and batch_size is None:
            raise ValueError("pass batch_size when y is None")
        if batch_size is None:
            batch_size = torch.as_tensor(y).reshape(-1).shape[0]
        device = device if device is not None else self.embedding.weight.device
        return self.embedding(self.labels(y, batch_size, device))


def label_drop_mask(n: int, p: float, generator: torch.Generator | None = None,
                    device: torch.device | str | None = None) -> Tensor:
    """(n,) bool, True with probability p each: the labels that classifier-free guidance training drops.

    One uniform draw per label, always (also at p = 0), so a trainer's later draws from the same generator
    do not depend on p. True means "dropped": `apply_label_drop` turns those labels into the null label.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"label drop probability must be in [0, 1], got {p}")
    return torch.rand(n, generator=generator, device=device) < p


def apply_label_drop(y: Tensor, drop: Tensor, null_index: int) -> Tensor:
    """y (B,) with the labels where drop (B,) is True replaced by `null_index` (= num_classes); the rest unchanged."""
    return torch.where(drop.to(y.device), torch.full_like(y, null_index), y)


def drop_labels(y: Tensor, p: float, null_index: int, generator: torch.Generator | None = None) -> Tensor:
    """Replace each label of y (B,) by `null_index` with probability p (classifier-free guidance training).

    `label_drop_mask` then `apply_label_drop`, the two pieces the image trainer uses (it draws the mask with the
    rest of its batch). At p = 0 y is returned as it is and nothing is drawn.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"label drop probability must be in [0, 1], got {p}")
    if p == 0.0:
        return y
    device = generator.device if generator is not None else y.device
    return apply_label_drop(y, label_drop_mask(y.shape[0], p, generator, device), null_index)
