"""Chapter 3, continued: a Transformer as the prior over a VQ-VAE's codes (the DALL-E recipe).

ch3_vqvae turned every image into a 7x7 grid of codebook indices and fitted a PixelCNN to
p(code grid). Here a decoder-only Transformer (Vaswani et al. 2017; the GPT form of Radford et
al. 2018) learns the same distribution: the 49 codes are read in raster order as a sentence of
49 tokens, and the network predicts each token from the ones before it,

    p(c) = prod_i p(c_i | c_1 .. c_{i-1}),

as the PixelCNN does. What differs is how a position sees the past. The PixelCNN's masked
convolutions see a fixed neighbourhood (and miss a blind spot up and to the right); a causal
self-attention layer lets every position look at every earlier position at once, weighted by
what it finds there. DALL-E (Ramesh et al. 2021) generates a discrete VAE's codes with such a
Transformer after the text's tokens; here the "text" is one start token, either the same for
every image (an unconditional prior) or one per class (a class-conditional prior, p(c | y)).
The conditional prior also has a "no class" start token, used in place of the class 10% of
the time in training, so that sampling can use classifier-free guidance at scale w
(common.vq.autoregressive).

The network (build_transformer_prior): code embedding + learned position embedding, then
pre-norm blocks (LayerNorm -> causal MultiHeadAttention -> add; LayerNorm -> Dense-GELU-Dense
-> add), a final LayerNorm and a Dense layer to the K codes' logits. Sampling draws the 49
codes one by one in a compiled loop, with temperature and top-k (common.vq.autoregressive).

The comparison with the PixelCNN is on the same codes (the VQ-VAE and PixelCNN that ch3_vqvae
saved): test negative log-likelihood in nats per image, classifier FID of 1,000 decoded
samples, the time to sample 100 images, and training time, with both models' training speed
timed in this process (this machine's speed changes by the hour).

Bars (Fashion-MNIST, defaults): the Transformer's test NLL and FID no worse than the
PixelCNN's at no more training time; the class-conditional prior held to the same bar as
every guided chapter (common.eval.guidance).

Run:  python chapters/ch3_vqvae.py, then  python chapters/ch3_vq_transformer.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` and `chapters` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common.quiet_tensorflow  # noqa: F401  (first: hides TF's native start-up log)

import keras
import numpy as np
from keras import layers

from chapters.ch3_vqvae import GRID, decode, encode
from common import figures
from common.atomic import save_model
from common.cli import (
    OUTPUT_ROOT,
    make_parser,
    non_negative_int,
    parse,
    plural,
    positive_float,
    positive_int,
    run_main,
    writable_dir_problem,
)
from common.errors import UserError
from common.eval.classifier import FeatureClassifier, describe_fid
from common.eval.guidance import by_guidance, guidance_sweep
from common.pipeline import one_hot_sequences
from common.results import read_run, write_metrics
from common.run import start
from common.summary import print_summary
from common.training import Throughput, fit
from common.transformer import PositionEmbedding
from common.vq.autoregressive import next_code_batches, sample_codes, sequence_nll
from common.vq.masked_conv import sample as pixelcnn_sample

CHAPTER = "ch3_vq_transformer"
IMAGES = 60_000  # training budget per prior: one pass over Fashion-MNIST's codes
ROUNDS = 10  # the budget is logged in this many parts, each with a test-NLL point
SCORED_SAMPLES = 1_000
QUICK_SAMPLES = 100  # --quick: fewer samples scored, and only the default sampling setting
TIMED_SAMPLES = 100
GUIDANCE = 3.0  # the default w: at 2 fewer samples showed their class (docs/results.md)
GUIDANCE_SCALES = (1.0, 2.0, 3.0)  # scored beside it
# (temperature, top_k) settings scored beside the default; top_k 0 keeps every code
SWEEP = ((1.0, 0), (0.8, 0), (1.0, 8))


def build_transformer_prior(num_codes: int, positions: int = GRID[0] * GRID[1], *,
                            start_tokens: int = 1, width: int = 96, depth: int = 3,
                            heads: int = 4, mlp_ratio: int = 2,
                            name: str = "transformer_prior") -> keras.Model:
    """The prior p(c_i | start, c_1 .. c_{i-1}) as a decoder-only Transformer.

    Input: (positions,) token ids, the code sequence shifted right behind a start token
    (codes are ids 0..K-1, start tokens K..K+start_tokens-1: one per class for a conditional
    prior). Output: (positions, K) logits of each position's code.

    Embedding(K + starts, width) + PositionEmbedding, then `depth` pre-norm blocks
    (Radford et al. 2019, GPT-2): x + Attention(LN(x)) with a causal mask, then
    x + Dense(width) GELU-Dense(mlp_ratio * width)(LN(x)); a final LayerNorm, Dense(K).
    The last block's attention layer also returns its scores (unused in training) so that
    `attention_probe` can show where positions look.
    """
    tokens = keras.Input((positions,), dtype="int32", name="shifted_codes")
    small = keras.initializers.RandomNormal(stddev=0.02)  # GPT-2's initialisation
    h = layers.Embedding(num_codes + start_tokens, width, embeddings_initializer=small,
                         name="code_embedding")(tokens)
    h = PositionEmbedding(name="position_embedding")(h)
    for i in range(depth):
        a = layers.LayerNormalization(epsilon=1e-5, name=f"block{i}_norm_1")(h)
        attention = layers.MultiHeadAttention(heads, width // heads, name=f"block{i}_attention")
        if i == depth - 1:
            a, _ = attention(a, a, use_causal_mask=True, return_attention_scores=True)
        else:
            a = attention(a, a, use_causal_mask=True)
        h = layers.Add(name=f"block{i}_add_1")([h, a])
        m = layers.LayerNormalization(epsilon=1e-5, name=f"block{i}_norm_2")(h)
        m = layers.Dense(mlp_ratio * width, activation="gelu", name=f"block{i}_mlp_in")(m)
        m = layers.Dense(width, name=f"block{i}_mlp_out")(m)
        h = layers.Add(name=f"block{i}_add_2")([h, m])
    h = layers.LayerNormalization(epsilon=1e-5, name="final_norm")(h)
    return keras.Model(tokens, layers.Dense(num_codes, name="logits")(h), name=name)


def attention_probe(prior: keras.Model) -> keras.Model:
    """tokens -> (heads, positions, positions) attention weights of the prior's last block."""
    last = [layer for layer in prior.layers if isinstance(layer, layers.MultiHeadAttention)][-1]
    return keras.Model(prior.input, last.output[1], name="attention_probe")


def flags():
    """The command line: the shared flags and the chapter's own (see --help)."""
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None, batch_size=64,
                         dataset=None, learning_rate=2e-3,
                         epochs_help=f"passes over the training codes per prior (default: "
                                     f"{IMAGES:,} images' worth)",
                         learning_rate_help="Adam's peak step size after a 5%% warm-up, "
                                            "cosine-decayed")
    parser.add_argument("--run", type=Path, default=OUTPUT_ROOT / "ch3_vqvae",
                        help="the ch3_vqvae output folder whose vqvae.keras and pixelcnn.keras "
                             "are used (default outputs/ch3_vqvae)")
    parser.add_argument("--width", type=positive_int, default=96,
                        help="Transformer width (default 96)")
    parser.add_argument("--depth", type=positive_int, default=3,
                        help="Transformer blocks (default 3)")
    parser.add_argument("--heads", type=positive_int, default=4,
                        help="attention heads per block (default 4)")
    parser.add_argument("--temperature", type=positive_float, default=1.0,
                        help="sampling temperature of the figures' samples (default 1)")
    parser.add_argument("--top-k", type=non_negative_int, default=0,
                        help="sample the figures' codes from the k most likely only "
                             "(default 0: all)")
    parser.add_argument("--guidance", type=positive_float, default=GUIDANCE,
                        help="classifier-free guidance scale w of the class-conditional prior "
                             f"(default {GUIDANCE:g}; 1 is no guidance)")
    return parser


def main(argv=None) -> int:
    parser = flags()
    args = parse(parser, argv)
    if args.width % args.heads:
        parser.error(f"--width {args.width} must be a multiple of --heads {args.heads}")
    if args.summary:
        return print_models(args.width, args.depth, args.heads)

    vqvae, pixelcnn, trained_on, pixelcnn_epochs = load_run(args.run, quick=args.quick)
    with start(args, images=IMAGES, dataset=trained_on) as run:
        # The data: the images of ch3_vqvae's run, turned into 7x7 grids of codes by its
        # VQ-VAE: the "sentences" of 49 tokens the Transformer reads.
        data, num_codes = run.data, pixelcnn.output_shape[-1]
        train_codes, test_codes = encode(vqvae, data.x_train), encode(vqvae, data.x_test)
        figures.code_map(data.x_test[0], test_codes[0], run.out / "codes.png",
                         title="A test image and its 7x7 codes, read left to right, top down")

        # Two Transformer priors: one start token for every image, or one per class.
        shape = {"width": args.width, "depth": args.depth, "heads": args.heads}
        unconditional, conditional = build_priors(num_codes, data.num_classes, shape)

        # Training both on next-code prediction, the same budget of code grids.
        runs = train_priors(unconditional, conditional, train_codes, test_codes, run,
                            args.learning_rate)

        # The PixelCNN of ch3_vqvae on the same codes, and both priors' speed timed now.
        base = against_pixelcnn(pixelcnn, pixelcnn_epochs, unconditional, train_codes,
                                test_codes, runs[unconditional.name], run)

        # Sampling: the PixelCNN, the Transformer at several temperatures and top-k, and the
        # class-conditional Transformer at several guidance scales, all scored by the judge.
        # (The judge is cached beside the VQ-VAE run, unless that folder is read-only.)
        root = run.out.parent if writable_dir_problem(args.run.parent) else args.run.parent
        judge = FeatureClassifier.for_dataset(data, root)
        scored = QUICK_SAMPLES if run.quick else SCORED_SAMPLES
        drawn = draw_and_score(vqvae, pixelcnn, unconditional, conditional, judge, data,
                               scored, run.seed, args.guidance, quick=run.quick)

        # The comparison and its bars; the figures, the priors and metrics.json.
        record = runs[unconditional.name]
        record["sampling_seconds_100"] = sampling_seconds(unconditional, num_codes, run.seed)
        verdicts = bars(record, base, drawn, args.guidance)
        print("\n" + comparison_table(record, drawn["transformer_fid"], base["nll"],
                                      drawn["pixelcnn_fid"], base["seconds"],
                                      drawn["pixelcnn_sampling"], pixelcnn))
        print("bars: " + ", ".join(f"{k} {'met' if v else 'missed'}"
                                   for k, v in verdicts.items()))
        custom = sample_codes(unconditional, np.full(40, num_codes),
                              temperature=args.temperature, top_k=args.top_k,
                              seed=run.seed + 1)
        _figures(data, vqvae, unconditional, drawn, custom, runs, base["nll"], num_codes,
                 run.out, guidance=args.guidance, temperature=args.temperature,
                 top_k=args.top_k)
        save_model(unconditional, run.out / "transformer_prior.keras")
        save_model(conditional, run.out / "transformer_prior_conditional.keras")
        write_metrics(run, judge=judge, models=records(
            base, drawn, runs, record, verdicts, pixelcnn, conditional.name, args.guidance),
                      extra={"run": str(args.run)})
    print(run.closing(f"\nFigures, models and metrics.json are in {run.out}/ "
                      "(start with samples.png and attention.png)"))
    return 0


def build_priors(num_codes: int, num_classes: int, shape: dict):
    """The unconditional prior (one start token) and the class-conditional one (a start token
    per class, and one more for "no class", for classifier-free guidance), both of `shape`
    (width, depth, heads)."""
    positions = GRID[0] * GRID[1]
    unconditional = build_transformer_prior(num_codes, positions, **shape)
    conditional = build_transformer_prior(num_codes, positions, start_tokens=num_classes + 1,
                                          name="transformer_prior_conditional", **shape)
    print_summary(unconditional)
    print(f"the class-conditional prior has {num_classes} more start tokens: "
          f"{conditional.count_params():,} parameters")
    return unconditional, conditional


def train_priors(unconditional, conditional, train_codes, test_codes, run,
                 learning_rate: float) -> dict:
    """Both priors on the same budget of code grids (`run.epochs` passes)."""
    data, positions = run.data, GRID[0] * GRID[1]
    num_codes = unconditional.output_shape[-1]
    flat_train, flat_test = train_codes.reshape(-1, positions), test_codes.reshape(-1, positions)
    steps = max(1, run.epochs * len(flat_train) // run.batch_size)
    rounds = min(ROUNDS, steps)
    null_token = num_codes + data.num_classes
    runs = {}
    for prior, starts, test_starts, null in (
            (unconditional, np.full(len(flat_train), num_codes),
             np.full(len(flat_test), num_codes), None),
            (conditional, num_codes + data.y_train, num_codes + data.y_test, null_token)):
        print(f"\n== {prior.name}: {plural(steps * run.batch_size, 'code grid')} in batches "
              f"of {run.batch_size} ==")
        runs[prior.name] = train_prior(prior, flat_train, starts, flat_test, test_starts,
                                       steps=steps, rounds=rounds, run=run,
                                       learning_rate=learning_rate, null_token=null)
    return runs


def against_pixelcnn(pixelcnn, pixelcnn_epochs, unconditional, train_codes, test_codes,
                     record, run) -> dict:
    """The PixelCNN's test NLL on the same codes, and both priors' training speed timed side
    by side now, so that their training times compare on today's machine."""
    print("\n== the PixelCNN of ch3_vqvae on the same codes ==")
    positions, num_codes = GRID[0] * GRID[1], pixelcnn.output_shape[-1]
    if not pixelcnn.compiled:  # the loss ch3_vqvae trained it with, whatever the file kept
        pixelcnn.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    nll = positions * float(pixelcnn.evaluate(
        np.eye(num_codes, dtype="float32")[test_codes], test_codes, batch_size=512, verbose=0))
    flat_train = train_codes.reshape(-1, positions)
    images = pixelcnn_epochs * len(flat_train)
    steps = 20 if run.quick else 150  # a smoke test times the plumbing, not the machine
    speeds = {"pixelcnn": images_per_second(
                  pixelcnn, one_hot_sequences(train_codes, num_codes, batch_size=128,
                                              seed=run.seed).repeat(), 128, steps),
              "transformer": images_per_second(
                  unconditional, next_code_batches(flat_train, np.full(len(flat_train),
                                                                       num_codes),
                                                   batch_size=run.batch_size,
                                                   seed=run.seed).repeat(), run.batch_size,
                  steps)}
    seconds = (images / speeds["pixelcnn"], record["train_images"] / speeds["transformer"])
    print(f"PixelCNN: test NLL {nll:.2f} nats per image. Training speed timed "
          f"side by side now: PixelCNN {speeds['pixelcnn']:,.0f} images/s, Transformer "
          f"{speeds['transformer']:,.0f}; so the PixelCNN's {images:,} training code "
          f"grids take {seconds[0]:.0f} s and the Transformer's "
          f"{record['train_images']:,} take {seconds[1]:.0f} s")
    return {"nll": nll, "images": images, "speeds": speeds, "seconds": seconds}


def draw_and_score(vqvae, pixelcnn, unconditional, conditional, judge, data, scored: int,
                   seed: int, guidance: float, quick: bool) -> dict:
    """Samples of the three priors, judged: the PixelCNN's, the Transformer's at each
    (temperature, top-k) of SWEEP, and the conditional Transformer's at each guidance."""
    num_codes = pixelcnn.output_shape[-1]
    began = time.perf_counter()
    pixelcnn_codes = pixelcnn_sample(pixelcnn, scored, seed=seed)
    drawn = {"pixelcnn_codes": pixelcnn_codes,
             "pixelcnn_sampling": (time.perf_counter() - began) * TIMED_SAMPLES / scored}
    drawn["pixelcnn_fid"] = judge.fid_report(data, decode(vqvae, pixelcnn_codes))
    print(f"PixelCNN samples: {describe_fid(drawn['pixelcnn_fid'])}")
    sweep = {}
    for temperature, top_k in SWEEP[:1] if quick else SWEEP:
        codes = sample_codes(unconditional, np.full(scored, num_codes),
                             temperature=temperature, top_k=top_k, seed=seed)
        images = decode(vqvae, codes.reshape(-1, *GRID))
        label = f"T={temperature:g}, top-k={top_k or 'all'}"
        sweep[label] = judge.fid_report(data, images)
        print(f"Transformer samples, {label}: {describe_fid(sweep[label])}")
        if (temperature, top_k) == (1.0, 0):
            drawn["transformer_images"] = images
    drawn.update(sweep=sweep, transformer_fid=sweep["T=1, top-k=all"])
    null_token = num_codes + data.num_classes

    def class_images(labels, w):
        codes = sample_codes(conditional, num_codes + labels, guidance=w,
                             null_token=null_token, seed=seed)
        return decode(vqvae, codes.reshape(-1, *GRID))

    print("class-conditional Transformer:")
    drawn["by_guidance"] = guidance_sweep(class_images, judge, data,
                                          scales=() if quick else GUIDANCE_SCALES,
                                          chosen=guidance,
                                          per_class=max(1, scored // data.num_classes))
    drawn["class_labels"] = np.repeat(np.arange(data.num_classes), 10)
    drawn["class_images"] = class_images(drawn["class_labels"], guidance)
    return drawn


def bars(record, base, drawn, guidance: float) -> dict:
    """The verdicts of the chapter's bars: the Transformer's NLL, FID and training time no
    worse than the PixelCNN's, and the guided conditional accuracy (where a bar is set)."""
    verdicts = {
        "nll_no_worse": record["test_nll_nats_per_image"] <= base["nll"],
        "fid_no_worse": (drawn["transformer_fid"]["classifier_fid"]
                         <= drawn["pixelcnn_fid"]["classifier_fid"]),
        "time_no_more": base["seconds"][1] <= base["seconds"][0]}
    verdict = drawn["by_guidance"][guidance]["bar_verdict"]
    if verdict is not None:
        verdicts["conditional_accuracy"] = verdict == "met"
    return verdicts


def records(base, drawn, runs, record, verdicts, pixelcnn, conditional_name: str,
            guidance: float) -> dict:
    """metrics.json's models: the PixelCNN, the Transformer, the conditional Transformer."""
    pixelcnn_seconds, transformer_seconds = base["seconds"]
    return {
        "pixelcnn": {"test_nll_nats_per_image": round(base["nll"], 2), **drawn["pixelcnn_fid"],
                     "params": pixelcnn.count_params(), "train_images": base["images"],
                     "speed_test_images_per_s": round(base["speeds"]["pixelcnn"]),
                     "train_seconds_at_this_speed": round(pixelcnn_seconds, 1),
                     "sampling_seconds_100": round(drawn["pixelcnn_sampling"], 2)},
        "transformer": {**record, **drawn["transformer_fid"],
                        "speed_test_images_per_s": round(base["speeds"]["transformer"]),
                        "train_seconds_at_this_speed": round(transformer_seconds, 1),
                        "train_time_vs_pixelcnn": round(transformer_seconds / pixelcnn_seconds,
                                                        3),
                        "sampling_sweep": drawn["sweep"], "bars": verdicts},
        "transformer_conditional": {**runs[conditional_name], "guidance": guidance,
                                    **drawn["by_guidance"][guidance],
                                    "by_guidance": by_guidance(drawn["by_guidance"])}}


def train_prior(prior, codes, starts, test_codes, test_starts, *, steps, rounds, run,
                learning_rate: float, null_token=None) -> dict:
    """Adam with a 5% linear warm-up, then a cosine decay to 0 (Transformers diverge early
    without the warm-up); the budget in `rounds` parts, each scored on 2,000 test grids.
    With a `null_token`, 10% of the start tokens are replaced by it."""
    warmup = max(1, steps // 20)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, max(1, steps - warmup), warmup_target=learning_rate, warmup_steps=warmup)
    prior.compile(optimizer=keras.optimizers.Adam(schedule, beta_2=0.98),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    held_out = next_code_batches(test_codes[:2000], test_starts[:2000], batch_size=500,
                                 seed=run.seed)
    result = fit(prior, next_code_batches(codes, starts, batch_size=run.batch_size,
                                          seed=run.seed, null_token=null_token).repeat(),
                 epochs=rounds, steps_per_epoch=steps // rounds, batch_size=run.batch_size,
                 out=run.out, tag=prior.name, validation=held_out,
                 nan_hint="try a lower --learning-rate")
    nll = float(np.mean(sequence_nll(prior, test_codes, test_starts)))
    print(f"{prior.name}: test NLL {nll:.2f} nats per image")
    return {"test_nll_nats_per_image": round(nll, 2), "params": prior.count_params(),
            "train_images": steps // rounds * rounds * run.batch_size,
            "nll_curve": [round(codes.shape[1] * v, 2) for v in result.history["val_loss"]],
            **result.speed()}


def images_per_second(model, batches, batch_size: int, steps: int = 150) -> float:
    """A model's training speed now: the median step of a fresh copy trained for `steps`
    batches (the copy is thrown away). Timed for both priors one after the other, so
    their ratio holds even though this machine's speed changes by the hour."""
    copy = keras.models.clone_model(model)
    copy.compile(optimizer="adam",
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    meter = Throughput(batch_size)
    copy.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False,
             callbacks=[meter])
    return meter.images_per_second


def sampling_seconds(prior, num_codes: int, seed: int) -> float:
    """Seconds to draw TIMED_SAMPLES code grids, after a first call that compiles the loop."""
    starts = np.full(TIMED_SAMPLES, num_codes)
    sample_codes(prior, starts, seed=seed)
    began = time.perf_counter()
    sample_codes(prior, starts, seed=seed + 1)
    return round(time.perf_counter() - began, 2)


def comparison_table(record, fid, pixelcnn_nll, pixelcnn_fid, seconds, pixelcnn_sampling,
                     pixelcnn) -> str:
    rows = [("test NLL, nats per image", f"{pixelcnn_nll:.2f}",
             f"{record['test_nll_nats_per_image']:.2f}"),
            ("classifier FID, 1,000 samples", f"{pixelcnn_fid['classifier_fid']:.2f}",
             f"{fid['classifier_fid']:.2f}"),
            ("training seconds, same speed test", f"{seconds[0]:.0f}", f"{seconds[1]:.0f}"),
            ("seconds to sample 100", f"{pixelcnn_sampling:.2f}",
             f"{record['sampling_seconds_100']:.2f}"),
            ("parameters", f"{pixelcnn.count_params():,}", f"{record['params']:,}")]
    lines = [f"{'':<32} {'PixelCNN':>10} {'Transformer':>12}"]
    lines += [f"{name:<32} {a:>10} {b:>12}" for name, a, b in rows]
    return "\n".join(lines)


def load_run(run_dir: Path, quick: bool = False):
    """The VQ-VAE and PixelCNN that ch3_vqvae saved in `run_dir`, the dataset it used and the
    PixelCNN's epochs; one clear error when any is missing, damaged or not ch3_vqvae's (a
    --quick run of it serves only a --quick run of this chapter)."""
    earlier = read_run(run_dir, "ch3_vqvae", allow_quick=quick,
                       remedy=f"run python chapters/ch3_vqvae.py --out {run_dir} first")
    vqvae = earlier.model("vqvae.keras", layers=("encoder", "quantizer", "decoder"))
    pixelcnn = earlier.model("pixelcnn.keras", layers=("masked_a", "logits"))
    epochs = earlier.number("models", "pixelcnn", "epochs")
    if not isinstance(epochs, int):
        raise UserError(f"{run_dir}/metrics.json does not say how long the PixelCNN trained; "
                        "run chapters/ch3_vqvae.py again")
    return vqvae, pixelcnn, earlier.dataset, epochs


def print_models(width: int, depth: int, heads: int) -> int:
    """--summary: the unconditional prior for ch3_vqvae's default 64 codes."""
    print_summary(build_transformer_prior(64, width=width, depth=depth, heads=heads))
    return 0


def _figures(data, vqvae, prior, drawn, custom, runs, pixelcnn_nll, num_codes, out: Path, *,
             guidance: float, temperature: float, top_k: int) -> None:
    pixelcnn_codes, transformer_images = drawn["pixelcnn_codes"], drawn["transformer_images"]
    class_images, labels = drawn["class_images"], drawn["class_labels"]
    figures.image_grid(np.concatenate([decode(vqvae, pixelcnn_codes[:30]),
                                       transformer_images[:30]]),
                       out / "samples.png", ncols=10,
                       row_labels=["PixelCNN"] * 3 + ["Transformer"] * 3,
                       suptitle="New images from the same VQ-VAE: codes drawn by the PixelCNN "
                                "(top) and by the Transformer (bottom)")
    rows = [class_images[labels == c][:10] for c in range(data.num_classes)]
    figures.image_grid(np.concatenate(rows), out / "class_rows.png", ncols=10,
                       row_labels=data.class_names,
                       suptitle=f"The class-conditional Transformer: one start token per "
                                f"class, guidance w = {guidance:g}")
    figures.image_grid(decode(vqvae, custom.reshape(-1, *GRID)), out / "samples_custom.png",
                       ncols=10, suptitle=f"Transformer samples at temperature "
                                          f"{temperature:g}, top-k "
                                          f"{top_k or 'all'}")
    shown = custom[:6]
    inputs = np.concatenate([np.full((len(shown), 1), num_codes), shown[:, :-1]], axis=1)
    weights = np.asarray(attention_probe(prior)(inputs.astype("int32"))).mean(axis=1)[:, -1]
    # input position 0 is the start token, input position j the code at cell j - 1
    maps = np.concatenate([weights[:, 1:], np.full((len(shown), 1), np.nan)], axis=1)
    figures.attention_maps(decode(vqvae, shown.reshape(-1, *GRID)),
                           maps.reshape(-1, *GRID), out / "attention.png",
                           titles=[f"start {w:.2f}" for w in weights[:, 0]],
                           title="Where the last code looks: the last block's attention "
                                 "(mean of heads) from the bottom-right cell (red)")
    seen = {name: np.linspace(0, r["train_images"], len(r["nll_curve"]) + 1)[1:].tolist()
            for name, r in runs.items()}
    figures.curves({name: r["nll_curve"] for name, r in runs.items()}, out / "nll_curve.png",
                   x=seen, xlabel="training code grids seen",
                   ylabel="held-out NLL, nats per image",
                   references={"PixelCNN (5 epochs)": pixelcnn_nll},
                   title="The Transformer priors while they train")


if __name__ == "__main__":
    sys.exit(run_main(main))
