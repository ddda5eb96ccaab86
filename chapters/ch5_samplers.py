"""Chapter 5, continued: how many steps does sampling need? DDIM against DDPM-1000.

Ancestral DDPM sampling takes all T = 1000 steps, adding fresh noise at each. DDIM (Song et
al. 2021, eq. 12) visits S of them and, with eta = 0, adds none: x_T is mapped to an image
deterministically, along a discretisation of the probability-flow ODE that gets finer as S
grows. This script takes the U-Net that ch5_ddpm trained, draws the same N starting noises
through DDPM-1000 and through DDIM at several S, and scores every set with the classifier FID
that chapter uses (same classifier, same test set), so the only difference is the sampler.

What to expect: FID falls quickly with S and then levels off above DDPM-1000's. The
deterministic path has no fresh noise to wash out the network's errors, so even a fine
ODE solve keeps them. The DDIM authors' CIFAR-10 table (Song et al. 2021, Table 1) has the
same shape: FID 4.67 at S = 50 and 4.04 at S = 1000, against 3.17 for ancestral sampling
over all 1000 steps with sigma_t^2 = beta_t.

Figures: fid_vs_steps.png (FID against network passes per image) and same_noise.png (ten
starting noises, one row per sampler). The same noise gives the same image at every S once
S is large enough, and a different one under DDPM, whose path is random.

Run:  python chapters/ch5_ddpm.py, then  python chapters/ch5_samplers.py [--samples 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` and `chapters` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common.quiet_tensorflow  # noqa: F401  (first: hides TF's native start-up log)

import keras
import numpy as np

from chapters.ch5_ddpm import build_unet
from common import figures
from common.cli import (
    OUTPUT_ROOT,
    make_parser,
    non_negative_float,
    parse,
    positive_int,
    run,
    writable_dir_problem,
)
from common.data import check_name
from common.diffusion.samplers import sample_ddim, sample_ddpm
from common.diffusion.schedule import Schedule
from common.errors import UserError
from common.eval.classifier import FeatureClassifier, describe_fid
from common.results import write_metrics
from common.scaling import to_unit_range
from common.summary import print_summary
from common.training import prepare

CHAPTER = "ch5_samplers"
STEPS = (10, 20, 50, 100, 200)
BATCH = 500  # images per sampler call: the noise of batch i comes from seed + i
SHOWN = 10  # starting noises in same_noise.png
QUICK_SAMPLES = 2 * SHOWN


def step_counts(text: str) -> tuple[int, ...]:
    """The --steps flag: '50,10,20' -> (10, 20, 50), each between 1 and T = 1000."""
    try:
        counts = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole "
                                         "numbers") from None
    if counts[0] < 1 or counts[-1] > 1000:
        raise argparse.ArgumentTypeError(f"step counts must lie between 1 and 1000, got "
                                         f"{text!r}")
    return counts


def main(argv=None) -> int:
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None, batch_size=None,
                         dataset=None, trains=False,
                         quick_help=f"smoke test: {QUICK_SAMPLES} images per sampler, the two "
                                    "smallest --steps and DDPM-1000, scored against 512 test "
                                    "images")
    parser.add_argument("--run", type=Path, default=OUTPUT_ROOT / "ch5_ddpm",
                        help="the ch5_ddpm output folder whose unet_ema.keras is sampled "
                             "(default outputs/ch5_ddpm)")
    parser.add_argument("--dataset", default=None,
                        help="the test set to score against (default: the one the run was "
                             "trained on, from its metrics.json)")
    parser.add_argument("--samples", type=positive_int, default=1000,
                        help="images per sampler (default 1000; DDPM-1000 takes minutes per "
                             "hundred on a CPU)")
    parser.add_argument("--steps", type=step_counts, default=STEPS,
                        help=f"DDIM step counts (default {','.join(map(str, STEPS))})")
    parser.add_argument("--eta", type=non_negative_float, default=0.0,
                        help="DDIM's noise: 0 is deterministic, 1 the DDPM posterior's "
                             "(default 0)")
    args = parse(parser, argv)
    if args.samples < 2:
        parser.error("--samples must be at least 2: an FID compares covariances")
    if args.summary:
        return print_network(args.run)
    started = time.perf_counter()
    network = load_network(args.run)
    name = args.dataset or trained_on(args.run)
    try:
        check_name(name)
    except UserError as err:
        parser.error(f"--dataset: {err}")
    if args.quick:
        args.samples, args.steps = min(args.samples, QUICK_SAMPLES), args.steps[:2]
    data = prepare(args, images=0, dataset=name).data
    shape = tuple(network.input_shape[0][1:])
    if shape != data.image_shape:
        raise UserError(f"{args.run} was trained on {shape} images but {name} has "
                        f"{data.image_shape}; pass the --dataset it was trained on")
    # The classifier copy that scored the run (cached beside it), unless that folder is
    # read-only: then one trained and cached beside --out.
    root = args.out.parent if writable_dir_problem(args.run.parent) else args.run.parent
    judge = FeatureClassifier.for_dataset(data, root)
    results, shown = compare(network, judge, data, args)
    print("\n" + table(results))
    ddim = [r for k, r in results.items() if k.startswith("ddim")]
    reference = results["ddpm_1000"]["classifier_fid"]
    figures.curves({f"DDIM, eta = {args.eta:g}": [r["classifier_fid"] for r in ddim]},
                   args.out / "fid_vs_steps.png", x=[r["network_passes"] for r in ddim],
                   logx=True, xlabel="network passes per image (sampling steps)",
                   ylabel=f"classifier FID ({args.samples} samples)",
                   references={"DDPM-1000": reference, "DDPM-1000 + 20%": 1.2 * reference},
                   title="Fewer steps: DDIM against ancestral DDPM, same noise")
    figures.image_grid(np.concatenate(shown), args.out / "same_noise.png",
                       ncols=len(shown[0]),
                       row_labels=[k.replace("_", "-").upper() for k in results],
                       suptitle="The same starting noise through each sampler")
    write_metrics(args.out, chapter=CHAPTER, data=data, args=args, judge=judge,
                  wall_seconds=time.perf_counter() - started, models=results,
                  extra={"run": str(args.run), "eta": args.eta})
    print(f"\nFigures and metrics.json are in {args.out}/ (start with fid_vs_steps.png)")
    return 0


def compare(network, judge, data, args):
    """Draw args.samples images with DDIM at each of args.steps and with DDPM-1000, from the
    same noises (batch i of every sampler starts from seed + i); time and score each set.
    Returns {sampler: numbers} and the first SHOWN images of each."""
    shape = data.image_shape
    samplers = [(f"ddim_{s}", s, lambda n, seed, s=s: sample_ddim(
        network, Schedule(), (n, *shape), sampling_steps=s, eta=args.eta, seed=seed))
        for s in args.steps]
    samplers.append(("ddpm_1000", 1000, lambda n, seed: sample_ddpm(
        network, Schedule(), (n, *shape), seed=seed)))
    results, shown = {}, []
    for key, passes, sampler in samplers:
        print(f"\n{key}: drawing {args.samples} images ({passes} network passes each)",
              flush=True)
        began = time.perf_counter()
        images = np.concatenate([sampler(min(BATCH, args.samples - i), args.seed + i // BATCH)
                                 for i in range(0, args.samples, BATCH)])
        seconds = time.perf_counter() - began
        images = to_unit_range(images)
        scored = judge.fid_report(data, images, seed=args.seed)
        results[key] = {**scored, "network_passes": passes, "seconds": round(seconds, 1),
                        "samples": args.samples}
        shown.append(images[:SHOWN])
        print(f"{key}: {describe_fid(scored)} in {seconds:.0f} s")
    reference = results["ddpm_1000"]
    for record in results.values():
        record["fid_vs_ddpm_1000"] = round(record["classifier_fid"]
                                           / reference["classifier_fid"], 3)
        record["time_vs_ddpm_1000"] = round(record["seconds"] / reference["seconds"], 4)
    return results, shown


def print_network(run_dir: Path) -> int:
    """--summary: the trained U-Net of the run, or (with none trained yet) a fresh one of
    ch5_ddpm's default shape."""
    if (run_dir / "unet_ema.keras").exists():
        print_summary(load_network(run_dir))
    else:
        print(f"{run_dir / 'unet_ema.keras'} does not exist yet; the U-Net that "
              "chapters/ch5_ddpm.py builds by default, untrained:")
        print_summary(build_unet(attention=False, name="unet_ema"))
    return 0


def load_network(run_dir: Path):
    """The EMA U-Net that ch5_ddpm saved, with a clear error when there is none."""
    path = run_dir / "unet_ema.keras"
    if not path.exists():
        raise UserError(f"{path}: no trained U-Net; run python chapters/ch5_ddpm.py "
                        f"--out {run_dir} first")
    try:
        network = keras.saving.load_model(path)
    except Exception as err:  # a truncated or foreign file: say which, not a traceback
        raise UserError(f"{path}: not a loadable Keras model ({type(err).__name__}); "
                        "run chapters/ch5_ddpm.py again") from None
    if len(network.inputs) != 2:
        raise UserError(f"{path}: a class-conditional U-Net; this script compares the "
                        "unconditional samplers of ch5_ddpm")
    return network


def trained_on(run_dir: Path) -> str:
    """The dataset name recorded in the run's metrics.json."""
    try:
        return json.loads((run_dir / "metrics.json").read_text())["dataset"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{run_dir}/metrics.json does not say which data the run used; "
                        "pass --dataset") from None


def table(results: dict) -> str:
    """A plain-text table, one row per sampler."""
    lines = [f"{'sampler':<10} {'passes':>6} {'FID':>7} {'x DDPM':>7} {'seconds':>8} "
             f"{'x DDPM time':>11}"]
    for key, r in results.items():
        lines.append(f"{key:<10} {r['network_passes']:>6} {r['classifier_fid']:>7.2f} "
                     f"{r['fid_vs_ddpm_1000']:>7.2f} {r['seconds']:>8.1f} "
                     f"{r['time_vs_ddpm_1000']:>11.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run(main))
