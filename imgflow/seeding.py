"""Deterministic seeds derived from (base seed, keys): the basis of exact resume and
batch-size-independent sampling. Every random draw in training and sampling comes from a
generator seeded by `derive_seed(seed, purpose, step, ...)`, so no RNG state needs saving."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(base: int, *keys: int | str) -> int:
    """A 63-bit seed that depends on base and every key (order matters), stable across runs."""
    text = ":".join(str(k) for k in (base, *keys)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def generator(base: int, *keys: int | str, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator on `device` seeded with derive_seed(base, *keys)."""
    return torch.Generator(device=device).manual_seed(derive_seed(base, *keys))
