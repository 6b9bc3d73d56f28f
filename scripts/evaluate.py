#!/usr/bin/env python
"""Evaluate a checkpoint offline: classifier FID, class accuracy per guidance scale, NLL in bits/dim.

    python scripts/evaluate.py runs/mnist --classifier runs/classifiers/mnist-28.safetensors \\
        --data-root ../shared/data --json runs/mnist/eval.json

For every guidance scale w (class-conditional models; unconditional ones use w = 1) it draws
--num samples with balanced labels and per-sample seeds, and reports
  * FID(clf): Fréchet distance between Gaussian fits of the classifier's 128-d features of the
    samples and of the whole test split (cached next to the classifier after the first run);
  * class accuracy: how often the classifier assigns the sample the label it was drawn for.
It also reports the FID of --num real training images (the floor a perfect model reaches at this
sample size) and the negative log-likelihood in bits/dim of --bpd-images test images
(dequantised, probability-flow ODE, Hutchinson divergence). --inception adds Inception FID when
torch-fidelity and its weights are installed. CHECKPOINT is a ckpt-*.safetensors file or a run folder.
"""

from __future__ import annotations

import argparse
import sys
import time

from imgflow.cli import ArgumentParser, add_runtime_arguments, apply_runtime_arguments, check_output_file, run_cli
from imgflow.config import CHOICES, ConfigError


def main() -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="ckpt-*.safetensors file or run folder")
    p.add_argument("--classifier", required=True, help="classifier file from scripts/train_classifier.py")
    p.add_argument("--num", type=int, default=500, help="samples per guidance scale for FID and class accuracy (default 500)")
    p.add_argument("--solver", choices=CHOICES["sample.solver"], help="default: the run's sample.solver")
    p.add_argument("--steps", type=int, help="solver steps (default: the run's sample.num_steps)")
    p.add_argument("--time-grid", choices=CHOICES["sample.time_grid"], help="uniform or late")
    p.add_argument("--guidance", default=None,
                   help="comma-separated guidance scales, e.g. 1,2,3 (default: 1 and the run's sample.guidance_scale; 1 for unconditional models)")
    p.add_argument("--sde-epsilon", type=float, help="noise level of the euler_maruyama sampler")
    p.add_argument("--bpd-images", type=int, default=100, help="test images for the NLL (0 = skip; default 100)")
    p.add_argument("--bpd-solver", default="adaptive", choices=("euler", "midpoint", "heun", "rk4", "adaptive"),
                   help="ODE solver of the NLL (default adaptive: learned fields are stiff near the data)")
    p.add_argument("--bpd-tol", type=float, default=1e-4, help="rtol = atol of the adaptive NLL solver (default 1e-4)")
    p.add_argument("--bpd-steps", type=int, default=16, help="steps of a fixed-step NLL solver (default 16)")
    p.add_argument("--bpd-grid-power", type=float, default=3.0,
                   help="fixed-step NLL grid: steps shrink towards the data end as power_time_grid(power) (default 3)")
    p.add_argument("--bpd-probes", type=int, default=1, help="Hutchinson probes per image (default 1)")
    p.add_argument("--bpd-label", choices=("null", "true"), default="null",
                   help="score p(x) with the null label (default) or p(x | y) with the true label")
    p.add_argument("--no-baseline", action="store_true", help="skip the FID of real training images")
    p.add_argument("--inception", action="store_true", help="also Inception FID (needs torch-fidelity and its weights)")
    p.add_argument("--inception-weights", help="InceptionV3 weights file (torch-fidelity's .pth)")
    p.add_argument("--data-root", help="dataset folder (default: the run's data.data_root)")
    p.add_argument("--download", action="store_true", help="allow torchvision to download the dataset")
    p.add_argument("--cache-dir", help="folder for the reference statistics (default: next to the classifier)")
    p.add_argument("--json", help="write the numbers to this JSON file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--weights", choices=("ema", "raw"), default="ema")
    add_runtime_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args()
    apply_runtime_arguments(args)

    from imgflow.evaluation.fid import inception_status, reference_statistics
    from imgflow.evaluation.runner import (
        draw_samples,
        image_nll,
        load_flow_model,
        load_matching_classifier,
        parse_floats,
        real_baseline_fid,
        score_samples,
        write_json,
    )

    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    # --- everything that can be wrong is checked before the work starts ---
    if args.bpd_tol <= 0 or args.bpd_grid_power <= 0:
        raise ConfigError("--bpd-tol and --bpd-grid-power must be > 0")
    for name in ("num", "steps", "batch_size", "bpd_steps", "bpd_probes"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.num < 2:
        raise ConfigError(f"--num must be >= 2 for a covariance, got {args.num}")
    if args.bpd_images < 0:
        raise ConfigError(f"--bpd-images must be >= 0, got {args.bpd_images}")
    check_output_file(args.json, "--json")
    if args.inception:
        message = inception_status(args.inception_weights)
        if message is not None:
            raise ConfigError(message)

    from imgflow.data import load_image_data
    from imgflow.factory import is_class_conditional
    from imgflow.sampling import SamplerSettings

    t_start = time.perf_counter()
    model, cfg, ckpt = load_flow_model(args.checkpoint, args.weights, args.device)
    classifier, info = load_matching_classifier(args.classifier, cfg, args.device)
    conditional = is_class_conditional(cfg)
    default_guidance = sorted({1.0, float(cfg.sample.guidance_scale)}) if conditional else [1.0]
    guidance = parse_floats(args.guidance, "--guidance") if args.guidance else default_guidance
    if not conditional and guidance != [1.0]:
        raise ConfigError(f"--guidance {args.guidance} needs a class-conditional model; {ckpt.path.name} is unconditional (use --guidance 1)")
    settings = SamplerSettings.from_config(cfg)
    for name, value in (("solver", args.solver), ("num_steps", args.steps), ("time_grid", args.time_grid),
                        ("sde_epsilon", args.sde_epsilon)):
        if value is not None:
            setattr(settings, name, value)
    data_root = args.data_root or cfg.data.data_root
    dkw = dict(image_size=cfg.data.image_size, resize=cfg.data.resize, download=args.download)

    ref = reference_statistics(info.path, classifier.features, cfg.data.dataset, data_root, cfg.data.image_size, "test",
                               resize=cfg.data.resize, download=args.download, cache_dir=args.cache_dir,
                               device=args.device, log=say)
    say(f"reference statistics: {ref.stats.n} test images ({'computed' if ref.computed else 'cached'}: {ref.cache_path})")
    test = load_image_data(cfg.data.dataset, data_root, train=False, **dkw) if args.bpd_images > 0 or args.inception else None

    report: dict = {
        "checkpoint": str(ckpt.path), "step": ckpt.step, "weights": args.weights, "dataset": cfg.data.dataset,
        "image_size": cfg.data.image_size, "class_conditional": conditional,
        "sampler": {"solver": settings.solver, "num_steps": settings.num_steps, "time_grid": settings.time_grid,
                    "sde_epsilon": settings.sde_epsilon if settings.solver == "euler_maruyama" else None,
                    "rtol": settings.rtol if settings.solver == "adaptive" else None,
                    "atol": settings.atol if settings.solver == "adaptive" else None, "seed": args.seed},
        "classifier": {"path": str(info.path), "dataset": info.dataset, "test_accuracy": info.test_accuracy},
        "reference": {"split": "test", "num_images": ref.stats.n, "cache": str(ref.cache_path), "cached": not ref.computed},
        "num_samples": args.num, "results": [],
    }

    rows = []
    first_samples = None
    for w in guidance:
        settings.guidance_scale = w
        say(f"sampling {args.num} images at guidance {w:g} ({settings.solver}, {settings.num_steps} steps)...")
        samples = draw_samples(model, cfg, settings, args.num, args.seed, args.batch_size, args.device)
        first_samples = first_samples if first_samples is not None else samples
        quality = score_samples(samples, classifier, ref.stats, args.device)
        row = {"guidance_scale": w if conditional else None, "nfe": samples.nfe, "sampling_seconds": samples.seconds,
               **quality.to_dict()}
        report["results"].append(row)
        rows.append(row)

    if not args.no_baseline:
        train = load_image_data(cfg.data.dataset, data_root, train=True, **dkw)
        report["fid_real_train_images"] = real_baseline_fid(classifier, train.images, ref.stats, args.num, args.seed, args.device)

    if args.inception:
        from imgflow.evaluation.fid import inception_fid

        say("Inception FID ...")
        assert test is not None and first_samples is not None
        report["inception_fid"] = {"value": inception_fid(test.images, first_samples.images.clamp(-1, 1), args.inception_weights, args.device),
                                   "guidance_scale": guidance[0] if conditional else None, "reference": "test split"}

    if args.bpd_images > 0:
        assert test is not None
        n = min(args.bpd_images, len(test))
        how = f"tol {args.bpd_tol:g}" if args.bpd_solver == "adaptive" else f"{args.bpd_steps} steps, grid power {args.bpd_grid_power:g}"
        say(f"NLL of {n} test images ({args.bpd_solver}, {how}, {args.bpd_probes} Hutchinson probe(s))...")
        nll = image_nll(model, cfg, test.images[:n], test.labels[:n], args.bpd_label, args.bpd_solver, args.bpd_steps,
                        args.bpd_probes, seed=args.seed, batch_size=min(args.batch_size, 50), rtol=args.bpd_tol,
                        atol=args.bpd_tol, grid_power=args.bpd_grid_power, device=args.device, log=None if args.quiet else say)
        report["nll"] = nll.to_dict()
    report["seconds"] = time.perf_counter() - t_start

    # --- print ---
    print(f"checkpoint {ckpt.path} (step {ckpt.step}, {args.weights} weights) | {cfg.data.dataset} {cfg.data.image_size}x{cfg.data.image_size}, "
          f"{'class-conditional' if conditional else 'unconditional'}")
    print(f"sampler {settings.solver}, {settings.num_steps} steps, {settings.time_grid} grid, NFE {rows[0]['nfe']} | {args.num} samples per row, seed {args.seed}")
    print(f"classifier {info.path} (test accuracy {info.test_accuracy:.4f}) | reference: test split, {ref.stats.n} images"
          f"{' (cached)' if not ref.computed else ''}")
    header = f"{'guidance':>8}  {'FID(clf)':>9}  {'class acc':>9}  {'sampling':>8}"
    print(header)
    for row in rows:
        w = f"{row['guidance_scale']:g}" if row["guidance_scale"] is not None else "-"
        acc = f"{row['class_accuracy']:.4f}" if "class_accuracy" in row else "-"
        print(f"{w:>8}  {row['fid']:9.3f}  {acc:>9}  {row['sampling_seconds']:7.0f}s")
    if "fid_real_train_images" in report:
        print(f"real training images ({args.num}) vs test: FID(clf) {report['fid_real_train_images']:.3f}  (the floor at this sample size)")
    if "inception_fid" in report:
        print(f"Inception FID {report['inception_fid']['value']:.2f} (first guidance scale vs the test split)")
    if "nll" in report:
        nll = report["nll"]
        how = f"tol {args.bpd_tol:g}" if args.bpd_solver == "adaptive" else f"{args.bpd_steps} steps"
        print(f"NLL {nll['bits_per_dim']:.4f} +- {nll['bits_per_dim_stderr']:.4f} bits/dim ({nll['num_images']} test images, "
              f"{args.bpd_solver} {how}, NFE {nll['nfe']}, {args.bpd_probes} probe(s), label {args.bpd_label}) | {nll['seconds']:.0f} s")
    if any(row["nonfinite_samples"] for row in rows):
        print("warning: some samples were not finite (counted in nonfinite_samples; scored as clamped zeros)")
    if args.json:
        try:
            write_json(args.json, report)
        except OSError as exc:
            raise ConfigError(f"cannot write {args.json}: {exc.strerror}; choose a writable --json path") from None
        print(f"wrote {args.json}")
    print(f"total {report['seconds']:.0f} s")
    return 0



if __name__ == "__main__":
    run_cli(main)
