#!/usr/bin/env python
"""Sample a PNG grid from a checkpoint: `python scripts/sample_images.py runs/mnist --out grid.png`.

CHECKPOINT is a ckpt-*.safetensors file or a run folder (its `latest`). The architecture is
rebuilt from the configuration stored in the checkpoint; the EMA weights are used unless
--weights raw. Same checkpoint, seed and settings give the same image, whatever --batch-size.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from imgflow.cli import ArgumentParser, add_runtime_arguments, apply_runtime_arguments, check_output_file, run_cli
from imgflow.config import CHOICES, ConfigError


def parse_classes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        classes = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise ConfigError(f"--classes must be comma-separated integers like 3,5,7, got {text!r}") from None
    bad = [c for c in classes if not 0 <= c < 10]
    if bad or not classes:
        raise ConfigError(f"--classes must be labels in 0..9, got {text!r}")
    return classes


def main() -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="ckpt-*.safetensors file or run folder")
    p.add_argument("--out", required=True, help="PNG grid to write")
    p.add_argument("--solver", choices=CHOICES["sample.solver"], help="default: the run's sample.solver")
    p.add_argument("--steps", type=int, help="solver steps (default: the run's sample.num_steps)")
    p.add_argument("--time-grid", choices=CHOICES["sample.time_grid"], help="uniform or late (denser near the data)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale w (1 = plain conditional)")
    p.add_argument("--classes", help="comma-separated labels to cycle through, e.g. 3 or 0,1,2 (conditional models)")
    p.add_argument("--num", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--nrow", type=int, default=None, help="images per grid row (default 10 for conditional, 8 otherwise)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--sde-epsilon", type=float, help="noise level epsilon of the Euler-Maruyama sampler")
    p.add_argument("--weights", choices=("ema", "raw"), default="ema")
    p.add_argument("--raw", help="also save the samples (in [-1, 1]) and labels to this .safetensors file")
    add_runtime_arguments(p)
    args = p.parse_args()
    apply_runtime_arguments(args)

    from imgflow.checkpoint import atomic_save_safetensors, load_checkpoint, load_weights_into
    from imgflow.factory import build_model, is_class_conditional
    from imgflow.sampling import SamplerSettings, default_labels, sample_images, save_grid

    out = Path(args.out)
    check_output_file(out, "--out")
    check_output_file(args.raw, "--raw")
    for name in ("steps", "num", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    ckpt = load_checkpoint(args.checkpoint)
    cfg = ckpt.config
    settings = SamplerSettings.from_config(cfg)
    for field, value in (("solver", args.solver), ("num_steps", args.steps), ("time_grid", args.time_grid),
                         ("guidance_scale", args.guidance), ("sde_epsilon", args.sde_epsilon)):
        if value is not None:
            setattr(settings, field, value)
    conditional = is_class_conditional(cfg)
    if settings.guidance_scale != 1.0 and not conditional:
        raise ConfigError(f"--guidance {settings.guidance_scale} needs a class-conditional model; {ckpt.path.name} is unconditional (use --guidance 1)")
    classes = parse_classes(args.classes)
    if classes and not conditional:
        raise ConfigError(f"--classes needs a class-conditional model; {ckpt.path.name} is unconditional")

    model = build_model(cfg)
    load_weights_into(model, ckpt.weights(args.weights), ckpt.path)
    model.to(args.device)
    labels = default_labels(args.num, classes) if conditional else None
    t0 = time.perf_counter()
    images, labels, nfe = sample_images(model, cfg, settings, args.num, seed=args.seed, labels=labels,
                                        batch_size=args.batch_size, device=args.device, progress=True)
    elapsed = time.perf_counter() - t0
    try:
        save_grid(images, out, nrow=args.nrow or (10 if conditional else 8))
        if args.raw:
            tensors = {"images": images}
            if labels is not None:
                tensors["labels"] = labels
            atomic_save_safetensors(Path(args.raw), tensors, {"checkpoint": str(ckpt.path), "seed": str(args.seed)})
    except OSError as exc:
        raise ConfigError(f"cannot write {exc.filename or out}: {exc.strerror}; choose a writable --out/--raw path") from None
    guidance = f", guidance {settings.guidance_scale:g}" if conditional else ""
    print(f"wrote {out} ({args.num} images, step {ckpt.step}, {args.weights} weights) | solver {settings.solver}, "
          f"{settings.num_steps} steps, NFE {nfe}{guidance} | {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    run_cli(main)
