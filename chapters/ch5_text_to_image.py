"""Chapter 5: text to image, Stable Diffusion's recipe in miniature (Rombach et al. 2022).

chapters/ch5_latent_diffusion.py is told what to draw by one of a few class vectors: a
lookup, not language. Here every emoji comes with its name in English and Japanese ("red
heart" / "赤いハート"), names share words (colours, "face", "woman", skin tones, "flag"), and the
model is told what to draw by the words themselves:

1. The autoencoder of the latent-diffusion chapter, unchanged: a 32x32 colour emoji <-> an
   8x8x8 code.
2. A text encoder (common.text): the name cut into tokens (English words, Japanese characters)
   and read by a small Transformer, one vector per token.
3. A denoiser of the codes that reads those vectors by cross-attention (`cross_attention`):
   at every position of its feature map, a query asks the prompt's tokens which of them
   matter here; their values, weighted by the answer, are added to the features. Padding is
   masked, so a prompt means the same whatever its length. It works at 8x8 and at 4x4, and
   the mean of the token vectors is also added to the step's embedding, as a summary of the
   whole prompt.
4. Prompt dropout (Ho & Salimans 2022): 10% of the training pairs lose their prompt (the empty
   prompt, [start] alone, replaces it), so one network also predicts the unconditional noise,
   and sampling mixes the two with guidance w (classifier-free guidance).

The text encoder is trained with the denoiser, from scratch; Stable Diffusion borrows a
frozen CLIP text encoder instead (Radford et al. 2021), which this project keeps as the judge
(common.eval.clip): a CLIP trained once on the emoji and their names, which scores how well an
image matches a text. Its scores are reported beside the shuffled-prompt baseline (the same
images with other images' prompts), and beside real test emoji with their own names.

Generalisation, put to the test: the emoji named in HELD_OUT are removed from training (the
autoencoder, the text and the denoiser never see them), although each of their words occurs in
other names. Prompts such as "purple heart" then ask for a combination the model never saw.
Their CLIP scores and a colour check (the hue of the drawn foreground against the colour word)
are reported beside the same numbers for trained prompts and for shuffled ones.

Run:  python chapters/ch5_text_to_image.py                      (emoji, the default)
      python chapters/ch5_text_to_image.py --prompt "purple heart" --prompt "紫のハート"
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` and `chapters` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common.quiet_tensorflow  # noqa: F401  (first: hides TF's native start-up log)

import keras
import numpy as np
from keras import layers
from matplotlib import colormaps

from chapters.ch5_ddpm import DiffusionModel, residual_block
from chapters.ch5_latent_diffusion import (
    BETAS,
    COLOUR_LATENT_CHANNELS,
    autoencoder_report,
    save_autoencoder,
    train_autoencoder,
)
from common import figures, language
from common.atomic import save_model
from common.cli import make_parser, non_negative_float, parse, plural, positive_int, run_main
from common.diffusion.samplers import describe, sample
from common.diffusion.schedule import Schedule, step_and_label
from common.diffusion.trainer import (
    BATCH_SIZE,
    add_sampler_flags,
    check_diffusion_flags,
    train_diffusion,
)
from common.errors import UserError
from common.eval.classifier import FeatureClassifier, describe_fid, wilson_interval
from common.eval.clip import ClipJudge, shuffled
from common.results import write_metrics
from common.run import start
from common.summary import print_summary
from common.text import (
    CONTEXT,
    MaskedMean,
    PaddingMask,
    PromptError,
    Tokenizer,
    build_text_encoder,
)

CHAPTER = "ch5_text_to_image"
IMAGES = 180_000  # (code, name) pairs seen in training: 29 epochs of both names of each emoji
LANGUAGES = ("en", "ja")
GUIDANCE = 3.0
SCALES = (0.0, 1.0, 2.0, 3.0, 5.0)
PROMPT_DROPOUT = 0.1
TEXT_WIDTH = 64
HEADS = 4
PROMPTS = ("red heart", "赤いハート", "grinning face", "cat face", "woman dark skin tone",
           "flag: Japan")
ATTENTION_PROMPT = "woman dark skin tone"  # cross_attention.png: a person, then a colour
# Never trained on; every word of each occurs in other training names.
HELD_OUT = ("purple heart", "orange square", "green circle", "blue book",
            "thumbs up medium-dark skin tone", "waving hand dark skin tone",
            "OK hand light skin tone", "raising hands dark skin tone")
# Trained colour prompts, beside the held-out ones in the colour check.
COLOURED = ("red heart", "yellow heart", "blue heart", "green book", "orange book",
            "purple square", "green square", "red circle", "blue circle", "yellow circle")
# Hues (degrees) of the colour words, for the colour check.
HUES = {"red": 0.0, "orange": 30.0, "yellow": 55.0, "green": 120.0, "blue": 215.0,
        "purple": 280.0}
PER_PROMPT = 16  # images per held-out or coloured prompt
EMOJI_VOCABULARY = 985  # token ids of the emoji names' tokenizer (for --summary; tested)


# ---------------------------------------------------------------------------------------------
# 1. The denoiser that reads the prompt.

def cross_attention(h, text, mask, name: str, keep_scores: bool = False):
    """Queries from the image features, keys and values from the prompt's token vectors:

        Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V,  Q = h W_q,  K = text W_k,  V = text W_v

    one query per position of the (H, W, C) map, T keys; the mask (batch, 1, T) keeps every
    query off the padding. The answer is added to the features (a residual). With
    `keep_scores` the layer also returns its weights (unused here) for `attention_probe`."""
    height, width, channels = h.shape[1:]
    q = layers.GroupNormalization(8, name=f"{name}_norm")(h)
    q = layers.Reshape((height * width, channels), name=f"{name}_queries")(q)
    attention = layers.MultiHeadAttention(HEADS, channels // HEADS, name=f"{name}_attention")
    if keep_scores:
        attended, _ = attention(q, text, text, attention_mask=mask,
                                return_attention_scores=True)
    else:
        attended = attention(q, text, text, attention_mask=mask)
    attended = layers.Reshape((height, width, channels), name=f"{name}_map")(attended)
    return layers.Add(name=f"{name}_out")([h, attended])


def build_text_denoiser(latent_shape, vocabulary_size: int, channels: int = 64,
                        context: int = CONTEXT, name: str = "text_denoiser") -> keras.Model:
    """[z_t (8, 8, C), t (int), prompt ids (T,)] -> predicted noise (8, 8, C).

    The text encoder reads the prompt; the step's embedding gets the mean of its token
    vectors; residual blocks (chapter 5's) at 8x8, then 4x4, then 8x8 again with the 8x8
    features concatenated, each followed by cross-attention to the tokens."""
    inputs, emb = step_and_label(latent_shape, 0, channels, 2 * channels, image_name="z_t")
    tokens = keras.Input((context,), dtype="int32", name="prompt")
    text = build_text_encoder(vocabulary_size, context, width=TEXT_WIDTH)(tokens)
    mask = PaddingMask(name="prompt_mask")(tokens)
    summary = layers.Dense(2 * channels, name="prompt_summary")(
        MaskedMean(name="prompt_mean")([text, tokens]))
    emb = layers.Add(name="t_plus_prompt")([emb, summary])

    h = layers.Conv2D(channels, 3, padding="same", name="stem")(inputs[0])
    h = residual_block(h, emb, channels, "block8")
    skip = cross_attention(h, text, mask, "cross8")
    h = layers.Conv2D(2 * channels, 3, strides=2, padding="same", name="to4")(skip)
    h = residual_block(h, emb, 2 * channels, "block4")
    h = cross_attention(h, text, mask, "cross4")
    h = layers.UpSampling2D(2, name="up8")(h)
    h = residual_block(layers.Concatenate(name="skip8")([h, skip]), emb, channels, "block8_up")
    h = cross_attention(h, text, mask, "cross8_up", keep_scores=True)
    h = layers.Activation("swish", name="out_act")(
        layers.GroupNormalization(8, name="out_norm")(h))
    out = layers.Conv2D(latent_shape[-1], 3, padding="same", name="noise")(h)
    return keras.Model([*inputs, tokens], out, name=name)


def build_text_diffusion(latent_shape, tokenizer: Tokenizer, channels: int = 64,
                         seed: int | None = None) -> DiffusionModel:
    """The denoiser, its EMA twin and chapter 5's training step, with the empty prompt as the
    null condition that prompt dropout trains and guidance subtracts."""
    return DiffusionModel(
        build_text_denoiser(latent_shape, tokenizer.size, channels),
        build_text_denoiser(latent_shape, tokenizer.size, channels, name="text_denoiser_ema"),
        null_label=tokenizer.encode([""])[0], label_dropout=PROMPT_DROPOUT, seed=seed,
        schedule=Schedule(1000, *BETAS), name="text_to_image")


def attention_probe(network: keras.Model) -> keras.Model:
    """The denoiser's inputs -> the weights (batch, heads, 64 positions, T tokens) of its last
    cross-attention: which words each position of the 8x8 map reads."""
    return keras.Model(network.inputs, network.get_layer("cross8_up_attention").output[1],
                       name="cross_attention_probe")


# ---------------------------------------------------------------------------------------------
# 2. Prompts and sampling.

def read_prompts(tokenizer: Tokenizer, texts) -> list[str]:
    """Each prompt checked: unknown words and over-long prompts are one-line errors; the empty
    prompt is allowed and means "no text" (unconditional), which is said."""
    for text in texts:
        tokenizer.check(text)
        if not text.strip():
            print("note: the empty prompt means no text: its images are unconditional samples")
    return list(texts)


def generate(model, autoencoder, tokens, guidance: float, seed: int, sampler: str = "dpmpp",
             steps: int | None = None) -> np.ndarray:
    """Images in [0, 1], one per row of prompt ids: codes drawn with guidance w, decoded."""
    codes = sample(model.ema_network, model.schedule,
                   (len(tokens), *model.ema_network.input_shape[0][1:]), sampler=sampler,
                   sampling_steps=steps, labels=np.asarray(tokens, np.int32),
                   guidance=guidance, null_class=model.null_label, seed=seed)
    return autoencoder.decode(codes)


def foreground_hue(images: np.ndarray) -> np.ndarray:
    """The mean hue (degrees) of each image's coloured pixels: saturation-weighted circular
    mean over the pixels whose saturation is above 0.3 (the white ground and greys drop out);
    NaN where nothing is coloured."""
    top, bottom = images.max(axis=-1), images.min(axis=-1)
    saturation = np.where(top > 0, (top - bottom) / np.maximum(top, 1e-6), 0.0)
    r, g, b = np.moveaxis(images, -1, 0)
    angle = np.arctan2(np.sqrt(3.0) * (g - b), 2.0 * r - g - b)  # hue in the chroma plane
    weight = np.where(saturation > 0.3, saturation, 0.0)
    x = np.sum(weight * np.cos(angle), axis=(1, 2))
    y = np.sum(weight * np.sin(angle), axis=(1, 2))
    hue = np.degrees(np.arctan2(y, x)) % 360.0
    return np.where(np.sum(weight, axis=(1, 2)) > 1.0, hue, np.nan)


def nearest_colour(hues: np.ndarray) -> list[str | None]:
    """The colour word of HUES nearest each hue (circular distance); None for NaN."""
    names = list(HUES)
    centres = np.array([HUES[n] for n in names])
    found = []
    for hue in hues:
        if np.isnan(hue):
            found.append(None)
            continue
        gap = np.abs((centres - hue + 180.0) % 360.0 - 180.0)
        found.append(names[int(np.argmin(gap))])
    return found


def colour_word(text: str) -> str | None:
    return next((w for w in text.lower().split() if w in HUES), None)


# ---------------------------------------------------------------------------------------------
# The main job.

def flags():
    """The command line: the shared flags and the chapter's own (see --help)."""
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None,
                         batch_size=BATCH_SIZE, learning_rate=1e-3, dataset="emoji",
                         epochs_help="diffusion training epochs over the (code, name) pairs")
    add_sampler_flags(parser, sampler="dpmpp")
    parser.add_argument("--channels", type=positive_int, default=64,
                        help="the denoiser's width at 8x8, a multiple of 8 (default 64)")
    parser.add_argument("--guidance", type=non_negative_float, default=GUIDANCE,
                        help=f"classifier-free guidance w (default {GUIDANCE:g})")
    parser.add_argument("--prompt", action="append", default=[],
                        help="draw 16 images of this text, English or Japanese (repeatable; "
                             "the words must occur in the emoji's names)")
    return parser


def held_out(data) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training emoji kept, and of those named in HELD_OUT."""
    english = np.array([str(n).lower() for n in data.captions["en"][0]])
    out = np.isin(english, [n.lower() for n in HELD_OUT])
    return np.flatnonzero(~out), np.flatnonzero(out)


def keep(data, index: np.ndarray):
    """The dataset with only the training images at `index` (names and labels alike)."""
    captions = {lang: (train[index], test) for lang, (train, test) in data.captions.items()}
    return replace(data, x_train=data.x_train[index], y_train=data.y_train[index],
                   captions=captions)


def main(argv=None) -> int:
    parser = flags()
    args = parse(parser, argv)
    check_diffusion_flags(parser, args)
    if args.summary:
        print_summary(build_text_denoiser((8, 8, COLOUR_LATENT_CHANNELS), EMOJI_VOCABULARY,
                                          args.channels))
        return 0
    with start(args, images=IMAGES // len(LANGUAGES)) as run:
        data = run.data
        if not data.captions or data.image_shape != (32, 32, 3):
            raise UserError(f"{data.name} has no names for its images: text to image needs "
                            "--dataset emoji")
        kept_index, held_index = held_out(data)
        train = keep(data, kept_index)
        tokenizer = Tokenizer.from_texts(
            [str(t) for lang in LANGUAGES for t in train.captions[lang][0]])
        try:
            prompts = read_prompts(tokenizer, args.prompt)
        except PromptError as err:
            parser.error(f"--prompt: {err}")
        language.japanese_glyphs()  # prompts in Japanese label the figures' rows
        figures.data_grid(data, run.out / "data.png")
        print(f"held out of training: {len(held_index)} emoji ("
              + ", ".join(str(data.captions['en'][0][i]) for i in held_index) + ")")
        draw = {"sampler": args.sampler, "steps": args.sampling_steps}
        if run.quick and args.sampler != "ddpm":  # a smoke test checks the plumbing
            draw["steps"] = min(args.sampling_steps or 10, 10)

        # 1. The autoencoder (the latent-diffusion chapter's), on the kept emoji only.
        autoencoder, ae_speed = train_autoencoder(train, run, COLOUR_LATENT_CHANNELS)
        judge = FeatureClassifier.for_dataset(data, run.out.parent)
        ae_report = {**autoencoder_report(autoencoder, judge, data), **ae_speed}
        print(f"autoencoder: test MSE {ae_report['test_mse']:.4f}")

        # 2. Diffusion on the codes, told the prompt: each emoji once with its English name
        # and once with its Japanese one.
        codes = autoencoder.encode(train.x_train)
        pair_codes = np.concatenate([codes] * len(LANGUAGES))
        pair_tokens = np.concatenate([tokenizer.encode(train.captions[lang][0])
                                      for lang in LANGUAGES])
        model = build_text_diffusion(codes.shape[1:], tokenizer, args.channels, seed=run.seed)
        print_summary(model.network)
        print(f"\n== 2. diffusion on {len(pair_codes):,} (code, name) pairs, "
              f"{plural(run.epochs, 'epoch')} (prompts dropped {PROMPT_DROPOUT:.0%} of the "
              "time) ==")
        trained = train_diffusion(model, train, epochs=run.epochs, batch_size=run.batch_size,
                                  learning_rate=args.learning_rate, seed=run.seed,
                                  out=run.out, x_train=pair_codes, labels=pair_tokens)

        # 3. Sampling, judged: CLIP for the text, the classifier for FID.
        print("\n== 3. sampling, judged by CLIP and the classifier ==")
        clip = ClipJudge.for_dataset(data, run.out.parent, **({"epochs": 2} if run.quick else {}))
        count = 64 if run.quick else args.fid_samples
        scores = measure(model, autoencoder, tokenizer, clip, judge, data, train, held_index,
                           guidance=args.guidance, count=count, seed=run.seed, draw=draw,
                           per_prompt=2 if run.quick else PER_PROMPT)
        scores["sample_16_seconds"] = None if run.quick else time_sixteen(
            model, autoencoder, tokenizer, args.guidance, draw)
        shown = [p for p in PROMPTS if not tokenizer.unknown(p)] + prompts  # a quick run
        shown = shown or [str(train.captions["en"][0][0])]  # knows few words
        figures_of(model, autoencoder, tokenizer, clip, shown, args.guidance, run.seed, draw,
                   run.out)
        save_autoencoder(autoencoder, run.out)  # the run's three networks and tokenizer
        save_model(model.ema_network, run.out / "text_denoiser_ema.keras")
        tokenizer.save(run.out / "tokenizer.json")
        write_metrics(run, judge=judge, extra={"clip": clip.describe()}, models={
            "autoencoder": ae_report,
            "text_to_image": {"guidance": args.guidance,
                              "sampler": describe(draw["sampler"], draw["steps"]),
                              **scores, "params": model.network.count_params(),
                              "vocabulary": tokenizer.size, **trained.speed()}})
    print(run.closing(f"\nFigures, the denoiser and metrics.json are in {run.out}/ "
                      "(start with prompts.png)"))
    return 0


def measure(model, autoencoder, tokenizer, clip, judge, data, train, held_index, *,
            guidance: float, count: int, seed: int, draw, per_prompt: int = PER_PROMPT) -> dict:
    """CLIP scores of generated images with their prompts and with shuffled prompts (trained
    prompts and held-out ones), the same of real test emoji, the colour check, and FID;
    `per_prompt` images of each held-out or coloured prompt."""
    rng = np.random.default_rng(seed)
    english = train.captions["en"][0]
    chosen = rng.choice(len(english), size=min(count, len(english)), replace=False)
    texts = [str(english[i]) for i in chosen]
    images = generate(model, autoencoder, tokenizer.encode(texts), guidance, seed, **draw)
    report = {"trained_prompts": clip_pair(clip, images, texts, seed)}
    report["fid"] = judge.fid_report(data, images)
    print(f"{len(texts)} images of trained prompts: {describe_fid(report['fid'])}")

    names = [str(data.captions["en"][0][i]) for i in held_index]
    if names:
        texts = [n for n in names for _ in range(per_prompt)]
        images = generate(model, autoencoder, tokenizer.encode(texts), guidance, seed + 1,
                          **draw)
        report["held_out_prompts"] = clip_pair(clip, images, texts, seed)
    test_names = [str(n) for n in data.captions["en"][1]]
    report["real_test_emoji"] = clip_pair(clip, data.x_test, test_names, seed)
    report["colour"] = colour_check(model, autoencoder, tokenizer, guidance, seed + 2, draw,
                                    per_prompt)
    for part in ("trained_prompts", "held_out_prompts", "real_test_emoji"):
        if part in report:
            own, other = report[part]["own"], report[part]["shuffled"]
            print(f"CLIP score, {part.replace('_', ' ')}: {own['clip_score']:.3f} "
                  f"{own['ci95']} with their prompts, {other['clip_score']:.3f} "
                  f"{other['ci95']} shuffled ({own['pairs']} pairs)")
    return report


def clip_pair(clip, images, texts, seed: int) -> dict:
    return {"own": clip.score(images, texts), "shuffled": clip.score(images, shuffled(texts, seed))}


def colour_check(model, autoencoder, tokenizer, guidance, seed, draw, per_prompt) -> dict:
    """The share of images whose foreground hue is nearest the prompt's colour word: held-out
    colour prompts, trained ones, and the trained images against shuffled colour words."""
    report = {}
    held = [n for n in HELD_OUT if colour_word(n)]
    for part, names in (("held_out", held), ("trained", list(COLOURED))):
        texts = [n for n in names for _ in range(per_prompt)]
        found = nearest_colour(foreground_hue(generate(
            model, autoencoder, tokenizer.encode(texts), guidance, seed, **draw)))
        asked = [colour_word(t) for t in texts]
        report[part] = share(found, asked)
        if part == "trained":
            report["trained_shuffled"] = share(found, shuffled(asked, seed))
    print("colour check (foreground hue nearest the colour word): "
          + ", ".join(f"{k} {v['share']:.2f} [{v['ci95'][0]:.2f}, {v['ci95'][1]:.2f}]"
                      for k, v in report.items()))
    return report


def share(found, asked) -> dict:
    """The share of images whose colour is the one asked, with its Wilson interval."""
    hits = sum(f == a for f, a in zip(found, asked))
    low, high = wilson_interval(hits, len(asked))
    return {"share": round(hits / len(asked), 4), "ci95": [round(low, 4), round(high, 4)],
            "images": len(asked), "chance": round(1 / len(HUES), 4)}


def time_sixteen(model, autoencoder, tokenizer, guidance: float, draw) -> float:
    """Seconds for 16 images of one prompt, on the second call (the first compiles)."""
    tokens = tokenizer.encode([PROMPTS[0]] * 16)
    generate(model, autoencoder, tokens, guidance, 0, **draw)
    began = time.perf_counter()
    generate(model, autoencoder, tokens, guidance, 1, **draw)
    seconds = round(time.perf_counter() - began, 2)
    print(f"16 images of one prompt in {seconds:.2f} s once compiled")
    return seconds


def figures_of(model, autoencoder, tokenizer, clip, prompts, guidance, seed, draw, out: Path):
    """prompts.png (one row per prompt), guidance.png (one prompt at each w) and
    cross_attention.png (which word each position reads)."""
    rows = [generate(model, autoencoder, tokenizer.encode([p] * 8), guidance, seed + 3, **draw)
            for p in prompts]
    scores = [clip.score(r, [p] * len(r))["clip_score"] for r, p in zip(rows, prompts)]
    figures.image_grid(np.concatenate(rows), out / "prompts.png", ncols=8,
                       row_labels=[f"{p} ({s:.2f})" for p, s in zip(prompts, scores)],
                       suptitle=f"One row per prompt, w = {guidance:g} (CLIP score in "
                                "brackets)")
    sweep = [generate(model, autoencoder, tokenizer.encode([prompts[0]] * 8), w, seed + 4,
                      **draw) for w in SCALES]
    figures.image_grid(np.concatenate(sweep), out / "guidance.png", ncols=8,
                       row_labels=[f"w = {w:g}" for w in SCALES],
                       suptitle=f"\"{prompts[0]}\" at growing guidance, the same noise in "
                                "every row")
    probe = ATTENTION_PROMPT if ATTENTION_PROMPT in prompts else prompts[0]
    attention_figure(model, autoencoder, tokenizer, probe, guidance, seed, draw,
                     out / "cross_attention.png")


def attention_figure(model, autoencoder, tokenizer, prompt, guidance, seed, draw, path: Path):
    """Three images of one prompt; beside each, per word, where the 8x8 map's positions look
    (the last cross-attention layer, heads averaged, read at step 300 of the drawn code),
    coloured from the image's lowest weight (dark) to its highest (yellow)."""
    tokens = tokenizer.encode([prompt] * 3)
    codes = sample(model.ema_network, model.schedule, (3, *model.ema_network.input_shape[0][1:]),
                   sampler=draw["sampler"], sampling_steps=draw["steps"], labels=tokens,
                   guidance=guidance, null_class=model.null_label, seed=seed + 5)
    images = autoencoder.decode(codes)
    t = np.full(3, 300)
    noisy = model.schedule.noisy(codes, t, np.random.default_rng(seed).standard_normal(
        codes.shape).astype(np.float32))
    weights = attention_probe(model.ema_network).predict([noisy, t, tokens], verbose=0)
    words = ["[start]", *tokenizer.decode(tokens[:1])[0].split()]
    side = codes.shape[1]
    maps = weights.mean(axis=1)[:, :, :len(words)].reshape(3, side, side, len(words))
    cells = []
    for image, m in zip(images, maps):
        cells.append(image)
        for w in range(len(words)):
            low, high = m.min(), max(m.max(), m.min() + 1e-6)  # this image's range
            heat = colormaps["viridis"]((m[..., w] - low) / (high - low))[..., :3]
            cells.append(np.kron(heat, np.ones((image.shape[0] // side, image.shape[1] // side,
                                                1))))
    figures.image_grid(np.stack(cells), path, ncols=1 + len(words),
                       titles=["image", *words] + [""] * (len(cells) - 1 - len(words)),
                       suptitle=f"\"{prompt}\": where each word is read (cross-attention, "
                                "8x8, heads averaged)")


if __name__ == "__main__":
    sys.exit(run_main(main))
