"""Chapter 5, continued: how many network passes does sampling need? Four samplers, same noise.

Ancestral DDPM sampling takes all T = 1000 steps, adding fresh noise at each. DDIM (Song et al.
2021, eq. 12) visits S of them and, with eta = 0, adds none: x_T is mapped to an image
deterministically, along a first-order discretisation of the probability-flow ODE.
DPM-Solver++(2M) (Lu et al. 2022) solves the same ODE to second order, reusing the previous
step's prediction, so it needs fewer steps for the same accuracy; its stochastic form
(SDE-DPM-Solver++(2M)) adds fresh noise at every step, as ancestral sampling does, which
washes out part of the network's errors instead of carrying them to the end
(common/diffusion/samplers.py has the update rules).

This script takes the U-Net that ch5_ddpm trained, draws the same starting noises through
every sampler at each step count and through DDPM-1000, and scores every set with the classifier
FID that chapter uses (same classifier, same test set), so the only difference is the sampler.
A 1,000-sample FID moves by about 10% from one set of noises to another, so each sampler is
scored on --noise-sets independent sets (2,000 samples each by default) and both numbers are
reported: a gap counts only where both sets agree.

What to expect: DDIM's FID falls with S and levels off at or above DDPM-1000's; DPM-Solver++
reaches DDIM-50's level in fewer passes; the stochastic solver comes closest to DDPM-1000, with
a fiftieth of its passes on ch5_ddpm's default model (docs/results.md has the tables). The
DDIM authors' CIFAR-10 table (Song et al. 2021, Table 1) has the deterministic shape: FID 4.67
at S = 50 and 4.04 at S = 1000, against 3.17 for ancestral sampling over all 1000 steps.

Figures: fid_vs_steps.png (FID against network passes per image, one line per sampler) and
same_noise.png (ten starting noises, one row per sampler and step count).

Cost: every image of DDPM-1000 takes 1000 U-Net passes; the defaults (two sets of 2,000
images through DDPM-1000 and nine few-step samplers) take hours on a 2-core CPU. Pass fewer
--samples, or leave ddpm out of --samplers, for a quicker look.

Run:  python chapters/ch5_ddpm.py, then  python chapters/ch5_samplers.py [--samples 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` and `chapters` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common.quiet_tensorflow  # noqa: F401  (first: hides TF's native start-up log)

import numpy as np

from chapters.ch5_ddpm import build_unet
from common import figures
from common.cli import (
    OUTPUT_ROOT,
    make_parser,
    non_negative_float,
    parse,
    plural,
    positive_int,
    run_main,
    writable_dir_problem,
)
from common.data import check_name
from common.diffusion.samplers import SAMPLERS as KNOWN_SAMPLERS
from common.diffusion.samplers import describe, network_passes, sample
from common.diffusion.schedule import Schedule
from common.errors import UserError
from common.eval.classifier import FeatureClassifier, describe_fid
from common.results import read_run, write_metrics
from common.run import start
from common.scaling import to_unit_range
from common.summary import print_summary

CHAPTER = "ch5_samplers"
STEPS = (10, 20, 50)
BATCH = 500  # images per sampler call: the noise of batch i of set k comes from seed + 1000k + i
SET_STRIDE = 1000
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


def sampler_names(text: str) -> tuple[str, ...]:
    """The --samplers flag: 'dpmpp,ddim' -> ('ddim', 'dpmpp'), in KNOWN_SAMPLERS' order."""
    names = {part.strip() for part in text.split(",")}
    unknown = sorted(names - set(KNOWN_SAMPLERS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown sampler {unknown[0]!r}; choose from "
                                         f"{', '.join(KNOWN_SAMPLERS)}")
    return tuple(name for name in KNOWN_SAMPLERS if name in names)


def flags():
    """The command line: the shared flags and the chapter's own (see --help)."""
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None, batch_size=None,
                         dataset=None, trains=False,
                         quick_help=f"smoke test: {QUICK_SAMPLES} images per sampler and noise "
                                    "set, the two smallest --steps, scored against 512 test "
                                    "images")
    parser.add_argument("--run", type=Path, default=OUTPUT_ROOT / "ch5_ddpm",
                        help="the ch5_ddpm output folder whose unet_ema.keras is sampled "
                             "(default outputs/ch5_ddpm)")
    parser.add_argument("--dataset", default=None,
                        help="the test set to score against (default: the one the run was "
                             "trained on, from its metrics.json)")
    parser.add_argument("--samplers", type=sampler_names, default=KNOWN_SAMPLERS,
                        help="which to compare, comma-separated (default "
                             f"{','.join(KNOWN_SAMPLERS)}; ddpm always takes 1000 steps)")
    parser.add_argument("--samples", type=positive_int, default=2000,
                        help="images per sampler and noise set (default 2000)")
    parser.add_argument("--noise-sets", type=positive_int, default=2,
                        help="independent sets of starting noises, each scored on its own "
                             "(default 2)")
    parser.add_argument("--steps", type=step_counts, default=STEPS,
                        help="step counts of the few-step samplers (default "
                             f"{','.join(map(str, STEPS))})")
    parser.add_argument("--eta", type=non_negative_float, default=0.0,
                        help="DDIM's noise: 0 is deterministic, 1 the DDPM posterior's "
                             "(default 0)")
    return parser


def main(argv=None) -> int:
    parser = flags()
    args = parse(parser, argv)
    if args.samples < 2:
        parser.error("--samples must be at least 2: an FID compares covariances")
    if args.summary:
        return print_network(args.run)
    network, trained_on, schedule = load_run(args.run, quick=args.quick)
    name = args.dataset or trained_on
    try:
        check_name(name)
    except UserError as err:
        parser.error(f"--dataset: {err}")
    samples, steps = args.samples, args.steps
    if args.quick:
        samples, steps = min(samples, QUICK_SAMPLES), steps[:2]
    with start(args, dataset=name) as run:
        # The test set the samples are scored against: the data ch5_ddpm trained on. (The
        # judge is cached beside the run, unless that folder is read-only.)
        data = run.data
        shape = tuple(network.input_shape[0][1:])
        if shape != data.image_shape:
            raise UserError(f"{args.run} was trained on {shape} images but {name} has "
                            f"{data.image_shape}; pass the --dataset it was trained on")
        root = run.out.parent if writable_dir_problem(args.run.parent) else args.run.parent
        judge = FeatureClassifier.for_dataset(data, root)

        # Every sampler at every step count, from the same starting noises, on each noise
        # set: the time and the judge's FID and KID of each.
        runs = [(s, n) for s in args.samplers if s != "ddpm" for n in steps]
        if "ddpm" in args.samplers:
            runs.append(("ddpm", schedule.steps))
        results, shown = compare(network, judge, data, schedule, runs, samples=samples,
                                 noise_sets=args.noise_sets, seed=run.seed, eta=args.eta)
        print("\n" + table(results))

        # FID against network passes, and the same noises through every sampler.
        _figures(results, shown, samples, args.noise_sets, run.out)
        write_metrics(run, judge=judge, models=results,
                      extra={"run": str(args.run), "eta": args.eta,
                             "noise_sets": args.noise_sets})
    print(run.closing(f"\nFigures and metrics.json are in {run.out}/ "
                      "(start with fid_vs_steps.png)"))
    return 0


def _figures(results, shown, samples: int, noise_sets: int, out: Path) -> None:
    lines, passes = {}, {}
    for record in results.values():
        if record["sampler"] != "ddpm":
            label = record["label"].rsplit("-", 1)[0]
            lines.setdefault(label, []).append(record["classifier_fid"])
            passes.setdefault(label, []).append(record["network_passes"])
    reference = results.get("ddpm_1000", {}).get("classifier_fid")
    figures.curves(lines, out / "fid_vs_steps.png", x=passes, logx=True,
                   xlabel="network passes per image",
                   ylabel=f"classifier FID ({samples:,} samples, mean of "
                          f"{plural(noise_sets, 'set')})",
                   references={"DDPM-1000": reference, "DDPM-1000 + 10%": 1.1 * reference}
                   if reference else None,
                   title="Fewer passes: each sampler from the same noises")
    figures.image_grid(np.concatenate(shown), out / "same_noise.png", ncols=len(shown[0]),
                       row_labels=[r["label"] for r in results.values()],
                       suptitle="The same starting noise through each sampler")


def compare(network, judge, data, schedule: Schedule, runs, *, samples: int, noise_sets: int,
            seed: int, eta: float):
    """Draw `samples` images with every (sampler, steps) of `runs`, on each of `noise_sets`
    sets of starting noises (batch i of set k starts from seed + 1000 k + i, the same for
    every sampler); time and score each set. Returns {sampler_steps: numbers} and the first
    SHOWN images of each sampler's first set."""
    results, shown = {}, []
    for name, steps in runs:
        label, passes = describe(name, steps), network_passes(schedule, name, steps)
        extra = {"eta": eta} if name == "ddim" else {}
        sets = []
        for k in range(noise_sets):
            print(f"\n{label}, noise set {k + 1}: drawing {samples:,} images ({passes} "
                  "network passes each)", flush=True)
            began = time.perf_counter()
            images = np.concatenate([
                sample(network, schedule, (min(BATCH, samples - i), *data.image_shape),
                       sampler=name, sampling_steps=steps,
                       seed=seed + SET_STRIDE * k + i // BATCH, **extra)
                for i in range(0, samples, BATCH)])
            seconds = time.perf_counter() - began
            images = to_unit_range(images)
            sets.append({**judge.fid_report(data, images), "seconds": round(seconds, 1)})
            if k == 0:
                shown.append(images[:SHOWN])
            print(f"{label}: {describe_fid(sets[-1])} in {seconds:.0f} s")
        fids = [s["classifier_fid"] for s in sets]
        results[f"{name}_{steps}"] = {
            "sampler": name, "label": label, "sampling_steps": steps, "network_passes": passes,
            "classifier_fid": round(float(np.mean(fids)), 3), "fid_by_noise_set": fids,
            "fid_ci95_by_noise_set": [s["fid_ci95"] for s in sets],
            "kid_by_noise_set": [s["kid"] for s in sets],
            "kid_ci95_by_noise_set": [s["kid_ci95"] for s in sets],
            "fid_floor": sets[0]["fid_floor"], "fid_samples": samples,
            "samples": samples, "judge": judge.checksum,
            "seconds": round(float(np.mean([s["seconds"] for s in sets])), 1)}
    return against_ddpm(results), shown


def against_ddpm(results: dict) -> dict:
    """Where DDPM-1000 ran, each sampler's FID on every noise set as a multiple of DDPM-1000's
    on the same set, and its time as a share of DDPM-1000's."""
    reference = results.get("ddpm_1000")
    for record in results.values() if reference else ():
        record["fid_vs_ddpm_1000_by_noise_set"] = [
            round(f / r, 3) for f, r in zip(record["fid_by_noise_set"],
                                            reference["fid_by_noise_set"])]
        record["time_vs_ddpm_1000"] = round(record["seconds"] / reference["seconds"], 4)
    return results


def print_network(run_dir: Path) -> int:
    """--summary: the trained U-Net of the run, or (with none trained yet) a fresh one of
    ch5_ddpm's default shape."""
    if (run_dir / "unet_ema.keras").exists():
        print_summary(load_run(run_dir)[0])
    else:
        print(f"{run_dir / 'unet_ema.keras'} does not exist yet; the U-Net that "
              "chapters/ch5_ddpm.py builds by default, untrained:")
        print_summary(build_unet(attention=False, name="unet_ema"))
    return 0


def load_run(run_dir: Path, quick: bool = True):
    """The EMA U-Net that ch5_ddpm saved in `run_dir`, the dataset it trained on and its noise
    schedule (runs that record none used the linear one); one clear error when the folder
    holds no such run, or a damaged or class-conditional one (a --quick run of ch5_ddpm
    serves only a --quick run of this chapter)."""
    earlier = read_run(run_dir, "ch5_ddpm", allow_quick=quick,
                       remedy=f"run python chapters/ch5_ddpm.py --out {run_dir} first")
    network = earlier.model("unet_ema.keras")
    if len(network.inputs) != 2:
        raise UserError(f"{run_dir / 'unet_ema.keras'}: a class-conditional U-Net; this script "
                        "compares the unconditional samplers of ch5_ddpm")
    kind = earlier.number("models", "ddpm", "schedule", default="linear")
    return network, earlier.dataset, Schedule(kind=kind)


def table(results: dict) -> str:
    """A plain-text table, one row per sampler: the FID of each noise set, and (where DDPM-1000
    ran) each set's FID as a multiple of DDPM-1000's on the same set."""
    lines = [f"{'sampler':<26} {'passes':>6} {'FID by noise set':>18} {'x DDPM-1000':>14} "
             f"{'seconds':>8}"]
    for r in results.values():
        fids = " / ".join(f"{f:.2f}" for f in r["fid_by_noise_set"])
        ratios = " / ".join(f"{x:.2f}" for x in r.get("fid_vs_ddpm_1000_by_noise_set", []))
        lines.append(f"{r['label']:<26} {r['network_passes']:>6} {fids:>18} {ratios:>14} "
                     f"{r['seconds']:>8.1f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_main(main))
