"""The optimiser of a run: Adam, or AdamW with decay only on the weights that should shrink.

With train.weight_decay = 0 this is torch.optim.Adam, as every run before. With weight decay > 0 it is
AdamW (decoupled decay: w <- w - lr wd w besides the Adam step, not an L2 term inside the gradient
that Adam's normalisation would rescale), and the decay applies only to weight matrices and
convolution kernels. Excluded (the rule of minGPT / nanoGPT and the DiT / ADM codebases): every
parameter with fewer than 2 dimensions (biases, norm weights and gains, Fourier frequency vectors)
and every embedding table (nn.Embedding: the class rows and the null label). The learnable Fourier
frequencies of a time embedding are excluded by module, whatever their shape (the lab's
LabFourierEncoder keeps them as a (1, dim/2) matrix): decay would pull them to 0 and flatten the
time features. The Linear weights of a time embedding's MLP are ordinary weights and are decayed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from imgflow.nn.conditioning import LabFourierEncoder
from imgflow.nn.embeddings import FourierTimeEmbedding

#: modules whose own parameters (not their children's) are tables or frequencies: never decayed
NO_DECAY_MODULES = (nn.Embedding, FourierTimeEmbedding, LabFourierEncoder)


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """[{'params': decayed, 'weight_decay': wd}, {'params': the rest, 'weight_decay': 0}]; each parameter once, in model order."""
    tables = {id(p) for m in model.modules() if isinstance(m, NO_DECAY_MODULES) for p in m.parameters(recurse=False)}
    decay, keep = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and id(p) not in tables else keep).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def no_decay_names(model: nn.Module) -> list[str]:
    """The parameter names weight decay leaves alone."""
    kept = {id(p) for p in decay_groups(model, 1.0)[1]["params"]}
    return [n for n, p in model.named_parameters() if id(p) in kept]


def build_optimizer(model: nn.Module, train: Any) -> torch.optim.Optimizer:
    """Adam (train.weight_decay = 0) or AdamW over `decay_groups`, with train.lr and the Adam betas."""
    betas = (train.adam_beta1, train.adam_beta2)
    if train.weight_decay == 0:
        return torch.optim.Adam(model.parameters(), lr=train.lr, betas=betas)
    return torch.optim.AdamW(decay_groups(model, train.weight_decay), lr=train.lr, betas=betas)
