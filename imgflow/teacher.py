"""The teacher a distilling objective names: `load_teacher(reference, student_record, device) -> TeacherNetwork`, and
its cached endpoint pairs (`endpoint_pairs`).

A reference is a checkpoint file or run folder, or the name of a shipped model (imgflow.pretrained, e.g.
"mnist"). The teacher must be a velocity model (not a flow map) of the student's data (shape, classes,
the same latent codec), on the student's path; a class-conditional student needs a class-conditional
teacher. Its EMA weights (the trained ones where the run kept none) are loaded in float32, frozen.

Endpoint pairs: N noise draws x_0 and the teacher's ODE solution x_1 from each (its solver, steps and guidance),
computed once into a cache like the latent cache (imgflow.disk_cache: keyed by the teacher's weights digest, the
solver, steps, guidance, count and seed; written atomically; memory-mapped when read).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgflow.checkpoint import CheckpointError, load_checkpoint, load_weights_into
from imgflow.config import ConfigError
from imgflow.core import SOLVERS, ClassifierFreeGuidance, LearnedVectorFieldODE, ModelField, make_solver, schedule_from_name
from imgflow.core.progress import progress_bar
from imgflow.core.time_grids import named_time_grid
from imgflow.disk_cache import CacheFormat, cache_root, cached
from imgflow.latents import weights_digest
from imgflow.model_record import ModelRecord, build_network
from imgflow.objectives.base import EndpointPairs, TeacherNetwork
from imgflow.pretrained import model_location


def teacher_source(reference: str, key: str = "teacher") -> Path:
    """The checkpoint file, run folder or model folder `reference` names (a path, a shipped sampler's name or a Hub repo id)."""
    return model_location(reference, key=f"{key} =")


def _mismatch(teacher: ModelRecord, student: ModelRecord) -> str | None:
    if teacher.flow_map:
        return "it is a flow map; distil a flow-matching (velocity) model"
    if (teacher.spec.shape, teacher.spec.num_classes) != (student.spec.shape, student.spec.num_classes):
        return (f"it models data of shape {teacher.spec.shape} with {teacher.spec.num_classes} classes, this run "
                f"{student.spec.shape} with {student.spec.num_classes}")
    if student.conditional and teacher.spec.class_names != student.spec.class_names:
        shown = lambda names: ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return (f"its classes are {shown(teacher.spec.class_names)} and this run's {shown(student.spec.class_names)}: another "
                "data set, or data whose class names were not given (ImageData(..., spec=...) with the teacher's names)")
    if bool(teacher.latent) != bool(student.latent) or (teacher.latent and teacher.latent.get("digest") != student.latent.get("digest")):
        return "it models the latents of another autoencoder (or pixels where this run has latents, or the reverse)"
    if teacher.schedule != student.schedule:
        return f"its path has schedule {teacher.schedule!r}, this run's {student.schedule!r}; set flow.schedule = {teacher.schedule!r}"
    if student.conditional and not teacher.conditional:
        return "it is unconditional and this run is class-conditional; set model.class_conditional = false or distil a conditional model"
    return None


def load_teacher(reference: str, student: ModelRecord, device: torch.device | str = "cpu", key: str = "teacher") -> TeacherNetwork:
    """The frozen teacher network `reference` names, checked against the student's record (one ConfigError naming the
    problem otherwise). key: the config key that named it, for the messages."""
    source = teacher_source(reference, key)
    try:
        ckpt = load_checkpoint(source)
    except CheckpointError as exc:
        raise ConfigError(f"{key} = {reference!r}: {exc}") from None
    problem = _mismatch(ckpt.record, student)
    if problem:
        raise ConfigError(f"{key} = {reference!r} cannot teach this run: {problem}")
    weights = ckpt.weights("ema")
    network = build_network(ckpt.record)
    load_weights_into(network, {k: v.float() for k, v in weights.items()}, ckpt.path)
    network.to(device).eval().requires_grad_(False)
    return TeacherNetwork(network, ckpt.record.prediction, str(ckpt.path), weights_digest(weights))


#: the cache of endpoint pairs: pairs.f32 holds (2, N, C, H, W) float32, noise then solutions
PAIRS_CACHE = CacheFormat("imgflow-endpoint-pairs-v1", "pairs.f32",
                          lambda meta: 2 * 4 * int(meta["count"]) * int(np.prod(meta["shape"])))


def _pairs_key(teacher: TeacherNetwork, shape: tuple[int, ...], num_classes: int, count: int, solver: str, steps: int,
               guidance: float, seed: int) -> str:
    text = json.dumps({"teacher": teacher.digest, "shape": list(shape), "classes": num_classes, "count": count, "solver": solver,
                       "steps": steps, "guidance": guidance, "seed": seed, "format": PAIRS_CACHE.tag}, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def endpoint_pairs(teacher: TeacherNetwork, student: ModelRecord, count: int, solver: str = "euler", steps: int = 20,
                   guidance: float = 1.0, seed: int = 0, *, batch_size: int = 250, cache_dir: str | Path | None = None,
                   device: torch.device | str = "cpu", progress: bool = False,
                   log: Callable[[str], None] | None = None) -> tuple[EndpointPairs, float]:
    """(count pairs (x_0, x_1 = the teacher's ODE solution from x_0), seconds spent building them: 0 when the cache had them).

    x_0 ~ N(0, I) of the student's (latent) shape from a generator seeded with `seed`; labels class-balanced (i mod the
    number of classes) for a class-conditional student, guided at `guidance`; the ODE solved with `solver` (a
    deterministic one of imgflow.core.SOLVERS) in `steps` steps on its default time grid. Cached under
    `cache_dir` (default: <imgflow cache>/endpoint_pairs)."""
    info = SOLVERS[solver]
    if info.stochastic or info.flow_map:
        raise ConfigError(f"endpoint pairs solve the teacher's ODE: solver {solver!r} is not an ODE solver of a velocity; use one "
                          f"of {', '.join(n for n, e in SOLVERS.items() if not e.stochastic and not e.flow_map)}")
    shape = tuple(student.spec.shape)
    num_classes = student.spec.num_classes if student.conditional else 0
    key = _pairs_key(teacher, shape, num_classes, count, solver, steps, guidance, seed)
    root = Path(cache_dir).expanduser() if cache_dir else cache_root() / "endpoint_pairs"
    final = root / f"pairs-{key[:16]}"
    say = log or (lambda _m: None)
    start = time.perf_counter()

    def write(tmp: Path) -> dict[str, Any]:
        say(f"solving the teacher's ODE for {count} endpoint pairs ({solver}, {steps} steps, guidance {guidance:g}) into {final}")
        out = np.memmap(tmp / PAIRS_CACHE.data_file, dtype=np.float32, mode="w+", shape=(2, count, *shape))
        gen = torch.Generator().manual_seed(seed)
        labels = torch.arange(count) % num_classes if num_classes else None
        schedule = schedule_from_name(student.schedule)
        grid_name = info.default_time_grid
        for first in progress_bar(range(0, count, batch_size), enabled=progress, desc="endpoint pairs", leave=False):
            n = min(batch_size, count - first)
            x0 = torch.randn(n, *shape, generator=gen)
            net = teacher.network
            model = (ClassifierFreeGuidance(net, labels[first:first + n].to(device), guidance, student.null_label)
                     if labels is not None else net)
            field = ModelField(model, teacher.prediction, schedule)
            t_start = 1e-3 if 0.0 in field.singular_times else 0.0
            t_end = 1.0 - 1e-3 if 1.0 in field.singular_times else 1.0
            with torch.inference_mode():
                x1 = make_solver(solver, LearnedVectorFieldODE(field)).simulate(
                    x0.to(device), named_time_grid(grid_name, steps, t_start, t_end).to(device)).float().cpu()
            if not torch.isfinite(x1).all():
                raise ConfigError(f"the teacher's ODE solutions are not finite ({solver}, {steps} steps); try more steps")
            out[0, first:first + n] = x0.numpy()
            out[1, first:first + n] = x1.numpy()
        out.flush()
        return {"count": count, "shape": list(shape), "labels": labels.tolist() if labels is not None else None, "solver": solver,
                "steps": steps, "guidance": guidance, "seed": seed, "teacher": teacher.source}

    found, reused = cached(final, PAIRS_CACHE, key, write, what="endpoint-pair cache", log=say,
                           unwritable=lambda exc: ConfigError(f"cannot create the endpoint-pair cache folder {root} ({exc.strerror}); "
                                                              "set IMGFLOW_CACHE to a writable folder"),
                           short=lambda tmp: ConfigError(f"writing the endpoint pairs in {tmp} fell short (disk full?); free space"))
    data = torch.from_numpy(np.memmap(final / PAIRS_CACHE.data_file, dtype=np.float32, mode="c", shape=(2, count, *shape)))
    labels = torch.tensor(found.meta["labels"], dtype=torch.long) if found.meta["labels"] is not None else None
    return EndpointPairs(data[0], data[1], labels), 0.0 if reused else time.perf_counter() - start


__all__ = ["PAIRS_CACHE", "endpoint_pairs", "load_teacher", "teacher_source"]
