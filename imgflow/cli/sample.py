"""Sample a PNG grid from a checkpoint or a run folder.

    python scripts/sample_images.py runs/mnist --out grid.png
    python scripts/sample_images.py runs/mnist --out sevens.png --classes 7 --num 16 --solver heun --steps 10 --guidance 2

CHECKPOINT is a ckpt-*.safetensors file or a run folder (its `latest`). The architecture is
rebuilt from the configuration stored in the checkpoint; the EMA weights are used unless
--weights raw. Same checkpoint, seed and settings give the same image whatever --batch-size, to float
rounding (kernels may sum in another order for another batch size: about 1e-7 on a pixel in [-1, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from imgflow.cli import (
    ArgumentParser,
    add_runtime_arguments,
    add_solver_option_arguments,
    apply_runtime_arguments,
    check_output_file,
    check_positive,
    solver_options_from_args,
)
from imgflow.config import CHOICES, ConfigError


def build_parser() -> ArgumentParser:
    """The options (the description is the module docstring, with its examples); main parses with it."""
    p = ArgumentParser(prog="sample_images.py", description=__doc__)
    p.add_argument("checkpoint", help="ckpt-*.safetensors file or run folder")
    p.add_argument("--out", required=True, help="PNG grid to write")
    p.add_argument("--solver", choices=CHOICES["sample.solver"], help="default: the run's sample.solver")
    p.add_argument("--steps", type=int, help="solver steps (default: the run's sample.num_steps)")
    p.add_argument("--time-grid", choices=CHOICES["sample.time_grid"], help="auto (the solver's), uniform or late (denser near the data)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale w (1 = plain conditional)")
    p.add_argument("--classes", help="comma-separated classes to cycle through, by index or name, e.g. 3 or 0,1,2 or Sneaker,Bag")
    p.add_argument("--num", "--num-images", dest="num", type=int,
                   default=64, help="number of images (default 64); "
                   "under torchrun write --num-images: torchrun takes --num for its own --numa-binding")
    p.add_argument("--nrow", type=int, default=None, help="images per grid row (default: one class per column)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    add_solver_option_arguments(p)
    p.add_argument("--weights", default="ema", help="ema, raw, or an extra EMA such as ema@0.99 (train.extra_ema_decays)")
    p.add_argument("--raw", help="also save the samples (in [-1, 1]) and labels to this .safetensors file")
    add_runtime_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    apply_runtime_arguments(args)
    check_output_file(args.out, "--out")
    check_output_file(args.raw, "--raw")
    check_positive(args, "steps", "num", "batch_size", "nrow")

    from imgflow.files import atomic_save_safetensors
    from imgflow.sampler import Sampler
    from imgflow.sharding import sharded_sampling

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes is not None else None
    if classes is not None and not classes:
        raise ConfigError(f"--classes must name at least one class, got {args.classes!r}")
    # under torchrun each process draws its share of the indices on its local rank's device; rank 0 writes
    with sharded_sampling() as shards:
        sampler = Sampler.from_checkpoint(args.checkpoint, args.weights, args.device)
        samples = sampler.sample(args.num, labels=classes, guidance=args.guidance, solver=args.solver, steps=args.steps,
                                 time_grid=args.time_grid, seed=args.seed, batch_size=args.batch_size, **solver_options_from_args(args),
                                 progress=not args.no_progress)
    if shards.rank != 0:
        return 0
    try:
        samples.save_grid(args.out, args.nrow)
        if args.raw:
            tensors = {"images": samples.images, **({"labels": samples.labels} if samples.labels is not None else {})}
            atomic_save_safetensors(Path(args.raw), tensors, {"checkpoint": args.checkpoint, "seed": str(args.seed)})
    except OSError as exc:
        raise ConfigError(f"cannot write {exc.filename or args.out}: {exc.strerror}; choose a writable --out/--raw path") from None
    s = samples.settings
    guidance = f", guidance {s.guidance:g}" if sampler.conditional else ""
    processes = f", {shards.world} processes" if shards.world > 1 else ""
    print(f"wrote {args.out} ({args.num} images, step {sampler.step}, {args.weights} weights) | solver {s.solver}, "
          f"{s.steps} steps, {s.time_grid} grid, NFE {samples.nfe}{guidance} | {samples.seconds:.1f} s{processes}")
    return 0
