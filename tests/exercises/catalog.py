"""演習 (exercises) for chapters 2-5, each with a check that tells whether the change showed.

Each exercise changes one thing in a chapter (a flag), runs it into its own folder beside an
unchanged reference run with the same settings, and checks the effect the lesson predicts
from the two runs' metrics.json. Run the two commands an exercise prints, then its check:

    python -m tests.exercises.catalog                 # every exercise and its commands
    python -m tests.exercises.catalog ch2_vae_kl0     # the verdict, in Japanese and English
    python -m pytest tests/exercises -m exercise      # every exercise as a test

`--run DIR` checks another folder in place of the changed run: given the unchanged run, the
check must fail (docs/results.md shows both). The checks compare like with like (the same
seed, data and epochs) and count an effect only when it is larger than its 95% interval, or
when it crosses a line the theory draws (N(0, I) keeps 99% of |z| under 2.58).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDER = Path("outputs") / "exercises"  # relative to the project root, like every output


@dataclass(frozen=True)
class Verdict:
    passed: bool
    en: str
    ja: str

    def __str__(self) -> str:
        mark = "OK" if self.passed else "NOT YET"
        return f"{mark}: {self.ja}\n{' ' * (len(mark) + 2)}{self.en}"


@dataclass(frozen=True)
class Exercise:
    key: str          # also the folder of the changed run
    chapter: str
    title_ja: str
    title_en: str
    change: str       # the flags that make the change
    settings: str     # the flags both runs share (a short run that still shows the effect)
    reference: str    # the folder of the unchanged run (shared by exercises with one setting)
    check: Callable[[dict, dict], Verdict]
    unchanged: str = ""  # flags of the reference run where it needs its own (a sampler's)

    def command(self, changed: bool = True) -> str:
        flags = f"{self.settings} {self.change if changed else self.unchanged}".strip()
        folder = FOLDER / (self.key if changed else self.reference)
        return f"python chapters/{self.chapter}.py {flags} --out {folder}"


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson interval of a proportion p measured on n samples."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _fid(record: dict) -> tuple[float, float, float]:
    """(FID, low, high): the FID and its 95% interval, from a chapter's record or from
    ch5_samplers' first noise set."""
    if "fid_ci95" in record:
        return (record["classifier_fid"], *record["fid_ci95"])
    return (record["fid_by_noise_set"][0], *record["fid_ci95_by_noise_set"][0])


def _record(metrics: dict, model: str | None) -> dict:
    """metrics.json's record of `model`; None: the only one there (a ch5_samplers run of one
    sampler at one step count)."""
    if model is not None:
        return metrics["models"][model]
    if len(metrics["models"]) != 1:
        raise KeyError("a single sampler's record")
    return next(iter(metrics["models"].values()))


# ---------------------------------------------------------------------------------------------
# The checks: (changed run's metrics, reference run's metrics) -> Verdict.

def latent_leaves_the_disc(run: dict, reference: dict) -> Verdict:
    p99 = run["models"]["vae"]["abs_z_p99"]
    before = reference["models"]["vae"]["abs_z_p99"]
    passed = p99 > 5.0
    return Verdict(passed,
                   f"99% of |z| lie within {p99:.2f} (reference {before:.2f}); N(0, I) keeps 99% "
                   "within 2.58. " + (
                       "With almost no KL term nothing pulls the codes to N(0, I): they spread "
                       "like the plain autoencoder's." if passed else
                       "The codes still sit in the N(0, I) disc: is the KL term still at full "
                       "weight? (--kl-weight 0.01)"),
                   f"|z| の 99% が {p99:.2f} 以内（変更前 {before:.2f}）。N(0, I) なら 2.58 以内。"
                   + ("KL 項がほとんどないと潜在変数を N(0, I) に引き寄せる力がなく、"
                      "通常のオートエンコーダのように広がる。" if passed else
                      "潜在変数はまだ N(0, I) の円の中にある。"
                      "KL 項を弱めたか（--kl-weight 0.01）確認。"))


def reconstructions_blur(run: dict, reference: dict) -> Verdict:
    """The VAE's test MSE over the autoencoder's (same run, same data): the blur the KL weight
    costs, on a scale the autoencoder sets. The check asks for 10% more than the reference's."""
    def ratio(metrics):
        models = metrics["models"]
        return models["vae"]["test_mse"] / models["cnn_autoencoder"]["test_mse"]

    now, before = ratio(run), ratio(reference)
    passed = now > 1.1 * before
    return Verdict(passed,
                   f"the VAE's test MSE is {now:.2f}x the autoencoder's, against {before:.2f}x "
                   "before (the check asks for 10% more). " + (
                       "A heavy KL weight squeezes the codes towards N(0, I), so they carry less "
                       "about each image: reconstructions blur." if passed else
                       "The reconstructions are as sharp as before: raise --kl-weight."),
                   f"VAE のテスト MSE はオートエンコーダの {now:.2f} 倍、変更前は {before:.2f} 倍"
                   "（判定は 1 割増し）。" + (
                       "KL の重みが大きいと潜在変数が N(0, I) に押し込められ、"
                       "画像ごとの情報が減って再構成がぼやける。" if passed else
                       "再構成は変更前と同じくらい鮮明。--kl-weight を大きくする。"))


def fewer_codes_blur(run: dict, reference: dict) -> Verdict:
    mse, before = run["models"]["vqvae"]["test_mse"], reference["models"]["vqvae"]["test_mse"]
    codes, codes_before = run["models"]["vqvae"]["codes"], reference["models"]["vqvae"]["codes"]
    passed = mse > 2 * before
    return Verdict(passed,
                   f"test MSE {mse:.4f} with {codes} codes against {before:.4f} with "
                   f"{codes_before} (the check asks for more than twice). " + (
                       "Each 4x4 patch can now only be one of a few vectors: a 7x7 grid of "
                       f"{codes} codes holds {49 * math.log2(codes):.0f} bits per image."
                       if passed else "The code book still describes the images as well: "
                                      "make it smaller (--codes 4)."),
                   f"コード {codes} 個でテスト MSE {mse:.4f}、{codes_before} 個では {before:.4f}"
                   "（判定は 2 倍超）。" + (
                       f"各パッチは数個のベクトルのどれかにしかなれない。7x7 の格子で {codes} 個の"
                       f"コードなら 1 枚あたり {49 * math.log2(codes):.0f} ビットしか運べない。"
                       if passed else "コードブックはまだ同じだけ表現できている。--codes 4 で"
                                      "小さくする。"))


def normal_prior_forgets_the_class(run: dict, reference: dict) -> Verdict:
    model, base = run["models"]["conv_cvae"], reference["models"]["conv_cvae"]
    acc, before = model["conditional_accuracy"], base["conditional_accuracy"]
    high = wilson(acc, model["samples_scored"])[1]
    low = wilson(before, base["samples_scored"])[0]
    passed = high < low
    return Verdict(passed,
                   f"the judge finds the asked class in {acc:.1%} of samples (95% up to "
                   f"{high:.1%}) against {before:.1%} (from {low:.1%}) with the fitted prior. " + (
                       "The encoder's codes do not fill N(0, I): codes drawn from it land where "
                       "the decoder never learned what a class looks like." if passed else
                       "No drop beyond the intervals: sample from N(0, I) (--prior normal)."),
                   f"判定器が指定クラスと認めたのは {acc:.1%}（95% 上限 {high:.1%}）、当てはめた"
                   f"事前分布では {before:.1%}（下限 {low:.1%}）。" + (
                       "エンコーダの潜在変数は N(0, I) 全体を埋めていない。そこから引いた z は、"
                       "デコーダがクラスの姿を学んでいない場所に落ちる。" if passed else
                       "区間を超える低下はない。--prior normal で N(0, I) から引く。"))


def fid_moves(worse: bool, name: str, model: str | None, reference_model: str | None,
              why_en: str, why_ja: str, hint_en: str,
              hint_ja: str) -> Callable[[dict, dict], Verdict]:
    """A check that the changed run's FID is worse (or better) than the reference's beyond
    both 95% intervals (name: what the change is called in the message)."""

    def check(run: dict, reference: dict) -> Verdict:
        fid, fid_low, fid_high = _fid(_record(run, model))
        before, before_low, before_high = _fid(_record(reference, reference_model))
        passed = fid_low > before_high if worse else fid_high < before_low
        edge, edge_before = (fid_low, before_high) if worse else (fid_high, before_low)
        en = ("from", "up to") if worse else ("up to", "from")
        ja = ("下限", "上限") if worse else ("上限", "下限")
        return Verdict(passed,
                       f"{name}: FID {fid:.1f} (95% {en[0]} {edge:.1f}) against {before:.1f} "
                       f"({en[1]} {edge_before:.1f}) before. " + (why_en if passed else hint_en),
                       f"{name}: FID {fid:.1f}（95% {ja[0]} {edge:.1f}）、変更前は {before:.1f}"
                       f"（{ja[1]} {edge_before:.1f}）。" + (why_ja if passed else hint_ja))

    return check


FASHION = "--dataset fashion_mnist"  # the data of docs/results.md (offline: apt's package)
CH2, CH4 = f"{FASHION} --epochs 2", f"{FASHION} --epochs 1"
SAMPLES = "--noise-sets 1 --samples"  # ch5_samplers reads the trained outputs/ch5_ddpm

EXERCISES = [
    Exercise("ch2_vae_kl0", "ch2_vae", "KL 項をほぼ外す（重み 0.01）と潜在空間はどうなるか",
             "All but remove the KL term (weight 0.01): what happens to the latent space?",
             "--kl-weight 0.01", CH2, "ch2_vae", latent_leaves_the_disc),
    Exercise("ch2_vae_beta10", "ch2_vae", "β（KL の重み）を 10 にすると再構成はどうなるか",
             "Weight the KL term by 10: what happens to the reconstructions?",
             "--kl-weight 10", CH2, "ch2_vae", reconstructions_blur),
    Exercise("ch3_vqvae_codes4", "ch3_vqvae", "コードブックを 64 個から 4 個にする",
             "Shrink the code book from 64 vectors to 4",
             "--codes 4", f"{FASHION} --epochs 2 --prior-epochs 1", "ch3_vqvae", fewer_codes_blur),
    Exercise("ch3_cvae_normal_prior", "ch3_cvae", "CVAE の z を N(0, I) から引く",
             "Draw the CVAE's z from N(0, I) instead of the fitted prior",
             "--prior normal", f"{FASHION} --epochs 2", "ch3_cvae", normal_prior_forgets_the_class),
    Exercise("ch4_dcgan_no_bn", "ch4_dcgan", "DCGAN のバッチ正規化を外す",
             "Take the batch norm out of the DCGAN",
             "--no-batch-norm", CH4, "ch4_dcgan",
             fid_moves(True, "without batch norm", "dcgan", "dcgan",
                       "Radford et al. (sec. 3) credit batch norm with getting deep generators "
                       "to learn at all: without it the game makes slower, shakier progress.",
                       "Radford らは、バッチ正規化が深い生成器の学習を立ち上げると述べている"
                       "（3 節）。外すとゲームの進みが遅く不安定になる。",
                       "The samples are as good as before: is --no-batch-norm on?",
                       "サンプルの質は変更前と同じ。--no-batch-norm を付けたか確認。")),
    Exercise("ch4_dcgan_lr10x", "ch4_dcgan",
             "1 エポックだけなら学習率を 10 倍（0.002）にすると",
             "With one epoch only, raise the learning rate tenfold (0.002)",
             "--learning-rate 0.002", CH4, "ch4_dcgan",
             check=fid_moves(False, "learning rate 0.002", "dcgan", "dcgan",
                              "In one epoch (469 rounds) ten times larger steps get further: "
                              "the paper's 0.0002 buys stability over many epochs, not speed. "
                              "Run 3 epochs of each and compare loss_curves.png.",
                              "1 エポック（469 回）なら 10 倍の歩幅の方が先へ進む。論文の "
                              "0.0002 は多くのエポックでの安定のための値で、速さのためでは"
                              "ない。3 エポックずつ学習して loss_curves.png を比べてみる。",
                              "No gain within one epoch: is --learning-rate 0.002 set?",
                              "1 エポックでの改善はない。--learning-rate 0.002 を付けたか確認。")),
    Exercise("ch5_samplers_ddim5", "ch5_samplers", "DDIM を 5 ステップでサンプリングする",
             "Sample with 5 DDIM steps instead of 50",
             "--steps 5", f"{SAMPLES} 1000 --samplers ddim", "ch5_samplers_ddim50",
             unchanged="--steps 50", check=fid_moves(True, "DDIM-5 against DDIM-50", None, None,
                       "Five steps of a first-order solver cannot follow the curved path from "
                       "noise to image: the samples blur.",
                       "1 次のソルバーでは 5 ステップでノイズから画像への曲がった道筋を追えず、"
                       "サンプルがぼやける。",
                       "No loss of quality: sample with --steps 5.",
                       "質は落ちていない。--steps 5 でサンプリングする。")),
    Exercise("ch5_samplers_eta1", "ch5_samplers",
             "5 ステップの DDIM に DDPM と同じノイズを入れる（η = 1）",
             "Give 5-step DDIM the DDPM posterior's noise (eta = 1)",
             "--eta 1", f"{SAMPLES} 1000 --samplers ddim --steps 5", "ch5_samplers_ddim5",
             check=fid_moves(True, "DDIM-5 with eta = 1 against eta = 0", None, None,
                             "Each step adds fresh noise that the next few steps must remove; "
                             "with 5 steps there are too few (Song et al. 2021, Table 1: eta = 1 "
                             "is worst at few steps).",
                             "各ステップで新しいノイズが加わり、それを後のステップで"
                             "取り除く必要がある。5 ステップでは足りない（Song ら 2021 の"
                             "表 1: 少ないステップでは η = 1 が最も悪い）。",
                             "No loss of quality: sample with --eta 1.",
                             "質は落ちていない。--eta 1 でサンプリングする。")),
]
BY_KEY = {exercise.key: exercise for exercise in EXERCISES}


def reference_command(exercise: Exercise) -> str:
    """The command of the unchanged run an exercise compares with."""
    return exercise.command(changed=False)


def read_metrics(folder: Path) -> dict | None:
    path = ROOT / folder / "metrics.json" if not Path(folder).is_absolute() else \
        Path(folder) / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None


def verdict(exercise: Exercise, run: Path | None = None,
            reference: Path | None = None) -> Verdict | None:
    """The check's verdict on the changed run (or `run`) against the reference run; None
    when either has not been run yet."""
    changed = read_metrics(run or FOLDER / exercise.key)
    before = read_metrics(reference or FOLDER / exercise.reference)
    if changed is None or before is None:
        return None
    try:
        return exercise.check(changed, before)
    except KeyError as err:  # another chapter's or another setting's run
        return Verdict(False, f"a metrics.json lacks {err}: is each folder the run its command "
                              "above makes?",
                       f"metrics.json に {err} がない。どちらのフォルダも上のコマンドで作った"
                       "実行か確認。")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.exercises.catalog",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("keys", nargs="*", metavar="EXERCISE",
                        help=f"which to check ({', '.join(BY_KEY)}); none lists them all")
    parser.add_argument("--run", type=Path, help="check this folder as the changed run")
    parser.add_argument("--reference", type=Path, help="and this one as the unchanged run")
    args = parser.parse_args(argv)
    unknown = [key for key in args.keys if key not in BY_KEY]
    if unknown:
        parser.error(f"no exercise {unknown[0]!r}; there are {', '.join(BY_KEY)}")
    for exercise in [BY_KEY[k] for k in args.keys] or EXERCISES:
        print(f"[{exercise.key}] {exercise.title_ja} / {exercise.title_en}")
        print(f"  before: {reference_command(exercise)}\n  after:  {exercise.command()}")
        if args.keys:
            try:
                result = verdict(exercise, args.run, args.reference)
            except (OSError, ValueError) as err:  # a damaged or unreadable metrics.json
                parser.error(f"{exercise.key}: cannot read a metrics.json ({err})")
            print("  " + ("(not run yet: run the two commands above)" if result is None
                          else str(result).replace("\n", "\n  ")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
