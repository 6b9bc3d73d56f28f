"""The one conditioning module every backbone uses: time, the second time of a flow map, and the class.

    c = time(t) [+ second(r - t or r)] [+ class(y)]          (B, dim)

- time: `time_embedding` features of t ("sinusoidal": sinusoids of time_scale * t; "fourier": random
  Fourier features; "lab_fourier": the course lab's learned sqrt(2) [sin | cos], no MLP), then (for the
  first two) Linear-SiLU-Linear to `dim`;
- second time (flow maps u(x, t, r) only): the interval r - t ("interval", MeanFlow's choice) or the end
  time r ("end"), embedded like t with sinusoids; its output layer starts at zero, so a new flow map is a
  velocity model (u(x, t, r) = v(x, t) at initialisation);
- class: `num_classes` real rows plus one null row (index num_classes) for classifier-free guidance;
  y = None means the null label.

A backbone that feeds time and class to separate adapters (the lab U-Net) reads `time(t, r)` and
`label(y)`; the others add them with `forward`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from imgflow.nn.embeddings import TIME_EMBEDDINGS, ClassEmbedding, make_time_embedding, time_vector

#: how a flow map embeds its second time
SECOND_TIMES = ("interval", "end")


class LabFourierEncoder(nn.Module):
    """t (B,) -> sqrt(2) [sin(2 pi w t) | cos(2 pi w t)] (B, dim), w learnable ~ N(0, 1) (the course lab's)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"the Fourier time embedding needs an even dim, got {dim}")
        self.half_dim = dim // 2
        self.weights = nn.Parameter(torch.randn(1, self.half_dim))

    def forward(self, t: Tensor) -> Tensor:
        freqs = t.to(self.weights.dtype).reshape(-1, 1) * self.weights * 2 * math.pi
        return torch.cat([torch.sin(freqs), torch.cos(freqs)], dim=-1) * math.sqrt(2)


#: the time embeddings a backbone can ask for: a config's choices (TIME_EMBEDDINGS) and the lab U-Net's own
TIME_EMBEDDING_KINDS = (*TIME_EMBEDDINGS, "lab_fourier")


@dataclass
class ConditioningOptions:
    """The conditioning settings a backbone's config section carries (its dataclass inherits these).

    time_embedding: sinusoidal | fourier; time_scale: the sinusoids see time_scale * t (1000: DDPM's
    convention; a flow map's training target contains du/dt, which grows with it, so MeanFlow models
    use a small one); second_time: how a flow map embeds r (interval: r - t, end: r).
    """

    time_embedding: str = "sinusoidal"
    time_scale: float = 1000.0
    second_time: str = "interval"

    def check_conditioning(self) -> None:
        """ValueError naming the key when a conditioning option is out of range."""
        if self.time_embedding not in TIME_EMBEDDINGS:
            raise ValueError(f"time_embedding = {self.time_embedding!r} is not one of: {', '.join(TIME_EMBEDDINGS)}")
        if self.second_time not in SECOND_TIMES:
            raise ValueError(f"second_time = {self.second_time!r} is not one of: {', '.join(SECOND_TIMES)}")
        if not (self.time_scale > 0 and math.isfinite(self.time_scale)):
            raise ValueError(f"time_scale must be a positive number, got {self.time_scale}")


class Conditioning(nn.Module):
    """time(t) [+ second time] [+ class] -> (B, dim); see the module docstring.

    Args:
        dim: output width.
        feature_dim: features of t before the MLP (default dim; ignored by lab_fourier, which has dim features).
        num_classes: None for an unconditional network; else labels 0..num_classes-1 and the null label num_classes.
        flow_map: take a second time r (embedded as `second_time`).
    """

    def __init__(self, dim: int, *, feature_dim: int | None = None, time_embedding: str = "sinusoidal",
                 time_scale: float = 1000.0, fourier_scale: float = 16.0, learnable_fourier: bool = False,
                 num_classes: int | None = None, flow_map: bool = False, second_time: str = "interval") -> None:
        super().__init__()
        if time_embedding not in TIME_EMBEDDING_KINDS:
            raise ValueError(f"unknown time_embedding {time_embedding!r}; use one of {', '.join(TIME_EMBEDDING_KINDS)}")
        if flow_map and second_time not in SECOND_TIMES:
            raise ValueError(f"unknown second_time {second_time!r}; use one of {', '.join(SECOND_TIMES)}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be None (unconditional) or >= 1, got {num_classes}")
        feature_dim = feature_dim or dim
        self.dim = dim
        if time_embedding == "sinusoidal":
            self.time_embed = make_time_embedding("sinusoidal", feature_dim, dim, scale=time_scale)
        elif time_embedding == "fourier":
            self.time_embed = make_time_embedding("fourier", feature_dim + feature_dim % 2, dim, scale=fourier_scale,
                                                  learnable=learnable_fourier)
        else:
            self.time_embed = LabFourierEncoder(dim)
        self.num_classes = num_classes
        self.class_embed = ClassEmbedding(num_classes, dim) if num_classes is not None else None
        self.second_time = second_time if flow_map else None
        self.second_time_embed = None
        if flow_map:
            self.second_time_embed = make_time_embedding("sinusoidal", feature_dim, dim, scale=time_scale)
            for p in self.second_time_embed.mlp[-1].parameters():
                nn.init.zeros_(p)

    @property
    def null_label(self) -> int | None:
        """The label meaning "no class" (num_classes); None for an unconditional network."""
        return self.num_classes

    @property
    def flow_map(self) -> bool:
        return self.second_time_embed is not None

    def time(self, t: Tensor | float, batch_size: int, device: torch.device, r: Tensor | float | None = None) -> Tensor:
        """(B, dim): the embedding of t, plus that of the second time for a flow map (r = None means r = t)."""
        t_vec = time_vector(t, batch_size, device)
        emb = self.time_embed(t_vec)
        if self.second_time_embed is not None:
            r_vec = t_vec if r is None else time_vector(r, batch_size, device)
            emb = emb + self.second_time_embed(r_vec - t_vec if self.second_time == "interval" else r_vec)
        elif r is not None:
            raise ValueError("this network takes one time (it is not a flow map) but got r; build it as a flow map")
        return emb

    def label(self, y: Tensor | None, batch_size: int, device: torch.device) -> Tensor | None:
        """(B, dim) class embedding (y = None: the null label); None for an unconditional network."""
        if self.class_embed is None:
            if y is not None:
                raise ValueError("this network is unconditional (num_classes=None) but got labels y")
            return None
        return self.class_embed(y, batch_size, device)

    def forward(self, t: Tensor | float, y: Tensor | None, batch_size: int, device: torch.device,
                r: Tensor | float | None = None) -> Tensor:
        """time(t, r) + label(y): the (B, dim) conditioning vector."""
        emb = self.time(t, batch_size, device, r)
        label = self.label(y, batch_size, device)
        return emb if label is None else emb + label.to(emb.dtype)


def rename_legacy_keys(weights: dict[str, Tensor], renames: dict[str, str]) -> dict[str, Tensor]:
    """weights with every key that starts with an old prefix moved to its new one (others unchanged)."""
    if not renames:
        return weights
    out = {}
    for key, value in weights.items():
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out
