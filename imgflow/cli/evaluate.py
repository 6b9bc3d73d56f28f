"""Evaluate a checkpoint offline: classifier FID, class accuracy per guidance scale, NLL in bits/dim.

    python scripts/evaluate.py runs/mnist --classifier runs/classifiers/mnist-28.safetensors \\
        --data-root ../shared/data --json runs/mnist/eval.json

For every guidance scale w (class-conditional models; unconditional ones use w = 1) it draws
--num samples with balanced labels and per-sample seeds and reports FID(clf) (Frechet distance
of the classifier's features of the samples and of the held-out split, cached next to the
classifier) and class accuracy; then the FID of --num real training images (the floor at this
sample size) and the NLL in bits/dim of --bpd-images held-out images. --inception adds Inception
FID when torch-fidelity and its weights are installed. CHECKPOINT is a file or a run folder.

An autoencoder's checkpoint (model.arch = "autoencoder") is scored by its reconstructions of --num
held-out images instead: PSNR and reconstruction FID(clf), the floor of any latent model built on it.
"""

from __future__ import annotations

from collections.abc import Sequence

from imgflow.cli import (
    ArgumentParser,
    add_runtime_arguments,
    add_solver_option_arguments,
    apply_runtime_arguments,
    check_output_file,
    check_positive,
    parse_floats,
    say,
    solver_options_from_args,
)
from imgflow.config import CHOICES, ConfigError


def is_autoencoder_checkpoint(where: str) -> bool:
    """Whether a checkpoint (file or run folder) holds an autoencoder (scored by PSNR and reconstruction FID)."""
    from imgflow.checkpoint import load_checkpoint
    from imgflow.nn.backbones import backbone

    record = load_checkpoint(where, read_tensors=False).record
    return record is not None and backbone(record.arch).kind == "autoencoder"


def build_parser() -> ArgumentParser:
    """The options (the description is the module docstring, with its examples); main parses with it."""
    from imgflow.core import SOLVERS
    from imgflow.evaluation.report import NLL_LABELS, NLLSettings

    p = ArgumentParser(prog="evaluate.py", description=__doc__)
    p.add_argument("checkpoint", help="ckpt-*.safetensors file or run folder")
    p.add_argument("--classifier", required=True, help="classifier file from scripts/train_classifier.py")
    p.add_argument("--num", "--num-images", dest="num", type=int,
                   default=500, help="samples per guidance scale (default 500); "
                   "under torchrun write --num-images: torchrun takes --num for its own --numa-binding")
    p.add_argument("--solver", choices=CHOICES["sample.solver"], help="default: the run's sample.solver")
    p.add_argument("--steps", type=int, help="solver steps (default: the run's sample.num_steps)")
    p.add_argument("--time-grid", choices=CHOICES["sample.time_grid"], help="auto, uniform or late")
    p.add_argument("--guidance", help="comma-separated guidance scales, e.g. 1,2,3 (default: 1 and the run's own)")
    add_solver_option_arguments(p)
    nll = NLLSettings()  # the project's likelihood defaults (imgflow.core.likelihood.LikelihoodSettings)
    p.add_argument("--bpd-images", type=int, default=nll.images, help=f"held-out images for the NLL (0 = skip; default {nll.images})")
    p.add_argument("--bpd-solver", default=nll.solver, choices=[n for n, s in SOLVERS.items() if not (s.stochastic or s.flow_map)],
                   help=f"ODE solver of the NLL (default {nll.solver}: learned fields are stiff near the data)")
    p.add_argument("--bpd-tol", type=float, default=nll.rtol, help=f"rtol = atol of the adaptive NLL solver (default {nll.rtol:g})")
    p.add_argument("--bpd-steps", type=int, default=nll.num_steps, help=f"steps of a fixed-step NLL solver (default {nll.num_steps})")
    p.add_argument("--bpd-grid-power", type=float, default=nll.grid_power,
                   help=f"fixed-step NLL grid power (steps shrink towards the data; default {nll.grid_power:g})")
    p.add_argument("--bpd-probes", type=int, default=nll.num_probes, help=f"Hutchinson probes per image (default {nll.num_probes})")
    p.add_argument("--bpd-label", choices=NLL_LABELS, default=nll.label, help="score p(x) (null label) or p(x | y)")
    p.add_argument("--no-baseline", action="store_true", help="skip the FID of real training images")
    p.add_argument("--inception", action="store_true", help="also Inception FID (needs torch-fidelity and its weights)")
    p.add_argument("--inception-weights", help="InceptionV3 weights file (torch-fidelity's .pth)")
    p.add_argument("--data-root", help="dataset folder (default: the run's data.data_root)")
    p.add_argument("--download", action="store_true", help="allow torchvision to download the dataset")
    p.add_argument("--cache-dir", help="folder for the reference statistics (default: next to the classifier)")
    p.add_argument("--json", help="write the numbers to this JSON file")
    p.add_argument("--reconstructions", help="an autoencoder: write 16 held-out images above their reconstructions to this PNG")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--weights", default="ema", help="ema, raw, or an extra EMA such as ema@0.99 (train.extra_ema_decays)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_runtime_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from imgflow.evaluation.report import NLLSettings, evaluate_checkpoint

    args = build_parser().parse_args(argv)
    apply_runtime_arguments(args)
    check_positive(args, "steps", "batch_size")
    check_output_file(args.json, "--json")
    check_output_file(args.reconstructions, "--reconstructions")

    from imgflow.files import write_json

    data = {"download": args.download, **({"data_root": args.data_root} if args.data_root else {})}
    if is_autoencoder_checkpoint(args.checkpoint):
        from imgflow.evaluation.autoencoder import evaluate_autoencoder

        report = evaluate_autoencoder(args.checkpoint, args.classifier, num=args.num, data_overrides=data, cache_dir=args.cache_dir,
                                      device=args.device or "cpu", baseline=not args.no_baseline, figure=args.reconstructions,
                                      log=None if args.quiet else say)
        print("\n".join(report.lines()))
        if args.json:
            write_json(args.json, report.to_dict())
        for path in filter(None, (args.json, args.reconstructions)):
            print(f"wrote {path}")
        return 0
    nll = NLLSettings(solver=args.bpd_solver, num_steps=args.bpd_steps, rtol=args.bpd_tol, atol=args.bpd_tol, grid_power=args.bpd_grid_power,
                      num_probes=args.bpd_probes, images=args.bpd_images, label=args.bpd_label)
    from imgflow.sharding import sharded_sampling

    with sharded_sampling() as shards:  # under torchrun each process draws its share of the samples; rank 0 reports
        main_process = shards.rank == 0
        report = evaluate_checkpoint(
            args.checkpoint, args.classifier, num=args.num, guidance=parse_floats(args.guidance, "--guidance") if args.guidance else None,
            solver=args.solver, steps=args.steps, time_grid=args.time_grid, seed=args.seed, **solver_options_from_args(args),
            batch_size=args.batch_size, weights=args.weights, data_overrides=data, cache_dir=args.cache_dir, nll=nll,
            baseline=not args.no_baseline, inception=args.inception, inception_weights=args.inception_weights, device=args.device,
            log=None if args.quiet or not main_process else say,
        )
    if not main_process:
        return 0
    print("\n".join(report.lines()))
    if args.json:
        try:
            write_json(args.json, report.to_dict())
        except OSError as exc:
            raise ConfigError(f"cannot write {args.json}: {exc.strerror}; choose a writable --json path") from None
        print(f"wrote {args.json}")
    print(f"total {report.seconds:.0f} s")
    return 0
